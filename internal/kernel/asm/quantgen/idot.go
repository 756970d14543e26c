package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// The integer-dot kernels (ggml's scheme): the activations are quantized to 8 bits
// once per call (Q8_0-style blocks of 32 for Q8_0/Q4_0, Q8_K-style blocks of 256 for
// Q4_K) and each block's dot is VPMADDUBSW (u8·s8 pairs to int16) and VPMADDWD
// (pairs to int32, by 1 or by the K-quant sub-block scale), exact in integers,
// then converted and scaled once per block.

// idot is one integer-dot kernel family.
type idot struct {
	name   string
	block  int // weight values per block (and activation values per scale)
	bytes  int // weight bytes per block
	goTwin string
	body   func(c *ictx, r int)
}

var idots = []idot{
	{"Q8_0", 32, 34, "dotQ8_0Q8", idotQ8_0},
	{"Q4_0", 32, 18, "dotQ4_0Q8", idotQ4_0},
	{"Q5_0", 32, 22, "dotQ5_0Q8", idotQ5_0},
	{"Q4_K", 256, 144, "dotQ4_KQ8K", idotQ4_K},
}

// idotRows is the number of rows per pass (the activations of a block are shared
// through L1; more rows only add registers).
const idotRows = 2

// ictx is the state of one block step.
type ictx struct {
	wr   []Register // row pointers (block start)
	xq   Register   // activation block (int8)
	xo   Register   // activation extras (Q4_0: [8]int32 offsets; Q4_K: [8]int16 sums)
	dx   VecVirtual // activation scale, broadcast
	acc  []VecVirtual
	accm []VecVirtual // Q4_K: the mins' accumulators (XMM)
}

func ones16() Mem { return splat("qc_ones16", 0x00010001) }
func mask0f() Mem { return splat("qc_b0f", 0x0f0f0f0f) }

// rowScale returns the float16 scale at m times dx, broadcast.
func rowScale(m Mem, dx VecVirtual) VecVirtual {
	x := XMM()
	VPBROADCASTW(m, x)
	d := YMM()
	VCVTPH2PS(x, d)
	VMULPS(dx, d, d)
	return d
}

// idotQ8_0: acc += d·dx·Σ w·x, the signs moved onto x so VPMADDUBSW sees |w|.
func idotQ8_0(c *ictx, r int) {
	w, ax, sy := YMM(), YMM(), YMM()
	VMOVDQU(Mem{Base: c.wr[r], Disp: 2}, w)
	VPSIGNB(w, w, ax)
	VMOVDQU(Mem{Base: c.xq}, sy)
	VPSIGNB(w, sy, sy)
	VPMADDUBSW(sy, ax, ax)
	VPMADDWD(ones16(), ax, ax)
	VCVTDQ2PS(ax, ax)
	d := rowScale(Mem{Base: c.wr[r]}, c.dx)
	VFMADD231PS(d, ax, c.acc[r])
}

// idotQ4_0: acc += d·dx·(Σ q·x − 8·Σx), q the unsigned nibbles; the offset comes
// precomputed as the int32 vector [8·Σx, 0, …, 0].
func idotQ4_0(c *ictx, r int) {
	lo, hi := XMM(), XMM()
	VMOVDQU(Mem{Base: c.wr[r], Disp: 2}, lo)
	VPSRLW(U8(4), lo, hi)
	q := YMM()
	VINSERTI128(U8(1), hi, lo.AsY(), q)
	VPAND(mask0f(), q, q)
	VPMADDUBSW(Mem{Base: c.xq}, q, q)
	VPMADDWD(ones16(), q, q)
	VPSUBD(Mem{Base: c.xo}, q, q)
	VCVTDQ2PS(q, q)
	d := rowScale(Mem{Base: c.wr[r]}, c.dx)
	VFMADD231PS(d, q, c.acc[r])
}

// idotQ5_0: as Q4_0 with the fifth bits ORed into the nibbles (ggml's
// bytes_from_bits_32: spread qh's bytes, set every other bit, compare with all
// ones) and the offset [16·Σx, 0, …, 0].
func idotQ5_0(c *ictx, r int) {
	lo, hi := XMM(), XMM()
	VMOVDQU(Mem{Base: c.wr[r], Disp: 6}, lo)
	VPSRLW(U8(4), lo, hi)
	q := YMM()
	VINSERTI128(U8(1), hi, lo.AsY(), q)
	VPAND(mask0f(), q, q)
	h := YMM()
	VPBROADCASTD(Mem{Base: c.wr[r], Disp: 2}, h)
	VPSHUFB(vconst("qc_q5spread", [8]uint32{0, 0, 0x01010101, 0x01010101, 0x02020202, 0x02020202, 0x03030303, 0x03030303}), h, h)
	VPOR(vconst("qc_q5bits", [8]uint32{0xf7fbfdfe, 0x7fbfdfef, 0xf7fbfdfe, 0x7fbfdfef, 0xf7fbfdfe, 0x7fbfdfef, 0xf7fbfdfe, 0x7fbfdfef}), h, h)
	VPCMPEQB(splat("qc_ff", 0xffffffff), h, h)
	VPAND(splat("qc_b10", 0x10101010), h, h)
	VPOR(h, q, q)
	VPMADDUBSW(Mem{Base: c.xq}, q, q)
	VPMADDWD(ones16(), q, q)
	VPSUBD(Mem{Base: c.xo}, q, q)
	VCVTDQ2PS(q, q)
	d := rowScale(Mem{Base: c.wr[r]}, c.dx)
	VFMADD231PS(d, q, c.acc[r])
}

