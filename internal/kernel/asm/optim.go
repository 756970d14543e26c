package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// genAdamW emits the AdamW element update in the two forms of PyTorch's at::lerp
// (weight < 0.5: m + w·(g − m); else g − (g − m)·(1 − w)). Every operation is a
// separate IEEE multiply, add, subtract, square root or divide in the order of
// AdamWF32's Go twin (no fused multiply-add), so results are bit-identical to it.
func genAdamW() {
	for _, form := range []struct{ name, lerp string }{
		{"adamwLowF32AVX2", "m = m + c1*(g-m)"},
		{"adamwHighF32AVX2", "m = g - (g-m)*c1"},
	} {
		text(form.name, NOSPLIT, "func(wp, gp, mp, vp *float32, n int, gs, decay, c1, b2, w2, step, invBc2Sqrt, eps float32)")
		Doc(form.name+" is the AdamW update over the first n&^7 elements, bit-exact with adamWF32Generic:",
			"",
			"\tg := g*gs; w := w*decay; "+form.lerp,
			"\tv = v*b2 + (w2*g)*g",
			"\tw = w + (step*m) / (sqrt(v)*invBc2Sqrt + eps)")
		low := form.name == "adamwLowF32AVX2"
		elementwise(form.name, func() []VecVirtual {
			var k []VecVirtual
			for _, name := range []string{"gs", "decay", "c1", "b2", "w2", "step", "invBc2Sqrt", "eps"} {
				k = append(k, bcastF32(name))
			}
			return k
		}, []string{"wp", "gp", "mp", "vp"}, func(k []VecVirtual, p []Register, i Register) {
			kgs, kdecay, kc1, kb2, kw2, kstep, kinv, keps := k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7]
			at := func(j int) Mem { return Mem{Base: p[j], Index: i, Scale: 4} }
			g, m, d, t := YMM(), YMM(), YMM(), YMM()
			VMULPS(at(1), kgs, g) // g = g·gs
			VMOVUPS(at(2), m)     // m
			VSUBPS(m, g, d)       // d = g − m
			VMULPS(kc1, d, t)     // t = d·c1
			if low {
				VADDPS(t, m, m) // m = m + t
			} else {
				VSUBPS(t, g, m) // m = g − t
			}
			VMOVUPS(m, at(2))
			v, u := YMM(), YMM()
			VMULPS(at(3), kb2, v) // v·b2
			VMULPS(kw2, g, u)     // w2·g
			VMULPS(g, u, u)       // (w2·g)·g
			VADDPS(u, v, v)       // v = v·b2 + (w2·g)·g
			VMOVUPS(v, at(3))
			VSQRTPS(v, d)            // sqrt(v)
			VMULPS(kinv, d, d)       // ·invBc2Sqrt
			VADDPS(keps, d, d)       // + eps
			VMULPS(kstep, m, t)      // step·m
			VDIVPS(d, t, t)          // (step·m) / denom
			VMULPS(at(0), kdecay, u) // w·decay
			VADDPS(t, u, u)
			VMOVUPS(u, at(0))
		})
	}
}
