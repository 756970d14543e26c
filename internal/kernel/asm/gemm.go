package main

// The GEMM kernels: the register-tiled micro-kernel and the packers that lay out
// its operands (see gemm.go in package kernel).

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// cursorPrefetch emits one step of a prefetch cursor: while pfn > 0, prefetch the
// line at pf, advance pf by pfs and count pfn down (skip labels the jump past it).
func cursorPrefetch(skip string, pf, pfs, pfn Register) {
	TESTQ(pfn, pfn)
	JLE(LabelRef(skip))
	PREFETCHT0(Mem{Base: pf})
	ADDQ(pfs, pf)
	DECQ(pfn)
	Label(skip)
}

// genGemmAll emits every GEMM kernel.
func genGemmAll() {
	for _, dt := range dtypes {
		genPackT(dt)
		genPackNB(dt)
	}
	for mr := 1; mr <= 6; mr++ {
		genGemm(mr)
	}
	genGemmPanels()
	genPackA()
}

// genPackT packs 16 rows × kc columns (kc a multiple of 8) of a row-major [N, K]
// weight into the [kc][16] float32 panel the micro-kernel reads: an 8×8 transpose
// per block after widening.
func genPackT(dt dtype) {
	name := "packT" + dt.name
	text(name, NOSPLIT, "func(dst *float32, w *byte, ldw int, kc int)")
	Doc(name+" transposes and widens 16 weight rows × kc&^7 columns into a panel:",
		"",
		"\tfor i := 0; i < kc&^7; i++ {",
		"\t\tfor j := 0; j < 16; j++ {",
		"\t\t\tdst[i*16+j] = "+fmt.Sprintf(wExpr(dt), "j*ldw+i"),
		"\t\t}",
		"\t}")
	dst, w := loadPtr("dst"), loadPtr("w")
	ldw, kc := Load(Param("ldw"), GP64()), Load(Param("kc"), GP64())
	SHRQ(U8(3), kc)
	if dt.size == 4 {
		SHLQ(U8(2), ldw)
	} else {
		SHLQ(U8(1), ldw)
	}
	// Rows 4q..4q+3 are at p[q] + {0, ldw, 2·ldw, 3·ldw}.
	ld3 := GP64()
	LEAQ(Mem{Base: ldw, Index: ldw, Scale: 2}, ld3)
	p := [4]Register{w, GP64(), GP64(), GP64()}
	for q := 1; q < 4; q++ {
		LEAQ(Mem{Base: p[q-1], Index: ldw, Scale: 4}, p[q])
	}
	loop, done := name+"_loop", name+"_done"
	Label(loop)
	TESTQ(kc, kc)
	JZ(LabelRef(done))
	for h := 0; h < 2; h++ {
		var r [8]VecVirtual
		for j := 0; j < 8; j++ {
			r[j] = YMM()
			base := p[2*h+j/4]
			m := Mem{Base: base}
			switch j % 4 {
			case 1:
				m = Mem{Base: base, Index: ldw, Scale: 1}
			case 2:
				m = Mem{Base: base, Index: ldw, Scale: 2}
			case 3:
				m = Mem{Base: base, Index: ld3, Scale: 1}
			}
			widen(dt, m, r[j])
		}
		o := transpose8(r)
		for j := 0; j < 8; j++ {
			VMOVUPS(o[j], Mem{Base: dst, Disp: 64*j + 32*h})
		}
	}
	for q := 0; q < 4; q++ {
		ADDQ(U8(8*dt.size), p[q])
	}
	ADDQ(U32(512), dst)
	DECQ(kc)
	JMP(LabelRef(loop))
	Label(done)
	VZEROUPPER()
	RET()
}

