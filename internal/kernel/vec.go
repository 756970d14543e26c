package kernel

import "math"

// noVec reports whether the vector ops below take their Go twins: no assembly,
// or the twins selected (simd == nil, as tests do with withKernels(nil, …)).
func noVec() bool { return simd == nil || !asmVec }

// DotF32 returns Σ a[i]·b[i] over len(a) elements (float32, order unspecified).
func DotF32(a, b []float32) float32 {
	b = b[:len(a)]
	n := len(a)
	if noVec() || n < 32 {
		return dotF32Generic(a, b)
	}
	s := vecDot(&a[0], &b[0], n)
	for i := n &^ 31; i < n; i++ {
		s += a[i] * b[i]
	}
	return s
}

// AxpyF32 computes y[i] += a·x[i] over len(y) elements (multiply, then add: the
// same rounding on every path).
func AxpyF32(y []float32, a float32, x []float32) {
	x = x[:len(y)]
	n := len(y)
	if noVec() || n < 8 {
		axpyF32Generic(y, a, x)
		return
	}
	vecAxpy(&y[0], a, &x[0], n)
	axpyF32Generic(y[n&^7:], a, x[n&^7:])
}

// ScaleAddF32 computes dst[i] = a·dst[i] + b·x[i] over len(dst) elements (two
// products, then the sum: the same rounding on every path). With a = 1 it is a
// residual add of b·x; with b = 1, a rescale-and-add as in online softmax.
func ScaleAddF32(dst []float32, a, b float32, x []float32) {
	x = x[:len(dst)]
	n := len(dst)
	if noVec() || n < 8 {
		scaleAddF32Generic(dst, a, b, x)
		return
	}
	vecScaleAdd(&dst[0], a, b, &x[0], n)
	scaleAddF32Generic(dst[n&^7:], a, b, x[n&^7:])
}

// MaxF32 returns the largest element of x (-Inf for an empty x). NaNs are not
// ordered: with a NaN in x the result may be NaN or the maximum of the others (an
// exp of x − max then still turns the NaN into NaN).
func MaxF32(x []float32) float32 {
	n := len(x)
	if noVec() || n < 8 {
		return maxF32Generic(x)
	}
	m := vecMax(&x[0], n)
	for _, v := range x[n&^7:] {
		if v > m {
			m = v
		}
	}
	return m
}

// ExpSubF32 sets dst[i] = exp(x[i] − m) for i < len(x) and returns Σ dst[i]
// accumulated in float64: the numerator and denominator of a softmax whose
// maximum m the caller knows (or a log-sum-exp: log Σ exp x = m + log sum).
//
//	dst, x [n]; dst may be x
//
// The difference x[i] − m is taken exactly and the float32 exp is within 1 ulp of
// float32(math.Exp(float64(x[i]) − float64(m))), the plain-Go twin: about 10% of
// results differ from it by one ulp on the assembly path, none by more. exp(-Inf)
// is 0; arguments above 88.72 overflow to +Inf, below about -87.3 the results are
// subnormal or 0; a NaN (or +Inf − +Inf) gives NaN.
func ExpSubF32(dst, x []float32, m float32) float64 {
	n := len(x)
	dst = dst[:n]
	if noVec() || n < 8 {
		return expSubF32Generic(dst, x, m)
	}
	s := vecExpSub(&dst[0], &x[0], n, m)
	return s + expSubF32Generic(dst[n&^7:], x[n&^7:], m)
}

// SoftmaxF32 replaces x with softmax(x): the maximum is subtracted, exp is taken in
// float32 (within 1 ulp, ExpSubF32) and summed in float64, so each
// result is within ~1e-6 relative of a float64 softmax. -Inf entries become 0; a
// NaN anywhere, an +Inf, or a row of only -Inf makes every entry NaN.
func SoftmaxF32(x []float32) {
	n := len(x)
	if noVec() || n < 8 {
		softmaxF32Generic(x)
		return
	}
	m := vecMax(&x[0], n)
	for _, v := range x[n&^7:] {
		if v > m {
			m = v
		}
	}
	s := vecExpSub(&x[0], &x[0], n, m)
	s += expSubF32Generic(x[n&^7:], x[n&^7:], m)
	inv := float32(1 / s)
	vecScale(&x[0], inv, n)
	for i := n &^ 7; i < n; i++ {
		x[i] *= inv
	}
}

// LayerNormF32 sets dst = (x - mean(x)) / sqrt(var(x) + eps) · gamma with the biased
// variance and no bias (DBRX's LayerNorm). Mean and variance are accumulated in
// float64, which tracks PyTorch's float32 kernel to about 1 ulp.
//
//	dst, x, gamma [D]
func LayerNormF32(dst, x, gamma []float32, eps float32) {
	n := len(x)
	dst = dst[:n]
	gamma = gamma[:n]
	if noVec() || n < 8 {
		layerNormF32Generic(dst, x, gamma, eps)
		return
	}
	sum := vecSumF64(&x[0], n)
	for _, v := range x[n&^7:] {
		sum += float64(v)
	}
	mean := sum / float64(n)
	ss := vecSqDev(&x[0], n, mean)
	for _, v := range x[n&^7:] {
		d := float64(v) - mean
		ss += d * d
	}
	rstd := 1 / math.Sqrt(ss/float64(n)+float64(eps))
	vecLNApply(&dst[0], &x[0], &gamma[0], n, mean, rstd)
	for i := n &^ 7; i < n; i++ {
		dst[i] = float32((float64(x[i])-mean)*rstd) * gamma[i]
	}
}

// SiLUMulF32 computes dst[i] = silu(gate[i]) · up[i] with silu(g) = g / (1 + exp(-g))
// in float32 (DBRX's GLU experts). dst may alias gate or up.
func SiLUMulF32(dst, gate, up []float32) {
	n := len(gate)
	up = up[:n]
	dst = dst[:n]
	if noVec() || n < 8 {
		siluMulF32Generic(dst, gate, up)
		return
	}
	vecSiLUMul(&dst[0], &gate[0], &up[0], n)
	siluMulF32Generic(dst[n&^7:], gate[n&^7:], up[n&^7:])
}

// AdamWStep holds the float32 coefficients of one AdamW step, as optim computes
// them: the update of element i is
//
//	g := G[i]·GradScale; w := W[i]·Decay
//	M[i] = M[i] + Lerp·(g − M[i])        (LowWeight: at::lerp with weight < 0.5)
//	M[i] = g − (g − M[i])·Lerp           (else; Lerp is then 1 − weight)
//	V[i] = V[i]·Beta2 + (W2·g)·g
//	W[i] = w + (StepSize·M[i]) / (sqrt(V[i])·InvBc2Sqrt + Eps)
type AdamWStep struct {
	GradScale, Decay, Lerp, Beta2, W2, StepSize, InvBc2Sqrt, Eps float32
	LowWeight                                                    bool
}

// AdamWF32 applies one AdamW step to len(w) elements of the weights w, moments m
// and v with gradients g. Every operation is a separate float32 IEEE operation in
// the order above (no fused multiply-add), so the assembly and the Go twin agree
// bit for bit.
func AdamWF32(w, g, m, v []float32, c AdamWStep) {
	n := len(w)
	g, m, v = g[:n], m[:n], v[:n]
	if noVec() || n < 8 {
		adamWF32Generic(w, g, m, v, c)
		return
	}
	vecAdamW(&w[0], &g[0], &m[0], &v[0], n, c)
	k := n &^ 7
	adamWF32Generic(w[k:], g[k:], m[k:], v[k:], c)
}
