package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// ---------------------------------------------------------------- decode attention

// attnGroups is the largest number of query heads the attention kernels take at once
// (the Go side splits a larger GQA group): 3 heads × 4 keys of score accumulators,
// the 3 query chunks and one key chunk fill the 16 YMM registers.
const attnGroups = 3

// genAttn emits the score and P·V kernels of kernel.AttnScoresF32 and
// kernel.AttnPVF32 for 1 … attnGroups query heads.
func genAttn() {
	for g := 1; g <= attnGroups; g++ {
		genAttnQK(g)
	}
	for g := 1; g <= attnGroups; g++ {
		genAttnPV(g)
	}
}

// attnPfGroups is how many 4-key steps ahead attnQK prefetches the key rows (about
// 100 ns of FMAs per step with Dh 128, so ~4 steps cover a DRAM access).
const attnPfGroups = 4

// genAttnQK emits attnQKF32_G: the scores of G query rows against n key rows, four
// keys per step so that each loaded key chunk feeds G FMAs and each query chunk 4.
// Every score is one 8-lane FMA chain reduced as ((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7)),
// by a transposing VHADDPS tree for four keys and the same order for a single key.
//
// A cache's key rows of one head are short strided runs (Dh·4 bytes every ldk·4)
// that the hardware prefetchers pick up late, so the kernel prefetches them itself:
// the first attnPfGroups steps' rows up front, then at each step the rows that many
// steps ahead, and the rows of pf (the values, read next by attnPV) of the step's
// own keys.
func genAttnQK(G int) {
	name := fmt.Sprintf("attnQKF32_%d", G)
	text(name, NOSPLIT, "func(dst *float32, ldd int, q *float32, ldq int, k *float32, ldk int, n int, dh int, scale float32, pf *float32)")
	Doc(fmt.Sprintf("%s computes the scaled scores of %d query row(s) against n key rows over dh&^7 >= 8 columns:", name, G),
		"",
		fmt.Sprintf("\tfor g := 0; g < %d; g++ {", G),
		"\t\tfor j := 0; j < n; j++ {",
		"\t\t\tvar s float32",
		"\t\t\tfor i := 0; i < dh&^7; i++ {",
		"\t\t\t\ts += q[g*ldq+i] * k[j*ldk+i]",
		"\t\t\t}",
		"\t\t\tdst[g*ldd+j] = s * scale",
		"\t\t}",
		"\t}",
		"",
		"It prefetches rows j*ldk … +dh of pf for j < n&^3 (a hint).")
	if G > attnGroups {
		panic("attnQK: too many heads")
	}
	// Few registers stay live across the loops (q, dh, ldd and scale are reloaded
	// from the frame where needed): 4 keys × 3 heads take 12 GP registers.
	dst, k, pv := loadPtr("dst"), loadPtr("k"), loadPtr("pf")
	ldq, ldk := Load(Param("ldq"), GP64()), Load(Param("ldk"), GP64())
	n := Load(Param("n"), GP64())
	SHLQ(U8(2), ldq)
	SHLQ(U8(2), ldk)
	rowBytes := func() Register {
		r := Load(Param("dh"), GP64())
		ANDQ(I32(-8), r)
		SHLQ(U8(2), r)
		return r
	}
	ldd := func() Register {
		r := Load(Param("ldd"), GP64())
		SHLQ(U8(2), r)
		return r
	}
	// Rows g of q and dst are base + g·ld (G <= 3: scale 0, 1, 2); keys r of a group
	// of four are k + r·ldk, the last two addressed from k2 = k + 2·ldk.
	rowMem := func(base, ld Register, g int, disp int) Mem {
		if g == 0 {
			return Mem{Base: base, Disp: disp}
		}
		return Mem{Base: base, Index: ld, Scale: uint8(g), Disp: disp}
	}
	// The scale is broadcast straight from the frame: a legacy-SSE MOVSS amid the
	// VEX code would cost a state transition.
	scaleMem, err := Param("scale").Resolve()
	if err != nil {
		panic(err)
	}
	scale := func() VecVirtual {
		x := XMM()
		VBROADCASTSS(scaleMem.Addr, x)
		return x
	}
	// prefetch4 prefetches the row bytes of the 4 rows at base, base+ldk, ….
	prefetch4 := func(base Register, tag string) {
		b2, off, end := GP64(), GP64(), rowBytes()
		LEAQ(Mem{Base: base, Index: ldk, Scale: 2}, b2)
		XORQ(off, off)
		Label(tag)
		PREFETCHT0(Mem{Base: base, Index: off, Scale: 1})
		PREFETCHT0(Mem{Base: b2, Index: off, Scale: 1})
		ADDQ(ldk, off)
		PREFETCHT0(Mem{Base: base, Index: off, Scale: 1})
		PREFETCHT0(Mem{Base: b2, Index: off, Scale: 1})
		SUBQ(ldk, off)
		ADDQ(U8(64), off)
		CMPQ(off, end)
		JL(LabelRef(tag))
	}
	loop4, inner4, loop1, inner1, done := name+"_loop4", name+"_inner4", name+"_loop1", name+"_inner1", name+"_done"

	// Up front: the key rows of the first attnPfGroups steps.
	{
		kp, cnt := GP64(), GP64()
		MOVQ(k, kp)
		MOVQ(n, cnt)
		SHRQ(U8(2), cnt)
		CMPQ(cnt, U8(attnPfGroups))
		JLE(LabelRef(name + "_pf0"))
		MOVQ(U32(attnPfGroups), cnt)
		Label(name + "_pf0")
		TESTQ(cnt, cnt)
		JZ(LabelRef(loop4))
		Label(name + "_pfrows")
		prefetch4(kp, name+"_pfline0")
		LEAQ(Mem{Base: kp, Index: ldk, Scale: 4}, kp)
		DECQ(cnt)
		JNZ(LabelRef(name + "_pfrows"))
	}

	Label(loop4)
	CMPQ(n, U8(4))
	JL(LabelRef(loop1))
	{
		// this step's values, and the keys attnPfGroups steps ahead if there are 4
		prefetch4(pv, name+"_pflinev")
		CMPQ(n, U8(4*attnPfGroups+4))
		JL(LabelRef(name + "_nopf"))
		kf := GP64()
		MOVQ(ldk, kf)
		SHLQ(U8(2+2), kf) // log2(4·attnPfGroups)
		ADDQ(k, kf)
		prefetch4(kf, name+"_pflinek")
		Label(name + "_nopf")
	}
	acc := make([][4]VecVirtual, G)
	for g := range acc {
		for r := range acc[g] {
			acc[g][r] = YMM()
			VXORPS(acc[g][r], acc[g][r], acc[g][r])
		}
	}
	qc, kc, kc2, i := loadPtr("q"), GP64(), GP64(), rowBytes()
	MOVQ(k, kc)
	LEAQ(Mem{Base: k, Index: ldk, Scale: 2}, kc2)
	Label(inner4)
	{
		qv := make([]VecVirtual, G)
		for g := range qv {
			qv[g] = YMM()
			VMOVUPS(rowMem(qc, ldq, g, 0), qv[g])
		}
		for r := 0; r < 4; r++ {
			kv := YMM()
			m := Mem{Base: kc}
			switch r {
			case 1:
				m = Mem{Base: kc, Index: ldk, Scale: 1}
			case 2:
				m = Mem{Base: kc2}
			case 3:
				m = Mem{Base: kc2, Index: ldk, Scale: 1}
			}
			VMOVUPS(m, kv)
			for g := 0; g < G; g++ {
				VFMADD231PS(qv[g], kv, acc[g][r])
			}
		}
	}
	ADDQ(U8(32), qc)
	ADDQ(U8(32), kc)
	ADDQ(U8(32), kc2)
	SUBQ(U8(32), i)
	JNZ(LabelRef(inner4))
	sc, ld := scale(), ldd()
	for g := 0; g < G; g++ {
		a := acc[g]
		VHADDPS(a[1], a[0], a[0])
		VHADDPS(a[3], a[2], a[2])
		VHADDPS(a[2], a[0], a[0]) // [s0 s1 s2 s3 | s0' s1' s2' s3']
		VEXTRACTF128(U8(1), a[0], a[1].AsX())
		VADDPS(a[1].AsX(), a[0].AsX(), a[0].AsX())
		VMULPS(sc, a[0].AsX(), a[0].AsX())
		VMOVUPS(a[0].AsX(), rowMem(dst, ld, g, 0))
	}
	ADDQ(U8(16), dst)
	LEAQ(Mem{Base: k, Index: ldk, Scale: 4}, k)
	LEAQ(Mem{Base: pv, Index: ldk, Scale: 4}, pv)
	SUBQ(U8(4), n)
	JMP(LabelRef(loop4))

	// The last n%4 keys one at a time.
	Label(loop1)
	TESTQ(n, n)
	JZ(LabelRef(done))
	acc1 := make([]VecVirtual, G)
	for g := range acc1 {
		acc1[g] = YMM()
		VXORPS(acc1[g], acc1[g], acc1[g])
	}
	qc1, kc1, i1 := loadPtr("q"), GP64(), rowBytes()
	MOVQ(k, kc1)
	Label(inner1)
	{
		kv := YMM()
		VMOVUPS(Mem{Base: kc1}, kv)
		for g := 0; g < G; g++ {
			VFMADD231PS(rowMem(qc1, ldq, g, 0), kv, acc1[g])
		}
	}
	ADDQ(U8(32), qc1)
	ADDQ(U8(32), kc1)
	SUBQ(U8(32), i1)
	JNZ(LabelRef(inner1))
	sc1, ld1 := scale(), ldd()
	for g := 0; g < G; g++ {
		a := acc1[g]
		VHADDPS(a, a, a)
		VHADDPS(a, a, a) // [s s s s | s' s' s' s']
		hi := XMM()
		VEXTRACTF128(U8(1), a, hi)
		VADDSS(hi, a.AsX(), a.AsX())
		VMULSS(sc1, a.AsX(), a.AsX())
		VMOVSS(a.AsX(), rowMem(dst, ld1, g, 0))
	}
	ADDQ(U8(4), dst)
	ADDQ(ldk, k)
	DECQ(n)
	JMP(LabelRef(loop1))

	Label(done)
	VZEROUPPER()
	RET()
}

