package gguf

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/dbrx-engine/dbrx/internal/atomicfile"
)

// MaxNameLen is the longest tensor name llama.cpp accepts (GGML_MAX_NAME - 1).
const MaxNameLen = 63

// Writer streams a GGUF v3 file: Create writes the header (metadata and tensor
// infos, whose sizes are known up front), WriteTensor appends each tensor's data
// in info order with alignment padding, and Close makes the file appear at its
// path atomically (temp file in the same directory, fsync, rename, fsync of the
// directory). Until Close succeeds nothing exists at the path; Abort discards.
// The layout matches llama.cpp's gguf_write: tensors contiguous in info order,
// each padded to the alignment, the header padded likewise.
//
// A Writer is not safe for concurrent use. After any error the Writer is
// broken: every later call returns that error and the caller should Abort.
type Writer struct {
	path      string
	f         *atomicfile.File
	bw        *bufio.Writer
	infos     []TensorInfo
	next      int // index of the next tensor to write
	alignment uint64
	pos       uint64 // bytes written so far
	err       error  // sticky
	done      bool   // closed or aborted
}

// Create validates kvs and infos, creates a temp file beside path and writes the
// header. Only Name, Type and Dims of each info are used; Offset and Size are
// computed (see Tensors). general.alignment, if among kvs, must be a power-of-two
// uint32; it is not added when absent (the default, 32, applies).
func Create(path string, kvs []KV, infos []TensorInfo) (*Writer, error) {
	alignment, planned, err := plan(kvs, infos)
	if err != nil {
		err.File = path
		return nil, err
	}
	w := &Writer{path: path, alignment: alignment, infos: planned}
	hdr := encodeHeader(kvs, planned)

	f, ferr := atomicfile.Create(path)
	if ferr != nil {
		_, cause := step(ferr)
		return nil, &Error{File: path, Offset: -1, Msg: "create temp file", Err: cause}
	}
	w.f = f
	w.bw = bufio.NewWriterSize(f, 1<<20)
	if err := w.write(hdr); err != nil {
		w.Abort()
		return nil, err
	}
	if err := w.pad(); err != nil {
		w.Abort()
		return nil, err
	}
	return w, nil
}

// plan validates metadata and tensor infos as Create does and returns the data
// alignment and the infos with Offset and Size filled in (llama.cpp's layout:
// contiguous in order, each padded to the alignment).
func plan(kvs []KV, infos []TensorInfo) (uint64, []TensorInfo, *Error) {
	alignment := uint64(DefaultAlignment)
	fail := func(err error, format string, a ...any) (uint64, []TensorInfo, *Error) {
		return 0, nil, &Error{Offset: -1, Msg: fmt.Sprintf(format, a...), Err: err}
	}
	seen := make(map[string]bool, len(kvs))
	for i, kv := range kvs {
		if kv.Key == "" {
			return fail(ErrCorrupt, "metadata pair %d: empty key", i)
		}
		if seen[kv.Key] {
			return fail(ErrDuplicate, "metadata key %q", kv.Key)
		}
		seen[kv.Key] = true
		if err := checkValue(kv.Value, 0); err != nil {
			return fail(ErrCorrupt, "key %q: %v", kv.Key, err)
		}
		if kv.Key == AlignmentKey {
			a, ok := kv.Value.Any().(uint32)
			if !ok {
				return fail(ErrWrongType, "%s has type %s, want uint32", AlignmentKey, kv.Value.Type())
			}
			if a == 0 || a&(a-1) != 0 {
				return fail(ErrCorrupt, "%s = %d is not a power of two", AlignmentKey, a)
			}
			alignment = uint64(a)
		}
	}
	out := make([]TensorInfo, len(infos))
	names := make(map[string]bool, len(infos))
	var off uint64
	for i, in := range infos {
		if in.Name == "" || len(in.Name) > MaxNameLen {
			return fail(ErrCorrupt, "tensor %d: name %q must have 1 to %d bytes", i, in.Name, MaxNameLen)
		}
		if names[in.Name] {
			return fail(ErrDuplicate, "tensor %q", in.Name)
		}
		names[in.Name] = true
		if !in.Type.Valid() {
			return fail(ErrUnknownType, "tensor %q: ggml type %d", in.Name, uint32(in.Type))
		}
		if len(in.Dims) > MaxDims {
			return fail(ErrCorrupt, "tensor %q: %d dims, at most %d allowed", in.Name, len(in.Dims), MaxDims)
		}
		n := uint64(1)
		for _, d := range in.Dims {
			if d > math.MaxInt64 || (d != 0 && n > math.MaxInt64/d) {
				return fail(ErrCorrupt, "tensor %q: dims %v overflow int64", in.Name, in.Dims)
			}
			n *= d
		}
		if len(in.Dims) > 0 && in.Dims[0]%uint64(in.Type.BlockSize()) != 0 {
			return fail(ErrCorrupt, "tensor %q: rows of %d values are not a multiple of the %s block size %d",
				in.Name, in.Dims[0], in.Type, in.Type.BlockSize())
		}
		size, err := in.Type.RowBytes(int64(n))
		if err != nil {
			return fail(ErrCorrupt, "tensor %q: %v", in.Name, err)
		}
		padded := alignUp(uint64(size), alignment)
		if padded < uint64(size) || off+padded < off || off+padded > math.MaxInt64 {
			return fail(ErrCorrupt, "tensor %q: data section exceeds int64", in.Name)
		}
		out[i] = TensorInfo{Name: in.Name, Type: in.Type, Dims: append([]uint64(nil), in.Dims...), Offset: off, Size: uint64(size)}
		off += padded
	}
	return alignment, out, nil
}

