package main

// The x·wᵀ kernels over panel-packed bf16 weights (PanelMat in package kernel):
// outer products of broadcast activations with 16 weight rows at a time.

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// panelStreams is, per token count M (index), the number of panels a panel kernel
// takes at once from separate streams: for few tokens the product is bound by
// memory, and a core reads several far-apart streams faster than one; the
// accumulators (2·M·S) must leave room for the mask, a loaded and a widened chunk
// and a broadcast activation.
var panelStreams = [7]int{0, 4, 2, 2, 1, 1, 1}

// genPanelAll emits the panel kernels: for every M in 1..6 one stream, and the
// panelStreams[M] streams of the memory-bound products when that is more.
func genPanelAll() {
	for m := 1; m < len(panelStreams); m++ {
		genPanel(m, 1)
		if s := panelStreams[m]; s > 1 {
			genPanel(m, s)
		}
	}
	genWidenPanel()
}

// genPanel emits panelBF16_MxS: M tokens times S weight panels (16 rows each, S
// streams wss bytes apart) over k columns. A panel chunk (32 bytes: the bf16
// weights of column kk of its 16 rows, 32-bit lane j holding row j in its low half
// and row j+8 in its high half) widens to rows 0-7 by a 16-bit left shift and to
// rows 8-15 by masking off the low halves, no shuffle; every token's activation
// is broadcast from row-major x and multiplied into both halves. The 16 sums of a
// token and panel are contiguous in dst: stored as they are, no horizontal sums.
//
// Prefetch: every 64 bytes of each stream, the line pfd bytes ahead in it (the
// decode streams); and one line per 4 columns from a cursor (pf, advanced by pfs,
// while pfn > 0), which spreads the fetch of the next panel over the token groups
// that sweep the current one.
func genPanel(M, S int) {
	name := fmt.Sprintf("panelBF16_%dx%d", M, S)
	text(name, NOSPLIT, "func(dst *float32, ldd int, dss int, x *float32, ldx int, w *byte, wss int, k int, acc int, pfd int, pf uintptr, pfs int, pfn int)")
	Doc(fmt.Sprintf("%s multiplies %d token(s) of x (row stride ldx) by %d bf16 weight panel(s)", name, M, S),
		"(panel s at w+s·wss bytes, [k][16] with halves interleaved) into dst, adding to it",
		"when acc != 0:",
		"",
		fmt.Sprintf("\tfor t := 0; t < %d; t++ {", M),
		fmt.Sprintf("\t\tfor s := 0; s < %d; s++ {", S),
		"\t\t\tfor j := 0; j < 16; j++ {",
		"\t\t\t\tvar sum float32",
		"\t\t\t\tif acc != 0 {",
		"\t\t\t\t\tsum = dst[t*ldd+s*dss+j]",
		"\t\t\t\t}",
		"\t\t\t\tfor kk := 0; kk < k; kk++ {",
		"\t\t\t\t\tsum += x[t*ldx+kk] * bf16(w[s*wss/2+kk*16+2*(j%8)+j/8])",
		"\t\t\t\t}",
		"\t\t\t\tdst[t*ldd+s*dss+j] = sum",
		"\t\t\t}",
		"\t\t}",
		"\t}",
		"",
		"Every 64 bytes of each panel it prefetches the line pfd bytes ahead, and every 4",
		"columns the line at pf (then pf += pfs) while pfn > 0 (pfn counted down): hints only.")
	x := loadPtr("x")
	ldx := Load(Param("ldx"), GP64())
	SHLQ(U8(2), ldx)
	xb := rowBases(x, ldx, M)
	w := loadPtr("w")
	ws := []Register{w}
	if S > 1 {
		wss := Load(Param("wss"), GP64())
		ws = stridePtrs(w, wss, S)
	}
	k := Load(Param("k"), GP64())
	pfd := Load(Param("pfd"), GP64())
	pf, pfs, pfn := Load(Param("pf"), GP64()), Load(Param("pfs"), GP64()), Load(Param("pfn"), GP64())

	mask := YMM()
	VBROADCASTSS(vconst("bf16_odd", 0xFFFF0000), mask)
	// acc[s][t][h]: h = 0 rows 0-7, 1 rows 8-15.
	acc := zeroAccPairs(S, M)
	// The broadcast activations of a column stay in registers across the streams
	// when they all fit; otherwise each is broadcast again for each stream (one
	// register; AVX2 has 16, and avo would spill into the EVEX-only Y16-Y31).
	held := M
	if 2*M*S+3+M > 16 {
		held = 0
	}
	step := func(u int) {
		xv := make([]VecVirtual, M)
		for t := 0; t < held; t++ {
			xv[t] = YMM()
			VBROADCASTSS(rowMem(xb, ldx, t, 4*u), xv[t])
		}
		for s := 0; s < S; s++ {
			raw, ev := YMM(), YMM()
			VMOVDQU(Mem{Base: ws[s], Disp: 32 * u}, raw)
			VPSLLD(U8(16), raw, ev)
			VPAND(mask, raw, raw)
			for t := 0; t < M; t++ {
				b := xv[t]
				if t >= held {
					b = YMM()
					VBROADCASTSS(rowMem(xb, ldx, t, 4*u), b)
				}
				VFMADD231PS(ev, b, acc[s][t][0])
				VFMADD231PS(raw, b, acc[s][t][1])
			}
		}
	}
	advance := func(cols int) {
		for _, b := range xb {
			ADDQ(U8(4*cols), b)
		}
		for _, p := range ws {
			ADDQ(U32(32*cols), p)
		}
	}
	k4 := GP64()
	MOVQ(k, k4)
	SHRQ(U8(2), k4)
	ANDQ(U8(3), k)
	loop4, loop1, done := name+"_loop4", name+"_loop1", name+"_done"
	Label(loop4)
	TESTQ(k4, k4)
	JZ(LabelRef(loop1))
	for u := 0; u < 4; u++ {
		if u%2 == 0 {
			for _, p := range ws {
				PREFETCHT0(Mem{Base: p, Index: pfd, Scale: 1, Disp: 32 * u})
			}
		}
		step(u)
		if u == 1 {
			cursorPrefetch(name+"_nopf", pf, pfs, pfn)
		}
	}
	advance(4)
	DECQ(k4)
	JMP(LabelRef(loop4))
	Label(loop1)
	TESTQ(k, k)
	JZ(LabelRef(done))
	step(0)
	advance(1)
	DECQ(k)
	JMP(LabelRef(loop1))
	Label(done)
	dp := loadPtr("dst")
	ldd := Load(Param("ldd"), GP64())
	SHLQ(U8(2), ldd)
	var dss Register
	if S > 1 {
		dss = Load(Param("dss"), GP64())
		SHLQ(U8(2), dss)
	}
	// store emits the stores of every sum, each first added to dst's old value
	// when add.
	store := func(add bool) {
		row := GP64()
		MOVQ(dp, row)
		for t := 0; t < M; t++ {
			q := row
			if S > 1 {
				q = GP64()
				MOVQ(row, q)
			}
			for s := 0; s < S; s++ {
				for h := 0; h < 2; h++ {
					m := Mem{Base: q, Disp: 32 * h}
					if add {
						VADDPS(m, acc[s][t][h], acc[s][t][h])
					}
					VMOVUPS(acc[s][t][h], m)
				}
				if s+1 < S {
					ADDQ(dss, q)
				}
			}
			if t+1 < M {
				ADDQ(ldd, row)
			}
		}
	}
	flag := Load(Param("acc"), GP64())
	TESTQ(flag, flag)
	JZ(LabelRef(name + "_set"))
	store(true)
	VZEROUPPER()
	RET()
	Label(name + "_set")
	store(false)
	VZEROUPPER()
	RET()
}

