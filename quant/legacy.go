package quant

import "encoding/binary"

// ---- Q8_0 ----

// QuantizeQ8_0 is ggml's quantize_row_q8_0_ref: per 32 values d = max|x|/127,
// q = roundf(x/d). len(src) must be a multiple of 32 and len(dst) the matching
// byte count (34 per block).
func QuantizeQ8_0(dst []byte, src []float32) {
	nb := numBlocks("QuantizeQ8_0", len(src), len(dst), QK8_0, BlockBytesQ8_0)
	for i := 0; i < nb; i++ {
		x := src[i*QK8_0 : (i+1)*QK8_0]
		y := dst[i*BlockBytesQ8_0 : (i+1)*BlockBytesQ8_0]
		var amax float32
		for _, v := range x {
			if a := fabs(v); !(amax > a) { // MAX(amax, fabsf(v))
				amax = a
			}
		}
		d := amax / 127
		var id float32
		if d != 0 {
			id = 1 / d
		}
		putF16(y, d)
		for j, v := range x {
			y[2+j] = byte(int8(int32(roundf(v * id))))
		}
	}
}

// DequantizeQ8_0 is ggml's dequantize_row_q8_0: x = q*d.
func DequantizeQ8_0(dst []float32, src []byte) {
	nb := numBlocks("DequantizeQ8_0", len(dst), len(src), QK8_0, BlockBytesQ8_0)
	for i := 0; i < nb; i++ {
		b := src[i*BlockBytesQ8_0 : (i+1)*BlockBytesQ8_0]
		y := dst[i*QK8_0 : (i+1)*QK8_0]
		d := f16(b)
		for j := range y {
			y[j] = float32(int8(b[2+j])) * d
		}
	}
}

// DotQ8_0F32 returns Σ dequant(src)·x, accumulated in float32 as
// Σ_blocks d·(Σ_j q_j·x_j), each sum in index order.
func DotQ8_0F32(src []byte, x []float32) float32 {
	nb := numBlocks("DotQ8_0F32", len(x), len(src), QK8_0, BlockBytesQ8_0)
	var acc float32
	for i := 0; i < nb; i++ {
		b := src[i*BlockBytesQ8_0 : (i+1)*BlockBytesQ8_0]
		xs := x[i*QK8_0 : (i+1)*QK8_0]
		qs := b[2 : 2+QK8_0]
		var s float32
		for j, xv := range xs {
			s += float32(float32(int8(qs[j])) * xv)
		}
		acc += float32(f16(b) * s)
	}
	return acc
}

// ---- Q4_0 ----

// absMax returns the value of largest magnitude (the first one on ties), as ggml's
// "if (amax < fabsf(v)) { amax = fabsf(v); max = v; }" loop does.
func absMax(x []float32) float32 {
	var amax, max float32
	for _, v := range x {
		if a := fabs(v); amax < a {
			amax, max = a, v
		}
	}
	return max
}

// QuantizeQ4_0 is ggml's quantize_row_q4_0_ref: d = max/-8 where max is the value
// of largest magnitude, q = MIN(15, (int8)(x/d + 8.5)). Value j of a block goes in
// the low nibble of byte j, value j+16 in its high nibble.
func QuantizeQ4_0(dst []byte, src []float32) {
	nb := numBlocks("QuantizeQ4_0", len(src), len(dst), QK4_0, BlockBytesQ4_0)
	for i := 0; i < nb; i++ {
		x := src[i*QK4_0 : (i+1)*QK4_0]
		y := dst[i*BlockBytesQ4_0 : (i+1)*BlockBytesQ4_0]
		d := absMax(x) / -8
		var id float32
		if d != 0 {
			id = 1 / d
		}
		putF16(y, d)
		for j := 0; j < QK4_0/2; j++ {
			x0 := float32(x[j] * id)
			x1 := float32(x[j+QK4_0/2] * id)
			xi0 := min(15, int32(int8(int32(x0+8.5))))
			xi1 := min(15, int32(int8(int32(x1+8.5))))
			y[2+j] = uint8(xi0) | uint8(xi1)<<4
		}
	}
}

// DequantizeQ4_0 is ggml's dequantize_row_q4_0: x = (q-8)*d.
func DequantizeQ4_0(dst []float32, src []byte) {
	nb := numBlocks("DequantizeQ4_0", len(dst), len(src), QK4_0, BlockBytesQ4_0)
	for i := 0; i < nb; i++ {
		b := src[i*BlockBytesQ4_0 : (i+1)*BlockBytesQ4_0]
		y := dst[i*QK4_0 : (i+1)*QK4_0]
		d := f16(b)
		for j := 0; j < QK4_0/2; j++ {
			q := b[2+j]
			y[j] = float32(int32(q&0x0f)-8) * d
			y[j+QK4_0/2] = float32(int32(q>>4)-8) * d
		}
	}
}

