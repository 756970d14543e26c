package nn

import (
	"math"

	"github.com/dbrx-engine/dbrx/internal/kernel"
)

// attnBlock is how many keys are scored at a time; scores live in a stack array so
// attention allocates nothing, and blocks are merged with the online-softmax rescale.
const attnBlock = 256

// MaxHeadDim bounds Dh for the stack accumulator of CausalAttentionHead.
const MaxHeadDim = 512

// CausalAttentionHead computes one query head's attention output over the first n
// cached positions (the query's own position is n-1, so causality is the bound n).
//
//	out [Dh]; q [Dh]; keys, values: row j of head g at [j*stride + off : +Dh]
//
// scale is 1/sqrt(Dh). Softmax is taken in float32 like the reference; exp and the
// running sum use float64 where that is free, which keeps the result within a few
// ulp of a single-pass softmax.
func CausalAttentionHead(out, q []float32, keys, values []float32, stride, off, n int, scale float32) {
	dh := len(q)
	var acc [MaxHeadDim]float64
	var scores [attnBlock]float32
	runMax := math.Inf(-1)
	var runSum float64
	for j0 := 0; j0 < n; j0 += attnBlock {
		j1 := min(j0+attnBlock, n)
		bmax := float32(math.Inf(-1))
		for j := j0; j < j1; j++ {
			k := keys[j*stride+off : j*stride+off+dh]
			s := kernel.DotF32(q, k) * scale
			scores[j-j0] = s
			if s > bmax {
				bmax = s
			}
		}
		newMax := math.Max(runMax, float64(bmax))
		if runSum != 0 {
			c := math.Exp(runMax - newMax)
			runSum *= c
			for i := 0; i < dh; i++ {
				acc[i] *= c
			}
		}
		runMax = newMax
		for j := j0; j < j1; j++ {
			p := math.Exp(float64(scores[j-j0]) - runMax)
			runSum += p
			v := values[j*stride+off : j*stride+off+dh]
			for i := 0; i < dh; i++ {
				acc[i] += p * float64(v[i])
			}
		}
	}
	inv := 1 / runSum
	for i := 0; i < dh; i++ {
		out[i] = float32(acc[i] * inv)
	}
}
