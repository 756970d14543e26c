package kernel

import (
	"fmt"
	"math"
	"slices"
	"testing"
)

var vecSizes = []int{0, 1, 7, 8, 15, 17, 31, 32, 33, 64, 4096 + 3}

// ulps is the distance between a and b in units of float32 spacing at b.
func ulps(a, b float32) float64 {
	if a == b {
		return 0
	}
	sp := math.Abs(float64(math.Nextafter32(b, float32(math.Inf(1))) - b))
	if sp == 0 || math.IsInf(sp, 0) {
		sp = math.Abs(float64(b - math.Nextafter32(b, float32(math.Inf(-1)))))
	}
	return math.Abs(float64(a)-float64(b)) / sp
}

// vecImpls runs f once with the assembly (if any) and once with the generic path.
func vecImpls(t *testing.T, f func(t *testing.T)) {
	if simd != nil {
		t.Run("impl=asm", f)
	}
	t.Run("impl=generic", func(t *testing.T) { withKernels(nil, func() { f(t) }) })
}

func TestDotF32(t *testing.T) {
	vecImpls(t, func(t *testing.T) {
		r := newRand(3)
		for _, n := range vecSizes {
			a, b := randF32(r, n), randF32(r, n)
			if n > 2 {
				a[n-2] = float32(math.Inf(1))
				if n%2 == 1 {
					b[1] = float32(math.NaN())
				}
			}
			got, want := DotF32(a, b), dotF32Generic(a, b)
			var sa float64
			for i := range a {
				sa += math.Abs(float64(a[i]) * float64(b[i]))
			}
			if !closeTo(got, want, 2*float64(n+1)*0x1p-24*sa) {
				t.Errorf("n=%d: DotF32 %v, twin %v", n, got, want)
			}
		}
	})
}

func TestAxpyScaleAddExact(t *testing.T) {
	vecImpls(t, func(t *testing.T) {
		r := newRand(4)
		for _, n := range vecSizes {
			x := randF32(r, n)
			if n > 3 {
				x[3] = float32(math.NaN())
				x[n-1] = float32(math.Inf(-1))
			}
			y0 := randF32(r, n)
			for _, op := range []string{"axpy", "scaleadd"} {
				got, check := guarded(t, n)
				copy(got, y0)
				want := append([]float32(nil), y0...)
				if op == "axpy" {
					AxpyF32(got, 0.37, x)
					axpyF32Generic(want, 0.37, x)
				} else {
					ScaleAddF32(got, 0.9, -1.3, x)
					scaleAddF32Generic(want, 0.9, -1.3, x)
				}
				check()
				for i := range got {
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) && !(got[i] != got[i] && want[i] != want[i]) {
						t.Fatalf("%s n=%d: [%d] = %v, twin %v (must be bit-exact)", op, n, i, got[i], want[i])
					}
				}
			}
		}
	})
}

// softmax64 is the float64 reference.
func softmax64(x []float32) []float64 {
	m := math.Inf(-1)
	for _, v := range x {
		m = math.Max(m, float64(v))
	}
	out := make([]float64, len(x))
	var s float64
	for i, v := range x {
		out[i] = math.Exp(float64(v) - m)
		s += out[i]
	}
	for i := range out {
		out[i] /= s
	}
	return out
}

