package kernel

import (
	"encoding/binary"
	"fmt"
	"math"
	"sync"

	"github.com/dbrx-engine/dbrx/internal/parallel"
	"github.com/dbrx-engine/dbrx/tensor"
)

// This file holds the products with ggml block-quantized weights (Q8_0, Q4_0, Q5_0,
// Q4_K, Q5_K, Q6_K; layouts in package quant's doc). The decoders repeat quant's
// Dequantize arithmetic bit for bit (quant's codecs are the test oracle; the layer
// table keeps this package from importing quant).
//
// A quantized Mat [Rows, Cols] holds each row as Cols/BlockSize consecutive blocks
// (a ggml row), so Data is Rows·RowBytes(Cols) bytes and row slicing is exact.
//
// Two plain-Go strategies, chosen by the token count T:
//
//   - decode (T <= qSmallT): each weight row is decoded once into a float32 scratch
//     row in L1 and dotted with every token by the SIMD DotF32;
//   - prefill (T > qSmallT): a tile of rows is decoded to float32 and handed to the
//     float32 MatMulT (the blocked GEMM), so the inner loop is the same FMA
//     micro-kernel as for bf16 weights.
//
// Both multiply the exactly dequantized weights in float32, so prefill and cached
// decode agree to rounding, as for float weights. matMulTQ8 is ggml's alternative
// (activations quantized to 8-bit blocks of 32, integer block dots), kept tested
// and benchmarked as the reference for an assembly version. BenchmarkMatMulTQ (one
// core, N=1344 × K=768, a shared and noisy 2-core machine; ms per call, 3 runs):
//
//	          T=1          T=4          T=64
//	Q8_0      0.94-1.09    1.18-1.23    5.6-6.2     (MatMulTQ)
//	Q8_0 q8   1.16         4.6-8.5      90-97       (matMulTQ8)
//	Q4_K      0.81-0.84    1.39-1.67    9.1-9.3     (MatMulTQ)
//	Q4_K q8   0.89-0.91    6.5-16       66-111      (matMulTQ8)
//	BF16      0.070-0.075  0.125        2.3-2.6     (MatMulT, AVX2)
//
// so in plain Go the integer path loses everywhere (it also adds activation
// rounding and would make decode and prefill differ).
// The decoders, not the dots, are the cost (~0.8-1 ns per value on one core,
// BenchmarkDequantRow): ~12× slower than streaming BF16 through the AVX2 matvec.
// What would pay off next, in assembly: (1) a fused decode+dot matvec per type
// (VPMOVSXBD/VPSHUFB nibble unpack + VCVTDQ2PS + FMA against x, 4-8 rows at a time,
// as mvT does for bf16); (2) for T=1, ggml's integer path with AVX-512 VNNI
// VPDPBUSD (int8·uint8 dots, 64 per instruction) on Q8-quantized activations;
// (3) a quantized packB for the GEMM so prefill decodes straight into packed panels.

// qFormat describes one block type.
type qFormat struct {
	block, bytes int // values and bytes per block
	// dequant decodes a whole row: len(dst) values from len(dst)/block blocks.
	dequant func(dst []float32, src []byte)
	// dotQ8 returns Σ w·x for one row against one token's 8-bit activation blocks
	// (xq [K] int8, xd [K/32] scales, xs [K/32] sums of xq per block).
	dotQ8 func(w []byte, xq []int8, xd []float32, xs []int32) float32
}

var (
	fmtQ8_0 = qFormat{32, 34, dequantQ8_0, dotQ8_0Q8}
	fmtQ4_0 = qFormat{32, 18, dequantQ4_0, dotQ4_0Q8}
	fmtQ5_0 = qFormat{32, 22, dequantQ5_0, dotQ5_0Q8}
	fmtQ4_K = qFormat{256, 144, dequantQ4_K, dotQ4_KQ8}
	fmtQ5_K = qFormat{256, 176, dequantQ5_K, dotQ5_KQ8}
	fmtQ6_K = qFormat{256, 210, dequantQ6_K, dotQ6_KQ8}
)

