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

// CausalAttention is the training forward of causal GQA attention. It writes every
// head's output and the log-sum-exp of its scaled scores.
//
//	out [B·T, H·Dh]; lse [B·T, H]; qkv [B·T, QKVDim] (q and k already rotated)
//
// scale is 1/sqrt(Dh). The work is laid out as in CausalAttentionBackward: one task
// per (sequence, kv head), run in parallel; inside a task the query heads of the
// group and a block of query positions form the rows of two small GEMMs, scores
// S = q·kᵀ against the keys up to the block's last position and out = P·v. Each row
// of P is the softmax of its causal part (scale·S, max by kernel.MaxF32, exp and sum
// by kernel.ExpSubF32, times 1/sum), the same float32 probabilities that the backward
// recomputes. Products and the weighted sums are float32 (as in the reference); the
// result is within ~1e-6 relative of CausalAttentionHead, which scores and adds
// the values key by key.
func CausalAttention(p *parallel.Pool, out []float32, lse []float64, qkv []float32, d AttnDims, scale float32) {
	if !d.valid() {
		panic("nn: CausalAttention: invalid dimensions") // programming error: callers validate configs
	}
	forKVHeads(p, d, func(sc *attnScratch, b, g, tb int) { attnForwardTask(sc, out, lse, qkv, d, scale, b, g, tb) })
}

// forKVHeads runs task(b, g) for every sequence b and kv head g in parallel, each
// with a worker's scratch sized for blocks of tb query positions.
func forKVHeads(p *parallel.Pool, d AttnDims, task func(sc *attnScratch, b, g, tb int)) {
	group := d.H / d.KVH
	tb := max(1, attnRows/group) // query positions per block
	p.For(d.B*d.KVH, 1, func(lo, hi int) {
		sc := attnScratchPool.Get().(*attnScratch)
		defer attnScratchPool.Put(sc)
		sc.ensure(d.T, d.Dh, tb*group)
		for i := lo; i < hi; i++ {
			task(sc, i/d.KVH, i%d.KVH, tb)
		}
	})
}

// blockRows calls fn(i, r, h) for the GEMM rows of query positions t0 … t1−1 of
// sequence b and the query heads of kv head g: row i = (t−t0)·group + (h mod group)
// holds token r = b·T + t, head h.
func blockRows(d AttnDims, b, g, t0, t1 int, fn func(i, r, h int)) {
	group := d.H / d.KVH
	for t := t0; t < t1; t++ {
		for hh := 0; hh < group; hh++ {
			fn((t-t0)*group+hh, b*d.T+t, g*group+hh)
		}
	}
}

// attnForwardTask computes the outputs and lse of sequence b's query heads of kv
// head g.
func attnForwardTask(sc *attnScratch, out []float32, lse []float64, qkv []float32, d AttnDims, scale float32, b, g, tb int) {
	T, H, KVH, Dh := d.T, d.H, d.KVH, d.Dh
	Q := d.QKVDim()
	HD := H * Dh
	group := H / KVH
	base := b * T
	sc.loadKV(qkv, d, b, g)
	for t0 := 0; t0 < T; t0 += tb {
		t1 := min(t0+tb, T)
		rows := (t1 - t0) * group
		n := t1 // keys 0 … t1−1
		qb, ob := sc.q[:rows*Dh], sc.dq[:rows*Dh]
		blockRows(d, b, g, t0, t1, func(i, r, h int) {
			copy(qb[i*Dh:(i+1)*Dh], qkv[r*Q+h*Dh:r*Q+(h+1)*Dh])
		})
		S := sc.s[:rows*n]
		kernel.MatMulT(nil, S, qb, rows, F32Mat(sc.k[:n*Dh], n, Dh))
		for i := 0; i < rows; i++ {
			t := t0 + i/group
			h := g*group + i%group
			pr := S[i*n : (i+1)*n]
			m := t + 1 // causal: keys 0 … t
			kernel.ScaleAddF32(pr[:m], scale, 0, pr[:m])
			mx := kernel.MaxF32(pr[:m])
			sum := kernel.ExpSubF32(pr[:m], pr[:m], mx)
			kernel.ScaleAddF32(pr[:m], float32(1/sum), 0, pr[:m])
			clear(pr[m:])
			lse[(base+t)*H+h] = float64(mx) + math.Log(sum)
		}
		kernel.MatMulN(nil, ob, S, rows, F32Mat(sc.v[:n*Dh], n, Dh), false)
		blockRows(d, b, g, t0, t1, func(i, r, h int) {
			copy(out[r*HD+h*Dh:r*HD+(h+1)*Dh], ob[i*Dh:(i+1)*Dh])
		})
	}
}

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
	H, Dh := d.H, d.Dh
	HD := H * Dh
	N := d.B * d.T
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
	forKVHeads(p, d, func(sc *attnScratch, b, g, tb int) {
		attnBackwardTask(sc, dqkv, dout, delta, qkv, d, scale, b, g, tb)
	})
}

