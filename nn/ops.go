package nn

import (
	"math"

	"github.com/dbrx-engine/dbrx/internal/kernel"
	"github.com/dbrx-engine/dbrx/internal/parallel"
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

// unitF32 is a block of ones: kernel.SiLUMulF32 against it is silu alone.
var unitF32 = func() (u [4096]float32) {
	for i := range u {
		u[i] = 1
	}
	return u
}()

// swigluGrain is the chunk length of SwiGLUTrain and SwiGLUBackwardSiLU: a multiple
// of the kernels' 8 lanes and of nothing else, so chunking never moves a scalar tail.
const swigluGrain = len(unitF32)

// SwiGLUTrain is SwiGLU for training: it writes silu = silu(gate) (kept for
// SwiGLUBackwardSiLU) and dst = silu ⊙ up, spread over p. silu(g) = g / (1 + exp(−g))
// is kernel.SiLUMulF32 against a unit up-projection (float32 exp within 1 ulp), and
// since that kernel multiplies by up last, dst is bit for bit
// kernel.SiLUMulF32(dst, gate, up).
//
//	dst, silu, gate, up [n]
func SwiGLUTrain(p *parallel.Pool, dst, silu, gate, up []float32) {
	n := len(gate)
	dst, silu, up = dst[:n], silu[:n], up[:n]
	p.For(n, swigluGrain, func(lo, hi int) {
		for c := lo; c < hi; c += swigluGrain {
			e := min(c+swigluGrain, hi)
			kernel.SiLUMulF32(silu[c:e], gate[c:e], unitF32[:e-c])
			sl, u, d := silu[c:e], up[c:e], dst[c:e]
			for i, v := range sl {
				d[i] = v * u[i]
			}
		}
	})
}