// qFormatOf returns the format of a block type, nil for any other dtype.
func qFormatOf(dt tensor.DType) *qFormat {
	switch dt {
	case tensor.Q8_0:
		return &fmtQ8_0
	case tensor.Q4_0:
		return &fmtQ4_0
	case tensor.Q5_0:
		return &fmtQ5_0
	case tensor.Q4_K:
		return &fmtQ4_K
	case tensor.Q5_K:
		return &fmtQ5_K
	case tensor.Q6_K:
		return &fmtQ6_K
	}
	return nil
}

// IsQuantized reports whether MatMulTQ (rather than MatMulT) handles w.
func (m Mat) IsQuantized() bool { return qFormatOf(m.DType) != nil }

// RowBytes is the storage size of one row of m: Cols·Size() for float types,
// Cols/BlockSize·BlockBytes for block types (Cols must fill whole blocks).
func (m Mat) RowBytes() int {
	if f := qFormatOf(m.DType); f != nil {
		return m.Cols / f.block * f.bytes
	}
	return m.Cols * m.DType.Size()
}

// SliceRows returns the sub-matrix of rows [r0, r1) without copying. Unlike
// RowSlice it also handles block types (a quantized row is a whole number of blocks).
func (m Mat) SliceRows(r0, r1 int) Mat {
	rb := m.RowBytes()
	return Mat{DType: m.DType, Rows: r1 - r0, Cols: m.Cols, Data: m.Data[r0*rb : r1*rb]}
}

// DecodeRow widens (or dequantizes) row r into dst[:Cols], for float and block
// types alike (an embedding lookup).
func (m Mat) DecodeRow(dst []float32, r int) {
	rb := m.RowBytes()
	src := m.Data[r*rb : (r+1)*rb]
	if f := qFormatOf(m.DType); f != nil {
		f.dequant(dst[:m.Cols], src)
		return
	}
	_ = tensor.ToFloat32(dst[:m.Cols], m.DType, src)
}

// NewQMat is NewMat for every weight type the kernels take: F32, BF16, F16 and the
// block types, checking that cols fills whole blocks and data holds exactly
// rows·RowBytes(cols) bytes.
func NewQMat(dt tensor.DType, rows, cols int, data []byte) (Mat, error) {
	if qFormatOf(dt) == nil {
		return NewMat(dt, rows, cols, data)
	}
	if rows < 0 || cols < 0 {
		return Mat{}, fmt.Errorf("kernel: %s matrix [%d, %d]: negative size", dt, rows, cols)
	}
	rb, err := dt.RowBytes(cols)
	if err != nil {
		return Mat{}, fmt.Errorf("kernel: %s matrix [%d, %d]: %v", dt, rows, cols, err)
	}
	if want := rows * rb; len(data) != want {
		return Mat{}, fmt.Errorf("kernel: %s matrix [%d, %d] needs %d bytes, have %d", dt, rows, cols, want, len(data))
	}
	return Mat{DType: dt, Rows: rows, Cols: cols, Data: data}, nil
}

// Tuning of MatMulTQ (see BenchmarkMatMulTQ).
const (
	qSmallT   = 4       // T <= qSmallT: decode one row at a time and DotF32 per token
	qTileF32s = 1 << 15 // float32s per decoded prefill tile (128 KiB, fits L2 with x)
)

