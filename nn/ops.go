package nn

import (
	"math"
)

// LayerNorm normalises each row of x over D with the biased variance, scales by gamma
// and adds no bias (DBRX's LayerNorm has bias=False).
//
//	dst, x [T, D]; gamma [D]
//
// Mean and variance are accumulated in float64 so the result tracks PyTorch's float32
// kernel to about 1 ulp.
func LayerNorm(dst, x []float32, T, D int, gamma []float32, eps float32) {
	for t := 0; t < T; t++ {
		row := x[t*D : (t+1)*D]
		out := dst[t*D : (t+1)*D]
		var sum float64
		for _, v := range row {
			sum += float64(v)
		}
		mean := sum / float64(D)
		var ss float64
		for _, v := range row {
			d := float64(v) - mean
			ss += d * d
		}
		rstd := 1 / math.Sqrt(ss/float64(D)+float64(eps))
		for i, v := range row {
			out[i] = float32((float64(v)-mean)*rstd) * gamma[i]
		}
	}
}

// Softmax replaces x with softmax(x) computed in float32 after subtracting the max,
// as torch.softmax(dtype=float32) does. -Inf entries become 0.
func Softmax(x []float32) {
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
		e := float32(math.Exp(float64(v - m)))
		x[i] = e
		s += float64(e)
	}
	inv := float32(1 / s)
	for i := range x {
		x[i] *= inv
	}
}

// Clamp limits every element of x to [-c, c] (DBRX's clip_qkv on the fused QKV output).
func Clamp(x []float32, c float32) {
	for i, v := range x {
		if v > c {
			x[i] = c
		} else if v < -c {
			x[i] = -c
		}
	}
}

// SiLU is x·σ(x) evaluated in float32 as PyTorch does.
func SiLU(x float32) float32 {
	return x / (1 + float32(math.Exp(float64(-x))))
}

// SwiGLU computes dst = silu(gate) ⊙ up elementwise.
//
//	dst, gate, up [n]
func SwiGLU(dst, gate, up []float32) {
	up = up[:len(gate)]
	dst = dst[:len(gate)]
	for i, g := range gate {
		dst[i] = SiLU(g) * up[i]
	}
}
