package kernel

import (
	"fmt"
	"math"
	"testing"
	"unsafe"
)

// The tests below call every assembly routine directly and compare it with its Go
// twin from goKernels at odd strides, misaligned pointers and with guard bands.

func needSIMD(t *testing.T) *kernels {
	t.Helper()
	if simd == nil {
		t.Skip("no assembly kernels on this CPU/build")
	}
	return simd
}

// rawWeights returns n random weights of dtype index d as bytes at an odd element
// offset, optionally poisoned with an Inf and a NaN.
func rawWeights(seed uint64, d, n int, poison bool) []byte {
	m := randMat(newRand(seed), dtypeList[d], 1, n)
	if poison && n > 9 {
		setW(m, 3, float32(math.Inf(1)))
		setW(m, n-9, float32(math.NaN()))
	}
	return m.Data
}

func compareF32(t *testing.T, what string, got, want []float32, tol func(i int) float64) {
	t.Helper()
	for i := range want {
		if !closeTo(got[i], want[i], tol(i)) {
			t.Fatalf("%s: [%d] = %v, twin %v", what, i, got[i], want[i])
		}
	}
}

func TestLowLevelMvT(t *testing.T) {
	a, g := needSIMD(t), goKernels()
	for d := 0; d < 3; d++ {
		for T := 1; T <= 4; T++ {
			for R := 1; R <= mvTRows[T]; R++ {
				for _, k := range []int{0, 8, 24, 4096 + 8, 4096 + 15} {
					for _, poison := range []bool{false, true} {
						ldx, ldw, ldd := k+3, k+5, R+7
						x := randF32(newRand(uint64(k)), T*ldx)
						w := rawWeights(uint64(T*R+k), d, R*ldw+1, poison)
						got, check := guarded(t, T*ldd)
						want := make([]float32, T*ldd)
						copy(want, got)
						a.mvT[d][T][R-1](&got[0], ldd, &x[0], ldx, &w[0], ldw, k)
						g.mvT[d][T][R-1](&want[0], ldd, &x[0], ldx, &w[0], ldw, k)
						check()
						compareF32(t, fmt.Sprintf("mvT d=%d T=%d R=%d k=%d", d, T, R, k), got, want,
							func(int) float64 { return 2 * float64(k+1) * 0x1p-24 * float64(k) })
					}
				}
			}
		}
	}
}

func TestLowLevelMvTP(t *testing.T) {
	a, g := needSIMD(t), goKernels()
	for T := 1; T < len(mvTPRows); T++ {
		for R := 1; R <= mvTPRows[T]; R++ {
			for _, k := range []int{0, 15, 16, 40, 4096 + 16, 4096 + 47} {
				for _, poison := range []bool{false, true} {
					// Rows 2k+5 apart (as from separate streams), dst rows 3 apart.
					ldx, ldw, ldd, lds := k+3, 2*k+5, 3*R+7, 3
					x := randF32(newRand(uint64(k)), T*ldx)
					w := rawWeights(uint64(T*R+k), 1, R*ldw+1, poison)
					got, check := guarded(t, T*ldd)
					want := make([]float32, T*ldd)
					copy(want, got)
					// The prefetch hint points past the weights (any address is harmless).
					pfd := 2 * len(w)
					a.mvTP[T][R-1](&got[0], ldd, lds, &x[0], ldx, &w[0], ldw, k, pfd)
					g.mvTP[T][R-1](&want[0], ldd, lds, &x[0], ldx, &w[0], ldw, k, pfd)
					check()
					compareF32(t, fmt.Sprintf("mvTP T=%d R=%d k=%d", T, R, k), got, want,
						func(int) float64 { return 2 * float64(k+1) * 0x1p-24 * float64(k) })
				}
			}
		}
	}
}

func TestPermutePairs(t *testing.T) {
	for _, K := range []int{1, 15, 16, 37, 64} {
		const T = 3
		x := randF32(newRand(uint64(K)), T*K)
		got := make([]float32, T*K)
		permutePairs(got, x, T, K)
		for tt := 0; tt < T; tt++ {
			for c := 0; c < K; c++ {
				src := c // where column c of the permuted row comes from
				if c < K&^15 {
					if j := c % 16; j < 8 {
						src = c - j + 2*j
					} else {
						src = c - j + 2*(j-8) + 1
					}
				}
				if got[tt*K+c] != x[tt*K+src] {
					t.Fatalf("K=%d: permuted [%d,%d] = %v, want x[%d,%d] = %v", K, tt, c, got[tt*K+c], tt, src, x[tt*K+src])
				}
			}
		}
	}
}

func TestLowLevelMvR(t *testing.T) {
	a, g := needSIMD(t), goKernels()
	for d := 0; d < 3; d++ {
		for T := 1; T <= 4; T++ {
			for kr := 1; kr <= mvRRows[d][T]; kr++ {
				for _, n := range []int{0, 8, 40, 64, 300} {
					for _, acc := range []int{0, 1} {
						ldx, ldw, ldd := kr+3, n+5, n+3
						x := randF32(newRand(uint64(n)), T*ldx+1)
						w := rawWeights(uint64(T*kr+n), d, kr*ldw+1, n == 300)
						got, check := guarded(t, T*ldd+1)
						init := randF32(newRand(9), T*ldd+1)
						copy(got, init)
						want := append([]float32(nil), init...)
						pfd := 2 * kr * ldw * dtypeList[d].Size()
						a.mvR[d][T][kr-1](&got[0], ldd, &x[0], ldx, &w[0], ldw, n, acc, pfd)
						g.mvR[d][T][kr-1](&want[0], ldd, &x[0], ldx, &w[0], ldw, n, acc, pfd)
						check()
						compareF32(t, fmt.Sprintf("mvR d=%d T=%d kr=%d n=%d acc=%d", d, T, kr, n, acc), got, want,
							func(i int) float64 { return 2*float64(kr+2)*0x1p-24*(float64(kr)+math.Abs(float64(init[i]))) + 0x1p-23 })
					}
				}
			}
		}
	}
}

