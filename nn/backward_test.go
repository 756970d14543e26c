package nn

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/dbrx-engine/dbrx/internal/kernel"
	"github.com/dbrx-engine/dbrx/internal/parallel"
)

// The op harness: every op's float32 forward is checked against a float64 twin
// written here, and its float32 backward against central finite differences of the
// twin in float64 (step 1e-6, so the reference gradient is good to ~1e-9).
//
// For a random cotangent c the scalar L = Σ c·op(inputs) is differentiated; the
// analytic gradient must satisfy max|g − g_fd| <= gradTol · max|g_fd| per input.
const (
	fdStep  = 1e-6
	fwdTol  = 1e-5 // forward, relative to max|out|
	gradTol = 5e-6 // backward, relative to max|g_fd| of each input
)

type gradCase struct {
	name string
	in   [][]float64 // initial input values (rounded to float32 before use)
	// diff marks the inputs to differentiate (nil: all).
	diff []bool
	f64  func(in [][]float64) []float64
	f32  func(in [][]float32) []float32
	// bwd returns dL/d(input i) for the cotangent dy (entries for non-differentiated
	// inputs may be nil).
	bwd func(in [][]float32, dy []float32) [][]float32
}

func randn(r *rand.Rand, n int, s float64) []float64 {
	x := make([]float64, n)
	for i := range x {
		x[i] = r.NormFloat64() * s
	}
	return x
}

func maxAbs64(x []float64) float64 {
	m := 0.0
	for _, v := range x {
		m = math.Max(m, math.Abs(v))
	}
	return m
}

func runGradCase(t *testing.T, c gradCase) {
	t.Helper()
	r := rand.New(rand.NewPCG(7, 11))
	in32 := make([][]float32, len(c.in))
	in64 := make([][]float64, len(c.in))
	for i, x := range c.in {
		in32[i] = make([]float32, len(x))
		in64[i] = make([]float64, len(x))
		for j, v := range x {
			in32[i][j] = float32(v)
			in64[i][j] = float64(float32(v))
		}
	}
	out64 := c.f64(in64)
	out32 := c.f32(in32)
	if len(out64) != len(out32) {
		t.Fatalf("%s: forward length %d, twin %d", c.name, len(out32), len(out64))
	}
	var fd float64
	for i := range out64 {
		fd = math.Max(fd, math.Abs(float64(out32[i])-out64[i]))
	}
	if m := maxAbs64(out64); fd > fwdTol*math.Max(m, 1e-30) {
		t.Errorf("%s: forward max abs diff %.3g vs twin (max|out| %.3g)", c.name, fd, m)
	}
	dy := make([]float32, len(out64))
	for i := range dy {
		dy[i] = float32(r.NormFloat64())
	}
	grads := c.bwd(in32, dy)
	loss := func() float64 {
		var s float64
		for i, v := range c.f64(in64) {
			s += float64(dy[i]) * v
		}
		return s
	}
	for i := range in64 {
		if c.diff != nil && !c.diff[i] {
			continue
		}
		fdg := make([]float64, len(in64[i]))
		for j := range in64[i] {
			x0 := in64[i][j]
			in64[i][j] = x0 + fdStep
			lp := loss()
			in64[i][j] = x0 - fdStep
			lm := loss()
			in64[i][j] = x0
			fdg[j] = (lp - lm) / (2 * fdStep)
		}
		g := grads[i]
		if len(g) != len(fdg) {
			t.Fatalf("%s: input %d: gradient length %d, want %d", c.name, i, len(g), len(fdg))
		}
		var worst float64
		wi := 0
		for j := range g {
			if d := math.Abs(float64(g[j]) - fdg[j]); d > worst {
				worst, wi = d, j
			}
		}
		m := maxAbs64(fdg)
		if m == 0 {
			t.Errorf("%s: input %d: finite-difference gradient is all zero (useless case)", c.name, i)
			continue
		}
		if worst > gradTol*m {
			t.Errorf("%s: input %d: max |g − fd| = %.3g (rel %.3g) at %d (g %g, fd %g)", c.name, i, worst, worst/m, wi, g[wi], fdg[wi])
		} else {
			t.Logf("%s: input %d: rel err %.2g (max|g| %.3g)", c.name, i, worst/m, m)
		}
	}
}

