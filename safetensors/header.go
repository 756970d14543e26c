package safetensors

import (
	"cmp"
	"encoding/binary"
	"errors"
	"math"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/dbrx-engine/dbrx/tensor"
)

// MaxHeaderSize caps the JSON header length (the same limit as the reference Rust
// implementation); a larger length prefix is treated as corrupt.
const MaxHeaderSize = 100_000_000

// Alignment is the alignment, in bytes, of the data section in files written here.
const Alignment = 8

// metadataKey is the reserved header key holding the string->string metadata.
const metadataKey = "__metadata__"

// TensorInfo describes one tensor of a file. Begin and End are byte offsets relative to
// the start of the data section, as stored in the header.
type TensorInfo struct {
	Name  string
	DType tensor.DType
	Shape tensor.Shape
	Begin int64
	End   int64
}

// Size returns the tensor's size in bytes.
func (t TensorInfo) Size() int64 { return t.End - t.Begin }

// Header is a parsed, validated safetensors header.
type Header struct {
	Tensors  []TensorInfo      // sorted by Begin (then End, then Name)
	Metadata map[string]string // nil when the file has no __metadata__
}

// unsupportedDTypes are standard safetensors dtypes that have no tensor.DType.
var unsupportedDTypes = map[string]bool{
	"I16": true, "U16": true, "U64": true, "C64": true,
	"F8_E4M3": true, "F8_E5M2": true, "F8_E8M0": true, "E8M0": true,
	"F4": true, "F6_E2M3": true, "F6_E3M2": true,
}

// parseDType maps a header dtype string to a tensor.DType. BOOL is stored one byte per
// element and is read as U8.
func parseDType(s string) (tensor.DType, bool, bool) {
	if s == "BOOL" {
		return tensor.U8, true, true
	}
	if dt, err := tensor.ParseDType(s); err == nil && dt.Size() > 0 {
		return dt, true, true
	}
	return tensor.Invalid, false, unsupportedDTypes[s]
}

// ParseHeader parses and fully validates the header of a safetensors file. b holds the
// start of the file, at least the 8-byte length and the JSON header (it may be the
// whole file); fileSize is the size of the whole file and bounds data_offsets. It
// returns the header and the absolute offset of the data section. Errors are
// *FormatError with an empty File and absolute offsets. ParseHeader never panics and
// does not retain b.
func ParseHeader(b []byte, fileSize int64) (header Header, dataStart int64, err error) {
	if fileSize < int64(len(b)) {
		return Header{}, 0, formatErr(ErrTruncated, -1, "", "buffer of %d bytes is larger than the stated file size %d", len(b), fileSize)
	}
	if fileSize < 8 {
		return Header{}, 0, formatErr(ErrTruncated, 0, "header length", "file is %d bytes, shorter than the 8-byte length prefix", fileSize)
	}
	if len(b) < 8 {
		return Header{}, 0, formatErr(ErrTruncated, 0, "header length", "buffer holds %d bytes, shorter than the 8-byte length prefix", len(b))
	}
	n := binary.LittleEndian.Uint64(b)
	if n > MaxHeaderSize {
		return Header{}, 0, formatErr(ErrBadHeader, 0, "header length", "%d bytes exceeds the %d-byte limit", n, MaxHeaderSize)
	}
	dataStart = 8 + int64(n)
	if dataStart > fileSize {
		return Header{}, 0, formatErr(ErrTruncated, 0, "header length", "%d bytes runs past the end of the %d-byte file", n, fileSize)
	}
	if int64(len(b)) < dataStart {
		return Header{}, 0, formatErr(ErrTruncated, 0, "header length", "buffer holds %d bytes, the header needs %d", len(b), dataStart)
	}
	hdr := b[8:dataStart]
	if !utf8.Valid(hdr) {
		off := 0
		for off < len(hdr) {
			r, size := utf8.DecodeRune(hdr[off:])
			if r == utf8.RuneError && size <= 1 {
				break
			}
			off += size
		}
		return Header{}, 0, formatErr(ErrBadHeader, 8+int64(off), "", "header is not valid UTF-8")
	}
	members, err := readObject(hdr, 8, ErrBadHeader, "", "header")
	if err != nil {
		return Header{}, 0, err
	}
	dataSize := fileSize - dataStart

	type located struct {
		info TensorInfo
		off  int64
	}
	ts := make([]located, 0, len(members))
	var meta map[string]string
	for _, m := range members {
		if m.Key == metadataKey {
			if meta, err = parseMetadata(m); err != nil {
				return Header{}, 0, err
			}
			continue
		}
		info, err := parseEntry(m, dataSize)
		if err != nil {
			return Header{}, 0, err
		}
		ts = append(ts, located{info, m.KeyOff})
	}
	slices.SortFunc(ts, func(a, b located) int {
		return cmp.Or(cmp.Compare(a.info.Begin, b.info.Begin), cmp.Compare(a.info.End, b.info.End), cmp.Compare(a.info.Name, b.info.Name))
	})
	var maxEnd int64
	owner := -1
	for i, t := range ts {
		if t.info.End == t.info.Begin { // empty tensors occupy no bytes
			continue
		}
		if t.info.Begin < maxEnd {
			o := ts[owner].info
			return Header{}, 0, formatErr(ErrOverlap, t.off, tensorField(t.info.Name, "data_offsets"),
				"bytes [%d, %d) overlap tensor %q at [%d, %d)", t.info.Begin, t.info.End, o.Name, o.Begin, o.End)
		}
		maxEnd, owner = t.info.End, i
	}
	header.Tensors = make([]TensorInfo, len(ts))
	for i, t := range ts {
		header.Tensors[i] = t.info
	}
	header.Metadata = meta
	return header, dataStart, nil
}

