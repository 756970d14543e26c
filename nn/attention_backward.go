package nn

import (
	"math"
	"sync"

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
// scale is 1/sqrt(Dh). The arithmetic is that of CausalAttentionHead (float32 scores
// and exponentials, float64 sums), so out matches the inference path bit for bit:
// the values are widened to float64 once (exactly) instead of once per query, and
// the weighted sum takes four keys per pass over the accumulator, each element
// still adding the keys' products one after another.
func CausalAttention(p *parallel.Pool, out []float32, lse []float64, qkv []float32, d AttnDims, scale float32) {
	if !d.valid() {
		panic("nn: CausalAttention: invalid dimensions") // programming error: callers validate configs
	}
	B, T, H, KVH, Dh := d.B, d.T, d.H, d.KVH, d.Dh
	Q := d.QKVDim()
	group := H / KVH
	KD := KVH * Dh
	vp := attnV64Pool.Get().(*[]float64)
	defer attnV64Pool.Put(vp)
	if cap(*vp) < B*T*KD {
		*vp = make([]float64, B*T*KD)
	}
	v64 := (*vp)[:B*T*KD] // [B·T, KVH·Dh] the values, widened
	p.For(B*T, 64, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			src := qkv[r*Q+H*Dh+KD : (r+1)*Q]
			dst := v64[r*KD : (r+1)*KD]
			for i, x := range src {
				dst[i] = float64(x)
			}
		}
	})
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
			base := b * T * Q
			vrow := func(j int) []float64 { return v64[(b*T+j)*KD+g*Dh : (b*T+j)*KD+(g+1)*Dh] }
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
				a := acc[:Dh]
				pb := scores[:j1-j0]
				runSum += kernel.ExpSubF32(pb, pb, float32(runMax))
				j := j0
				for ; j+4 <= j1; j += 4 {
					pj := pb[j-j0 : j-j0+4 : j-j0+4]
					accumulate4(a, float64(pj[0]), float64(pj[1]), float64(pj[2]), float64(pj[3]),
						vrow(j), vrow(j+1), vrow(j+2), vrow(j+3))
				}
				for ; j < j1; j++ {
					accumulate4(a, float64(pb[j-j0]), 0, 0, 0, vrow(j), nil, nil, nil)
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

// accumulate4 is accumulate for up to four keys in one pass over acc: acc[i] +=
// p0·v0[i], then += p1·v1[i], … in that order, each product and sum rounded (so
// exactly four accumulate calls in a row). A nil v1 (then v2, v3 nil too) stops
// after the first key.
func accumulate4(acc []float64, p0, p1, p2, p3 float64, v0, v1, v2, v3 []float64) {
	n := len(acc)
	v0 = v0[:n]
	if v1 == nil {
		for i := range acc {
			acc[i] += float64(p0 * v0[i])
		}
		return
	}
	v1, v2, v3 = v1[:n], v2[:n], v3[:n]
	for i := range acc {
		a := acc[i]
		a += float64(p0 * v0[i])
		a += float64(p1 * v1[i])
		a += float64(p2 * v2[i])
		a += float64(p3 * v3[i])
		acc[i] = a
	}
}

// attnV64Pool holds the widened values of CausalAttention.
var attnV64Pool = sync.Pool{New: func() any { return new([]float64) }}

// CausalAttentionBackward is the backward pass of CausalAttention. With
// P = softmax(scale·q·kᵀ) recomputed, dP = dout·vᵀ, Δ = Σ_i dout·out and
// dS = P ⊙ (dP − Δ), it writes
//
//	dq = scale·dS·k,  dk = scale·dSᵀ·q,  dv = Pᵀ·dout
//
// into dqkv in the fused layout (every element is overwritten).
//
// The work is one task per (sequence, kv head), run in parallel; inside a task the
// query heads of the group and a block of query positions form the rows of small
// GEMMs against the keys and values up to the block's last position (FlashAttention-2
// order, scores never stored for the whole sequence), so dk and dv accumulate in the
// task without races. Scores and products are float32 GEMMs and the softmax is
// kernel.SoftmaxF32; Δ and dS are formed in float64.
//
//	dqkv, qkv [B·T, QKVDim]; dout, out [B·T, H·Dh]; lse, delta [B·T, H] (lse is
//	unused: P is recomputed by a softmax; delta is scratch)
func CausalAttentionBackward(p *parallel.Pool, dqkv, dout, out []float32, lse, delta []float64, qkv []float32, d AttnDims, scale float32) {
	if !d.valid() {
		panic("nn: CausalAttentionBackward: invalid dimensions")
	}
	B, T, H, KVH, Dh := d.B, d.T, d.H, d.KVH, d.Dh
	HD := H * Dh
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
	group := H / KVH
	tb := max(1, attnRows/group) // query positions per block
	p.For(B*KVH, 1, func(lo, hi int) {
		sc := attnScratchPool.Get().(*attnScratch)
		defer attnScratchPool.Put(sc)
		sc.ensure(T, Dh, tb*group)
		for task := lo; task < hi; task++ {
			attnBackwardTask(sc, dqkv, dout, delta, qkv, d, scale, task/KVH, task%KVH, tb)
		}
	})
}

// attnRows is the target number of GEMM rows (query positions × heads of a group)
// per block of the attention backward.
const attnRows = 128

// attnScratch is one worker's buffers for attnBackwardTask.
type attnScratch struct {
	k, v, dk, dv []float32 // [T, Dh] the group's keys and values, their gradients
	q, do, dq    []float32 // [rows, Dh] a block of queries, their output gradients, dq
	s, dp, tr    []float32 // [rows, T] scores → probabilities, dP → dS; tr [T, rows]
}

var attnScratchPool = sync.Pool{New: func() any { return new(attnScratch) }}

func (sc *attnScratch) ensure(T, Dh, rows int) {
	g := func(b []float32, n int) []float32 {
		if cap(b) < n {
			return make([]float32, n)
		}
		return b[:n]
	}
	sc.k, sc.v, sc.dk, sc.dv = g(sc.k, T*Dh), g(sc.v, T*Dh), g(sc.dk, T*Dh), g(sc.dv, T*Dh)
	sc.q, sc.do, sc.dq = g(sc.q, rows*Dh), g(sc.do, rows*Dh), g(sc.dq, rows*Dh)
	sc.s, sc.dp, sc.tr = g(sc.s, rows*T), g(sc.dp, rows*T), g(sc.tr, rows*T)
}

// attnBackwardTask computes dq, dk and dv of sequence b and kv head g.
func attnBackwardTask(sc *attnScratch, dqkv, dout []float32, delta []float64, qkv []float32, d AttnDims, scale float32, b, g, tb int) {
	T, H, KVH, Dh := d.T, d.H, d.KVH, d.Dh
	Q := d.QKVDim()
	HD := H * Dh
	group := H / KVH
	kOff, vOff := H*Dh+g*Dh, (H+KVH)*Dh+g*Dh
	base := b * T
	for j := 0; j < T; j++ {
		row := qkv[(base+j)*Q:]
		copy(sc.k[j*Dh:(j+1)*Dh], row[kOff:kOff+Dh])
		copy(sc.v[j*Dh:(j+1)*Dh], row[vOff:vOff+Dh])
	}
	clear(sc.dk)
	clear(sc.dv)
	for t0 := 0; t0 < T; t0 += tb {
		t1 := min(t0+tb, T)
		rows := (t1 - t0) * group
		n := t1 // keys 0 … t1−1
		qb, dob, dqb := sc.q[:rows*Dh], sc.do[:rows*Dh], sc.dq[:rows*Dh]
		for t := t0; t < t1; t++ {
			r := base + t
			for hh := 0; hh < group; hh++ {
				h := g*group + hh
				i := (t-t0)*group + hh
				copy(qb[i*Dh:(i+1)*Dh], qkv[r*Q+h*Dh:r*Q+(h+1)*Dh])
				copy(dob[i*Dh:(i+1)*Dh], dout[r*HD+h*Dh:r*HD+(h+1)*Dh])
			}
		}
		S, dP := sc.s[:rows*n], sc.dp[:rows*n]
		kernel.MatMulT(nil, S, qb, rows, F32Mat(sc.k[:n*Dh], n, Dh))
		kernel.MatMulT(nil, dP, dob, rows, F32Mat(sc.v[:n*Dh], n, Dh))
		for i := 0; i < rows; i++ {
			t := t0 + i/group
			h := g*group + i%group
			pr, dpr := S[i*n:(i+1)*n], dP[i*n:(i+1)*n]
			m := t + 1 // causal: keys 0 … t
			kernel.ScaleAddF32(pr[:m], scale, 0, pr[:m])
			kernel.SoftmaxF32(pr[:m])
			clear(pr[m:])
			dl := delta[(base+t)*H+h]
			for j, pj := range pr[:m] {
				dpr[j] = float32(float64(pj) * (float64(dpr[j]) - dl))
			}
			clear(dpr[m:])
		}
		// dq = scale·dS·k
		kernel.MatMulN(nil, dqb, dP, rows, F32Mat(sc.k[:n*Dh], n, Dh), false)
		for t := t0; t < t1; t++ {
			r := base + t
			for hh := 0; hh < group; hh++ {
				h := g*group + hh
				i := (t-t0)*group + hh
				dq := dqkv[r*Q+h*Dh : r*Q+(h+1)*Dh]
				for c, v := range dqb[i*Dh : (i+1)*Dh] {
					dq[c] = v * scale
				}
			}
		}
		// dk += dSᵀ·q, dv += Pᵀ·dout
		tr := sc.tr[:n*rows]
		transpose(nil, tr, dP, rows, n)
		kernel.MatMulN(nil, sc.dk[:n*Dh], tr, n, F32Mat(qb, rows, Dh), true)
		transpose(nil, tr, S, rows, n)
		kernel.MatMulN(nil, sc.dv[:n*Dh], tr, n, F32Mat(dob, rows, Dh), true)
	}
	for j := 0; j < T; j++ {
		row := dqkv[(base+j)*Q:]
		dk := row[kOff : kOff+Dh]
		for c, v := range sc.dk[j*Dh : (j+1)*Dh] {
			dk[c] = v * scale
		}
		copy(row[vOff:vOff+Dh], sc.dv[j*Dh:(j+1)*Dh])
	}
}
