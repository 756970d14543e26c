package kernel

import (
	"fmt"
	"testing"

	"github.com/dbrx-engine/dbrx/internal/parallel"
	"github.com/dbrx-engine/dbrx/tensor"
)

// Benchmarks for the BENCH model shapes (d_model 768, 4 query heads... qkv out
// 768+2·2·128, expert F 1344, vocabulary 100352). MB/s is weight bytes per second
// (SetBytes), so for T=1 it is the memory bandwidth decode is bound by; compare it
// with BenchmarkMemRead/BenchmarkMemCopy. GFLOP/s is reported for every product.
//
// Decode (T=1) cycles through enough copies of the weights (>= 256 MB) that every
// call reads them from DRAM, as a real decode step does; prefill (T=512) reuses one.
//
//	go test -run '^$' -bench 'MatMul|Mem' -benchtime 2s ./internal/kernel
//
// impl=twin is the plain-Go oracle (slow at T=512: only run on the small shapes).

type benchShape struct {
	name  string
	trans bool // MatMulT w [N,K]; else MatMulN w [K,N]
	N, K  int
}

var benchShapes = []benchShape{
	{"qkv", true, 1280, 768},
	{"out", true, 768, 768},
	{"w1", true, 1344, 768},
	{"w2", false, 768, 1344},
	{"lm_head", true, 100352, 768},
}

const coldBytes = 256 << 20

func BenchmarkMatMul(b *testing.B) {
	for _, s := range benchShapes {
		for _, dt := range dtypeList {
			for _, T := range []int{1, 512} {
				for _, threads := range []int{1, 2} {
					for _, impl := range []string{"asm", "twin"} {
						if impl == "asm" && simd == nil {
							continue
						}
						if impl == "twin" && (T > 1 && s.name != "out" || dt != tensor.BF16) {
							continue // minutes per call
						}
						if T > 1 && dt != tensor.BF16 && s.name == "lm_head" {
							continue
						}
						name := fmt.Sprintf("shape=%s/op=%s/dtype=%s/T=%d/N=%d/K=%d/threads=%d/impl=%s",
							s.name, opName(s.trans), dt, T, s.N, s.K, threads, impl)
						b.Run(name, func(b *testing.B) { benchMatMul(b, s, dt, T, threads, impl) })
					}
				}
			}
		}
	}
}

func opName(trans bool) string {
	if trans {
		return "T"
	}
	return "N"
}

func benchMatMul(b *testing.B, s benchShape, dt tensor.DType, T, threads int, impl string) {
	r := newRand(11)
	rows, cols := s.N, s.K
	if !s.trans {
		rows, cols = s.K, s.N
	}
	wbytes := rows * cols * dt.Size()
	copies := 1
	if T == 1 {
		copies = max(1, (coldBytes+wbytes-1)/wbytes)
	}
	ws := make([]Mat, copies)
	ws[0] = randMat(r, dt, rows, cols)
	for i := 1; i < copies; i++ {
		ws[i] = Mat{DType: dt, Rows: rows, Cols: cols, Data: append([]byte(nil), ws[0].Data...)}
	}
	x := randF32(r, T*s.K)
	dst := make([]float32, T*s.N)
	p := parallel.New(threads)
	defer p.Close()
	var k *kernels
	if impl == "asm" {
		k = simd
	}
	withKernels(k, func() {
		b.SetBytes(int64(wbytes))
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			w := ws[i%copies]
			i++
			if s.trans {
				MatMulT(p, dst, x, T, w)
			} else {
				MatMulN(p, dst, x, T, w, false)
			}
		}
		b.ReportMetric(2*float64(T)*float64(s.N)*float64(s.K)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	})
}

// BenchmarkMemRead streams 256 MB through the AVX2 dot kernel: the read bandwidth a
// decode matvec can hope for.
func BenchmarkMemRead(b *testing.B) {
	buf := make([]float32, coldBytes/4)
	for i := range buf {
		buf[i] = 1
	}
	for _, threads := range []int{1, 2} {
		b.Run(fmt.Sprintf("bytes=256M/threads=%d", threads), func(b *testing.B) {
			p := parallel.New(threads)
			defer p.Close()
			half := len(buf) / 2
			var sink [2]float32
			fn := func(lo, hi int) { sink[lo/max(1, (half+1)/2)%2] += DotF32(buf[lo:hi], buf[half+lo:half+hi]) }
			b.SetBytes(coldBytes)
			b.ReportAllocs()
			for b.Loop() {
				p.For(half, 1<<16, fn)
			}
		})
	}
}

// BenchmarkMemCopy copies 256 MB (MB/s counts the bytes copied once; the memory
// system moves twice that).
func BenchmarkMemCopy(b *testing.B) {
	src := make([]byte, coldBytes)
	dst := make([]byte, coldBytes)
	for i := range src {
		src[i] = byte(i)
	}
	for _, threads := range []int{1, 2} {
		b.Run(fmt.Sprintf("bytes=256M/threads=%d", threads), func(b *testing.B) {
			p := parallel.New(threads)
			defer p.Close()
			fn := func(lo, hi int) { copy(dst[lo:hi], src[lo:hi]) }
			b.SetBytes(coldBytes)
			b.ReportAllocs()
			for b.Loop() {
				p.For(coldBytes, 1<<20, fn)
			}
		})
	}
}

func BenchmarkVec(b *testing.B) {
	r := newRand(12)
	for _, n := range []int{768, 5376, 100352} {
		x, y, g := randF32(r, n), randF32(r, n), randF32(r, n)
		ops := []struct {
			name string
			f    func()
		}{
			{"softmax", func() { copy(y, x); SoftmaxF32(y) }},
			{"layernorm", func() { LayerNormF32(y, x, g, 1e-5) }},
			{"silumul", func() { SiLUMulF32(y, x, g) }},
			{"scaleadd", func() { ScaleAddF32(y, 0.5, 0.25, x) }},
			{"dot", func() { _ = DotF32(x, y) }},
		}
		for _, op := range ops {
			for _, impl := range []string{"asm", "generic"} {
				if impl == "asm" && simd == nil {
					continue
				}
				b.Run(fmt.Sprintf("op=%s/n=%d/impl=%s", op.name, n, impl), func(b *testing.B) {
					var k *kernels
					if impl == "asm" {
						k = simd
					}
					withKernels(k, func() {
						b.SetBytes(int64(4 * n))
						b.ReportAllocs()
						for b.Loop() {
							op.f()
						}
					})
				})
			}
		}
	}
}
