package nn

import (
	"math"

	"github.com/dbrx-engine/dbrx/internal/parallel"
)

// Backward passes of the elementwise and row-wise ops. Conventions:
//
//   - dx-style outputs named "accumulate" add into the destination (residual
//     gradients are sums); the others overwrite it.
//   - Every gradient is float32; reductions inside a row are float64.
//   - Shapes are given in the doc comment of each function.

// LayerNormTrain is LayerNorm that also returns each row's mean and 1/std, which
// LayerNormBackward needs. Its output is bit-identical to LayerNorm's.
//
//	dst, x [T, D]; gamma [D]; mean, rstd [T]
func LayerNormTrain(p *parallel.Pool, dst []float32, mean, rstd []float64, x []float32, T, D int, gamma []float32, eps float32) {
	p.For(T, 16, func(lo, hi int) {
		for t := lo; t < hi; t++ {
			row := x[t*D : (t+1)*D]
			out := dst[t*D : (t+1)*D]
			var sum float64
			for _, v := range row {
				sum += float64(v)
			}
			mu := sum / float64(D)
			var ss float64
			for _, v := range row {
				d := float64(v) - mu
				ss += d * d
			}
			rs := 1 / math.Sqrt(ss/float64(D)+float64(eps))
			for i, v := range row {
				out[i] = float32((float64(v)-mu)*rs) * gamma[i]
			}
			mean[t], rstd[t] = mu, rs
		}
	})
}

// LayerNormBackward is the backward pass of the bias-free LayerNorm y = x̂·γ with
// x̂ = (x − mean)·rstd. It accumulates dx += rstd·(dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂))
// with dx̂ = dy·γ, and dgamma += Σ_t dy ⊙ x̂.
//
//	dx, dy, x [T, D]; mean, rstd [T] from LayerNormTrain; gamma, dgamma [D]
//
// dgamma may be nil to skip the parameter gradient.
func LayerNormBackward(p *parallel.Pool, dx, dgamma, dy, x []float32, mean, rstd []float64, T, D int, gamma []float32) {
	p.For(T, 16, func(lo, hi int) {
		for t := lo; t < hi; t++ {
			xr, dyr, dxr := x[t*D:(t+1)*D], dy[t*D:(t+1)*D], dx[t*D:(t+1)*D]
			mu, rs := mean[t], rstd[t]
			var a, b float64 // Σ dx̂, Σ dx̂·x̂
			for i, v := range xr {
				xh := (float64(v) - mu) * rs
				g := float64(dyr[i]) * float64(gamma[i])
				a += g
				b += g * xh
			}
			a /= float64(D)
			b /= float64(D)
			for i, v := range xr {
				xh := (float64(v) - mu) * rs
				g := float64(dyr[i]) * float64(gamma[i])
				dxr[i] += float32(rs * (g - a - xh*b))
			}
		}
	})
	if dgamma == nil {
		return
	}
	// Column blocks: each worker owns a slice of dgamma, so no reduction is needed.
	p.For(D, 64, func(lo, hi int) {
		var acc [64]float64
		for c0 := lo; c0 < hi; c0 += len(acc) {
			c1 := min(c0+len(acc), hi)
			clear(acc[:])
			for t := 0; t < T; t++ {
				mu, rs := mean[t], rstd[t]
				xr, dyr := x[t*D+c0:t*D+c1], dy[t*D+c0:t*D+c1]
				for i, v := range xr {
					acc[i] += float64(dyr[i]) * (float64(v) - mu) * rs
				}
			}
			for i := c0; i < c1; i++ {
				dgamma[i] += float32(acc[i-c0])
			}
		}
	})
}

// ClampBackward passes the gradient of Clamp(x, c): dx = dy where −c ≤ x ≤ c and 0
// where x was clipped. At exactly ±c the gradient passes, as with torch.clamp
// (whose backward masks on min <= x <= max). dx may alias dy.
//
//	dx, dy, x [n] (x is the input of the clamp, before clipping)
func ClampBackward(dx, dy, x []float32, c float32) {
	dy = dy[:len(dx)]
	x = x[:len(dx)]
	for i, v := range x {
		if v >= -c && v <= c {
			dx[i] = dy[i]
		} else {
			dx[i] = 0
		}
	}
}

// ApplyBackward replaces dy (the gradient of Apply's output) with the gradient of
// its input: the rotation is orthogonal, so this is the rotation by −angle.
//
//	dy [heads, Dh]; cos, sin [Dh/2] of the same position as the forward
func (r *RoPE) ApplyBackward(dy []float32, heads int, cos, sin []float32) {
	dh := r.HeadDim
	half := dh / 2
	for h := 0; h < heads; h++ {
		v := dy[h*dh : (h+1)*dh]
		for j := 0; j < half; j++ {
			a, b := v[j], v[j+half]
			// forward: y_j = a·cos − b·sin, y_{j+half} = b·cos + a·sin
			v[j] = a*cos[j] + b*sin[j]
			v[j+half] = b*cos[j] - a*sin[j]
		}
	}
}

