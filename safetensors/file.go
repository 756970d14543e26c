package safetensors

import (
	"fmt"
	"maps"
	"slices"

	"github.com/dbrx-engine/dbrx/internal/mmap"
	"github.com/dbrx-engine/dbrx/tensor"
)

// Tensor is a named tensor whose Data is a zero-copy view of its bytes in the stored
// dtype. Data returned by File or Checkpoint points into a read-only mapping: it must
// not be written to (that faults) and must not be used after Close.
type Tensor struct {
	Name  string
	DType tensor.DType
	Shape tensor.Shape
	Data  []byte // little-endian elements, len = numel × DType.Size()
}

// File is an open, validated safetensors file. Its methods are safe for concurrent
// use, except that Close must not run concurrently with the others.
type File struct {
	path      string
	region    *mmap.Region
	data      []byte // the whole file
	dataStart int64
	header    Header
	byName    map[string]int // index into header.Tensors
}

// Open maps the file at path read-only and validates its whole header. Errors
// describing the file's contents are *FormatError with File set to path.
func Open(path string) (*File, error) {
	r, err := mmap.Open(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: open: %w", err)
	}
	data := r.Data()
	h, dataStart, err := ParseHeader(data, int64(len(data)))
	if err != nil {
		r.Close()
		return nil, withFile(err, path)
	}
	f := &File{path: path, region: r, data: data, dataStart: dataStart, header: h,
		byName: make(map[string]int, len(h.Tensors))}
	for i, t := range h.Tensors {
		f.byName[t.Name] = i
	}
	return f, nil
}

// Path returns the path the file was opened from.
func (f *File) Path() string { return f.path }

// Tensors returns the tensors' descriptions sorted by their position in the file. The
// slice is a copy; the Shapes are shared and must not be modified.
func (f *File) Tensors() []TensorInfo { return slices.Clone(f.header.Tensors) }

// Info returns the description of the named tensor.
func (f *File) Info(name string) (TensorInfo, bool) {
	i, ok := f.byName[name]
	if !ok {
		return TensorInfo{}, false
	}
	return f.header.Tensors[i], true
}

// Tensor returns a zero-copy view of the named tensor. It returns false if there is no
// such tensor or the file is closed.
func (f *File) Tensor(name string) (Tensor, bool) {
	i, ok := f.byName[name]
	if !ok || f.data == nil {
		return Tensor{}, false
	}
	t := f.header.Tensors[i]
	lo, hi := f.dataStart+t.Begin, f.dataStart+t.End
	return Tensor{Name: t.Name, DType: t.DType, Shape: t.Shape, Data: f.data[lo:hi:hi]}, true
}

// Metadata returns a copy of the __metadata__ map (nil if the file has none).
func (f *File) Metadata() map[string]string { return maps.Clone(f.header.Metadata) }

// DataOffset returns the absolute file offset of the data section.
func (f *File) DataOffset() int64 { return f.dataStart }

// Size returns the size of the file in bytes.
func (f *File) Size() int64 { return int64(len(f.data)) }

// Region returns the underlying mapping, e.g. for madvise hints. It is nil after Close.
func (f *File) Region() *mmap.Region { return f.region }

// Close unmaps the file. Tensor data obtained from it must not be used afterwards.
// Close is idempotent.
func (f *File) Close() error {
	if f.region == nil {
		return nil
	}
	r := f.region
	f.region, f.data = nil, nil
	if err := r.Close(); err != nil {
		return fmt.Errorf("safetensors: close %s: %w", f.path, err)
	}
	return nil
}