// DotQ4_0F32 returns Σ dequant(src)·x as Σ_blocks d·(Σ_j (q_j-8)·x_j).
func DotQ4_0F32(src []byte, x []float32) float32 {
	nb := numBlocks("DotQ4_0F32", len(x), len(src), QK4_0, BlockBytesQ4_0)
	var acc float32
	for i := 0; i < nb; i++ {
		b := src[i*BlockBytesQ4_0 : (i+1)*BlockBytesQ4_0]
		xs := x[i*QK4_0 : (i+1)*QK4_0]
		var s float32
		for j := 0; j < QK4_0/2; j++ {
			q := b[2+j]
			s += float32(float32(int32(q&0x0f)-8) * xs[j])
			s += float32(float32(int32(q>>4)-8) * xs[j+QK4_0/2])
		}
		acc += float32(f16(b) * s)
	}
	return acc
}

// ---- Q5_0 ----

// QuantizeQ5_0 is ggml's quantize_row_q5_0_ref: d = max/-16, q = MIN(31,
// (int8)(x/d + 16.5)); the low 4 bits are packed as in Q4_0 and bit 4 of value j
// is bit j of the little-endian uint32 qh.
func QuantizeQ5_0(dst []byte, src []float32) {
	nb := numBlocks("QuantizeQ5_0", len(src), len(dst), QK5_0, BlockBytesQ5_0)
	for i := 0; i < nb; i++ {
		x := src[i*QK5_0 : (i+1)*QK5_0]
		y := dst[i*BlockBytesQ5_0 : (i+1)*BlockBytesQ5_0]
		d := absMax(x) / -16
		var id float32
		if d != 0 {
			id = 1 / d
		}
		putF16(y, d)
		var qh uint32
		for j := 0; j < QK5_0/2; j++ {
			x0 := float32(x[j] * id)
			x1 := float32(x[j+QK5_0/2] * id)
			xi0 := uint8(min(31, int32(int8(int32(x0+16.5)))))
			xi1 := uint8(min(31, int32(int8(int32(x1+16.5)))))
			y[6+j] = xi0&0x0f | (xi1&0x0f)<<4
			qh |= uint32(xi0&0x10) >> 4 << j
			qh |= uint32(xi1&0x10) >> 4 << (j + QK5_0/2)
		}
		binary.LittleEndian.PutUint32(y[2:6], qh)
	}
}

// DequantizeQ5_0 is ggml's dequantize_row_q5_0: x = (q-16)*d.
func DequantizeQ5_0(dst []float32, src []byte) {
	nb := numBlocks("DequantizeQ5_0", len(dst), len(src), QK5_0, BlockBytesQ5_0)
	for i := 0; i < nb; i++ {
		b := src[i*BlockBytesQ5_0 : (i+1)*BlockBytesQ5_0]
		y := dst[i*QK5_0 : (i+1)*QK5_0]
		d := f16(b)
		qh := binary.LittleEndian.Uint32(b[2:6])
		for j := 0; j < QK5_0/2; j++ {
			xh0 := uint8(qh>>j<<4) & 0x10
			xh1 := uint8(qh>>(j+12)) & 0x10
			y[j] = float32(int32(b[6+j]&0x0f|xh0)-16) * d
			y[j+QK5_0/2] = float32(int32(b[6+j]>>4|xh1)-16) * d
		}
	}
}

// DotQ5_0F32 returns Σ dequant(src)·x as Σ_blocks d·(Σ_j (q_j-16)·x_j).
func DotQ5_0F32(src []byte, x []float32) float32 {
	nb := numBlocks("DotQ5_0F32", len(x), len(src), QK5_0, BlockBytesQ5_0)
	var acc float32
	for i := 0; i < nb; i++ {
		b := src[i*BlockBytesQ5_0 : (i+1)*BlockBytesQ5_0]
		xs := x[i*QK5_0 : (i+1)*QK5_0]
		qh := binary.LittleEndian.Uint32(b[2:6])
		var s float32
		for j := 0; j < QK5_0/2; j++ {
			xh0 := uint8(qh>>j<<4) & 0x10
			xh1 := uint8(qh>>(j+12)) & 0x10
			s += float32(float32(int32(b[6+j]&0x0f|xh0)-16) * xs[j])
			s += float32(float32(int32(b[6+j]>>4|xh1)-16) * xs[j+QK5_0/2])
		}
		acc += float32(f16(b) * s)
	}
	return acc
}