// ---- float64 twins ----

func layerNorm64(x, gamma []float64, T, D int) []float64 {
	y := make([]float64, T*D)
	for t := 0; t < T; t++ {
		row := x[t*D : (t+1)*D]
		var mu, v float64
		for _, a := range row {
			mu += a
		}
		mu /= float64(D)
		for _, a := range row {
			v += (a - mu) * (a - mu)
		}
		v /= float64(D)
		rs := 1 / math.Sqrt(v+1e-5)
		for i, a := range row {
			y[t*D+i] = (a - mu) * rs * gamma[i]
		}
	}
	return y
}

func softmax64(x []float64) []float64 {
	m := math.Inf(-1)
	for _, v := range x {
		m = math.Max(m, v)
	}
	y := make([]float64, len(x))
	var s float64
	for i, v := range x {
		y[i] = math.Exp(v - m)
		s += y[i]
	}
	for i := range y {
		y[i] /= s
	}
	return y
}

func lse64(x []float64) float64 {
	m := math.Inf(-1)
	for _, v := range x {
		m = math.Max(m, v)
	}
	var s float64
	for _, v := range x {
		s += math.Exp(v - m)
	}
	return m + math.Log(s)
}

func attention64(qkv []float64, d AttnDims, scale float64) []float64 {
	B, T, H, KVH, Dh := d.B, d.T, d.H, d.KVH, d.Dh
	Q := d.QKVDim()
	out := make([]float64, B*T*H*Dh)
	for b := 0; b < B; b++ {
		for t := 0; t < T; t++ {
			for h := 0; h < H; h++ {
				g := h / (H / KVH)
				s := make([]float64, t+1)
				for j := 0; j <= t; j++ {
					for i := 0; i < Dh; i++ {
						s[j] += qkv[(b*T+t)*Q+h*Dh+i] * qkv[(b*T+j)*Q+H*Dh+g*Dh+i]
					}
					s[j] *= scale
				}
				p := softmax64(s)
				for j := 0; j <= t; j++ {
					for i := 0; i < Dh; i++ {
						out[(b*T+t)*H*Dh+h*Dh+i] += p[j] * qkv[(b*T+j)*Q+(H+KVH)*Dh+g*Dh+i]
					}
				}
			}
		}
	}
	return out
}

func toF32(x []float64) []float32 {
	y := make([]float32, len(x))
	for i, v := range x {
		y[i] = float32(v)
	}
	return y
}

// ---- cases ----