func TestSoftmaxF32(t *testing.T) {
	vecImpls(t, func(t *testing.T) {
		r := newRand(5)
		for _, n := range append(vecSizes, 100352) {
			for _, scale := range []float32{1, 30} {
				buf, check := guarded(t, n)
				for i := range buf {
					buf[i] = scale * (2*r.Float32() - 1)
				}
				if n > 5 {
					buf[5] = float32(math.Inf(-1)) // masked entry
				}
				ref := softmax64(buf)
				SoftmaxF32(buf)
				check()
				for i, v := range buf {
					if math.Abs(float64(v)-ref[i]) > 1e-6*ref[i]+1e-37 {
						t.Fatalf("n=%d scale=%v: p[%d] = %v, float64 %v (rel %.2g)", n, scale, i, v, ref[i], math.Abs(float64(v)-ref[i])/ref[i])
					}
				}
				if n > 5 && buf[5] != 0 {
					t.Fatalf("n=%d: -Inf entry gave %v", n, buf[5])
				}
			}
		}
		// Any NaN, or an +Inf, makes every entry NaN on every path.
		for _, n := range []int{9, 33} {
			for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(1))} {
				x := randF32(r, n)
				x[n-1] = bad
				SoftmaxF32(x)
				for i, v := range x {
					if v == v {
						t.Fatalf("n=%d bad=%v: p[%d] = %v, want NaN", n, bad, i, v)
					}
				}
			}
		}
	})
}

// TestExpAccuracy checks the assembly exp polynomial over its whole range.
func TestExpAccuracy(t *testing.T) {
	if simd == nil {
		t.Skip("no assembly kernels")
	}
	const n = 1 << 16
	x := make([]float32, n)
	for i := range x {
		x[i] = -103 + 191.72*float32(i)/n // [-103, 88.72]
	}
	x[0], x[1], x[2], x[3] = 0, float32(math.Copysign(0, -1)), 88.72, -87.33
	x[4], x[5], x[6], x[7] = float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()), 89
	e := append([]float32(nil), x...)
	simd.expSub(&e[0], &e[0], n, 0)
	worst := 0.0
	for i, v := range x {
		want := float32(math.Exp(float64(v)))
		switch {
		case want != want:
			if e[i] == e[i] {
				t.Fatalf("exp(%v) = %v, want NaN", v, e[i])
			}
		case want < 0x1p-126: // subnormal results: absolute error below the normal range
			if math.Abs(float64(e[i]-want)) > 0x1p-126 {
				t.Fatalf("exp(%v) = %v, want %v", v, e[i], want)
			}
		default:
			u := ulps(e[i], want)
			worst = math.Max(worst, u)
			if u > 1 {
				t.Fatalf("exp(%v) = %v, want %v (%.1f ulp)", v, e[i], want, u)
			}
		}
	}
	t.Logf("worst error %.2f ulp", worst)
}

func TestLayerNormF32(t *testing.T) {
	vecImpls(t, func(t *testing.T) {
		r := newRand(6)
		for _, n := range append(vecSizes, 768) {
			if n == 0 {
				LayerNormF32(nil, nil, nil, 1e-5)
				continue
			}
			x, gamma := randF32(r, n), randF32(r, n)
			for i := range x {
				x[i] = 3 + 5*x[i] // offset mean: catastrophic for a naive float32 variance
			}
			got, check := guarded(t, n)
			LayerNormF32(got, x, gamma, 1e-5)
			check()
			want := make([]float32, n)
			layerNormF32Generic(want, x, gamma, 1e-5)
			var mean, ss float64
			for _, v := range x {
				mean += float64(v)
			}
			mean /= float64(n)
			for _, v := range x {
				ss += (float64(v) - mean) * (float64(v) - mean)
			}
			rstd := 1 / math.Sqrt(ss/float64(n)+1e-5)
			for i := range got {
				ref := (float64(x[i]) - mean) * rstd * float64(gamma[i])
				if math.Abs(float64(got[i])-ref) > 1e-6*math.Abs(ref)+1e-7*math.Abs(float64(gamma[i])) {
					t.Fatalf("n=%d: [%d] = %v, float64 %v", n, i, got[i], ref)
				}
				if ulps(got[i], want[i]) > 1 {
					t.Fatalf("n=%d: [%d] = %v, twin %v", n, i, got[i], want[i])
				}
			}
		}
	})
}

