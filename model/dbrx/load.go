package dbrx

import (
	"fmt"

	"github.com/dbrx-engine/dbrx/weights"
)

// Load opens a Hugging Face DBRX checkpoint directory (config.json plus
// model.safetensors or a sharded index) and binds it strictly. Weights stay mmap'd.
func Load(dir string) (*Model, error) {
	cfg, err := LoadConfig(dir)
	if err != nil {
		return nil, err
	}
	src, err := weights.OpenSafetensors(dir)
	if err != nil {
		return nil, err
	}
	m, err := Bind(cfg, src)
	if err != nil {
		src.Close()
		return nil, fmt.Errorf("dbrx: %s: %w", dir, err)
	}
	return m, nil
}
