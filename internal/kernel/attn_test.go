package kernel

import (
	"fmt"
	"math"
	"testing"
)

// attnCases are the head counts, head dims and key counts the attention kernels are
// tested at: groups split into passes of AttnGroupMax, head dims with and without a
// column tail (and below one vector), key counts around the 4-key steps.
var (
	attnGroups = []int{1, 2, 3, 4, 5, 6, 7}
	attnDims   = []int{2, 6, 8, 13, 16, 24, 40, 64, 128, 130}
	attnKeys   = []int{1, 2, 3, 4, 5, 7, 8, 9, 33, 258}
)

func TestAttnScoresF32(t *testing.T) {
	vecImpls(t, func(t *testing.T) {
		r := newRand(31)
		for _, G := range attnGroups {
			for _, dh := range attnDims {
				for _, n := range attnKeys {
					ldk, ldd := 2*dh+3, n+5 // rows of a KV cache: several heads per row
					q, k := randF32(r, G*dh), randF32(r, (n-1)*ldk+dh)
					var pf []float32 // nil: the keys themselves
					if n%2 == 0 {
						pf = randF32(r, (n-1)*ldk+dh)
					}
					dst, check := guarded(t, (G-1)*ldd+n)
					scale := float32(1 / math.Sqrt(float64(dh)))
					AttnScoresF32(dst, ldd, q, G, dh, k, ldk, n, scale, pf)
					check()
					want := make([]float32, len(dst))
					attnScoresGeneric(want, ldd, q, G, dh, k, ldk, n, scale)
					for g := 0; g < G; g++ {
						for j := 0; j < ldd && g*ldd+j < len(dst); j++ {
							got := dst[g*ldd+j]
							if j >= n {
								if math.Float32bits(got) != 0x7fc0dead {
									t.Fatalf("G=%d dh=%d n=%d: wrote dst[%d][%d] past n", G, dh, n, g, j)
								}
								continue
							}
							var s, sa float64
							for i := 0; i < dh; i++ {
								p := float64(q[g*dh+i]) * float64(k[j*ldk+i])
								s, sa = s+p, sa+math.Abs(p)
							}
							s *= float64(scale)
							sa *= float64(scale)
							// the twin has the assembly's rounding order (its float64 FMA rounds twice)
							if !closeTo(got, want[g*ldd+j], 0x1p-23*sa) {
								t.Fatalf("G=%d dh=%d n=%d [%d][%d]: %v, twin %v", G, dh, n, g, j, got, want[g*ldd+j])
							}
							if !closeTo(got, float32(s), float64(dh+2)*0x1p-24*sa) {
								t.Fatalf("G=%d dh=%d n=%d [%d][%d]: %v, float64 %v", G, dh, n, g, j, got, s)
							}
						}
					}
				}
			}
		}
	})
}

func TestAttnPVF32Exact(t *testing.T) {
	vecImpls(t, func(t *testing.T) {
		r := newRand(32)
		for _, G := range attnGroups {
			for _, dh := range attnDims {
				for _, n := range attnKeys {
					ldv, ldp := 2*dh+3, n+5
					p, v := randF32(r, (G-1)*ldp+n), randF32(r, (n-1)*ldv+dh)
					if n > 2 {
						v[ldv+dh-1] = float32(math.Inf(1)) // propagates as in AxpyF32
					}
					acc, check := guarded(t, G*dh)
					for i := range acc {
						acc[i] = 2*r.Float32() - 1
					}
					want := append([]float32(nil), acc...)
					AttnPVF32(acc, G, dh, p, ldp, v, ldv, n)
					check()
					// the reference: AxpyF32 key by key, the old decode loop
					for g := 0; g < G; g++ {
						for j := 0; j < n; j++ {
							AxpyF32(want[g*dh:(g+1)*dh], p[g*ldp+j], v[j*ldv:j*ldv+dh])
						}
					}
					for i := range acc {
						if math.Float32bits(acc[i]) != math.Float32bits(want[i]) {
							t.Fatalf("G=%d dh=%d n=%d [%d]: %v, want %v", G, dh, n, i, acc[i], want[i])
						}
					}
				}
			}
		}
	})
}

func TestAttnShortOperands(t *testing.T) {
	q, k, dst := make([]float32, 16), make([]float32, 40), make([]float32, 8) // k: 3 rows of 16
	for name, f := range map[string]func(){
		"scores keys": func() { AttnScoresF32(dst, 4, q, 2, 8, k, 16, 4, 1, nil) },
		"scores dst":  func() { AttnScoresF32(dst[:6], 4, q, 2, 8, k, 16, 3, 1, nil) },
		"scores ldd":  func() { AttnScoresF32(dst, 2, q, 2, 8, k, 16, 3, 1, nil) },
		"scores pf":   func() { AttnScoresF32(dst, 4, q, 2, 8, k, 16, 2, 1, k[:20]) },
		"pv values":   func() { AttnPVF32(q, 2, 8, dst, 4, k, 16, 4) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
}

func TestAttnAllocs(t *testing.T) {
	r := newRand(33)
	k := randF32(r, 64*256)
	f := func() {
		var q, acc [3 * 128]float32
		var s [3 * 64]float32
		copy(q[:], k)
		AttnScoresF32(s[:], 64, q[:], 3, 128, k, 256, 64, 0.1, k[128:])
		AttnPVF32(acc[:], 3, 128, s[:], 64, k, 256, 64)
	}
	if a := testing.AllocsPerRun(10, f); a != 0 {
		t.Errorf("%.1f allocs", a)
	}
}

// BenchmarkAttnKernels times one GQA group (3 heads, Dh 128) over a block of keys
// of a 2-KV-head cache: the scores, then P·V. Bytes are the keys and values read.
func BenchmarkAttnKernels(b *testing.B) {
	const G, dh, ld = 3, 128, 256
	for _, n := range []int{64, 256} {
		r := newRand(34)
		q, kv := randF32(r, G*dh), randF32(r, n*ld)
		s, acc := make([]float32, G*n), make([]float32, G*dh)
		b.Run(fmt.Sprintf("n=%d/fused", n), func(b *testing.B) {
			b.SetBytes(int64(2 * n * dh * 4))
			for b.Loop() {
				AttnScoresF32(s, n, q, G, dh, kv, ld, n, 0.1, kv[dh:])
				AttnPVF32(acc, G, dh, s, n, kv, ld, n)
			}
		})
		b.Run(fmt.Sprintf("n=%d/perkey", n), func(b *testing.B) {
			b.SetBytes(int64(2 * n * dh * 4))
			for b.Loop() {
				for g := 0; g < G; g++ {
					for j := 0; j < n; j++ {
						s[g*n+j] = DotF32(q[g*dh:(g+1)*dh], kv[j*ld:j*ld+dh]) * 0.1
					}
					for j := 0; j < n; j++ {
						AxpyF32(acc[g*dh:(g+1)*dh], s[g*n+j], kv[j*ld:j*ld+dh])
					}
				}
			}
		})
	}
}
