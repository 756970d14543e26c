package dbrx

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/dbrx-engine/dbrx/internal/parallel"
	"github.com/dbrx-engine/dbrx/nn"
)

// benchAttnConfig is the attention shape of configs/bench.json (the weights are not
// needed: the benchmark starts from random q, k, v).
func benchAttnConfig() Config {
	var c Config
	c.DModel, c.NHeads, c.NLayers, c.MaxSeqLen = 768, 6, 8, 32768
	c.AttnConfig.KVNHeads, c.AttnConfig.RopeTheta = 2, 500000
	return c
}

// BenchmarkAttention times the attention phase of one decode step (RoPE, KV append
// and attention over the cache, every layer) for B sequences with ctx cached
// positions each: the part of Forward between the qkv and the output projections.
// Bytes are the cached keys and values read per step. With cold=1 the caches are
// evicted (64 MiB streamed, untimed) before every layer, as the weights streamed by
// a real step evict them; otherwise they may stay in the last-level cache.
func BenchmarkAttention(b *testing.B) {
	pool := parallel.New(0)
	defer pool.Close()
	for _, cold := range []bool{false, true} {
		for _, ctx := range []int{64, 1000} {
			for _, B := range []int{1, 16} {
				b.Run(fmt.Sprintf("cold=%v/ctx=%d/B=%d", cold, ctx, B), func(b *testing.B) {
					benchAttention(b, pool, B, ctx, cold)
				})
			}
		}
	}
}

// evict streams through a buffer larger than the last-level cache.
func evict(buf []float32) float32 {
	var s float32
	for i := 0; i < len(buf); i += 16 {
		s += buf[i]
	}
	return s
}

func benchAttention(b *testing.B, pool *parallel.Pool, B, ctx int, cold bool) {
	c := benchAttnConfig()
	m := &Model{Config: c, RoPE: nn.NewRoPE(c.HeadDim(), c.AttnConfig.RopeTheta)}
	r := rand.New(rand.NewPCG(1, 2))
	kvRow := c.AttnConfig.KVNHeads * c.HeadDim()
	steps := make([]Step, B)
	for i := range steps {
		cache := m.NewKVCache(ctx+1, ctx+1)
		for l := range cache.K {
			for j := 0; j < ctx*kvRow; j++ {
				cache.K[l] = append(cache.K[l], float32(r.NormFloat64()))
				cache.V[l] = append(cache.V[l], float32(r.NormFloat64()))
			}
		}
		cache.Len = ctx
		steps[i] = Step{Cache: cache, IDs: []int{1}}
	}
	ws := NewWorkspace(pool)
	ws.ensure(c, B, B)
	for i := range ws.qkv {
		ws.qkv[i] = float32(r.NormFloat64())
	}
	half := c.HeadDim() / 2
	for t := range B {
		ws.tokSeq[t], ws.tokPos[t] = t, ctx
		m.RoPE.Tables(ws.cos[t*half:(t+1)*half], ws.sin[t*half:(t+1)*half], ctx)
	}
	var flush []float32
	if cold {
		flush = make([]float32, 16<<20)
	}
	var sink float32
	b.SetBytes(int64(B * c.NLayers * (ctx + 1) * 2 * kvRow * 4))
	b.ResetTimer()
	for b.Loop() {
		for i := range steps {
			steps[i].Cache.Truncate(ctx)
		}
		for l := 0; l < c.NLayers; l++ {
			if cold {
				b.StopTimer()
				sink += evict(flush)
				b.StartTimer()
			}
			m.attention(ws, steps, l, B)
		}
	}
	_ = sink
}

// BenchmarkAttentionPrefill times the attention phase of a T-token prefill of one
// sequence (every layer): the tokens attend causally to each other.
func BenchmarkAttentionPrefill(b *testing.B) {
	pool := parallel.New(0)
	defer pool.Close()
	for _, T := range []int{64, 512} {
		b.Run(fmt.Sprintf("T=%d", T), func(b *testing.B) {
			c := benchAttnConfig()
			m := &Model{Config: c, RoPE: nn.NewRoPE(c.HeadDim(), c.AttnConfig.RopeTheta)}
			r := rand.New(rand.NewPCG(3, 4))
			cache := m.NewKVCache(T, T)
			steps := []Step{{Cache: cache, IDs: make([]int, T)}}
			ws := NewWorkspace(pool)
			ws.ensure(c, T, 1)
			for i := range ws.qkv {
				ws.qkv[i] = float32(r.NormFloat64())
			}
			half := c.HeadDim() / 2
			for t := range T {
				ws.tokSeq[t], ws.tokPos[t] = 0, t
				m.RoPE.Tables(ws.cos[t*half:(t+1)*half], ws.sin[t*half:(t+1)*half], t)
			}
			b.ResetTimer()
			for b.Loop() {
				cache.Truncate(0)
				for l := 0; l < c.NLayers; l++ {
					m.attention(ws, steps, l, T)
				}
			}
		})
	}
}
