package kernel

import (
	"fmt"
	"math"
	"math/rand/v2"
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
						matMulTQ8(pool, dst, x, T, m)
						done()
						check("matMulTQ8", dst, 2e-2)
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
		}
	}
}

// BenchmarkMatMulTQ compares the strategies on a BENCH-sized expert projection
// (N=1344 outputs, K=768 inputs) on one core. MB/s is weight bytes per second.
//
//	path=f32dot  MatMulTQ: decode rows to float32, SIMD DotF32 per token (T <= 4),
//	             or decode tiles and run the float32 GEMM (T > 4)
//	path=q8      matMulTQ8: 8-bit activations, integer dots in plain Go (ggml's scheme)
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
							matMulTQ8(pool, dst, x, T, m)
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
