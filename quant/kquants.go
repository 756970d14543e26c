package quant

// makeQKX2Quants is ggml's make_qkx2_quants: it fits x ≈ scale*L - theMin with
// L in [0, nmax] by a weighted least-squares search over nstep+1 trial inverse
// scales (rmin + rdelta*is + nmax)/(max-min). L receives the chosen levels; laux is
// scratch of the same length.
func makeQKX2Quants(nmax int32, x, weights []float32, L, laux []uint8, rmin, rdelta float32, nstep int, useMAD bool) (scale, theMin float32) {
	n := len(x)
	min, max := x[0], x[0]
	sumW := weights[0]
	sumX := float32(sumW * x[0])
	for i := 1; i < n; i++ {
		if x[i] < min {
			min = x[i]
		}
		if x[i] > max {
			max = x[i]
		}
		w := weights[i]
		sumW += w
		sumX += float32(w * x[i])
	}
	if min > 0 {
		min = 0
	}
	if max == min {
		for i := range L[:n] {
			L[i] = 0
		}
		return 0, -min
	}
	iscale := float32(nmax) / (max - min)
	scale = 1 / iscale
	var bestError float32
	for i := 0; i < n; i++ {
		l := nearestInt(iscale * (x[i] - min))
		L[i] = uint8(clampInt(l, 0, nmax))
		diff := float32(scale*float32(L[i])) + min - x[i]
		if useMAD {
			diff = fabs(diff)
		} else {
			diff = diff * diff
		}
		bestError += float32(weights[i] * diff)
	}
	if nstep < 1 {
		return scale, -min
	}
	for is := 0; is <= nstep; is++ {
		iscale = (rmin + float32(rdelta*float32(is)) + float32(nmax)) / (max - min)
		var sumL, sumL2, sumXL float32
		for i := 0; i < n; i++ {
			l := clampInt(nearestInt(iscale*(x[i]-min)), 0, nmax)
			laux[i] = uint8(l)
			w := weights[i]
			fl := float32(l)
			sumL += float32(w * fl)
			sumL2 += float32(float32(w*fl) * fl)
			sumXL += float32(float32(w*fl) * x[i])
		}
		D := float32(sumW*sumL2) - float32(sumL*sumL)
		if D > 0 {
			thisScale := (float32(sumW*sumXL) - float32(sumX*sumL)) / D
			thisMin := (float32(sumL2*sumX) - float32(sumL*sumXL)) / D
			if thisMin > 0 {
				thisMin = 0
				thisScale = sumXL / sumL2
			}
			var curError float32
			for i := 0; i < n; i++ {
				diff := float32(thisScale*float32(laux[i])) + thisMin - x[i]
				if useMAD {
					diff = fabs(diff)
				} else {
					diff = diff * diff
				}
				curError += float32(weights[i] * diff)
			}
			if curError < bestError {
				copy(L[:n], laux[:n])
				bestError = curError
				scale = thisScale
				min = thisMin
			}
		}
	}
	return scale, -min
}

