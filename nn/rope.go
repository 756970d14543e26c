package nn

import "math"

// RoPE is the GPT-NeoX ("rotate_half", non-interleaved) rotary embedding that DBRX
// applies to q and k: element j of a head is paired with element j + Dh/2.
type RoPE struct {
	HeadDim int
	InvFreq []float32 // [Dh/2]: theta^(-2j/Dh), computed in float32 as the reference does
}

// NewRoPE builds the inverse frequencies exactly as HF's DbrxRotaryEmbedding:
// 1 / (base ** (arange(0, Dh, 2).float() / Dh)) in float32.
func NewRoPE(headDim int, theta float64) *RoPE {
	inv := make([]float32, headDim/2)
	for j := range inv {
		e := float32(2*j) / float32(headDim)
		inv[j] = 1 / float32(math.Pow(theta, float64(e)))
	}
	return &RoPE{HeadDim: headDim, InvFreq: inv}
}

// Tables fills cos and sin for absolute position pos.
//
//	cos, sin [Dh/2]
func (r *RoPE) Tables(cos, sin []float32, pos int) {
	p := float32(pos)
	for j, f := range r.InvFreq {
		a := p * f // one float32 product, as the reference's K=1 matmul
		cos[j] = float32(math.Cos(float64(a)))
		sin[j] = float32(math.Sin(float64(a)))
	}
}

// Apply rotates every head of one token in place.
//
//	x [heads, Dh]; cos, sin [Dh/2]
func (r *RoPE) Apply(x []float32, heads int, cos, sin []float32) {
	dh := r.HeadDim
	half := dh / 2
	for h := 0; h < heads; h++ {
		v := x[h*dh : (h+1)*dh]
		for j := 0; j < half; j++ {
			a, b := v[j], v[j+half]
			// q' = q·cos + rotate_half(q)·sin with rotate_half([a, b]) = [-b, a]
			v[j] = a*cos[j] - b*sin[j]
			v[j+half] = b*cos[j] + a*sin[j]
		}
	}
}
