package kernel

import (
	"fmt"
	"math"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/dbrx-engine/dbrx/internal/parallel"
	"github.com/dbrx-engine/dbrx/tensor"
)

func TestLowLevelPanel(t *testing.T) {
	a, g := needSIMD(t), goKernels()
	for M := 1; M < len(panelStreams); M++ {
		for si, S := range []int{1, panelStreams[M]} {
			if si == 1 && S == 1 {
				continue
			}
			for _, k := range []int{0, 1, 3, 4, 5, 17, 768 + 3} {
				for _, acc := range []int{0, 1} {
					poison := acc == 1
					{
						// Panels 3 panels apart plus 2 bytes (as from separate streams),
						// dst rows of the streams 21 floats apart.
						ldx, wss, ldd, dss := k+3, 3*32*k+2, 21*S+5, 21
						x := randF32(newRand(uint64(k)), M*ldx)
						w := rawWeights(uint64(M*S+k), 1, S*wss/2+16*k+1, poison)
						got, check := guarded(t, M*ldd)
						want := make([]float32, M*ldd)
						copy(want, got)
						// The prefetch hints point past the weights (any address is harmless).
						pfd := 2 * len(w)
						a.panel[M][si](&got[0], ldd, dss, &x[0], ldx, &w[0], wss, k, acc, pfd, 0, 64, 1000)
						g.panel[M][si](&want[0], ldd, dss, &x[0], ldx, &w[0], wss, k, acc, pfd, 0, 64, 1000)
						check()
						compareF32(t, fmt.Sprintf("panel M=%d S=%d k=%d acc=%d", M, S, k, acc), got, want,
							func(int) float64 { return 2 * float64(k+2) * 0x1p-24 * float64(k+1) })
					}
				}
			}
		}
	}
}

func TestPackPanelsBF16(t *testing.T) {
	w := randMat(newRand(3), tensor.BF16, 37, 11)
	pm, err := PackPanelsBF16(w)
	if err != nil {
		t.Fatal(err)
	}
	if want := 3 * 11 * 16 * 2; len(pm.Data) != want || pm.Rows != 37 || pm.Cols != 11 {
		t.Fatalf("packed [%d, %d] into %d bytes, want %d", pm.Rows, pm.Cols, len(pm.Data), want)
	}
	src, u := tensor.Uint16s(w.Data), tensor.Uint16s(pm.Data)
	for n := 0; n < 48; n++ {
		for k := 0; k < 11; k++ {
			var want uint16 // padding rows are zero
			if n < 37 {
				want = src[n*11+k]
			}
			if got := u[panelIndex(n, k, 11)]; got != want {
				t.Fatalf("packed w[%d, %d] = %#x, want %#x", n, k, got, want)
			}
		}
	}
	// The layout itself: lane j of column k holds rows j (low half) and j+8.
	if u[(0*11+2)*16+2*3+1] != src[11*11+2] {
		t.Fatal("row 11, column 2 is not the high half of lane 3")
	}
	for _, dt := range []tensor.DType{tensor.F32, tensor.F16} {
		if _, err := PackPanelsBF16(randMat(newRand(4), dt, 3, 4)); err == nil || !strings.Contains(err.Error(), dt.String()) {
			t.Errorf("PackPanelsBF16(%s) error %v, want one naming the dtype", dt, err)
		}
	}
}

