package nn

import (
	"math"

	"github.com/dbrx-engine/dbrx/internal/kernel"
)

// attnBlock is how many keys are scored at a time; scores live in a stack array so
// attention allocates nothing, and blocks are merged with the online-softmax rescale.
const attnBlock = 256

// MaxHeadDim bounds Dh for the stack accumulators of CausalAttentionHead and
// CausalAttentionGroup.
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

// CausalAttentionGroup computes the attention outputs of the G query heads of one
// GQA group, which share a key/value head, over the first n cached positions: the
// same result as CausalAttentionHead for each head (to float32 rounding of the
// scores), but every key and value row is read once for up to
// kernel.AttnGroupMax heads, and a block of keys is scored (kernel.AttnScoresF32)
// and summed into the outputs (kernel.AttnPVF32) by one kernel call each.
//
//	out, q [G·Dh] (head-major); keys, values: row j of the group at [j*stride + off : +Dh]
//
// Dh = len(q)/G must be at most MaxHeadDim.
// The numerics are those of CausalAttentionHead: per block of attnBlock keys the
// running max, float32 exp(s − max) by kernel.ExpSubF32 with a float64 running sum,
// and the float32 P·V added key by key (multiply, then add).
func CausalAttentionGroup(out, q []float32, G int, keys, values []float32, stride, off, n int, scale float32) {
	dh := len(q) / G
	const gm = kernel.AttnGroupMax
	// Up to gm heads at a time, state on the stack (decode allocates nothing):
	var acc [gm * MaxHeadDim]float32   // [gs, dh] the heads' unnormalised outputs
	var scores [gm * attnBlock]float32 // [gs, attnBlock] a block's scores, then exp(s − max)
	var runMax, runSum [gm]float64     // [gs] running max and Σ exp of each head
	for g0 := 0; g0 < G; g0 += gm {
		gs := min(gm, G-g0)
		qs := q[g0*dh : (g0+gs)*dh]
		a := acc[:gs*dh]
		clear(a)
		for g := range gs {
			runMax[g], runSum[g] = math.Inf(-1), 0
		}
		for j0 := 0; j0 < n; j0 += attnBlock {
			nb := min(attnBlock, n-j0)
			k := keys[j0*stride+off:]
			v := values[j0*stride+off:]
			kernel.AttnScoresF32(scores[:], attnBlock, qs, gs, dh, k, stride, nb, scale, v)
			for g := range gs {
				pb := scores[g*attnBlock : g*attnBlock+nb]
				newMax := math.Max(runMax[g], float64(kernel.MaxF32(pb)))
				if runSum[g] != 0 {
					c := math.Exp(runMax[g] - newMax)
					runSum[g] *= c
					c32 := float32(c)
					for i := range a[g*dh : (g+1)*dh] {
						a[g*dh+i] *= c32
					}
				}
				runMax[g] = newMax
				runSum[g] += kernel.ExpSubF32(pb, pb, float32(newMax))
			}
			kernel.AttnPVF32(a, gs, dh, scores[:], attnBlock, v, stride, nb)
		}
		for g := range gs {
			inv := 1 / runSum[g]
			o := out[(g0+g)*dh : (g0+g+1)*dh]
			for i, x := range a[g*dh : (g+1)*dh] {
				o[i] = float32(float64(x) * inv)
			}
		}
	}
}
