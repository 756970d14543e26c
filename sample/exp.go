package sample

import "math"

// expf returns e**x for x <= 0 in float32 (Cephes expf: range reduction by ln 2 and a
// degree-6 polynomial), relative error below 1e-7 against math.Exp. Results that would
// be below the smallest normal float32 (x < -87.34), and -Inf, give 0. It is about
// twice as fast as math.Exp and keeps the 100352-wide softmax passes cheap.
//
// Equivalent Go loop: float32(math.Exp(float64(x))).
func expf(x float32) float32 {
	if !(x >= -87.33654) { // also NaN, which sanitised rows never hold
		return 0
	}
	t := x * math.Log2E
	n := int32(t - 0.5) // x <= 0: truncation towards zero rounds t to nearest
	fn := float32(n)
	r := x - fn*0.693359375 - fn*-2.12194440e-4
	p := ((((1.9875691500e-4*r+1.3981999507e-3)*r+8.3334519073e-3)*r+4.1665795894e-2)*r+1.6666665459e-1)*r + 5.0000001201e-1
	p = p*r*r + r + 1
	return p * math.Float32frombits(uint32(n+127)<<23)
}

// expShift sets dst[i] = exp((x[i]-m)*scale) for a row with x[i] <= m (scale >= 0),
// with expf's body inlined (expf itself is too large for the inliner), and returns
// Σ dst[i] in float64.
//
// Equivalent Go loop:
//
//	for i, v := range x { dst[i] = expf((v - m) * scale); sum += float64(dst[i]) }
func expShift(dst, x []float32, m, scale float32) float64 {
	dst = dst[:len(x)]
	var s0, s1 float64
	for i, v := range x {
		y := (v - m) * scale
		var e float32
		if y >= -87.33654 {
			n := int32(y*math.Log2E - 0.5)
			fn := float32(n)
			r := y - fn*0.693359375 - fn*-2.12194440e-4
			p := ((((1.9875691500e-4*r+1.3981999507e-3)*r+8.3334519073e-3)*r+4.1665795894e-2)*r+1.6666665459e-1)*r + 5.0000001201e-1
			p = p*r*r + r + 1
			e = p * math.Float32frombits(uint32(n+127)<<23)
		}
		dst[i] = e
		if i&1 == 0 {
			s0 += float64(e)
		} else {
			s1 += float64(e)
		}
	}
	return s0 + s1
}