// attnPVCols is the number of 8-column chunks of every head's accumulator a P·V
// pass holds in registers: G·C accumulators, C value chunks, a broadcast
// probability and a product.
func attnPVCols(G int) int { return min(4, 14/(G+1)) }

// genAttnPV emits attnPVF32_G: acc [G rows] += p·v over n value rows, key by key in
// order with a separate multiply and add (the rounding of kernel.AxpyF32). Columns
// are taken C chunks of 8 at a time (attnPVCols), each pass streaming the value
// rows' slice of those columns once, then single chunks.
func genAttnPV(G int) {
	name := fmt.Sprintf("attnPVF32_%d", G)
	text(name, NOSPLIT, "func(acc *float32, lda int, p *float32, ldp int, v *float32, ldv int, n int, dh int)")
	Doc(fmt.Sprintf("%s adds p·v to %d accumulator row(s) over dh&^7 columns, bit-exact (multiply, then add):", name, G),
		"",
		fmt.Sprintf("\tfor g := 0; g < %d; g++ {", G),
		"\t\tfor j := 0; j < n; j++ {",
		"\t\t\tfor i := 0; i < dh&^7; i++ {",
		"\t\t\t\tacc[g*lda+i] += p[g*ldp+j] * v[j*ldv+i]",
		"\t\t\t}",
		"\t\t}",
		"\t}")
	acc, p, v := loadPtr("acc"), loadPtr("p"), loadPtr("v")
	lda, ldp, ldv := Load(Param("lda"), GP64()), Load(Param("ldp"), GP64()), Load(Param("ldv"), GP64())
	n, dh := Load(Param("n"), GP64()), Load(Param("dh"), GP64())
	SHLQ(U8(2), lda)
	SHLQ(U8(2), ldp)
	SHLQ(U8(2), ldv)
	ANDQ(I32(-8), dh)
	rowMem := func(base, ld Register, g int, disp int) Mem {
		if g == 0 {
			return Mem{Base: base, Disp: disp}
		}
		return Mem{Base: base, Index: ld, Scale: uint8(g), Disp: disp}
	}
	TESTQ(n, n)
	JZ(LabelRef(name + "_done"))
	pc, vc, j := GP64(), GP64(), GP64()
	pass := func(C int, tag string) {
		loop, keys := name+"_cols"+tag, name+"_keys"+tag
		next := name + "_end" + tag
		Label(loop)
		CMPQ(dh, U8(8*C))
		JL(LabelRef(next))
		a := make([][]VecVirtual, G)
		for g := range a {
			a[g] = make([]VecVirtual, C)
			for c := range a[g] {
				a[g][c] = YMM()
				VMOVUPS(rowMem(acc, lda, g, 32*c), a[g][c])
			}
		}
		MOVQ(p, pc)
		MOVQ(v, vc)
		MOVQ(n, j)
		Label(keys)
		vv := make([]VecVirtual, C)
		for c := range vv {
			vv[c] = YMM()
			VMOVUPS(Mem{Base: vc, Disp: 32 * c}, vv[c])
		}
		for g := 0; g < G; g++ {
			pb := YMM()
			VBROADCASTSS(rowMem(pc, ldp, g, 0), pb)
			for c := 0; c < C; c++ {
				t := YMM()
				VMULPS(vv[c], pb, t)
				VADDPS(t, a[g][c], a[g][c])
			}
		}
		ADDQ(U8(4), pc)
		ADDQ(ldv, vc)
		DECQ(j)
		JNZ(LabelRef(keys))
		for g := range a {
			for c := range a[g] {
				VMOVUPS(a[g][c], rowMem(acc, lda, g, 32*c))
			}
		}
		ADDQ(U32(32*C), acc)
		ADDQ(U32(32*C), v)
		SUBQ(U8(8*C), dh)
		JMP(LabelRef(loop))
		Label(next)
	}
	if C := attnPVCols(G); C > 1 {
		pass(C, "C")
	}
	pass(1, "1")
	Label(name + "_done")
	VZEROUPPER()
	RET()
}
