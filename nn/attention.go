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
// exp within 1 ulp); the running sum and the weighted sum of values are float64,
// which keeps the result within a few ulp of a single-pass softmax.
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
		pb := scores[:j1-j0]
		runSum += kernel.ExpSubF32(pb, pb, float32(runMax))
		for j := j0; j < j1; j++ {
			accumulate(acc[:dh], float64(pb[j-j0]), values[j*stride+off:j*stride+off+dh])
		}
	}
	inv := 1 / runSum
	for i := 0; i < dh; i++ {
		out[i] = float32(acc[i] * inv)
	}
}

// accumulate does acc[i] += p·v[i] in float64, each product and sum rounded as the
// plain loop rounds them (unrolled by four; the conversions rule out a fused
// multiply-add).
func accumulate(acc []float64, p float64, v []float32) {
	v = v[:len(acc)]
	i := 0
	for ; i+4 <= len(acc); i += 4 {
		a, w := acc[i:i+4:i+4], v[i:i+4:i+4]
		a[0] += float64(p * float64(w[0]))
		a[1] += float64(p * float64(w[1]))
		a[2] += float64(p * float64(w[2]))
		a[3] += float64(p * float64(w[3]))
	}
	for ; i < len(acc); i++ {
		acc[i] += float64(p * float64(v[i]))
	}
}