// makeQXQuants is ggml's make_qx_quants with rmse_type 1 and no importance weights
// (weights x²): it fits x ≈ scale*(L-nmax) with L-nmax in [-nmax, nmax-1], trying
// 19 inverse scales -(nmax + 0.1*is)/max. L receives levels offset by nmax.
func makeQXQuants(nmax int32, x []float32, L []int8) float32 {
	n := len(x)
	var max, amax float32
	for i := 0; i < n; i++ {
		if ax := fabs(x[i]); ax > amax {
			amax, max = ax, x[i]
		}
	}
	if amax < groupMaxEps {
		for i := range L[:n] {
			L[i] = 0
		}
		return 0
	}
	iscale := float32(-nmax) / max
	var sumlx, suml2 float32
	for i := 0; i < n; i++ {
		l := clampInt(nearestInt(iscale*x[i]), -nmax, nmax-1)
		L[i] = int8(l + nmax)
		w := float32(x[i] * x[i])
		fl := float32(l)
		sumlx += float32(float32(w*x[i]) * fl)
		suml2 += float32(float32(w*fl) * fl)
	}
	var scale float32
	if suml2 != 0 {
		scale = sumlx / suml2
	}
	best := scale * sumlx
	for is := -9; is <= 9; is++ {
		if is == 0 {
			continue
		}
		iscale = -(float32(nmax) + float32(0.1*float32(is))) / max
		sumlx, suml2 = 0, 0
		for i := 0; i < n; i++ {
			l := clampInt(nearestInt(iscale*x[i]), -nmax, nmax-1)
			w := float32(x[i] * x[i])
			fl := float32(l)
			sumlx += float32(float32(w*x[i]) * fl)
			suml2 += float32(float32(w*fl) * fl)
		}
		if suml2 > 0 && sumlx*sumlx > best*suml2 {
			for i := 0; i < n; i++ {
				l := clampInt(nearestInt(iscale*x[i]), -nmax, nmax-1)
				L[i] = int8(l + nmax)
			}
			scale = sumlx / suml2
			best = scale * sumlx
		}
	}
	return scale
}

// scaleMinK4 is ggml's get_scale_min_k4: the 6-bit scale and min of sub-block j
// (0..7) from the 12-byte packed array of a Q4_K/Q5_K super-block.
func scaleMinK4(j int, q []byte) (sc, m uint8) {
	if j < 4 {
		return q[j] & 63, q[j+4] & 63
	}
	return q[j+4]&0x0f | (q[j-4]>>6)<<4, q[j+4]>>4 | (q[j]>>6)<<4
}

// packScaleMinK4 stores 6-bit scales ls[j] and mins lm[j] (j = 0..7) the way
// quantize_row_q4_K_ref does, the inverse of scaleMinK4.
func packScaleMinK4(q []byte, ls, lm *[8]uint8) {
	for j := 0; j < 8; j++ {
		if j < 4 {
			q[j] = ls[j]
			q[j+4] = lm[j]
		} else {
			q[j+4] = ls[j]&0x0f | (lm[j]&0x0f)<<4
			q[j-4] |= (ls[j] >> 4) << 6
			q[j] |= (lm[j] >> 4) << 6
		}
	}
}

// quantizeKScaleMin is the shared middle of quantize_row_q4_K_ref and
// quantize_row_q5_K_ref: per 32-value sub-block a make_qkx2_quants fit, then the
// eight scales and mins quantized to 6 bits against the super-block d and dmin,
// then every value re-quantized with the stored (rounded) scales. It fills y[0:16]
// (d, dmin, scales) and L.
func quantizeKScaleMin(y []byte, x []float32, L *[QK_K]uint8, nmax int32, rmin, rdelta float32, nstep int) {
	var (
		laux    [32]uint8
		weights [32]float32
		mins    [QK_K / 32]float32
		scales  [QK_K / 32]float32
	)
	var maxScale, maxMin float32
	for j := 0; j < QK_K/32; j++ {
		xs := x[32*j : 32*j+32]
		var sumX2 float32
		for _, v := range xs {
			sumX2 += float32(v * v)
		}
		avX := sqrtf(sumX2 / 32)
		for l, v := range xs {
			weights[l] = avX + fabs(v)
		}
		scales[j], mins[j] = makeQKX2Quants(nmax, xs, weights[:], L[32*j:32*j+32], laux[:], rmin, rdelta, nstep, false)
		if scales[j] > maxScale {
			maxScale = scales[j]
		}
		if mins[j] > maxMin {
			maxMin = mins[j]
		}
	}
	var invScale, invMin float32
	if maxScale > 0 {
		invScale = 63 / maxScale
	}
	if maxMin > 0 {
		invMin = 63 / maxMin
	}
	var ls, lm [8]uint8
	for j := 0; j < QK_K/32; j++ {
		ls[j] = min(63, uint8(nearestInt(invScale*scales[j])))
		lm[j] = min(63, uint8(nearestInt(invMin*mins[j])))
	}
	packScaleMinK4(y[4:16], &ls, &lm)
	putF16(y[0:], maxScale/63)
	putF16(y[2:], maxMin/63)

	dAll, mAll := f16(y[0:]), f16(y[2:])
	for j := 0; j < QK_K/32; j++ {
		sc, m := scaleMinK4(j, y[4:16])
		d := dAll * float32(sc)
		if d == 0 {
			continue
		}
		dm := float32(mAll * float32(m))
		for ii := 0; ii < 32; ii++ {
			l := nearestInt((x[32*j+ii] + dm) / d)
			L[32*j+ii] = uint8(clampInt(l, 0, nmax))
		}
	}
}