// checkPanels compares MatMulTPanels on impl (nil: the generic twin) with
// MatMulT's twin over the same bf16 weights.
func checkPanels(t *testing.T, impl *kernels, p *parallel.Pool, T, N, K int, poison func(x []float32, w Mat)) {
	t.Helper()
	r := newRand(uint64(T*1000003 + N*1009 + K*7))
	x := randF32(r, T*K)
	w := randMat(r, tensor.BF16, N, K)
	if poison != nil {
		poison(x, w)
	}
	pm, err := PackPanelsBF16(w)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]float32, T*N)
	matMulTGeneric(want, x, T, w, 0, N)
	got, check := guarded(t, T*N)
	withKernels(impl, func() { MatMulTPanels(p, got, x, T, pm) })
	check()
	wf := make([]float32, N*K)
	if err := tensor.ToFloat32(wf, tensor.BF16, w.Data); err != nil {
		t.Fatal(err)
	}
	bad := 0
	for tt := 0; tt < T; tt++ {
		for n := 0; n < N; n++ {
			// Both sums are float32 in different orders: each within K·2⁻²⁴·Σ|terms|
			// of the exact sum.
			tol := 2*float64(K+2)*0x1p-24*sumAbs(x, N, K, wf, true, tt, n) + 1e-30
			if g, wnt := got[tt*N+n], want[tt*N+n]; !closeTo(g, wnt, tol) {
				if bad < 5 {
					t.Errorf("%s T=%d N=%d K=%d: dst[%d,%d] = %v, MatMulT twin %v (tol %.3g)",
						implName(impl), T, N, K, tt, n, g, wnt, tol)
				}
				bad++
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%d mismatches", bad)
	}
}

func TestMatMulTPanels(t *testing.T) {
	impls := append(implementations(), nil)
	for _, workers := range []int{0, 1, 2, 3} {
		var p *parallel.Pool
		if workers > 0 {
			p = parallel.New(workers)
		}
		for _, impl := range impls {
			for _, T := range []int{0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 64} {
				for _, N := range []int{1, 15, 16, 17, 33, 16*67 + 5, 4096 + 3} {
					for _, K := range []int{1, 3, 8, 17, 130} {
						if impl != simd && (T*N*K > 1<<20 || workers > 1) {
							continue // the twins are slow
						}
						if workers > 0 && workers != 2 && N < 1000 {
							continue
						}
						checkPanels(t, impl, p, T, N, K, nil)
					}
				}
			}
		}
		p.Close()
	}
}

func TestMatMulTPanelsLarge(t *testing.T) {
	if testing.Short() || simd == nil {
		t.Skip("large, assembly only")
	}
	p := parallel.New(2)
	defer p.Close()
	for _, T := range []int{1, 8, 16, 100} {
		checkPanels(t, simd, p, T, 16*300+7, 768, nil)
	}
}

func TestMatMulTPanelsNaNInf(t *testing.T) {
	p := parallel.New(2)
	defer p.Close()
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	for _, impl := range append(implementations(), nil) {
		for _, s := range [][3]int{{1, 33, 17}, {3, 17, 33}, {7, 47, 300}, {16, 530, 40}} {
			T, N, K := s[0], s[1], s[2]
			cases := map[string]func(x []float32, w Mat){
				"nan-x": func(x []float32, w Mat) { x[(T-1)*K+K/2] = nan },
				"inf-w-zero-x": func(x []float32, w Mat) {
					x[K-1] = 0
					setW(w, (N/2)*K+K-1, inf)
				},
				"inf-w-last-row": func(x []float32, w Mat) { setW(w, (N-1)*K, -inf) },
				"nan-w":          func(x []float32, w Mat) { setW(w, (N*K)/2, nan) },
			}
			for name, poison := range cases {
				t.Run(fmt.Sprintf("%s/%s/T=%d", implName(impl), name, T), func(t *testing.T) {
					checkPanels(t, impl, p, T, N, K, poison)
				})
			}
		}
	}
}

func TestMatMulTPanelsAllocs(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	p := parallel.New(2)
	defer p.Close()
	r := newRand(1)
	pm, err := PackPanelsBF16(randMat(r, tensor.BF16, 16*40+3, 264))
	if err != nil {
		t.Fatal(err)
	}
	for _, T := range []int{1, 3, 11, 23, 100} {
		x := randF32(r, T*264)
		dst := make([]float32, T*pm.Rows)
		if a := testing.AllocsPerRun(5, func() { MatMulTPanels(p, dst, x, T, pm) }); a != 0 {
			t.Errorf("MatMulTPanels T=%d: %.1f allocs per call", T, a)
		}
	}
}

func TestMatMulTPanelsZeroSizes(t *testing.T) {
	pm, err := PackPanelsBF16(randMat(newRand(2), tensor.BF16, 5, 0))
	if err != nil {
		t.Fatal(err)
	}
	dst := []float32{1, 2, 3, 4, 5}
	MatMulTPanels(nil, dst, nil, 1, pm) // K = 0: zeros
	for _, v := range dst {
		if v != 0 {
			t.Fatalf("K=0 MatMulTPanels left %v", dst)
		}
	}
	MatMulTPanels(nil, nil, nil, 0, pm)
	empty, err := PackPanelsBF16(randMat(newRand(2), tensor.BF16, 0, 5))
	if err != nil {
		t.Fatal(err)
	}
	MatMulTPanels(nil, nil, []float32{1, 2, 3, 4, 5}, 1, empty)
}

func TestLowLevelWidenPanel(t *testing.T) {
	a, g := needSIMD(t), goKernels()
	for _, kc := range []int{0, 1, 2, 3, 17, 256} {
		w := rawWeights(uint64(kc), 1, 16*kc+1, true)
		got, check := guarded(t, 16*kc+1)
		want := make([]float32, 16*kc+1)
		a.widenPanel(&got[0], &w[0], kc)
		g.widenPanel(&want[0], &w[0], kc)
		check()
		for i := range want[:16*kc] {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Fatalf("widenPanel kc=%d: [%d] = %v, twin %v", kc, i, got[i], want[i])
			}
		}
	}
}

// TestMatMulTPanelsBatchInvariant: a token's outputs are the same bits whether it
// is multiplied alone or among T-1 others, for every T the panel kernels take
// (below panelGemmT): every path sums the same panelKC-column chunks, each in
// column order, and adds them up in chunk order. (The GEMM that takes more tokens
// accumulates across its blocks instead.) Batched decoding relies on this for the
// products that run on panels.
func TestMatMulTPanelsBatchInvariant(t *testing.T) {
	if simd == nil {
		t.Skip("assembly only")
	}
	p := parallel.New(2)
	defer p.Close()
	const N, K = 16*40 + 5, 768 + 8
	const maxT = panelGemmT - 1
	r := newRand(21)
	w, err := PackPanelsBF16(randMat(r, tensor.BF16, N, K))
	if err != nil {
		t.Fatal(err)
	}
	x := randF32(r, maxT*K)
	alone := make([]float32, maxT*N)
	for i := 0; i < maxT; i++ {
		MatMulTPanels(p, alone[i*N:(i+1)*N], x[i*K:(i+1)*K], 1, w)
	}
	for T := 2; T <= maxT; T++ {
		got := make([]float32, T*N)
		MatMulTPanels(p, got, x[:T*K], T, w)
		for i, v := range got {
			if math.Float32bits(v) != math.Float32bits(alone[i]) {
				t.Fatalf("T=%d: token %d row %d: batched %g, alone %g", T, i/N, i%N, v, alone[i])
			}
		}
	}
}
