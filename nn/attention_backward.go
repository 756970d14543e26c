package nn

import (
	"math"

	"github.com/dbrx-engine/dbrx/internal/kernel"
	"github.com/dbrx-engine/dbrx/internal/parallel"
)

// AttnDims describes causal grouped-query self-attention over B sequences of T
// tokens each (positions 0…T−1), with q, k and v side by side in one fused row per
// token, exactly as DBRX's Wqkv produces them:
//
//	row = [ q: H·Dh | k: KVH·Dh | v: KVH·Dh ]
//
// Query head h reads kv head h / (H/KVH).
type AttnDims struct {
	B, T, H, KVH, Dh int
}

// QKVDim is the width of one fused row, (H + 2·KVH)·Dh.
func (d AttnDims) QKVDim() int { return (d.H + 2*d.KVH) * d.Dh }

func (d AttnDims) valid() bool {
	return d.B > 0 && d.T > 0 && d.H > 0 && d.KVH > 0 && d.Dh > 0 && d.H%d.KVH == 0 && d.Dh <= MaxHeadDim
}

// zigzag maps a task index in [0, n) to a token index so that consecutive tasks
// alternate between cheap early and expensive late query positions: the contiguous
// chunks parallel.Pool.For hands out then cost about the same.
func zigzag(i, n int) int {
	if i%2 == 0 {
		return i / 2
	}
	return n - 1 - i/2
}

// CausalAttention is the training forward of causal GQA attention. It writes every
// head's output and the log-sum-exp of its scaled scores, which the backward pass
// uses to recompute the probabilities instead of storing them.
//
//	out [B·T, H·Dh]; lse [B·T, H]; qkv [B·T, QKVDim] (q and k already rotated)
//
// scale is 1/sqrt(Dh). The arithmetic is that of CausalAttentionHead (float32 scores,
// float64 exp and accumulation), so out matches the inference path.
func CausalAttention(p *parallel.Pool, out []float32, lse []float64, qkv []float32, d AttnDims, scale float32) {
	if !d.valid() {
		panic("nn: CausalAttention: invalid dimensions") // programming error: callers validate configs
	}
	B, T, H, KVH, Dh := d.B, d.T, d.H, d.KVH, d.Dh
	Q := d.QKVDim()
	group := H / KVH
	p.For(B*T*H, 4, func(lo, hi int) {
		var acc [MaxHeadDim]float64
		var scores [attnBlock]float32
		for task := lo; task < hi; task++ {
			h := task % H
			b := (task / H) % B
			t := zigzag(task/(H*B), T)
			g := h / group
			row := (b*T + t) * Q
			q := qkv[row+h*Dh : row+(h+1)*Dh]
			kOff := H*Dh + g*Dh
			vOff := (H+KVH)*Dh + g*Dh
			base := b * T * Q
			runMax := math.Inf(-1)
			var runSum float64
			clear(acc[:Dh])
			for j0 := 0; j0 <= t; j0 += attnBlock {
				j1 := min(j0+attnBlock, t+1)
				bmax := float32(math.Inf(-1))
				for j := j0; j < j1; j++ {
					k := qkv[base+j*Q+kOff : base+j*Q+kOff+Dh]
					s := kernel.DotF32(q, k) * scale
					scores[j-j0] = s
					bmax = max(bmax, s)
				}
				newMax := math.Max(runMax, float64(bmax))
				if runSum != 0 {
					c := math.Exp(runMax - newMax)
					runSum *= c
					for i := 0; i < Dh; i++ {
						acc[i] *= c
					}
				}
				runMax = newMax
				for j := j0; j < j1; j++ {
					pj := math.Exp(float64(scores[j-j0]) - runMax)
					runSum += pj
					v := qkv[base+j*Q+vOff : base+j*Q+vOff+Dh]
					for i := 0; i < Dh; i++ {
						acc[i] += pj * float64(v[i])
					}
				}
			}
			inv := 1 / runSum
			o := out[(b*T+t)*H*Dh+h*Dh : (b*T+t)*H*Dh+(h+1)*Dh]
			for i := range o {
				o[i] = float32(acc[i] * inv)
			}
			lse[(b*T+t)*H+h] = runMax + math.Log(runSum)
		}
	})
}

