package kernel

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime/debug"
	"testing"

	"github.com/dbrx-engine/dbrx/internal/parallel"
	"github.com/dbrx-engine/dbrx/quant"
	"github.com/dbrx-engine/dbrx/tensor"
)

// The oracle of this file is package quant (ggml-compatible codecs): a test may
// import it even though the kernel package itself may not.

var qTypes = []tensor.DType{tensor.Q8_0, tensor.Q4_0, tensor.Q5_0, tensor.Q4_K, tensor.Q5_K, tensor.Q6_K}

func ggmlType(t testing.TB, dt tensor.DType) quant.Type {
	q, ok := quant.FromDType(dt)
	if !ok {
		t.Fatalf("no ggml type for %s", dt)
	}
	return q
}

// randQMat quantizes a random rows×cols matrix (values ~ N(0,1) with a few
// outliers, like trained weights) to dt with quant's reference quantizer and
// returns it with its exact dequantization [rows*cols].
func randQMat(t testing.TB, r *rand.Rand, dt tensor.DType, rows, cols int) (Mat, []float32) {
	q := ggmlType(t, dt)
	rb, err := dt.RowBytes(cols)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, rows*rb+5)
	data := buf[3 : 3+rows*rb] // odd offset: nothing may assume alignment
	src := make([]float32, cols)
	deq := make([]float32, rows*cols)
	for i := 0; i < rows; i++ {
		for j := range src {
			src[j] = float32(r.NormFloat64())
			if r.IntN(97) == 0 {
				src[j] *= 8
			}
		}
		if err := quant.Quantize(q, data[i*rb:(i+1)*rb], src); err != nil {
			t.Fatal(err)
		}
		if err := quant.Dequantize(q, deq[i*cols:(i+1)*cols], data[i*rb:(i+1)*rb]); err != nil {
			t.Fatal(err)
		}
	}
	m, err := NewQMat(dt, rows, cols, data)
	if err != nil {
		t.Fatal(err)
	}
	return m, deq
}

// TestDequantMatchesQuant: the kernel decoders are bit-identical to quant's.
func TestDequantMatchesQuant(t *testing.T) {
	r := newRand(7)
	for _, dt := range qTypes {
		m, deq := randQMat(t, r, dt, 5, 512)
		got := make([]float32, m.Cols)
		for row := 0; row < m.Rows; row++ {
			m.DecodeRow(got, row)
			for j, v := range got {
				if math.Float32bits(v) != math.Float32bits(deq[row*m.Cols+j]) {
					t.Fatalf("%s row %d col %d: %v, quant says %v", dt, row, j, v, deq[row*m.Cols+j])
				}
			}
		}
	}
}

// refMatMulT is dst[t,n] = Σ_k x[t,k]·w[n,k] in float64, plus Σ|x·w| for the tolerance.
func refMatMulT(x, w []float32, T, N, K int) (ref, mag []float64) {
	ref, mag = make([]float64, T*N), make([]float64, T*N)
	for t := 0; t < T; t++ {
		for n := 0; n < N; n++ {
			var s, a float64
			for k := 0; k < K; k++ {
				p := float64(x[t*K+k]) * float64(w[n*K+k])
				s += p
				a += math.Abs(p)
			}
			ref[t*N+n], mag[t*N+n] = s, a
		}
	}
	return
}

