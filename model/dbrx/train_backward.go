package dbrx

import (
	"errors"
	"fmt"
	"math"

	"github.com/dbrx-engine/dbrx/internal/kernel"
	"github.com/dbrx-engine/dbrx/nn"
)

// backwardState is the scratch of the backward pass (and of the forward's experts).
type backwardState struct {
	dx, dh, dattn []float32   // [N, D]
	dqkv          []float32   // [N, QKV]
	delta         []float64   // [N, H]
	dtopW         []float32   // [N·K]
	dzr           []float32   // [N, E]
	dprobs, dzl   [][]float32 // [L][N, E] aux-loss and z-loss gradients
	dprobsFlat    []float32   // [L·N·E]
	dzlFlat       []float32   // [L·N·E]
	xe, dxe, dy   []float32   // [N, D] one expert's rows (an expert sees each token at most once)
	hh, dg, du    []float32   // [N, F]
	silu          [][]float32 // [L][N·K, F] silu(gate) of every assignment, in expert order
	dhf           []float32   // [N, D] gradient entering norm_f
	dhfKept       []float32   // [≤N, D] dhf of the rows with a target, gathered
	atb           []float32   // nn.MatMulATB transpose scratch
	dp            []float32   // [E]
	dw, wsel      []float32   // [K]
	// headDone: the last forward already added the LM head's gradient (LossAndGrad).
	headDone bool
}

// ensure sizes every buffer for batch b (and those of the fused LM-head gradient
// with headGrad).
func (s *TrainState) ensure(c Config, b Batch, opt TrainOptions, headGrad bool) {
	D, H, Dh := c.DModel, c.NHeads, c.HeadDim()
	E, K, F, V, L := c.FFNConfig.MoENumExperts, c.FFNConfig.MoETopK, c.FFNConfig.FFNHiddenSize, c.VocabSize, c.NLayers
	Q := c.QKVDim()
	N := b.B * b.T
	jitter := opt.Train && c.FFNConfig.MoEJitterEps != nil && *c.FFNConfig.MoEJitterEps > 0
	if len(s.xs) != L+1 {
		s.xs = make([][]float32, L+1)
		s.layers = make([]layerActs, L)
	}
	for i := range s.xs {
		s.xs[i] = grow(s.xs[i], N*D)
	}
	s.probsL = grow(s.probsL, L)
	s.rlogL = grow(s.rlogL, L)
	s.topL = grow(s.topL, L)
	for l := range s.layers {
		a := &s.layers[l]
		a.mean1, a.rstd1 = grow(a.mean1, N), grow(a.rstd1, N)
		a.mean2, a.rstd2 = grow(a.mean2, N), grow(a.rstd2, N)
		a.h1, a.h2, a.attn, a.xMid = grow(a.h1, N*D), grow(a.h2, N*D), grow(a.attn, N*D), grow(a.xMid, N*D)
		a.qkvPre, a.qkv = grow(a.qkvPre, N*Q), grow(a.qkv, N*Q)
		a.lse = grow(a.lse, N*H)
		if jitter {
			a.jit, a.rinBuf = grow(a.jit, N*D), grow(a.rinBuf, N*D)
		} else {
			a.jit, a.rinBuf = a.jit[:0], a.rinBuf[:0]
		}
		a.rlogits, a.probs = grow(a.rlogits, N*E), grow(a.probs, N*E)
		a.topIdx, a.topW = grow(a.topIdx, N*K), grow(a.topW, N*K)
		a.cnt, a.order = grow(a.cnt, E+1), grow(a.order, N*K)
		a.g, a.u, a.y = grow(a.g, N*K*F), grow(a.u, N*K*F), grow(a.y, N*K*D)
		s.probsL[l], s.rlogL[l], s.topL[l] = a.probs, a.rlogits, a.topIdx
	}
	s.meanF, s.rstdF, s.hf = grow(s.meanF, N), grow(s.rstdF, N), grow(s.hf, N*D)
	s.cos, s.sin = grow(s.cos, b.T*Dh/2), grow(s.sin, b.T*Dh/2)
	s.rowCE = grow(s.rowCE, N)
	s.headRows = grow(s.headRows, N)
	s.hfKept, s.tgKept, s.ceKept = grow(s.hfKept, N*D), grow(s.tgKept, N), grow(s.ceKept, N)
	R := headRows(N, V)
	s.logits = grow(s.logits, R*V)
	w := &s.bw
	w.xe, w.hh = grow(w.xe, N*D), grow(w.hh, N*F)
	w.silu = grow(w.silu, L)
	for l := range w.silu {
		w.silu[l] = grow(w.silu[l], N*K*F)
	}
	if headGrad {
		s.ensureHead(c, N)
	}
}