// transpose8 transposes the 8×8 float32 matrix held in r (row j in r[j]) and
// returns the columns.
func transpose8(r [8]VecVirtual) [8]VecVirtual {
	var t, s, o [8]VecVirtual
	for q := 0; q < 4; q++ {
		t[2*q], t[2*q+1] = YMM(), YMM()
		VUNPCKLPS(r[2*q+1], r[2*q], t[2*q])   // r0[0] r1[0] r0[1] r1[1] | 4,5
		VUNPCKHPS(r[2*q+1], r[2*q], t[2*q+1]) // r0[2] r1[2] r0[3] r1[3] | 6,7
	}
	for h := 0; h < 2; h++ { // rows 0-3, rows 4-7
		a, b, c, d := t[4*h], t[4*h+1], t[4*h+2], t[4*h+3]
		for q := 0; q < 4; q++ {
			s[4*h+q] = YMM()
		}
		VSHUFPS(U8(0x44), c, a, s[4*h+0]) // column 0 | 4
		VSHUFPS(U8(0xee), c, a, s[4*h+1]) // column 1 | 5
		VSHUFPS(U8(0x44), d, b, s[4*h+2]) // column 2 | 6
		VSHUFPS(U8(0xee), d, b, s[4*h+3]) // column 3 | 7
	}
	for q := 0; q < 4; q++ {
		o[q], o[q+4] = YMM(), YMM()
		VPERM2F128(U8(0x20), s[4+q], s[q], o[q])
		VPERM2F128(U8(0x31), s[4+q], s[q], o[q+4])
	}
	return o
}

// packPD is how many rows ahead the block packers prefetch: a row's copy takes a
// few dozen cycles, so 16 rows cover a DRAM access.
const packPD = 16

// prefetchRow emits prefetches of the n lines (n in a register, clobbered) from
// row at p + packPD·ld.
func prefetchRow(tag string, p, ld, n Register) {
	q := GP64()
	IMUL3Q(U32(packPD), ld, q)
	ADDQ(p, q)
	Label(tag + "_pf")
	PREFETCHT0(Mem{Base: q})
	ADDQ(U8(64), q)
	DECQ(n)
	JNZ(LabelRef(tag + "_pf"))
}

// genPackNB packs (packNRows…) a whole block of a row-major [K, N] weight, kc rows × 16·panels
// columns, into panels of [kc][16] float32 one weight row at a time: every row is
// read once, contiguously, and rows packPD ahead are prefetched.
func genPackNB(dt dtype) {
	name := "packNRows" + dt.name
	text(name, NOSPLIT, "func(dst *float32, w *byte, ldw int, kc int, panels int)")
	Doc(name+" widens kc weight rows × 16·panels columns into panels of [kc][16]:",
		"",
		"\tfor i := 0; i < kc; i++ {",
		"\t\tfor j := 0; j < 16*panels; j++ {",
		"\t\t\tdst[(j/16)*16*kc+i*16+j%16] = "+fmt.Sprintf(wExpr(dt), "i*ldw+j"),
		"\t\t}",
		"\t}")
	dst, w := loadPtr("dst"), loadPtr("w")
	ldw, kc, panels := Load(Param("ldw"), GP64()), Load(Param("kc"), GP64()), Load(Param("panels"), GP64())
	if dt.size == 4 {
		SHLQ(U8(2), ldw)
	} else {
		SHLQ(U8(1), ldw)
	}
	ps := GP64() // panel stride in bytes: 64·kc
	MOVQ(kc, ps)
	SHLQ(U8(6), ps)
	lines := GP64() // lines per row to prefetch: ceil(16·panels·size/64) + 1
	MOVQ(panels, lines)
	if dt.size == 2 {
		INCQ(lines)
		SHRQ(U8(1), lines)
	}
	INCQ(lines)
	TESTQ(panels, panels)
	JZ(LabelRef(name + "_done"))
	Label(name + "_row")
	TESTQ(kc, kc)
	JZ(LabelRef(name + "_done"))
	n := GP64()
	MOVQ(lines, n)
	prefetchRow(name, w, ldw, n)
	wq, dq, q := GP64(), GP64(), GP64()
	MOVQ(w, wq)
	MOVQ(dst, dq)
	MOVQ(panels, q)
	Label(name + "_col")
	a, b := YMM(), YMM()
	widen(dt, Mem{Base: wq}, a)
	widen(dt, Mem{Base: wq, Disp: 8 * dt.size}, b)
	VMOVUPS(a, Mem{Base: dq})
	VMOVUPS(b, Mem{Base: dq, Disp: 32})
	ADDQ(U8(16*dt.size), wq)
	ADDQ(ps, dq)
	DECQ(q)
	JNZ(LabelRef(name + "_col"))
	ADDQ(ldw, w)
	ADDQ(U8(64), dst)
	DECQ(kc)
	JMP(LabelRef(name + "_row"))
	Label(name + "_done")
	VZEROUPPER()
	RET()
}

