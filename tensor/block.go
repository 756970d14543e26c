package tensor

import "fmt"

// Block-quantized storage types (ggml's formats, bit-compatible with llama.cpp). Their
// elements come in blocks; Size() is 0 for them: use BlockSize, BlockBytes and RowBytes.
// The block layouts and codecs live in package quant.
const (
	Q4_0 DType = 32 + iota // 32 values: f16 scale + 16 bytes of 4-bit values
	Q5_0                   // 32 values: f16 scale + 4 bytes high bits + 16 bytes
	Q8_0                   // 32 values: f16 scale + 32 int8
	Q4_K                   // 256 values: super-block with 6-bit scales/mins, 4-bit values
	Q5_K                   // 256 values: as Q4_K plus one high bit per value
	Q6_K                   // 256 values: 6-bit values, int8 scales
)

var blockInfo = map[DType]struct {
	name          string
	values, bytes int
}{
	Q4_0: {"Q4_0", 32, 18},
	Q5_0: {"Q5_0", 32, 22},
	Q8_0: {"Q8_0", 32, 34},
	Q4_K: {"Q4_K", 256, 144},
	Q5_K: {"Q5_K", 256, 176},
	Q6_K: {"Q6_K", 256, 210},
}

// IsQuantized reports whether d is a block-quantized type.
func (d DType) IsQuantized() bool { _, ok := blockInfo[d]; return ok }

// BlockSize is the number of values per block (1 for plain types).
func (d DType) BlockSize() int {
	if b, ok := blockInfo[d]; ok {
		return b.values
	}
	return 1
}

// BlockBytes is the number of bytes per block (Size() for plain types).
func (d DType) BlockBytes() int {
	if b, ok := blockInfo[d]; ok {
		return b.bytes
	}
	return d.Size()
}

// RowBytes is the storage size of n values, which must fill whole blocks.
func (d DType) RowBytes(n int) (int, error) {
	if d.BlockBytes() == 0 {
		return 0, fmt.Errorf("tensor: %s has no storage size", d)
	}
	bs := d.BlockSize()
	if n%bs != 0 {
		return 0, fmt.Errorf("tensor: %s needs rows that are a multiple of %d values, got %d", d, bs, n)
	}
	return n / bs * d.BlockBytes(), nil
}

func blockName(d DType) (string, bool) {
	b, ok := blockInfo[d]
	return b.name, ok
}