// ensureHead sizes the buffers of the LM-head gradient.
func (s *TrainState) ensureHead(c Config, N int) {
	w := &s.bw
	w.dhf, w.dhfKept = grow(w.dhf, N*c.DModel), grow(w.dhfKept, N*c.DModel)
}

// ensureBackward sizes the backward-only buffers.
func (s *TrainState) ensureBackward(c Config) {
	D, H := c.DModel, c.NHeads
	E, K, F, L := c.FFNConfig.MoENumExperts, c.FFNConfig.MoETopK, c.FFNConfig.FFNHiddenSize, c.NLayers
	N := s.n
	w := &s.bw
	w.dx, w.dh, w.dattn = grow(w.dx, N*D), grow(w.dh, N*D), grow(w.dattn, N*D)
	s.ensureHead(c, N)
	w.dqkv = grow(w.dqkv, N*c.QKVDim())
	w.delta = grow(w.delta, N*H)
	w.dtopW, w.dzr = grow(w.dtopW, N*K), grow(w.dzr, N*E)
	w.dprobsFlat, w.dzlFlat = grow(w.dprobsFlat, L*N*E), grow(w.dzlFlat, L*N*E)
	w.dprobs, w.dzl = grow(w.dprobs, L), grow(w.dzl, L)
	for l := 0; l < L; l++ {
		w.dprobs[l] = w.dprobsFlat[l*N*E : (l+1)*N*E]
		w.dzl[l] = w.dzlFlat[l*N*E : (l+1)*N*E]
	}
	w.dxe, w.dy = grow(w.dxe, N*D), grow(w.dy, N*D)
	w.dg, w.du = grow(w.dg, N*F), grow(w.du, N*F)
	w.dp, w.dw, w.wsel = grow(w.dp, E), grow(w.dw, K), grow(w.wsel, K)
}

// Losses returns the losses of the last successful Forward.
func (s *TrainState) Losses() Losses { return s.losses }