// ---- Q4_K ----

// QuantizeQ4_K is ggml's quantize_row_q4_K_ref (make_qkx2_quants with rmin -1,
// rdelta 0.1, 20 steps on each 32-value sub-block; 6-bit scales and mins).
func QuantizeQ4_K(dst []byte, src []float32) {
	nb := numBlocks("QuantizeQ4_K", len(src), len(dst), QK_K, BlockBytesQ4_K)
	var L [QK_K]uint8
	for i := 0; i < nb; i++ {
		x := src[i*QK_K : (i+1)*QK_K]
		y := dst[i*BlockBytesQ4_K : (i+1)*BlockBytesQ4_K]
		quantizeKScaleMin(y, x, &L, 15, -1, 0.1, 20)
		q := y[16:]
		for j := 0; j < QK_K; j += 64 {
			for l := 0; l < 32; l++ {
				q[l] = L[j+l] | L[j+l+32]<<4
			}
			q = q[32:]
		}
	}
}

// DequantizeQ4_K is ggml's dequantize_row_q4_K: x = d*sc*q - dmin*m per 32-value
// sub-block; each 32 bytes of qs hold two sub-blocks (low nibbles, then high).
func DequantizeQ4_K(dst []float32, src []byte) {
	nb := numBlocks("DequantizeQ4_K", len(dst), len(src), QK_K, BlockBytesQ4_K)
	for i := 0; i < nb; i++ {
		b := src[i*BlockBytesQ4_K : (i+1)*BlockBytesQ4_K]
		y := dst[i*QK_K : (i+1)*QK_K]
		d, dmin := f16(b[0:]), f16(b[2:])
		scales, q := b[4:16], b[16:]
		for j, is := 0, 0; j < QK_K; j, is = j+64, is+2 {
			sc, m := scaleMinK4(is, scales)
			d1, m1 := d*float32(sc), float32(dmin*float32(m))
			sc, m = scaleMinK4(is+1, scales)
			d2, m2 := d*float32(sc), float32(dmin*float32(m))
			for l := 0; l < 32; l++ {
				y[j+l] = float32(d1*float32(q[l]&0x0f)) - m1
			}
			for l := 0; l < 32; l++ {
				y[j+32+l] = float32(d2*float32(q[l]>>4)) - m2
			}
			q = q[32:]
		}
	}
}

// DotQ4_KF32 returns Σ dequant(src)·x, per sub-block as d*sc*Σq·x - dmin*m*Σx.
func DotQ4_KF32(src []byte, x []float32) float32 {
	nb := numBlocks("DotQ4_KF32", len(x), len(src), QK_K, BlockBytesQ4_K)
	var acc float32
	for i := 0; i < nb; i++ {
		b := src[i*BlockBytesQ4_K : (i+1)*BlockBytesQ4_K]
		xs := x[i*QK_K : (i+1)*QK_K]
		d, dmin := f16(b[0:]), f16(b[2:])
		scales, q := b[4:16], b[16:]
		for j, is := 0, 0; j < QK_K; j, is = j+64, is+2 {
			var sq1, sx1, sq2, sx2 float32
			for l := 0; l < 32; l++ {
				x1, x2 := xs[j+l], xs[j+32+l]
				sq1 += float32(float32(q[l]&0x0f) * x1)
				sx1 += x1
				sq2 += float32(float32(q[l]>>4) * x2)
				sx2 += x2
			}
			sc, m := scaleMinK4(is, scales)
			acc += float32(float32(d*float32(sc))*sq1) - float32(float32(dmin*float32(m))*sx1)
			sc, m = scaleMinK4(is+1, scales)
			acc += float32(float32(d*float32(sc))*sq2) - float32(float32(dmin*float32(m))*sx2)
			q = q[32:]
		}
	}
	return acc
}

