package dbrx

import (
	"errors"
	"fmt"
	"math"

	"github.com/dbrx-engine/dbrx/internal/kernel"
	"github.com/dbrx-engine/dbrx/internal/parallel"
	"github.com/dbrx-engine/dbrx/nn"
)

// headChunkFloats bounds the logits chunk [R, V] of the LM head and loss, so a
// large vocabulary never needs the whole [N, V] logits in memory. Large chunks
// amortise streaming the [V, D] head weights through the GEMMs once per chunk.
const headChunkFloats = 1 << 26

// headRows returns the rows per logits chunk: the batch split into the fewest chunks
// within headChunkFloats, balanced.
func headRows(N, V int) int {
	R := max(1, min(N, headChunkFloats/V))
	chunks := (N + R - 1) / R
	return (N + chunks - 1) / chunks
}

// Forward runs the training forward pass of p over batch b, returns the losses and
// keeps the activations for Backward. It does not modify p.
func (s *TrainState) Forward(p *Params, b Batch, opt TrainOptions) (Losses, error) {
	return s.forward(p, b, opt, nil)
}

// forward is Forward; with g it also computes the gradient of the LM head and the
// loss while each logits chunk is at hand (g.lm_head += ..., and the gradient
// entering norm_f into s.bw.dhf), so that backward need not recompute the logits.
func (s *TrainState) forward(p *Params, b Batch, opt TrainOptions, g *Params) (Losses, error) {
	s.ready, s.bw.headDone = false, false
	if g != nil && (p == nil || !p.sameLayout(g)) {
		return Losses{}, errors.New("dbrx: backward: gradient layout does not match the parameters")
	}
	if p == nil || len(p.Data) != 3+8*p.Config.NLayers {
		return Losses{}, errors.New("dbrx: train forward: parameters not built by NewParams")
	}
	c := p.Config
	if err := checkTrain(c, b, opt); err != nil {
		return Losses{}, err
	}
	s.p, s.batch, s.opt = p, b, opt
	D, H, KVH, Dh := c.DModel, c.NHeads, c.AttnConfig.KVNHeads, c.HeadDim()
	E, K, F, V, L := c.FFNConfig.MoENumExperts, c.FFNConfig.MoETopK, c.FFNConfig.FFNHiddenSize, c.VocabSize, c.NLayers
	Q := c.QKVDim()
	N := b.B * b.T
	s.ensure(c, b, opt, g != nil)
	pv := p.view()
	pool := s.Pool

	nn.Embedding(s.xs[0], pv.wte, b.IDs, D)
	half := Dh / 2
	rope := nn.NewRoPE(Dh, c.AttnConfig.RopeTheta)
	for t := 0; t < b.T; t++ {
		rope.Tables(s.cos[t*half:(t+1)*half], s.sin[t*half:(t+1)*half], t)
	}
	dims := nn.AttnDims{B: b.B, T: b.T, H: H, KVH: KVH, Dh: Dh}
	scale := float32(1 / math.Sqrt(float64(Dh)))
	jitter := opt.Train && c.FFNConfig.MoEJitterEps != nil && *c.FFNConfig.MoEJitterEps > 0

	for l := 0; l < L; l++ {
		a := &s.layers[l]
		w := pv.blocks[l]
		x := s.xs[l]

		// Attention: h1 = LN(x); qkv = clamp(h1·Wqkvᵀ); rope; attend; project; residual.
		nn.LayerNormTrain(pool, a.h1, a.mean1, a.rstd1, x, N, D, w.norm1, LayerNormEps)
		kernel.MatMulT(pool, a.qkvPre, a.h1, N, nn.F32Mat(w.wqkv, Q, D))
		clip := c.AttnConfig.ClipQKV
		pool.For(N, 16, func(lo, hi int) {
			for r := lo; r < hi; r++ {
				t := r % b.T
				row := a.qkv[r*Q : (r+1)*Q]
				copy(row, a.qkvPre[r*Q:(r+1)*Q])
				if clip != nil {
					nn.Clamp(row, float32(*clip))
				}
				cs, sn := s.cos[t*half:(t+1)*half], s.sin[t*half:(t+1)*half]
				rope.Apply(row[:D], H, cs, sn)
				rope.Apply(row[D:D+KVH*Dh], KVH, cs, sn)
			}
		})
		nn.CausalAttention(pool, a.attn, a.lse, a.qkv, dims, scale)
		kernel.MatMulT(pool, a.xMid, a.attn, N, nn.F32Mat(w.outProj, D, D))
		addInto(pool, a.xMid, x) // proj + x: the inference path's x + proj, bit for bit

		// MoE: h2 = LN(xMid); route; experts over their tokens; weighted sum; residual.
		nn.LayerNormTrain(pool, a.h2, a.mean2, a.rstd2, a.xMid, N, D, w.norm2, LayerNormEps)
		a.rin = a.h2
		if jitter {
			eps := float32(*c.FFNConfig.MoEJitterEps)
			for i := range a.jit {
				a.jit[i] = 1 - eps + 2*eps*opt.Rand.Float32()
				a.rinBuf[i] = a.h2[i] * a.jit[i]
			}
			a.rin = a.rinBuf
		}
		kernel.MatMulT(pool, a.rlogits, a.rin, N, nn.F32Mat(w.router, E, D))
		normP := c.FFNConfig.MoENormalizeExpertWeights
		pool.For(N, 64, func(lo, hi int) {
			for t := lo; t < hi; t++ {
				pr := a.probs[t*E : (t+1)*E]
				copy(pr, a.rlogits[t*E:(t+1)*E])
				nn.Softmax(pr)
				nn.TopK(pr, K, normP, a.topIdx[t*K:(t+1)*K], a.topW[t*K:(t+1)*K])
			}
		})
		groupByExpert(a.cnt, a.order, a.topIdx, E)
		out := s.xs[l+1]
		clear(out)
		for e := 0; e < E; e++ {
			lo, hi := a.cnt[e], a.cnt[e+1]
			ne := hi - lo
			if ne == 0 {
				continue
			}
			xe := s.bw.xe[:ne*D]
			order := a.order[lo:hi]
			pool.For(ne, 32, func(i0, i1 int) {
				for i, as := range order[i0:i1] {
					t := as / K
					copy(xe[(i0+i)*D:(i0+i+1)*D], a.h2[t*D:(t+1)*D])
				}
			})
			ge, ue, ye := a.g[lo*F:hi*F], a.u[lo*F:hi*F], a.y[lo*D:hi*D]
			hh := s.bw.hh[:ne*F]
			kernel.MatMulT(pool, ge, xe, ne, nn.F32Mat(w.w1[e*F*D:(e+1)*F*D], F, D))
			kernel.MatMulT(pool, ue, xe, ne, nn.F32Mat(w.v1[e*F*D:(e+1)*F*D], F, D))
			// hh = silu(g)·u, keeping silu(g) for the backward.
			sl := s.bw.silu[l][lo*F : hi*F]
			nn.SwiGLUTrain(pool, hh, sl, ge, ue)
			kernel.MatMulN(pool, ye, hh, ne, nn.F32Mat(w.w2[e*F*D:(e+1)*F*D], F, D), false)
			// An expert sees a token at most once: the rows of out are disjoint.
			pool.For(ne, 32, func(i0, i1 int) {
				for i, as := range order[i0:i1] {
					t := as / K
					kernel.AxpyF32(out[t*D:(t+1)*D], a.topW[as], ye[(i0+i)*D:(i0+i+1)*D])
				}
			})
		}
		addInto(pool, out, a.xMid) // xMid + Σ w·y
	}

	// Final norm, LM head and cross-entropy, in row chunks.
	nn.LayerNormTrain(pool, s.hf, s.meanF, s.rstdF, s.xs[L], N, D, pv.normF, LayerNormEps)
	var ls Losses
	for _, t := range b.Targets {
		if t != IgnoreIndex {
			ls.Tokens++
		}
	}
	if ls.Tokens > 0 {
		var gLM []float32
		gs := opt.GradScale
		if gs == 0 {
			gs = 1
		}
		if g != nil {
			gLM = g.view().lmHead
		}
		if err := s.head(pv.lmHead, b.Targets, N, D, V, gs/float32(ls.Tokens), gLM); err != nil {
			return Losses{}, fmt.Errorf("dbrx: train forward: %w", err)
		}
		s.bw.headDone = g != nil
		var sum float64
		for _, v := range s.rowCE[:N] {
			sum += v
		}
		ls.CE = sum / float64(ls.Tokens)
	}
	var err error
	switch opt.AuxLoss {
	case AuxHF:
		ls.Aux, err = nn.LoadBalancingLossHF(s.probsL, nil, N, E, K, 0)
	case AuxMegaBlocks:
		ls.Aux, err = nn.LoadBalancingLossMegaBlocks(s.probsL, s.topL, nil, N, E, K, 0)
	}
	if err == nil && opt.ZLossWeight != 0 {
		ls.Z, err = nn.RouterZLoss(s.rlogL, nil, N, E, 0)
	}
	if err != nil {
		return Losses{}, fmt.Errorf("dbrx: train forward: %w", err)
	}
	ls.Total = ls.CE + c.FFNConfig.MoELossWeight*ls.Aux + opt.ZLossWeight*ls.Z
	s.losses = ls
	s.n = N
	s.ready = true
	return ls, nil
}