func TestMatMulTQ(t *testing.T) {
	pool := parallel.New(3)
	defer pool.Close()
	r := newRand(11)
	for _, dt := range qTypes {
		bs := dt.BlockSize()
		for _, K := range []int{bs, 2 * bs, 3 * bs, 1024} {
			for _, N := range []int{1, 7, 33, 130} {
				m, wf := randQMat(t, r, dt, N, K)
				for _, T := range []int{0, 1, 2, 3, 4, 5, 7, 17, 33} {
					x := randF32(r, T*K)
					ref, mag := refMatMulT(x, wf, T, N, K)
					check := func(name string, got []float32, relTol float64) {
						t.Helper()
						for i := range ref {
							tol := relTol*mag[i] + 1e-6
							if d := math.Abs(float64(got[i]) - ref[i]); !(d <= tol) {
								t.Fatalf("%s %s N=%d K=%d T=%d: [%d] = %v, want %v (diff %.3g > tol %.3g)",
									name, dt, N, K, T, i, got[i], ref[i], d, tol)
							}
						}
					}
					// Float32 sums of K terms in any order: 2·K·2⁻²⁴ relative to Σ|terms|.
					floatTol := 2 * float64(K) * 0x1p-24
					for _, p := range []*parallel.Pool{nil, pool} {
						dst, done := guarded(t, T*N)
						MatMulTQ(p, dst, x, T, m)
						done()
						check("MatMulTQ", dst, floatTol)
					}
					saved := simd
					simd = nil // the plain-Go DotF32/GEMM path
					dst, done := guarded(t, T*N)
					MatMulTQ(pool, dst, x, T, m)
					simd = saved
					done()
					check("MatMulTQ(generic)", dst, floatTol)

					dst, done = guarded(t, T*N)
					matMulTQGeneric(dst, x, T, m)
					done()
					check("matMulTQGeneric", dst, floatTol)

					// 8-bit activations: each block of x is rounded to 1/254 of its
					// largest magnitude, so the error is bounded by Σ_blocks
					// max|x_b|/254·Σ|w_b|, well within 1% of Σ|x·w| for these data.
					if T > 0 {
						dst, done = guarded(t, T*N)
						MatMulTQ8(pool, dst, x, T, m)
						done()
						check("MatMulTQ8", dst, 2e-2)
					}
				}
			}
		}
	}
}