// ---- Q5_K ----

// QuantizeQ5_K is ggml's quantize_row_q5_K_ref (make_qkx2_quants with nmax 31,
// rmin -0.5, rdelta 0.1, 15 steps). Bit 4 of the value at n+j (n = 64k) goes to
// bit 2k of qh[j], bit 4 of the value at n+j+32 to bit 2k+1.
func QuantizeQ5_K(dst []byte, src []float32) {
	nb := numBlocks("QuantizeQ5_K", len(src), len(dst), QK_K, BlockBytesQ5_K)
	var L [QK_K]uint8
	for i := 0; i < nb; i++ {
		x := src[i*QK_K : (i+1)*QK_K]
		y := dst[i*BlockBytesQ5_K : (i+1)*BlockBytesQ5_K]
		quantizeKScaleMin(y, x, &L, 31, -0.5, 0.1, 15)
		qh := y[16 : 16+QK_K/8]
		ql := y[16+QK_K/8:]
		clear(qh)
		m1, m2 := uint8(1), uint8(2)
		for n := 0; n < QK_K; n += 64 {
			for j := 0; j < 32; j++ {
				l1 := L[n+j]
				if l1 > 15 {
					l1 -= 16
					qh[j] |= m1
				}
				l2 := L[n+j+32]
				if l2 > 15 {
					l2 -= 16
					qh[j] |= m2
				}
				ql[j] = l1 | l2<<4
			}
			m1 <<= 2
			m2 <<= 2
			ql = ql[32:]
		}
	}
}

// DequantizeQ5_K is ggml's dequantize_row_q5_K.
func DequantizeQ5_K(dst []float32, src []byte) {
	nb := numBlocks("DequantizeQ5_K", len(dst), len(src), QK_K, BlockBytesQ5_K)
	for i := 0; i < nb; i++ {
		b := src[i*BlockBytesQ5_K : (i+1)*BlockBytesQ5_K]
		y := dst[i*QK_K : (i+1)*QK_K]
		d, dmin := f16(b[0:]), f16(b[2:])
		scales, qh, ql := b[4:16], b[16:16+QK_K/8], b[16+QK_K/8:]
		u1, u2 := uint8(1), uint8(2)
		for j, is := 0, 0; j < QK_K; j, is = j+64, is+2 {
			sc, m := scaleMinK4(is, scales)
			d1, m1 := d*float32(sc), float32(dmin*float32(m))
			sc, m = scaleMinK4(is+1, scales)
			d2, m2 := d*float32(sc), float32(dmin*float32(m))
			for l := 0; l < 32; l++ {
				q := int32(ql[l] & 0x0f)
				if qh[l]&u1 != 0 {
					q += 16
				}
				y[j+l] = float32(d1*float32(q)) - m1
			}
			for l := 0; l < 32; l++ {
				q := int32(ql[l] >> 4)
				if qh[l]&u2 != 0 {
					q += 16
				}
				y[j+32+l] = float32(d2*float32(q)) - m2
			}
			ql = ql[32:]
			u1 <<= 2
			u2 <<= 2
		}
	}
}

