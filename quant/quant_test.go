package quant

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/dbrx-engine/dbrx/tensor"
)

var implemented = []Type{F32, F16, BF16, Q4_0, Q5_0, Q8_0, Q4_K, Q5_K, Q6_K}

func gaussian(n int, sigma float64, seed uint64) []float32 {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64() * sigma)
	}
	return x
}

func TestTypeTable(t *testing.T) {
	cases := []struct {
		t          Type
		id         uint32
		name       string
		block, siz int
	}{
		{F32, 0, "f32", 1, 4}, {F16, 1, "f16", 1, 2}, {Q4_0, 2, "q4_0", 32, 18},
		{Q5_0, 6, "q5_0", 32, 22}, {Q8_0, 8, "q8_0", 32, 34}, {Q4_K, 12, "q4_K", 256, 144},
		{Q5_K, 13, "q5_K", 256, 176}, {Q6_K, 14, "q6_K", 256, 210}, {BF16, 30, "bf16", 1, 2},
		{Q4_1, 3, "q4_1", 32, 20}, {Q2_K, 10, "q2_K", 256, 84}, {Q3_K, 11, "q3_K", 256, 110},
		{IQ4_XS, 23, "iq4_xs", 256, 136}, {MXFP4, 39, "mxfp4", 32, 17}, {NVFP4, 40, "nvfp4", 64, 36},
	}
	for _, c := range cases {
		if uint32(c.t) != c.id || c.t.String() != c.name || c.t.BlockSize() != c.block || c.t.TypeSize() != c.siz {
			t.Errorf("%d: got id %d name %q block %d size %d, want %d %q %d %d",
				c.id, uint32(c.t), c.t.String(), c.t.BlockSize(), c.t.TypeSize(), c.id, c.name, c.block, c.siz)
		}
		if p, err := ParseType(c.name); err != nil || p != c.t {
			t.Errorf("ParseType(%q) = %v, %v", c.name, p, err)
		}
	}
	for _, bad := range []Type{4, 5, 31, 33, 36, 38, 42, 1 << 31} {
		if bad.Valid() || bad.BlockSize() != 0 || bad.String() != fmt.Sprintf("type(%d)", uint32(bad)) {
			t.Errorf("type %d should be unknown", uint32(bad))
		}
		if _, err := bad.RowBytes(32); !errors.Is(err, ErrUnknownType) {
			t.Errorf("RowBytes on type %d: %v", uint32(bad), err)
		}
	}
	for _, ty := range implemented {
		if !ty.Supported() {
			t.Errorf("%s not supported", ty)
		}
	}
	if Q4_1.Supported() || IQ2_XXS.Supported() {
		t.Error("unimplemented type reported supported")
	}
	if n, err := Q4_K.RowBytes(6144); err != nil || n != 24*144 {
		t.Errorf("Q4_K.RowBytes(6144) = %d, %v", n, err)
	}
	if n, err := Q8_0.RowBytes(0); err != nil || n != 0 {
		t.Errorf("Q8_0.RowBytes(0) = %d, %v", n, err)
	}
	for _, c := range []struct {
		t Type
		n int64
	}{{Q4_K, 6144 + 32}, {Q8_0, 33}, {Q6_K, 128}, {Q4_0, -32}} {
		if _, err := c.t.RowBytes(c.n); err == nil {
			t.Errorf("%s.RowBytes(%d) succeeded", c.t, c.n)
		}
	}
	if _, err := Q4_K.RowBytes(6144 + 32); !errors.Is(err, ErrBlockSize) {
		t.Errorf("want ErrBlockSize, got %v", err)
	}
	if _, err := Q8_0.RowBytes(math.MaxInt64 - 31); err == nil {
		t.Error("overflow not detected")
	}
}

