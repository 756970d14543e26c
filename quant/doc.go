// Package quant implements ggml's block quantization formats bit-compatibly with
// llama.cpp (ggml-quants.c): Q8_0, Q4_0, Q5_0 (32-element blocks) and the K-quants
// Q4_K, Q5_K, Q6_K (256-element super-blocks), plus the plain F32, F16 and BF16
// element types that share ggml's type ids.
//
// Every format has three plain-Go entry points:
//
//   - DequantizeXxx(dst []float32, src []byte) — ggml's dequantize_row_xxx.
//   - QuantizeXxx(dst []byte, src []float32) — ggml's quantize_row_xxx_ref, the
//     reference (non-imatrix) path that llama-quantize uses when no importance
//     matrix is given. Output bytes equal ggml's for the same input.
//   - DotXxxF32(src []byte, x []float32) float32 — the dot product of the
//     dequantized row with x, used by matrix-vector kernels (the test oracle for
//     faster kernels).
//
// The generic Dequantize, Quantize and DotRow dispatch on a Type.
//
// # Bit compatibility
//
// ggml's reference quantizers are written in C float (binary32) arithmetic with a
// rounding trick (nearest_int: add 1.5·2^23 and read the mantissa, i.e. round half
// to even) and f16 conversion with round-to-nearest-even. This package repeats every
// operation in the same order in float32, and wraps each product that feeds an
// addition in an explicit float32 conversion so that the Go compiler never fuses it
// into an FMA (the Go spec allows fusion otherwise; GOAMD64=v3 and arm64 do it). The
// C side is thus matched as compiled without floating-point contraction, which is
// how llama.cpp builds it on x86-64 (ggml-quants.c lives in ggml-base, compiled for
// the baseline ISA, which has no FMA). A build that contracts a*b+c into an FMA
// (gcc on arm64, for example) can differ in the last bit of an intermediate and so,
// rarely, in a quantized value.
//
// # Layout summary (ggml-common.h)
//
//	Q8_0  32 values, 34 bytes: f16 d, int8 qs[32];                     x = d*q
//	Q4_0  32 values, 18 bytes: f16 d, qs[16] (lo nibble j, hi j+16);   x = d*(q-8)
//	Q5_0  32 values, 22 bytes: f16 d, u32 qh (bit 5 of q_j), qs[16];   x = d*(q-16)
//	Q4_K 256 values, 144 bytes: f16 d, f16 dmin, scales[12], qs[128];  x = d*sc*q - dmin*m
//	Q5_K 256 values, 176 bytes: f16 d, f16 dmin, scales[12], qh[32], qs[128]
//	Q6_K 256 values, 210 bytes: ql[128], qh[64], int8 scales[16], f16 d; x = d*sc*(q-32)
//
// The K-quant "scales" arrays hold eight 6-bit scales and eight 6-bit mins
// (get_scale_min_k4): for j < 4 scale = s[j]&63, min = s[j+4]&63; for j >= 4
// scale = s[j+4]&15 | (s[j-4]>>6)<<4 and min = s[j+4]>>4 | (s[j]>>6)<<4.
//
// # Panics
//
// The per-format functions and DotRow are kernels: they panic when slice lengths
// do not match (a programming error, like an out-of-range index). Dequantize,
// Quantize and RowBytes validate and return errors instead.
package quant
