package kernel

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime/debug"
	"testing"

	"github.com/dbrx-engine/dbrx/internal/parallel"
	"github.com/dbrx-engine/dbrx/tensor"
)

// Test conventions (DESIGN habit 4): odd sizes, data at odd element offsets (so never
// 32-byte aligned), guard bands of sentinels around every output, NaN/Inf inputs.
//
// Tolerance for reordered float32 sums of K products: two summation orders of the
// same terms differ by at most about 2·K·u·Σ|terms| with u = 2⁻²⁴, so
//
//	|fast − twin| <= 2·(K+2)·2⁻²⁴·(Σ_k |x_k·w_k| + |dst₀|)
//
// (dst₀ the old value when MatMulN accumulates),
// which is the "relative 1e-6·K" bound stated against the magnitude of the terms
// rather than of the (possibly cancelling) result.

var oddSizes = []int{0, 1, 7, 15, 17, 33, 4096 + 3}

const guard = 19 // guard-band length (odd, so data behind it is misaligned)

var dtypeList = []tensor.DType{tensor.F32, tensor.BF16, tensor.F16}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)) }

// sentinel is a NaN payload no kernel produces.
var sentinel = math.Float32frombits(0x7fc0dead)

// guarded returns a slice of n floats with guard bands of sentinels on both sides,
// and a check function that reports any write into the bands.
func guarded(t *testing.T, n int) ([]float32, func()) {
	t.Helper()
	buf := make([]float32, n+2*guard)
	for i := range buf {
		buf[i] = sentinel
	}
	return buf[guard : guard+n], func() {
		t.Helper()
		for i := 0; i < guard; i++ {
			if math.Float32bits(buf[i]) != 0x7fc0dead || math.Float32bits(buf[guard+n+i]) != 0x7fc0dead {
				t.Fatalf("guard band overwritten (n=%d)", n)
			}
		}
	}
}

// randF32 returns n random floats in [-1, 1) at an odd offset into a larger slice.
func randF32(r *rand.Rand, n int) []float32 {
	buf := make([]float32, n+3)
	for i := range buf {
		buf[i] = 2*r.Float32() - 1
	}
	return buf[1 : 1+n]
}

// randMat returns a rows×cols matrix of dt whose data starts at an odd element offset.
func randMat(r *rand.Rand, dt tensor.DType, rows, cols int) Mat {
	es := dt.Size()
	buf := make([]byte, (rows*cols+3)*es)
	data := buf[es : es+rows*cols*es]
	switch dt {
	case tensor.F32:
		f := tensor.Float32s(data)
		for i := range f {
			f[i] = 2*r.Float32() - 1
		}
	default:
		// Random finite values in (-2, 2) straight from bits: bf16 exponents
		// 0x70-0x7f, f16 exponents 0x00-0x0f (subnormals included).
		u := tensor.Uint16s(data)
		for i := range u {
			b := r.Uint32()
			sign, e := uint16(b>>31)<<15, uint16(b>>16)&0xf
			if dt == tensor.BF16 {
				u[i] = sign | (0x70+e)<<7 | uint16(b)&0x7f
			} else {
				u[i] = sign | e<<10 | uint16(b)&0x3ff
			}
		}
	}
	m, err := NewMat(dt, rows, cols, data)
	if err != nil {
		panic(err)
	}
	return m
}

// setW stores v at element i of m.
func setW(m Mat, i int, v float32) {
	switch m.DType {
	case tensor.F32:
		tensor.Float32s(m.Data)[i] = v
	case tensor.BF16:
		tensor.Uint16s(m.Data)[i] = tensor.F32ToBF16(v)
	case tensor.F16:
		tensor.Uint16s(m.Data)[i] = tensor.F32ToF16(v)
	}
}

// closeTo reports whether got matches want within tol; NaN must match NaN and an
// infinity the same infinity.
func closeTo(got, want float32, tol float64) bool {
	switch {
	case math.IsNaN(float64(want)):
		return math.IsNaN(float64(got))
	case math.IsInf(float64(want), 0):
		return got == want
	}
	return math.Abs(float64(got)-float64(want)) <= tol
}

// withKernels runs f with the low-level kernels replaced by k (nil: generic twins).
func withKernels(k *kernels, f func()) {
	saved := simd
	simd = k
	defer func() { simd = saved }()
	f()
}

// implementations lists the kernel sets to test: the assembly (when this CPU has it)
// and the Go twins of the low-level kernels driven by the same blocked code.
func implementations() []*kernels {
	impls := []*kernels{goKernels()}
	if simd != nil {
		impls = append([]*kernels{simd}, impls...)
	}
	return impls
}