func opCases(t *testing.T) []gradCase {
	r := rand.New(rand.NewPCG(1, 2))
	pool := parallel.New(2)
	t.Cleanup(pool.Close)
	var cases []gradCase

	// LayerNorm (no bias), odd sizes.
	for _, sz := range [][2]int{{1, 2}, {3, 7}, {5, 33}} {
		T, D := sz[0], sz[1]
		x := randn(r, T*D, 2)
		for i := range x {
			x[i] += 0.5
		}
		gamma := randn(r, D, 1)
		cases = append(cases, gradCase{
			name: fmt.Sprintf("layernorm/T=%d,D=%d", T, D),
			in:   [][]float64{x, gamma},
			f64:  func(in [][]float64) []float64 { return layerNorm64(in[0], in[1], T, D) },
			f32: func(in [][]float32) []float32 {
				y := make([]float32, T*D)
				LayerNorm(y, in[0], T, D, in[1], 1e-5)
				y2 := make([]float32, T*D)
				LayerNormTrain(pool, y2, make([]float64, T), make([]float64, T), in[0], T, D, in[1], 1e-5)
				for i := range y {
					if y[i] != y2[i] {
						t.Errorf("LayerNormTrain differs from LayerNorm at %d: %g vs %g", i, y2[i], y[i])
						break
					}
				}
				return y
			},
			bwd: func(in [][]float32, dy []float32) [][]float32 {
				mean, rstd := make([]float64, T), make([]float64, T)
				LayerNormTrain(pool, make([]float32, T*D), mean, rstd, in[0], T, D, in[1], 1e-5)
				dx, dg := make([]float32, T*D), make([]float32, D)
				LayerNormBackward(pool, dx, dg, dy, in[0], mean, rstd, T, D, in[1])
				return [][]float32{dx, dg}
			},
		})
	}

	// Clamp: values kept away from the kinks by more than the FD step.
	{
		const c = 0.7
		x := randn(r, 40, 1)
		for i, v := range x {
			if math.Abs(math.Abs(v)-c) < 1e-3 {
				x[i] += 0.01
			}
		}
		cases = append(cases, gradCase{
			name: "clamp",
			in:   [][]float64{x},
			f64: func(in [][]float64) []float64 {
				y := make([]float64, len(in[0]))
				for i, v := range in[0] {
					y[i] = math.Max(-c, math.Min(c, v))
				}
				return y
			},
			f32: func(in [][]float32) []float32 {
				y := append([]float32(nil), in[0]...)
				Clamp(y, c)
				return y
			},
			bwd: func(in [][]float32, dy []float32) [][]float32 {
				dx := make([]float32, len(dy))
				ClampBackward(dx, dy, in[0], c)
				return [][]float32{dx}
			},
		})
	}

	// RoPE on several positions (cos/sin from the float32 tables in both).
	for _, dh := range []int{2, 8, 16} {
		const T, heads = 5, 3
		rope := NewRoPE(dh, 10000)
		cs := make([]float32, T*dh/2)
		sn := make([]float32, T*dh/2)
		for p := 0; p < T; p++ {
			rope.Tables(cs[p*dh/2:(p+1)*dh/2], sn[p*dh/2:(p+1)*dh/2], p*7)
		}
		cases = append(cases, gradCase{
			name: fmt.Sprintf("rope/Dh=%d", dh),
			in:   [][]float64{randn(r, T*heads*dh, 1)},
			f64: func(in [][]float64) []float64 {
				y := make([]float64, len(in[0]))
				h2 := dh / 2
				for p := 0; p < T; p++ {
					for h := 0; h < heads; h++ {
						v := in[0][(p*heads+h)*dh:]
						o := y[(p*heads+h)*dh:]
						for j := 0; j < h2; j++ {
							c, s := float64(cs[p*h2+j]), float64(sn[p*h2+j])
							o[j] = v[j]*c - v[j+h2]*s
							o[j+h2] = v[j+h2]*c + v[j]*s
						}
					}
				}
				return y
			},
			f32: func(in [][]float32) []float32 {
				y := append([]float32(nil), in[0]...)
				for p := 0; p < T; p++ {
					rope.Apply(y[p*heads*dh:(p+1)*heads*dh], heads, cs[p*dh/2:(p+1)*dh/2], sn[p*dh/2:(p+1)*dh/2])
				}
				return y
			},
			bwd: func(in [][]float32, dy []float32) [][]float32 {
				dx := append([]float32(nil), dy...)
				for p := 0; p < T; p++ {
					rope.ApplyBackward(dx[p*heads*dh:(p+1)*heads*dh], heads, cs[p*dh/2:(p+1)*dh/2], sn[p*dh/2:(p+1)*dh/2])
				}
				return [][]float32{dx}
			},
		})
	}

	// Causal GQA attention: MHA, GQA and MQA, several sequences.
	for _, d := range []AttnDims{{B: 1, T: 1, H: 1, KVH: 1, Dh: 2}, {B: 2, T: 5, H: 4, KVH: 2, Dh: 4}, {B: 1, T: 7, H: 3, KVH: 1, Dh: 6}, {B: 2, T: 4, H: 2, KVH: 2, Dh: 3}} {
		scale := float32(1 / math.Sqrt(float64(d.Dh)))
		cases = append(cases, gradCase{
			name: fmt.Sprintf("attention/B=%d,T=%d,H=%d,KVH=%d,Dh=%d", d.B, d.T, d.H, d.KVH, d.Dh),
			in:   [][]float64{randn(r, d.B*d.T*d.QKVDim(), 1.2)},
			f64:  func(in [][]float64) []float64 { return attention64(in[0], d, float64(scale)) },
			f32: func(in [][]float32) []float32 {
				out := make([]float32, d.B*d.T*d.H*d.Dh)
				CausalAttention(pool, out, make([]float64, d.B*d.T*d.H), in[0], d, scale)
				// The inference kernel must agree with the training forward (key by
				// key there, blocked GEMMs here).
				Q := d.QKVDim()
				o2 := make([]float32, d.H*d.Dh)
				for b := 0; b < d.B; b++ {
					seq := in[0][b*d.T*Q : (b+1)*d.T*Q]
					keys := make([]float32, d.T*d.KVH*d.Dh)
					vals := make([]float32, d.T*d.KVH*d.Dh)
					for j := 0; j < d.T; j++ {
						copy(keys[j*d.KVH*d.Dh:], seq[j*Q+d.H*d.Dh:j*Q+(d.H+d.KVH)*d.Dh])
						copy(vals[j*d.KVH*d.Dh:], seq[j*Q+(d.H+d.KVH)*d.Dh:(j+1)*Q])
					}
					for tt := 0; tt < d.T; tt++ {
						for h := 0; h < d.H; h++ {
							g := h / (d.H / d.KVH)
							CausalAttentionHead(o2[h*d.Dh:(h+1)*d.Dh], seq[tt*Q+h*d.Dh:tt*Q+(h+1)*d.Dh], keys, vals, d.KVH*d.Dh, g*d.Dh, tt+1, scale)
						}
						for i, v := range o2 {
							if w := out[(b*d.T+tt)*d.H*d.Dh+i]; math.Abs(float64(w-v)) > 4e-6*math.Max(1, math.Abs(float64(v))) {
								t.Errorf("training attention differs from CausalAttentionHead: %g vs %g", w, v)
								return out
							}
						}
					}
				}
				return out
			},
			bwd: func(in [][]float32, dy []float32) [][]float32 {
				n := d.B * d.T * d.H
				out := make([]float32, d.B*d.T*d.H*d.Dh)
				lse := make([]float64, n)
				CausalAttention(pool, out, lse, in[0], d, scale)
				dqkv := make([]float32, len(in[0]))
				for i := range dqkv {
					dqkv[i] = float32(math.NaN()) // every element must be written
				}
				CausalAttentionBackward(pool, dqkv, dy, out, lse, make([]float64, n), in[0], d, scale)
				return [][]float32{dqkv}
			},
		})
	}

	// Softmax.
	cases = append(cases, gradCase{
		name: "softmax",
		in:   [][]float64{randn(r, 9, 2)},
		f64:  func(in [][]float64) []float64 { return softmax64(in[0]) },
		f32: func(in [][]float32) []float32 {
			y := append([]float32(nil), in[0]...)
			Softmax(y)
			return y
		},
		bwd: func(in [][]float32, dy []float32) [][]float32 {
			y := append([]float32(nil), in[0]...)
			Softmax(y)
			dx := make([]float32, len(y))
			SoftmaxBackward(dx, dy, y)
			return [][]float32{dx}
		},
	})

	// SwiGLU.
	cases = append(cases, gradCase{
		name: "swiglu",
		in:   [][]float64{randn(r, 23, 3), randn(r, 23, 1)},
		f64: func(in [][]float64) []float64 {
			y := make([]float64, len(in[0]))
			for i, g := range in[0] {
				y[i] = g / (1 + math.Exp(-g)) * in[1][i]
			}
			return y
		},
		f32: func(in [][]float32) []float32 {
			y := make([]float32, len(in[0]))
			SwiGLU(y, in[0], in[1])
			return y
		},
		bwd: func(in [][]float32, dy []float32) [][]float32 {
			dg, du := make([]float32, len(dy)), make([]float32, len(dy))
			SwiGLUBackward(dg, du, dy, in[0], in[1])
			return [][]float32{dg, du}
		},
	})

	// Top-k renormalisation w / ‖w‖_p (selected probabilities are positive).
	for _, pp := range []float64{0, 1, 2, 3.5} {
		var normP *float64
		if pp != 0 {
			normP = &pp
		}
		w := make([]float64, 4)
		for i := range w {
			w[i] = 0.05 + r.Float64()*0.3
		}
		name := "topk-renorm/p=null"
		if normP != nil {
			name = fmt.Sprintf("topk-renorm/p=%g", pp)
		}
		cases = append(cases, gradCase{
			name: name,
			in:   [][]float64{w},
			f64: func(in [][]float64) []float64 {
				y := append([]float64(nil), in[0]...)
				if normP == nil {
					return y
				}
				var s float64
				for _, v := range y {
					s += math.Pow(math.Abs(v), pp)
				}
				n := math.Pow(s, 1/pp)
				for i := range y {
					y[i] /= n
				}
				return y
			},
			f32: func(in [][]float32) []float32 {
				// TopK over the weights themselves selects all of them (sorted).
				k := len(in[0])
				idx, y := make([]int, k), make([]float32, k)
				TopK(in[0], k, normP, idx, y)
				out := make([]float32, k)
				for s, e := range idx {
					out[e] = y[s]
				}
				return out
			},
			bwd: func(in [][]float32, dy []float32) [][]float32 {
				dw := make([]float32, len(dy))
				TopKNormBackward(dw, dy, in[0], normP)
				return [][]float32{dw}
			},
		})
	}

	// Linear y = x·Wᵀ and DBRX's untransposed w2 y = h·W2, sizes on both sides of
	// the kernel's matvec/GEMM split and around its tiles.
	for _, s := range [][3]int{{1, 3, 2}, {3, 7, 5}, {7, 19, 13}, {13, 40, 33}} {
		T, K, N := s[0], s[1], s[2]
		cases = append(cases, gradCase{
			name: fmt.Sprintf("linear/T=%d,K=%d,N=%d", T, K, N),
			in:   [][]float64{randn(r, T*K, 1), randn(r, N*K, 1)},
			f64: func(in [][]float64) []float64 {
				y := make([]float64, T*N)
				for tt := 0; tt < T; tt++ {
					for n := 0; n < N; n++ {
						for k := 0; k < K; k++ {
							y[tt*N+n] += in[0][tt*K+k] * in[1][n*K+k]
						}
					}
				}
				return y
			},
			f32: func(in [][]float32) []float32 {
				y := make([]float32, T*N)
				kernel.MatMulT(pool, y, in[0], T, F32Mat(in[1], N, K))
				return y
			},
			bwd: func(in [][]float32, dy []float32) [][]float32 {
				dx := make([]float32, T*K)
				kernel.MatMulN(pool, dx, dy, T, F32Mat(in[1], N, K), false)
				dw := make([]float32, N*K)
				MatMulATB(pool, dw, dy, in[0], T, N, K, nil)
				return [][]float32{dx, dw}
			},
		})
		F, D := K, N
		cases = append(cases, gradCase{
			name: fmt.Sprintf("w2/T=%d,F=%d,D=%d", T, F, D),
			in:   [][]float64{randn(r, T*F, 1), randn(r, F*D, 1)},
			f64: func(in [][]float64) []float64 {
				y := make([]float64, T*D)
				for tt := 0; tt < T; tt++ {
					for d := 0; d < D; d++ {
						for f := 0; f < F; f++ {
							y[tt*D+d] += in[0][tt*F+f] * in[1][f*D+d]
						}
					}
				}
				return y
			},
			f32: func(in [][]float32) []float32 {
				y := make([]float32, T*D)
				kernel.MatMulN(pool, y, in[0], T, F32Mat(in[1], F, D), false)
				return y
			},
			bwd: func(in [][]float32, dy []float32) [][]float32 {
				dh := make([]float32, T*F)
				kernel.MatMulT(pool, dh, dy, T, F32Mat(in[1], F, D))
				dw := make([]float32, F*D)
				MatMulATB(pool, dw, in[0], dy, T, F, D, nil)
				return [][]float32{dh, dw}
			},
		})
	}

	// Embedding gather.
	{
		const V, D = 6, 5
		ids := []int{3, 0, 3, 5, 3}
		cases = append(cases, gradCase{
			name: "embedding",
			in:   [][]float64{randn(r, V*D, 1)},
			f64: func(in [][]float64) []float64 {
				var y []float64
				for _, id := range ids {
					y = append(y, in[0][id*D:(id+1)*D]...)
				}
				return y
			},
			f32: func(in [][]float32) []float32 {
				y := make([]float32, len(ids)*D)
				Embedding(y, in[0], ids, D)
				return y
			},
			bwd: func(in [][]float32, dy []float32) [][]float32 {
				dw := make([]float32, V*D)
				EmbeddingBackward(dw, dy, ids, D)
				return [][]float32{dw}
			},
		})
	}

	// Cross-entropy, mean over non-ignored labels.
	{
		const R, V = 6, 11
		labels := []int{3, IgnoreIndex, 0, 10, 3, IgnoreIndex}
		n := 4
		cases = append(cases, gradCase{
			name: "cross-entropy",
			in:   [][]float64{randn(r, R*V, 3)},
			f64: func(in [][]float64) []float64 {
				var s float64
				for i, l := range labels {
					if l != IgnoreIndex {
						row := in[0][i*V : (i+1)*V]
						s += lse64(row) - row[l]
					}
				}
				return []float64{s / float64(n)}
			},
			f32: func(in [][]float32) []float32 {
				loss := make([]float64, R)
				if err := CrossEntropy(pool, loss, append([]float32(nil), in[0]...), labels, V, 0, false); err != nil {
					t.Fatal(err)
				}
				var s float64
				for _, v := range loss {
					s += v
				}
				return []float32{float32(s / float64(n))}
			},
			bwd: func(in [][]float32, dy []float32) [][]float32 {
				g := append([]float32(nil), in[0]...)
				if err := CrossEntropy(pool, make([]float64, R), g, labels, V, dy[0]/float32(n), true); err != nil {
					t.Fatal(err)
				}
				return [][]float32{g}
			},
		})
	}

	// Router losses over L layers of N tokens: the HF aux loss (double softmax,
	// pooled over layers), MegaBlocks' per-layer form and the z-loss.
	{
		const L, N, E, K = 3, 5, 6, 2
		logits := randn(r, L*N*E, 1.5)
		probs := make([]float64, L*N*E)
		for i := 0; i < L*N; i++ {
			copy(probs[i*E:], softmax64(logits[i*E:(i+1)*E]))
		}
		split32 := func(x []float32) [][]float32 {
			s := make([][]float32, L)
			for l := range s {
				s[l] = x[l*N*E : (l+1)*N*E]
			}
			return s
		}
		// The top-k of the probabilities (and of their softmax) is fixed here.
		topIdx := make([][]int, L)
		for l := range topIdx {
			topIdx[l] = make([]int, N*K)
			p32 := toF32(probs[l*N*E : (l+1)*N*E])
			for tt := 0; tt < N; tt++ {
				TopK(p32[tt*E:(tt+1)*E], K, nil, topIdx[l][tt*K:(tt+1)*K], make([]float32, K))
			}
		}
		cases = append(cases, gradCase{
			name: "aux-loss/hf",
			in:   [][]float64{probs},
			f64: func(in [][]float64) []float64 {
				cnt := make([]float64, E)
				sum := make([]float64, E)
				rows := float64(L * N)
				for i := 0; i < L*N; i++ {
					rr := softmax64(in[0][i*E : (i+1)*E])
					for _, e := range topIdx[i/N][(i%N)*K : (i%N+1)*K] {
						cnt[e]++
					}
					for e, v := range rr {
						sum[e] += v
					}
				}
				var aux float64
				for e := range cnt {
					aux += cnt[e] / rows * sum[e] / rows
				}
				return []float64{aux * E}
			},
			f32: func(in [][]float32) []float32 {
				aux, err := LoadBalancingLossHF(split32(in[0]), nil, N, E, K, 1)
				if err != nil {
					t.Fatal(err)
				}
				return []float32{float32(aux)}
			},
			bwd: func(in [][]float32, dy []float32) [][]float32 {
				g := make([]float32, L*N*E)
				if _, err := LoadBalancingLossHF(split32(in[0]), split32(g), N, E, K, dy[0]); err != nil {
					t.Fatal(err)
				}
				return [][]float32{g}
			},
		})
		cases = append(cases, gradCase{
			name: "aux-loss/megablocks",
			in:   [][]float64{probs},
			f64: func(in [][]float64) []float64 {
				var aux float64
				for l := 0; l < L; l++ {
					for tt := 0; tt < N; tt++ {
						for _, e := range topIdx[l][tt*K : (tt+1)*K] {
							// n_{l,e}·P̄_{l,e} summed token by token
							for u := 0; u < N; u++ {
								aux += in[0][(l*N+u)*E+e] / N
							}
						}
					}
				}
				return []float64{aux * E / (L * N * K)}
			},
			f32: func(in [][]float32) []float32 {
				aux, err := LoadBalancingLossMegaBlocks(split32(in[0]), topIdx, nil, N, E, K, 1)
				if err != nil {
					t.Fatal(err)
				}
				return []float32{float32(aux)}
			},
			bwd: func(in [][]float32, dy []float32) [][]float32 {
				g := make([]float32, L*N*E)
				if _, err := LoadBalancingLossMegaBlocks(split32(in[0]), topIdx, split32(g), N, E, K, dy[0]); err != nil {
					t.Fatal(err)
				}
				return [][]float32{g}
			},
		})
		cases = append(cases, gradCase{
			name: "router-z-loss",
			in:   [][]float64{logits},
			f64: func(in [][]float64) []float64 {
				var z float64
				for i := 0; i < L*N; i++ {
					v := lse64(in[0][i*E : (i+1)*E])
					z += v * v
				}
				return []float64{z / (L * N)}
			},
			f32: func(in [][]float32) []float32 {
				z, err := RouterZLoss(split32(in[0]), nil, N, E, 1)
				if err != nil {
					t.Fatal(err)
				}
				return []float32{float32(z)}
			},
			bwd: func(in [][]float32, dy []float32) [][]float32 {
				g := make([]float32, L*N*E)
				if _, err := RouterZLoss(split32(in[0]), split32(g), N, E, dy[0]); err != nil {
					t.Fatal(err)
				}
				return [][]float32{g}
			},
		})
	}
	return cases
}