// TestQ8_0Bytes checks one block against bytes worked out by hand: amax 127 gives
// d = 1 (f16 0x3c00) and q = roundf(x), halves rounding away from zero.
func TestQ8_0Bytes(t *testing.T) {
	x := make([]float32, 32)
	vals := []float32{-127, -119.5, 0.5, -0.5, 2.5, 3.4, -3.6, 126.49, 0}
	copy(x, vals)
	want := []byte{0x00, 0x3c}
	for _, q := range []int8{-127, -120, 1, -1, 3, 3, -4, 126, 0} {
		want = append(want, byte(q))
	}
	want = append(want, make([]byte, 32-len(vals))...)
	got := make([]byte, BlockBytesQ8_0)
	QuantizeQ8_0(got, x)
	if !bytes.Equal(got, want) {
		t.Fatalf("got  %x\nwant %x", got, want)
	}
	// amax 16: d = 16/127 = 0.125984..., f16 0x3008 (0.1259765625).
	x = make([]float32, 32)
	x[7] = -16
	x[8] = 1
	QuantizeQ8_0(got, x)
	if got[0] != 0x08 || got[1] != 0x30 || int8(got[2+7]) != -127 || int8(got[2+8]) != 8 {
		t.Fatalf("amax 16 block: %x", got)
	}
	y := make([]float32, 32)
	DequantizeQ8_0(y, got)
	if y[7] != -127*0.1259765625 || y[8] != 8*0.1259765625 || y[0] != 0 {
		t.Fatalf("dequantized %v", y[:9])
	}
}

// TestQ4_0Bytes checks blocks worked out by hand. The value of largest magnitude
// sets d = max/-8 and maps to q = 0; q = MIN(15, trunc(x/d + 8.5)); byte j holds
// value j (low nibble) and value j+16 (high nibble).
func TestQ4_0Bytes(t *testing.T) {
	x := make([]float32, 32)
	// max = -8 → d = 1 (0x3c00), q = trunc(x + 8.5).
	copy(x, []float32{-8, 7, 7.6, 0, -0.4, -0.6, 0.5, -0.5})
	copy(x[16:], []float32{1, 2, -1, -7.9, 3.49, 6.5})
	q := []uint8{0, 15, 15, 8, 8, 7, 9, 8, 8, 8, 8, 8, 8, 8, 8, 8,
		9, 10, 7, 0, 11, 15, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8}
	want := []byte{0x00, 0x3c}
	for j := 0; j < 16; j++ {
		want = append(want, q[j]|q[j+16]<<4)
	}
	got := make([]byte, BlockBytesQ4_0)
	QuantizeQ4_0(got, x)
	if !bytes.Equal(got, want) {
		t.Fatalf("got  %x\nwant %x", got, want)
	}
	// max = +8 → d = -1 (0xbc00), q = trunc(8.5 - x): 8 → 0, -8 → 16 → clamped 15.
	x = make([]float32, 32)
	copy(x, []float32{8, -8, 1, -1})
	QuantizeQ4_0(got, x)
	// Values 16..19 are 0 → q 8 in the high nibbles; q = 0, 15, 7, 9 in the low ones.
	if !bytes.Equal(got[:6], []byte{0x00, 0xbc, 0x80, 0x8f, 0x87, 0x89}) {
		t.Fatalf("got %x", got[:6])
	}
	y := make([]float32, 32)
	DequantizeQ4_0(y, got)
	if y[0] != 8 || y[1] != -7 || y[2] != 1 || y[3] != -1 || y[16] != 0 {
		t.Fatalf("dequantized %v", y[:4])
	}
}