// addInto adds src to dst elementwise (dst[i] += src[i], the sum rounded once), in
// chunks over pool.
//
//	dst, src [n]
func addInto(pool *parallel.Pool, dst, src []float32) {
	src = src[:len(dst)]
	pool.For(len(dst), 1<<14, func(lo, hi int) {
		kernel.AxpyF32(dst[lo:hi], 1, src[lo:hi]) // 1·x is x: one rounding, as +=
	})
}

// checkTrain validates a batch and options against the config.
func checkTrain(c Config, b Batch, opt TrainOptions) error {
	if c.HeadDim() > nn.MaxHeadDim {
		return fmt.Errorf("dbrx: train: head dim %d exceeds %d", c.HeadDim(), nn.MaxHeadDim)
	}
	if b.B <= 0 || b.T <= 0 {
		return fmt.Errorf("dbrx: train: batch shape [%d, %d] must be positive", b.B, b.T)
	}
	if len(b.IDs) != b.B*b.T || len(b.Targets) != b.B*b.T {
		return fmt.Errorf("dbrx: train: batch [%d, %d] needs %d ids and targets, have %d and %d",
			b.B, b.T, b.B*b.T, len(b.IDs), len(b.Targets))
	}
	V := c.VocabSize
	for i, id := range b.IDs {
		if id < 0 || id >= V {
			return fmt.Errorf("dbrx: train: token %d at index %d is outside the vocabulary [0, %d)", id, i, V)
		}
	}
	for i, t := range b.Targets {
		if t != IgnoreIndex && (t < 0 || t >= V) {
			return fmt.Errorf("dbrx: train: target %d at index %d is outside the vocabulary [0, %d) and is not %d", t, i, V, IgnoreIndex)
		}
	}
	switch opt.AuxLoss {
	case AuxMegaBlocks, AuxHF, AuxNone:
	default:
		return fmt.Errorf("dbrx: train: unknown aux loss %d", int(opt.AuxLoss))
	}
	if math.IsNaN(opt.ZLossWeight) || math.IsInf(opt.ZLossWeight, 0) || opt.ZLossWeight < 0 {
		return fmt.Errorf("dbrx: train: z-loss weight %v must be finite and non-negative", opt.ZLossWeight)
	}
	if opt.Train {
		if c.ResidPdrop != 0 || c.EmbPdrop != 0 || c.AttnConfig.AttnPdrop != 0 {
			return errors.New("dbrx: train: dropout (resid_pdrop, emb_pdrop, attn_pdrop > 0) is not implemented")
		}
		if e := c.FFNConfig.MoEJitterEps; e != nil && *e > 0 && opt.Rand == nil {
			return errors.New("dbrx: train: moe_jitter_eps > 0 in training mode needs TrainOptions.Rand")
		}
	}
	return nil
}

