package nn

import (
	"github.com/dbrx-engine/dbrx/internal/kernel"
	"github.com/dbrx-engine/dbrx/internal/parallel"
	"github.com/dbrx-engine/dbrx/tensor"
)

// F32Mat views a float32 slice as a kernel.Mat [rows, cols] without copying.
func F32Mat(data []float32, rows, cols int) kernel.Mat {
	return kernel.Mat{DType: tensor.F32, Rows: rows, Cols: cols, Data: tensor.Float32Bytes(data[:rows*cols])}
}

// MatMulATB accumulates dst += aᵀ·b, the weight gradient of a linear layer:
//
//	dst [M, N]; a [T, M]; b [T, N]
//
// For y = x·Wᵀ (W [out, in]) it is dW += dyᵀ·x with a = dy, b = x; for DBRX's
// untransposed w2 (y = h·W2, W2 [F, D]) it is dW2 += hᵀ·dy with a = h, b = dy.
//
// It is kernel.MatMulATB (a blocked, parallel GEMM that packs aᵀ straight from a);
// scratch is no longer needed and is returned unchanged.
func MatMulATB(p *parallel.Pool, dst, a, b []float32, T, M, N int, scratch []float32) []float32 {
	kernel.MatMulATB(p, dst, a, b, T, M, N, true)
	return scratch
}
