//go:build !purego

package kernel

// haveAVX2 reports whether the kernels of kernels_amd64.s can run here: they use
// AVX2, FMA3 and F16C (VCVTPH2PS), and the OS must save the YMM state.
var haveAVX2 = detectAVX2()

func detectAVX2() bool {
	maxLeaf, _, _, _ := cpuid(0, 0)
	if maxLeaf < 7 {
		return false
	}
	_, _, c1, _ := cpuid(1, 0)
	const fma, osxsave, avx, f16c = 1 << 12, 1 << 27, 1 << 28, 1 << 29
	if c1&(fma|osxsave|avx|f16c) != fma|osxsave|avx|f16c {
		return false
	}
	if xcr0, _ := xgetbv0(); xcr0&6 != 6 { // XMM and YMM state enabled by the OS
		return false
	}
	_, b7, _, _ := cpuid(7, 0)
	return b7&(1<<5) != 0 // AVX2
}

func init() {
	if haveAVX2 {
		simd = avx2Kernels()
	}
}

// avx2Kernels returns the generated AVX2+FMA kernels.
func avx2Kernels() *kernels {
	return &kernels{
		name: "avx2",
		mvT: [3][5][]mvTFunc{
			{nil,
				{mvTF32_1x1, mvTF32_1x2},
				{mvTF32_2x1, mvTF32_2x2, mvTF32_2x3, mvTF32_2x4},
				{mvTF32_3x1, mvTF32_3x2, mvTF32_3x3, mvTF32_3x4},
				{mvTF32_4x1, mvTF32_4x2}},
			{nil,
				{mvTBF16_1x1, mvTBF16_1x2},
				{mvTBF16_2x1, mvTBF16_2x2, mvTBF16_2x3, mvTBF16_2x4},
				{mvTBF16_3x1, mvTBF16_3x2, mvTBF16_3x3, mvTBF16_3x4},
				{mvTBF16_4x1, mvTBF16_4x2}},
			{nil,
				{mvTF16_1x1, mvTF16_1x2},
				{mvTF16_2x1, mvTF16_2x2, mvTF16_2x3, mvTF16_2x4},
				{mvTF16_3x1, mvTF16_3x2, mvTF16_3x3, mvTF16_3x4},
				{mvTF16_4x1, mvTF16_4x2}},
		},
		mvTP: [9][]mvTPFunc{nil,
			{mvTPBF16_1x1, mvTPBF16_1x2, mvTPBF16_1x3, mvTPBF16_1x4},
			{mvTPBF16_2x1, mvTPBF16_2x2, mvTPBF16_2x3, mvTPBF16_2x4},
			{mvTPBF16_3x1, mvTPBF16_3x2, mvTPBF16_3x3},
			{mvTPBF16_4x1, mvTPBF16_4x2},
			{mvTPBF16_5x1, mvTPBF16_5x2},
			{mvTPBF16_6x1, mvTPBF16_6x2},
			{mvTPBF16_7x1},
			{mvTPBF16_8x1}},
		mvR: [3][5][]mvRFunc{
			{nil,
				{mvRF32_1x1, mvRF32_1x2, mvRF32_1x3, mvRF32_1x4, mvRF32_1x5, mvRF32_1x6, mvRF32_1x7, mvRF32_1x8},
				{mvRF32_2x1, mvRF32_2x2, mvRF32_2x3, mvRF32_2x4},
				{mvRF32_3x1, mvRF32_3x2, mvRF32_3x3, mvRF32_3x4, mvRF32_3x5, mvRF32_3x6, mvRF32_3x7, mvRF32_3x8},
				{mvRF32_4x1, mvRF32_4x2, mvRF32_4x3, mvRF32_4x4, mvRF32_4x5, mvRF32_4x6, mvRF32_4x7, mvRF32_4x8}},
			{nil,
				{mvRBF16_1x1, mvRBF16_1x2, mvRBF16_1x3, mvRBF16_1x4},
				{mvRBF16_2x1, mvRBF16_2x2, mvRBF16_2x3, mvRBF16_2x4},
				{mvRBF16_3x1, mvRBF16_3x2, mvRBF16_3x3, mvRBF16_3x4, mvRBF16_3x5, mvRBF16_3x6, mvRBF16_3x7, mvRBF16_3x8},
				{mvRBF16_4x1, mvRBF16_4x2, mvRBF16_4x3, mvRBF16_4x4, mvRBF16_4x5, mvRBF16_4x6, mvRBF16_4x7, mvRBF16_4x8}},
			{nil,
				{mvRF16_1x1},
				{mvRF16_2x1, mvRF16_2x2, mvRF16_2x3, mvRF16_2x4},
				{mvRF16_3x1, mvRF16_3x2, mvRF16_3x3, mvRF16_3x4, mvRF16_3x5, mvRF16_3x6, mvRF16_3x7, mvRF16_3x8},
				{mvRF16_4x1, mvRF16_4x2, mvRF16_4x3, mvRF16_4x4, mvRF16_4x5, mvRF16_4x6, mvRF16_4x7, mvRF16_4x8}},
		},
		gemm:       [7]gemmFunc{nil, gemm1x16, gemm2x16, gemm3x16, gemm4x16, gemm5x16, gemm6x16},
		gemmCol:    gemmPanels6x16,
		packT:      [3]packFunc{packTF32, packTBF16, packTF16},
		packNRows:  [3]packRowsFunc{packNRowsF32, packNRowsBF16, packNRowsF16},
		packAR:     packAR,
		packACB:    packACB,
		widenPanel: widenPanelBF16,
		panel: [7][]panelFunc{nil,
			{panelBF16_1x1, panelBF16_1x4},
			{panelBF16_2x1, panelBF16_2x2},
			{panelBF16_3x1, panelBF16_3x2},
			{panelBF16_4x1},
			{panelBF16_5x1},
			{panelBF16_6x1}},
		dot:      dotF32AVX2,
		axpy:     axpyF32AVX2,
		scaleAdd: scaleAddF32AVX2,
		scale:    scaleF32AVX2,
		max:      maxF32AVX2,
		expSub:   expSubF32AVX2,
		siluMul:  siluMulF32AVX2,
		sumF64:   sumF64AVX2,
		sqDev:    sqDevF64AVX2,
		lnApply:  lnApplyAVX2,
	}
}