func TestMatMulTQPanics(t *testing.T) {
	r := newRand(3)
	m, _ := randQMat(t, r, tensor.Q8_0, 4, 64)
	x := make([]float32, 2*64)
	dst := make([]float32, 2*4)
	for name, f := range map[string]func(){
		"float dtype": func() {
			MatMulTQ(nil, dst, x, 2, Mat{DType: tensor.F32, Rows: 4, Cols: 64, Data: make([]byte, 4*64*4)})
		},
		"short x":     func() { MatMulTQ(nil, dst, x[:100], 2, m) },
		"short dst":   func() { MatMulTQ(nil, dst[:7], x, 2, m) },
		"short w":     func() { MatMulTQ(nil, dst, x, 2, Mat{DType: m.DType, Rows: 4, Cols: 64, Data: m.Data[:100]}) },
		"partial blk": func() { MatMulTQ(nil, dst, x, 2, Mat{DType: m.DType, Rows: 4, Cols: 48, Data: m.Data}) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
}

func TestQMatHelpers(t *testing.T) {
	r := newRand(5)
	m, wf := randQMat(t, r, tensor.Q4_K, 6, 512)
	if got, want := m.RowBytes(), 2*144; got != want {
		t.Errorf("RowBytes = %d, want %d", got, want)
	}
	if !m.IsQuantized() || (Mat{DType: tensor.BF16}).IsQuantized() {
		t.Error("IsQuantized wrong")
	}
	s := m.SliceRows(2, 5)
	if s.Rows != 3 || len(s.Data) != 3*m.RowBytes() {
		t.Fatalf("SliceRows: %d rows, %d bytes", s.Rows, len(s.Data))
	}
	row := make([]float32, 512)
	s.DecodeRow(row, 1)
	for j, v := range row {
		if v != wf[3*512+j] {
			t.Fatalf("SliceRows(2,5).DecodeRow(1)[%d] = %v, want %v", j, v, wf[3*512+j])
		}
	}
	// Float matrices: SliceRows == RowSlice, DecodeRow == Row.
	fm := randMat(r, tensor.BF16, 5, 9)
	if a, b := fm.SliceRows(1, 4), fm.RowSlice(1, 4); len(a.Data) != len(b.Data) || &a.Data[0] != &b.Data[0] {
		t.Error("SliceRows disagrees with RowSlice for BF16")
	}
	r1, r2 := make([]float32, 9), make([]float32, 9)
	fm.DecodeRow(r1, 3)
	fm.Row(r2, 3)
	for i := range r1 {
		if r1[i] != r2[i] {
			t.Fatalf("DecodeRow disagrees with Row at %d", i)
		}
	}
	for _, c := range []struct {
		dt         tensor.DType
		rows, cols int
		n          int
		ok         bool
	}{
		{tensor.Q8_0, 2, 64, 2 * 2 * 34, true},
		{tensor.Q8_0, 2, 64, 2*2*34 - 1, false},
		{tensor.Q4_K, 1, 128, 72, false}, // half a super-block
		{tensor.Q6_K, 3, 256, 3 * 210, true},
		{tensor.BF16, 3, 5, 30, true},
		{tensor.I32, 1, 1, 4, false},
	} {
		_, err := NewQMat(c.dt, c.rows, c.cols, make([]byte, c.n))
		if (err == nil) != c.ok {
			t.Errorf("NewQMat(%s, %d, %d, %d bytes): err %v, want ok=%v", c.dt, c.rows, c.cols, c.n, err, c.ok)
		}
	}
}

func TestMatMulTQAllocs(t *testing.T) {
	// Scratch may come from a sync.Pool, which a GC cycle (likely while other test
	// packages run) can empty: measure the steady state with GC off.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	pool := parallel.New(2)
	defer pool.Close()
	r := newRand(9)
	for _, dt := range []tensor.DType{tensor.Q8_0, tensor.Q4_K} {
		m, _ := randQMat(t, r, dt, 256, 512)
		for _, T := range []int{1, 9} {
			x := randF32(r, T*512)
			dst := make([]float32, T*256)
			MatMulTQ(pool, dst, x, T, m)
			if a := testing.AllocsPerRun(20, func() { MatMulTQ(pool, dst, x, T, m) }); a != 0 {
				t.Errorf("%s T=%d: %.1f allocations per call, want 0", dt, T, a)
			}
			MatMulTQ8(pool, dst, x, T, m)
			if a := testing.AllocsPerRun(20, func() { MatMulTQ8(pool, dst, x, T, m) }); a != 0 {
				t.Errorf("MatMulTQ8 %s T=%d: %.1f allocations per call, want 0", dt, T, a)
			}
		}
	}
}

// BenchmarkMatMulTQ compares the strategies on a BENCH-sized expert projection
// (N=1344 outputs, K=768 inputs) on one core. MB/s is weight bytes per second.
//
//	path=f32dot  MatMulTQ: decode rows to float32, SIMD DotF32 per token (T <= 4),
//	             or decode tiles and run the float32 GEMM (T > 4)
//	path=q8      MatMulTQ8: 8-bit activations, integer dots (ggml's scheme; the qdot
//	             kernels for Q8_0/Q4_0/Q5_0/Q4_K, plain Go for the others)
//	path=bf16    the same shape as BF16 through MatMulT, for reference
func BenchmarkMatMulTQ(b *testing.B) {
	var pool *parallel.Pool // single-threaded: per-core cost, less noise on a shared machine
	r := newRand(1)
	for _, dt := range []tensor.DType{tensor.Q8_0, tensor.Q4_0, tensor.Q5_0, tensor.Q4_K, tensor.Q6_K} {
		N, K := 1344, 768
		m, _ := randQMat(b, r, dt, N, K)
		for _, T := range []int{1, 4, 64} {
			x := randF32(r, T*K)
			dst := make([]float32, T*N)
			for _, path := range []string{"f32dot", "q8"} {
				b.Run(fmt.Sprintf("type=%s/T=%d/path=%s", dt, T, path), func(b *testing.B) {
					b.SetBytes(int64(len(m.Data)))
					b.ReportAllocs()
					for b.Loop() {
						if path == "q8" {
							MatMulTQ8(pool, dst, x, T, m)
						} else {
							MatMulTQ(pool, dst, x, T, m)
						}
					}
				})
			}
		}
	}
	N, K := 1344, 768
	w := randMat(r, tensor.BF16, N, K)
	for _, T := range []int{1, 4, 64} {
		x := randF32(r, T*K)
		dst := make([]float32, T*N)
		b.Run(fmt.Sprintf("type=BF16/T=%d/path=bf16", T), func(b *testing.B) {
			b.SetBytes(int64(len(w.Data)))
			b.ReportAllocs()
			for b.Loop() {
				MatMulT(pool, dst, x, T, w)
			}
		})
	}
}

// BenchmarkDequantRow measures the decoders alone (one core, 4096 values per op).
func BenchmarkDequantRow(b *testing.B) {
	r := newRand(2)
	for _, dt := range qTypes {
		m, _ := randQMat(b, r, dt, 1, 4096)
		dst := make([]float32, 4096)
		f := qFormatOf(dt)
		b.Run("type="+dt.String(), func(b *testing.B) {
			b.SetBytes(4096 * 4)
			for b.Loop() {
				f.dequant(dst, m.Data)
			}
		})
	}
}

// qScaleOffsets lists the byte offsets of the float16 scales in one block (the
// values a corrupt or adversarial file can set to Inf or NaN).
func qScaleOffsets(dt tensor.DType) []int {
	switch dt {
	case tensor.Q4_K, tensor.Q5_K:
		return []int{0, 2} // d, dmin
	case tensor.Q6_K:
		return []int{208}
	}
	return []int{0}
}

// qmvCase is one fused-kernel test: R rows of a quantized matrix at a misaligned
// offset with row stride ldw >= RowBytes, T tokens, dst rows ldd apart inside
// guard bands.
type qmvCase struct {
	dt        tensor.DType
	T, R, K   int
	pad       int // extra bytes between rows (ldw = RowBytes + pad)
	nonFinite bool
	w         []byte    // R rows at stride ldw
	wf        []float32 // dequantized rows [R, K] (quant's codec)
	x         []float32 // [T, ldx]
	ldw, ldx  int
	ldd       int
}

func newQmvCase(t *testing.T, r *rand.Rand, dt tensor.DType, T, R, K, pad int, nonFinite bool) *qmvCase {
	c := &qmvCase{dt: dt, T: T, R: R, K: K, pad: pad, nonFinite: nonFinite}
	m, wf := randQMat(t, r, dt, R, K)
	rb := m.RowBytes()
	c.ldw = rb + pad
	buf := make([]byte, R*c.ldw+7)
	c.w = buf[5 : 5+R*c.ldw] // odd offset
	for i := range c.w {
		c.w[i] = byte(r.Uint32()) // garbage in the padding
	}
	for row := 0; row < R; row++ {
		copy(c.w[row*c.ldw:], m.Data[row*rb:(row+1)*rb])
	}
	if nonFinite {
		// Row 0 block 0 gets +Inf, the last row's last block NaN, and (with three or
		// more rows) row 1's middle block −Inf: those rows' dots become non-finite.
		f := qFormatOf(dt)
		nb := K / f.block
		set := func(row, blk int, bits uint16) {
			for _, off := range qScaleOffsets(dt)[:1] {
				p := row*c.ldw + blk*f.bytes + off
				c.w[p], c.w[p+1] = byte(bits), byte(bits>>8)
			}
		}
		set(0, 0, 0x7c00)
		set(R-1, nb-1, 0x7e00)
		if R >= 3 {
			set(1, nb/2, 0xfc00)
		}
		q := ggmlType(t, dt)
		for row := 0; row < R; row++ {
			if err := quant.Dequantize(q, wf[row*K:(row+1)*K], c.w[row*c.ldw:row*c.ldw+rb]); err != nil {
				t.Fatal(err)
			}
		}
	}
	c.wf = wf
	c.ldx = K + 3
	c.x = randF32(r, T*c.ldx)
	c.ldd = R + 2
	return c
}

// run calls k on the case's operands with dst inside guard bands and returns dst.
func (c *qmvCase) run(t *testing.T, k qmvFunc) []float32 {
	t.Helper()
	dst, done := guarded(t, c.T*c.ldd)
	f := qFormatOf(c.dt)
	k(&dst[0], c.ldd, &c.x[0], c.ldx, &c.w[0], c.ldw, c.K/f.block)
	done()
	for tt := 0; tt < c.T; tt++ { // the gaps between dst rows are untouched too
		for j := c.R; j < c.ldd; j++ {
			if v := dst[tt*c.ldd+j]; math.Float32bits(v) != 0x7fc0dead {
				t.Fatalf("%s T=%d R=%d K=%d: wrote dst[%d][%d] = %v outside the block", c.dt, c.T, c.R, c.K, tt, j, v)
			}
		}
	}
	return dst
}

// TestQmvTwin: the plain twin qmvGo is exactly Σ dequant(w)·x, summed in index
// order in float32, with quant's codec as the dequantizer.
func TestQmvTwin(t *testing.T) {
	r := newRand(21)
	for _, dt := range qTypes {
		for _, K := range []int{256, 768} {
			c := newQmvCase(t, r, dt, 3, 5, K, 3, false)
			got := c.run(t, qmvGo(qFormatOf(dt), c.T, c.R))
			for tt := 0; tt < c.T; tt++ {
				for row := 0; row < c.R; row++ {
					var s float32
					for i := 0; i < K; i++ {
						s += c.x[tt*c.ldx+i] * c.wf[row*K+i]
					}
					if g := got[tt*c.ldd+row]; math.Float32bits(g) != math.Float32bits(s) {
						t.Fatalf("%s K=%d t=%d r=%d: twin %v, Σ dequant(w)·x = %v", dt, K, tt, row, g, s)
					}
				}
			}
		}
	}
}

// TestQmvKernels compares every fused kernel f.mv[T][R-1] with its twin at odd
// row counts and strides, misaligned weights and activations, K from one block to
// 4096+256, dst in guard bands, and Inf/NaN scales.
//
// Tolerance: the kernels dequantize every weight to exactly the float32 the twin
// uses (same operations) and differ only in the order of the K float32 products'
// summation (8 lanes, several accumulators, then a horizontal sum), so
//
//	|fast − twin| ≤ 2·K·2⁻²⁴·Σ|w·x|
//
// (each order is within K·2⁻²⁴·Σ|w·x| of the exact sum). Non-finite results must
// match in kind: NaN for NaN, ±Inf for the same ±Inf.
func TestQmvKernels(t *testing.T) {
	if simd == nil || fmtQ8_0.mv[1] == nil {
		t.Skip("no assembly kernels on this machine/build")
	}
	r := newRand(23)
	for _, dt := range qTypes {
		f := qFormatOf(dt)
		Ks := []int{256, 768, 4096 + 256}
		if f.block == 32 {
			Ks = append(Ks, 32, 64, 1344)
		}
		for T := 1; T <= qSmallT; T++ {
			for R := 1; R <= len(f.mv[T]); R++ {
				for _, K := range Ks {
					for _, nonFinite := range []bool{false, true} {
						pad := (R*7 + K/32) % 5 // 0..4 bytes between rows
						c := newQmvCase(t, r, dt, T, R, K, pad, nonFinite)
						twin := c.run(t, qmvGo(f, T, R))
						fast := c.run(t, f.mv[T][R-1])
						for tt := 0; tt < T; tt++ {
							for row := 0; row < R; row++ {
								var mag float64
								for i := 0; i < K; i++ {
									mag += math.Abs(float64(c.x[tt*c.ldx+i]) * float64(c.wf[row*K+i]))
								}
								a, b := float64(fast[tt*c.ldd+row]), float64(twin[tt*c.ldd+row])
								where := fmt.Sprintf("%s T=%d R=%d K=%d nonFinite=%v: dst[%d][%d]", dt, T, R, K, nonFinite, tt, row)
								switch {
								case math.IsNaN(b) || math.IsInf(b, 0) || math.IsNaN(a) || math.IsInf(a, 0):
									if !(math.IsNaN(a) && math.IsNaN(b)) && a != b {
										t.Fatalf("%s = %v, twin %v", where, a, b)
									}
								default:
									if d, tol := math.Abs(a-b), 2*float64(K)*0x1p-24*mag; d > tol {
										t.Fatalf("%s = %v, twin %v (diff %.3g > tol %.3g)", where, a, b, d, tol)
									}
								}
							}
						}
						if nonFinite && !math.IsInf(float64(fast[0]), 0) && !math.IsNaN(float64(fast[0])) {
							t.Fatalf("%s T=%d R=%d K=%d: an Inf scale gave a finite %v", dt, T, R, K, fast[0])
						}
					}
				}
			}
		}
	}
}

// TestQDecodeAsm: the assembly row decoders are bit-identical to the Go decoders
// and to quant's codec, Inf/NaN scales included (NaN compared as NaN), and write
// nothing outside their row.
func TestQDecodeAsm(t *testing.T) {
	r := newRand(25)
	for _, dt := range qTypes {
		f := qFormatOf(dt)
		if f.deq == nil {
			t.Skip("no assembly decoders on this machine/build")
		}
		for _, nb := range []int{1, 2, 3, 17} {
			K := nb * f.block
			m, deq := randQMat(t, r, dt, 1, K)
			for blk, off := range qScaleOffsets(dt) { // a non-finite scale in some blocks
				if blk < nb {
					p := blk*f.bytes + off
					m.Data[p], m.Data[p+1] = 0x00, 0x7c
				}
			}
			if nb > 2 {
				m.Data[2*f.bytes+qScaleOffsets(dt)[0]+1] = 0xfe // NaN
			}
			if err := quant.Dequantize(ggmlType(t, dt), deq, m.Data); err != nil {
				t.Fatal(err)
			}
			got, done := guarded(t, K)
			f.deq(&got[0], &m.Data[0], nb)
			done()
			goDec := make([]float32, K)
			f.dequant(goDec, m.Data)
			for i := range got {
				same := func(a, b float32) bool {
					return math.Float32bits(a) == math.Float32bits(b) || (a != a && b != b)
				}
				if !same(got[i], deq[i]) || !same(goDec[i], deq[i]) {
					t.Fatalf("%s nb=%d [%d]: asm %v, go %v, quant %v", dt, nb, i, got[i], goDec[i], deq[i])
				}
			}
		}
	}
}

// TestMatMulTQPaths: the fused, row and tile strategies and the plain twin agree
// (within the summation-order tolerance) at odd N, for every T up to 9.
func TestMatMulTQPaths(t *testing.T) {
	pool := parallel.New(2)
	defer pool.Close()
	r := newRand(27)
	for _, dt := range qTypes {
		for _, N := range []int{1, 5, 13, 67} {
			K := 512
			m, wf := randQMat(t, r, dt, N, K)
			for T := 1; T <= 9; T++ {
				x := randF32(r, T*K)
				ref, mag := refMatMulT(x, wf, T, N, K)
				for _, mode := range []int{qAuto, qRows, qTiles, qRowsGo} {
					dst, done := guarded(t, T*N)
					matMulTQ(pool, dst, x, T, m, mode)
					done()
					for i := range ref {
						if d, tol := math.Abs(float64(dst[i])-ref[i]), 2*float64(K)*0x1p-24*mag[i]+1e-6; !(d <= tol) {
							t.Fatalf("%s N=%d T=%d mode=%d: [%d] = %v, want %v", dt, N, T, mode, i, dst[i], ref[i])
						}
					}
				}
			}
		}
	}
}

// TestMatMulTQ8Kernels: the integer-dot kernels (qdot*) give the plain-Go dots'
// results: both sum the same exact integer block dots and differ only in the float
// accumulation of the per-block terms (tolerance 1e-5 of Σ|w·x|, far below the
// ~1e-3 of the activation rounding, so a different quantization would fail).
func TestMatMulTQ8Kernels(t *testing.T) {
	if simd == nil || fmtQ8_0.idot == nil {
		t.Skip("no assembly kernels on this machine/build")
	}
	pool := parallel.New(2)
	defer pool.Close()
	r := newRand(29)
	for _, dt := range qTypes {
		f := qFormatOf(dt)
		if f.idot == nil {
			continue
		}
		Ks := []int{256, 768, 4096 + 256}
		if f.block == 32 {
			Ks = append(Ks, 32, 1344)
		}
		for _, K := range Ks {
			for _, N := range []int{1, 2, 3, 7} {
				m, wf := randQMat(t, r, dt, N, K)
				for T := 1; T <= 3; T++ {
					x := randF32(r, T*K)
					_, mag := refMatMulT(x, wf, T, N, K)
					fast, done := guarded(t, T*N)
					MatMulTQ8(pool, fast, x, T, m)
					done()
					saved := simd
					simd = nil
					twin, done := guarded(t, T*N)
					MatMulTQ8(pool, twin, x, T, m)
					simd = saved
					done()
					for i := range fast {
						if d, tol := math.Abs(float64(fast[i])-float64(twin[i])), 1e-5*mag[i]+1e-6; !(d <= tol) {
							t.Fatalf("%s N=%d K=%d T=%d: [%d] = %v, Go dots %v (diff %.3g > %.3g)", dt, N, K, T, i, fast[i], twin[i], d, tol)
						}
					}
				}
			}
		}
	}
}