// TestQ5_0Bytes: d = max/-16; bit 4 of value j is bit j of qh (little-endian).
func TestQ5_0Bytes(t *testing.T) {
	x := make([]float32, 32)
	x[0] = -16 // d = 1, q = 0
	x[1] = 15  // q = 31: low nibble 15, high bit set
	x[17] = 0  // q = 16: only the high bit
	x[18] = -1 // q = 15
	got := make([]byte, BlockBytesQ5_0)
	QuantizeQ5_0(got, x)
	if got[0] != 0x00 || got[1] != 0x3c {
		t.Fatalf("d bytes %x", got[:2])
	}
	qh := binary.LittleEndian.Uint32(got[2:6])
	// Values 2..15 and 16, 17, 19..31 are 0 → q = 16 → high bit set; value 0 has q 0,
	// value 18 has q 15.
	wantQH := uint32(0xffffffff) &^ (1 << 0) &^ (1 << 18)
	if qh != wantQH {
		t.Fatalf("qh = %032b, want %032b", qh, wantQH)
	}
	if got[6] != 0x00 || got[7] != 0x0f || got[6+2] != 0xf0 {
		t.Fatalf("qs = %x", got[6:])
	}
	y := make([]float32, 32)
	DequantizeQ5_0(y, got)
	if y[0] != -16 || y[1] != 15 || y[17] != 0 || y[18] != -1 {
		t.Fatalf("dequantized %v", y)
	}
}

// TestScaleMinK4 packs every (scale, min) combination position by position and
// decodes it back with get_scale_min_k4's rules, and checks one layout by hand.
func TestScaleMinK4(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for iter := 0; iter < 2000; iter++ {
		var ls, lm [8]uint8
		for j := range ls {
			ls[j], lm[j] = uint8(r.IntN(64)), uint8(r.IntN(64))
		}
		if iter < 64 { // sweep each value through every slot
			for j := range ls {
				ls[j], lm[j] = uint8(iter), uint8(63-iter)
			}
		}
		var q [12]byte
		packScaleMinK4(q[:], &ls, &lm)
		for j := 0; j < 8; j++ {
			sc, m := scaleMinK4(j, q[:])
			if sc != ls[j] || m != lm[j] {
				t.Fatalf("slot %d: got (%d,%d), want (%d,%d); packed %x", j, sc, m, ls[j], lm[j], q)
			}
		}
	}
	// Hand layout: scales 0..7 = 63,1,2,3, 40,41,42,43 and mins 0..7 = 10,11,12,13, 50,51,52,53.
	ls := [8]uint8{63, 1, 2, 3, 40, 41, 42, 43}
	lm := [8]uint8{10, 11, 12, 13, 50, 51, 52, 53}
	var q [12]byte
	packScaleMinK4(q[:], &ls, &lm)
	want := [12]byte{
		63 | (40>>4)<<6, 1 | (41>>4)<<6, 2 | (42>>4)<<6, 3 | (43>>4)<<6, // s[0..3]: scale j, high bits of scale j+4
		10 | (50>>4)<<6, 11 | (51>>4)<<6, 12 | (52>>4)<<6, 13 | (53>>4)<<6, // s[4..7]: min j, high bits of min j+4
		40&15 | (50&15)<<4, 41&15 | (51&15)<<4, 42&15 | (52&15)<<4, 43&15 | (53&15)<<4, // low nibbles
	}
	if q != want {
		t.Fatalf("packed %x, want %x", q, want)
	}
}

