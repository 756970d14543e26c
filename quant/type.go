package quant

import (
	"errors"
	"fmt"
)

// Type is a ggml tensor element type, numbered as ggml_type in ggml.h (and so as
// stored in GGUF tensor infos).
type Type uint32

// The ggml types. Only F32, F16, BF16, Q4_0, Q5_0, Q8_0, Q4_K, Q5_K and Q6_K can be
// (de)quantized by this package; the others are known by name and size so that a
// GGUF file holding them can still be read and its tensors located.
const (
	F32     Type = 0
	F16     Type = 1
	Q4_0    Type = 2
	Q4_1    Type = 3
	Q5_0    Type = 6
	Q5_1    Type = 7
	Q8_0    Type = 8
	Q8_1    Type = 9
	Q2_K    Type = 10
	Q3_K    Type = 11
	Q4_K    Type = 12
	Q5_K    Type = 13
	Q6_K    Type = 14
	Q8_K    Type = 15
	IQ2_XXS Type = 16
	IQ2_XS  Type = 17
	IQ3_XXS Type = 18
	IQ1_S   Type = 19
	IQ4_NL  Type = 20
	IQ3_S   Type = 21
	IQ2_S   Type = 22
	IQ4_XS  Type = 23
	I8      Type = 24
	I16     Type = 25
	I32     Type = 26
	I64     Type = 27
	F64     Type = 28
	IQ1_M   Type = 29
	BF16    Type = 30
	TQ1_0   Type = 34
	TQ2_0   Type = 35
	MXFP4   Type = 39
	NVFP4   Type = 40
	Q1_0    Type = 41
)

// Block sizes (values per block) and block byte sizes of the implemented formats.
const (
	QK8_0 = 32  // values per Q8_0 block
	QK4_0 = 32  // values per Q4_0 block
	QK5_0 = 32  // values per Q5_0 block
	QK_K  = 256 // values per K-quant super-block

	BlockBytesQ8_0 = 2 + QK8_0                            // 34: f16 d, int8 qs[32]
	BlockBytesQ4_0 = 2 + QK4_0/2                          // 18: f16 d, qs[16]
	BlockBytesQ5_0 = 2 + 4 + QK5_0/2                      // 22: f16 d, qh[4], qs[16]
	BlockBytesQ4_K = 2 + 2 + kScaleSize + QK_K/2          // 144: d, dmin, scales[12], qs[128]
	BlockBytesQ5_K = 2 + 2 + kScaleSize + QK_K/8 + QK_K/2 // 176: d, dmin, scales[12], qh[32], qs[128]
	BlockBytesQ6_K = QK_K/2 + QK_K/4 + QK_K/16 + 2        // 210: ql[128], qh[64], scales[16], d

	kScaleSize = 12 // K_SCALE_SIZE: packed 6-bit scales and mins of Q4_K/Q5_K
)

type typeTraits struct {
	name      string
	blockSize int // values per block
	typeSize  int // bytes per block
	supported bool
}

var traits = [...]typeTraits{
	F32:     {"f32", 1, 4, true},
	F16:     {"f16", 1, 2, true},
	Q4_0:    {"q4_0", QK4_0, BlockBytesQ4_0, true},
	Q4_1:    {"q4_1", 32, 20, false},
	Q5_0:    {"q5_0", QK5_0, BlockBytesQ5_0, true},
	Q5_1:    {"q5_1", 32, 24, false},
	Q8_0:    {"q8_0", QK8_0, BlockBytesQ8_0, true},
	Q8_1:    {"q8_1", 32, 36, false},
	Q2_K:    {"q2_K", QK_K, 84, false},
	Q3_K:    {"q3_K", QK_K, 110, false},
	Q4_K:    {"q4_K", QK_K, BlockBytesQ4_K, true},
	Q5_K:    {"q5_K", QK_K, BlockBytesQ5_K, true},
	Q6_K:    {"q6_K", QK_K, BlockBytesQ6_K, true},
	Q8_K:    {"q8_K", QK_K, 292, false},
	IQ2_XXS: {"iq2_xxs", QK_K, 66, false},
	IQ2_XS:  {"iq2_xs", QK_K, 74, false},
	IQ3_XXS: {"iq3_xxs", QK_K, 98, false},
	IQ1_S:   {"iq1_s", QK_K, 50, false},
	IQ4_NL:  {"iq4_nl", 32, 18, false},
	IQ3_S:   {"iq3_s", QK_K, 110, false},
	IQ2_S:   {"iq2_s", QK_K, 82, false},
	IQ4_XS:  {"iq4_xs", QK_K, 136, false},
	I8:      {"i8", 1, 1, false},
	I16:     {"i16", 1, 2, false},
	I32:     {"i32", 1, 4, false},
	I64:     {"i64", 1, 8, false},
	F64:     {"f64", 1, 8, false},
	IQ1_M:   {"iq1_m", QK_K, 56, false},
	BF16:    {"bf16", 1, 2, true},
	TQ1_0:   {"tq1_0", QK_K, 54, false},
	TQ2_0:   {"tq2_0", QK_K, 66, false},
	MXFP4:   {"mxfp4", 32, 17, false},
	NVFP4:   {"nvfp4", 64, 36, false},
	Q1_0:    {"q1_0", 128, 18, false},
}

