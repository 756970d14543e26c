package quant

import (
	"fmt"
	"math"

	"github.com/dbrx-engine/dbrx/tensor"
)

// groupMaxEps is ggml's GROUP_MAX_EPS: a group whose largest magnitude is below it
// quantizes to all zeros.
const groupMaxEps = 1e-15

// nearestInt is ggml's nearest_int: round to nearest, ties to even, by adding
// 1.5·2^23 and reading the low mantissa bits. Exact for |f| <= 2^22; outside that
// range it returns the same (meaningless) value as the C code, never panicking.
func nearestInt(f float32) int32 {
	v := float32(f) + 12582912 // the conversion keeps a caller's product from fusing into this add
	i := int32(math.Float32bits(v))
	return (i & 0x007fffff) - 0x00400000
}

// fabs is fabsf: clears the sign bit.
func fabs(f float32) float32 { return math.Float32frombits(math.Float32bits(f) &^ (1 << 31)) }

// roundf is C roundf: round half away from zero.
func roundf(f float32) float32 { return float32(math.Round(float64(f))) }

// sqrtf is C sqrtf (a correctly rounded float64 square root rounded to float32 is
// the correctly rounded float32 square root).
func sqrtf(f float32) float32 { return float32(math.Sqrt(float64(f))) }

func f16(b []byte) float32 { return tensor.F16ToF32(uint16(b[0]) | uint16(b[1])<<8) }

func putF16(b []byte, f float32) {
	h := tensor.F32ToF16(f)
	b[0], b[1] = byte(h), byte(h>>8)
}

// numBlocks checks that n values of a format with qk-value, bsz-byte blocks occupy
// exactly nbytes bytes and returns the block count; it panics otherwise.
func numBlocks(fn string, n, nbytes, qk, bsz int) int {
	if n%qk != 0 || nbytes != n/qk*bsz {
		panic(fmt.Sprintf("quant: %s: %d values need a multiple of %d values and %d bytes, got %d bytes",
			fn, n, qk, (n/qk)*bsz, nbytes))
	}
	return n / qk
}

func clampInt(v, lo, hi int32) int32 {
	// MAX(lo, MIN(hi, v)) as ggml writes it.
	if v > hi {
		v = hi
	}
	if v < lo {
		v = lo
	}
	return v
}