// TestRoundTripBounds quantizes fixed pseudo-random vectors and bounds the error
// of each value by what the format guarantees.
func TestRoundTripBounds(t *testing.T) {
	const n = 64 * 256
	x := gaussian(n, 1, 7)
	// Sprinkle block-scale variation and an outlier so blocks differ.
	for i := range x {
		x[i] *= float32(1 + (i/32)%5)
	}
	x[1000] = 40
	const f16rel = 1.0 / 2048 // f16 rounding of a scale: relative error ≤ 2^-11
	legacy := []struct {
		t      Type
		qk     int
		bound  func(d float32) float32 // per-value bound from the block's |d|
		dscale float32                 // d = maxabs / dscale
	}{
		{Q8_0, 32, func(d float32) float32 { return d * (0.5 + 127*f16rel) }, 127},
		{Q4_0, 32, func(d float32) float32 { return d * (1 + 8*f16rel) }, 8},
		{Q5_0, 32, func(d float32) float32 { return d * (1 + 16*f16rel) }, 16},
	}
	for _, c := range legacy {
		q := make([]byte, mustRowBytes(t, c.t, n))
		y := make([]float32, n)
		if err := Quantize(c.t, q, x); err != nil {
			t.Fatal(err)
		}
		if err := Dequantize(c.t, y, q); err != nil {
			t.Fatal(err)
		}
		for b := 0; b < n/c.qk; b++ {
			var amax float32
			for _, v := range x[b*c.qk : (b+1)*c.qk] {
				amax = max(amax, fabs(v))
			}
			d := amax / c.dscale
			bound := c.bound(d)*(1+1e-6) + 1e-30
			for i := b * c.qk; i < (b+1)*c.qk; i++ {
				if e := fabs(x[i] - y[i]); e > bound {
					t.Fatalf("%s value %d: |%g - %g| = %g > %g (d %g)", c.t, i, x[i], y[i], e, bound, d)
				}
			}
		}
	}
	// K-quants: values are fitted per sub-block against 6/8-bit scales; bound the
	// error by a fraction of the super-block's range (max - min over 256 values).
	kq := []struct {
		t    Type
		frac float32
	}{{Q4_K, 0.12}, {Q5_K, 0.06}, {Q6_K, 0.03}}
	for _, c := range kq {
		q := make([]byte, mustRowBytes(t, c.t, n))
		y := make([]float32, n)
		if err := Quantize(c.t, q, x); err != nil {
			t.Fatal(err)
		}
		if err := Dequantize(c.t, y, q); err != nil {
			t.Fatal(err)
		}
		var worst float32
		for b := 0; b < n/QK_K; b++ {
			lo, hi := x[b*QK_K], x[b*QK_K]
			for _, v := range x[b*QK_K : (b+1)*QK_K] {
				lo, hi = min(lo, v), max(hi, v)
			}
			for i := b * QK_K; i < (b+1)*QK_K; i++ {
				e := fabs(x[i]-y[i]) / (hi - lo)
				worst = max(worst, e)
				if e > c.frac {
					t.Fatalf("%s value %d: |%g - %g| = %g > %g of range %g", c.t, i, x[i], y[i], fabs(x[i]-y[i]), c.frac, hi-lo)
				}
			}
		}
		t.Logf("%s: worst |error| / super-block range = %.4f", c.t, worst)
	}
}

func mustRowBytes(t testing.TB, ty Type, n int) int {
	t.Helper()
	b, err := ty.RowBytes(int64(n))
	if err != nil {
		t.Fatal(err)
	}
	return int(b)
}

func rmsErr(x, y []float32) float64 {
	var s float64
	for i := range x {
		d := float64(x[i]) - float64(y[i])
		s += d * d
	}
	return math.Sqrt(s / float64(len(x)))
}

// TestRMSGaussian measures the RMS error of dequantize(quantize(x)) on N(0,1) data
// (2^20 values, σ = 1) and keeps it within ±12% of the values measured when this
// test was written: Q8_0 0.00535σ, Q6_K 0.0177σ, Q5_K 0.0362σ, Q5_0 0.0427σ,
// Q4_K 0.0714σ, Q4_0 0.0859σ. (For Q8_0 that is the uniform-rounding d/√12 with
// d = max|x|/127 over 32 values; Q4_K's fitted scale and min beat Q4_0's by ~17%.)
func TestRMSGaussian(t *testing.T) {
	n := 1 << 20
	if testing.Short() {
		n = 1 << 16
	}
	x := gaussian(n, 1, 42)
	measured := map[Type]float64{
		Q8_0: 0.00535, Q6_K: 0.0177, Q5_K: 0.0362, Q5_0: 0.0427, Q4_K: 0.0714, Q4_0: 0.0859,
	}
	for _, ty := range []Type{Q8_0, Q6_K, Q5_0, Q5_K, Q4_0, Q4_K} {
		q := make([]byte, mustRowBytes(t, ty, n))
		y := make([]float32, n)
		quantizeT(t, ty, q, x)
		if err := Dequantize(ty, y, q); err != nil {
			t.Fatal(err)
		}
		r := rmsErr(x, y)
		t.Logf("%s: RMS error = %.5f σ", ty, r)
		if m := measured[ty]; r < m*0.88 || r > m*1.12 {
			t.Errorf("%s: RMS error %.5f σ not within 12%% of %g σ", ty, r, m)
		}
	}
}

