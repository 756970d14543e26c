package sample

import (
	"math"
	"slices"
)

// before is the candidate order: higher logit first, lower id first on equal logits.
// Ids are distinct, so it is a strict total order and every selection is deterministic.
func before(a, b cand) bool {
	return a.logit > b.logit || (a.logit == b.logit && a.id < b.id)
}

func compareCands(a, b cand) int {
	if before(a, b) {
		return -1
	}
	if before(b, a) {
		return 1
	}
	return 0
}

// topK returns, in s.cands, the k first tokens of logits in candidate order (fewer if
// fewer are finite), in no particular order. Small k uses a size-k min-heap (one
// comparison for most tokens); large k copies the finite tokens and quickselects.
func (s *Sampler) topK(logits []float32, k int) []cand {
	c := s.cands[:0]
	if k*8 > len(logits) {
		negInf := float32(math.Inf(-1))
		for i, l := range logits {
			if l != negInf {
				c = append(c, cand{id: int32(i), logit: l})
			}
		}
		if len(c) > k {
			selectK(c, k)
			c = c[:k]
		}
		return c
	}
	// c[0] is the worst kept token. Ids arrive in increasing order, so a new token
	// with a logit equal to the worst's is itself worse and is skipped.
	for i, l := range logits {
		if len(c) < k {
			if math.IsInf(float64(l), -1) {
				continue
			}
			c = append(c, cand{id: int32(i), logit: l})
			heapUp(c, len(c)-1)
			continue
		}
		if l > c[0].logit {
			c[0] = cand{id: int32(i), logit: l}
			heapDown(c, 0)
		}
	}
	return c
}

// heapUp and heapDown keep c a min-heap with the worst (last in candidate order) at 0.
func heapUp(c []cand, j int) {
	for j > 0 {
		p := (j - 1) / 2
		if !before(c[p], c[j]) {
			break
		}
		c[p], c[j] = c[j], c[p]
		j = p
	}
}

func heapDown(c []cand, j int) {
	n := len(c)
	for {
		l := 2*j + 1
		if l >= n {
			return
		}
		w := l // the worse child
		if r := l + 1; r < n && before(c[l], c[r]) {
			w = r
		}
		if !before(c[j], c[w]) {
			return
		}
		c[j], c[w] = c[w], c[j]
		j = w
	}
}

// partition reorders c (len >= 3) around a median-of-three pivot and returns its index
// p: c[:p] come before the pivot, c[p+1:] after it.
func partition(c []cand) int {
	n := len(c)
	a, b, d := 0, n/2, n-1
	if before(c[b], c[a]) {
		a, b = b, a
	}
	if before(c[d], c[b]) {
		b = d
		if before(c[b], c[a]) {
			b = a
		}
	}
	c[b], c[n-1] = c[n-1], c[b]
	pv := c[n-1]
	i := 0
	for j := 0; j < n-1; j++ {
		if before(c[j], pv) {
			c[i], c[j] = c[j], c[i]
			i++
		}
	}
	c[i], c[n-1] = c[n-1], c[i]
	return i
}

// sortCands sorts c into candidate order: insertion sort when short.
func sortCands(c []cand) {
	if len(c) > 16 {
		slices.SortFunc(c, compareCands)
		return
	}
	for i := 1; i < len(c); i++ {
		x := c[i]
		j := i
		for j > 0 && before(x, c[j-1]) {
			c[j] = c[j-1]
			j--
		}
		c[j] = x
	}
}

// selectK reorders c so that c[:k] are its k first candidates (0 < k < len(c)).
// Quickselect with a depth budget that falls back to sorting (introselect).
func selectK(c []cand, k int) {
	lo, hi := 0, len(c)
	budget := depthBudget(len(c))
	for hi-lo > 16 && budget > 0 {
		budget--
		p := lo + partition(c[lo:hi])
		switch {
		case p == k || p+1 == k:
			return
		case p > k:
			hi = p
		default:
			lo = p + 1
		}
	}
	sortCands(c[lo:hi])
}

// nucleus reorders c and returns n such that c[:n] is the smallest prefix of c in
// candidate order whose weight sums to at least need (all of c if rounding never gets
// there). c[:n] is left in no particular order. Expected time is linear: quickselect
// that recurses only into the side holding the cut.
func nucleus(c []cand, need float64) int {
	lo, hi := 0, len(c)
	budget := depthBudget(len(c))
	for hi-lo > 16 && budget > 0 {
		budget--
		p := lo + partition(c[lo:hi])
		var sg float64
		for _, x := range c[lo:p] {
			sg += float64(x.w)
		}
		if sg >= need {
			hi = p
			continue
		}
		sg += float64(c[p].w)
		if sg >= need {
			return p + 1
		}
		need -= sg
		lo = p + 1
	}
	sortCands(c[lo:hi])
	for i := lo; i < hi; i++ {
		need -= float64(c[i].w)
		if need <= 0 {
			return i + 1
		}
	}
	return hi
}