// MatMulTQ computes dst[t, n] = Σ_k x[t, k] · w[n, k] for t < T, n < w.Rows (y =
// x·wᵀ, as MatMulT) for a block-quantized w (Q8_0, Q4_0, Q5_0, Q4_K, Q5_K, Q6_K).
//
//	dst [T, w.Rows] f32, x [T, w.Cols] f32, w [N, K] block type, K % BlockSize == 0
//
// Weights are dequantized exactly (as quant.Dequantize) and multiplied in float32,
// so the result equals dequantize-then-MatMulT up to summation order. Work is split
// over output rows across the pool (nil: single-threaded); a warmed-up call
// allocates nothing. It panics on a non-block dtype or mis-sized operands, like
// MatMulT.
func MatMulTQ(p *parallel.Pool, dst, x []float32, T int, w Mat) {
	f := qFormatOf(w.DType)
	N, K := w.Rows, w.Cols
	if f == nil {
		panic(fmt.Sprintf("kernel: MatMulTQ: %s is not a block-quantized type", w.DType))
	}
	if T < 0 || N < 0 || K < 0 || K%f.block != 0 {
		panic(fmt.Sprintf("kernel: MatMulTQ: %s [%d, %d] with T=%d: K must be a non-negative multiple of %d", w.DType, N, K, T, f.block))
	}
	rb := K / f.block * f.bytes
	if len(dst) < T*N || len(x) < T*K || len(w.Data) < N*rb {
		panic(fmt.Sprintf("kernel: MatMulTQ: dst %d, x %d floats, w %s [%d,%d] %d bytes do not fit T=%d",
			len(dst), len(x), w.DType, N, K, len(w.Data), T))
	}
	if T == 0 || N == 0 {
		return
	}
	if K == 0 {
		clear(dst[:T*N])
		return
	}
	t := qTaskPool.Get().(*qTask)
	t.dst, t.x, t.T, t.w, t.N, t.K, t.rb, t.f = dst, x, T, w, N, K, rb, f
	if T <= qSmallT {
		p.For(N, max(1, 2048/K), t.fnRows)
	} else {
		t.tile = max(1, min(N, qTileF32s/K))
		p.For((N+t.tile-1)/t.tile, 1, t.fnTiles)
	}
	t.dst, t.x, t.w, t.f = nil, nil, Mat{}, nil
	qTaskPool.Put(t)
}

// qTask carries one MatMulTQ through parallel.Pool.For without allocating: tasks
// are pooled with their method values bound once.
type qTask struct {
	dst, x    []float32
	T, N, K   int
	w         Mat
	rb        int // bytes per weight row
	f         *qFormat
	tile      int // rows per prefill tile
	xq        []int8
	xd        []float32
	xs        []int32
	fnRows    func(lo, hi int)
	fnTiles   func(lo, hi int)
	fnRowsQ8  func(lo, hi int)
	fnQuantX  func(lo, hi int)
	fnGeneric func(lo, hi int)
}

var qTaskPool = sync.Pool{New: func() any {
	t := new(qTask)
	t.fnRows, t.fnTiles, t.fnRowsQ8, t.fnQuantX, t.fnGeneric = t.rows, t.tiles, t.rowsQ8, t.quantX, t.generic
	return t
}}

// qScratch is a worker's decoded rows (and, for tiles, the tile's output).
type qScratch struct{ w, out []float32 }

var qScratchPool = sync.Pool{New: func() any { return new(qScratch) }}

// rows is the decode path over output rows [lo, hi): decode a row, dot it with
// every token.
func (t *qTask) rows(lo, hi int) {
	s := qScratchPool.Get().(*qScratch)
	s.w = qGrowF32(s.w, t.K)
	buf := s.w
	T, N, K, rb := t.T, t.N, t.K, t.rb
	for n := lo; n < hi; n++ {
		t.f.dequant(buf, t.w.Data[n*rb:(n+1)*rb])
		for tt := 0; tt < T; tt++ {
			t.dst[tt*N+n] = DotF32(buf, t.x[tt*K:(tt+1)*K])
		}
	}
	qScratchPool.Put(s)
}

// tiles is the prefill path over row tiles [lo, hi): decode t.tile rows to float32
// and run the float32 GEMM on them (single-threaded: the caller is a pool worker).
func (t *qTask) tiles(lo, hi int) {
	s := qScratchPool.Get().(*qScratch)
	T, N, K, rb := t.T, t.N, t.K, t.rb
	s.w = qGrowF32(s.w, t.tile*K)
	s.out = qGrowF32(s.out, T*t.tile)
	for i := lo; i < hi; i++ {
		r0 := i * t.tile
		r1 := min(r0+t.tile, N)
		R := r1 - r0
		wf := s.w[:R*K]
		for r := 0; r < R; r++ {
			t.f.dequant(wf[r*K:(r+1)*K], t.w.Data[(r0+r)*rb:(r0+r+1)*rb])
		}
		out := s.out[:T*R]
		MatMulT(nil, out, t.x, T, Mat{DType: tensor.F32, Rows: R, Cols: K, Data: tensor.Float32Bytes(wf)})
		for tt := 0; tt < T; tt++ {
			copy(t.dst[tt*N+r0:tt*N+r1], out[tt*R:(tt+1)*R])
		}
	}
	qScratchPool.Put(s)
}