// groupByExpert is a stable counting sort of the (token, slot) assignments by
// expert: order[cnt[e]:cnt[e+1]] lists the assignments a = t·K+s of expert e.
//
//	cnt [E+1]; order, topIdx [N·K]
func groupByExpert(cnt, order, topIdx []int, E int) {
	clear(cnt)
	for _, e := range topIdx {
		cnt[e+1]++
	}
	for e := 0; e < E; e++ {
		cnt[e+1] += cnt[e]
	}
	for a, e := range topIdx {
		order[cnt[e]] = a
		cnt[e]++
	}
	for e := E; e > 0; e-- {
		cnt[e] = cnt[e-1]
	}
	cnt[0] = 0
}

// AddExpertCounts adds to dst [L·E] (layer-major) the number of (token, slot)
// assignments each expert of each layer received in the last successful Forward, and
// returns that forward's token count (B·T; 0 and nothing added if there was none).
// Each token is routed to top_k experts per layer.
func (s *TrainState) AddExpertCounts(dst []int64) int {
	if !s.ready {
		return 0
	}
	E := s.p.Config.FFNConfig.MoENumExperts
	for l := range s.layers {
		cnt := s.layers[l].cnt
		for e := 0; e < E; e++ {
			dst[l*E+e] += int64(cnt[e+1] - cnt[e])
		}
	}
	return s.n
}

