package nn

import (
	"fmt"
	"math"

	"github.com/dbrx-engine/dbrx/internal/kernel"
	"github.com/dbrx-engine/dbrx/internal/parallel"
)

// IgnoreIndex is the label that contributes no loss (PyTorch's cross_entropy default).
const IgnoreIndex = -100

// LogSumExp returns log Σ exp(x_i) in float64, stable for large values.
// It is −Inf for an empty row.
func LogSumExp(x []float32) float64 {
	m := math.Inf(-1)
	for _, v := range x {
		m = math.Max(m, float64(v))
	}
	if math.IsInf(m, 0) {
		return m
	}
	var s float64
	for _, v := range x {
		s += math.Exp(float64(v) - m)
	}
	return m + math.Log(s)
}

// CrossEntropy writes each row's loss lse(row) − row[label] into loss (0 for rows
// labelled IgnoreIndex). logits is scratch: on return each counted row holds its
// softmax, or with grad its gradient scale·(softmax(row) − onehot(label)) (the mean
// over n counted rows is scale = 1/n); ignored rows are zeroed with grad and left
// alone without.
//
//	logits [R, V]; labels, loss [R]
//
// Each row takes two vectorised passes. The first goes block by block (ceBlock
// values, so a block read from memory stays in L1 for its second look): the block's
// maximum m_b (kernel.MaxF32), then e = exp(x − m_b) with s_b = Σ e in float64
// (kernel.ExpSubF32: exact differences, float32 exp within 1 ulp). With m the row's
// maximum and s = Σ_b s_b·exp(m_b − m), the second pass scales block b by
// exp(m_b − m)/s (scale times that with grad), rounded to float32 once: the same
// roundings as exp(x − m)/s. The loss is lse − x_l = (m − x_l) + log s in float64,
// within ~1e-7 of the float64 value and finite however small p_label is. A label
// outside [0, V) other than IgnoreIndex is an error and nothing is written.
func CrossEntropy(p *parallel.Pool, loss []float64, logits []float32, labels []int, V int, scale float32, grad bool) error {
	R := len(labels)
	if len(logits) < R*V || len(loss) < R {
		return fmt.Errorf("nn: cross entropy: %d labels need logits [%d, %d] and loss [%d], have %d and %d",
			R, R, V, R, len(logits), len(loss))
	}
	for i, l := range labels {
		if l != IgnoreIndex && (l < 0 || l >= V) {
			return fmt.Errorf("nn: cross entropy: label %d at row %d is outside [0, %d) and is not the ignore index %d", l, i, V, IgnoreIndex)
		}
	}
	nb := (V + ceBlock - 1) / ceBlock
	p.For(R, 1, func(lo, hi int) {
		mb := make([]float32, nb) // block maxima of the current row
		for r := lo; r < hi; r++ {
			row := logits[r*V : (r+1)*V]
			l := labels[r]
			if l == IgnoreIndex {
				loss[r] = 0
				if grad {
					clear(row)
				}
				continue
			}
			xl := row[l]
			m, s := float32(math.Inf(-1)), 0.0
			for b := range mb {
				blk := row[b*ceBlock : min((b+1)*ceBlock, V)]
				bm := kernel.MaxF32(blk)
				mb[b] = bm
				if math.IsInf(float64(bm), -1) { // nothing to add; exp(−Inf − (−Inf)) would be NaN
					clear(blk)
					continue
				}
				bs := kernel.ExpSubF32(blk, blk, bm)
				switch {
				case bm > m:
					s = s*math.Exp(float64(m)-float64(bm)) + bs
					m = bm
				case bm <= m:
					s += bs * math.Exp(float64(bm)-float64(m))
				default: // NaN
					m, s = bm, math.NaN()
				}
			}
			loss[r] = float64(m) - float64(xl) + math.Log(s)
			c := 1 / s
			if grad {
				c = float64(scale) / s
			}
			for b, bm := range mb {
				blk := row[b*ceBlock : min((b+1)*ceBlock, V)]
				kernel.ScaleAddF32(blk, float32(c*math.Exp(float64(bm)-float64(m))), 0, blk)
			}
			if grad {
				row[l] -= scale
			}
		}
	})
	return nil
}

// ceBlock is the block length of CrossEntropy's first pass: 8 KiB of logits.
const ceBlock = 2048

// checkRouter validates the per-layer router tensors of the auxiliary losses.
func checkRouter(what string, x [][]float32, N, E int) error {
	for l, v := range x {
		if len(v) < N*E {
			return fmt.Errorf("nn: %s: layer %d has %d values, need [%d, %d]", what, l, len(v), N, E)
		}
	}
	return nil
}

