package quant

import "fmt"

type formatFuncs struct {
	dequantize func(dst []float32, src []byte)
	quantize   func(dst []byte, src []float32)
	dot        func(src []byte, x []float32) float32
}

var formats = [...]formatFuncs{
	F32:  {DequantizeF32, QuantizeF32, DotF32F32},
	F16:  {DequantizeF16, QuantizeF16, DotF16F32},
	BF16: {DequantizeBF16, QuantizeBF16, DotBF16F32},
	Q4_0: {DequantizeQ4_0, QuantizeQ4_0, DotQ4_0F32},
	Q5_0: {DequantizeQ5_0, QuantizeQ5_0, DotQ5_0F32},
	Q8_0: {DequantizeQ8_0, QuantizeQ8_0, DotQ8_0F32},
	Q4_K: {DequantizeQ4_K, QuantizeQ4_K, DotQ4_KF32},
	Q5_K: {DequantizeQ5_K, QuantizeQ5_K, DotQ5_KF32},
	Q6_K: {DequantizeQ6_K, QuantizeQ6_K, DotQ6_KF32},
}

func (t Type) funcs() (formatFuncs, error) {
	if !t.Valid() {
		return formatFuncs{}, fmt.Errorf("quant: %w: %d", ErrUnknownType, uint32(t))
	}
	if int(t) >= len(formats) || formats[t].dot == nil {
		return formatFuncs{}, fmt.Errorf("quant: %s: %w", t, ErrUnsupported)
	}
	return formats[t], nil
}

func (t Type) checkLen(values, nbytes int) error {
	want, err := t.RowBytes(int64(values))
	if err != nil {
		return err
	}
	if int64(nbytes) != want {
		return fmt.Errorf("quant: %s: %d values need %d bytes, got %d: %w", t, values, want, nbytes, ErrLength)
	}
	return nil
}

// Dequantize decodes src, holding len(dst) values of type t, into dst.
func Dequantize(t Type, dst []float32, src []byte) error {
	f, err := t.funcs()
	if err != nil {
		return err
	}
	if err := t.checkLen(len(dst), len(src)); err != nil {
		return err
	}
	f.dequantize(dst, src)
	return nil
}

// Quantize encodes src into dst as type t with ggml's reference quantizer.
// len(dst) must be exactly t.RowBytes(len(src)).
func Quantize(t Type, dst []byte, src []float32) error {
	f, err := t.funcs()
	if err != nil {
		return err
	}
	if err := t.checkLen(len(src), len(dst)); err != nil {
		return err
	}
	f.quantize(dst, src)
	return nil
}

// DotRow returns the dot product of one stored row of type t with x: the row must
// hold exactly len(x) values (len(row) == t.RowBytes(len(x))). It panics on an
// unsupported type or mismatched lengths; validate shapes once up front with
// RowBytes. It is the plain-Go reference for matrix-vector kernels.
func DotRow(t Type, row []byte, x []float32) float32 {
	if int(t) >= len(formats) || formats[t].dot == nil {
		panic(fmt.Sprintf("quant: DotRow: unsupported type %s", t))
	}
	return formats[t].dot(row, x)
}
