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
// scale is 1/sqrt(Dh). Softmax is taken in float32 like the reference: each block's
// exponentials exp(s − max) come from kernel.ExpSubF32 (exact differences, float32
// exp within 1 ulp); the running sum is float64 and the weighted sum of values is
// float32, added key by key with kernel.AxpyF32 (the reference's P·V is a float32
// matmul too), so the result is within ~1e-6 relative of a float64 softmax.
func CausalAttentionHead(out, q []float32, keys, values []float32, stride, off, n int, scale float32) {
	dh := len(q)
	var acc [MaxHeadDim]float32
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
			c32 := float32(c)
			for i := range acc[:dh] {
				acc[i] *= c32
			}
		}
		runMax = newMax
		pb := scores[:j1-j0]
		runSum += kernel.ExpSubF32(pb, pb, float32(runMax))
		for j := j0; j < j1; j++ {
			kernel.AxpyF32(acc[:dh], pb[j-j0], values[j*stride+off:j*stride+off+dh])
		}
	}
	inv := 1 / runSum
	for i := 0; i < dh; i++ {
		out[i] = float32(float64(acc[i]) * inv)
	}
}