func quantizeT(t testing.TB, ty Type, q []byte, x []float32) {
	t.Helper()
	if err := Quantize(ty, q, x); err != nil {
		t.Fatal(err)
	}
}

// TestRequantize: for Q8_0, Q4_0 and Q5_0, ggml's quantizer is a fixed point on its
// own output (the extreme value maps to ±127, -8 or -16 exactly and d is
// recovered), so quantize(dequantize(q)) == q byte for byte. The K-quants search
// scales and are not fixed points; for them re-quantizing must not move values by
// more than the first quantization's RMS error.
func TestRequantize(t *testing.T) {
	const n = 32 * 256
	x := gaussian(n, 0.05, 3)
	for _, ty := range []Type{Q8_0, Q4_0, Q5_0, Q4_K, Q5_K, Q6_K, F16, BF16} {
		q1 := make([]byte, mustRowBytes(t, ty, n))
		q2 := make([]byte, len(q1))
		y1 := make([]float32, n)
		y2 := make([]float32, n)
		quantizeT(t, ty, q1, x)
		dequantizeT(t, ty, y1, q1)
		quantizeT(t, ty, q2, y1)
		dequantizeT(t, ty, y2, q2)
		switch ty {
		case Q8_0, Q4_0, Q5_0, F16, BF16:
			if !bytes.Equal(q1, q2) {
				t.Errorf("%s: re-quantization changed the bytes", ty)
			}
		default:
			same := 0
			for i := range y1 {
				if y1[i] == y2[i] {
					same++
				}
			}
			e1, e2 := rmsErr(x, y1), rmsErr(y1, y2)
			t.Logf("%s: re-quantization keeps %.1f%% of values, moves RMS %.3g (first pass error %.3g)",
				ty, 100*float64(same)/n, e2, e1)
			if e2 > e1 {
				t.Errorf("%s: re-quantization moved values by RMS %g, more than the first error %g", ty, e2, e1)
			}
		}
	}
}

func dequantizeT(t testing.TB, ty Type, y []float32, q []byte) {
	t.Helper()
	if err := Dequantize(ty, y, q); err != nil {
		t.Fatal(err)
	}
}

// TestDotRow compares every Dot function with a float64 dot product of the
// dequantized row, at several row lengths.
func TestDotRow(t *testing.T) {
	for _, ty := range implemented {
		for _, blocks := range []int{0, 1, 3, 24} {
			n := blocks * ty.BlockSize()
			if ty.BlockSize() == 1 {
				n = []int{0, 1, 7, 6147}[min(blocks, 3)]
			}
			t.Run(fmt.Sprintf("type=%s/n=%d", ty, n), func(t *testing.T) {
				w := gaussian(n, 0.1, uint64(n)+1)
				x := gaussian(n, 1, uint64(n)+2)
				q := make([]byte, mustRowBytes(t, ty, n))
				quantizeT(t, ty, q, w)
				y := make([]float32, n)
				dequantizeT(t, ty, y, q)
				var want, mag float64
				for i := range y {
					want += float64(y[i]) * float64(x[i])
					mag += math.Abs(float64(y[i]) * float64(x[i]))
				}
				got := DotRow(ty, q, x)
				if d := math.Abs(float64(got) - want); d > 1e-5*mag+1e-30 {
					t.Errorf("DotRow = %g, want %g (diff %g, Σ|w·x| %g)", got, want, d, mag)
				}
			})
		}
	}
}