// generic is the plain twin: dequantize each row and sum in index order.
func (t *qTask) generic(lo, hi int) {
	s := qScratchPool.Get().(*qScratch)
	s.w = qGrowF32(s.w, t.K)
	buf := s.w
	T, N, K, rb := t.T, t.N, t.K, t.rb
	for n := lo; n < hi; n++ {
		t.f.dequant(buf, t.w.Data[n*rb:(n+1)*rb])
		for tt := 0; tt < T; tt++ {
			t.dst[tt*N+n] = dotF32Generic(buf, t.x[tt*K:(tt+1)*K])
		}
	}
	qScratchPool.Put(s)
}

// matMulTQGeneric is MatMulTQ's plain twin (no SIMD, no tiles): the test oracle.
func matMulTQGeneric(dst, x []float32, T int, w Mat) {
	f := qFormatOf(w.DType)
	t := &qTask{dst: dst, x: x, T: T, w: w, N: w.Rows, K: w.Cols, rb: w.Cols / f.block * f.bytes, f: f}
	t.generic(0, w.Rows)
}

func qGrowF32(s []float32, n int) []float32 {
	if cap(s) < n {
		return make([]float32, n)
	}
	return s[:n]
}

// ---- ggml-style path: 8-bit activations, integer dots ----

// matMulTQ8 is MatMulTQ with the activations first quantized to 8-bit blocks of
// 32 (scale max|x|/127, round to nearest, as ggml's quantize_row_q8_0) and integer
// block dot products, as ggml's vec_dot kernels do. It adds the activation
// rounding error (relative ~1/254 per block) and, in plain Go, is not faster than
// decoding to float32 (see BenchmarkMatMulTQ); it is the reference for a future
// VPDPBUSD/VPMADDUBSW kernel, where integer dots are 2-4× cheaper than float.
func matMulTQ8(p *parallel.Pool, dst, x []float32, T int, w Mat) {
	f := qFormatOf(w.DType)
	N, K := w.Rows, w.Cols
	t := qTaskPool.Get().(*qTask)
	t.dst, t.x, t.T, t.w, t.N, t.K, t.rb, t.f = dst, x, T, w, N, K, K/f.block*f.bytes, f
	nb := T * K / 32
	if cap(t.xq) < T*K {
		t.xq = make([]int8, T*K)
	}
	t.xq = t.xq[:T*K]
	if cap(t.xd) < nb {
		t.xd = make([]float32, nb)
		t.xs = make([]int32, nb)
	}
	t.xd, t.xs = t.xd[:nb], t.xs[:nb]
	p.For(nb, 64, t.fnQuantX)
	p.For(N, max(1, 2048/K), t.fnRowsQ8)
	t.dst, t.x, t.w, t.f = nil, nil, Mat{}, nil
	qTaskPool.Put(t)
}

// quantX quantizes activation blocks [lo, hi) (block b = values 32b..32b+31 of x).
func (t *qTask) quantX(lo, hi int) {
	for b := lo; b < hi; b++ {
		xs := (*[32]float32)(t.x[b*32:])
		var amax float32
		for _, v := range xs {
			if v < 0 {
				v = -v
			}
			amax = max(amax, v)
		}
		d := amax / 127
		var id float32
		if d != 0 {
			id = 1 / d
		}
		q := (*[32]int8)(t.xq[b*32:])
		var s int32
		for j, v := range xs {
			r := qNearestInt(v * id)
			q[j] = int8(r)
			s += r
		}
		t.xd[b], t.xs[b] = d, s
	}
}

// qNearestInt rounds to nearest, ties to even (|f| <= 2^22).
func qNearestInt(f float32) int32 {
	v := f + 12582912
	return int32(math.Float32bits(v)&0x007fffff) - 0x00400000
}

