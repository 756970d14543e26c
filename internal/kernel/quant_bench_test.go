package kernel

import (
	"fmt"
	"testing"

	"github.com/dbrx-engine/dbrx/internal/parallel"
	"github.com/dbrx-engine/dbrx/tensor"
)

// BenchmarkQmv measures the quantized decode product (T <= 4 tokens) on the BENCH
// model's shapes; MB/s is quantized weight bytes per second (the DRAM traffic of
// decode). Compare with benchstat.
//
//	shape=NxK   w [N, K]: 1344x768 (expert w1/v1), 768x1344 (expert w2 in GGUF
//	            orientation), 100352x768 (lm_head, 77-154 MB: streams from DRAM)
//	path=fused  MatMulTQ: the fused decode-and-dot kernels (quant_amd64.s)
//	path=rows   the row path: decode a row to float32 (assembly decoder), DotF32
//	path=rowsgo the path before the assembly kernels: Go decoder, DotF32 per token
//	path=int8   MatMulTQ8: 8-bit activations, integer dots (ggml's scheme; the qdot
//	            kernels for Q8_0, Q4_0, Q5_0, Q4_K)
//	path=bf16   the same shape as BF16 through MatMulT (type=BF16)
func BenchmarkQmv(b *testing.B) {
	r := newRand(1)
	shapes := []struct{ N, K int }{{1344, 768}, {768, 1344}, {100352, 768}}
	types := []tensor.DType{tensor.Q8_0, tensor.Q4_0, tensor.Q5_0, tensor.Q4_K, tensor.Q5_K, tensor.Q6_K, tensor.BF16}
	for _, threads := range []int{1, 2} {
		pool := parallel.New(threads)
		for _, sh := range shapes {
			for _, dt := range types {
				if dt.IsQuantized() && sh.K%dt.BlockSize() != 0 {
					continue
				}
				var m Mat
				if dt == tensor.BF16 {
					m = randMat(r, dt, sh.N, sh.K)
				} else {
					m, _ = randQMat(b, r, dt, sh.N, sh.K)
				}
				for _, T := range []int{1, 4} {
					x := randF32(r, T*sh.K)
					dst := make([]float32, T*sh.N)
					paths := []string{"fused", "rows", "rowsgo"}
					if dt == tensor.BF16 {
						paths = []string{"bf16"}
					} else if qFormatOf(dt).idot != nil {
						paths = append(paths, "int8")
					}
					for _, path := range paths {
						name := fmt.Sprintf("shape=%dx%d/type=%s/T=%d/threads=%d/path=%s", sh.N, sh.K, dt, T, threads, path)
						b.Run(name, func(b *testing.B) {
							b.SetBytes(int64(len(m.Data)))
							b.ReportAllocs()
							for b.Loop() {
								switch path {
								case "bf16":
									MatMulT(pool, dst, x, T, m)
								case "rows":
									matMulTQ(pool, dst, x, T, m, qRows)
								case "rowsgo":
									matMulTQ(pool, dst, x, T, m, qRowsGo)
								case "int8":
									MatMulTQ8(pool, dst, x, T, m)
								default:
									MatMulTQ(pool, dst, x, T, m)
								}
							}
						})
					}
				}
			}
		}
		pool.Close()
	}
}

// BenchmarkQmvKernel measures one fused kernel call on R rows of K=768 in L1:
// the decode throughput without DRAM or driver costs.
func BenchmarkQmvKernel(b *testing.B) {
	if simd == nil || fmtQ8_0.mv[1] == nil {
		b.Skip("no assembly kernels")
	}
	r := newRand(1)
	for _, dt := range qTypes {
		f := qFormatOf(dt)
		const K = 768
		if K%f.block != 0 {
			continue
		}
		for T := 1; T <= qSmallT; T++ {
			R := len(f.mv[T])
			m, _ := randQMat(b, r, dt, R, K)
			x := randF32(r, T*K)
			dst := make([]float32, T*R)
			kern := f.mv[T][R-1]
			b.Run(fmt.Sprintf("type=%s/T=%d/R=%d", dt, T, R), func(b *testing.B) {
				b.SetBytes(int64(len(m.Data)))
				b.ReportAllocs()
				for b.Loop() {
					kern(&dst[0], R, &x[0], K, &m.Data[0], m.RowBytes(), K/f.block)
				}
			})
		}
	}
}

// BenchmarkQDecode measures the row decoders (4096 values per op; MB/s of float32
// output): the assembly decoder (path=asm, used by prefill tiles and DecodeRow)
// against the Go one (path=go).
func BenchmarkQDecode(b *testing.B) {
	r := newRand(2)
	for _, dt := range qTypes {
		m, _ := randQMat(b, r, dt, 1, 4096)
		dst := make([]float32, 4096)
		f := qFormatOf(dt)
		for _, path := range []string{"asm", "go"} {
			if path == "asm" && f.deq == nil {
				continue
			}
			b.Run("type="+dt.String()+"/path="+path, func(b *testing.B) {
				b.SetBytes(4096 * 4)
				b.ReportAllocs()
				for b.Loop() {
					if path == "asm" {
						f.deq(&dst[0], &m.Data[0], 4096/f.block)
					} else {
						f.dequant(dst, m.Data)
					}
				}
			})
		}
	}
}
