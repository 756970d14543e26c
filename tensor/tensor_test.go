package tensor

import (
	"math"
	"testing"
)

func TestBF16RoundTrip(t *testing.T) {
	// Every bf16 pattern widens exactly and narrows back to itself (NaNs stay NaN).
	for b := 0; b < 1<<16; b++ {
		f := BF16ToF32(uint16(b))
		got := F32ToBF16(f)
		if math.IsNaN(float64(f)) {
			if !math.IsNaN(float64(BF16ToF32(got))) {
				t.Fatalf("NaN %#04x narrowed to non-NaN %#04x", b, got)
			}
			continue
		}
		if got != uint16(b) {
			t.Fatalf("bf16 %#04x -> %g -> %#04x", b, f, got)
		}
	}
	// Round to nearest, ties to even.
	for _, tc := range []struct {
		in   uint32
		want uint16
	}{
		{0x3f808000, 0x3f80}, // tie, even stays
		{0x3f818000, 0x3f82}, // tie, odd rounds up
		{0x3f808001, 0x3f81}, // above half
		{0x3f807fff, 0x3f80}, // below half
		{0x7f7fffff, 0x7f80}, // max float rounds to +Inf
	} {
		if got := F32ToBF16(math.Float32frombits(tc.in)); got != tc.want {
			t.Errorf("F32ToBF16(%#08x) = %#04x, want %#04x", tc.in, got, tc.want)
		}
	}
}

func TestF16RoundTrip(t *testing.T) {
	for h := 0; h < 1<<16; h++ {
		f := F16ToF32(uint16(h))
		got := F32ToF16(f)
		if math.IsNaN(float64(f)) {
			if got&0x7c00 != 0x7c00 || got&0x3ff == 0 {
				t.Fatalf("NaN %#04x narrowed to %#04x", h, got)
			}
			continue
		}
		if got != uint16(h) {
			t.Fatalf("f16 %#04x -> %g -> %#04x", h, f, got)
		}
	}
	for _, tc := range []struct {
		in   float32
		want uint16
	}{
		{65520, 0x7c00},                           // rounds up to Inf
		{65504, 0x7bff},                           // max finite
		{float32(math.Ldexp(1, -24)), 0x0001},     // smallest subnormal
		{float32(math.Ldexp(1, -25)), 0x0000},     // tie to even (zero)
		{float32(math.Ldexp(1.5, -24)), 0x0002},   // tie to even (2)
		{1 + float32(math.Ldexp(1, -11)), 0x3c00}, // tie, even stays
	} {
		if got := F32ToF16(tc.in); got != tc.want {
			t.Errorf("F32ToF16(%g) = %#04x, want %#04x", tc.in, got, tc.want)
		}
	}
}

func TestShapeAndDType(t *testing.T) {
	if n := (Shape{3, 4, 5}).NumElements(); n != 60 {
		t.Errorf("NumElements = %d", n)
	}
	if n := (Shape{-1, 4}).NumElements(); n != -1 {
		t.Errorf("negative dim: %d", n)
	}
	if n := (Shape{1 << 40, 1 << 40}).NumElements(); n != -1 {
		t.Errorf("overflow: %d", n)
	}
	for _, s := range []string{"F32", "BF16", "F16", "I64"} {
		d, err := ParseDType(s)
		if err != nil || d.String() != s {
			t.Errorf("ParseDType(%q) = %v, %v", s, d, err)
		}
	}
	if _, err := ParseDType("F8"); err == nil {
		t.Error("unknown dtype accepted")
	}
	if b, err := Q8_0.RowBytes(64); err != nil || b != 68 {
		t.Errorf("Q8_0 row of 64 = %d, %v", b, err)
	}
	if _, err := Q4_K.RowBytes(1344); err == nil {
		t.Error("Q4_K row of 1344 (not a multiple of 256) accepted")
	}
	if Q4_K.String() != "Q4_K" || !Q6_K.IsQuantized() || F32.IsQuantized() {
		t.Error("block dtype names/flags")
	}
}

func TestToFloat32(t *testing.T) {
	src := []float32{1, -2.5, 3e-3}
	dst := make([]float32, 3)
	if err := ToFloat32(dst, F32, Float32Bytes(src)); err != nil || dst[1] != -2.5 {
		t.Errorf("F32: %v %v", dst, err)
	}
	if err := ToFloat32(dst, BF16, make([]byte, 4)); err == nil {
		t.Error("short BF16 data accepted")
	}
	if err := ToFloat32(dst, I64, make([]byte, 24)); err == nil {
		t.Error("I64 widened")
	}
}