// genGemm emits the mr×16 register-tiled micro-kernel: 2·mr accumulators, two
// vectors of the packed weight panel and one broadcast activation per step.
func genGemm(mr int) {
	name := fmt.Sprintf("gemm%dx16", mr)
	text(name, NOSPLIT, "func(a, b *float32, kc int, c *float32, ldc int, acc int, pf uintptr, pfs int, pfn int)")
	Doc(name+" multiplies an activation panel a [kc][6] by a weight panel b [kc][16]",
		fmt.Sprintf("into the %dx16 tile of c (row stride ldc), adding to c when acc != 0:", mr),
		"",
		fmt.Sprintf("\tfor i := 0; i < %d; i++ {", mr),
		"\t\tfor j := 0; j < 16; j++ {",
		"\t\t\tvar s float32",
		"\t\t\tfor p := 0; p < kc; p++ {",
		"\t\t\t\ts += a[p*6+i] * b[p*16+j]",
		"\t\t\t}",
		"\t\t\tif acc != 0 {",
		"\t\t\t\ts += c[i*ldc+j]",
		"\t\t\t}",
		"\t\t\tc[i*ldc+j] = s",
		"\t\t}",
		"\t}",
		"",
		"Along the way it prefetches min(pfn, kc/4) cache lines at pf, pf+pfs, pf+2·pfs, …",
		"(one per 4 steps of k): the source of a block the driver packs next.")
	a, b := loadPtr("a"), loadPtr("b")
	kc := Load(Param("kc"), GP64())
	c := loadPtr("c")
	ldc := Load(Param("ldc"), GP64())
	SHLQ(U8(2), ldc)
	// The C tile is usually out of cache (a pass per KC block over dst): start
	// fetching it now, the loads at the end then hit.
	{
		p := GP64()
		MOVQ(c, p)
		for i := 0; i < mr; i++ {
			PREFETCHT0(Mem{Base: p})
			PREFETCHT0(Mem{Base: p, Disp: 60})
			if i+1 < mr {
				ADDQ(ldc, p)
			}
		}
	}
	// With fewer than 8 accumulators the FMA latency (4 cycles, 2 pipes) would
	// bound the loop: short tiles keep a second set for odd steps of k, added in
	// at the end.
	sets := 1
	if 2*mr < 8 {
		sets = 2
	}
	accs := zeroAccPairs(sets, mr)
	acc := accs[0]
	step := func(u int) {
		b0, b1 := YMM(), YMM()
		VMOVUPS(Mem{Base: b, Disp: 64 * u}, b0)
		VMOVUPS(Mem{Base: b, Disp: 64*u + 32}, b1)
		set := accs[u%sets]
		for i := 0; i < mr; i++ {
			av := YMM()
			VBROADCASTSS(Mem{Base: a, Disp: 24*u + 4*i}, av)
			VFMADD231PS(b0, av, set[i][0])
			VFMADD231PS(b1, av, set[i][1])
		}
	}
	k4 := GP64()
	MOVQ(kc, k4)
	SHRQ(U8(2), k4)
	ANDQ(U8(3), kc)
	pf, pfs, pfn := Load(Param("pf"), GP64()), Load(Param("pfs"), GP64()), Load(Param("pfn"), GP64())
	loop4, loop1, done := name+"_loop4", name+"_loop1", name+"_done"
	Label(loop4)
	TESTQ(k4, k4)
	JZ(LabelRef(loop1))
	for u := 0; u < 4; u++ {
		step(u)
		if u == 1 {
			cursorPrefetch(name+"_nopf", pf, pfs, pfn)
		}
	}
	ADDQ(U8(96), a)
	ADDQ(U32(256), b)
	DECQ(k4)
	JMP(LabelRef(loop4))
	Label(loop1)
	TESTQ(kc, kc)
	JZ(LabelRef(done))
	step(0)
	ADDQ(U8(24), a)
	ADDQ(U8(64), b)
	DECQ(kc)
	JMP(LabelRef(loop1))
	Label(done)
	for s := 1; s < sets; s++ {
		for i := 0; i < mr; i++ {
			for j := 0; j < 2; j++ {
				VADDPS(accs[s][i][j], acc[i][j], acc[i][j])
			}
		}
	}
	storeTile(name+"_store", acc, c, ldc)
	VZEROUPPER()
	RET()
}

