package gguf

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"strconv"

	"github.com/dbrx-engine/dbrx/internal/mmap"
	"github.com/dbrx-engine/dbrx/quant"
	"github.com/dbrx-engine/dbrx/tensor"
)

// Format constants.
const (
	Magic            = "GGUF" // first four bytes of every GGUF file
	Version          = 3      // version written by this package; 2 and 3 are read
	DefaultAlignment = 32     // data alignment when general.alignment is absent
	MaxDims          = 4      // GGML_MAX_DIMS: most dimensions a tensor may have
	AlignmentKey     = "general.alignment"

	maxNesting = 8 // deepest array-of-array nesting accepted
)

// TensorInfo describes one tensor of a GGUF file.
type TensorInfo struct {
	Name   string
	Type   quant.Type
	Dims   []uint64 // ggml ne: element counts, fastest-varying (innermost) first
	Offset uint64   // start of the data relative to the data section; a multiple of the alignment
	Size   uint64   // bytes of data: Type.RowBytes(NumElements)
}

// NumElements is the product of Dims (1 for no dims).
func (t TensorInfo) NumElements() uint64 {
	n := uint64(1)
	for _, d := range t.Dims {
		n *= d
	}
	return n
}

// Shape returns the dims outermost first (PyTorch order, the reverse of Dims).
// A file that Parse accepted has every dim and product within int64.
func (t TensorInfo) Shape() tensor.Shape {
	s := make(tensor.Shape, len(t.Dims))
	for i, d := range t.Dims {
		s[len(t.Dims)-1-i] = int(d)
	}
	return s
}

// File is a parsed GGUF file. Tensor data is not copied: TensorData returns views
// into the file's bytes (the mmap'd file for Open), valid until Close.
type File struct {
	name       string
	region     *mmap.Region // nil for Parse
	data       []byte
	version    uint32
	kvs        []KV
	kvOffsets  []int64 // offset of each KV record, for error messages
	kvIndex    map[string]int
	tensors    []TensorInfo
	tIndex     map[string]int
	alignment  uint64
	dataOffset int64
	closed     bool
}

// Open maps the file at path read-only and parses its header. Close releases it.
func Open(path string) (*File, error) {
	r, err := mmap.Open(path)
	if err != nil {
		return nil, &Error{File: path, Offset: -1, Msg: "open", Err: err}
	}
	f, err := Parse(path, r.Data())
	if err != nil {
		r.Close()
		return nil, err
	}
	f.region = r
	return f, nil
}

