package kernel

import (
	"fmt"

	"github.com/dbrx-engine/dbrx/internal/parallel"
	"github.com/dbrx-engine/dbrx/tensor"
)

// MatMulATB computes dst[n, k] (+)= Σ_m a[m, n] · b[m, k] for n < N, k < K, that is
// dst = aᵀ·b without forming aᵀ: the weight gradient of a linear layer
// (dW [out, in] += dyᵀ·x with a = dy [M, out], b = x [M, in]).
//
//	dst [N, K], a [M, N], b [M, K]; all float32, row-major
//
// With accumulate false dst is overwritten. Products and sums are float32 in an
// order that depends on the blocking (results agree with the plain loop to
// rounding); every product is taken, so a NaN or Inf reaches dst even where the
// other factor is 0. It is the blocked GEMM of MatMulT/MatMulN with the transposed
// operand packed straight from a; work is split across the pool (nil: serial) and a
// warmed-up call allocates nothing.
func MatMulATB(p *parallel.Pool, dst, a, b []float32, M, N, K int, accumulate bool) {
	if M < 0 || N < 0 || K < 0 {
		panic(fmt.Sprintf("kernel: MatMulATB with negative size M=%d N=%d K=%d", M, N, K))
	}
	if len(dst) < N*K || len(a) < M*N || len(b) < M*K {
		panic(fmt.Sprintf("kernel: MatMulATB: dst %d, a %d, b %d floats do not fit M=%d N=%d K=%d",
			len(dst), len(a), len(b), M, N, K))
	}
	if N == 0 || K == 0 {
		return
	}
	if M == 0 {
		if !accumulate {
			clear(dst[:N*K])
		}
		return
	}
	t := getTask(dst, nil, M, Mat{}, N, K, false, accumulate)
	if t.k == nil {
		t.atbA, t.atbB = a, b
		p.For(N, 4, t.fnATB)
	} else {
		t.runGemm(p, gemmOp{M: N, N: K, K: M, a: a, lda: N, aT: true,
			w: tensor.Float32Bytes(b[:M*K]), ldw: K, c: dst, acc: accumulate})
	}
	putTask(t)
}

func (t *mmTask) atbGeneric(lo, hi int) {
	matMulATBGeneric(t.dst, t.atbA, t.atbB, t.T, t.N, t.K, lo, hi, t.acc)
}

// matMulATBGeneric is the twin of MatMulATB restricted to rows [n0, n1) of dst:
//
//	dst[n*K+k] = (accumulate ? dst[n*K+k] : 0) + Σ_m a[m*N+n] · b[m*K+k]  (m in order)
func matMulATBGeneric(dst, a, b []float32, M, N, K, n0, n1 int, accumulate bool) {
	for n := n0; n < n1; n++ {
		row := dst[n*K : (n+1)*K]
		if !accumulate {
			clear(row)
		}
		for m := 0; m < M; m++ {
			av := a[m*N+n]
			for k, bv := range b[m*K : (m+1)*K] {
				row[k] += av * bv
			}
		}
	}
}