func TestLowLevelGemm(t *testing.T) {
	a, g := needSIMD(t), goKernels()
	for mr := 1; mr <= 6; mr++ {
		for _, kc := range []int{0, 1, 3, 4, 5, 17, 256} {
			for _, acc := range []int{0, 1} {
				r := newRand(uint64(mr*1000 + kc))
				ap, bp := randF32(r, 6*kc+1), randF32(r, 16*kc+1)
				if kc == 17 {
					ap[7], bp[20] = float32(math.NaN()), float32(math.Inf(-1))
				}
				const ldc = 16 + 5
				got, check := guarded(t, mr*ldc)
				init := randF32(r, mr*ldc)
				copy(got, init)
				want := append([]float32(nil), init...)
				// The prefetch hint points at the weights (any address is harmless).
				pf := uintptr(unsafe.Pointer(&bp[0]))
				a.gemm[mr](&ap[0], &bp[0], kc, &got[0], ldc, acc, pf, 64, kc/4+3)
				g.gemm[mr](&ap[0], &bp[0], kc, &want[0], ldc, acc, pf, 64, kc/4+3)
				check()
				compareF32(t, fmt.Sprintf("gemm mr=%d kc=%d acc=%d", mr, kc, acc), got, want,
					func(int) float64 { return 2*float64(kc+2)*0x1p-24*float64(kc) + 0x1p-23 })
			}
		}
	}
}

func TestLowLevelPack(t *testing.T) {
	a, g := needSIMD(t), goKernels()
	for d := 0; d < 3; d++ {
		for _, kc := range []int{0, 1, 8, 15, 256} {
			ldw := kc + 3
			w := rawWeights(uint64(kc), d, 16*ldw+16, true)
			got, check := guarded(t, 16*kc)
			want := make([]float32, 16*kc)
			copy(want, got)
			a.packT[d](unsafe.SliceData(got), &w[0], ldw, kc)
			g.packT[d](unsafe.SliceData(want), &w[0], ldw, kc)
			check()
			compareF32(t, fmt.Sprintf("packT d=%d kc=%d", d, kc), got, want, func(int) float64 { return 0 })
		}
	}
}

// TestLowLevelVector checks the vector routines on exactly the multiples of 8 they
// handle (the public wrappers add the tails).
func TestLowLevelVector(t *testing.T) {
	a, g := needSIMD(t), goKernels()
	r := newRand(10)
	for _, n := range []int{8, 32, 40, 4096 + 3} {
		x, y, z := randF32(r, n), randF32(r, n), randF32(r, n)
		if d, w := a.dot(&x[0], &y[0], n), g.dot(&x[0], &y[0], n); !closeTo(d, w, 2*float64(n)*0x1p-24*float64(n)) {
			t.Errorf("dot n=%d: %v, twin %v", n, d, w)
		}
		if m, w := a.max(&x[0], n), g.max(&x[0], n); m != w {
			t.Errorf("max n=%d: %v, twin %v", n, m, w)
		}
		if s, w := a.sumF64(&x[0], n), g.sumF64(&x[0], n); math.Abs(s-w) > 1e-12*float64(n) {
			t.Errorf("sumF64 n=%d: %v, twin %v", n, s, w)
		}
		if s, w := a.sqDev(&x[0], n, 0.1), g.sqDev(&x[0], n, 0.1); math.Abs(s-w) > 1e-12*float64(n) {
			t.Errorf("sqDev n=%d: %v, twin %v", n, s, w)
		}
		got, want := make([]float32, n), make([]float32, n)
		a.lnApply(&got[0], &x[0], &y[0], n, 0.1, 1.7)
		g.lnApply(&want[0], &x[0], &y[0], n, 0.1, 1.7)
		compareF32(t, "lnApply", got, want, func(int) float64 { return 0 })
		a.siluMul(&got[0], &x[0], &z[0], n)
		g.siluMul(&want[0], &x[0], &z[0], n)
		compareF32(t, "siluMul", got, want, func(i int) float64 { return 4 * 0x1p-24 * math.Abs(float64(want[i])) })
		copy(got, x)
		copy(want, x)
		s1, s2 := a.expSub(&got[0], &got[0], n, 0.5), g.expSub(&want[0], &want[0], n, 0.5)
		compareF32(t, "expSub", got, want, func(i int) float64 { return 0x1p-23 * math.Abs(float64(want[i])) })
		if math.Abs(s1-s2) > 0x1p-23*s2 {
			t.Errorf("expSub n=%d: sum %v, twin %v", n, s1, s2)
		}
		copy(got, x)
		copy(want, x)
		a.scale(&got[0], 0.3, n)
		g.scale(&want[0], 0.3, n)
		compareF32(t, "scale", got, want, func(int) float64 { return 0 })
		copy(got, x)
		copy(want, x)
		a.axpy(&got[0], 0.3, &y[0], n)
		g.axpy(&want[0], 0.3, &y[0], n)
		compareF32(t, "axpy", got, want, func(int) float64 { return 0 })
		a.scaleAdd(&got[0], 0.3, 0.7, &y[0], n)
		g.scaleAdd(&want[0], 0.3, 0.7, &y[0], n)
		compareF32(t, "scaleAdd", got, want, func(int) float64 { return 0 })
	}
}
