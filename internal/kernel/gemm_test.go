package kernel

import (
	"fmt"
	"math"
	"runtime/debug"
	"testing"
	"unsafe"

	"github.com/dbrx-engine/dbrx/internal/parallel"
	"github.com/dbrx-engine/dbrx/tensor"
)

// checkATB compares one MatMulATB call on impl against the generic twin, with the
// reordered-sum tolerance of checkProduct over the M products of each element.
func checkATB(t *testing.T, impl *kernels, p *parallel.Pool, M, N, K int, accumulate bool, poison func(a, b []float32)) {
	t.Helper()
	r := newRand(uint64(M*1000003 + N*1009 + K*7))
	a, b := randF32(r, M*N), randF32(r, M*K)
	if poison != nil {
		poison(a, b)
	}
	init := randF32(r, N*K)
	want := append([]float32(nil), init...)
	matMulATBGeneric(want, a, b, M, N, K, 0, N, accumulate)
	got, check := guarded(t, N*K)
	copy(got, init)
	withKernels(impl, func() { MatMulATB(p, got, a, b, M, N, K, accumulate) })
	check()
	terms := make([]float64, N*K)
	for m := 0; m < M; m++ {
		for n := 0; n < N; n++ {
			av := math.Abs(float64(a[m*N+n]))
			for k, bv := range b[m*K : (m+1)*K] {
				terms[n*K+k] += av * math.Abs(float64(bv))
			}
		}
	}
	bad := 0
	for i, g := range got {
		tm := terms[i]
		if accumulate {
			tm += math.Abs(float64(init[i]))
		}
		tol := 2*float64(M+2)*0x1p-24*tm + 1e-30
		if !closeTo(g, want[i], tol) {
			if bad < 5 {
				t.Errorf("%s acc=%v M=%d N=%d K=%d: dst[%d,%d] = %v, twin %v (tol %.3g)",
					implName(impl), accumulate, M, N, K, i/K, i%K, g, want[i], tol)
			}
			bad++
		}
	}
	if bad > 0 {
		t.Fatalf("%d mismatches", bad)
	}
}

func implName(k *kernels) string {
	if k == nil {
		return "generic"
	}
	return k.name
}

func TestMatMulATBOddSizes(t *testing.T) {
	p := parallel.New(2)
	defer p.Close()
	impls := append(implementations(), nil)
	for _, impl := range impls {
		for _, M := range []int{1, 2, 7, 17, 33, 300} {
			for _, N := range oddSizes {
				for _, K := range oddSizes {
					if M*N*K > 1<<20 || impl != simd && M*N*K > 1<<17 {
						continue
					}
					checkATB(t, impl, p, M, N, K, false, nil)
					checkATB(t, impl, p, M, N, K, true, nil)
				}
			}
		}
	}
}

func TestMatMulATBZeroSizes(t *testing.T) {
	dst := []float32{1, 2, 3, 4, 5, 6}
	MatMulATB(nil, dst, nil, nil, 0, 2, 3, true) // M = 0: dst unchanged
	if dst[5] != 6 {
		t.Fatal("M=0 accumulating MatMulATB changed dst")
	}
	MatMulATB(nil, dst, nil, nil, 0, 2, 3, false)
	for _, v := range dst {
		if v != 0 {
			t.Fatalf("M=0 MatMulATB left %v", dst)
		}
	}
	MatMulATB(nil, nil, []float32{1}, nil, 1, 1, 0, false)
	MatMulATB(nil, nil, nil, []float32{1}, 1, 0, 1, false)
}

func TestMatMulATBNaNInf(t *testing.T) {
	p := parallel.New(2)
	defer p.Close()
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	for _, impl := range append(implementations(), nil) {
		for _, s := range [][3]int{{1, 33, 17}, {19, 17, 33}, {300, 20, 40}} {
			M, N, K := s[0], s[1], s[2]
			checkATB(t, impl, p, M, N, K, true, func(a, b []float32) { a[(M-1)*N+N/2] = nan })
			checkATB(t, impl, p, M, N, K, false, func(a, b []float32) {
				a[(M/2)*N+N-1] = 0 // Inf·0 must give NaN
				b[(M/2)*K+1] = inf
			})
			checkATB(t, impl, p, M, N, K, false, func(a, b []float32) { b[0] = -inf })
		}
	}
}