// Parse parses a whole GGUF file held in data; name is used in error messages.
// The File keeps data (tensor views point into it). It never panics: every count,
// length and offset is checked against the bytes present.
func Parse(name string, data []byte) (*File, error) {
	d := &decoder{name: name, b: data}
	f := &File{name: name, data: data, alignment: DefaultAlignment}

	magic, err := d.take(4, "magic", "")
	if err != nil {
		return nil, err
	}
	if string(magic) != Magic {
		return nil, d.errAt(0, ErrBadMagic, "found %q", magic)
	}
	if f.version, err = d.u32("version", ""); err != nil {
		return nil, err
	}
	switch v := f.version; {
	case v == 2 || v == 3:
	case v == 1:
		return nil, d.errAt(4, ErrVersion, "version 1 (32-bit counts) is not supported")
	case bits.ReverseBytes32(v) >= 1 && bits.ReverseBytes32(v) <= 3:
		return nil, d.errAt(4, ErrVersion, "big-endian GGUF (version %d byte-swapped) is not supported", bits.ReverseBytes32(v))
	default:
		return nil, d.errAt(4, ErrVersion, "version %d", v)
	}
	nTensors, err := d.u64("tensor count", "")
	if err != nil {
		return nil, err
	}
	nKV, err := d.u64("metadata count", "")
	if err != nil {
		return nil, err
	}
	// The smallest KV is an empty-named key (8), type (4), one byte; the smallest
	// tensor info an empty name (8), n_dims (4), type (4), offset (8).
	if nKV > d.remaining()/13 {
		return nil, d.errAt(16, ErrTruncated, "%d key-value pairs cannot fit in the %d bytes left", nKV, d.remaining())
	}
	if nTensors > d.remaining()/24 {
		return nil, d.errAt(8, ErrTruncated, "%d tensor infos cannot fit in the %d bytes left", nTensors, d.remaining())
	}

	f.kvs = make([]KV, 0, nKV)
	f.kvOffsets = make([]int64, 0, nKV)
	f.kvIndex = make(map[string]int, nKV)
	for i := uint64(0); i < nKV; i++ {
		start := d.off
		key, err := d.str(fmt.Sprintf("key of metadata pair %d", i))
		if err != nil {
			return nil, err
		}
		if key == "" {
			return nil, d.errAt(start, ErrCorrupt, "metadata pair %d: empty key", i)
		}
		if _, dup := f.kvIndex[key]; dup {
			return nil, d.errAt(start, ErrDuplicate, "metadata key %q", key)
		}
		toff := d.off
		t, err := d.u32(fmt.Sprintf("key %q", key), "value type")
		if err != nil {
			return nil, err
		}
		if !ValueType(t).Valid() {
			return nil, d.errAt(toff, ErrUnknownType, "key %q: value type %d", key, t)
		}
		v, err := d.value(ValueType(t), 0, fmt.Sprintf("key %q", key))
		if err != nil {
			return nil, err
		}
		f.kvIndex[key] = len(f.kvs)
		f.kvs = append(f.kvs, KV{key, v})
		f.kvOffsets = append(f.kvOffsets, int64(start))
	}
	if i, ok := f.kvIndex[AlignmentKey]; ok {
		a, isU32 := f.kvs[i].Value.Any().(uint32)
		if !isU32 {
			return nil, d.errAt(int(f.kvOffsets[i]), ErrWrongType, "%s has type %s, want uint32", AlignmentKey, f.kvs[i].Value.Type())
		}
		if a == 0 || a&(a-1) != 0 {
			return nil, d.errAt(int(f.kvOffsets[i]), ErrCorrupt, "%s = %d is not a power of two", AlignmentKey, a)
		}
		f.alignment = uint64(a)
	}

	f.tensors = make([]TensorInfo, 0, nTensors)
	f.tIndex = make(map[string]int, nTensors)
	offFields := make([]int, 0, nTensors) // where each tensor's offset field is
	for i := uint64(0); i < nTensors; i++ {
		start := d.off
		ti, offField, err := d.tensorInfo(i, f.alignment)
		if err != nil {
			return nil, err
		}
		if _, dup := f.tIndex[ti.Name]; dup {
			return nil, d.errAt(start, ErrDuplicate, "tensor %q", ti.Name)
		}
		f.tIndex[ti.Name] = len(f.tensors)
		f.tensors = append(f.tensors, ti)
		offFields = append(offFields, offField)
	}

	// The data section starts at the next multiple of the alignment. A file with no
	// tensors may end before it (llama.cpp accepts that too).
	f.dataOffset = int64(alignUp(uint64(d.off), f.alignment))
	size := uint64(len(data))
	for i, t := range f.tensors {
		start := uint64(f.dataOffset) + t.Offset
		if t.Offset > size || start > size || t.Size > size-start {
			return nil, d.errAt(offFields[i], ErrTruncated, "tensor %q: %d bytes at offset %d of the data section (which starts at %d) run past the end of the file (%d bytes)",
				t.Name, t.Size, t.Offset, f.dataOffset, size)
		}
	}
	order := make([]int, len(f.tensors))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		return cmpU64(f.tensors[a].Offset, f.tensors[b].Offset)
	})
	for k := 1; k < len(order); k++ {
		p, c := f.tensors[order[k-1]], f.tensors[order[k]]
		if p.Size > 0 && c.Size > 0 && p.Offset+p.Size > c.Offset {
			return nil, d.errAt(offFields[order[k]], ErrOverlap, "tensor %q data [%d, %d) overlaps tensor %q data [%d, %d) (offsets relative to the data section)",
				c.Name, c.Offset, c.Offset+c.Size, p.Name, p.Offset, p.Offset+p.Size)
		}
	}
	return f, nil
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func alignUp(n, a uint64) uint64 { return (n + a - 1) / a * a }

