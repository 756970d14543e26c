package weights

import (
	"fmt"
	"os"

	"github.com/dbrx-engine/dbrx/safetensors"
)

// safetensorsSource adapts a safetensors checkpoint (single file or sharded).
type safetensorsSource struct{ c *safetensors.Checkpoint }

func (s safetensorsSource) Names() []string { return s.c.Names() }
func (s safetensorsSource) Close() error    { return s.c.Close() }
func (s safetensorsSource) Tensor(name string) (Tensor, bool) {
	t, ok := s.c.Tensor(name)
	if !ok {
		return Tensor{}, false
	}
	return Tensor{Name: t.Name, DType: t.DType, Shape: t.Shape, Data: t.Data}, true
}

// OpenSafetensors opens a Hugging Face checkpoint: a directory holding
// model.safetensors or model.safetensors.index.json with its shards, or one
// .safetensors file. Tensors are zero-copy views into the mmap'd files.
func OpenSafetensors(path string) (Source, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("weights: %w", err)
	}
	c, err := safetensors.OpenDir(path)
	if err != nil {
		return nil, fmt.Errorf("weights: %w", err)
	}
	return safetensorsSource{c}, nil
}
