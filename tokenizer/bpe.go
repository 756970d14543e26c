package tokenizer

// longPiece is the pre-token length above which merging uses a heap (O(n log n))
// instead of tiktoken's quadratic scan. Both pick the same pair at every step.
const longPiece = 128

// scratch is per-call working memory for merging; reused so that the merge loop does not
// allocate.
type scratch struct {
	cache *[cacheSize]cacheEntry // nil: no piece cache (small inputs)
	parts []part
	next  []int32
	prev  []int32
	rank  []uint32
	self  []uint32
	heap  []uint64
}

// The piece cache remembers the ids of recently merged pre-tokens (identifiers and rare
// words repeat): direct-mapped by hash, one 64-byte line per entry, checked byte for
// byte. It lives in the scratch, so it is per goroutine and outlives a call. Inputs
// shorter than cacheMinText do not allocate it.
const (
	cacheMinText = 16 << 10
	cacheBits    = 12
	cacheSize    = 1 << cacheBits
	cacheKeyLen  = 22
	cacheIDs     = 8
)

type cacheEntry struct {
	h    uint64
	n    uint8 // key length; 0: empty
	nids uint8
	key  [cacheKeyLen]byte
	ids  [cacheIDs]uint32
}

// part is one current part of a pre-token: its start offset, its own rank and the rank
// of the pair it forms with the next part (noRank if none).
type part struct {
	start uint32
	self  uint32
	rank  uint32
}

// appendPiece appends the ids of one pre-token.
func (r *ranks) appendPiece(dst []int, p string, sc *scratch) []int {
	if len(p) == 1 {
		return append(dst, int(r.byteRank[p[0]]))
	}
	if len(p) == 2 {
		if rk := r.pair(p[0], p[1]); rk != noRank {
			return append(dst, int(rk))
		}
		return append(dst, int(r.byteRank[p[0]]), int(r.byteRank[p[1]]))
	}
	k := key8(p)
	h := hashKey(k, p)
	if id, ok := r.findHashed(p, k, h); ok {
		return append(dst, int(id))
	}
	if len(p) > cacheKeyLen {
		if len(p) > longPiece {
			return r.mergeHeap(dst, p, sc)
		}
		return r.mergeScan(dst, p, sc)
	}
	if sc.cache == nil {
		return r.mergeScan(dst, p, sc)
	}
	e := &sc.cache[h>>(64-cacheBits)]
	if e.h == h && int(e.n) == len(p) && string(e.key[:e.n]) == p {
		for _, id := range e.ids[:e.nids] {
			dst = append(dst, int(id))
		}
		return dst
	}
	m := len(dst)
	dst = r.mergeScan(dst, p, sc)
	if len(dst)-m <= cacheIDs {
		e.h, e.n, e.nids = h, uint8(len(p)), uint8(len(dst)-m)
		copy(e.key[:], p)
		for i, id := range dst[m:] {
			e.ids[i] = uint32(id)
		}
	}
	return dst
}

// mergeScan is tiktoken's byte_pair_merge: repeatedly merge the lowest-ranked adjacent
// pair, the leftmost on ties.
func (r *ranks) mergeScan(dst []int, p string, sc *scratch) []int {
	n := len(p)
	parts := sc.parts[:0]
	for i := 0; i+1 < n; i++ {
		parts = append(parts, part{uint32(i), r.byteRank[p[i]], r.pair(p[i], p[i+1])})
	}
	parts = append(parts, part{uint32(n - 1), r.byteRank[p[n-1]], noRank}, part{uint32(n), noRank, noRank})
	for {
		best, bi := noRank, -1
		for i, pt := range parts[:len(parts)-1] {
			if pt.rank < best {
				best, bi = pt.rank, i
			}
		}
		if bi < 0 {
			break
		}
		// Merge parts bi and bi+1.
		parts[bi].self = best
		copy(parts[bi+1:], parts[bi+2:])
		parts = parts[:len(parts)-1]
		if bi+2 < len(parts) {
			parts[bi].rank = r.rank(p[parts[bi].start:parts[bi+2].start])
		} else {
			parts[bi].rank = noRank
		}
		if bi > 0 {
			parts[bi-1].rank = r.rank(p[parts[bi-1].start:parts[bi+1].start])
		}
	}
	for _, pt := range parts[:len(parts)-1] {
		dst = append(dst, int(pt.self))
	}
	sc.parts = parts
	return dst
}

// mergeHeap gives the same result as mergeScan for long pre-tokens: parts form a linked
// list, candidate pairs sit in a min-heap keyed by (rank, start), and entries whose rank
// no longer matches their part are stale and skipped. A part's start never changes and
// a rank names a unique byte string, so (start, rank) identifies one pair exactly.
func (r *ranks) mergeHeap(dst []int, p string, sc *scratch) []int {
	n := len(p)
	next, prev, rank, self := grow(sc.next, n), grow(sc.prev, n), grow(sc.rank, n), grow(sc.self, n)
	h := sc.heap[:0]
	for i := range n {
		next[i], prev[i] = int32(i+1), int32(i-1)
		self[i] = r.byteRank[p[i]]
		rank[i] = noRank
		if i+1 < n {
			rank[i] = r.pair(p[i], p[i+1])
			if rank[i] != noRank {
				h = append(h, uint64(rank[i])<<32|uint64(i))
			}
		}
	}
	heapify(h)
	for len(h) > 0 {
		top := h[0]
		h = heapPop(h)
		i := int32(uint32(top))
		if rank[i] != uint32(top>>32) {
			continue // stale
		}
		j := next[i]
		k := next[j]
		next[i] = k
		if int(k) < n {
			prev[k] = i
		}
		rank[j] = noRank
		self[i] = uint32(top >> 32)
		rank[i] = noRank
		if int(k) < n {
			if rank[i] = r.rank(p[i:endOf(next, k, n)]); rank[i] != noRank {
				h = heapPush(h, uint64(rank[i])<<32|uint64(i))
			}
		}
		if pi := prev[i]; pi >= 0 {
			if rank[pi] = r.rank(p[pi:endOf(next, i, n)]); rank[pi] != noRank {
				h = heapPush(h, uint64(rank[pi])<<32|uint64(pi))
			}
		}
	}
	for i := int32(0); int(i) < n; i = next[i] {
		dst = append(dst, int(self[i]))
	}
	sc.next, sc.prev, sc.rank, sc.self, sc.heap = next, prev, rank, self, h
	return dst
}

func endOf(next []int32, i int32, n int) int {
	if int(i) >= n {
		return n
	}
	return int(next[i])
}

func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

func heapify(h []uint64) {
	for i := len(h)/2 - 1; i >= 0; i-- {
		siftDown(h, i)
	}
}

func heapPush(h []uint64, v uint64) []uint64 {
	h = append(h, v)
	for i := len(h) - 1; i > 0; {
		up := (i - 1) / 2
		if h[up] <= h[i] {
			break
		}
		h[up], h[i] = h[i], h[up]
		i = up
	}
	return h
}

func heapPop(h []uint64) []uint64 {
	last := len(h) - 1
	h[0] = h[last]
	h = h[:last]
	siftDown(h, 0)
	return h
}

func siftDown(h []uint64, i int) {
	for {
		l := 2*i + 1
		if l >= len(h) {
			return
		}
		m := l
		if l+1 < len(h) && h[l+1] < h[l] {
			m = l + 1
		}
		if h[i] <= h[m] {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}
