package kernel

import (
	"unsafe"

	"github.com/dbrx-engine/dbrx/tensor"
)

// The low-level kernels below work on raw pointers with element strides, the shape of
// the generated assembly (kernels_amd64.s). Each has a plain-Go twin here (the
// *Go functions) that the tests compare the assembly against and that lets the
// blocked drivers run, and be tested, without assembly.

type (
	// mvTFunc: dst[t*ldd+r] = Σ_{i < k&^7} x[t*ldx+i]·w[r*ldw+i] for a fixed T×R block.
	mvTFunc func(dst *float32, ldd int, x *float32, ldx int, w *byte, ldw int, k int)
	// mvTPFunc: dst[t*ldd+r*lds] = Σ_{i < k&^15} xp[t*ldx+i]·w[r*ldw+π(i)] for a fixed
	// T×R block of bf16 rows, xp pair-permuted (permutePairs, π its column order);
	// each row prefetches its line pfd bytes ahead (a hint).
	mvTPFunc func(dst *float32, ldd int, lds int, x *float32, ldx int, w *byte, ldw int, k int, pfd int)
	// mvRFunc: dst[t*ldd+j] = (acc ? dst[t*ldd+j] : 0) + Σ_{i < kr} x[t*ldx+i]·w[i*ldw+j]
	// for j < n&^7 and a fixed T and kr; each row prefetches its line pfd bytes ahead
	// (a hint).
	mvRFunc func(dst *float32, ldd int, x *float32, ldx int, w *byte, ldw int, n int, acc int, pfd int)
	// gemmFunc: the mr×16 micro-kernel over packed panels a [kc][6] and b [kc][16];
	// it prefetches min(pfn, kc/4) lines at pf, pf+pfs, … (a hint with no effect on
	// the result).
	gemmFunc func(a, b *float32, kc int, c *float32, ldc int, acc int, pf uintptr, pfs int, pfn int)
	// gemmPanelsFunc: the 6×16 micro-kernel over panels consecutive activation
	// panels a [panels][kc][6] and one weight panel, into rows 6q… of c; it
	// prefetches min(pfn, panels·(kc/4)) lines at pf, pf+pfs, ….
	gemmPanelsFunc func(a, b *float32, kc int, c *float32, ldc int, panels int, acc int, pf uintptr, pfs int, pfn int)
	// packFunc packs 16 weight rows (kc&^7 columns) into a [kc][16] panel.
	packFunc func(dst *float32, w *byte, ldw int, kc int)
	// packAFunc packs 6 activation rows (kc&^7 columns) into a [kc][6] panel.
	packAFunc func(dst, a *float32, lda int, kc int)
	// packRowsFunc packs kc rows × 16·panels columns of w (packNRows, [kc][16]
	// panels) or kc rows × 6·panels columns of a transposed activation (packACB,
	// [kc][6] panels), reading each row once.
	packRowsFunc func(dst *float32, w *byte, ldw int, kc int, panels int)
	packACBFunc  func(dst, a *float32, lda int, kc int, panels int)
	// panelFunc: M tokens of x times S bf16 weight panels (PanelMat layout, panel s
	// at w+s·wss bytes) into dst[t*ldd+s*dss+j], j < 16, over k columns, added to
	// dst's old value when acc != 0; it
	// prefetches, in each panel, the line pfd bytes ahead every 64 bytes, and
	// min(pfn, k/4) lines at pf, pf+pfs, … (hints).
	panelFunc func(dst *float32, ldd int, dss int, x *float32, ldx int, w *byte, wss int, k int, acc int, pfd int, pf uintptr, pfs int, pfn int)
)

