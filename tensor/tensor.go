// Package tensor holds the element types, shapes and number conversions that every
// layer above it shares: DType names the storage type of a weight, Shape its dimensions,
// and the bf16/f16 helpers widen and narrow single values and slices.
//
// Tensors are not copied here: a weight is a []byte view (often into an mmap'd file)
// plus a DType and a Shape; kernels widen bf16/f16 to float32 as they read.
package tensor

import (
	"encoding/binary"
	"fmt"
	"math"
	"unsafe"
)

// DType is the element type of stored tensor data.
type DType uint8

// The stored element types. Quantized block types live in package quant.
const (
	Invalid DType = iota
	F32
	F16
	BF16
	I32
	I64
	U8
	I8
	F64
	U32
)

var dtypeNames = [...]string{Invalid: "invalid", F32: "F32", F16: "F16", BF16: "BF16", I32: "I32", I64: "I64", U8: "U8", I8: "I8", F64: "F64", U32: "U32"}
var dtypeSizes = [...]int{Invalid: 0, F32: 4, F16: 2, BF16: 2, I32: 4, I64: 8, U8: 1, I8: 1, F64: 8, U32: 4}

// String returns the safetensors spelling of the dtype ("F32", "BF16", ...).
func (d DType) String() string {
	if int(d) < len(dtypeNames) {
		return dtypeNames[d]
	}
	if n, ok := blockName(d); ok {
		return n
	}
	return fmt.Sprintf("DType(%d)", uint8(d))
}

// Size is the number of bytes of one element, 0 for Invalid.
func (d DType) Size() int {
	if int(d) < len(dtypeSizes) {
		return dtypeSizes[d]
	}
	return 0
}

// ParseDType maps a safetensors dtype string to a DType.
func ParseDType(s string) (DType, error) {
	for i, n := range dtypeNames {
		if i != int(Invalid) && n == s {
			return DType(i), nil
		}
	}
	return Invalid, fmt.Errorf("tensor: unknown dtype %q", s)
}

// Shape lists dimensions outermost first (PyTorch / row-major order).
type Shape []int

// NumElements is the product of the dimensions (1 for a scalar shape).
// It returns -1 if any dimension is negative or the product overflows int64.
func (s Shape) NumElements() int64 {
	n := int64(1)
	for _, d := range s {
		if d < 0 {
			return -1
		}
		if d != 0 && n > math.MaxInt64/int64(d) {
			return -1
		}
		n *= int64(d)
	}
	return n
}

// Equal reports whether two shapes have the same dimensions.
func (s Shape) Equal(o Shape) bool {
	if len(s) != len(o) {
		return false
	}
	for i := range s {
		if s[i] != o[i] {
			return false
		}
	}
	return true
}

func (s Shape) String() string { return fmt.Sprint([]int(s)) }

// BF16ToF32 widens one bfloat16 bit pattern exactly.
func BF16ToF32(b uint16) float32 { return math.Float32frombits(uint32(b) << 16) }

// F32ToBF16 rounds to the nearest bfloat16, ties to even; NaN stays NaN.
func F32ToBF16(f float32) uint16 {
	u := math.Float32bits(f)
	if u&0x7fffffff > 0x7f800000 { // NaN: keep it quiet and non-zero
		return uint16(u>>16) | 0x40
	}
	u += 0x7fff + (u>>16)&1
	return uint16(u >> 16)
}

// F16ToF32 widens one IEEE half-precision bit pattern exactly.
func F16ToF32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h) & 0x3ff
	switch {
	case exp == 0 && mant == 0:
		return math.Float32frombits(sign)
	case exp == 0: // subnormal: value = mant * 2^-24
		f := float32(mant) * (1.0 / (1 << 24))
		if sign != 0 {
			f = -f
		}
		return f
	case exp == 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
}

// F32ToF16 rounds to the nearest half-precision value, ties to even, with overflow to Inf.
func F32ToF16(f float32) uint16 {
	u := math.Float32bits(f)
	sign := uint16(u>>16) & 0x8000
	exp := int32(u>>23) & 0xff
	mant := u & 0x7fffff
	if exp == 0xff {
		if mant != 0 {
			return sign | 0x7e00
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e <= 0 {
		if e < -10 {
			return sign
		}
		mant |= 0x800000
		shift := uint32(14 - e)
		half := uint32(1) << (shift - 1)
		r := mant >> shift
		rem := mant & (1<<shift - 1)
		if rem > half || (rem == half && r&1 == 1) {
			r++
		}
		return sign | uint16(r)
	}
	r := uint32(e)<<10 | mant>>13
	rem := mant & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && r&1 == 1) {
		r++ // may carry into the exponent, which is the correct rounding (up to Inf)
	}
	return sign | uint16(r)
}

// Float32s reinterprets little-endian F32 bytes as []float32 without copying.
// len(b) must be a multiple of 4; the caller guarantees 4-byte alignment (mmap'd
// safetensors data starts 8-byte aligned, Go allocations are aligned).
func Float32s(b []byte) []float32 {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), len(b)/4)
}

// Uint16s reinterprets little-endian 16-bit bytes (BF16/F16) as []uint16 without copying.
func Uint16s(b []byte) []uint16 {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Slice((*uint16)(unsafe.Pointer(&b[0])), len(b)/2)
}

// Float32Bytes reinterprets a []float32 as its little-endian bytes without copying.
func Float32Bytes(f []float32) []byte {
	if len(f) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&f[0])), len(f)*4)
}

// Uint16Bytes reinterprets a []uint16 as its little-endian bytes without copying.
func Uint16Bytes(u []uint16) []byte {
	if len(u) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&u[0])), len(u)*2)
}

// ToFloat32 widens data of the given dtype into dst (len(dst) elements).
func ToFloat32(dst []float32, dt DType, data []byte) error {
	switch dt {
	case F32:
		if len(data) < 4*len(dst) {
			return fmt.Errorf("tensor: F32 data has %d bytes, need %d", len(data), 4*len(dst))
		}
		for i := range dst {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[4*i:]))
		}
	case BF16, F16:
		if len(data) < 2*len(dst) {
			return fmt.Errorf("tensor: %s data has %d bytes, need %d", dt, len(data), 2*len(dst))
		}
		for i := range dst {
			h := binary.LittleEndian.Uint16(data[2*i:])
			if dt == BF16 {
				dst[i] = BF16ToF32(h)
			} else {
				dst[i] = F16ToF32(h)
			}
		}
	default:
		return fmt.Errorf("tensor: cannot widen %s to F32", dt)
	}
	return nil
}
