package quant

import (
	"testing"

	"github.com/dbrx-engine/dbrx/tensor"
)

func TestDTypeRoundTrip(t *testing.T) {
	for _, p := range dtypeOf {
		d, ok := p.t.DType()
		if !ok || d != p.d {
			t.Errorf("%s.DType() = %s, %v; want %s", p.t, d, ok, p.d)
		}
		back, ok := FromDType(d)
		if !ok || back != p.t {
			t.Errorf("FromDType(%s) = %s, %v; want %s", d, back, ok, p.t)
		}
		// Block geometry must agree between the two packages.
		if p.t.BlockSize() != d.BlockSize() || p.t.TypeSize() != d.BlockBytes() {
			t.Errorf("%s: quant block %d/%d bytes, tensor %d/%d", p.t, p.t.BlockSize(), p.t.TypeSize(), d.BlockSize(), d.BlockBytes())
		}
		if d.IsQuantized() != p.t.IsQuantized() {
			t.Errorf("%s: IsQuantized disagrees", p.t)
		}
	}
	for _, u := range []Type{Q4_1, Q5_1, Q2_K, IQ4_NL, I32} {
		if d, ok := u.DType(); ok {
			t.Errorf("%s.DType() = %s, want none", u, d)
		}
	}
	for _, d := range []tensor.DType{tensor.I32, tensor.U8, tensor.Invalid} {
		if q, ok := FromDType(d); ok {
			t.Errorf("FromDType(%s) = %s, want none", d, q)
		}
	}
}