// attnRows is the target number of GEMM rows (query positions × heads of a group)
// per block of the attention forward and backward.
const attnRows = 128

// attnScratch is one worker's buffers for attnForwardTask and attnBackwardTask.
type attnScratch struct {
	k, v, dk, dv []float32 // [T, Dh] the group's keys and values, their gradients
	q, do, dq    []float32 // [rows, Dh] a block of queries, their output gradients, dq (the forward's output)
	s, dp        []float32 // [rows, T] scores → probabilities, dP → dS
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
	sc.s, sc.dp = g(sc.s, rows*T), g(sc.dp, rows*T)
}

// loadKV copies the keys and values of sequence b and kv head g into sc.k, sc.v.
func (sc *attnScratch) loadKV(qkv []float32, d AttnDims, b, g int) {
	T, H, KVH, Dh := d.T, d.H, d.KVH, d.Dh
	Q := d.QKVDim()
	kOff, vOff := H*Dh+g*Dh, (H+KVH)*Dh+g*Dh
	for j := 0; j < T; j++ {
		row := qkv[(b*T+j)*Q:]
		copy(sc.k[j*Dh:(j+1)*Dh], row[kOff:kOff+Dh])
		copy(sc.v[j*Dh:(j+1)*Dh], row[vOff:vOff+Dh])
	}
}

// attnBackwardTask computes dq, dk and dv of sequence b and kv head g.
func attnBackwardTask(sc *attnScratch, dqkv, dout []float32, delta []float64, qkv []float32, d AttnDims, scale float32, b, g, tb int) {
	T, H, KVH, Dh := d.T, d.H, d.KVH, d.Dh
	Q := d.QKVDim()
	HD := H * Dh
	group := H / KVH
	kOff, vOff := H*Dh+g*Dh, (H+KVH)*Dh+g*Dh
	base := b * T
	sc.loadKV(qkv, d, b, g)
	clear(sc.dk)
	clear(sc.dv)
	for t0 := 0; t0 < T; t0 += tb {
		t1 := min(t0+tb, T)
		rows := (t1 - t0) * group
		n := t1 // keys 0 … t1−1
		qb, dob, dqb := sc.q[:rows*Dh], sc.do[:rows*Dh], sc.dq[:rows*Dh]
		blockRows(d, b, g, t0, t1, func(i, r, h int) {
			copy(qb[i*Dh:(i+1)*Dh], qkv[r*Q+h*Dh:r*Q+(h+1)*Dh])
			copy(dob[i*Dh:(i+1)*Dh], dout[r*HD+h*Dh:r*HD+(h+1)*Dh])
		})
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
		blockRows(d, b, g, t0, t1, func(i, r, h int) {
			dq := dqkv[r*Q+h*Dh : r*Q+(h+1)*Dh]
			for c, v := range dqb[i*Dh : (i+1)*Dh] {
				dq[c] = v * scale
			}
		})
		// dk += dSᵀ·q, dv += Pᵀ·dout
		kernel.MatMulATB(nil, sc.dk[:n*Dh], dP, qb, rows, n, Dh, true)
		kernel.MatMulATB(nil, sc.dv[:n*Dh], S, dob, rows, n, Dh, true)
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