// kernels is one implementation of the low-level kernels. Index dtypes with dtIndex.
type kernels struct {
	name string
	mvT  [3][5][]mvTFunc // [dtype][T][R-1]
	mvTP [9][]mvTPFunc   // bf16 x·wᵀ over pair-permuted x: [T][R-1]
	mvR  [3][5][]mvRFunc // [dtype][T][kr-1]
	gemm [7]gemmFunc     // [mr], mr in 1..6
	// gemmCol loops gemm[6] over a column of activation panels
	gemmCol gemmPanelsFunc
	// packT/packNRows per dtype: B of x·wᵀ, and of x·w and aᵀ·b
	packT     [3]packFunc
	packNRows [3]packRowsFunc
	// packAR/packACB pack float32 activations for the GEMM
	packAR  packAFunc
	packACB packACBFunc
	// panel[M][S-1]: MatMulTPanels' kernels, M tokens × S streams
	panel [7][]panelFunc
	// widenPanel widens kc columns of a bf16 PanelMat panel into a GEMM
	// [kc][16] panel
	widenPanel func(dst *float32, w *byte, kc int)

	dot      func(a, b *float32, n int) float32
	axpy     func(y *float32, a float32, x *float32, n int)
	scaleAdd func(dst *float32, a, b float32, x *float32, n int)
	scale    func(x *float32, s float32, n int)
	max      func(x *float32, n int) float32
	expSub   func(dst, x *float32, n int, m float32) float64
	siluMul  func(dst, gate, up *float32, n int)
	sumF64   func(x *float32, n int) float64
	sqDev    func(x *float32, n int, mean float64) float64
	lnApply  func(dst, x, gamma *float32, n int, mean, rstd float64)
}

// simd is the assembly implementation, nil when unavailable (purego, other
// architectures, CPUs without AVX2+FMA+F16C). Tests may swap in goKernels to run
// the blocked drivers on the Go twins.
var simd *kernels

// mvTRows and mvRRows are the largest blocks of the decode kernels per T (they
// match the generator: accumulators and operands must fit in 16 YMM registers).
var (
	mvTRows  = [5]int{0, 2, 4, 4, 2}
	mvRRows  = [3][5]int{{0, 8, 4, 8, 8}, {0, 4, 4, 8, 8}, {0, 1, 4, 8, 8}} // [dtype][T]
	mvTPRows = [9]int{0, 4, 4, 3, 2, 2, 2, 1, 1}
	// panelStreams[M] is the most streams of the panel kernels for M tokens;
	// there are kernels for 1 stream and for panelStreams[M].
	panelStreams = [7]int{0, 4, 2, 2, 1, 1, 1}
)

func dtIndex(dt tensor.DType) int {
	switch dt {
	case tensor.BF16:
		return 1
	case tensor.F16:
		return 2
	}
	return 0
}

// widenOne reads element i of a weight array of dtype index d starting at w.
func widenOne(d int, w *byte, i int) float32 {
	switch d {
	case 0:
		return *(*float32)(unsafe.Add(unsafe.Pointer(w), 4*i))
	case 1:
		return tensor.BF16ToF32(*(*uint16)(unsafe.Add(unsafe.Pointer(w), 2*i)))
	}
	return tensor.F16ToF32(*(*uint16)(unsafe.Add(unsafe.Pointer(w), 2*i)))
}

func f32At(p *float32, i int) *float32 { return (*float32)(unsafe.Add(unsafe.Pointer(p), 4*i)) }

func mvTGo(d, T, R int) mvTFunc {
	return func(dst *float32, ldd int, x *float32, ldx int, w *byte, ldw int, k int) {
		for t := 0; t < T; t++ {
			for r := 0; r < R; r++ {
				var s float32
				for i := 0; i < k&^7; i++ {
					s += *f32At(x, t*ldx+i) * widenOne(d, w, r*ldw+i)
				}
				*f32At(dst, t*ldd+r) = s
			}
		}
	}
}

// mvTPGo is the twin of the bf16 pair kernels: x is pair-permuted, so within each
// 16-column chunk x[c+j] multiplies column c+2j and x[c+8+j] column c+2j+1.
func mvTPGo(T, R int) mvTPFunc {
	return func(dst *float32, ldd int, lds int, x *float32, ldx int, w *byte, ldw int, k int, pfd int) {
		for t := 0; t < T; t++ {
			for r := 0; r < R; r++ {
				var s float32
				for c := 0; c < k&^15; c += 16 {
					for j := 0; j < 8; j++ {
						s += *f32At(x, t*ldx+c+j)*widenOne(1, w, r*ldw+c+2*j) + *f32At(x, t*ldx+c+8+j)*widenOne(1, w, r*ldw+c+2*j+1)
					}
				}
				*f32At(dst, t*ldd+r*lds) = s
			}
		}
	}
}