// Name is the path or name the file was opened or parsed with.
func (f *File) Name() string { return f.name }

// Version is the GGUF version read from the header (2 or 3).
func (f *File) Version() uint32 { return f.version }

// Alignment is the data alignment (general.alignment, default 32).
func (f *File) Alignment() uint64 { return f.alignment }

// DataOffset is the absolute file offset of the data section; TensorInfo.Offset
// is relative to it.
func (f *File) DataOffset() int64 { return f.dataOffset }

// Size is the number of bytes in the file.
func (f *File) Size() int64 { return int64(len(f.data)) }

// Metadata returns the key-value pairs in file order. The slice is shared: do not
// modify it.
func (f *File) Metadata() []KV { return f.kvs }

// Lookup returns the value of key.
func (f *File) Lookup(key string) (Value, bool) {
	i, ok := f.kvIndex[key]
	if !ok {
		return Value{}, false
	}
	return f.kvs[i].Value, true
}

// Tensors returns the tensor infos in file order. The slice is shared: do not
// modify it.
func (f *File) Tensors() []TensorInfo { return f.tensors }

// Tensor returns the info of the named tensor.
func (f *File) Tensor(name string) (TensorInfo, bool) {
	i, ok := f.tIndex[name]
	if !ok {
		return TensorInfo{}, false
	}
	return f.tensors[i], true
}

// TensorData returns the named tensor's bytes without copying (a read-only view
// into the mapping; it must not be written to or used after Close).
func (f *File) TensorData(name string) ([]byte, TensorInfo, bool) {
	i, ok := f.tIndex[name]
	if !ok || f.closed {
		return nil, TensorInfo{}, false
	}
	t := f.tensors[i]
	start := f.dataOffset + int64(t.Offset)
	return f.data[start : start+int64(t.Size) : start+int64(t.Size)], t, true
}

// Close releases the mapping of a File from Open. Metadata stays usable; tensor
// views do not. Closing twice is harmless.
func (f *File) Close() error {
	if f.closed {
		return nil
	}
	f.closed = true
	f.data = nil
	if f.region != nil {
		if err := f.region.Close(); err != nil {
			return &Error{File: f.name, Offset: -1, Msg: "close", Err: err}
		}
	}
	return nil
}

// ---- typed getters ----

func (f *File) get(key string) (Value, int64, error) {
	i, ok := f.kvIndex[key]
	if !ok {
		return Value{}, -1, &Error{File: f.name, Offset: -1, Msg: fmt.Sprintf("key %q", key), Err: ErrNotFound}
	}
	return f.kvs[i].Value, f.kvOffsets[i], nil
}

func (f *File) wrongType(key string, off int64, v Value, want string) error {
	return &Error{File: f.name, Offset: off, Msg: fmt.Sprintf("key %q: have %s %s, want %s", key, v.Type(), v, want), Err: ErrWrongType}
}

// GetString returns a string value.
func (f *File) GetString(key string) (string, error) {
	v, off, err := f.get(key)
	if err != nil {
		return "", err
	}
	s, ok := v.AsString()
	if !ok {
		return "", f.wrongType(key, off, v, "string")
	}
	return s, nil
}

// GetBool returns a bool value.
func (f *File) GetBool(key string) (bool, error) {
	v, off, err := f.get(key)
	if err != nil {
		return false, err
	}
	b, ok := v.AsBool()
	if !ok {
		return false, f.wrongType(key, off, v, "bool")
	}
	return b, nil
}

