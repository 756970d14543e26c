// Command asm generates the amd64 assembly kernels of package kernel with avo.
//
// Run from this directory (it is its own module, so the engine does not depend on avo):
//
//	go run . -out ../kernels_amd64.s -stubs ../kernels_amd64_stub.go -pkg kernel
//
// or `go generate ./internal/kernel` from the repository root. Every generated
// function has a plain-Go twin in package kernel, and the stub's doc comment shows
// its Go loop. All kernels need AVX2, FMA and F16C; the Go side checks the CPU.
package main

import (
	"fmt"
	"math"

	"github.com/mmcloughlin/avo/attr"
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

func main() {
	ConstraintExpr("!purego")
	genCPUID()
	genVector()
	genExp()
	genNorm()
	genAttn()
	for _, dt := range dtypes {
		for t := 1; t <= 4; t++ {
			for r := 1; r <= mvTRows[t]; r++ {
				genMvT(dt, t, r)
			}
			for kr := 1; kr <= mvRRows[dtIndex(dt)][t]; kr++ {
				genMvR(dt, t, kr)
			}
		}
	}
	for t := 1; t < len(mvTPRows); t++ {
		for r := 1; r <= mvTPRows[t]; r++ {
			genMvTP(t, r)
		}
	}
	genGemmAll()
	genPanelAll()
	genAdamW()
	Generate()
}

// dtype is a weight storage type and how 8 elements of it are widened into a YMM.
type dtype struct {
	name string // F32, BF16, F16
	size int    // bytes per element
	goFn string // Go expression widening one element (for doc comments)
}

var dtypes = []dtype{
	{"F32", 4, "w"},
	{"BF16", 2, "bf16(w)"},
	{"F16", 2, "f16(w)"},
}

// widen loads 8 elements at m into y as float32.
func widen(dt dtype, m Mem, y VecVirtual) {
	switch dt.name {
	case "F32":
		VMOVUPS(m, y)
	case "BF16":
		VPMOVZXWD(m, y)
		VPSLLD(U8(16), y, y)
	case "F16":
		VCVTPH2PS(m, y)
	}
}

// hsumStore reduces the 8 lanes of acc and stores the float32 sum at m.
func hsumStore(acc VecVirtual, m Mem) {
	x := XMM()
	VEXTRACTF128(U8(1), acc, x)
	VADDPS(acc.AsX(), x, x)
	VHADDPS(x, x, x)
	VHADDPS(x, x, x)
	VMOVSS(x, m)
}

func loadPtr(name string) Register { return Load(Param(name), GP64()) }

// text starts a kernel: none keeps a pointer argument beyond the call, so the stub
// is //go:noescape and slices passed to it can stay on the caller's stack.
func text(name string, attr attr.Attribute, signature string) {
	TEXT(name, attr, signature)
	Pragma("noescape")
}

// bcastF32 loads a float32 parameter and broadcasts it to all 8 lanes.
func bcastF32(name string) VecVirtual {
	x := Load(Param(name), XMM())
	y := YMM()
	VBROADCASTSS(x, y)
	return y
}

// ---------------------------------------------------------------- cpu features

func genCPUID() {
	TEXT("cpuid", NOSPLIT, "func(leaf, sub uint32) (eax, ebx, ecx, edx uint32)")
	Doc("cpuid executes CPUID with EAX=leaf, ECX=sub.")
	a, c := GP32(), GP32()
	Load(Param("leaf"), a)
	Load(Param("sub"), c)
	MOVL(a, EAX)
	MOVL(c, ECX)
	CPUID()
	Store(EAX, Return("eax"))
	Store(EBX, Return("ebx"))
	Store(ECX, Return("ecx"))
	Store(EDX, Return("edx"))
	RET()

	TEXT("xgetbv0", NOSPLIT, "func() (eax, edx uint32)")
	Doc("xgetbv0 reads XCR0, the register-state components the OS saves (XGETBV, ECX=0).")
	XORL(ECX, ECX)
	XGETBV()
	Store(EAX, Return("eax"))
	Store(EDX, Return("edx"))
	RET()
}

// ---------------------------------------------------------------- vector ops

func genVector() {
	text("dotF32AVX2", NOSPLIT, "func(a, b *float32, n int) float32")
	Doc("dotF32AVX2 returns Σ a[i]·b[i] for i < n&^31 (32 lanes of FMA chains):",
		"",
		"\tfor i := 0; i < n&^31; i++ {",
		"\t\ts += a[i] * b[i]",
		"\t}")
	{
		a, b, n := loadPtr("a"), loadPtr("b"), Load(Param("n"), GP64())
		ANDQ(I32(-32), n)
		acc := []VecVirtual{YMM(), YMM(), YMM(), YMM()}
		for _, r := range acc {
			VXORPS(r, r, r)
		}
		i := GP64()
		XORQ(i, i)
		Label("dot_loop")
		CMPQ(i, n)
		JGE(LabelRef("dot_done"))
		for u, r := range acc {
			t := YMM()
			VMOVUPS(Mem{Base: a, Index: i, Scale: 4, Disp: 32 * u}, t)
			VFMADD231PS(Mem{Base: b, Index: i, Scale: 4, Disp: 32 * u}, t, r)
		}
		ADDQ(U8(32), i)
		JMP(LabelRef("dot_loop"))
		Label("dot_done")
		VADDPS(acc[1], acc[0], acc[0])
		VADDPS(acc[3], acc[2], acc[2])
		VADDPS(acc[2], acc[0], acc[0])
		x := XMM()
		VEXTRACTF128(U8(1), acc[0], x)
		VADDPS(acc[0].AsX(), x, x)
		VHADDPS(x, x, x)
		VHADDPS(x, x, x)
		VZEROUPPER()
		Store(x, ReturnIndex(0))
		RET()
	}

	text("axpyF32AVX2", NOSPLIT, "func(y *float32, a float32, x *float32, n int)")
	Doc("axpyF32AVX2 is AxpyF32 over the first n&^7 elements, bit-exact (multiply, then add):",
		"",
		"\tfor i := 0; i < n&^7; i++ {",
		"\t\ty[i] += a * x[i]",
		"\t}")
	elementwise("axpy", func() []VecVirtual { return []VecVirtual{bcastF32("a")} }, []string{"y", "x"},
		func(k []VecVirtual, p []Register, i Register) {
			t, u := YMM(), YMM()
			VMULPS(Mem{Base: p[1], Index: i, Scale: 4}, k[0], t)
			VMOVUPS(Mem{Base: p[0], Index: i, Scale: 4}, u)
			VADDPS(t, u, u)
			VMOVUPS(u, Mem{Base: p[0], Index: i, Scale: 4})
		})

	text("scaleAddF32AVX2", NOSPLIT, "func(dst *float32, a, b float32, x *float32, n int)")
	Doc("scaleAddF32AVX2 is ScaleAddF32 over the first n&^7 elements, bit-exact:",
		"",
		"\tfor i := 0; i < n&^7; i++ {",
		"\t\tdst[i] = a*dst[i] + b*x[i]",
		"\t}")
	elementwise("scaleadd", func() []VecVirtual { return []VecVirtual{bcastF32("a"), bcastF32("b")} }, []string{"dst", "x"},
		func(k []VecVirtual, p []Register, i Register) {
			t, u := YMM(), YMM()
			VMULPS(Mem{Base: p[0], Index: i, Scale: 4}, k[0], t)
			VMULPS(Mem{Base: p[1], Index: i, Scale: 4}, k[1], u)
			VADDPS(u, t, t)
			VMOVUPS(t, Mem{Base: p[0], Index: i, Scale: 4})
		})

	text("scaleF32AVX2", NOSPLIT, "func(x *float32, s float32, n int)")
	Doc("scaleF32AVX2 multiplies the first n&^7 elements by s:",
		"",
		"\tfor i := 0; i < n&^7; i++ {",
		"\t\tx[i] *= s",
		"\t}")
	elementwise("scale", func() []VecVirtual { return []VecVirtual{bcastF32("s")} }, []string{"x"},
		func(k []VecVirtual, p []Register, i Register) {
			t := YMM()
			VMULPS(Mem{Base: p[0], Index: i, Scale: 4}, k[0], t)
			VMOVUPS(t, Mem{Base: p[0], Index: i, Scale: 4})
		})

	text("maxF32AVX2", NOSPLIT, "func(x *float32, n int) float32")
	Doc("maxF32AVX2 returns the largest of x[:n&^7] (n >= 8); NaN handling is unspecified",
		"(softmax turns any NaN input into NaN outputs through exp anyway):",
		"",
		"\tm := x[0]",
		"\tfor i := 1; i < n&^7; i++ {",
		"\t\tm = max(m, x[i])",
		"\t}")
	{
		x, n := loadPtr("x"), Load(Param("n"), GP64())
		ANDQ(I32(-8), n)
		m := YMM()
		VMOVUPS(Mem{Base: x}, m)
		i := GP64()
		MOVQ(U32(8), i)
		Label("max_loop")
		CMPQ(i, n)
		JGE(LabelRef("max_done"))
		VMAXPS(Mem{Base: x, Index: i, Scale: 4}, m, m)
		ADDQ(U8(8), i)
		JMP(LabelRef("max_loop"))
		Label("max_done")
		t := XMM()
		VEXTRACTF128(U8(1), m, t)
		VMAXPS(m.AsX(), t, t)
		u := XMM()
		VPERMILPS(U8(0x4e), t, u)
		VMAXPS(u, t, t)
		VPERMILPS(U8(0xb1), t, u)
		VMAXPS(u, t, t)
		VZEROUPPER()
		Store(t, ReturnIndex(0))
		RET()
	}
}

// elementwise emits a loop over i in [0, n&^7) step 8 calling body with the
// broadcast constants from consts and the pointer parameters ptrs.
func elementwise(tag string, consts func() []VecVirtual, ptrs []string, body func(k []VecVirtual, p []Register, i Register)) {
	var p []Register
	for _, name := range ptrs {
		p = append(p, loadPtr(name))
	}
	k := consts()
	n := Load(Param("n"), GP64())
	ANDQ(I32(-8), n)
	i := GP64()
	XORQ(i, i)
	Label(tag + "_loop")
	CMPQ(i, n)
	JGE(LabelRef(tag + "_done"))
	body(k, p, i)
	ADDQ(U8(8), i)
	JMP(LabelRef(tag + "_loop"))
	Label(tag + "_done")
	VZEROUPPER()
	RET()
}

// ---------------------------------------------------------------- exp

var vconsts = map[string]Mem{}

// vconst returns a 32-byte read-only vector holding bits in all 8 lanes.
func vconst(name string, bits uint32) Mem {
	if m, ok := vconsts[name]; ok {
		return m
	}
	m := GLOBL(name, RODATA|NOPTR)
	for i := 0; i < 8; i++ {
		DATA(4*i, U32(bits))
	}
	vconsts[name] = m
	return m
}

func vconstF(name string, v float32) Mem { return vconst(name, math.Float32bits(v)) }

var expPoly = [6]float32{1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1}

// exp8 sets y = exp(x) for 8 lanes (x is clobbered). The Cephes expf polynomial on
// r = x - n·ln2, |r| <= ln2/2, scaled by 2^n as 2^(n>>1)·2^(n-(n>>1)) so that both
// factors stay normal: results are within 1 ulp of the correctly rounded exp
// (faithful; measured: about 9% of results one ulp off, none more),
// overflow to +Inf above 88.72, underflow gradually to 0 below -87.3, and NaN stays
// NaN (the clamps keep a NaN operand: VMAXPS/VMINPS return their second source).
//
// If corr is not nil it is a small correction added to x after range reduction
// (exp(x+corr) with x+corr not representable), e.g. the rounding error of x = v-m.
func exp8(x, y VecVirtual, corr ...VecVirtual) {
	lim := YMM()
	VMOVUPS(vconstF("exp_lo", -104), lim)
	VMAXPS(x, lim, x)
	VMOVUPS(vconstF("exp_hi", 89), lim)
	VMINPS(x, lim, x)
	n := YMM()
	VMULPS(vconstF("exp_log2e", 1.44269504088896341), x, n)
	VROUNDPS(U8(0), n, n) // nearest
	VFNMADD231PS(vconstF("exp_c1", 0.693359375), n, x)
	VFNMADD231PS(vconstF("exp_c2", -2.12194440e-4), n, x) // x = r
	for _, c := range corr {
		VADDPS(c, x, x)
	}
	VMOVUPS(vconstF("exp_p0", expPoly[0]), y)
	for i := 1; i < 6; i++ {
		VFMADD213PS(vconstF(fmt.Sprintf("exp_p%d", i), expPoly[i]), x, y) // y = y*r + p[i]
	}
	r2 := YMM()
	VMULPS(x, x, r2)
	VFMADD213PS(x, r2, y) // y = y*r² + r
	VADDPS(vconstF("f32_one", 1), y, y)
	ni, n1 := YMM(), YMM()
	VCVTPS2DQ(n, ni)
	VPSRAD(U8(1), ni, n1)
	VPSUBD(n1, ni, ni)
	VPADDD(vconst("exp_bias", 127), n1, n1)
	VPADDD(vconst("exp_bias", 127), ni, ni)
	VPSLLD(U8(23), n1, n1)
	VPSLLD(U8(23), ni, ni)
	VMULPS(n1, y, y)
	VMULPS(ni, y, y)
}

// expN returns exp(x[k] + corr[k]) for each k (x and corr are clobbered), with
// the polynomial of exp8 and every instruction emitted for all lanes in turn. lo
// and hi hold the clamps of exp8 (-104 and 89).
func expN(x, corr []VecVirtual, lo, hi VecVirtual) []VecVirtual {
	L := len(x)
	n, y := make([]VecVirtual, L), make([]VecVirtual, L)
	for k := range x {
		VMAXPS(x[k], lo, x[k]) // a NaN x stays NaN: the second source is kept
		VMINPS(x[k], hi, x[k])
	}
	for k := range x {
		n[k] = YMM()
		VMULPS(vconstF("exp_log2e", 1.44269504088896341), x[k], n[k])
	}
	for k := range x {
		VROUNDPS(U8(0), n[k], n[k]) // nearest
	}
	for k := range x {
		VFNMADD231PS(vconstF("exp_c1", 0.693359375), n[k], x[k])
	}
	for k := range x {
		VFNMADD231PS(vconstF("exp_c2", -2.12194440e-4), n[k], x[k])
	}
	for k := range x {
		VADDPS(corr[k], x[k], x[k]) // r
	}
	for k := range x {
		y[k] = YMM()
		VMOVUPS(vconstF("exp_p0", expPoly[0]), y[k])
	}
	for i := 1; i < 6; i++ {
		for k := range x {
			VFMADD213PS(vconstF(fmt.Sprintf("exp_p%d", i), expPoly[i]), x[k], y[k])
		}
	}
	for k := range x {
		r2 := YMM()
		VMULPS(x[k], x[k], r2)
		VFMADD213PS(x[k], r2, y[k]) // y = y*r² + r
	}
	for k := range x {
		VADDPS(vconstF("f32_one", 1), y[k], y[k])
	}
	for k := 0; k < L; k++ {
		VCVTPS2DQ(n[k], n[k])
		n1 := YMM()
		VPSRAD(U8(1), n[k], n1)
		VPSUBD(n1, n[k], n[k])
		VPADDD(vconst("exp_bias", 127), n1, n1)
		VPADDD(vconst("exp_bias", 127), n[k], n[k])
		VPSLLD(U8(23), n1, n1)
		VPSLLD(U8(23), n[k], n[k])
		VMULPS(n1, y[k], y[k])
		VMULPS(n[k], y[k], y[k])
	}
	return y
}

func genExp() {
	text("expSubF32AVX2", NOSPLIT, "func(dst, x *float32, n int, m float32) float64")
	Doc("expSubF32AVX2 sets dst[i] = exp(x[i]-m) for i < n&^7 (the difference taken",
		"exactly, float32 exp within 1 ulp of the correctly rounded value) and returns",
		"their sum accumulated in float64; dst may be x:",
		"",
		"\tfor i := 0; i < n&^7; i++ {",
		"\t\te := float32(math.Exp(float64(x[i]) - float64(m)))",
		"\t\tdst[i] = e",
		"\t\ts += float64(e)",
		"\t}")
	{
		dst, x, n := loadPtr("dst"), loadPtr("x"), Load(Param("n"), GP64())
		ANDQ(I32(-8), n)
		m := bcastF32("m")
		negm, lo, hi := YMM(), YMM(), YMM()
		VXORPS(vconst("f32_sign", 0x80000000), m, negm)
		VMOVUPS(vconstF("exp_lo", -104), lo)
		VMOVUPS(vconstF("exp_hi", 89), hi)
		s0, s1 := YMM(), YMM()
		VXORPD(s0, s0, s0)
		VXORPD(s1, s1, s1)
		n2 := GP64()
		MOVQ(n, n2)
		ANDQ(I32(-16), n2)
		i := GP64()
		XORQ(i, i)
		// Two vectors per iteration, every step emitted for both: the exp is a
		// long dependency chain, and interleaving keeps the FP pipes busy.
		body := func(lanes int) {
			var d, e1 []VecVirtual
			for k := 0; k < lanes; k++ {
				v, dk, bb, ek := YMM(), YMM(), YMM(), YMM()
				xm := Mem{Base: x, Index: i, Scale: 4, Disp: 32 * k}
				VMOVUPS(xm, v)
				// d = v - m rounded, plus its exact error (TwoSum), zeroed when not
				// finite (v = -Inf must still give exactly 0).
				VSUBPS(m, v, dk)
				VSUBPS(v, dk, bb)  // bb = d - v
				VSUBPS(bb, dk, ek) // d - bb
				VSUBPS(ek, v, ek)  // v - (d - bb)
				VSUBPS(bb, negm, bb)
				VADDPS(bb, ek, ek)
				VCMPPS(U8(7), ek, ek, bb) // ordered: not NaN
				VANDPS(bb, ek, ek)
				d, e1 = append(d, dk), append(e1, ek)
			}
			ys := expN(d, e1, lo, hi)
			for k, y := range ys {
				VMOVUPS(y, Mem{Base: dst, Index: i, Scale: 4, Disp: 32 * k})
				w := YMM()
				VCVTPS2PD(y.AsX(), w)
				VADDPD(w, s0, s0)
				VEXTRACTF128(U8(1), y, y.AsX())
				VCVTPS2PD(y.AsX(), w)
				VADDPD(w, s1, s1)
			}
		}
		Label("expsub_loop2")
		CMPQ(i, n2)
		JGE(LabelRef("expsub_loop1"))
		body(2)
		ADDQ(U8(16), i)
		JMP(LabelRef("expsub_loop2"))
		Label("expsub_loop1")
		CMPQ(i, n)
		JGE(LabelRef("expsub_done"))
		body(1)
		ADDQ(U8(8), i)
		Label("expsub_done")
		reduceF64(s0, s1)
	}

	text("siluMulF32AVX2", NOSPLIT, "func(dst, gate, up *float32, n int)")
	Doc("siluMulF32AVX2 is SiLUMulF32 over the first n&^7 elements, with a float32 exp",
		"within 1 ulp:",
		"",
		"\tfor i := 0; i < n&^7; i++ {",
		"\t\tg := gate[i]",
		"\t\tdst[i] = g / (1 + float32(math.Exp(float64(-g)))) * up[i]",
		"\t}")
	{
		dst, gate, up := loadPtr("dst"), loadPtr("gate"), loadPtr("up")
		n := Load(Param("n"), GP64())
		ANDQ(I32(-8), n)
		i := GP64()
		XORQ(i, i)
		Label("silu_loop")
		CMPQ(i, n)
		JGE(LabelRef("silu_done"))
		g, x, e := YMM(), YMM(), YMM()
		VMOVUPS(Mem{Base: gate, Index: i, Scale: 4}, g)
		VXORPS(vconst("f32_sign", 0x80000000), g, x)
		exp8(x, e)
		VADDPS(vconstF("f32_one", 1), e, e)
		VDIVPS(e, g, g)
		VMULPS(Mem{Base: up, Index: i, Scale: 4}, g, g)
		VMOVUPS(g, Mem{Base: dst, Index: i, Scale: 4})
		ADDQ(U8(8), i)
		JMP(LabelRef("silu_loop"))
		Label("silu_done")
		VZEROUPPER()
		RET()
	}
}

// reduceF64 adds the lanes of two float64 accumulators and returns the sum.
func reduceF64(s0, s1 VecVirtual) {
	VADDPD(s1, s0, s0)
	x := XMM()
	VEXTRACTF128(U8(1), s0, x)
	VADDPD(s0.AsX(), x, x)
	y := XMM()
	VPERMILPD(U8(1), x, y)
	VADDSD(y, x, x)
	VZEROUPPER()
	Store(x, ReturnIndex(0))
	RET()
}

// ---------------------------------------------------------------- layer norm

func genNorm() {
	text("sumF64AVX2", NOSPLIT, "func(x *float32, n int) float64")
	Doc("sumF64AVX2 returns Σ float64(x[i]) for i < n&^7:",
		"",
		"\tfor i := 0; i < n&^7; i++ {",
		"\t\ts += float64(x[i])",
		"\t}")
	{
		x, n := loadPtr("x"), Load(Param("n"), GP64())
		ANDQ(I32(-8), n)
		s0, s1 := YMM(), YMM()
		VXORPD(s0, s0, s0)
		VXORPD(s1, s1, s1)
		i := GP64()
		XORQ(i, i)
		Label("sum_loop")
		CMPQ(i, n)
		JGE(LabelRef("sum_done"))
		d0, d1 := YMM(), YMM()
		VCVTPS2PD(Mem{Base: x, Index: i, Scale: 4}, d0)
		VCVTPS2PD(Mem{Base: x, Index: i, Scale: 4, Disp: 16}, d1)
		VADDPD(d0, s0, s0)
		VADDPD(d1, s1, s1)
		ADDQ(U8(8), i)
		JMP(LabelRef("sum_loop"))
		Label("sum_done")
		reduceF64(s0, s1)
	}

	text("sqDevF64AVX2", NOSPLIT, "func(x *float32, n int, mean float64) float64")
	Doc("sqDevF64AVX2 returns Σ (float64(x[i]) - mean)² for i < n&^7:",
		"",
		"\tfor i := 0; i < n&^7; i++ {",
		"\t\td := float64(x[i]) - mean",
		"\t\ts += d * d",
		"\t}")
	{
		x, n := loadPtr("x"), Load(Param("n"), GP64())
		ANDQ(I32(-8), n)
		mx := Load(Param("mean"), XMM())
		mean := YMM()
		VBROADCASTSD(mx, mean)
		s0, s1 := YMM(), YMM()
		VXORPD(s0, s0, s0)
		VXORPD(s1, s1, s1)
		i := GP64()
		XORQ(i, i)
		Label("sqdev_loop")
		CMPQ(i, n)
		JGE(LabelRef("sqdev_done"))
		d0, d1 := YMM(), YMM()
		VCVTPS2PD(Mem{Base: x, Index: i, Scale: 4}, d0)
		VCVTPS2PD(Mem{Base: x, Index: i, Scale: 4, Disp: 16}, d1)
		VSUBPD(mean, d0, d0)
		VSUBPD(mean, d1, d1)
		VFMADD231PD(d0, d0, s0)
		VFMADD231PD(d1, d1, s1)
		ADDQ(U8(8), i)
		JMP(LabelRef("sqdev_loop"))
		Label("sqdev_done")
		reduceF64(s0, s1)
	}

	text("lnApplyAVX2", NOSPLIT, "func(dst, x, gamma *float32, n int, mean, rstd float64)")
	Doc("lnApplyAVX2 normalises the first n&^7 elements, bit-exact with the Go loop:",
		"",
		"\tfor i := 0; i < n&^7; i++ {",
		"\t\tdst[i] = float32((float64(x[i])-mean)*rstd) * gamma[i]",
		"\t}")
	{
		dst, x, gamma := loadPtr("dst"), loadPtr("x"), loadPtr("gamma")
		n := Load(Param("n"), GP64())
		ANDQ(I32(-8), n)
		mean, rstd := YMM(), YMM()
		VBROADCASTSD(Load(Param("mean"), XMM()), mean)
		VBROADCASTSD(Load(Param("rstd"), XMM()), rstd)
		i := GP64()
		XORQ(i, i)
		Label("lnapply_loop")
		CMPQ(i, n)
		JGE(LabelRef("lnapply_done"))
		d0, d1 := YMM(), YMM()
		VCVTPS2PD(Mem{Base: x, Index: i, Scale: 4}, d0)
		VCVTPS2PD(Mem{Base: x, Index: i, Scale: 4, Disp: 16}, d1)
		VSUBPD(mean, d0, d0)
		VSUBPD(mean, d1, d1)
		VMULPD(rstd, d0, d0)
		VMULPD(rstd, d1, d1)
		f0, f1 := XMM(), XMM()
		VCVTPD2PSY(d0, f0)
		VCVTPD2PSY(d1, f1)
		o := YMM()
		VINSERTF128(U8(1), f1, f0.AsY(), o)
		VMULPS(Mem{Base: gamma, Index: i, Scale: 4}, o, o)
		VMOVUPS(o, Mem{Base: dst, Index: i, Scale: 4})
		ADDQ(U8(8), i)
		JMP(LabelRef("lnapply_loop"))
		Label("lnapply_done")
		VZEROUPPER()
		RET()
	}
}

// ---------------------------------------------------------------- matvec, x·wᵀ

// mvTRows is the number of weight rows a decode MatMulT kernel handles at once for
// T tokens: R·T accumulators, T activation vectors and one weight vector fit in 16.
var mvTRows = [5]int{0, 2, 4, 4, 2} // measured: few row streams, x kept in registers

func genMvT(dt dtype, T, R int) {
	name := fmt.Sprintf("mvT%s_%dx%d", dt.name, T, R)
	text(name, NOSPLIT, "func(dst *float32, ldd int, x *float32, ldx int, w *byte, ldw int, k int)")
	Doc(fmt.Sprintf("%s computes %d token(s) x %d weight row(s) of dst = x·wᵀ over k&^7 columns:", name, T, R),
		"",
		fmt.Sprintf("\tfor t := 0; t < %d; t++ {", T),
		fmt.Sprintf("\t\tfor r := 0; r < %d; r++ {", R),
		"\t\t\tvar s float32",
		"\t\t\tfor i := 0; i < k&^7; i++ {",
		fmt.Sprintf("\t\t\t\ts += x[t*ldx+i] * %s", fmt.Sprintf(wExpr(dt), "r*ldw+i")),
		"\t\t\t}",
		"\t\t\tdst[t*ldd+r] = s",
		"\t\t}",
		"\t}")
	x, w := loadPtr("x"), loadPtr("w")
	ldx, ldw := Load(Param("ldx"), GP64()), Load(Param("ldw"), GP64())
	k := Load(Param("k"), GP64())
	ANDQ(I32(-8), k)
	SHLQ(U8(2), ldx)
	if dt.size == 4 {
		SHLQ(U8(2), ldw)
	} else {
		SHLQ(U8(1), ldw)
	}
	xs, ws := stridePtrs(x, ldx, T), stridePtrs(w, ldw, R)
	// With few rows the FMA latency would bound the loop: give each unrolled step
	// its own accumulators (A sets, summed at the end) while registers allow.
	U := 64 / (8 * dt.size)
	A := 1
	for A < U && 2*A*R*T+T+1 <= 16 {
		A *= 2
	}
	accs := zeroAccs(A, R, T)
	acc := accs[0]
	xInRegs := R*T*A+T+1 <= 16
	i := GP64()
	XORQ(i, i)
	// The main loop reads a whole cache line (64 bytes) of every weight row per
	// iteration, so the R row streams advance in line-sized steps; a second loop
	// finishes the last k%(8U) columns 8 at a time.
	kU := GP64()
	MOVQ(k, kU)
	ANDQ(I32(-8*U), kU)
	step := func(u int) {
		acc := accs[u%A]
		xm := func(t int) Mem { return Mem{Base: xs[t], Index: i, Scale: 4, Disp: 32 * u} }
		wm := func(r int) Mem { return Mem{Base: ws[r], Index: i, Scale: uint8(dt.size), Disp: 8 * dt.size * u} }
		var xv []VecVirtual
		if xInRegs {
			for t := 0; t < T; t++ {
				v := YMM()
				VMOVUPS(xm(t), v)
				xv = append(xv, v)
			}
		}
		for r := 0; r < R; r++ {
			if xInRegs && dt.size == 4 {
				for t := 0; t < T; t++ {
					VFMADD231PS(wm(r), xv[t], acc[r][t])
				}
				continue
			}
			wv := YMM()
			widen(dt, wm(r), wv)
			for t := 0; t < T; t++ {
				if xInRegs {
					VFMADD231PS(xv[t], wv, acc[r][t])
				} else {
					VFMADD231PS(xm(t), wv, acc[r][t])
				}
			}
		}
	}
	// Software prefetch: the next R rows (the next call's block, contiguous when
	// ldw == k) are fetched R lines per iteration, i.e. over the whole loop. The
	// hardware streamers stop at 4 KiB pages; this keeps DRAM busy across them.
	pf := GP64()
	IMUL3Q(U32(pfBlocks*R), ldw, pf)
	ADDQ(ws[0], pf)
	loop, loop1, done := name+"_loop", name+"_loop1", name+"_done"
	Label(loop)
	CMPQ(i, kU)
	JGE(LabelRef(loop1))
	for r := 0; r < R; r++ {
		// A single token streams each row once: non-temporal. Several tokens take
		// a row's lines several times over the call (and the token groups of a row
		// block take them again): into L1 and L2 (measured: ~10% faster at T=4-16).
		if T > 1 {
			PREFETCHT0(Mem{Base: pf, Disp: 64 * r})
		} else {
			PREFETCHNTA(Mem{Base: pf, Disp: 64 * r})
		}
	}
	ADDQ(U32(64*R), pf)
	for u := 0; u < U; u++ {
		step(u)
	}
	ADDQ(U8(8*U), i)
	JMP(LabelRef(loop))
	Label(loop1)
	CMPQ(i, k)
	JGE(LabelRef(done))
	step(0)
	ADDQ(U8(8), i)
	JMP(LabelRef(loop1))
	Label(done)
	for a := 1; a < A; a++ {
		for r := 0; r < R; r++ {
			for t := 0; t < T; t++ {
				VADDPS(accs[a][r][t], acc[r][t], acc[r][t])
			}
		}
	}
	dst := loadPtr("dst")
	ldd := Load(Param("ldd"), GP64())
	SHLQ(U8(2), ldd)
	for t := 0; t < T; t++ {
		for r := 0; r < R; r++ {
			hsumStore(acc[r][t], Mem{Base: dst, Disp: 4 * r})
		}
		if t+1 < T {
			ADDQ(ldd, dst)
		}
	}
	VZEROUPPER()
	RET()
}

// stridePtrs returns n registers addressing base, base+ld, base+2·ld, ….
func stridePtrs(base, ld Register, n int) []Register {
	ps := []Register{base}
	for i := 1; i < n; i++ {
		p := GP64()
		LEAQ(Mem{Base: ps[i-1], Index: ld, Scale: 1}, p)
		ps = append(ps, p)
	}
	return ps
}

// zeroAccs allocates A sets of R×T zeroed accumulator vectors.
func zeroAccs(A, R, T int) [][][]VecVirtual {
	accs := make([][][]VecVirtual, A)
	for a := range accs {
		accs[a] = make([][]VecVirtual, R)
		for r := range accs[a] {
			accs[a][r] = make([]VecVirtual, T)
			for t := range accs[a][r] {
				accs[a][r][t] = YMM()
				VXORPS(accs[a][r][t], accs[a][r][t], accs[a][r][t])
			}
		}
	}
	return accs
}

// zeroAccPairs allocates A sets of n zeroed pairs of accumulator vectors (the two
// halves of a 16-wide row of outputs).
func zeroAccPairs(A, n int) [][][2]VecVirtual {
	accs := make([][][2]VecVirtual, A)
	for a := range accs {
		accs[a] = make([][2]VecVirtual, n)
		for i := range accs[a] {
			for h := range 2 {
				accs[a][i][h] = YMM()
				VXORPS(accs[a][i][h], accs[a][i][h], accs[a][i][h])
			}
		}
	}
	return accs
}

// wExpr is the Go expression (with %s for the element index) of one widened weight.
func wExpr(dt dtype) string {
	switch dt.name {
	case "BF16":
		return "bf16(w[%s])"
	case "F16":
		return "f16(w[%s])"
	}
	return "w[%s]"
}

// ---------------------------------------------------------------- matvec, x·w

// mvRRows is the number of weight rows the row-streaming MatMulN decode kernel
// combines per pass, per dtype (F32, BF16, F16) and T tokens (the T·rows
// broadcasts of x stay in registers when they fit; beyond, they are reloaded from
// memory, which is cheap). A single token over f16 weights takes one row per
// pass: the weights are then read strictly in order, which the hardware
// prefetchers stream better than 8 adjacent rows (measured: ~0.65 of a plain read
// against ~0.55); bf16 takes one row per pass too, or 4 rows from 4 far-apart
// streams (matvecN), faster still; f32 rows are twice as long per dst element,
// and one row per pass would spend the time on dst loads and stores, so f32 keeps 8.
var mvRRows = [3][5]int{{0, 8, 4, 8, 8}, {0, 4, 4, 8, 8}, {0, 1, 4, 8, 8}}

func dtIndex(dt dtype) int {
	switch dt.name {
	case "BF16":
		return 1
	case "F16":
		return 2
	}
	return 0
}

// rowMem addresses row i of a matrix whose rows are ld bytes apart, given base
// registers for rows 0, 3, 6, … (three rows per base, through the index scale).
func rowMem(bases []Register, ld Register, i, disp int) Mem {
	m := Mem{Base: bases[i/3], Disp: disp}
	if i%3 != 0 {
		m.Index, m.Scale = ld, uint8(i%3)
	}
	return m
}

// rowBases returns the base registers of rowMem for rows [0, rows) starting at p.
func rowBases(p, ld Register, rows int) []Register {
	b := []Register{p}
	for q := 1; q*3 < rows; q++ {
		r := GP64()
		LEAQ(Mem{Base: b[q-1], Index: ld, Scale: 2}, r)
		ADDQ(ld, r)
		b = append(b, r)
	}
	return b
}

// genMvR emits the row-streaming x·w decode kernel: kr weight rows (ldw bytes
// apart: consecutive rows, or one from each of kr streams) are read contiguously
// across n columns and their contributions added to dst, which stays in L1 (its
// row strip) across calls; every row prefetches its line pfd bytes ahead. Columns
// go 16 at a time, the T×16 block of dst in registers across the kr rows. bf16 is
// widened as in the pair kernels (a shift gives the even columns of a chunk, a mask
// the odd ones, no shuffle), so for bf16 dst holds every whole 16-column chunk in
// pair order (its 8 even columns, then its 8 odd ones; see pairPos) and a last
// 8-column block in natural order; f16 is widened by VCVTPH2PS, f32 not at all (FMA
// from memory).
func genMvR(dt dtype, T, kr int) {
	name := fmt.Sprintf("mvR%s_%dx%d", dt.name, T, kr)
	text(name, NOSPLIT, "func(dst *float32, ldd int, x *float32, ldx int, w *byte, ldw int, n int, acc int, pfd int)")
	Doc(fmt.Sprintf("%s adds %d weight row(s) times %d token(s) to dst over n&^7 columns,", name, kr, T),
		"prefetching in every row the line pfd bytes ahead:",
		"",
		fmt.Sprintf("\tfor t := 0; t < %d; t++ {", T),
		"\t\tfor j := 0; j < n&^7; j++ {",
		fmt.Sprintf("\t\t\tp := %s // where column j is kept in dst", map[bool]string{true: "pairPos(j, n&^7)", false: "j"}[dt.name == "BF16"]),
		"\t\t\tvar s float32",
		"\t\t\tif acc != 0 {",
		"\t\t\t\ts = dst[t*ldd+p]",
		"\t\t\t}",
		fmt.Sprintf("\t\t\tfor i := 0; i < %d; i++ {", kr),
		fmt.Sprintf("\t\t\t\ts += x[t*ldx+i] * %s", fmt.Sprintf(wExpr(dt), "i*ldw+j")),
		"\t\t\t}",
		"\t\t\tdst[t*ldd+p] = s",
		"\t\t}",
		"\t}")
	es := dt.size
	x := loadPtr("x")
	ldx := Load(Param("ldx"), GP64())
	SHLQ(U8(2), ldx)
	xb := rowBases(x, ldx, T)
	chains := 1
	if T == 1 && kr >= 2 {
		chains = 2
	}
	// x stays in registers if they hold it beside the 2·T·chains accumulators,
	// the zero and two widened weight vectors.
	xInRegs := T*kr+2*T*chains+3 <= 16
	var bx [][]VecVirtual
	if xInRegs {
		bx = make([][]VecVirtual, T)
		for t := 0; t < T; t++ {
			for i := 0; i < kr; i++ {
				r := YMM()
				VBROADCASTSS(rowMem(xb, ldx, t, 4*i), r)
				bx[t] = append(bx[t], r)
			}
		}
	}
	w := loadPtr("w")
	ldw := Load(Param("ldw"), GP64())
	if es == 4 {
		SHLQ(U8(2), ldw)
	} else {
		SHLQ(U8(1), ldw)
	}
	pf := Load(Param("pfd"), GP64())
	ADDQ(w, pf)
	wb := rowBases(w, ldw, kr)
	dp := loadPtr("dst")
	ldd := Load(Param("ldd"), GP64())
	SHLQ(U8(2), ldd)
	db := rowBases(dp, ldd, T)
	n := Load(Param("n"), GP64())
	ANDQ(I32(-8), n)
	flag := Load(Param("acc"), GP64())
	var mask VecVirtual
	if dt.name == "BF16" {
		mask = YMM()
		VBROADCASTSS(vconst("bf16_odd", 0xFFFF0000), mask)
	}
	xv := func(t, i int) VecVirtual {
		if xInRegs {
			return bx[t][i]
		}
		r := YMM()
		VBROADCASTSS(rowMem(xb, ldx, t, 4*i), r)
		return r
	}
	advance := func(wBytes int) {
		for _, b := range wb {
			ADDQ(U32(wBytes), b)
		}
		for _, b := range db {
			ADDQ(U32(wBytes/es*4), b)
		}
		ADDQ(U32(wBytes), pf)
	}
	// step16 handles 16 columns at byte offset off of the weight rows (off/es·4 of
	// dst); bf16 keeps them in dst in pair order (see the doc comment).
	step16 := func(off int, accumulate bool) {
		doff := off / es * 4
		acc := make([][2][]VecVirtual, T)
		for t := 0; t < T; t++ {
			for h := 0; h < 2; h++ {
				acc[t][h] = make([]VecVirtual, chains)
				for c := range acc[t][h] {
					acc[t][h][c] = YMM()
				}
			}
			if accumulate {
				VMOVUPS(rowMem(db, ldd, t, doff), acc[t][0][0])
				VMOVUPS(rowMem(db, ldd, t, doff+32), acc[t][1][0])
			}
		}
		for i := 0; i < kr; i++ {
			c := i % chains
			first := i < chains && !(accumulate && c == 0)
			var wv [2]Op
			switch dt.name {
			case "BF16":
				// A 32-bit lane holds a pair of columns: the even one widens by a
				// shift, the odd one by masking off the low half.
				ev, od := YMM(), YMM()
				VMOVDQU(rowMem(wb, ldw, i, off), od)
				VPSLLD(U8(16), od, ev)
				VPAND(mask, od, od)
				wv = [2]Op{ev, od}
			case "F16":
				lo, hi := YMM(), YMM()
				VCVTPH2PS(rowMem(wb, ldw, i, off), lo)
				VCVTPH2PS(rowMem(wb, ldw, i, off+16), hi)
				wv = [2]Op{lo, hi}
			default:
				wv = [2]Op{rowMem(wb, ldw, i, off), rowMem(wb, ldw, i, off+32)}
			}
			for t := 0; t < T; t++ {
				xr := xv(t, i)
				for h := 0; h < 2; h++ {
					if first {
						VMULPS(wv[h], xr, acc[t][h][c])
					} else {
						VFMADD231PS(wv[h], xr, acc[t][h][c])
					}
				}
			}
		}
		for t := 0; t < T; t++ {
			for h := 0; h < 2; h++ {
				for c := 1; c < chains && c < kr; c++ {
					VADDPS(acc[t][h][c], acc[t][h][0], acc[t][h][0])
				}
			}
			VMOVUPS(acc[t][0][0], rowMem(db, ldd, t, doff))
			VMOVUPS(acc[t][1][0], rowMem(db, ldd, t, doff+32))
		}
	}
	// step8 handles the last 8 columns in natural order.
	step8 := func(accumulate bool) {
		acc := make([]VecVirtual, T)
		for t := range acc {
			acc[t] = YMM()
			if accumulate {
				VMOVUPS(rowMem(db, ldd, t, 0), acc[t])
			}
		}
		for i := 0; i < kr; i++ {
			wv := YMM()
			widen(dt, rowMem(wb, ldw, i, 0), wv)
			for t := 0; t < T; t++ {
				if i == 0 && !accumulate {
					VMULPS(wv, xv(t, i), acc[t])
				} else {
					VFMADD231PS(wv, xv(t, i), acc[t])
				}
			}
		}
		for t := range acc {
			VMOVUPS(acc[t], rowMem(db, ldd, t, 0))
		}
	}
	steps := 64 / (16 * es) // 16-column steps per 64-byte line of each row
	emit := func(tag string, accumulate bool) {
		main, one, tail := name+tag+"_main", name+tag+"_16", name+tag+"_8"
		Label(main)
		CMPQ(n, U32(16*steps))
		JL(LabelRef(one))
		for i := 0; i < kr; i++ {
			PREFETCHT0(Mem{Base: pf})
			if i+1 < kr {
				ADDQ(ldw, pf)
			}
		}
		if kr > 1 {
			t := GP64()
			IMUL3Q(U32(kr-1), ldw, t)
			SUBQ(t, pf)
		}
		for u := 0; u < steps; u++ {
			step16(16*es*u, accumulate)
		}
		advance(64)
		SUBQ(U32(16*steps), n)
		JMP(LabelRef(main))
		Label(one)
		if steps > 1 {
			CMPQ(n, U8(16))
			JL(LabelRef(tail))
			step16(0, accumulate)
			advance(16 * es)
			SUBQ(U8(16), n)
			JMP(LabelRef(one))
		}
		Label(tail)
		TESTQ(n, n)
		JZ(LabelRef(name + "_done"))
		step8(accumulate)
		JMP(LabelRef(name + "_done"))
	}
	TESTQ(flag, flag)
	JZ(LabelRef(name + "_set"))
	emit("_acc", true)
	Label(name + "_set")
	emit("_set", false)
	Label(name + "_done")
	VZEROUPPER()
	RET()
}

// pfBlocks is how many row blocks ahead the MatMulT decode kernels prefetch.
const pfBlocks = 1

// ---------------------------------------------------------------- matvec, x·wᵀ over pair-permuted x

// mvTPRows is the number of weight rows a bf16 pair kernel handles at once for T
// tokens (index T).
var mvTPRows = [9]int{0, 4, 4, 3, 2, 2, 2, 1, 1}

// genMvTP emits the bf16 x·wᵀ decode kernel over pair-permuted activations: 16
// weights (32 bytes, 8 pairs of adjacent columns) are loaded once, the even
// columns widened by a 16-bit left shift of each pair and the odd ones by masking
// off its low half, with no shuffle. The caller permutes x to match (every
// 16-column chunk as its 8 even columns, then its 8 odd ones; see permutePairs):
// the order of the terms of a dot product is free. The R rows may lie anywhere
// (row stride ldw, dst stride lds), so that they can come from R separate
// streams through memory; each row prefetches its own line pfd bytes ahead.
func genMvTP(T, R int) {
	name := fmt.Sprintf("mvTPBF16_%dx%d", T, R)
	text(name, NOSPLIT, "func(dst *float32, ldd int, lds int, x *float32, ldx int, w *byte, ldw int, k int, pfd int)")
	Doc(fmt.Sprintf("%s computes %d token(s) x %d bf16 weight row(s) of dst = x·wᵀ over k&^15", name, T, R),
		"columns, x pair-permuted (permutePairs); every 32 columns it prefetches, in each row,",
		"the line pfd bytes ahead:",
		"",
		fmt.Sprintf("\tfor t := 0; t < %d; t++ {", T),
		fmt.Sprintf("\t\tfor r := 0; r < %d; r++ {", R),
		"\t\t\tvar s float32",
		"\t\t\tfor c := 0; c < k&^15; c += 16 {",
		"\t\t\t\tfor j := 0; j < 8; j++ {",
		"\t\t\t\t\ts += x[t*ldx+c+j]*bf16(w[r*ldw+c+2*j]) + x[t*ldx+c+8+j]*bf16(w[r*ldw+c+2*j+1])",
		"\t\t\t\t}",
		"\t\t\t}",
		"\t\t\tdst[t*ldd+r*lds] = s",
		"\t\t}",
		"\t}")
	x, w := loadPtr("x"), loadPtr("w")
	ldx, ldw := Load(Param("ldx"), GP64()), Load(Param("ldw"), GP64())
	k := Load(Param("k"), GP64())
	ANDQ(I32(-16), k)
	SHLQ(U8(2), ldx)
	SHLQ(U8(1), ldw)
	xs, ws := stridePtrs(x, ldx, T), stridePtrs(w, ldw, R)
	// Registers: the mask, a loaded and a widened weight vector, R·T accumulators
	// (A sets of them while that leaves room for the activations of every token,
	// so that short FMA chains do not bound the loop), then as many of the 2T
	// activation vectors of a step as fit; the others are FMA memory operands.
	A := 1
	for A < 2 && 2*A*R*T+2*T+3 <= 16 {
		A *= 2
	}
	nx := min(2*T, 16-3-A*R*T)
	mask := YMM()
	VBROADCASTSS(vconst("bf16_odd", 0xFFFF0000), mask)
	accs := zeroAccs(A, R, T)
	i := GP64()
	XORQ(i, i)
	kU := GP64()
	MOVQ(k, kU)
	ANDQ(I32(-32), kU)
	// step handles 16 columns at i+16u: half h = 0 the even columns, 1 the odd.
	step := func(u int) {
		xm := func(t, h int) Mem { return Mem{Base: xs[t], Index: i, Scale: 4, Disp: 64*u + 32*h} }
		wm := func(r int) Mem { return Mem{Base: ws[r], Index: i, Scale: 2, Disp: 32 * u} }
		xr := map[[2]int]VecVirtual{}
		for j := 0; j < nx; j++ {
			t, h := j/2, j%2
			v := YMM()
			VMOVUPS(xm(t, h), v)
			xr[[2]int{t, h}] = v
		}
		for r := 0; r < R; r++ {
			raw, ev := YMM(), YMM()
			VMOVDQU(wm(r), raw)
			VPSLLD(U8(16), raw, ev)
			VPAND(mask, raw, raw)
			for h, wv := range [2]VecVirtual{ev, raw} {
				acc := accs[(2*u+h)%A]
				for t := 0; t < T; t++ {
					if v, ok := xr[[2]int{t, h}]; ok {
						VFMADD231PS(v, wv, acc[r][t])
					} else {
						VFMADD231PS(xm(t, h), wv, acc[r][t])
					}
				}
			}
		}
	}
	// pf runs pfd bytes ahead of the column position (2i bytes) in every row.
	pf := Load(Param("pfd"), GP64())
	loop, loop1, done := name+"_loop", name+"_loop1", name+"_done"
	Label(loop)
	CMPQ(i, kU)
	JGE(LabelRef(loop1))
	for r := 0; r < R; r++ {
		// A single token streams each row once: non-temporal. Several tokens take
		// a row's lines several times over (the token groups of a row block):
		// into L1 and L2.
		m := Mem{Base: ws[r], Index: pf, Scale: 1}
		if T > 1 {
			PREFETCHT0(m)
		} else {
			PREFETCHNTA(m)
		}
	}
	ADDQ(U8(64), pf)
	step(0)
	step(1)
	ADDQ(U8(32), i)
	JMP(LabelRef(loop))
	Label(loop1)
	CMPQ(i, k)
	JGE(LabelRef(done))
	step(0)
	Label(done)
	acc := accs[0]
	for a := 1; a < A; a++ {
		for r := 0; r < R; r++ {
			for t := 0; t < T; t++ {
				VADDPS(accs[a][r][t], acc[r][t], acc[r][t])
			}
		}
	}
	// dst of row r: rd[r] = dst + r·lds floats, advanced by ldd floats per token.
	ldd, lds := Load(Param("ldd"), GP64()), Load(Param("lds"), GP64())
	SHLQ(U8(2), ldd)
	SHLQ(U8(2), lds)
	rd := []Register{loadPtr("dst")}
	for r := 1; r < R; r++ {
		rd = append(rd, GP64())
		LEAQ(Mem{Base: rd[r-1], Index: lds, Scale: 1}, rd[r])
	}
	for t := 0; t < T; t++ {
		row := make([]VecVirtual, R)
		for r := range row {
			row[r] = acc[r][t]
		}
		hsumRows(row, rd)
		if t+1 < T {
			for _, p := range rd {
				ADDQ(ldd, p)
			}
		}
	}
	VZEROUPPER()
	RET()
}

// hsumRows reduces each of up to 4 accumulators to the float32 sum of its 8 lanes
// and stores sum r at (rd[r]): horizontal adds of pairs of accumulators, then of
// those, so that the reductions share instructions.
func hsumRows(acc []VecVirtual, rd []Register) {
	if len(acc) == 1 {
		hsumStore(acc[0], Mem{Base: rd[0]})
		return
	}
	h := YMM()
	VHADDPS(acc[1], acc[0], h) // [a0 01, a0 23, a1 01, a1 23 | the same of columns 4-7]
	if len(acc) > 2 {
		h2 := YMM()
		VHADDPS(acc[len(acc)-1], acc[2], h2)
		VHADDPS(h2, h, h) // [a0 0-3, a1 0-3, a2 0-3, a3 0-3 | columns 4-7]
	} else {
		VHADDPS(h, h, h)
	}
	x := XMM()
	VEXTRACTF128(U8(1), h, x)
	VADDPS(h.AsX(), x, x)
	VMOVSS(x, Mem{Base: rd[0]})
	for r := 1; r < len(acc); r++ {
		VEXTRACTPS(U8(r), x, Mem{Base: rd[r]})
	}
}