// head runs the LM head and cross-entropy over row chunks of s.hf, writing each
// row's loss into s.rowCE. With gLM it also takes the gradient of ceScale·Σ CE:
// s.bw.dhf [N, D] = dlogits·W and gLM [V, D] += dlogitsᵀ·hf, the latter with
// kernel.MatMulATB straight from the chunk of dlogits (no transposes, no scratch).
// Only rows with a target go through the head: when some are IgnoreIndex (the last
// position of every sequence, the prompt of a fine-tuning example) the others are
// gathered first, and the ignored rows get loss 0 and gradient 0.
//
//	lm [V, D]; targets [N]
func (s *TrainState) head(lm []float32, targets []int, N, D, V int, ceScale float32, gLM []float32) error {
	pool := s.Pool
	grad := gLM != nil
	w := &s.bw
	keep := s.headRows[:0]
	for r, t := range targets {
		if t != IgnoreIndex {
			keep = append(keep, r)
		}
	}
	s.headRows = keep
	nk := len(keep)
	if s.headAll {
		nk = N // test: every row through the head, ignored ones included
	}
	hfK, tgK, ceK, dhfK := s.hf[:N*D], targets, s.rowCE[:N], w.dhf // dhf: [N, D] with gLM
	if nk < N {
		hfK, tgK, ceK, dhfK = s.hfKept[:nk*D], s.tgKept[:nk], s.ceKept[:nk], w.dhfKept
		pool.For(nk, 64, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				r := keep[i]
				copy(hfK[i*D:(i+1)*D], s.hf[r*D:(r+1)*D])
				tgK[i] = targets[r]
			}
		})
	}
	R := headRows(nk, V)
	s.logits = grow(s.logits, R*V) // R can exceed headRows(N, V) (N = 669, nk = 668)
	W := nn.F32Mat(lm, V, D)
	for r0 := 0; r0 < nk; r0 += R {
		r1 := min(r0+R, nk)
		n := r1 - r0
		lg := s.logits[:n*V]
		hf := hfK[r0*D : r1*D]
		kernel.MatMulT(pool, lg, hf, n, W)
		if err := nn.CrossEntropy(pool, ceK[r0:r1], lg, tgK[r0:r1], V, ceScale, grad); err != nil {
			return err
		}
		if !grad {
			continue
		}
		kernel.MatMulN(pool, dhfK[r0*D:r1*D], lg, n, W, false)
		kernel.MatMulATB(pool, gLM, lg, hf, n, V, D, true)
	}
	if nk < N {
		clear(s.rowCE[:N])
		for i, r := range keep {
			s.rowCE[r] = ceK[i]
		}
		if grad {
			dhf := w.dhf[:N*D]
			clear(dhf)
			pool.For(nk, 64, func(lo, hi int) {
				for i := lo; i < hi; i++ {
					r := keep[i]
					copy(dhf[r*D:(r+1)*D], dhfK[i*D:(i+1)*D])
				}
			})
		}
	}
	return nil
}