// GetUint64 returns an integer value of any integer type that is >= 0.
func (f *File) GetUint64(key string) (uint64, error) {
	v, off, err := f.get(key)
	if err != nil {
		return 0, err
	}
	u, ok := v.AsUint64()
	if !ok {
		return 0, f.wrongType(key, off, v, "a non-negative integer")
	}
	return u, nil
}

// GetUint32 returns an integer value of any integer type that fits uint32
// (converters write counts as uint32, but some write int32 or uint64).
func (f *File) GetUint32(key string) (uint32, error) {
	v, off, err := f.get(key)
	if err != nil {
		return 0, err
	}
	u, ok := v.AsUint64()
	if !ok || u > math.MaxUint32 {
		return 0, f.wrongType(key, off, v, "an integer in uint32 range")
	}
	return uint32(u), nil
}

// GetInt64 returns an integer value of any integer type that fits int64.
func (f *File) GetInt64(key string) (int64, error) {
	v, off, err := f.get(key)
	if err != nil {
		return 0, err
	}
	i, ok := v.AsInt64()
	if !ok {
		return 0, f.wrongType(key, off, v, "an integer in int64 range")
	}
	return i, nil
}

// GetFloat32 returns a float32 value, or a float64 one rounded to float32.
func (f *File) GetFloat32(key string) (float32, error) {
	x, err := f.GetFloat64(key)
	return float32(x), err
}

// GetFloat64 returns a float32 (widened exactly) or float64 value.
func (f *File) GetFloat64(key string) (float64, error) {
	v, off, err := f.get(key)
	if err != nil {
		return 0, err
	}
	x, ok := v.AsFloat64()
	if !ok {
		return 0, f.wrongType(key, off, v, "float32 or float64")
	}
	return x, nil
}

// GetArray returns an array value.
func (f *File) GetArray(key string) (Array, error) {
	v, off, err := f.get(key)
	if err != nil {
		return Array{}, err
	}
	a, ok := v.AsArray()
	if !ok {
		return Array{}, f.wrongType(key, off, v, "array")
	}
	return a, nil
}

// GetArrayOf returns the elements of an array value of Go element type T, e.g.
// GetArrayOf[string](f, "tokenizer.ggml.tokens").
func GetArrayOf[T Scalar](f *File, key string) ([]T, error) {
	v, off, err := f.get(key)
	if err != nil {
		return nil, err
	}
	if a, ok := v.AsArray(); ok {
		if xs, ok := ArrayAs[T](a); ok {
			return xs, nil
		}
	}
	var zero T
	t, _ := scalarType(any(zero))
	return nil, f.wrongType(key, off, v, "array of "+t.String())
}

// ---- decoding ----

type decoder struct {
	name string
	b    []byte
	off  int
}

func (d *decoder) errAt(off int, err error, format string, a ...any) error {
	return &Error{File: d.name, Offset: int64(off), Msg: fmt.Sprintf(format, a...), Err: err}
}

func (d *decoder) remaining() uint64 { return uint64(len(d.b) - d.off) }

// take consumes n bytes. what and field name the read for the error message
// ("what: field"); they are joined only on error, keeping the hot path free of
// allocations.
func (d *decoder) take(n uint64, what, field string) ([]byte, error) {
	if n > d.remaining() {
		if field != "" {
			what += ": " + field
		}
		return nil, d.errAt(d.off, ErrTruncated, "%s: need %d bytes, %d left", what, n, d.remaining())
	}
	p := d.b[d.off : d.off+int(n)]
	d.off += int(n)
	return p, nil
}

func (d *decoder) u32(what, field string) (uint32, error) {
	p, err := d.take(4, what, field)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(p), nil
}

func (d *decoder) u64(what, field string) (uint64, error) {
	p, err := d.take(8, what, field)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(p), nil
}

func (d *decoder) str(what string) (string, error) {
	start := d.off
	n, err := d.u64(what, "string length")
	if err != nil {
		return "", err
	}
	if n > d.remaining() {
		return "", d.errAt(start, ErrTruncated, "%s: string length %d exceeds the %d bytes left", what, n, d.remaining())
	}
	p, _ := d.take(n, what, "")
	return string(p), nil
}