// idotQ4_K: per super-block, sumi = Σ_j sc_j·Σ q·x (VPMADDWD by the broadcast
// 16-bit scale) and summ = Σ_j m_j·Σx_j (the activation's 32-value sums); acc +=
// d·dx·sumi, accm += dmin·dx·summ.
func idotQ4_K(c *ictx, r int) {
	p := k4ScaleBytes(Mem{Base: c.wr[r], Disp: 4})
	sc := XMM()
	VPMOVZXBW(p, sc)
	scy := YMM()
	VINSERTI128(U8(1), sc, sc.AsY(), scy)
	VPSHUFD(U8(0xee), p, p)
	mn := XMM()
	VPMOVZXBW(p, mn)
	VPMADDWD(Mem{Base: c.xo}, mn, mn) // 4 × int32
	VCVTDQ2PS(mn, mn)
	dd := XMM()
	VPBROADCASTD(Mem{Base: c.wr[r]}, dd) // d, dmin, d, dmin
	dy := YMM()
	VCVTPH2PS(dd, dy)
	VMULPS(c.dx, dy, dy)
	dm := XMM()
	VSHUFPS(U8(0x55), dy.AsX(), dy.AsX(), dm)
	VFMADD231PS(dm, mn, c.accm[r])
	sumi := YMM()
	for k := 0; k < 4; k++ {
		qb, lo, hi := YMM(), YMM(), YMM()
		VMOVDQU(Mem{Base: c.wr[r], Disp: 16 + 32*k}, qb)
		VPAND(mask0f(), qb, lo)
		VPSRLW(U8(4), qb, hi)
		VPAND(mask0f(), hi, hi)
		for h, q := range []VecVirtual{lo, hi} {
			j := 2*k + h
			s := YMM()
			VPSHUFB(wordBcast(j), scy, s)
			VPMADDUBSW(Mem{Base: c.xq, Disp: 32 * j}, q, q)
			VPMADDWD(s, q, q)
			if j == 0 {
				sumi = q
			} else {
				VPADDD(q, sumi, sumi)
			}
		}
	}
	VCVTDQ2PS(sumi, sumi)
	VSHUFPS(U8(0x00), dy, dy, dy)
	VFMADD231PS(dy, sumi, c.acc[r])
}

// wordBcast is the VPSHUFB control broadcasting 16-bit word j of each lane.
func wordBcast(j int) Mem {
	var v [8]uint32
	b := uint32(2*j) | uint32(2*j+1)<<8
	for i := range v {
		v[i] = b | b<<16
	}
	return vconst(fmt.Sprintf("qc_wb%d", j), v)
}

// genIdot emits qdot<Type>_1xR.
func genIdot(d idot, R int) {
	name := fmt.Sprintf("qdot%s_1x%d", d.name, R)
	TEXT(name, NOSPLIT, "func(dst *float32, xq *int8, xd *float32, xo *byte, w *byte, ldw int, nb int)")
	Doc(fmt.Sprintf("%s computes %d row(s) of one token's x·wᵀ from 8-bit activations (xq, scales xd", name, R),
		fmt.Sprintf("per %d values, extras xo) and %s weights in integer block dots, as %s:", d.block, d.name, d.goTwin),
		"",
		fmt.Sprintf("\tfor r := 0; r < %d; r++ {", R),
		fmt.Sprintf("\t\tdst[r] = %s(w[r*ldw:], xq, xd, xo) // nb blocks", d.goTwin),
		"\t}",
		"",
		"(the integer block sums are exact; the float accumulation order differs).")
	c := &ictx{}
	c.xq = Load(Param("xq"), GP64())
	xd := Load(Param("xd"), GP64())
	c.xo = Load(Param("xo"), GP64())
	ldw := Load(Param("ldw"), GP64())
	c.wr = []Register{Load(Param("w"), GP64())}
	for r := 1; r < R; r++ {
		c.wr = append(c.wr, GP64())
		LEAQ(Mem{Base: c.wr[r-1], Index: ldw, Scale: 1}, c.wr[r])
	}
	pfd := GP64()
	IMUL3Q(U32(R), ldw, pfd)
	nb := Load(Param("nb"), GP64())
	for r := 0; r < R; r++ {
		a := YMM()
		VXORPS(a, a, a)
		c.acc = append(c.acc, a)
		if d.name == "Q4_K" {
			m := XMM()
			VXORPS(m, m, m)
			c.accm = append(c.accm, m)
		}
	}
	loop, done := name+"_block", name+"_done"
	TESTQ(nb, nb)
	JZ(LabelRef(done))
	Label(loop)
	for r := 0; r < R; r++ {
		for off := 0; off < d.bytes; off += 64 {
			PREFETCHT0(Mem{Base: c.wr[r], Index: pfd, Scale: 1, Disp: off})
		}
	}
	c.dx = YMM()
	VBROADCASTSS(Mem{Base: xd}, c.dx)
	for r := 0; r < R; r++ {
		d.body(c, r)
	}
	ADDQ(U8(4), xd)
	ADDQ(U32(d.block), c.xq)
	switch d.name {
	case "Q4_0", "Q5_0":
		ADDQ(U8(32), c.xo)
	case "Q4_K":
		ADDQ(U8(16), c.xo)
	}
	for r := 0; r < R; r++ {
		ADDQ(U32(d.bytes), c.wr[r])
	}
	DECQ(nb)
	JNZ(LabelRef(loop))
	Label(done)
	dst := Load(Param("dst"), GP64())
	for r := 0; r < R; r++ {
		x := XMM()
		VEXTRACTF128(U8(1), c.acc[r], x)
		VADDPS(c.acc[r].AsX(), x, x)
		if d.name == "Q4_K" {
			VSUBPS(c.accm[r], x, x)
		}
		VHADDPS(x, x, x)
		VHADDPS(x, x, x)
		VMOVSS(x, Mem{Base: dst, Disp: 4 * r})
	}
	VZEROUPPER()
	RET()
}