// storeTile writes the mr×16 accumulators to the C tile at c (row stride ldc bytes),
// first adding the tile's old values when the "acc" parameter is non-zero (skip is
// the label that jumps over the loads). c ends on the tile's last row.
func storeTile(skip string, acc [][2]VecVirtual, c, ldc Register) {
	mr := len(acc)
	flag := Load(Param("acc"), GP64())
	TESTQ(flag, flag)
	JZ(LabelRef(skip))
	q := GP64()
	MOVQ(c, q)
	for i := 0; i < mr; i++ {
		VADDPS(Mem{Base: q}, acc[i][0], acc[i][0])
		VADDPS(Mem{Base: q, Disp: 32}, acc[i][1], acc[i][1])
		if i+1 < mr {
			ADDQ(ldc, q)
		}
	}
	Label(skip)
	for i := 0; i < mr; i++ {
		VMOVUPS(acc[i][0], Mem{Base: c})
		VMOVUPS(acc[i][1], Mem{Base: c, Disp: 32})
		if i+1 < mr {
			ADDQ(ldc, c)
		}
	}
}

// genPackA emits the activation packers: 6 rows (or 6 columns) of a row-major
// float32 matrix into the [kc][6] panel the micro-kernel broadcasts from.
func genPackA() {
	text("packAR", NOSPLIT, "func(dst, a *float32, lda int, kc int)")
	Doc("packAR packs 6 rows × kc&^7 columns of a (row stride lda) into a panel:",
		"",
		"\tfor p := 0; p < kc&^7; p++ {",
		"\t\tfor i := 0; i < 6; i++ {",
		"\t\t\tdst[p*6+i] = a[i*lda+p]",
		"\t\t}",
		"\t}")
	{
		dst, a := loadPtr("dst"), loadPtr("a")
		lda, kc := Load(Param("lda"), GP64()), Load(Param("kc"), GP64())
		SHRQ(U8(3), kc)
		SHLQ(U8(2), lda)
		var rp [6]Register
		rp[0] = a
		for i := 1; i < 6; i++ {
			rp[i] = GP64()
			LEAQ(Mem{Base: rp[i-1], Index: lda, Scale: 1}, rp[i])
		}
		zero := YMM()
		VXORPS(zero, zero, zero)
		Label("packAR_loop")
		TESTQ(kc, kc)
		JZ(LabelRef("packAR_done"))
		var r [8]VecVirtual
		for i := 0; i < 6; i++ {
			r[i] = YMM()
			VMOVUPS(Mem{Base: rp[i]}, r[i])
		}
		r[6], r[7] = zero, zero
		o := transpose8(r)
		for j := 0; j < 8; j++ { // column j: lanes 0-5 are rows 0-5
			VMOVUPS(o[j].AsX(), Mem{Base: dst, Disp: 24 * j})
			hi := XMM()
			VEXTRACTF128(U8(1), o[j], hi)
			VMOVSD(hi, Mem{Base: dst, Disp: 24*j + 16})
		}
		for i := 0; i < 6; i++ {
			ADDQ(U8(32), rp[i])
		}
		ADDQ(U8(192), dst)
		DECQ(kc)
		JMP(LabelRef("packAR_loop"))
		Label("packAR_done")
		VZEROUPPER()
		RET()
	}

	text("packACB", NOSPLIT, "func(dst, a *float32, lda int, kc int, panels int)")
	Doc("packACB packs 6·panels columns × kc rows of a (row stride lda), the transposed",
		"operand of aᵀ·b, into panels of [kc][6], one row of a at a time (read once,",
		"contiguously; rows packPD ahead are prefetched):",
		"",
		"\tfor p := 0; p < kc; p++ {",
		"\t\tfor i := 0; i < 6*panels; i++ {",
		"\t\t\tdst[(i/6)*6*kc+p*6+i%6] = a[p*lda+i]",
		"\t\t}",
		"\t}")
	{
		dst, a := loadPtr("dst"), loadPtr("a")
		lda, kc, panels := Load(Param("lda"), GP64()), Load(Param("kc"), GP64()), Load(Param("panels"), GP64())
		SHLQ(U8(2), lda)
		ps := GP64() // panel stride in bytes: 24·kc
		IMUL3Q(U8(24), kc, ps)
		lines := GP64() // ceil(24·panels/64) + 1
		IMUL3Q(U8(24), panels, lines)
		ADDQ(U8(127), lines)
		SHRQ(U8(6), lines)
		TESTQ(panels, panels)
		JZ(LabelRef("packACB_done"))
		Label("packACB_row")
		TESTQ(kc, kc)
		JZ(LabelRef("packACB_done"))
		n := GP64()
		MOVQ(lines, n)
		prefetchRow("packACB", a, lda, n)
		aq, dq, q := GP64(), GP64(), GP64()
		MOVQ(a, aq)
		MOVQ(dst, dq)
		MOVQ(panels, q)
		Label("packACB_col")
		x, y := XMM(), XMM()
		VMOVUPS(Mem{Base: aq}, x)
		VMOVSD(Mem{Base: aq, Disp: 16}, y)
		VMOVUPS(x, Mem{Base: dq})
		VMOVSD(y, Mem{Base: dq, Disp: 16})
		ADDQ(U8(24), aq)
		ADDQ(ps, dq)
		DECQ(q)
		JNZ(LabelRef("packACB_col"))
		ADDQ(lda, a)
		ADDQ(U8(24), dst)
		DECQ(kc)
		JMP(LabelRef("packACB_row"))
		Label("packACB_done")
		RET()
	}
}

