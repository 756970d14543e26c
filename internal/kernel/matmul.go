package kernel

import (
	"fmt"

	"github.com/dbrx-engine/dbrx/internal/parallel"
	"github.com/dbrx-engine/dbrx/tensor"
)

// Mat is a read-only row-major matrix [Rows, Cols] whose elements are stored as DType
// (F32, BF16 or F16) in Data, usually a zero-copy view into an mmap'd checkpoint.
type Mat struct {
	DType tensor.DType
	Rows  int
	Cols  int
	Data  []byte // [Rows*Cols*DType.Size()]
}

// NewMat checks that data holds exactly rows*cols elements of dt.
func NewMat(dt tensor.DType, rows, cols int, data []byte) (Mat, error) {
	switch dt {
	case tensor.F32, tensor.BF16, tensor.F16:
	default:
		return Mat{}, fmt.Errorf("kernel: unsupported weight dtype %s", dt)
	}
	if want := rows * cols * dt.Size(); len(data) != want {
		return Mat{}, fmt.Errorf("kernel: %s matrix [%d, %d] needs %d bytes, have %d", dt, rows, cols, want, len(data))
	}
	return Mat{DType: dt, Rows: rows, Cols: cols, Data: data}, nil
}

// RowSlice returns the sub-matrix of rows [r0, r1) without copying.
func (m Mat) RowSlice(r0, r1 int) Mat {
	es := m.DType.Size()
	return Mat{DType: m.DType, Rows: r1 - r0, Cols: m.Cols, Data: m.Data[r0*m.Cols*es : r1*m.Cols*es]}
}

// Row widens row r into dst[:Cols].
func (m Mat) Row(dst []float32, r int) {
	es := m.DType.Size()
	_ = tensor.ToFloat32(dst[:m.Cols], m.DType, m.Data[r*m.Cols*es:(r+1)*m.Cols*es])
}

// MatMulT computes dst[t, n] = Σ_k x[t, k] · w[n, k] for t < T, n < w.Rows
// (y = x·wᵀ, the nn.Linear orientation).
//
//	dst [T, w.Rows] f32, x [T, w.Cols] f32, w [N, K] f32|bf16|f16
//
// Work is split over output rows across the pool (nil pool: single-threaded).
func MatMulT(p *parallel.Pool, dst, x []float32, T int, w Mat) {
	N, K := w.Rows, w.Cols
	_ = dst[T*N-1]
	_ = x[T*K-1]
	p.For(N, 16, func(lo, hi int) {
		matMulTRows(dst, x, T, w, lo, hi)
	})
}

// matMulTRows is the plain-Go twin of MatMulT restricted to output columns [n0, n1).
func matMulTRows(dst, x []float32, T int, w Mat, n0, n1 int) {
	N, K := w.Rows, w.Cols
	row := make([]float32, K)
	for n := n0; n < n1; n++ {
		w.Row(row, n)
		for t := 0; t < T; t++ {
			dst[t*N+n] = DotF32(x[t*K:(t+1)*K], row)
		}
	}
}

// MatMulN computes dst[t, n] (+)= Σ_k x[t, k] · w[k, n] for t < T, n < w.Cols
// (y = x·w, no transpose; DBRX's expert down-projection w2 is used this way).
//
//	dst [T, w.Cols] f32, x [T, w.Rows] f32, w [K, N] f32|bf16|f16
//
// With accumulate false dst is overwritten. Work is split over output columns.
func MatMulN(p *parallel.Pool, dst, x []float32, T int, w Mat, accumulate bool) {
	K, N := w.Rows, w.Cols
	_ = dst[T*N-1]
	_ = x[T*K-1]
	p.For(N, 64, func(lo, hi int) {
		matMulNCols(dst, x, T, w, lo, hi, accumulate)
	})
}

func matMulNCols(dst, x []float32, T int, w Mat, n0, n1 int, accumulate bool) {
	K, N := w.Rows, w.Cols
	if !accumulate {
		for t := 0; t < T; t++ {
			clear(dst[t*N+n0 : t*N+n1])
		}
	}
	row := make([]float32, N)
	for k := 0; k < K; k++ {
		w.Row(row, k)
		for t := 0; t < T; t++ {
			a := x[t*K+k]
			if a == 0 {
				continue
			}
			AxpyF32(dst[t*N+n0:t*N+n1], a, row[n0:n1])
		}
	}
}

// DotF32 returns Σ a[i]·b[i] over len(a) elements.
func DotF32(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// AxpyF32 computes y[i] += a·x[i] over len(y) elements.
func AxpyF32(y []float32, a float32, x []float32) {
	x = x[:len(y)]
	for i := range y {
		y[i] += a * x[i]
	}
}
