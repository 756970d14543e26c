// Package weights is the one named-tensor source the model binds to, whatever the
// file format underneath (Hugging Face safetensors, single or sharded; GGUF).
package weights

import (
	"sort"

	"github.com/dbrx-engine/dbrx/tensor"
)

// Tensor is a named, read-only tensor whose Data is usually a zero-copy view into an
// mmap'd file. Shape is in PyTorch order (outermost first).
type Tensor struct {
	Name  string
	DType tensor.DType
	Shape tensor.Shape
	Data  []byte
}

// Source is a set of named tensors.
type Source interface {
	// Names lists every tensor name, sorted.
	Names() []string
	// Tensor returns the named tensor, or false if there is none.
	Tensor(name string) (Tensor, bool)
	// Close releases the mappings; tensors must not be used afterwards.
	Close() error
}

// Map is an in-memory Source, used by tests and by training (which owns its weights).
type Map map[string]Tensor

// Names implements Source.
func (m Map) Names() []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Tensor implements Source.
func (m Map) Tensor(name string) (Tensor, bool) { t, ok := m[name]; return t, ok }

// Close implements Source.
func (m Map) Close() error { return nil }