// planOf returns the split the GEMM planner picks for C [M, N] += A·B over K.
func planOf(M, N, K, W int) (split int, aGlobal bool) {
	t := new(mmTask)
	t.g = gemmOp{M: M, N: N, K: K}
	t.es = 4
	t.plan(W)
	return t.split, t.aGlobal
}

// TestGemmPaths runs the three products through every plan of the blocked GEMM:
// the N, M and K splits, A and B packed up front or per block, with and without the
// prefetch cursors (thresholds lowered so that small shapes reach them), for 1 to 3
// workers and the nil pool.
func TestGemmPaths(t *testing.T) {
	if simd == nil {
		t.Skip("no assembly kernels")
	}
	// T/N: dst [M, N] over K; ATB: dst [N, K] = aᵀ[N, M]·b over M (the GEMM's K).
	type shape struct{ M, N, K int }
	gemmShapes := []shape{{70, 300, 40}, {150, 20, 100}, {30, 40, 2000}, {700, 20, 300}, {97, 530, 77}, {20, 17, 1500}}
	seen := map[int]bool{}
	for _, s := range gemmShapes {
		for _, W := range []int{1, 2, 3} {
			sp, _ := planOf(s.M, s.N, s.K, W)
			seen[sp] = true
		}
	}
	for sp := splitN; sp <= splitK; sp++ {
		if !seen[sp] {
			t.Fatalf("no test shape is planned with split %d", sp)
		}
	}
	saveA, saveB, savePF := aGlobalMax, bGlobalMax, pfMinBytes
	defer func() { aGlobalMax, bGlobalMax, pfMinBytes = saveA, saveB, savePF }()
	for _, th := range [][3]int{{saveA, saveB, savePF}, {0, 0, 0}} {
		aGlobalMax, bGlobalMax, pfMinBytes = th[0], th[1], th[2]
		for _, workers := range []int{0, 1, 2, 3} {
			var p *parallel.Pool
			if workers > 0 {
				p = parallel.New(workers)
			}
			for _, s := range gemmShapes {
				if s.M > 16 {
					checkProduct(t, simd, p, tensor.F32, s.M, s.N, s.K, true, false, nil)
					checkProduct(t, simd, p, tensor.BF16, s.M, s.N, s.K, false, true, nil)
				}
				// ATB with the GEMM's (M, N, K) = (N_atb, K_atb, M_atb).
				checkATB(t, simd, p, s.K, s.M, s.N, workers%2 == 0, nil)
			}
			p.Close()
		}
	}
}

// TestGemmTrainShapes checks the products at (scaled-down) training shapes on the
// assembly path: the LM head's long reduction (split K) and its tall weight
// gradient (split M).
func TestGemmTrainShapes(t *testing.T) {
	if simd == nil || testing.Short() {
		t.Skip("assembly, not -short")
	}
	p := parallel.New(2)
	defer p.Close()
	checkProduct(t, simd, p, tensor.F32, 37, 64, 20000, false, false, nil) // dlogits·W
	checkATB(t, simd, p, 37, 6000, 64, true, nil)                          // dlogitsᵀ·h
	checkProduct(t, simd, p, tensor.F32, 37, 3000, 64, true, false, nil)   // h·Wᵀ
}

func TestMatMulATBAllocs(t *testing.T) {
	p := parallel.New(2)
	defer p.Close()
	// Scratch comes from a sync.Pool, which a GC cycle may empty; other test packages
	// running at the same time make that likely, so measure the steady state with GC off.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	r := newRand(5)
	for _, s := range [][3]int{{3, 40, 20}, {300, 64, 48}, {4000, 16, 32}, {30, 500, 70}} {
		M, N, K := s[0], s[1], s[2]
		a, b, dst := randF32(r, M*N), randF32(r, M*K), make([]float32, N*K)
		MatMulATB(p, dst, a, b, M, N, K, true)
		if n := testing.AllocsPerRun(5, func() { MatMulATB(p, dst, a, b, M, N, K, true) }); n != 0 {
			t.Errorf("MatMulATB M=%d N=%d K=%d: %.1f allocs per call", M, N, K, n)
		}
	}
	// The split-K GEMM keeps per-worker partial sums in the pooled task.
	x, w := randF32(r, 40*5000), randMat(r, tensor.F32, 5000, 64)
	dst := make([]float32, 40*64)
	MatMulN(p, dst, x, 40, w, false)
	if n := testing.AllocsPerRun(5, func() { MatMulN(p, dst, x, 40, w, false) }); n != 0 {
		t.Errorf("split-K MatMulN: %.1f allocs per call", n)
	}
}