// Backward accumulates into g the gradient of GradScale·Total of the last Forward
// with respect to every parameter (g += ∂/∂θ; zero g first for a fresh gradient).
// g must have the layout of the Params passed to Forward. Top-k expert selection
// is not differentiated; the selected weights, their renormalisation and the
// router softmax are.
func (s *TrainState) Backward(g *Params) error {
	if !s.ready {
		return errors.New("dbrx: backward without a successful forward")
	}
	p := s.p
	if !p.sameLayout(g) {
		return errors.New("dbrx: backward: gradient layout does not match the parameters")
	}
	c := p.Config
	b, opt := s.batch, s.opt
	D, H, KVH, Dh := c.DModel, c.NHeads, c.AttnConfig.KVNHeads, c.HeadDim()
	E, K, F, V, L := c.FFNConfig.MoENumExperts, c.FFNConfig.MoETopK, c.FFNConfig.FFNHiddenSize, c.VocabSize, c.NLayers
	Q := c.QKVDim()
	N := s.n
	s.ensureBackward(c)
	w := &s.bw
	pv, gv := p.view(), g.view()
	pool := s.Pool
	gs := opt.GradScale
	if gs == 0 {
		gs = 1
	}

	// Router-loss gradients of every layer (they couple the layers only through
	// counts fixed in the forward).
	clear(w.dprobsFlat)
	clear(w.dzlFlat)
	var err error
	auxScale := float32(float64(gs) * c.FFNConfig.MoELossWeight)
	switch opt.AuxLoss {
	case AuxHF:
		_, err = nn.LoadBalancingLossHF(s.probsL, w.dprobs, N, E, K, auxScale)
	case AuxMegaBlocks:
		_, err = nn.LoadBalancingLossMegaBlocks(s.probsL, s.topL, w.dprobs, N, E, K, auxScale)
	}
	if err == nil && opt.ZLossWeight != 0 {
		_, err = nn.RouterZLoss(s.rlogL, w.dzl, N, E, float32(float64(gs)*opt.ZLossWeight))
	}
	if err != nil {
		return fmt.Errorf("dbrx: backward: %w", err)
	}

	// LM head and cross-entropy, recomputing the logits chunk by chunk.
	dx := w.dx[:N*D]
	clear(dx)
	if s.losses.Tokens > 0 {
		if !s.bw.headDone {
			if err := s.head(pv.lmHead, b.Targets, N, D, V, gs/float32(s.losses.Tokens), gv.lmHead); err != nil {
				return fmt.Errorf("dbrx: backward: %w", err)
			}
		}
		s.bw.headDone = false // a second Backward adds the whole gradient again
		nn.LayerNormBackward(pool, dx, gv.normF, w.dhf[:N*D], s.xs[L], s.meanF, s.rstdF, N, D, pv.normF)
	}

	dims := nn.AttnDims{B: b.B, T: b.T, H: H, KVH: KVH, Dh: Dh}
	scale := float32(1 / math.Sqrt(float64(Dh)))
	half := Dh / 2
	rope := nn.NewRoPE(Dh, c.AttnConfig.RopeTheta)
	normP := c.FFNConfig.MoENormalizeExpertWeights
	for l := L - 1; l >= 0; l-- {
		a := &s.layers[l]
		pw, gw := pv.blocks[l], gv.blocks[l]

		// ---- MoE: dx is the gradient of the block output = xMid + Σ w·y.
		dh := w.dh[:N*D]
		clear(dh)
		dtopW := w.dtopW[:N*K]
		for e := 0; e < E; e++ {
			lo, hi := a.cnt[e], a.cnt[e+1]
			ne := hi - lo
			if ne == 0 {
				continue
			}
			xe, dy, dxe := w.xe[:ne*D], w.dy[:ne*D], w.dxe[:ne*D]
			hh, dg, du := w.hh[:ne*F], w.dg[:ne*F], w.du[:ne*F]
			ge, ue, ye := a.g[lo*F:hi*F], a.u[lo*F:hi*F], a.y[lo*D:hi*D]
			order := a.order[lo:hi]
			sl := w.silu[l][lo*F : hi*F]
			pool.For(ne, 32, func(i0, i1 int) {
				for i := i0; i < i1; i++ {
					as := order[i]
					t := as / K
					copy(xe[i*D:(i+1)*D], a.h2[t*D:(t+1)*D])
					dxt := dx[t*D : (t+1)*D]
					// out_t += w̃·y: dy = w̃·dout, dw̃ = dout·y
					dtopW[as] = kernel.DotF32(dxt, ye[i*D:(i+1)*D])
					wa := a.topW[as]
					dyi := dy[i*D : (i+1)*D]
					for j, v := range dxt {
						dyi[j] = wa * v
					}
					hr, ur := hh[i*F:(i+1)*F], ue[i*F:(i+1)*F]
					for j, v := range sl[i*F : (i+1)*F] {
						hr[j] = v * ur[j] // the forward's hh, bit for bit
					}
				}
			})
			w1 := nn.F32Mat(pw.w1[e*F*D:(e+1)*F*D], F, D)
			v1 := nn.F32Mat(pw.v1[e*F*D:(e+1)*F*D], F, D)
			w2 := nn.F32Mat(pw.w2[e*F*D:(e+1)*F*D], F, D)
			// y = hh·W2: dhh = dy·W2ᵀ, dW2 += hhᵀ·dy
			kernel.MatMulT(pool, dg, dy, ne, w2)
			w.atb = nn.MatMulATB(pool, gw.w2[e*F*D:(e+1)*F*D], hh, dy, ne, F, D, w.atb)
			nn.SwiGLUBackwardSiLU(pool, dg, du, dg, ge, ue, sl)
			// g = xe·W1ᵀ, u = xe·V1ᵀ: dxe = dg·W1 + du·V1, dW1 += dgᵀ·xe, dV1 += duᵀ·xe
			kernel.MatMulN(pool, dxe, dg, ne, w1, false)
			kernel.MatMulN(pool, dxe, du, ne, v1, true)
			w.atb = nn.MatMulATB(pool, gw.w1[e*F*D:(e+1)*F*D], dg, xe, ne, F, D, w.atb)
			w.atb = nn.MatMulATB(pool, gw.v1[e*F*D:(e+1)*F*D], du, xe, ne, F, D, w.atb)
			pool.For(ne, 32, func(i0, i1 int) { // distinct tokens: disjoint rows of dh
				for i := i0; i < i1; i++ {
					t := order[i] / K
					kernel.AxpyF32(dh[t*D:(t+1)*D], 1, dxe[i*D:(i+1)*D])
				}
			})
		}
		// Router: w̃ = renorm(p[top]), p = softmax(z), z = rin·Wrᵀ.
		dzr := w.dzr[:N*E]
		for t := 0; t < N; t++ {
			pr := a.probs[t*E : (t+1)*E]
			idx := a.topIdx[t*K : (t+1)*K]
			for s, e := range idx {
				w.wsel[s] = pr[e]
			}
			nn.TopKNormBackward(w.dw, dtopW[t*K:(t+1)*K], w.wsel, normP)
			copy(w.dp, w.dprobs[l][t*E:(t+1)*E])
			for s, e := range idx {
				w.dp[e] += w.dw[s]
			}
			zr := dzr[t*E : (t+1)*E]
			nn.SoftmaxBackward(zr, w.dp, pr)
			for e, v := range w.dzl[l][t*E : (t+1)*E] {
				zr[e] += v
			}
		}
		router := nn.F32Mat(pw.router, E, D)
		w.atb = nn.MatMulATB(pool, gw.router, dzr, a.rin, N, E, D, w.atb)
		if len(a.jit) > 0 {
			drin := w.dxe[:N*D]
			kernel.MatMulN(pool, drin, dzr, N, router, false)
			for i, v := range drin {
				dh[i] += v * a.jit[i]
			}
		} else {
			kernel.MatMulN(pool, dh, dzr, N, router, true)
		}
		nn.LayerNormBackward(pool, dx, gw.norm2, dh, a.xMid, a.mean2, a.rstd2, N, D, pw.norm2)

		// ---- Attention: dx is now the gradient of xMid = x + attn·OutProjᵀ.
		dattn := w.dattn[:N*D]
		outProj := nn.F32Mat(pw.outProj, D, D)
		kernel.MatMulN(pool, dattn, dx, N, outProj, false)
		w.atb = nn.MatMulATB(pool, gw.outProj, dx, a.attn, N, D, D, w.atb)
		dqkv := w.dqkv[:N*Q]
		nn.CausalAttentionBackward(pool, dqkv, dattn, a.attn, a.lse, w.delta[:N*H], a.qkv, dims, scale)
		clip := c.AttnConfig.ClipQKV
		pool.For(N, 16, func(lo, hi int) {
			for r := lo; r < hi; r++ {
				t := r % b.T
				row := dqkv[r*Q : (r+1)*Q]
				cs, sn := s.cos[t*half:(t+1)*half], s.sin[t*half:(t+1)*half]
				rope.ApplyBackward(row[:D], H, cs, sn)
				rope.ApplyBackward(row[D:D+KVH*Dh], KVH, cs, sn)
				if clip != nil {
					nn.ClampBackward(row, row, a.qkvPre[r*Q:(r+1)*Q], float32(*clip))
				}
			}
		})
		kernel.MatMulN(pool, dh, dqkv, N, nn.F32Mat(pw.wqkv, Q, D), false)
		w.atb = nn.MatMulATB(pool, gw.wqkv, dqkv, a.h1, N, Q, D, w.atb)
		nn.LayerNormBackward(pool, dx, gw.norm1, dh, s.xs[l], a.mean1, a.rstd1, N, D, pw.norm1)
	}
	nn.EmbeddingBackward(gv.wte, dx, b.IDs, D)
	return nil
}

// LossAndGrad runs Forward and Backward: it returns the losses of batch b and
// accumulates d(GradScale·Total)/dθ into g.
func (s *TrainState) LossAndGrad(p *Params, b Batch, opt TrainOptions, g *Params) (Losses, error) {
	ls, err := s.forward(p, b, opt, g)
	if err != nil {
		return ls, err
	}
	return ls, s.Backward(g)
}