// sumAbs returns Σ_k |x[t,k]·w[n,k]| (trans) or Σ_k |x[t,k]·w[k,n]|, with wf the
// weights widened to float32.
func sumAbs(x []float32, N, K int, wf []float32, trans bool, t, n int) float64 {
	var s float64
	for k, a := range x[t*K : (t+1)*K] {
		i := k*N + n
		if trans {
			i = n*K + k
		}
		s += math.Abs(float64(a) * float64(wf[i]))
	}
	return s
}

// checkMatMul compares one MatMulT/MatMulN call on impl against the generic twin.
func checkProduct(t *testing.T, impl *kernels, p *parallel.Pool, dt tensor.DType, T, N, K int, trans, accumulate bool, poison func(x []float32, w Mat)) {
	t.Helper()
	r := newRand(uint64(T*1000003 + N*1009 + K*7 + int(dt)))
	x := randF32(r, T*K)
	var w Mat
	if trans {
		w = randMat(r, dt, N, K)
	} else {
		w = randMat(r, dt, K, N)
	}
	if poison != nil {
		poison(x, w)
	}
	init := randF32(r, T*N)
	want := append([]float32(nil), init...)
	if trans {
		matMulTGeneric(want, x, T, w, 0, N)
	} else {
		matMulNGeneric(want, x, T, w, 0, N, accumulate)
	}
	got, check := guarded(t, T*N)
	copy(got, init)
	withKernels(impl, func() {
		if trans {
			MatMulT(p, got, x, T, w)
		} else {
			MatMulN(p, got, x, T, w, accumulate)
		}
	})
	check()
	wf := make([]float32, N*K)
	if err := tensor.ToFloat32(wf, dt, w.Data); err != nil {
		t.Fatal(err)
	}
	bad := 0
	for tt := 0; tt < T; tt++ {
		for n := 0; n < N; n++ {
			terms := sumAbs(x, N, K, wf, trans, tt, n)
			if accumulate { // dst's old value is one more term of the reordered sum
				terms += math.Abs(float64(init[tt*N+n]))
			}
			tol := 2*float64(K+2)*0x1p-24*terms + 1e-30
			g, wnt := got[tt*N+n], want[tt*N+n]
			if !closeTo(g, wnt, tol) {
				if bad < 5 {
					t.Errorf("%s %s trans=%v acc=%v T=%d N=%d K=%d: dst[%d,%d] = %v, twin %v (tol %.3g)",
						impl.name, dt, trans, accumulate, T, N, K, tt, n, g, wnt, tol)
				}
				bad++
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%d mismatches", bad)
	}
}

func TestMatMulOddSizes(t *testing.T) {
	p := parallel.New(2)
	defer p.Close()
	ts := []int{1, 2, 3, 4, 5, 7, 13, 17}
	for _, impl := range implementations() {
		for _, dt := range dtypeList {
			for _, T := range ts {
				for _, N := range oddSizes {
					for _, K := range oddSizes {
						if impl.name == "go" && T*N*K > 1<<18 || T > 1 && T*N*K > 1<<21 {
							continue // the twins are slow; big shapes run at T=1 and below
						}
						checkProduct(t, impl, p, dt, T, N, K, true, false, nil)
						checkProduct(t, impl, p, dt, T, N, K, false, false, nil)
						checkProduct(t, impl, p, dt, T, N, K, false, true, nil)
					}
				}
			}
		}
	}
}

// TestMatMulBlocking crosses every blocking boundary: R/C blocks of the decode
// kernels, KC/NC/MC blocks of the GEMM, token-split and column-split GEMM, 1 to 3
// workers and the nil pool.
func TestMatMulBlocking(t *testing.T) {
	shapes := [][3]int{ // T, N, K
		{1, 300, 600}, {2, 301, 257}, {3, 77, 513}, {4, 259, 300},
		{6, 48, 40}, {8, 289, 531}, {16, 130, 70}, {17, 70, 300}, {75, 70, 300}, {150, 20, 100}, {97, 530, 77},
	}
	for _, workers := range []int{0, 1, 2, 3} {
		var p *parallel.Pool
		if workers > 0 {
			p = parallel.New(workers)
		}
		for _, impl := range implementations() {
			for _, dt := range dtypeList {
				for _, s := range shapes {
					if impl.name == "go" && workers > 1 {
						continue
					}
					checkProduct(t, impl, p, dt, s[0], s[1], s[2], true, false, nil)
					checkProduct(t, impl, p, dt, s[0], s[1], s[2], false, true, nil)
				}
			}
		}
		p.Close()
	}
}

func TestMatMulPrefillShape(t *testing.T) {
	if testing.Short() {
		t.Skip("large")
	}
	p := parallel.New(2)
	defer p.Close()
	if simd == nil {
		t.Skip("no assembly kernels")
	}
	checkProduct(t, simd, p, tensor.BF16, 512, 200, 768, true, false, nil)
	checkProduct(t, simd, p, tensor.BF16, 512, 136, 1344, false, true, nil)
}

func TestMatMulNaNInf(t *testing.T) {
	p := parallel.New(2)
	defer p.Close()
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	cases := map[string]func(T, N, K int, trans bool) func(x []float32, w Mat){
		"nan-x": func(T, N, K int, trans bool) func([]float32, Mat) {
			return func(x []float32, w Mat) { x[(T-1)*K+K/2] = nan }
		},
		"inf-w-zero-x": func(T, N, K int, trans bool) func([]float32, Mat) {
			return func(x []float32, w Mat) {
				x[K-1] = 0
				if trans {
					setW(w, (N/2)*K+K-1, inf) // w[N/2, K-1]
				} else {
					setW(w, (K-1)*N+N/2, inf) // w[K-1, N/2]
				}
			}
		},
		"inf-x": func(T, N, K int, trans bool) func([]float32, Mat) {
			return func(x []float32, w Mat) { x[0] = -inf }
		},
		"nan-w": func(T, N, K int, trans bool) func([]float32, Mat) {
			return func(x []float32, w Mat) { setW(w, (N*K)/2, nan) }
		},
	}
	for _, impl := range implementations() {
		for name, mk := range cases {
			for _, dt := range dtypeList {
				for _, s := range [][3]int{{1, 33, 17}, {3, 17, 33}, {4, 40, 8}, {7, 33, 4099}, {13, 35, 300}} {
					T, N, K := s[0], s[1], s[2]
					if impl.name == "go" && T*N*K > 1<<16 {
						continue
					}
					t.Run(fmt.Sprintf("%s/%s/%s/T=%d", impl.name, name, dt, T), func(t *testing.T) {
						checkProduct(t, impl, p, dt, T, N, K, true, false, mk(T, N, K, true))
						checkProduct(t, impl, p, dt, T, N, K, false, false, mk(T, N, K, false))
					})
				}
			}
		}
	}
}

func TestMatMulAllocs(t *testing.T) {
	// Scratch may come from a sync.Pool, which a GC cycle (likely while other test
	// packages run) can empty: measure the steady state with GC off.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	p := parallel.New(2)
	defer p.Close()
	r := newRand(1)
	for _, dt := range dtypeList {
		for _, T := range []int{1, 3, 11, 23} {
			w := randMat(r, dt, 300, 264)
			x := randF32(r, T*264)
			dst := make([]float32, T*300)
			// No path allocates once warm: tasks and the GEMM's packing scratch come
			// from free lists that, unlike a sync.Pool, do not miss when a pool worker
			// ran on another P.
			if a := testing.AllocsPerRun(5, func() { MatMulT(p, dst, x, T, w) }); a != 0 {
				t.Errorf("MatMulT %s T=%d: %.1f allocs per call", dt, T, a)
			}
			wn := randMat(r, dt, 264, 300)
			if a := testing.AllocsPerRun(5, func() { MatMulN(p, dst, x, T, wn, true) }); a != 0 {
				t.Errorf("MatMulN %s T=%d: %.1f allocs per call", dt, T, a)
			}
			// Enough weight rows for the row-band decode path (partial sums).
			xl, wl := randF32(r, T*1000), randMat(r, dt, 1000, 300)
			if a := testing.AllocsPerRun(5, func() { MatMulN(p, dst, xl, T, wl, false) }); a != 0 {
				t.Errorf("MatMulN %s T=%d K=1000: %.1f allocs per call", dt, T, a)
			}
		}
	}
}

func TestMatMulZeroSizes(t *testing.T) {
	w := randMat(newRand(2), tensor.BF16, 5, 0)
	dst := []float32{1, 2, 3, 4, 5}
	MatMulT(nil, dst, nil, 1, w) // K = 0: zeros
	for _, v := range dst {
		if v != 0 {
			t.Fatalf("K=0 MatMulT left %v", dst)
		}
	}
	MatMulT(nil, nil, nil, 0, w)
	wn := randMat(newRand(2), tensor.BF16, 0, 5)
	dst = []float32{1, 2, 3, 4, 5}
	MatMulN(nil, dst, nil, 1, wn, true)
	if dst[4] != 5 {
		t.Fatal("K=0 accumulating MatMulN changed dst")
	}
	MatMulN(nil, dst, nil, 1, wn, false)
	if dst[4] != 0 {
		t.Fatal("K=0 MatMulN did not clear dst")
	}
}

func TestCPUFeatures(t *testing.T) {
	name := "generic"
	if simd != nil {
		name = simd.name
	}
	t.Logf("kernels: %s", name)
}

// TestMatMulBatch runs sets of products through one MatMulBatch and compares each
// with its twin: banded x·wᵀ and x·w (cut between workers at every kind of
// boundary), quantized, and the products that run alone (T > 16, x·w with N%8 != 0,
// quantized T > 4), on 1-3 workers and the nil pool.
func TestMatMulBatch(t *testing.T) {
	type spec struct {
		T, N, K int
		trans   bool
		dt      tensor.DType
	}
	sets := [][]spec{
		{{1, 200, 96, true, tensor.BF16}, {1, 200, 96, true, tensor.BF16}, {1, 200, 96, true, tensor.BF16}, {1, 200, 96, true, tensor.BF16}},
		{{1, 96, 200, false, tensor.BF16}, {1, 96, 200, false, tensor.BF16}, {1, 96, 200, false, tensor.BF16}},
		{{3, 77, 300, true, tensor.F32}, {2, 64, 301, false, tensor.BF16}, {0, 10, 10, true, tensor.BF16}, {5, 70, 300, false, tensor.F16},
			{17, 33, 40, true, tensor.BF16}, {4, 130, 97, true, tensor.F16}, {16, 40, 500, false, tensor.F32}, {1, 8, 1000, false, tensor.BF16}},
		{{1, 130, 256, true, tensor.Q8_0}, {3, 61, 512, true, tensor.Q4_K}, {6, 20, 256, true, tensor.Q8_0}, {2, 50, 96, true, tensor.BF16}},
	}
	for _, workers := range []int{0, 1, 2, 3} {
		var p *parallel.Pool
		if workers > 0 {
			p = parallel.New(workers)
		}
		for si, set := range sets {
			r := newRand(uint64(31 + si))
			ps := make([]Product, len(set))
			wants := make([][]float32, len(set))
			tols := make([][]float64, len(set))
			checks := make([]func(), len(set))
			for i, s := range set {
				x := randF32(r, s.T*s.K)
				want := make([]float32, s.T*s.N)
				tol := make([]float64, s.T*s.N)
				var w Mat
				var wf []float32
				switch {
				case s.dt.Size() == 0 || s.dt == tensor.Q8_0 || s.dt == tensor.Q4_K:
					w, wf = randQMat(t, r, s.dt, s.N, s.K)
					matMulTQGeneric(want, x, s.T, w)
				case s.trans:
					w = randMat(r, s.dt, s.N, s.K)
					matMulTGeneric(want, x, s.T, w, 0, s.N)
				default:
					w = randMat(r, s.dt, s.K, s.N)
					matMulNGeneric(want, x, s.T, w, 0, s.N, false)
				}
				if wf == nil {
					wf = make([]float32, s.N*s.K)
					if err := tensor.ToFloat32(wf, s.dt, w.Data); err != nil {
						t.Fatal(err)
					}
				}
				for tt := 0; tt < s.T; tt++ {
					for n := 0; n < s.N; n++ {
						tol[tt*s.N+n] = 2*float64(s.K+2)*0x1p-24*sumAbs(x, s.N, s.K, wf, s.trans, tt, n) + 1e-30
					}
				}
				dst, check := guarded(t, s.T*s.N)
				ps[i] = Product{Dst: dst, X: x, T: s.T, W: w, NoTrans: !s.trans}
				wants[i], tols[i], checks[i] = want, tol, check
			}
			MatMulBatch(p, ps)
			for i, s := range set {
				checks[i]()
				for j, g := range ps[i].Dst[:s.T*s.N] {
					if !closeTo(g, wants[i][j], tols[i][j]) {
						t.Fatalf("workers=%d set %d product %d %+v: dst[%d] = %v, twin %v (tol %.3g)", workers, si, i, s, j, g, wants[i][j], tols[i][j])
					}
				}
			}
		}
		p.Close()
	}
}