func TestLowLevelPackBlocks(t *testing.T) {
	a, g := needSIMD(t), goKernels()
	for d := 0; d < 3; d++ {
		for _, kc := range []int{0, 1, 7, 40} {
			for _, panels := range []int{1, 2, 5} {
				ldw := 16*panels + 3
				w := rawWeights(uint64(kc*7+panels), d, kc*ldw+16, true)
				got, check := guarded(t, 16*kc*panels)
				want := make([]float32, 16*kc*panels)
				a.packNRows[d](unsafe.SliceData(got), &w[0], ldw, kc, panels)
				g.packNRows[d](unsafe.SliceData(want), &w[0], ldw, kc, panels)
				check()
				compareF32(t, fmt.Sprintf("packNRows d=%d kc=%d panels=%d", d, kc, panels), got, want, func(int) float64 { return 0 })
			}
		}
	}
	for _, kc := range []int{0, 1, 7, 8, 40, 293} {
		for _, panels := range []int{1, 2, 12} {
			lda := 6*panels + 5
			x := randF32(newRand(uint64(kc+panels)), (kc+1)*lda)
			if len(x) > 9 {
				x[3], x[len(x)-9] = float32(math.Inf(-1)), float32(math.NaN())
			}
			got, check := guarded(t, 6*kc*panels)
			want := make([]float32, 6*kc*panels)
			if kc > 0 {
				a.packACB(unsafe.SliceData(got), &x[0], lda, kc, panels)
				g.packACB(unsafe.SliceData(want), &x[0], lda, kc, panels)
			}
			check()
			compareF32(t, fmt.Sprintf("packACB kc=%d panels=%d", kc, panels), got, want, func(int) float64 { return 0 })
		}
		lda := kc + 3
		x := randF32(newRand(uint64(kc)), 6*lda+1)
		got, check := guarded(t, 6*kc)
		want := make([]float32, 6*kc)
		copy(want, got)
		a.packAR(unsafe.SliceData(got), &x[0], lda, kc)
		g.packAR(unsafe.SliceData(want), &x[0], lda, kc)
		check()
		compareF32(t, fmt.Sprintf("packAR kc=%d", kc), got, want, func(int) float64 { return 0 })
	}
}

// TestLowLevelGemmCol checks the column micro-kernel (gemm[6] over consecutive
// activation panels) against its twin at odd depths, panel counts and strides, on
// a misaligned C with guard bands.
func TestLowLevelGemmCol(t *testing.T) {
	a, g := needSIMD(t), goKernels()
	for _, kc := range []int{0, 1, 3, 4, 5, 17, 256} {
		for _, panels := range []int{0, 1, 2, 7} {
			for _, acc := range []int{0, 1} {
				r := newRand(uint64(kc*100 + panels*10 + acc))
				ap, bp := randF32(r, 6*kc*panels+1), randF32(r, 16*kc+1)
				if kc == 17 && panels > 0 {
					ap[7], bp[20] = float32(math.NaN()), float32(math.Inf(-1))
				}
				const ldc = 16 + 5
				n := 6*panels*ldc + 2
				got, check := guarded(t, n)
				init := randF32(r, n)
				copy(got, init)
				want := append([]float32(nil), init...)
				pf := uintptr(unsafe.Pointer(&bp[0]))
				a.gemmCol(&ap[0], &bp[0], kc, &got[1], ldc, panels, acc, pf, 64, 3)
				g.gemmCol(&ap[0], &bp[0], kc, &want[1], ldc, panels, acc, pf, 64, 3)
				check()
				compareF32(t, fmt.Sprintf("gemmCol kc=%d panels=%d acc=%d", kc, panels, acc), got, want,
					func(int) float64 { return 2*float64(kc+2)*0x1p-24*float64(kc) + 0x1p-23 })
			}
		}
	}
}