// DotQ5_KF32 returns Σ dequant(src)·x, per sub-block as d*sc*Σq·x - dmin*m*Σx.
func DotQ5_KF32(src []byte, x []float32) float32 {
	nb := numBlocks("DotQ5_KF32", len(x), len(src), QK_K, BlockBytesQ5_K)
	var acc float32
	for i := 0; i < nb; i++ {
		b := src[i*BlockBytesQ5_K : (i+1)*BlockBytesQ5_K]
		xs := x[i*QK_K : (i+1)*QK_K]
		d, dmin := f16(b[0:]), f16(b[2:])
		scales, qh, ql := b[4:16], b[16:16+QK_K/8], b[16+QK_K/8:]
		u1, u2 := uint8(1), uint8(2)
		for j, is := 0, 0; j < QK_K; j, is = j+64, is+2 {
			var sq1, sx1, sq2, sx2 float32
			for l := 0; l < 32; l++ {
				q1, q2 := int32(ql[l]&0x0f), int32(ql[l]>>4)
				if qh[l]&u1 != 0 {
					q1 += 16
				}
				if qh[l]&u2 != 0 {
					q2 += 16
				}
				x1, x2 := xs[j+l], xs[j+32+l]
				sq1 += float32(float32(q1) * x1)
				sx1 += x1
				sq2 += float32(float32(q2) * x2)
				sx2 += x2
			}
			sc, m := scaleMinK4(is, scales)
			acc += float32(float32(d*float32(sc))*sq1) - float32(float32(dmin*float32(m))*sx1)
			sc, m = scaleMinK4(is+1, scales)
			acc += float32(float32(d*float32(sc))*sq2) - float32(float32(dmin*float32(m))*sx2)
			ql = ql[32:]
			u1 <<= 2
			u2 <<= 2
		}
	}
	return acc
}

// ---- Q6_K ----

// QuantizeQ6_K is ggml's quantize_row_q6_K_ref: make_qx_quants(16, 32, rmse_type 1)
// per 16-value sub-block, int8 sub-block scales against d = max_scale/-128, values
// q+32 in [0, 63] split into 4 low bits (ql) and 2 high bits (qh).
func QuantizeQ6_K(dst []byte, src []float32) {
	nb := numBlocks("QuantizeQ6_K", len(src), len(dst), QK_K, BlockBytesQ6_K)
	var (
		L      [QK_K]int8
		scales [QK_K / 16]float32
	)
	for i := 0; i < nb; i++ {
		x := src[i*QK_K : (i+1)*QK_K]
		y := dst[i*BlockBytesQ6_K : (i+1)*BlockBytesQ6_K]
		ql, qh, sc := y[0:QK_K/2], y[QK_K/2:QK_K/2+QK_K/4], y[QK_K/2+QK_K/4:QK_K/2+QK_K/4+QK_K/16]
		dq := y[BlockBytesQ6_K-2:]

		var maxScale, maxAbsScale float32
		for ib := 0; ib < QK_K/16; ib++ {
			scale := makeQXQuants(32, x[16*ib:16*ib+16], L[16*ib:16*ib+16])
			scales[ib] = scale
			if a := fabs(scale); a > maxAbsScale {
				maxAbsScale, maxScale = a, scale
			}
		}
		if maxAbsScale < groupMaxEps {
			clear(y)
			putF16(dq, 0)
			continue
		}
		iscale := -128 / maxScale
		putF16(dq, 1/iscale)
		for ib := range scales {
			sc[ib] = byte(int8(min(127, nearestInt(iscale*scales[ib]))))
		}
		dAll := f16(dq)
		for j := 0; j < QK_K/16; j++ {
			d := dAll * float32(int8(sc[j]))
			if d == 0 {
				continue
			}
			for ii := 0; ii < 16; ii++ {
				l := clampInt(nearestInt(x[16*j+ii]/d), -32, 31)
				L[16*j+ii] = int8(l + 32)
			}
		}
		for j := 0; j < QK_K; j += 128 {
			for l := 0; l < 32; l++ {
				q1 := uint8(L[j+l]) & 0x0f
				q2 := uint8(L[j+l+32]) & 0x0f
				q3 := uint8(L[j+l+64]) & 0x0f
				q4 := uint8(L[j+l+96]) & 0x0f
				ql[l] = q1 | q3<<4
				ql[l+32] = q2 | q4<<4
				qh[l] = uint8(L[j+l])>>4 | (uint8(L[j+l+32])>>4)<<2 | (uint8(L[j+l+64])>>4)<<4 | (uint8(L[j+l+96])>>4)<<6
			}
			ql = ql[64:]
			qh = qh[32:]
		}
	}
}

