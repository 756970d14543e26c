package kernel

import (
	"math"

	"github.com/dbrx-engine/dbrx/tensor"
)

// This file holds the plain-Go twins of the public kernels: the test oracles and the
// fallback on CPUs without AVX2+FMA+F16C or under the purego build tag. They are kept
// simple: one obvious loop each, float32 products and sums unless stated otherwise.

// weightView is a typed zero-copy view of a Mat's data (exactly one field is set).
type weightView struct {
	f32 []float32
	u16 []uint16
	f16 bool // u16 holds F16 (else BF16)
}

func viewOf(w Mat) weightView {
	switch w.DType {
	case tensor.F32:
		return weightView{f32: tensor.Float32s(w.Data)}
	case tensor.F16:
		return weightView{u16: tensor.Uint16s(w.Data), f16: true}
	default:
		return weightView{u16: tensor.Uint16s(w.Data)}
	}
}

// at returns element i widened to float32.
func (v weightView) at(i int) float32 {
	switch {
	case v.f32 != nil:
		return v.f32[i]
	case v.f16:
		return tensor.F16ToF32(v.u16[i])
	default:
		return tensor.BF16ToF32(v.u16[i])
	}
}

// matMulTGeneric is the twin of MatMulT restricted to output columns [n0, n1):
//
//	dst[t*N+n] = Σ_k x[t*K+k] · w[n*K+k]
func matMulTGeneric(dst, x []float32, T int, w Mat, n0, n1 int) {
	N, K := w.Rows, w.Cols
	v := viewOf(w)
	for n := n0; n < n1; n++ {
		for t := 0; t < T; t++ {
			xr := x[t*K : (t+1)*K]
			var s float32
			for k, a := range xr {
				s += a * v.at(n*K+k)
			}
			dst[t*N+n] = s
		}
	}
}

// matMulNGeneric is the twin of MatMulN restricted to output columns [n0, n1):
//
//	dst[t*N+n] (+)= Σ_k x[t*K+k] · w[k*N+n]
func matMulNGeneric(dst, x []float32, T int, w Mat, n0, n1 int, accumulate bool) {
	K, N := w.Rows, w.Cols
	v := viewOf(w)
	for t := 0; t < T; t++ {
		for n := n0; n < n1; n++ {
			var s float32
			for k := 0; k < K; k++ {
				s += x[t*K+k] * v.at(k*N+n)
			}
			if accumulate {
				s += dst[t*N+n]
			}
			dst[t*N+n] = s
		}
	}
}

func dotF32Generic(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

func axpyF32Generic(y []float32, a float32, x []float32) {
	x = x[:len(y)]
	for i := range y {
		y[i] += a * x[i]
	}
}

func scaleAddF32Generic(dst []float32, a, b float32, x []float32) {
	x = x[:len(dst)]
	for i := range dst {
		dst[i] = a*dst[i] + b*x[i]
	}
}

// expF32 is exp in float32, correctly rounded from the float64 result.
func expF32(x float32) float32 { return float32(math.Exp(float64(x))) }

// expSubF32Generic is the twin of ExpSubF32: exp of the exact difference in
// float64, rounded once to float32, summed in float64.
func expSubF32Generic(dst, x []float32, m float32) float64 {
	dst = dst[:len(x)]
	var s float64
	for i, v := range x {
		e := float32(math.Exp(float64(v) - float64(m)))
		dst[i] = e
		s += float64(e)
	}
	return s
}

func maxF32Generic(x []float32) float32 {
	m := float32(math.Inf(-1))
	for _, v := range x {
		if v > m {
			m = v
		}
	}
	return m
}

func softmaxF32Generic(x []float32) {
	if len(x) == 0 {
		return
	}
	m := float32(math.Inf(-1))
	for _, v := range x {
		if v > m {
			m = v
		}
	}
	var s float64
	for i, v := range x {
		e := float32(math.Exp(float64(v) - float64(m)))
		x[i] = e
		s += float64(e)
	}
	inv := float32(1 / s)
	for i := range x {
		x[i] *= inv
	}
}

func layerNormF32Generic(dst, x, gamma []float32, eps float32) {
	dst = dst[:len(x)]
	gamma = gamma[:len(x)]
	if len(x) == 0 {
		return
	}
	var sum float64
	for _, v := range x {
		sum += float64(v)
	}
	mean := sum / float64(len(x))
	var ss float64
	for _, v := range x {
		d := float64(v) - mean
		ss += d * d
	}
	rstd := 1 / math.Sqrt(ss/float64(len(x))+float64(eps))
	for i, v := range x {
		dst[i] = float32((float64(v)-mean)*rstd) * gamma[i]
	}
}

func siluMulF32Generic(dst, gate, up []float32) {
	up = up[:len(gate)]
	dst = dst[:len(gate)]
	for i, g := range gate {
		dst[i] = g / (1 + expF32(-g)) * up[i]
	}
}

// adamWF32Generic is AdamWF32's plain-Go twin; the explicit float32 conversions
// keep every product and sum rounded on its own (no fused multiply-add).
func adamWF32Generic(w, g, m, v []float32, c AdamWStep) {
	g, m, v = g[:len(w)], m[:len(w)], v[:len(w)]
	for i := range w {
		gi, wi, mi := float32(g[i]*c.GradScale), float32(w[i]*c.Decay), m[i]
		if c.LowWeight {
			mi = mi + float32(c.Lerp*float32(gi-mi))
		} else {
			mi = gi - float32(float32(gi-mi)*c.Lerp)
		}
		vi := float32(v[i]*c.Beta2) + float32(float32(c.W2*gi)*gi)
		denom := float32(float32(math.Sqrt(float64(vi)))*c.InvBc2Sqrt) + c.Eps
		w[i], m[i], v[i] = wi+float32(float32(c.StepSize*mi)/denom), mi, vi
	}
}