// LoadBalancingLossHF is the auxiliary loss exactly as Hugging Face's
// load_balancing_loss_func computes it for DBRX (transformers 4.40–4.53, no attention
// mask): the router probabilities of all layers are stacked into G [L·N, E] and
// softmaxed a second time, r = softmax(G); the top-k experts of each row of r are
// counted (n_e over all rows and slots) and
//
//	aux = E · Σ_e (n_e / (L·N)) · mean_rows(r[:, e])
//
// (no 1/k: a uniform router gives k). If dprobs is not nil, dprobs[l] += scale ·
// d aux / d probs[l]; the selection is not differentiated.
//
//	probs, dprobs: L slices of [N, E]
func LoadBalancingLossHF(probs, dprobs [][]float32, N, E, K int, scale float32) (float64, error) {
	L := len(probs)
	if err := checkRouter("load balancing loss", probs, N, E); err != nil {
		return 0, err
	}
	if dprobs != nil {
		if err := checkRouter("load balancing loss gradient", dprobs, N, E); err != nil {
			return 0, err
		}
		if len(dprobs) != L {
			return 0, fmt.Errorf("nn: load balancing loss: %d gradient layers for %d layers", len(dprobs), L)
		}
	}
	if L == 0 || N == 0 || K < 1 || K > E {
		return 0, fmt.Errorf("nn: load balancing loss: need layers, tokens and 1 <= k <= E (L=%d N=%d k=%d E=%d)", L, N, K, E)
	}
	rows := float64(L * N)
	r := make([]float32, E)
	idx := make([]int, K)
	w := make([]float32, K)
	cnt := make([]float64, E)
	sumR := make([]float64, E)
	for l := 0; l < L; l++ {
		for t := 0; t < N; t++ {
			copy(r, probs[l][t*E:(t+1)*E])
			Softmax(r)
			TopK(r, K, nil, idx, w)
			for _, e := range idx {
				cnt[e]++
			}
			for e, v := range r {
				sumR[e] += float64(v)
			}
		}
	}
	var aux float64
	for e := range cnt {
		aux += cnt[e] / rows * sumR[e] / rows
	}
	aux *= float64(E)
	if dprobs == nil {
		return aux, nil
	}
	// d aux / d r[row, e] = E · n_e / (L·N)², then back through the second softmax.
	c := make([]float32, E)
	for e := range c {
		c[e] = float32(float64(E) * cnt[e] / (rows * rows) * float64(scale))
	}
	dr := make([]float32, E)
	for l := 0; l < L; l++ {
		for t := 0; t < N; t++ {
			copy(r, probs[l][t*E:(t+1)*E])
			Softmax(r)
			SoftmaxBackward(dr, c, r)
			d := dprobs[l][t*E : (t+1)*E]
			for e, v := range dr {
				d[e] += v
			}
		}
	}
	return aux, nil
}

// LoadBalancingLossMegaBlocks is MegaBlocks' batched_load_balancing_loss without its
// weight (DBRX's training form): per layer, n_{l,e} (token, slot) assignments to
// expert e and the mean router probability P̄_{l,e} (single softmax) give
//
//	aux = E / (L·N·K) · Σ_l Σ_e n_{l,e} · P̄_{l,e}
//
// (a uniform router gives 1). If dprobs is not nil, dprobs[l] += scale · d aux / d probs[l].
//
//	probs, dprobs: L slices of [N, E]; topIdx: L slices of [N, K]
func LoadBalancingLossMegaBlocks(probs [][]float32, topIdx [][]int, dprobs [][]float32, N, E, K int, scale float32) (float64, error) {
	L := len(probs)
	if err := checkRouter("megablocks load balancing loss", probs, N, E); err != nil {
		return 0, err
	}
	if L == 0 || N == 0 || K < 1 || K > E || len(topIdx) != L || (dprobs != nil && len(dprobs) != L) {
		return 0, fmt.Errorf("nn: megablocks load balancing loss: bad shapes (L=%d N=%d k=%d E=%d)", L, N, K, E)
	}
	cnt := make([]float64, E)
	var aux float64
	coef := float64(E) / float64(L*N*K)
	for l := 0; l < L; l++ {
		if len(topIdx[l]) < N*K {
			return 0, fmt.Errorf("nn: megablocks load balancing loss: layer %d has %d expert indices, need %d", l, len(topIdx[l]), N*K)
		}
		clear(cnt)
		for _, e := range topIdx[l][:N*K] {
			if e < 0 || e >= E {
				return 0, fmt.Errorf("nn: megablocks load balancing loss: expert index %d outside [0, %d)", e, E)
			}
			cnt[e]++
		}
		for e := 0; e < E; e++ {
			var s float64
			for t := 0; t < N; t++ {
				s += float64(probs[l][t*E+e])
			}
			aux += coef * cnt[e] * s / float64(N)
		}
		if dprobs != nil {
			d := dprobs[l]
			for e := 0; e < E; e++ {
				g := float32(coef * cnt[e] / float64(N) * float64(scale))
				for t := 0; t < N; t++ {
					d[t*E+e] += g
				}
			}
		}
	}
	return aux, nil
}

// RouterZLoss is MegaBlocks' router z-loss averaged over layers (the way
// OLMo-core and llm-foundry combine batched_router_zloss):
//
//	z = (1/L) Σ_l mean_t logsumexp(logits[l][t, :])²
//
// If dlogits is not nil, dlogits[l] += scale · dz/dlogits[l] = scale · 2·lse·softmax / (L·N).
//
//	logits, dlogits: L slices of [N, E] (router logits, before the softmax)
func RouterZLoss(logits, dlogits [][]float32, N, E int, scale float32) (float64, error) {
	L := len(logits)
	if err := checkRouter("router z-loss", logits, N, E); err != nil {
		return 0, err
	}
	if L == 0 || N == 0 || (dlogits != nil && len(dlogits) != L) {
		return 0, fmt.Errorf("nn: router z-loss: bad shapes (L=%d N=%d)", L, N)
	}
	if dlogits != nil {
		if err := checkRouter("router z-loss gradient", dlogits, N, E); err != nil {
			return 0, err
		}
	}
	var z float64
	den := float64(L * N)
	for l := 0; l < L; l++ {
		for t := 0; t < N; t++ {
			row := logits[l][t*E : (t+1)*E]
			lse := LogSumExp(row)
			z += lse * lse / den
			if dlogits == nil {
				continue
			}
			d := dlogits[l][t*E : (t+1)*E]
			c := 2 * lse / den * float64(scale)
			for e, v := range row {
				d[e] += float32(c * math.Exp(float64(v)-lse))
			}
		}
	}
	return z, nil
}