// rowsQ8 computes output rows [lo, hi) from the quantized activations.
func (t *qTask) rowsQ8(lo, hi int) {
	T, N, K, rb := t.T, t.N, t.K, t.rb
	nb := K / 32
	for n := lo; n < hi; n++ {
		row := t.w.Data[n*rb : (n+1)*rb]
		for tt := 0; tt < T; tt++ {
			t.dst[tt*N+n] = t.f.dotQ8(row, t.xq[tt*K:(tt+1)*K], t.xd[tt*nb:(tt+1)*nb], t.xs[tt*nb:(tt+1)*nb])
		}
	}
}

// ---- block decoders (bit-identical to quant.DequantizeXxx) ----

func qF16(b []byte) float32 { return tensor.F16ToF32(binary.LittleEndian.Uint16(b)) }

func dequantQ8_0(dst []float32, src []byte) {
	for i := 0; i < len(dst)/32; i++ {
		b := (*[34]byte)(src[i*34:])
		y := (*[32]float32)(dst[i*32:])
		d := qF16(b[:])
		for j := range y {
			y[j] = float32(int8(b[2+j])) * d
		}
	}
}

func dequantQ4_0(dst []float32, src []byte) {
	for i := 0; i < len(dst)/32; i++ {
		b := (*[18]byte)(src[i*18:])
		y := (*[32]float32)(dst[i*32:])
		d := qF16(b[:])
		for j := 0; j < 16; j++ {
			q := b[2+j]
			y[j] = float32(int32(q&0x0f)-8) * d
			y[j+16] = float32(int32(q>>4)-8) * d
		}
	}
}

func dequantQ5_0(dst []float32, src []byte) {
	for i := 0; i < len(dst)/32; i++ {
		b := (*[22]byte)(src[i*22:])
		y := (*[32]float32)(dst[i*32:])
		d := qF16(b[:])
		qh := binary.LittleEndian.Uint32(b[2:6])
		for j := 0; j < 16; j++ {
			xh0 := uint8(qh>>j<<4) & 0x10
			xh1 := uint8(qh>>(j+12)) & 0x10
			y[j] = float32(int32(b[6+j]&0x0f|xh0)-16) * d
			y[j+16] = float32(int32(b[6+j]>>4|xh1)-16) * d
		}
	}
}

// qScaleMinK4 is ggml's get_scale_min_k4 (sub-block j of a Q4_K/Q5_K super-block).
func qScaleMinK4(j int, q *[12]byte) (sc, m uint8) {
	if j < 4 {
		return q[j] & 63, q[j+4] & 63
	}
	return q[j+4]&0x0f | (q[j-4]>>6)<<4, q[j+4]>>4 | (q[j]>>6)<<4
}

func dequantQ4_K(dst []float32, src []byte) {
	for i := 0; i < len(dst)/256; i++ {
		b := (*[144]byte)(src[i*144:])
		y := (*[256]float32)(dst[i*256:])
		d, dmin := qF16(b[0:]), qF16(b[2:])
		scales := (*[12]byte)(b[4:16])
		for j, is := 0, 0; j < 256; j, is = j+64, is+2 {
			q := (*[32]byte)(b[16+j/2:])
			sc, m := qScaleMinK4(is, scales)
			d1, m1 := d*float32(sc), float32(dmin*float32(m))
			sc, m = qScaleMinK4(is+1, scales)
			d2, m2 := d*float32(sc), float32(dmin*float32(m))
			lo, hi := (*[32]float32)(y[j:]), (*[32]float32)(y[j+32:])
			for l, v := range q {
				lo[l] = float32(d1*float32(v&0x0f)) - m1
				hi[l] = float32(d2*float32(v>>4)) - m2
			}
		}
	}
}

func dequantQ5_K(dst []float32, src []byte) {
	for i := 0; i < len(dst)/256; i++ {
		b := (*[176]byte)(src[i*176:])
		y := (*[256]float32)(dst[i*256:])
		d, dmin := qF16(b[0:]), qF16(b[2:])
		scales := (*[12]byte)(b[4:16])
		qh := (*[32]byte)(b[16:48])
		u1, u2 := uint8(1), uint8(2)
		for j, is := 0, 0; j < 256; j, is = j+64, is+2 {
			ql := (*[32]byte)(b[48+j/2:])
			sc, m := qScaleMinK4(is, scales)
			d1, m1 := d*float32(sc), float32(dmin*float32(m))
			sc, m = qScaleMinK4(is+1, scales)
			d2, m2 := d*float32(sc), float32(dmin*float32(m))
			lo, hi := (*[32]float32)(y[j:]), (*[32]float32)(y[j+32:])
			for l, v := range ql {
				q1, q2 := int32(v&0x0f), int32(v>>4)
				if qh[l]&u1 != 0 {
					q1 += 16
				}
				if qh[l]&u2 != 0 {
					q2 += 16
				}
				lo[l] = float32(d1*float32(q1)) - m1
				hi[l] = float32(d2*float32(q2)) - m2
			}
			u1 <<= 2
			u2 <<= 2
		}
	}
}

