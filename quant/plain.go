package quant

import (
	"encoding/binary"
	"math"

	"github.com/dbrx-engine/dbrx/tensor"
)

// DequantizeF32 widens little-endian F32 bytes (a copy).
func DequantizeF32(dst []float32, src []byte) {
	numBlocks("DequantizeF32", len(dst), len(src), 1, 4)
	for i := range dst {
		dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
	}
}

// QuantizeF32 stores src as little-endian F32 bytes.
func QuantizeF32(dst []byte, src []float32) {
	numBlocks("QuantizeF32", len(src), len(dst), 1, 4)
	for i, v := range src {
		binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(v))
	}
}

// DotF32F32 returns Σ src·x accumulated in float32 in index order.
func DotF32F32(src []byte, x []float32) float32 {
	numBlocks("DotF32F32", len(x), len(src), 1, 4)
	var s float32
	for i, xv := range x {
		s += float32(math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:])) * xv)
	}
	return s
}

// DequantizeF16 widens little-endian IEEE half values exactly.
func DequantizeF16(dst []float32, src []byte) {
	numBlocks("DequantizeF16", len(dst), len(src), 1, 2)
	for i := range dst {
		dst[i] = tensor.F16ToF32(binary.LittleEndian.Uint16(src[2*i:]))
	}
}

// QuantizeF16 rounds to half precision, nearest-even (GGML_FP32_TO_FP16).
func QuantizeF16(dst []byte, src []float32) {
	numBlocks("QuantizeF16", len(src), len(dst), 1, 2)
	for i, v := range src {
		binary.LittleEndian.PutUint16(dst[2*i:], tensor.F32ToF16(v))
	}
}

// DotF16F32 returns Σ src·x accumulated in float32 in index order.
func DotF16F32(src []byte, x []float32) float32 {
	numBlocks("DotF16F32", len(x), len(src), 1, 2)
	var s float32
	for i, xv := range x {
		s += float32(tensor.F16ToF32(binary.LittleEndian.Uint16(src[2*i:])) * xv)
	}
	return s
}

// DequantizeBF16 widens little-endian bfloat16 values exactly.
func DequantizeBF16(dst []float32, src []byte) {
	numBlocks("DequantizeBF16", len(dst), len(src), 1, 2)
	for i := range dst {
		dst[i] = tensor.BF16ToF32(binary.LittleEndian.Uint16(src[2*i:]))
	}
}

// QuantizeBF16 rounds to bfloat16, nearest-even, as ggml_compute_fp32_to_bf16.
func QuantizeBF16(dst []byte, src []float32) {
	numBlocks("QuantizeBF16", len(src), len(dst), 1, 2)
	for i, v := range src {
		binary.LittleEndian.PutUint16(dst[2*i:], tensor.F32ToBF16(v))
	}
}

// DotBF16F32 returns Σ src·x accumulated in float32 in index order.
func DotBF16F32(src []byte, x []float32) float32 {
	numBlocks("DotBF16F32", len(x), len(src), 1, 2)
	var s float32
	for i, xv := range x {
		s += float32(tensor.BF16ToF32(binary.LittleEndian.Uint16(src[2*i:])) * xv)
	}
	return s
}