func TestLengthChecks(t *testing.T) {
	for _, ty := range implemented {
		bs := ty.BlockSize()
		x := make([]float32, 2*bs)
		q := make([]byte, 2*ty.TypeSize())
		if err := Quantize(ty, q[:len(q)-1], x); !errors.Is(err, ErrLength) {
			t.Errorf("%s: short dst: %v", ty, err)
		}
		if err := Dequantize(ty, x, append(q, 0)); !errors.Is(err, ErrLength) {
			t.Errorf("%s: long src: %v", ty, err)
		}
		if bs > 1 {
			if err := Quantize(ty, q, x[:bs+1]); !errors.Is(err, ErrBlockSize) {
				t.Errorf("%s: partial block: %v", ty, err)
			}
		}
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: DotRow with mismatched lengths did not panic", ty)
				}
			}()
			DotRow(ty, q[:len(q)-1], x)
		}()
	}
	if err := Quantize(Q4_1, nil, nil); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Q4_1: %v", err)
	}
	if err := Dequantize(Type(99), nil, nil); !errors.Is(err, ErrUnknownType) {
		t.Errorf("type 99: %v", err)
	}
}

// TestNonFinite: NaN and Inf inputs must not panic (the values produced are as
// meaningless as ggml's).
func TestNonFinite(t *testing.T) {
	x := gaussian(512, 1, 9)
	x[3] = float32(math.NaN())
	x[300] = float32(math.Inf(1))
	x[301] = float32(math.Inf(-1))
	for _, ty := range implemented {
		q := make([]byte, mustRowBytes(t, ty, len(x)))
		quantizeT(t, ty, q, x)
		y := make([]float32, len(x))
		dequantizeT(t, ty, y, q)
		_ = DotRow(ty, q, x)
	}
}

// ggmlFP32ToFP16 is ggml_compute_fp32_to_fp16 (ggml-impl.h), the conversion
// ggml's quantizers use, transcribed for comparison with tensor.F32ToF16.
func ggmlFP32ToFP16(f float32) uint16 {
	scaleToInf := math.Float32frombits(0x77800000)  // 0x1.0p+112f
	scaleToZero := math.Float32frombits(0x08800000) // 0x1.0p-110f
	base := float32(fabs(f)*scaleToInf) * scaleToZero
	w := math.Float32bits(f)
	shl1w := w + w
	sign := w & 0x80000000
	bias := shl1w & 0xFF000000
	if bias < 0x71000000 {
		bias = 0x71000000
	}
	base = math.Float32frombits(bias>>1+0x07800000) + base
	bits := math.Float32bits(base)
	expBits := (bits >> 13) & 0x00007C00
	mantBits := bits & 0x00000FFF
	nonsign := expBits + mantBits
	if shl1w > 0xFF000000 {
		return uint16(sign>>16) | 0x7E00
	}
	return uint16(sign>>16) | uint16(nonsign)
}

// TestF16MatchesGGML checks that the f16 rounding used for block scales is ggml's.
func TestF16MatchesGGML(t *testing.T) {
	check := func(f float32) {
		if a, b := tensor.F32ToF16(f), ggmlFP32ToFP16(f); a != b {
			t.Fatalf("F32ToF16(%g = %#08x) = %#04x, ggml %#04x", f, math.Float32bits(f), a, b)
		}
	}
	r := rand.New(rand.NewPCG(11, 12))
	for i := 0; i < 1<<20; i++ {
		check(math.Float32frombits(r.Uint32()))
	}
	// Every f16 value, and the midpoints and neighbours between consecutive ones.
	for h := uint32(0); h < 1<<16; h++ {
		f := tensor.F16ToF32(uint16(h))
		if f != f {
			continue
		}
		u := math.Float32bits(f)
		for _, d := range []int32{-1, 0, 1, 0x1000 - 1, 0x1000, 0x1000 + 1} {
			check(math.Float32frombits(uint32(int32(u) + d)))
		}
	}
}
