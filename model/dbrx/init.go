package dbrx

import (
	"math/rand/v2"
	"strings"
)

// InitParam fills dst with the reference's initial value for the named parameter:
// LayerNorm weights 1, everything else N(0, initializer_range²) (DbrxPreTrainedModel's
// _init_weights). Each parameter draws from its own PCG stream (seed, index), so a
// checkpoint is reproducible and parameters can be generated in any order.
func (c Config) InitParam(dst []float32, name string, index int, seed uint64) {
	if strings.HasSuffix(name, "norm_1.weight") || strings.HasSuffix(name, "norm_2.weight") || name == NameNormF {
		for i := range dst {
			dst[i] = 1
		}
		return
	}
	rng := rand.New(rand.NewPCG(seed, uint64(index)+0x9e3779b97f4a7c15))
	std := c.InitializerRange
	for i := range dst {
		dst[i] = float32(rng.NormFloat64() * std)
	}
}