func TestSiLUMulF32(t *testing.T) {
	vecImpls(t, func(t *testing.T) {
		r := newRand(7)
		for _, n := range vecSizes {
			gate, up := randF32(r, n), randF32(r, n)
			for i := range gate {
				gate[i] *= 40
			}
			specials := []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), -100, 100, 0, -90, 89}
			for i := 0; i < n && i < len(specials); i++ {
				gate[(i*5)%n] = specials[i]
			}
			got, check := guarded(t, n)
			SiLUMulF32(got, gate, up)
			check()
			want := make([]float32, n)
			siluMulF32Generic(want, gate, up)
			for i := range got {
				if !closeTo(got[i], want[i], 4*0x1p-24*math.Abs(float64(want[i]))+1e-38) {
					t.Fatalf("n=%d: silu(%v)*%v = %v, twin %v", n, gate[i], up[i], got[i], want[i])
				}
			}
			// In place.
			SiLUMulF32(gate, gate, up)
			for i := range gate {
				if !closeTo(gate[i], want[i], 4*0x1p-24*math.Abs(float64(want[i]))+1e-38) {
					t.Fatalf("n=%d in place: [%d] = %v, twin %v", n, i, gate[i], want[i])
				}
			}
		}
	})
}

// TestExpSubF32 checks ExpSubF32 against its twin (at most 1 ulp apart, the sum to
// rounding) at odd sizes and offsets, with dst apart from or aliasing x, large and
// tiny differences and the special values.
func TestExpSubF32(t *testing.T) {
	vecImpls(t, func(t *testing.T) {
		r := newRand(15)
		inf, nan := float32(math.Inf(1)), float32(math.NaN())
		for _, n := range append(vecSizes, 100352+5) {
			for _, m := range []float32{0, 3.5, -20, 80} {
				x := randF32(r, n)
				for i := range x {
					x[i] = 40 * x[i] // exp arguments in (-120, 40)
				}
				if n > 12 {
					x[1], x[2], x[3], x[11] = inf, -inf, nan, m
				}
				want := make([]float32, n)
				ws := expSubF32Generic(want, x, m)
				for _, alias := range []bool{false, true} {
					got, check := guarded(t, n)
					src := x
					if alias {
						copy(got, x)
						src = got
					}
					s := ExpSubF32(got, src, m)
					check()
					for i := range want {
						g, w := got[i], want[i]
						switch {
						case w != w:
							if g == g {
								t.Fatalf("n=%d m=%v: exp(%v-m) = %v, want NaN", n, m, x[i], g)
							}
						case w < 0x1p-126:
							if math.Abs(float64(g-w)) > 0x1p-126 {
								t.Fatalf("n=%d m=%v: exp(%v-m) = %v, want %v", n, m, x[i], g, w)
							}
						default:
							if u := ulps(g, w); u > 1 {
								t.Fatalf("n=%d m=%v: exp(%v-m) = %v, want %v (%.1f ulp)", n, m, x[i], g, w, u)
							}
						}
					}
					if !(s == ws || math.Abs(s-ws) <= 0x1p-23*math.Abs(ws) || s != s && ws != ws) {
						t.Fatalf("n=%d m=%v: sum %v, twin %v", n, m, s, ws)
					}
				}
			}
		}
	})
}

func TestMaxF32(t *testing.T) {
	vecImpls(t, func(t *testing.T) {
		if m := MaxF32(nil); !math.IsInf(float64(m), -1) {
			t.Fatalf("MaxF32(nil) = %v", m)
		}
		r := newRand(16)
		for _, n := range vecSizes[1:] {
			for _, at := range []int{0, n / 2, n - 1} {
				x := randF32(r, n)
				x[at] = 7
				if n > 3 {
					x[(at+1)%n] = float32(math.Inf(-1))
				}
				if m := MaxF32(x); m != 7 {
					t.Fatalf("n=%d max at %d: MaxF32 = %v", n, at, m)
				}
			}
		}
	})
}

