package nn

import "math"

// TopK writes the indices of the k largest probabilities (largest first, lower index
// first on ties, like torch.topk on CPU for distinct values) and their weights,
// renormalised by their p-norm when normP is not nil (DBRX's
// moe_normalize_expert_weights: 1 divides by the sum, 2 by the L2 norm).
//
//	probs [E]; idx, w [k]
func TopK(probs []float32, k int, normP *float64, idx []int, w []float32) {
	for s := 0; s < k; s++ {
		best := -1
		for e, p := range probs {
			taken := false
			for _, prev := range idx[:s] {
				if prev == e {
					taken = true
					break
				}
			}
			if taken {
				continue
			}
			if best < 0 || p > probs[best] {
				best = e
			}
		}
		idx[s] = best
		w[s] = probs[best]
	}
	if normP == nil {
		return
	}
	p := *normP
	var norm float32
	switch p {
	case 1:
		for _, v := range w[:k] {
			norm += float32(math.Abs(float64(v)))
		}
	default:
		var s float64
		for _, v := range w[:k] {
			s += math.Pow(math.Abs(float64(v)), p)
		}
		norm = float32(math.Pow(s, 1/p))
	}
	for s := range w[:k] {
		w[s] /= norm
	}
}