func dequantQ6_K(dst []float32, src []byte) {
	for i := 0; i < len(dst)/256; i++ {
		b := (*[210]byte)(src[i*210:])
		y := (*[256]float32)(dst[i*256:])
		d := qF16(b[208:])
		for n := 0; n < 256; n += 128 {
			ql := (*[64]byte)(b[n/2:])
			qh := (*[32]byte)(b[128+n/4:])
			sc := (*[8]byte)(b[192+n/16:])
			for l := 0; l < 32; l++ {
				is := l / 16
				h := qh[l]
				q1 := int32(ql[l]&0x0f|(h&3)<<4) - 32
				q2 := int32(ql[l+32]&0x0f|(h>>2&3)<<4) - 32
				q3 := int32(ql[l]>>4|(h>>4&3)<<4) - 32
				q4 := int32(ql[l+32]>>4|(h>>6&3)<<4) - 32
				y[n+l] = d * float32(int8(sc[is])) * float32(q1)
				y[n+l+32] = d * float32(int8(sc[is+2])) * float32(q2)
				y[n+l+64] = d * float32(int8(sc[is+4])) * float32(q3)
				y[n+l+96] = d * float32(int8(sc[is+6])) * float32(q4)
			}
		}
	}
}

// ---- integer dots against 8-bit activation blocks (the ggml vec_dot scheme) ----

func dotQ8_0Q8(w []byte, xq []int8, xd []float32, _ []int32) float32 {
	var acc float32
	for i := range xd {
		b := (*[34]byte)(w[i*34:])
		q := (*[32]int8)(xq[i*32:])
		var s int32
		for j, v := range q {
			s += int32(int8(b[2+j])) * int32(v)
		}
		acc += qF16(b[:]) * xd[i] * float32(s)
	}
	return acc
}

func dotQ4_0Q8(w []byte, xq []int8, xd []float32, xs []int32) float32 {
	var acc float32
	for i := range xd {
		b := (*[18]byte)(w[i*18:])
		q := (*[32]int8)(xq[i*32:])
		var s int32
		for j := 0; j < 16; j++ {
			v := b[2+j]
			s += int32(v&0x0f)*int32(q[j]) + int32(v>>4)*int32(q[j+16])
		}
		acc += qF16(b[:]) * xd[i] * float32(s-8*xs[i])
	}
	return acc
}

func dotQ5_0Q8(w []byte, xq []int8, xd []float32, xs []int32) float32 {
	var acc float32
	for i := range xd {
		b := (*[22]byte)(w[i*22:])
		q := (*[32]int8)(xq[i*32:])
		qh := binary.LittleEndian.Uint32(b[2:6])
		var s int32
		for j := 0; j < 16; j++ {
			v := b[6+j]
			q0 := int32(v&0x0f) | int32(qh>>j&1)<<4
			q1 := int32(v>>4) | int32(qh>>(j+16)&1)<<4
			s += q0*int32(q[j]) + q1*int32(q[j+16])
		}
		acc += qF16(b[:]) * xd[i] * float32(s-16*xs[i])
	}
	return acc
}