// encodeHeader encodes magic, version, counts, metadata and tensor infos (with
// their Offset fields as given), without the trailing padding.
func encodeHeader(kvs []KV, infos []TensorInfo) []byte {
	var hdr bytes.Buffer
	le := binary.LittleEndian
	hdr.WriteString(Magic)
	hdr.Write(le.AppendUint32(nil, Version))
	hdr.Write(le.AppendUint64(nil, uint64(len(infos))))
	hdr.Write(le.AppendUint64(nil, uint64(len(kvs))))
	for _, kv := range kvs {
		putString(&hdr, kv.Key)
		hdr.Write(le.AppendUint32(nil, uint32(kv.Value.Type())))
		putValue(&hdr, kv.Value)
	}
	for _, t := range infos {
		putString(&hdr, t.Name)
		hdr.Write(le.AppendUint32(nil, uint32(len(t.Dims))))
		for _, d := range t.Dims {
			hdr.Write(le.AppendUint64(nil, d))
		}
		hdr.Write(le.AppendUint32(nil, uint32(t.Type)))
		hdr.Write(le.AppendUint64(nil, t.Offset))
	}
	return hdr.Bytes()
}

// Tensors returns the tensor infos as written, with Offset (relative to the data
// section) and Size filled in.
func (w *Writer) Tensors() []TensorInfo { return w.infos }

func (w *Writer) fail(err error, format string, a ...any) error {
	if w.err == nil {
		w.err = &Error{File: w.path, Offset: int64(w.pos), Msg: fmt.Sprintf(format, a...), Err: err}
	}
	return w.err
}

func (w *Writer) write(p []byte) error {
	if w.err != nil {
		return w.err
	}
	n, err := w.bw.Write(p)
	w.pos += uint64(n)
	if err != nil {
		return w.fail(err, "write")
	}
	return nil
}

var zeros [256]byte

func (w *Writer) pad() error {
	for k := alignUp(w.pos, w.alignment) - w.pos; k > 0; {
		c := min(k, uint64(len(zeros)))
		if err := w.write(zeros[:c]); err != nil {
			return err
		}
		k -= c
	}
	return nil
}

func (w *Writer) begin(name string) (TensorInfo, error) {
	if w.err != nil {
		return TensorInfo{}, w.err
	}
	if w.done {
		return TensorInfo{}, &Error{File: w.path, Offset: -1, Msg: fmt.Sprintf("tensor %q", name), Err: ErrClosed}
	}
	if w.next >= len(w.infos) {
		return TensorInfo{}, w.fail(ErrWriter, "tensor %q: all %d tensors are already written", name, len(w.infos))
	}
	t := w.infos[w.next]
	if name != t.Name {
		return TensorInfo{}, w.fail(ErrWriter, "tensor %q written out of order: %q comes next", name, t.Name)
	}
	return t, nil
}

// WriteTensor appends the data of the next tensor, which must be the one called
// name, and pads it to the alignment. len(data) must equal its Size.
func (w *Writer) WriteTensor(name string, data []byte) error {
	t, err := w.begin(name)
	if err != nil {
		return err
	}
	if uint64(len(data)) != t.Size {
		return w.fail(ErrWriter, "tensor %q: got %d bytes, its %s %v data is %d bytes", name, len(data), t.Type, t.Dims, t.Size)
	}
	return w.finish(w.write(data))
}