// genGemmPanels emits gemmPanels6x16, the 6×16 micro-kernel looped over a column
// of activation panels: the driver's inner loop in one call, the weight panel
// staying in L1 while consecutive activation panels stream from L2 and the C tile
// of the next panel is fetched while the current one computes.
func genGemmPanels() {
	const mr = 6
	name := "gemmPanels6x16"
	text(name, NOSPLIT, "func(a, b *float32, kc int, c *float32, ldc int, panels int, acc int, pf uintptr, pfs int, pfn int)")
	Doc(name+" runs the 6×16 micro-kernel over panels consecutive activation panels",
		"a [panels][kc][6] and one weight panel b [kc][16], into rows 6q…6q+5 of c:",
		"",
		"\tfor q := 0; q < panels; q++ {",
		"\t\tfor i := 0; i < 6; i++ {",
		"\t\t\tfor j := 0; j < 16; j++ {",
		"\t\t\t\tvar s float32",
		"\t\t\t\tfor p := 0; p < kc; p++ {",
		"\t\t\t\t\ts += a[q*6*kc+p*6+i] * b[p*16+j]",
		"\t\t\t\t}",
		"\t\t\t\tif acc != 0 {",
		"\t\t\t\t\ts += c[(6*q+i)*ldc+j]",
		"\t\t\t\t}",
		"\t\t\t\tc[(6*q+i)*ldc+j] = s",
		"\t\t\t}",
		"\t\t}",
		"\t}",
		"",
		"Along the way it prefetches min(pfn, panels·(kc/4)) cache lines at pf, pf+pfs, …",
		"(one per 4 steps of k): the source of a block the driver packs next.")
	a, b := loadPtr("a"), loadPtr("b")
	c := loadPtr("c")
	ldc := Load(Param("ldc"), GP64())
	SHLQ(U8(2), ldc)
	panels := Load(Param("panels"), GP64())
	pf, pfs, pfn := Load(Param("pf"), GP64()), Load(Param("pfs"), GP64()), Load(Param("pfn"), GP64())
	done := name + "_done"
	TESTQ(panels, panels)
	JLE(LabelRef(done))
	// The first C tile; later ones are fetched one panel ahead.
	p := GP64()
	MOVQ(c, p)
	for i := 0; i < mr; i++ {
		PREFETCHT0(Mem{Base: p})
		PREFETCHT0(Mem{Base: p, Disp: 60})
		ADDQ(ldc, p)
	}
	// p now points at the next panel's C tile.
	acc := make([][2]VecVirtual, mr)
	for i := range acc {
		acc[i] = [2]VecVirtual{YMM(), YMM()}
	}
	step := func(bp Register, u int) {
		b0, b1 := YMM(), YMM()
		VMOVUPS(Mem{Base: bp, Disp: 64 * u}, b0)
		VMOVUPS(Mem{Base: bp, Disp: 64*u + 32}, b1)
		for i := 0; i < mr; i++ {
			av := YMM()
			VBROADCASTSS(Mem{Base: a, Disp: 24*u + 4*i}, av)
			VFMADD231PS(b0, av, acc[i][0])
			VFMADD231PS(b1, av, acc[i][1])
		}
	}
	Label(name + "_panel")
	for i := range acc {
		for j := 0; j < 2; j++ {
			VXORPS(acc[i][j], acc[i][j], acc[i][j])
		}
	}
	// Fetch the next panel's C tile (harmless past the last panel: a hint).
	{
		q := GP64()
		MOVQ(p, q)
		for i := 0; i < mr; i++ {
			PREFETCHT0(Mem{Base: q})
			PREFETCHT0(Mem{Base: q, Disp: 60})
			if i+1 < mr {
				ADDQ(ldc, q)
			}
		}
	}
	bp := GP64()
	MOVQ(b, bp)
	k4 := Load(Param("kc"), GP64())
	SHRQ(U8(2), k4)
	loop4, tail := name+"_loop4", name+"_tail"
	Label(loop4)
	TESTQ(k4, k4)
	JZ(LabelRef(tail))
	for u := 0; u < 4; u++ {
		step(bp, u)
		if u == 3 && gemmColPFA > 0 {
			PREFETCHT0(Mem{Base: a, Disp: gemmColPFA})
			PREFETCHT0(Mem{Base: a, Disp: gemmColPFA + 64})
		}
		if u == 1 {
			cursorPrefetch(name+"_nopf", pf, pfs, pfn)
		}
	}
	ADDQ(U8(96), a)
	ADDQ(U32(256), bp)
	DECQ(k4)
	JMP(LabelRef(loop4))
	Label(tail)
	k1 := Load(Param("kc"), GP64())
	ANDQ(U8(3), k1)
	loop1, store := name+"_loop1", name+"_store"
	Label(loop1)
	TESTQ(k1, k1)
	JZ(LabelRef(store))
	step(bp, 0)
	ADDQ(U8(24), a)
	ADDQ(U8(64), bp)
	DECQ(k1)
	JMP(LabelRef(loop1))
	Label(store)
	storeTile(name+"_plain", acc, c, ldc)
	ADDQ(ldc, c) // on to the next panel's tile
	for i := 0; i < mr; i++ {
		ADDQ(ldc, p)
	}
	DECQ(panels)
	JNZ(LabelRef(name + "_panel"))
	Label(done)
	VZEROUPPER()
	RET()
}

// gemmColPFA is how far ahead (bytes) gemmPanels6x16 prefetches the activation
// panels it streams from L2.
const gemmColPFA = 384