// SoftmaxBackward computes dx = y ⊙ (dy − Σ y·dy), the gradient of the input of
// y = softmax(x). dx may alias dy.
//
//	dx, dy, y [n]
func SoftmaxBackward(dx, dy, y []float32) {
	dy = dy[:len(y)]
	dx = dx[:len(y)]
	var s float64
	for i, v := range y {
		s += float64(v) * float64(dy[i])
	}
	for i, v := range y {
		dx[i] = float32(float64(v) * (float64(dy[i]) - s))
	}
}

// SiLUGrad returns d silu(x)/dx = σ(x)·(1 + x·(1 − σ(x))).
func SiLUGrad(x float32) float32 {
	s := 1 / (1 + math.Exp(-float64(x)))
	return float32(s * (1 + float64(x)*(1-s)))
}

// SwiGLUBackward is the backward pass of h = silu(gate) ⊙ up: dgate = dh ⊙ up ⊙
// silu'(gate), dup = dh ⊙ silu(gate). The outputs may alias dh.
//
//	dgate, dup, dh, gate, up [n]
func SwiGLUBackward(dgate, dup, dh, gate, up []float32) {
	n := len(gate)
	dgate, dup, dh, up = dgate[:n], dup[:n], dh[:n], up[:n]
	for i, g := range gate {
		s := 1 / (1 + math.Exp(-float64(g)))
		d := float64(dh[i])
		u := float64(up[i])
		dgate[i] = float32(d * u * s * (1 + float64(g)*(1-s)))
		dup[i] = float32(d * float64(g) * s)
	}
}

// SwiGLUBackwardSiLU is SwiGLUBackward given the forward's silu(gate) (float32, as
// SiLU or SwiGLUTrain computes it), so no exponential is taken: σ(g) = silu(g)/g, or
// its Taylor expansion 1/2 + g/4 where |g| < 1e-4 (error below 1e-13). Elements are
// independent and spread over p. The outputs may alias dh.
//
//	dgate, dup, dh, gate, up, silu [n]
func SwiGLUBackwardSiLU(p *parallel.Pool, dgate, dup, dh, gate, up, silu []float32) {
	n := len(gate)
	dgate, dup, dh, up, silu = dgate[:n], dup[:n], dh[:n], up[:n], silu[:n]
	p.For(n, swigluGrain, func(lo, hi int) {
		swigluBackwardSiLU(dgate[lo:hi], dup[lo:hi], dh[lo:hi], gate[lo:hi], up[lo:hi], silu[lo:hi])
	})
}

func swigluBackwardSiLU(dgate, dup, dh, gate, up, silu []float32) {
	n := len(gate)
	dgate, dup, dh, up, silu = dgate[:n], dup[:n], dh[:n], up[:n], silu[:n]
	for i, g := range gate {
		g64, sl := float64(g), float64(silu[i])
		var s float64
		if math.Abs(g64) < 1e-4 {
			s = 0.5 + g64/4
		} else {
			s = sl / g64
		}
		d := float64(dh[i])
		dgate[i] = float32(d * float64(up[i]) * (s + sl*(1-s)))
		dup[i] = float32(d * sl)
	}
}

// TopKNormBackward is the backward pass of TopK's renormalisation w̃ = w / ‖w‖_p
// (p = *normP; nil means w̃ = w). Given dwn = dL/dw̃ it writes dw = dL/dw for the
// selected (unnormalised) probabilities w. The selection itself has no gradient.
//
//	dw, dwn, w [k]
//
// With n = ‖w‖_p: dw_j = dwn_j/n − (Σ_s dwn_s·w_s)/n² · ∂n/∂w_j and
// ∂n/∂w_j = sign(w_j)·|w_j|^(p−1) / n^(p−1) (0 at w_j = 0, like torch.norm's sgn).
func TopKNormBackward(dw, dwn, w []float32, normP *float64) {
	k := len(w)
	dw, dwn = dw[:k], dwn[:k]
	if normP == nil {
		copy(dw, dwn)
		return
	}
	p := *normP
	var n float64
	switch p {
	case 1:
		for _, v := range w {
			n += math.Abs(float64(v))
		}
	default:
		var s float64
		for _, v := range w {
			s += math.Pow(math.Abs(float64(v)), p)
		}
		n = math.Pow(s, 1/p)
	}
	if n == 0 {
		clear(dw)
		return
	}
	var c float64 // Σ dwn_s·w_s
	for s, v := range w {
		c += float64(dwn[s]) * float64(v)
	}
	np1 := math.Pow(n, p-1)
	for j, v := range w {
		wj := float64(v)
		var dn float64
		switch {
		case wj == 0:
		case p == 1:
			dn = math.Copysign(1, wj)
		default:
			dn = math.Copysign(math.Pow(math.Abs(wj), p-1), wj) / np1
		}
		dw[j] = float32(float64(dwn[j])/n - c/(n*n)*dn)
	}
}