// asmVec reports whether the vector ops of vec.go call the assembly. They call it
// directly rather than through simd's function values: with the //go:noescape
// stubs, slices passed to them (a stack array of scores, say) then stay on the
// caller's stack.
var asmVec = haveAVX2

func vecDot(a, b *float32, n int) float32              { return dotF32AVX2(a, b, n) }
func vecAxpy(y *float32, a float32, x *float32, n int) { axpyF32AVX2(y, a, x, n) }
func vecScaleAdd(dst *float32, a, b float32, x *float32, n int) {
	scaleAddF32AVX2(dst, a, b, x, n)
}
func vecScale(x *float32, s float32, n int) { scaleF32AVX2(x, s, n) }
func vecMax(x *float32, n int) float32      { return maxF32AVX2(x, n) }
func vecExpSub(dst, x *float32, n int, m float32) float64 {
	return expSubF32AVX2(dst, x, n, m)
}
func vecSiLUMul(dst, gate, up *float32, n int) { siluMulF32AVX2(dst, gate, up, n) }
func vecSumF64(x *float32, n int) float64      { return sumF64AVX2(x, n) }
func vecSqDev(x *float32, n int, mean float64) float64 {
	return sqDevF64AVX2(x, n, mean)
}
func vecLNApply(dst, x, gamma *float32, n int, mean, rstd float64) {
	lnApplyAVX2(dst, x, gamma, n, mean, rstd)
}

func vecAdamW(w, g, m, v *float32, n int, c AdamWStep) {
	if c.LowWeight {
		adamwLowF32AVX2(w, g, m, v, n, c.GradScale, c.Decay, c.Lerp, c.Beta2, c.W2, c.StepSize, c.InvBc2Sqrt, c.Eps)
		return
	}
	adamwHighF32AVX2(w, g, m, v, n, c.GradScale, c.Decay, c.Lerp, c.Beta2, c.W2, c.StepSize, c.InvBc2Sqrt, c.Eps)
}