// genWidenPanel emits widenPanelBF16, which widens kc columns of a bf16 weight
// panel (PanelMat layout) into the [kc][16] float32 panel of the GEMM
// micro-kernel: the shift gives rows 0-7 and the mask rows 8-15, already in order.
func genWidenPanel() {
	name := "widenPanelBF16"
	text(name, NOSPLIT, "func(dst *float32, w *byte, kc int)")
	Doc(name+" widens kc columns of a bf16 weight panel (halves interleaved) into [kc][16]:",
		"",
		"\tfor i := 0; i < kc; i++ {",
		"\t\tfor j := 0; j < 16; j++ {",
		"\t\t\tdst[i*16+j] = bf16(w[i*16+2*(j%8)+j/8])",
		"\t\t}",
		"\t}")
	dst, w := loadPtr("dst"), loadPtr("w")
	kc := Load(Param("kc"), GP64())
	mask := YMM()
	VBROADCASTSS(vconst("bf16_odd", 0xFFFF0000), mask)
	k2 := GP64()
	MOVQ(kc, k2)
	SHRQ(U8(1), k2)
	ANDQ(U8(1), kc)
	step := func(u int) {
		raw, ev := YMM(), YMM()
		VMOVDQU(Mem{Base: w, Disp: 32 * u}, raw)
		VPSLLD(U8(16), raw, ev)
		VPAND(mask, raw, raw)
		VMOVUPS(ev, Mem{Base: dst, Disp: 64 * u})
		VMOVUPS(raw, Mem{Base: dst, Disp: 64*u + 32})
	}
	Label(name + "_loop2")
	TESTQ(k2, k2)
	JZ(LabelRef(name + "_tail"))
	step(0)
	step(1)
	ADDQ(U8(64), w)
	ADDQ(U32(128), dst)
	DECQ(k2)
	JMP(LabelRef(name + "_loop2"))
	Label(name + "_tail")
	TESTQ(kc, kc)
	JZ(LabelRef(name + "_done"))
	step(0)
	Label(name + "_done")
	VZEROUPPER()
	RET()
}