// q6 returns the four 6-bit values (minus 32) stored at position l of a 128-value
// half of a Q6_K block: indices l, l+32, l+64, l+96.
func q6(ql, qh []byte, l int) (q1, q2, q3, q4 int32) {
	h := qh[l]
	q1 = int32(ql[l]&0x0f|(h&3)<<4) - 32
	q2 = int32(ql[l+32]&0x0f|(h>>2&3)<<4) - 32
	q3 = int32(ql[l]>>4|(h>>4&3)<<4) - 32
	q4 = int32(ql[l+32]>>4|(h>>6&3)<<4) - 32
	return
}

// DequantizeQ6_K is ggml's dequantize_row_q6_K: x = d*sc*(q-32) per 16 values.
func DequantizeQ6_K(dst []float32, src []byte) {
	nb := numBlocks("DequantizeQ6_K", len(dst), len(src), QK_K, BlockBytesQ6_K)
	for i := 0; i < nb; i++ {
		b := src[i*BlockBytesQ6_K : (i+1)*BlockBytesQ6_K]
		y := dst[i*QK_K : (i+1)*QK_K]
		d := f16(b[BlockBytesQ6_K-2:])
		ql, qh, sc := b[0:QK_K/2], b[QK_K/2:QK_K/2+QK_K/4], b[QK_K/2+QK_K/4:]
		for n := 0; n < QK_K; n += 128 {
			for l := 0; l < 32; l++ {
				is := l / 16
				q1, q2, q3, q4 := q6(ql, qh, l)
				y[n+l] = d * float32(int8(sc[is])) * float32(q1)
				y[n+l+32] = d * float32(int8(sc[is+2])) * float32(q2)
				y[n+l+64] = d * float32(int8(sc[is+4])) * float32(q3)
				y[n+l+96] = d * float32(int8(sc[is+6])) * float32(q4)
			}
			ql, qh, sc = ql[64:], qh[32:], sc[8:]
		}
	}
}

// DotQ6_KF32 returns Σ dequant(src)·x, per 16-value sub-block as d*sc*Σ(q-32)·x.
func DotQ6_KF32(src []byte, x []float32) float32 {
	nb := numBlocks("DotQ6_KF32", len(x), len(src), QK_K, BlockBytesQ6_K)
	var acc float32
	for i := 0; i < nb; i++ {
		b := src[i*BlockBytesQ6_K : (i+1)*BlockBytesQ6_K]
		xs := x[i*QK_K : (i+1)*QK_K]
		d := f16(b[BlockBytesQ6_K-2:])
		ql, qh, sc := b[0:QK_K/2], b[QK_K/2:QK_K/2+QK_K/4], b[QK_K/2+QK_K/4:]
		for n := 0; n < QK_K; n += 128 {
			var s [8]float32 // sub-block sums, indexed like sc[0:8] of this half
			for l := 0; l < 32; l++ {
				is := l / 16
				q1, q2, q3, q4 := q6(ql, qh, l)
				s[is] += float32(float32(q1) * xs[n+l])
				s[is+2] += float32(float32(q2) * xs[n+l+32])
				s[is+4] += float32(float32(q3) * xs[n+l+64])
				s[is+6] += float32(float32(q4) * xs[n+l+96])
			}
			for k := 0; k < 8; k++ {
				acc += float32(float32(d*float32(int8(sc[k]))) * s[k])
			}
			ql, qh, sc = ql[64:], qh[32:], sc[8:]
		}
	}
	return acc
}