func TestOpGradients(t *testing.T) {
	for _, c := range opCases(t) {
		t.Run(c.name, func(t *testing.T) { runGradCase(t, c) })
	}
}

// TestCausalAttentionMatchesHead: the training forward agrees with the inference
// kernel to float32 rounding over several blocks of queries and more than one block
// of keys of the inference kernel (T > attnBlock), with a GQA group and an odd head
// dim, and its lse with the float64 log-sum-exp of the scores.
func TestCausalAttentionMatchesHead(t *testing.T) {
	pool := parallel.New(2)
	defer pool.Close()
	r := rand.New(rand.NewPCG(21, 22))
	d := AttnDims{B: 2, T: attnBlock + 45, H: 4, KVH: 2, Dh: 13}
	Q, N := d.QKVDim(), d.B*d.T
	qkv := toF32(randn(r, N*Q, 1.5))
	scale := float32(1 / math.Sqrt(float64(d.Dh)))
	out := make([]float32, N*d.H*d.Dh)
	lse := make([]float64, N*d.H)
	CausalAttention(pool, out, lse, qkv, d, scale)
	KD := d.KVH * d.Dh
	keys, vals := make([]float32, d.T*KD), make([]float32, d.T*KD)
	o := make([]float32, d.Dh)
	for b := 0; b < d.B; b++ {
		for j := 0; j < d.T; j++ {
			row := qkv[(b*d.T+j)*Q:]
			copy(keys[j*KD:(j+1)*KD], row[d.H*d.Dh:d.H*d.Dh+KD])
			copy(vals[j*KD:(j+1)*KD], row[d.H*d.Dh+KD:Q])
		}
		for tt := 0; tt < d.T; tt++ {
			r := b*d.T + tt
			for h := 0; h < d.H; h++ {
				g := h / (d.H / d.KVH)
				q := qkv[r*Q+h*d.Dh : r*Q+(h+1)*d.Dh]
				CausalAttentionHead(o, q, keys, vals, KD, g*d.Dh, tt+1, scale)
				for i, v := range o {
					if w := out[r*d.H*d.Dh+h*d.Dh+i]; math.Abs(float64(w-v)) > 1e-5*math.Max(1, math.Abs(float64(v))) {
						t.Fatalf("b=%d t=%d h=%d [%d]: training %g, CausalAttentionHead %g", b, tt, h, i, w, v)
					}
				}
				sc := make([]float64, tt+1)
				for j := range sc {
					sc[j] = float64(kernel.DotF32(q, keys[j*KD+g*d.Dh:j*KD+(g+1)*d.Dh]) * scale)
				}
				if want := lse64(sc); math.Abs(lse[r*d.H+h]-want) > 1e-6*math.Max(1, math.Abs(want)) {
					t.Fatalf("b=%d t=%d h=%d: lse %.9g, want %.9g", b, tt, h, lse[r*d.H+h], want)
				}
			}
		}
	}
}