func parseMetadata(m member) (map[string]string, error) {
	if string(m.Val) == "null" {
		return nil, nil
	}
	field := strconv.Quote(metadataKey)
	if m.Val[0] != '{' {
		return nil, formatErr(ErrMetadata, m.ValOff, field, "must be an object of strings, found %s", jsonKind(m.Val))
	}
	entries, err := readMembers(m.Val, m.ValOff, ErrMetadata, field, "__metadata__")
	if err != nil {
		return nil, err
	}
	meta := make(map[string]string, len(entries))
	for _, e := range entries {
		s, ok := jsonString(e.Val)
		if !ok {
			return nil, formatErr(ErrMetadata, e.ValOff, joinField(field, strconv.Quote(e.Key)),
				"metadata values must be strings, found %s", jsonKind(e.Val))
		}
		meta[e.Key] = s
	}
	return meta, nil
}

func parseEntry(m member, dataSize int64) (TensorInfo, error) {
	name := m.Key
	if m.Val[0] != '{' {
		return TensorInfo{}, formatErr(ErrBadHeader, m.ValOff, tensorField(name, ""),
			"tensor entry must be an object, found %s", jsonKind(m.Val))
	}
	fields, err := readMembers(m.Val, m.ValOff, ErrBadHeader, "", "tensor entry")
	if err != nil {
		var fe *FormatError
		if errors.As(err, &fe) { // name the tensor (computed only on error: it is not cheap)
			fe.Field = joinField(tensorField(name, ""), fe.Field)
		}
		return TensorInfo{}, err
	}
	var dtypeF, shapeF, offsF *member
	for i := range fields {
		switch fields[i].Key {
		case "dtype":
			dtypeF = &fields[i]
		case "shape":
			shapeF = &fields[i]
		case "data_offsets":
			offsF = &fields[i]
		}
	}
	info := TensorInfo{Name: name}

	// dtype
	if dtypeF == nil {
		return TensorInfo{}, formatErr(ErrDType, m.ValOff, tensorField(name, "dtype"), "missing")
	}
	ds, ok := jsonString(dtypeF.Val)
	if !ok {
		return TensorInfo{}, formatErr(ErrDType, dtypeF.ValOff, tensorField(name, "dtype"), "must be a string, found %s", jsonKind(dtypeF.Val))
	}
	dt, known, standard := parseDType(ds)
	if !known {
		if standard {
			return TensorInfo{}, formatErr(ErrDType, dtypeF.ValOff, tensorField(name, "dtype"),
				"unsupported dtype %q (a standard safetensors dtype with no tensor.DType)", ds)
		}
		return TensorInfo{}, formatErr(ErrDType, dtypeF.ValOff, tensorField(name, "dtype"), "unknown dtype %q", ds)
	}
	info.DType = dt

	// shape
	if shapeF == nil {
		return TensorInfo{}, formatErr(ErrShape, m.ValOff, tensorField(name, "shape"), "missing")
	}
	dims, ok := jsonArray(shapeF.Val)
	if !ok {
		return TensorInfo{}, formatErr(ErrShape, shapeF.ValOff, tensorField(name, "shape"), "must be an array of integers, found %s", jsonKind(shapeF.Val))
	}
	info.Shape = make(tensor.Shape, len(dims))
	for i, d := range dims {
		v, isInt, err := jsonInt(d)
		switch {
		case !isInt:
			return TensorInfo{}, formatErr(ErrShape, shapeF.ValOff, tensorField(name, "shape"), "dimension %d is %s, not an integer", i, jsonKind(d))
		case err != nil || v > math.MaxInt || int64(int(v)) != v:
			return TensorInfo{}, formatErr(ErrShape, shapeF.ValOff, tensorField(name, "shape"), "dimension %d (%s) is too large", i, d)
		case v < 0:
			return TensorInfo{}, formatErr(ErrShape, shapeF.ValOff, tensorField(name, "shape"), "dimension %d is negative (%d)", i, v)
		}
		info.Shape[i] = int(v)
	}
	numel := info.Shape.NumElements()
	if numel < 0 {
		return TensorInfo{}, formatErr(ErrShape, shapeF.ValOff, tensorField(name, "shape"), "element count of %v overflows int64", info.Shape)
	}
	esize := int64(dt.Size())
	if numel > math.MaxInt64/esize {
		return TensorInfo{}, formatErr(ErrShape, shapeF.ValOff, tensorField(name, "shape"),
			"byte size of %v %s (%d elements × %d bytes) overflows int64", info.Shape, dt, numel, esize)
	}
	nbytes := numel * esize

	// data_offsets
	if offsF == nil {
		return TensorInfo{}, formatErr(ErrOffsets, m.ValOff, tensorField(name, "data_offsets"), "missing")
	}
	offs, ok := jsonArray(offsF.Val)
	if !ok || len(offs) != 2 {
		what := jsonKind(offsF.Val)
		if ok {
			what = "an array of " + strconv.Itoa(len(offs))
		}
		return TensorInfo{}, formatErr(ErrOffsets, offsF.ValOff, tensorField(name, "data_offsets"), "must be [begin, end], found %s", what)
	}
	var be [2]int64
	for i, o := range offs {
		v, isInt, err := jsonInt(o)
		switch {
		case !isInt:
			return TensorInfo{}, formatErr(ErrOffsets, offsF.ValOff, tensorField(name, "data_offsets"), "%s is %s, not an integer", [2]string{"begin", "end"}[i], jsonKind(o))
		case err != nil:
			return TensorInfo{}, formatErr(ErrOffsets, offsF.ValOff, tensorField(name, "data_offsets"), "%s (%s) is too large", [2]string{"begin", "end"}[i], o)
		case v < 0:
			return TensorInfo{}, formatErr(ErrOffsets, offsF.ValOff, tensorField(name, "data_offsets"), "%s is negative (%d)", [2]string{"begin", "end"}[i], v)
		}
		be[i] = v
	}
	info.Begin, info.End = be[0], be[1]
	if info.End < info.Begin {
		return TensorInfo{}, formatErr(ErrOffsets, offsF.ValOff, tensorField(name, "data_offsets"), "end %d is before begin %d", info.End, info.Begin)
	}
	if info.End > dataSize {
		e := formatErr(ErrOffsets, offsF.ValOff, tensorField(name, "data_offsets"),
			"end %d is past the end of the %d-byte data section (file truncated?)", info.End, dataSize)
		e.Cause = ErrTruncated
		return TensorInfo{}, e
	}
	if got := info.End - info.Begin; got != nbytes {
		return TensorInfo{}, formatErr(ErrSize, offsF.ValOff, tensorField(name, "data_offsets"),
			"spans %d bytes but shape %v of %s needs %d (%d elements × %d bytes)", got, info.Shape, dt, nbytes, numel, esize)
	}
	return info, nil
}