func dotQ4_KQ8(w []byte, xq []int8, xd []float32, xs []int32) float32 {
	var acc float32
	for i := 0; i < len(xd)/8; i++ {
		b := (*[144]byte)(w[i*144:])
		d, dmin := qF16(b[0:]), qF16(b[2:])
		scales := (*[12]byte)(b[4:16])
		var sumq, summ float32
		for k := 0; k < 4; k++ { // 64 values: two sub-blocks sharing 32 bytes
			qs := (*[32]byte)(b[16+32*k:])
			x0 := (*[32]int8)(xq[i*256+64*k:])
			x1 := (*[32]int8)(xq[i*256+64*k+32:])
			var s0, s1 int32
			for l, v := range qs {
				s0 += int32(v&0x0f) * int32(x0[l])
				s1 += int32(v>>4) * int32(x1[l])
			}
			b0, b1 := i*8+2*k, i*8+2*k+1
			sc0, m0 := qScaleMinK4(2*k, scales)
			sc1, m1 := qScaleMinK4(2*k+1, scales)
			sumq += xd[b0]*float32(int32(sc0)*s0) + xd[b1]*float32(int32(sc1)*s1)
			summ += xd[b0]*float32(int32(m0)*xs[b0]) + xd[b1]*float32(int32(m1)*xs[b1])
		}
		acc += d*sumq - dmin*summ
	}
	return acc
}

func dotQ5_KQ8(w []byte, xq []int8, xd []float32, xs []int32) float32 {
	var acc float32
	for i := 0; i < len(xd)/8; i++ {
		b := (*[176]byte)(w[i*176:])
		d, dmin := qF16(b[0:]), qF16(b[2:])
		scales := (*[12]byte)(b[4:16])
		qh := (*[32]byte)(b[16:48])
		var sumq, summ float32
		for k := 0; k < 4; k++ {
			ql := (*[32]byte)(b[48+32*k:])
			x0 := (*[32]int8)(xq[i*256+64*k:])
			x1 := (*[32]int8)(xq[i*256+64*k+32:])
			sh0, sh1 := uint(2*k), uint(2*k+1)
			var s0, s1 int32
			for l, v := range ql {
				q0 := int32(v&0x0f) | int32(qh[l]>>sh0&1)<<4
				q1 := int32(v>>4) | int32(qh[l]>>sh1&1)<<4
				s0 += q0 * int32(x0[l])
				s1 += q1 * int32(x1[l])
			}
			b0, b1 := i*8+2*k, i*8+2*k+1
			sc0, m0 := qScaleMinK4(2*k, scales)
			sc1, m1 := qScaleMinK4(2*k+1, scales)
			sumq += xd[b0]*float32(int32(sc0)*s0) + xd[b1]*float32(int32(sc1)*s1)
			summ += xd[b0]*float32(int32(m0)*xs[b0]) + xd[b1]*float32(int32(m1)*xs[b1])
		}
		acc += d*sumq - dmin*summ
	}
	return acc
}

func dotQ6_KQ8(w []byte, xq []int8, xd []float32, _ []int32) float32 {
	var acc float32
	for i := 0; i < len(xd)/8; i++ {
		b := (*[210]byte)(w[i*210:])
		d := qF16(b[208:])
		var sum float32
		for n := 0; n < 2; n++ { // 128-value halves
			ql := (*[64]byte)(b[64*n:])
			qh := (*[32]byte)(b[128+32*n:])
			sc := (*[8]byte)(b[192+8*n:])
			base := i*256 + 128*n
			// s[2c+h]: value group c (positions 32c..32c+31 of the half), 16-value half h.
			var s [8]int32
			for l := 0; l < 32; l++ {
				h := qh[l]
				q1 := int32(ql[l]&0x0f|(h&3)<<4) - 32
				q2 := int32(ql[l+32]&0x0f|(h>>2&3)<<4) - 32
				q3 := int32(ql[l]>>4|(h>>4&3)<<4) - 32
				q4 := int32(ql[l+32]>>4|(h>>6&3)<<4) - 32
				is := l / 16
				s[is] += q1 * int32(xq[base+l])
				s[is+2] += q2 * int32(xq[base+l+32])
				s[is+4] += q3 * int32(xq[base+l+64])
				s[is+6] += q4 * int32(xq[base+l+96])
			}
			for c := 0; c < 4; c++ {
				xb := xd[i*8+4*n+c]
				sum += xb * float32(int32(int8(sc[2*c]))*s[2*c]+int32(int8(sc[2*c+1]))*s[2*c+1])
			}
		}
		acc += d * sum
	}
	return acc
}
