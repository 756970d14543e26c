package quant

import (
	"fmt"
	"testing"
)

// benchRow is one DBRX hidden-size row (d = 6144).
const benchRow = 6144

// BenchmarkDequantize reports MB/s of quantized input bytes decoded.
func BenchmarkDequantize(b *testing.B) {
	for _, ty := range implemented {
		b.Run(fmt.Sprintf("type=%s", ty), func(b *testing.B) {
			x := gaussian(benchRow, 0.02, 1)
			q := make([]byte, mustRowBytes(b, ty, benchRow))
			quantizeT(b, ty, q, x)
			y := make([]float32, benchRow)
			b.SetBytes(int64(len(q)))
			b.ReportAllocs()
			for b.Loop() {
				if err := Dequantize(ty, y, q); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDotRow reports MB/s of quantized weight bytes read: the figure that
// bounds decode speed.
func BenchmarkDotRow(b *testing.B) {
	for _, ty := range implemented {
		b.Run(fmt.Sprintf("type=%s", ty), func(b *testing.B) {
			w := gaussian(benchRow, 0.02, 1)
			x := gaussian(benchRow, 1, 2)
			q := make([]byte, mustRowBytes(b, ty, benchRow))
			quantizeT(b, ty, q, w)
			b.SetBytes(int64(len(q)))
			b.ReportAllocs()
			var sink float32
			for b.Loop() {
				sink += DotRow(ty, q, x)
			}
			_ = sink
		})
	}
}

// BenchmarkQuantize reports MB/s of float32 input quantized.
func BenchmarkQuantize(b *testing.B) {
	for _, ty := range implemented {
		b.Run(fmt.Sprintf("type=%s", ty), func(b *testing.B) {
			x := gaussian(benchRow, 0.02, 1)
			q := make([]byte, mustRowBytes(b, ty, benchRow))
			b.SetBytes(int64(4 * benchRow))
			b.ReportAllocs()
			for b.Loop() {
				quantizeT(b, ty, q, x)
			}
		})
	}
}