// WriteTensorFrom is WriteTensor for data read from r: exactly Size bytes are
// copied, so a tensor never has to be held in memory whole.
func (w *Writer) WriteTensorFrom(name string, r io.Reader) error {
	t, err := w.begin(name)
	if err != nil {
		return err
	}
	n, err := io.CopyN(w.bw, r, int64(t.Size))
	w.pos += uint64(n)
	if err != nil {
		return w.fail(err, "tensor %q: copied %d of %d bytes", name, n, t.Size)
	}
	return w.finish(nil)
}

func (w *Writer) finish(err error) error {
	if err != nil {
		return err
	}
	if err := w.pad(); err != nil {
		return err
	}
	w.next++
	return nil
}

// Close checks that every tensor was written, then flushes, fsyncs and renames
// the temp file to the path. On any failure the temp file is removed.
func (w *Writer) Close() error {
	if w.done {
		if w.err != nil {
			return w.err
		}
		return nil
	}
	if w.err == nil && w.next != len(w.infos) {
		w.fail(ErrWriter, "only %d of %d tensors written (next: %q)", w.next, len(w.infos), w.infos[w.next].Name)
	}
	if w.err == nil {
		if err := w.bw.Flush(); err != nil {
			w.fail(err, "flush")
		}
	}
	if w.err != nil {
		err := w.err
		w.Abort()
		w.err = err
		return err
	}
	w.done = true
	if err := w.f.Commit(); err != nil {
		op, cause := step(err)
		return w.fail(cause, "%s", op)
	}
	return nil
}

// Abort closes and removes the temp file; nothing appears at the path. It is
// safe to call after Close (it then does nothing) and more than once.
func (w *Writer) Abort() error {
	if w.done {
		return nil
	}
	w.done = true
	if w.err == nil {
		w.err = &Error{File: w.path, Offset: -1, Msg: "writer", Err: ErrClosed}
	}
	if err := w.f.Abort(); err != nil {
		_, cause := step(err)
		return &Error{File: w.path, Offset: -1, Msg: "remove temp file", Err: cause}
	}
	return nil
}

// step splits an internal/atomicfile error into the step that failed (fsync, rename,
// ...) and its cause, for an *Error that already names the file.
func step(err error) (string, error) {
	var ae *atomicfile.Error
	if errors.As(err, &ae) {
		return ae.Op, ae.Err
	}
	return "commit", err
}

func putString(b *bytes.Buffer, s string) {
	b.Write(binary.LittleEndian.AppendUint64(nil, uint64(len(s))))
	b.WriteString(s)
}

// checkValue reports values the encoder cannot write: the zero Value, a zero
// Array, or nesting deeper than the reader accepts.
func checkValue(v Value, depth int) error {
	if !v.IsValid() {
		return fmt.Errorf("invalid (zero) Value")
	}
	if a, ok := v.AsArray(); ok {
		return checkArray(a, depth+1)
	}
	return nil
}

func checkArray(a Array, depth int) error {
	if a.v == nil {
		return fmt.Errorf("invalid (zero) Array")
	}
	if depth > maxNesting {
		return fmt.Errorf("arrays nested more than %d deep", maxNesting)
	}
	if xs, ok := a.Arrays(); ok {
		for _, x := range xs {
			if err := checkArray(x, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

func putValue(b *bytes.Buffer, v Value) {
	le := binary.LittleEndian
	switch x := v.v.(type) {
	case uint8:
		b.WriteByte(x)
	case int8:
		b.WriteByte(byte(x))
	case uint16:
		b.Write(le.AppendUint16(nil, x))
	case int16:
		b.Write(le.AppendUint16(nil, uint16(x)))
	case uint32:
		b.Write(le.AppendUint32(nil, x))
	case int32:
		b.Write(le.AppendUint32(nil, uint32(x)))
	case float32:
		b.Write(le.AppendUint32(nil, math.Float32bits(x)))
	case bool:
		if x {
			b.WriteByte(1)
		} else {
			b.WriteByte(0)
		}
	case string:
		putString(b, x)
	case uint64:
		b.Write(le.AppendUint64(nil, x))
	case int64:
		b.Write(le.AppendUint64(nil, uint64(x)))
	case float64:
		b.Write(le.AppendUint64(nil, math.Float64bits(x)))
	case Array:
		putArray(b, x)
	}
}

func putArray(b *bytes.Buffer, a Array) {
	le := binary.LittleEndian
	b.Write(le.AppendUint32(nil, uint32(a.elem)))
	b.Write(le.AppendUint64(nil, uint64(a.Len())))
	switch xs := a.v.(type) {
	case []uint8:
		b.Write(xs)
	case []string:
		for _, s := range xs {
			putString(b, s)
		}
	case []Array:
		for _, x := range xs {
			putArray(b, x)
		}
	default:
		for i := range a.Len() {
			putValue(b, a.Index(i))
		}
	}
}