// CausalAttentionBackward is the backward pass of CausalAttention. With
// P = softmax(scale·q·kᵀ) recomputed from lse, dP = dout·vᵀ, Δ = Σ_i dout·out and
// dS = P ⊙ (dP − Δ), it writes
//
//	dq = scale·dS·k,  dk = scale·dSᵀ·q,  dv = Pᵀ·dout
//
// into dqkv in the fused layout (every element is overwritten). Queries are handled
// in one parallel pass and keys/values in another, so no two workers write the same
// row.
//
//	dqkv, qkv [B·T, QKVDim]; dout, out [B·T, H·Dh]; lse, delta [B·T, H] (delta is scratch)
func CausalAttentionBackward(p *parallel.Pool, dqkv, dout, out []float32, lse, delta []float64, qkv []float32, d AttnDims, scale float32) {
	if !d.valid() {
		panic("nn: CausalAttentionBackward: invalid dimensions")
	}
	B, T, H, KVH, Dh := d.B, d.T, d.H, d.KVH, d.Dh
	Q := d.QKVDim()
	HD := H * Dh
	group := H / KVH
	N := B * T
	p.For(N, 16, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			for h := 0; h < H; h++ {
				o := out[r*HD+h*Dh : r*HD+(h+1)*Dh]
				do := dout[r*HD+h*Dh : r*HD+(h+1)*Dh]
				var s float64
				for i, v := range o {
					s += float64(v) * float64(do[i])
				}
				delta[r*H+h] = s
			}
		}
	})
	// Pass 1: dq for every (sequence, query position, head).
	p.For(N*H, 4, func(lo, hi int) {
		for task := lo; task < hi; task++ {
			h := task % H
			b := (task / H) % B
			t := zigzag(task/(H*B), T)
			g := h / group
			r := b*T + t
			q := qkv[r*Q+h*Dh : r*Q+(h+1)*Dh]
			do := dout[r*HD+h*Dh : r*HD+(h+1)*Dh]
			dq := dqkv[r*Q+h*Dh : r*Q+(h+1)*Dh]
			clear(dq)
			l, dl := lse[r*H+h], delta[r*H+h]
			kOff := H*Dh + g*Dh
			vOff := (H+KVH)*Dh + g*Dh
			base := b * T * Q
			for j := 0; j <= t; j++ {
				k := qkv[base+j*Q+kOff : base+j*Q+kOff+Dh]
				v := qkv[base+j*Q+vOff : base+j*Q+vOff+Dh]
				pj := math.Exp(float64(kernel.DotF32(q, k)*scale) - l)
				ds := pj * (float64(kernel.DotF32(do, v)) - dl)
				kernel.AxpyF32(dq, float32(ds)*scale, k)
			}
		}
	})
	// Pass 2: dk and dv for every (sequence, key position, kv head), summing over
	// the query heads of the group and the positions at or after the key.
	p.For(N*KVH, 2, func(lo, hi int) {
		for task := lo; task < hi; task++ {
			g := task % KVH
			b := (task / KVH) % B
			// Key j is read by T−j queries: reverse the zigzag so cost stays balanced.
			j := zigzag(task/(KVH*B), T)
			r := b*T + j
			kOff := H*Dh + g*Dh
			vOff := (H+KVH)*Dh + g*Dh
			k := qkv[r*Q+kOff : r*Q+kOff+Dh]
			v := qkv[r*Q+vOff : r*Q+vOff+Dh]
			dk := dqkv[r*Q+kOff : r*Q+kOff+Dh]
			dv := dqkv[r*Q+vOff : r*Q+vOff+Dh]
			clear(dk)
			clear(dv)
			for t := j; t < T; t++ {
				rt := b*T + t
				for h := g * group; h < (g+1)*group; h++ {
					q := qkv[rt*Q+h*Dh : rt*Q+(h+1)*Dh]
					do := dout[rt*HD+h*Dh : rt*HD+(h+1)*Dh]
					pj := math.Exp(float64(kernel.DotF32(q, k)*scale) - lse[rt*H+h])
					ds := pj * (float64(kernel.DotF32(do, v)) - delta[rt*H+h])
					kernel.AxpyF32(dk, float32(ds)*scale, q)
					kernel.AxpyF32(dv, float32(pj), do)
				}
			}
		}
	})
}