// permutePairs writes x [T, K] into dst [T, K] in the column order of the bf16 pair
// kernels: every whole 16-column chunk as its 8 even columns, then its 8 odd ones
// (a bf16 pair loaded as one 32-bit lane widens to the even column by a shift and to
// the odd one by a mask). The last K%16 columns are copied unchanged.
func permutePairs(dst, x []float32, T, K int) {
	k16 := K &^ 15
	for t := 0; t < T; t++ {
		xr, dr := x[t*K:(t+1)*K], dst[t*K:(t+1)*K]
		for c := 0; c < k16; c += 16 {
			xc, dc := xr[c:c+16], dr[c:c+16]
			for j := 0; j < 8; j++ {
				dc[j], dc[8+j] = xc[2*j], xc[2*j+1]
			}
		}
		copy(dr[k16:], xr[k16:])
	}
}

// pairPos is where the x·w decode kernels over bf16 weights keep column j of the
// n&^7 columns (n8) they cover: every whole 16-column chunk in pair order (as
// permutePairs), a last 8-column block in natural order.
func pairPos(j, n8 int) int {
	if j >= n8&^15 {
		return j
	}
	c, o := j&^15, j&15
	return c + o>>1 + o&1*8
}

func mvRGo(d, T, kr int) mvRFunc {
	return func(dst *float32, ldd int, x *float32, ldx int, w *byte, ldw int, n int, acc int, pfd int) {
		for t := 0; t < T; t++ {
			for j := 0; j < n&^7; j++ {
				p := j
				if d == dtIndex(tensor.BF16) {
					p = pairPos(j, n&^7)
				}
				var s float32
				if acc != 0 {
					s = *f32At(dst, t*ldd+p)
				}
				for i := 0; i < kr; i++ {
					s += *f32At(x, t*ldx+i) * widenOne(d, w, i*ldw+j)
				}
				*f32At(dst, t*ldd+p) = s
			}
		}
	}
}

func gemmGo(mr int) gemmFunc {
	return func(a, b *float32, kc int, c *float32, ldc int, acc int, pf uintptr, pfs int, pfn int) {
		for i := 0; i < mr; i++ {
			for j := 0; j < 16; j++ {
				var s float32
				for p := 0; p < kc; p++ {
					s += *f32At(a, p*6+i) * *f32At(b, p*16+j)
				}
				if acc != 0 {
					s += *f32At(c, i*ldc+j)
				}
				*f32At(c, i*ldc+j) = s
			}
		}
	}
}

func gemmPanelsGo(a, b *float32, kc int, c *float32, ldc int, panels int, acc int, pf uintptr, pfs int, pfn int) {
	g := gemmGo(6)
	for q := 0; q < panels; q++ {
		g(f32At(a, q*6*kc), b, kc, f32At(c, 6*q*ldc), ldc, acc, pf, pfs, pfn)
	}
}

func packTGo(d int) packFunc {
	return func(dst *float32, w *byte, ldw int, kc int) {
		for i := 0; i < kc&^7; i++ {
			for j := 0; j < 16; j++ {
				*f32At(dst, i*16+j) = widenOne(d, w, j*ldw+i)
			}
		}
	}
}

func packARGo(dst, a *float32, lda int, kc int) {
	for p := 0; p < kc&^7; p++ {
		for i := 0; i < 6; i++ {
			*f32At(dst, p*6+i) = *f32At(a, i*lda+p)
		}
	}
}

func packACBGo(dst, a *float32, lda int, kc int, panels int) {
	for p := 0; p < kc; p++ {
		for i := 0; i < 6*panels; i++ {
			*f32At(dst, (i/6)*6*kc+p*6+i%6) = *f32At(a, p*lda+i)
		}
	}
}

func packNRowsGo(d int) packRowsFunc {
	return func(dst *float32, w *byte, ldw int, kc int, panels int) {
		for i := 0; i < kc; i++ {
			for j := 0; j < 16*panels; j++ {
				*f32At(dst, (j/16)*16*kc+i*16+j%16) = widenOne(d, w, i*ldw+j)
			}
		}
	}
}

func panelGo(M, S int) panelFunc {
	return func(dst *float32, ldd int, dss int, x *float32, ldx int, w *byte, wss int, k int, acc int, pfd int, pf uintptr, pfs int, pfn int) {
		for t := 0; t < M; t++ {
			for s := 0; s < S; s++ {
				ws := unsafe.Add(unsafe.Pointer(w), s*wss)
				for j := 0; j < panelRows; j++ {
					var sum float32
					if acc != 0 {
						sum = *f32At(dst, t*ldd+s*dss+j)
					}
					for kk := 0; kk < k; kk++ {
						sum += *f32At(x, t*ldx+kk) * widenOne(1, (*byte)(ws), kk*panelRows+2*(j%8)+j/8)
					}
					*f32At(dst, t*ldd+s*dss+j) = sum
				}
			}
		}
	}
}

