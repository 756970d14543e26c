package nn

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// TestCausalAttentionGroupMatchesHead: the grouped decode attention agrees with
// CausalAttentionHead head by head (to the float32 rounding of the scores) for GQA
// groups larger and smaller than a kernel pass, odd head dims and contexts of one
// key to several key blocks, reading one KV head of a multi-head cache row.
func TestCausalAttentionGroupMatchesHead(t *testing.T) {
	r := rand.New(rand.NewPCG(41, 42))
	for _, G := range []int{1, 2, 3, 4, 6, 7} {
		for _, dh := range []int{2, 6, 13, 64, 128} {
			for _, n := range []int{1, 5, 64, attnBlock + 45, 3*attnBlock + 1} {
				if G*dh*n > 2e6 && !(G == 3 && dh == 128) {
					continue // keep the test quick; the long contexts at the bench shape
				}
				const KVH, g = 2, 1 // the second KV head of each row
				stride := KVH * dh
				keys := toF32(randn(r, n*stride, 1.5))
				vals := toF32(randn(r, n*stride, 1))
				q := toF32(randn(r, G*dh, 1.5))
				scale := float32(1 / math.Sqrt(float64(dh)))
				out := make([]float32, G*dh+1)
				out[G*dh] = 42 // must stay
				CausalAttentionGroup(out[:G*dh], q, G, keys, vals, stride, g*dh, n, scale)
				want := make([]float32, dh)
				for h := 0; h < G; h++ {
					CausalAttentionHead(want, q[h*dh:(h+1)*dh], keys, vals, stride, g*dh, n, scale)
					for i, w := range want {
						if v := out[h*dh+i]; math.Abs(float64(v-w)) > 4e-6*math.Max(1, math.Abs(float64(w))) {
							t.Fatalf("G=%d dh=%d n=%d head %d [%d]: %g, CausalAttentionHead %g", G, dh, n, h, i, v, w)
						}
					}
				}
				if out[G*dh] != 42 {
					t.Fatalf("G=%d dh=%d n=%d: wrote past the group's heads", G, dh, n)
				}
			}
		}
	}
}

// TestCausalAttentionGroupAllocs: decode attention allocates nothing (its scratch is
// on the stack).
func TestCausalAttentionGroupAllocs(t *testing.T) {
	r := rand.New(rand.NewPCG(43, 44))
	const G, dh, n = 3, 128, 300
	keys, vals := toF32(randn(r, n*2*dh, 1)), toF32(randn(r, n*2*dh, 1))
	q, out := toF32(randn(r, G*dh, 1)), make([]float32, G*dh)
	if a := testing.AllocsPerRun(10, func() {
		CausalAttentionGroup(out, q, G, keys, vals, 2*dh, dh, n, 0.1)
	}); a != 0 {
		t.Errorf("%.1f allocs", a)
	}
}

// BenchmarkCausalAttention compares one token's attention over a 2-KV-head cache
// of n positions at the BENCH shape (6 heads of 128, groups of 3): head by head,
// and by GQA group. Bytes are the keys and values read (once per group).
func BenchmarkCausalAttention(b *testing.B) {
	const H, KVH, dh = 6, 2, 128
	r := rand.New(rand.NewPCG(45, 46))
	for _, n := range []int{65, 1000} {
		keys, vals := toF32(randn(r, n*KVH*dh, 1)), toF32(randn(r, n*KVH*dh, 1))
		q, out := toF32(randn(r, H*dh, 1)), make([]float32, H*dh)
		scale := float32(1 / math.Sqrt(dh))
		b.Run(fmt.Sprintf("n=%d/head", n), func(b *testing.B) {
			b.SetBytes(int64(2 * n * KVH * dh * 4))
			for b.Loop() {
				for h := 0; h < H; h++ {
					g := h / (H / KVH)
					CausalAttentionHead(out[h*dh:(h+1)*dh], q[h*dh:(h+1)*dh], keys, vals, KVH*dh, g*dh, n, scale)
				}
			}
		})
		b.Run(fmt.Sprintf("n=%d/group", n), func(b *testing.B) {
			b.SetBytes(int64(2 * n * KVH * dh * 4))
			for b.Loop() {
				for g := 0; g < KVH; g++ {
					G := H / KVH
					CausalAttentionGroup(out[g*G*dh:(g+1)*G*dh], q[g*G*dh:(g+1)*G*dh], G, keys, vals, KVH*dh, g*dh, n, scale)
				}
			}
		})
	}
}