func (d *decoder) value(t ValueType, depth int, what string) (Value, error) {
	if t == TypeArray {
		a, err := d.array(depth+1, what)
		return ArrayValue(a), err
	}
	if t == TypeString {
		s, err := d.str(what)
		return String(s), err
	}
	start := d.off
	p, err := d.take(uint64(valueTypeSizes[t]), what, "")
	if err != nil {
		return Value{}, err
	}
	le := binary.LittleEndian
	switch t {
	case TypeUint8:
		return Uint8(p[0]), nil
	case TypeInt8:
		return Int8(int8(p[0])), nil
	case TypeUint16:
		return Uint16(le.Uint16(p)), nil
	case TypeInt16:
		return Int16(int16(le.Uint16(p))), nil
	case TypeUint32:
		return Uint32(le.Uint32(p)), nil
	case TypeInt32:
		return Int32(int32(le.Uint32(p))), nil
	case TypeFloat32:
		return Float32(math.Float32frombits(le.Uint32(p))), nil
	case TypeBool:
		if p[0] > 1 {
			return Value{}, d.errAt(start, ErrCorrupt, "%s: bool byte %d", what, p[0])
		}
		return Bool(p[0] == 1), nil
	case TypeUint64:
		return Uint64(le.Uint64(p)), nil
	case TypeInt64:
		return Int64(int64(le.Uint64(p))), nil
	case TypeFloat64:
		return Float64(math.Float64frombits(le.Uint64(p))), nil
	}
	return Value{}, d.errAt(start, ErrUnknownType, "%s: value type %d", what, t)
}

func (d *decoder) array(depth int, what string) (Array, error) {
	start := d.off
	et, err := d.u32(what, "array element type")
	if err != nil {
		return Array{}, err
	}
	t := ValueType(et)
	if !t.Valid() {
		return Array{}, d.errAt(start, ErrUnknownType, "%s: array element type %d", what, et)
	}
	n, err := d.u64(what, "array length")
	if err != nil {
		return Array{}, err
	}
	if depth > maxNesting {
		return Array{}, d.errAt(start, ErrCorrupt, "%s: arrays nested more than %d deep", what, maxNesting)
	}
	if min := t.minSize(); n > d.remaining()/min {
		return Array{}, d.errAt(start, ErrTruncated, "%s: array of %d %s needs at least %d bytes per element, %d bytes left",
			what, n, t, min, d.remaining())
	}
	switch t {
	case TypeString:
		xs := make([]string, n)
		for i := range xs {
			if xs[i], err = d.str(what); err != nil {
				return Array{}, err
			}
		}
		return MakeArray(xs), nil
	case TypeArray:
		xs := make([]Array, n)
		for i := range xs {
			if xs[i], err = d.array(depth+1, what); err != nil {
				return Array{}, err
			}
		}
		return NestedArray(xs), nil
	}
	pstart := d.off
	p, _ := d.take(n*uint64(valueTypeSizes[t]), what, "")
	le := binary.LittleEndian
	switch t {
	case TypeUint8:
		return MakeArray(slices.Clone(p)), nil
	case TypeInt8:
		xs := make([]int8, n)
		for i := range xs {
			xs[i] = int8(p[i])
		}
		return MakeArray(xs), nil
	case TypeBool:
		xs := make([]bool, n)
		for i := range xs {
			if p[i] > 1 {
				return Array{}, d.errAt(pstart+i, ErrCorrupt, "%s: bool byte %d at element %d", what, p[i], i)
			}
			xs[i] = p[i] == 1
		}
		return MakeArray(xs), nil
	case TypeUint16:
		xs := make([]uint16, n)
		for i := range xs {
			xs[i] = le.Uint16(p[2*i:])
		}
		return MakeArray(xs), nil
	case TypeInt16:
		xs := make([]int16, n)
		for i := range xs {
			xs[i] = int16(le.Uint16(p[2*i:]))
		}
		return MakeArray(xs), nil
	case TypeUint32:
		xs := make([]uint32, n)
		for i := range xs {
			xs[i] = le.Uint32(p[4*i:])
		}
		return MakeArray(xs), nil
	case TypeInt32:
		xs := make([]int32, n)
		for i := range xs {
			xs[i] = int32(le.Uint32(p[4*i:]))
		}
		return MakeArray(xs), nil
	case TypeFloat32:
		xs := make([]float32, n)
		for i := range xs {
			xs[i] = math.Float32frombits(le.Uint32(p[4*i:]))
		}
		return MakeArray(xs), nil
	case TypeUint64:
		xs := make([]uint64, n)
		for i := range xs {
			xs[i] = le.Uint64(p[8*i:])
		}
		return MakeArray(xs), nil
	case TypeInt64:
		xs := make([]int64, n)
		for i := range xs {
			xs[i] = int64(le.Uint64(p[8*i:]))
		}
		return MakeArray(xs), nil
	case TypeFloat64:
		xs := make([]float64, n)
		for i := range xs {
			xs[i] = math.Float64frombits(le.Uint64(p[8*i:]))
		}
		return MakeArray(xs), nil
	}
	return Array{}, d.errAt(start, ErrUnknownType, "%s: array element type %d", what, et)
}

