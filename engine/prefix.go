package engine

import (
	"slices"

	"github.com/dbrx-engine/dbrx/model/dbrx"
)

// prefixCache keeps the KV caches of earlier sequences keyed by their tokens, so a
// prompt that starts like an earlier one (above all the long default system prompt
// of the chat template) copies the shared positions instead of recomputing them.
//
// Entries are immutable once inserted: a hit copies positions out (CopyPrefix), so
// a running sequence never aliases cached memory. An entry whose tokens are a prefix
// of a newer entry's is dropped (the newer one serves the same lookups). Memory is
// bounded by the total positions held, evicting the least recently used entry.
// It is owned by the engine goroutine and not safe for concurrent use.
type prefixCache struct {
	entries []*prefixEntry
	tokens  int // Σ len(entry.tokens)
	max     int // bound on tokens
	min     int // shortest prefix worth reusing or keeping
	clock   uint64

	hits, misses, hitTokens uint64
}

type prefixEntry struct {
	tokens  []int         // [n] the ids whose KV is in cache (cache.Len == n)
	cache   *dbrx.KVCache // positions [0, n)
	lastUse uint64
}

func newPrefixCache(maxTokens, minTokens int) *prefixCache {
	return &prefixCache{max: maxTokens, min: minTokens}
}

func (p *prefixCache) enabled() bool { return p != nil && p.max > 0 }

func commonPrefix(a, b []int) int {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

// lookup returns the entry sharing the longest prefix with prompt and the number of
// positions to reuse: at most len(prompt)-1, so the last prompt token is always run
// (its logits give the first generated token). n is 0 when nothing useful matched.
func (p *prefixCache) lookup(prompt []int) (*prefixEntry, int) {
	if !p.enabled() {
		return nil, 0
	}
	var best *prefixEntry
	bestN := 0
	for _, e := range p.entries {
		if n := commonPrefix(e.tokens, prompt); n > bestN {
			best, bestN = e, n
		}
	}
	bestN = min(bestN, len(prompt)-1)
	if best == nil || bestN < p.min {
		p.misses++
		return nil, 0
	}
	p.clock++
	best.lastUse = p.clock
	p.hits++
	p.hitTokens += uint64(bestN)
	return best, bestN
}

// covers reports whether some entry already holds all of tokens.
func (p *prefixCache) covers(tokens []int) bool {
	for _, e := range p.entries {
		if len(e.tokens) >= len(tokens) && commonPrefix(e.tokens, tokens) == len(tokens) {
			p.clock++
			e.lastUse = p.clock
			return true
		}
	}
	return false
}

// insert adds cache (holding the KV of tokens, cache.Len == len(tokens)); the cache
// is owned by the prefix cache from then on. Entries that are prefixes of tokens are
// dropped; if tokens is already covered, nothing is added.
func (p *prefixCache) insert(tokens []int, cache *dbrx.KVCache) {
	if !p.enabled() || len(tokens) < p.min || len(tokens) > p.max || cache.Len != len(tokens) {
		return
	}
	if p.covers(tokens) {
		return
	}
	kept := p.entries[:0]
	for _, e := range p.entries {
		if len(e.tokens) <= len(tokens) && commonPrefix(e.tokens, tokens) == len(e.tokens) {
			p.tokens -= len(e.tokens)
			continue
		}
		kept = append(kept, e)
	}
	clear(p.entries[len(kept):])
	p.entries = kept
	p.clock++
	p.entries = append(p.entries, &prefixEntry{tokens: tokens, cache: cache, lastUse: p.clock})
	p.tokens += len(tokens)
	for p.tokens > p.max {
		oldest := 0
		for i, e := range p.entries {
			if e.lastUse < p.entries[oldest].lastUse {
				oldest = i
			}
		}
		p.tokens -= len(p.entries[oldest].tokens)
		p.entries = slices.Delete(p.entries, oldest, oldest+1)
	}
}