// jsonKind names the JSON type of a raw value for error messages.
func jsonKind(raw []byte) string {
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	s := string(raw)
	if len(s) > 32 {
		s = s[:32] + "..."
	}
	return "the number " + s
}

// encodeHeader returns the 8-byte length prefix and the JSON header for tensors (with
// their offsets as given) and metadata (omitted when nil), padded with spaces so that
// the data section starts Alignment-aligned. Metadata keys are written sorted.
func encodeHeader(tensors []TensorInfo, metadata map[string]string) ([]byte, error) {
	buf := make([]byte, 8, 8+64+len(tensors)*128)
	buf = append(buf, '{')
	first := true
	if metadata != nil {
		buf = appendJSONString(buf, metadataKey)
		buf = append(buf, ':', '{')
		keys := make([]string, 0, len(metadata))
		for k := range metadata {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			v := metadata[k]
			if !utf8.ValidString(k) || !utf8.ValidString(v) {
				return nil, formatErr(ErrMetadata, -1, joinField(strconv.Quote(metadataKey), strconv.Quote(k)), "key or value is not valid UTF-8")
			}
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = appendJSONString(buf, k)
			buf = append(buf, ':')
			buf = appendJSONString(buf, v)
		}
		buf = append(buf, '}')
		first = false
	}
	for _, t := range tensors {
		if !utf8.ValidString(t.Name) {
			return nil, formatErr(ErrBadHeader, -1, tensorField(t.Name, ""), "tensor name is not valid UTF-8")
		}
		if !first {
			buf = append(buf, ',')
		}
		first = false
		buf = appendJSONString(buf, t.Name)
		buf = append(buf, `:{"dtype":`...)
		buf = appendJSONString(buf, t.DType.String())
		buf = append(buf, `,"shape":[`...)
		for i, d := range t.Shape {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = strconv.AppendInt(buf, int64(d), 10)
		}
		buf = append(buf, `],"data_offsets":[`...)
		buf = strconv.AppendInt(buf, t.Begin, 10)
		buf = append(buf, ',')
		buf = strconv.AppendInt(buf, t.End, 10)
		buf = append(buf, ']', '}')
	}
	buf = append(buf, '}')
	for len(buf)%Alignment != 0 {
		buf = append(buf, ' ')
	}
	n := len(buf) - 8
	if n > MaxHeaderSize {
		return nil, formatErr(ErrBadHeader, -1, "header length", "header of %d bytes exceeds the %d-byte limit", n, MaxHeaderSize)
	}
	binary.LittleEndian.PutUint64(buf, uint64(n))
	return buf, nil
}