// Errors returned by this package; test with errors.Is.
var (
	// ErrUnknownType: the type id is not a ggml type this package knows.
	ErrUnknownType = errors.New("unknown ggml type")
	// ErrUnsupported: the type is known but cannot be (de)quantized here.
	ErrUnsupported = errors.New("type not supported for conversion")
	// ErrBlockSize: an element count is not a multiple of the type's block size.
	ErrBlockSize = errors.New("element count not a multiple of the block size")
	// ErrLength: a buffer has the wrong length for the element count.
	ErrLength = errors.New("buffer length mismatch")
)

func (t Type) traits() (typeTraits, bool) {
	if uint64(t) < uint64(len(traits)) && traits[t].blockSize != 0 {
		return traits[t], true
	}
	return typeTraits{}, false
}

// Valid reports whether t is a ggml type known to this package.
func (t Type) Valid() bool { _, ok := t.traits(); return ok }

// Supported reports whether Dequantize, Quantize and DotRow handle t.
func (t Type) Supported() bool { tr, _ := t.traits(); return tr.supported }

// String returns ggml's type name ("q4_K", "f16", ...), as ggml_type_name does.
func (t Type) String() string {
	if tr, ok := t.traits(); ok {
		return tr.name
	}
	return fmt.Sprintf("type(%d)", uint32(t))
}

// BlockSize is the number of values per block (1 for plain types), 0 if unknown.
func (t Type) BlockSize() int { tr, _ := t.traits(); return tr.blockSize }

// TypeSize is the number of bytes per block (ggml_type_size), 0 if unknown.
func (t Type) TypeSize() int { tr, _ := t.traits(); return tr.typeSize }

// IsQuantized reports whether t stores values in multi-value blocks.
func (t Type) IsQuantized() bool { return t.BlockSize() > 1 }

// RowBytes is the byte size of n values of type t (ggml_row_size). It fails if t is
// unknown, n is negative, n is not a multiple of the block size, or the size
// overflows int64.
func (t Type) RowBytes(n int64) (int64, error) {
	tr, ok := t.traits()
	if !ok {
		return 0, fmt.Errorf("quant: %w: %d", ErrUnknownType, uint32(t))
	}
	if n < 0 {
		return 0, fmt.Errorf("quant: %s: negative element count %d", tr.name, n)
	}
	if n%int64(tr.blockSize) != 0 {
		return 0, fmt.Errorf("quant: %s: %d values: %w %d", tr.name, n, ErrBlockSize, tr.blockSize)
	}
	blocks := n / int64(tr.blockSize)
	if blocks > (1<<63-1)/int64(tr.typeSize) {
		return 0, fmt.Errorf("quant: %s: %d values: byte size overflows int64", tr.name, n)
	}
	return blocks * int64(tr.typeSize), nil
}

// ParseType maps a ggml type name (case-insensitive, "Q4_K" or "q4_k") to a Type.
func ParseType(s string) (Type, error) {
	for t, tr := range traits {
		if tr.blockSize != 0 && equalFold(tr.name, s) {
			return Type(t), nil
		}
	}
	return 0, fmt.Errorf("quant: %w: %q", ErrUnknownType, s)
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