func TestVecAllocs(t *testing.T) {
	r := newRand(8)
	x, y, g := randF32(r, 1003), randF32(r, 1003), randF32(r, 1003)
	ops := map[string]func(){
		"dot":       func() { _ = DotF32(x, y) },
		"axpy":      func() { AxpyF32(y, 0.5, x) },
		"scaleadd":  func() { ScaleAddF32(y, 0.5, 0.5, x) },
		"softmax":   func() { SoftmaxF32(y) },
		"expsub":    func() { _ = ExpSubF32(y, x, 0.5) },
		"max":       func() { _ = MaxF32(x) },
		"layernorm": func() { LayerNormF32(y, x, g, 1e-5) },
		"silumul":   func() { SiLUMulF32(y, x, g) },
	}
	// Stack arrays passed to the vector ops stay on the stack (the assembly is
	// //go:noescape and called directly).
	ops["stack"] = func() {
		var s, p [64]float32
		copy(s[:], x)
		m := MaxF32(s[:])
		_ = ExpSubF32(p[:], s[:], m) + float64(DotF32(p[:], s[:]))
		AxpyF32(p[:], 2, s[:])
		ScaleAddF32(p[:], 1, 2, s[:])
		SoftmaxF32(p[:])
		SiLUMulF32(p[:], s[:], p[:])
		LayerNormF32(p[:], s[:], s[:], 1e-5)
	}
	for name, f := range ops {
		if a := testing.AllocsPerRun(10, f); a != 0 {
			t.Errorf("%s: %.1f allocs", name, a)
		}
	}
}

func ExampleSoftmaxF32() {
	x := []float32{1, 2, 3, float32(math.Inf(-1))}
	SoftmaxF32(x)
	fmt.Printf("%.4f\n", x)
	// Output: [0.0900 0.2447 0.6652 0.0000]
}

// TestAdamWF32 checks the assembly AdamW update against its Go twin bit for bit,
// in both lerp forms, at odd lengths and offsets, with zero and negative-zero
// moments (untouched embedding rows) and a zero gradient scale.
func TestAdamWF32(t *testing.T) {
	r := newRand(7)
	steps := []AdamWStep{
		{GradScale: 1, Decay: 0.999, Lerp: 0.1, Beta2: 0.999, W2: 0.001, StepSize: -1e-3, InvBc2Sqrt: 31.6, Eps: 1e-8, LowWeight: true},
		{GradScale: 0.37, Decay: 1, Lerp: 0.25, Beta2: 0.95, W2: 0.05, StepSize: -3e-4, InvBc2Sqrt: 1.02, Eps: 1e-6},
		{GradScale: 0, Decay: 0.9, Lerp: 0.5, Beta2: 0.5, W2: 0.5, StepSize: -1, InvBc2Sqrt: 2, Eps: 1e-3, LowWeight: true},
	}
	for si, c := range steps {
		for _, n := range []int{1, 7, 8, 9, 31, 64, 1001} {
			for _, off := range []int{0, 1, 3} {
				w, g := randF32(r, n+off)[off:], randF32(r, n+off)[off:]
				m, v := randF32(r, n+off)[off:], randF32(r, n+off)[off:]
				for i := range v {
					v[i] *= v[i] // second moments are non-negative
					switch i % 5 {
					case 1: // a row no batch has reached: zero moments, zero gradient
						m[i], v[i], g[i] = 0, 0, 0
					case 3:
						m[i], v[i], g[i] = float32(math.Copysign(0, -1)), 0, 0
					}
				}
				want := [4][]float32{slices.Clone(w), slices.Clone(g), slices.Clone(m), slices.Clone(v)}
				adamWF32Generic(want[0], want[1], want[2], want[3], c)
				AdamWF32(w, g, m, v, c)
				for k, got := range [][]float32{w, g, m, v} {
					for i := range got {
						if math.Float32bits(got[i]) != math.Float32bits(want[k][i]) {
							t.Fatalf("step %d n=%d off=%d: array %d [%d] = %v (%#x), twin %v (%#x)",
								si, n, off, k, i, got[i], math.Float32bits(got[i]), want[k][i], math.Float32bits(want[k][i]))
						}
					}
				}
			}
		}
	}
}