// tensorInfo decodes one tensor info record and validates it on its own; it also
// returns the offset of its data-offset field.
func (d *decoder) tensorInfo(i uint64, alignment uint64) (TensorInfo, int, error) {
	var ti TensorInfo
	name, err := d.str(fmt.Sprintf("name of tensor %d", i))
	if err != nil {
		return ti, 0, err
	}
	ti.Name = name
	what := fmt.Sprintf("tensor %q", name)
	noff := d.off
	nd, err := d.u32(what, "n_dims")
	if err != nil {
		return ti, 0, err
	}
	if nd > MaxDims {
		return ti, 0, d.errAt(noff, ErrCorrupt, "%s: %d dims, at most %d allowed", what, nd, MaxDims)
	}
	ti.Dims = make([]uint64, nd)
	n := uint64(1)
	for j := range ti.Dims {
		doff := d.off
		v, err := d.u64(what, "dim "+strconv.Itoa(j))
		if err != nil {
			return ti, 0, err
		}
		if v > math.MaxInt64 || (v != 0 && n > math.MaxInt64/v) {
			return ti, 0, d.errAt(doff, ErrCorrupt, "%s: dim %d = %d makes the element count overflow int64", what, j, v)
		}
		ti.Dims[j] = v
		n *= v
	}
	toff := d.off
	t, err := d.u32(what, "type")
	if err != nil {
		return ti, 0, err
	}
	ti.Type = quant.Type(t)
	if !ti.Type.Valid() {
		return ti, 0, d.errAt(toff, ErrUnknownType, "%s: ggml type %d", what, t)
	}
	if len(ti.Dims) > 0 && ti.Dims[0]%uint64(ti.Type.BlockSize()) != 0 {
		return ti, 0, d.errAt(toff, ErrCorrupt, "%s: rows of %d values are not a multiple of the %s block size %d",
			what, ti.Dims[0], ti.Type, ti.Type.BlockSize())
	}
	size, err := ti.Type.RowBytes(int64(n))
	if err != nil {
		return ti, 0, d.errAt(toff, ErrCorrupt, "%s: %v", what, err)
	}
	ti.Size = uint64(size)
	ooff := d.off
	if ti.Offset, err = d.u64(what, "offset"); err != nil {
		return ti, 0, err
	}
	if ti.Offset%alignment != 0 {
		return ti, 0, d.errAt(ooff, ErrMisaligned, "%s: data offset %d is not a multiple of the alignment %d", what, ti.Offset, alignment)
	}
	return ti, ooff, nil
}