func widenPanelGo(dst *float32, w *byte, kc int) {
	for i := 0; i < kc; i++ {
		for j := 0; j < panelRows; j++ {
			*f32At(dst, i*panelRows+j) = widenOne(1, w, i*panelRows+2*(j%8)+j/8)
		}
	}
}

// goKernels returns the Go twins of every low-level kernel.
func goKernels() *kernels {
	k := &kernels{name: "go"}
	for d := 0; d < 3; d++ {
		for T := 1; T <= 4; T++ {
			for r := 1; r <= mvTRows[T]; r++ {
				k.mvT[d][T] = append(k.mvT[d][T], mvTGo(d, T, r))
			}
			for kr := 1; kr <= mvRRows[d][T]; kr++ {
				k.mvR[d][T] = append(k.mvR[d][T], mvRGo(d, T, kr))
			}
		}
		k.packT[d], k.packNRows[d] = packTGo(d), packNRowsGo(d)
	}
	for T := 1; T < len(mvTPRows); T++ {
		for r := 1; r <= mvTPRows[T]; r++ {
			k.mvTP[T] = append(k.mvTP[T], mvTPGo(T, r))
		}
	}
	for mr := 1; mr <= 6; mr++ {
		k.gemm[mr] = gemmGo(mr)
	}
	k.gemmCol = gemmPanelsGo
	k.packAR, k.packACB = packARGo, packACBGo
	k.widenPanel = widenPanelGo
	for M := 1; M < len(panelStreams); M++ {
		k.panel[M] = []panelFunc{panelGo(M, 1)}
		if S := panelStreams[M]; S > 1 {
			k.panel[M] = append(k.panel[M], panelGo(M, S))
		}
	}
	n8 := func(n int) int { return n &^ 7 }
	k.dot = func(a, b *float32, n int) float32 {
		var s float32
		for i := 0; i < n&^31; i++ {
			s += *f32At(a, i) * *f32At(b, i)
		}
		return s
	}
	k.axpy = func(y *float32, a float32, x *float32, n int) {
		axpyF32Generic(unsafe.Slice(y, n8(n)), a, unsafe.Slice(x, n8(n)))
	}
	k.scaleAdd = func(dst *float32, a, b float32, x *float32, n int) {
		scaleAddF32Generic(unsafe.Slice(dst, n8(n)), a, b, unsafe.Slice(x, n8(n)))
	}
	k.scale = func(x *float32, s float32, n int) {
		for i := range unsafe.Slice(x, n8(n)) {
			*f32At(x, i) *= s
		}
	}
	k.max = func(x *float32, n int) float32 {
		m := *x
		for _, v := range unsafe.Slice(x, n8(n)) {
			m = max(m, v)
		}
		return m
	}
	k.expSub = func(dst, x *float32, n int, m float32) float64 {
		return expSubF32Generic(unsafe.Slice(dst, n8(n)), unsafe.Slice(x, n8(n)), m)
	}
	k.siluMul = func(dst, gate, up *float32, n int) {
		siluMulF32Generic(unsafe.Slice(dst, n8(n)), unsafe.Slice(gate, n8(n)), unsafe.Slice(up, n8(n)))
	}
	k.sumF64 = func(x *float32, n int) float64 {
		var s float64
		for _, v := range unsafe.Slice(x, n8(n)) {
			s += float64(v)
		}
		return s
	}
	k.sqDev = func(x *float32, n int, mean float64) float64 {
		var s float64
		for _, v := range unsafe.Slice(x, n8(n)) {
			d := float64(v) - mean
			s += d * d
		}
		return s
	}
	k.lnApply = func(dst, x, gamma *float32, n int, mean, rstd float64) {
		ds, xs, gs := unsafe.Slice(dst, n8(n)), unsafe.Slice(x, n8(n)), unsafe.Slice(gamma, n8(n))
		for i, v := range xs {
			ds[i] = float32((float64(v)-mean)*rstd) * gs[i]
		}
	}
	return k
}