// At exactly ±clip torch.clamp passes the gradient (its mask is min <= x <= max).
func TestClampBackwardAtBound(t *testing.T) {
	x := []float32{-0.5, 0.5, 0.50001, -0.50001, 0, float32(math.NaN())}
	dy := []float32{1, 2, 3, 4, 5, 6}
	dx := make([]float32, len(x))
	ClampBackward(dx, dy, x, 0.5)
	want := []float32{1, 2, 0, 0, 5, 0}
	for i := range want {
		if dx[i] != want[i] {
			t.Errorf("x=%g: grad %g, want %g", x[i], dx[i], want[i])
		}
	}
}

func TestCrossEntropyBadLabel(t *testing.T) {
	logits := make([]float32, 2*3)
	for _, l := range []int{3, -1, -101} {
		if err := CrossEntropy(nil, make([]float64, 2), logits, []int{0, l}, 3, 1, true); err == nil {
			t.Errorf("label %d: no error", l)
		}
	}
}

// MatMulATB must accumulate into dst and agree with the plain triple loop at
// sizes that cross the kernel's tiles.
func TestMatMulATB(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	pool := parallel.New(2)
	defer pool.Close()
	for _, s := range [][3]int{{1, 1, 1}, {5, 3, 2}, {17, 33, 15}, {70, 300, 41}, {6, 5, 260}} {
		T, M, N := s[0], s[1], s[2]
		a, b := toF32(randn(r, T*M, 1)), toF32(randn(r, T*N, 1))
		dst := toF32(randn(r, M*N, 1))
		want := make([]float64, M*N)
		for i := range want {
			want[i] = float64(dst[i])
		}
		for tt := 0; tt < T; tt++ {
			for m := 0; m < M; m++ {
				for n := 0; n < N; n++ {
					want[m*N+n] += float64(a[tt*M+m]) * float64(b[tt*N+n])
				}
			}
		}
		MatMulATB(pool, dst, a, b, T, M, N, nil)
		var worst float64
		for i := range want {
			worst = math.Max(worst, math.Abs(float64(dst[i])-want[i]))
		}
		if worst > 1e-4*math.Sqrt(float64(T)) {
			t.Errorf("T=%d M=%d N=%d: max abs diff %g", T, M, N, worst)
		}
	}
}
