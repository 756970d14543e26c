package kernel

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/dbrx-engine/dbrx/internal/parallel"
	"github.com/dbrx-engine/dbrx/tensor"
)

// Benchmarks for the BENCH model shapes (d_model 768, 4 query heads... qkv out
// 768+2·2·128, expert F 1344, vocabulary 100352). MB/s is weight bytes per second
// (SetBytes), so for T=1 it is the memory bandwidth decode is bound by; compare it
// with BenchmarkMemRead/BenchmarkMemCopy. GFLOP/s is reported for every product.
//
// Decode (T=1, and batched T=4, 16 for w1/w2) cycles through enough copies of the
// weights (>= 256 MB) that every call reads them from DRAM, as a real decode step
// does; prefill (T=512) reuses one.
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
			for _, T := range []int{1, 2, 4, 8, 16, 64, 512} {
				for _, threads := range []int{1, 2} {
					for _, impl := range []string{"asm", "panel", "twin"} {
						if !benchWanted(s, dt, T, impl) {
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

// benchWanted selects the cases of BenchmarkMatMul: every shape and dtype at T=1
// and 512; batched decode (T=4, 16) on one shape per orientation, and the bf16
// attention shapes at T=16; the bf16 LM head
// at every T, through MatMulT (impl=asm) and PackPanelsBF16's layout (impl=panel,
// also on the attention shapes); the twin at T=1 and on the small shape.
func benchWanted(s benchShape, dt tensor.DType, T int, impl string) bool {
	if impl != "twin" && simd == nil {
		return false
	}
	lmBF16 := s.name == "lm_head" && dt == tensor.BF16
	switch impl {
	case "twin":
		return dt == tensor.BF16 && (T == 1 || T == 512 && s.name == "out")
	case "panel":
		return dt == tensor.BF16 && (lmBF16 || (s.name == "qkv" || s.name == "out") && (T == 1 || T == 16 || T == 512))
	}
	switch T {
	case 1:
		return true
	case 512:
		return s.name != "lm_head" || dt == tensor.BF16
	case 4, 16:
		attn := T == 16 && dt == tensor.BF16 && (s.name == "qkv" || s.name == "out") // beside impl=panel
		return s.name == "w1" || s.name == "w2" || lmBF16 || attn
	}
	return lmBF16
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
	if T <= matvecMaxT {
		copies = max(1, (coldBytes+wbytes-1)/wbytes)
	}
	ws := make([]Mat, copies)
	ws[0] = randMat(r, dt, rows, cols)
	var ps []PanelMat
	if impl == "panel" {
		pm, err := PackPanelsBF16(ws[0])
		if err != nil {
			b.Fatal(err)
		}
		ws = nil
		ps = make([]PanelMat, copies)
		ps[0] = pm
		for i := 1; i < copies; i++ {
			ps[i] = PanelMat{Rows: rows, Cols: cols, Data: append([]byte(nil), pm.Data...)}
		}
	}
	for i := 1; i < len(ws); i++ {
		ws[i] = Mat{DType: dt, Rows: rows, Cols: cols, Data: append([]byte(nil), ws[0].Data...)}
	}
	x := randF32(r, T*s.K)
	dst := make([]float32, T*s.N)
	p := parallel.New(threads)
	defer p.Close()
	var k *kernels
	if impl != "twin" {
		k = simd
	}
	withKernels(k, func() {
		b.SetBytes(int64(wbytes))
		b.ReportAllocs()
		i := 0
		c0 := cpuTime()
		for b.Loop() {
			if ps != nil {
				MatMulTPanels(p, dst, x, T, ps[i%copies])
				i++
				continue
			}
			w := ws[i%copies]
			i++
			if s.trans {
				MatMulT(p, dst, x, T, w)
			} else {
				MatMulN(p, dst, x, T, w, false)
			}
		}
		b.ReportMetric(2*float64(T)*float64(s.N)*float64(s.K)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		// CPU time per call (all threads, spin-waits included): with threads=1 the
		// steadier figure on a shared machine.
		b.ReportMetric(float64((cpuTime()-c0).Microseconds())/float64(b.N), "cpu-us/op")
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
			{"expsub", func() { _ = ExpSubF32(y, x, 0.5) }},
			{"max", func() { _ = MaxF32(x) }},
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

// BenchmarkGemmMicro runs the 6×16 micro-kernel on L1-resident panels: the
// GFLOP/s ceiling the blocked GEMMs are measured against.
func BenchmarkGemmMicro(b *testing.B) {
	if simd == nil {
		b.Skip("no assembly kernels")
	}
	const kc = 256
	r := newRand(13)
	a, bp := randF32(r, 6*kc), randF32(r, 16*kc)
	c := make([]float32, 6*16)
	b.ReportAllocs()
	c0 := cpuTime()
	for b.Loop() {
		simd.gemm[6](&a[0], &bp[0], kc, &c[0], 16, 1, 0, 0, 0)
	}
	flops := 2 * 6 * 16 * kc * float64(b.N)
	b.ReportMetric(flops/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	b.ReportMetric(flops/(cpuTime()-c0).Seconds()/1e9, "GFLOP/s@cpu")
}

// trainShapes are the f32 products of a training step at the TRAIN shape (d_model
// 256, F 512, qkv 512, 8 experts top-2 over 2048 tokens, vocabulary 100352, LM head
// chunks of 512 rows): forward x·wᵀ (op=T), input gradient dy·w (op=N) and weight
// gradient aᵀ·b (op=ATB) for a linear layer [N, K] over M tokens.
var trainShapes = []struct {
	name    string
	M, N, K int // op=T: dst [M,N] = x[M,K]·w[N,K]ᵀ; op=N: dst [M,K] = dy[M,N]·w[N,K]; op=ATB: dst [N,K] = a[M,N]ᵀ·b[M,K]
}{
	{"qkv", 2048, 512, 256},
	{"expert", 512, 512, 256},
	{"lm_head", 512, 100352, 256},
}

// BenchmarkTrainGEMM measures the three f32 products of a linear layer at the
// training shapes, 1 and 2 threads:
//
//	go test -run '^$' -bench TrainGEMM ./internal/kernel
//
// impl=twin (the plain-Go loops) runs only at the expert shape (seconds per call).
func BenchmarkTrainGEMM(b *testing.B) {
	for _, s := range trainShapes {
		for _, op := range []string{"T", "N", "ATB"} {
			for _, threads := range []int{1, 2} {
				for _, impl := range []string{"asm", "twin"} {
					if impl == "asm" && simd == nil || impl == "twin" && s.name != "expert" {
						continue
					}
					name := fmt.Sprintf("shape=%s/op=%s/M=%d/N=%d/K=%d/threads=%d/impl=%s", s.name, op, s.M, s.N, s.K, threads, impl)
					b.Run(name, func(b *testing.B) {
						var k *kernels
						if impl == "asm" {
							k = simd
						}
						withKernels(k, func() { benchTrainGEMM(b, op, s.M, s.N, s.K, threads) })
					})
				}
			}
		}
	}
}

func benchTrainGEMM(b *testing.B, op string, M, N, K, threads int) {
	r := newRand(14)
	w := randMat(r, tensor.F32, N, K)
	p := parallel.New(threads)
	defer p.Close()
	var f func()
	switch op {
	case "T":
		x, dst := randF32(r, M*K), make([]float32, M*N)
		f = func() { MatMulT(p, dst, x, M, w) }
	case "N":
		dy, dst := randF32(r, M*N), make([]float32, M*K)
		f = func() { MatMulN(p, dst, dy, M, w, false) }
	case "ATB":
		a, bm, dst := randF32(r, M*N), randF32(r, M*K), make([]float32, N*K)
		f = func() { MatMulATB(p, dst, a, bm, M, N, K, true) }
	}
	b.SetBytes(int64(4 * N * K))
	b.ReportAllocs()
	f()
	c0 := cpuTime()
	for b.Loop() {
		f()
	}
	flops := 2 * float64(M) * float64(N) * float64(K) * float64(b.N)
	b.ReportMetric(flops/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	b.ReportMetric(flops/(cpuTime()-c0).Seconds()/1e9*float64(threads), "GFLOP/s@cpu")
}

// cpuTime is the CPU time of the process (all threads). GFLOP/s@cpu, the work per
// CPU-second times the thread count, is what the wall-clock rate would be on an
// idle machine; it is the steadier figure on a shared one (spin-waits count).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkDecodeMoE times the expert products of one MoE layer at the BENCH shape
// (w1, v1 [1344, 768] x·wᵀ, w2 [1344, 768] x·w, bf16) on cold weights: a single
// token (4 experts, T=1 each) and a 16-sequence batch (16 experts, T=4 each),
// expert by expert (impl=seq: three calls per expert, as before MatMulBatch) or in
// two MatMulBatch dispatches (impl=batch). MB/s counts the weights streamed.
func BenchmarkDecodeMoE(b *testing.B) {
	const D, F, E, layers = 768, 1344, 16, 3
	r := newRand(15)
	w0 := randMat(r, tensor.BF16, F, D)
	type expert struct{ w1, v1, w2 Mat }
	ex := make([]expert, layers*E)
	cp := func() Mat { return Mat{DType: tensor.BF16, Rows: F, Cols: D, Data: append([]byte(nil), w0.Data...)} }
	for i := range ex {
		ex[i] = expert{cp(), cp(), cp()}
	}
	for _, c := range []struct{ active, T int }{{4, 1}, {16, 4}} {
		for _, threads := range []int{1, 2} {
			for _, impl := range []string{"seq", "batch"} {
				b.Run(fmt.Sprintf("experts=%d/T=%d/threads=%d/impl=%s", c.active, c.T, threads, impl), func(b *testing.B) {
					p := parallel.New(threads)
					defer p.Close()
					n := c.active * c.T
					x := randF32(r, n*D)
					g, u, y := make([]float32, n*F), make([]float32, n*F), make([]float32, n*D)
					ps := make([]Product, 0, 2*E)
					b.SetBytes(int64(3 * c.active * len(w0.Data)))
					b.ReportAllocs()
					it := 0
					for b.Loop() {
						base := it % (layers * E / c.active) * c.active
						it++
						if impl == "seq" {
							for e := 0; e < c.active; e++ {
								w := ex[base+e]
								lo, hi := e*c.T, (e+1)*c.T
								MatMulT(p, g[lo*F:hi*F], x[lo*D:hi*D], c.T, w.w1)
								MatMulT(p, u[lo*F:hi*F], x[lo*D:hi*D], c.T, w.v1)
								SiLUMulF32(g[lo*F:hi*F], g[lo*F:hi*F], u[lo*F:hi*F])
								MatMulN(p, y[lo*D:hi*D], g[lo*F:hi*F], c.T, w.w2, false)
							}
							continue
						}
						ps = ps[:0]
						for e := 0; e < c.active; e++ {
							w := ex[base+e]
							lo, hi := e*c.T, (e+1)*c.T
							ps = append(ps, Product{Dst: g[lo*F : hi*F], X: x[lo*D : hi*D], T: c.T, W: w.w1},
								Product{Dst: u[lo*F : hi*F], X: x[lo*D : hi*D], T: c.T, W: w.v1})
						}
						MatMulBatch(p, ps)
						SiLUMulF32(g, g, u)
						ps = ps[:0]
						for e := 0; e < c.active; e++ {
							lo, hi := e*c.T, (e+1)*c.T
							ps = append(ps, Product{Dst: y[lo*D : hi*D], X: g[lo*F : hi*F], T: c.T, W: ex[base+e].w2, NoTrans: true})
						}
						MatMulBatch(p, ps)
					}
				})
			}
		}
	}
}

// BenchmarkPanelMicro runs the panel kernels (MatMulTPanels) on one hot panel of K
// columns: the compute bound of the product, weights in L1 (K=256) or L2 (768).
func BenchmarkPanelMicro(b *testing.B) {
	if simd == nil {
		b.Skip("no assembly kernels")
	}
	for _, K := range []int{256, 768} {
		for _, M := range []int{1, 2, 4, 5, 6} {
			b.Run(fmt.Sprintf("K=%d/M=%d", K, M), func(b *testing.B) {
				r := newRand(13)
				x := randF32(r, M*K)
				w := rawWeights(14, 1, 16*K, false)
				c := make([]float32, M*16)
				c0 := cpuTime()
				for b.Loop() {
					simd.panel[M][0](&c[0], 16, 0, &x[0], K, &w[0], 0, K, 0, 0, 0, 0, 0)
				}
				flops := 2 * float64(M) * 16 * float64(K) * float64(b.N)
				b.ReportMetric(flops/b.Elapsed().Seconds()/1e9, "GFLOP/s")
				b.ReportMetric(flops/(cpuTime()-c0).Seconds()/1e9, "GFLOP/s@cpu")
			})
		}
	}
}

// BenchmarkExpertsByT times one orientation of the expert products of a BENCH-shape
// MoE layer (bf16 experts [1344, 768]) with T tokens routed to every expert, in one
// MatMulBatch: op=T is w1/v1 (x·wᵀ), op=N the HF-layout w2 (x·w). weights=cold
// streams 16 experts of 3 layers in turn from memory; weights=cached reuses 4
// experts (8.3 MB, within a 32 MB L3), so that MB/s there is the kernels' compute
// rate. MB/s by T shows where a batched decode step stops being bound by memory
// alone: the time per byte grows by the kernels' compute per byte, as if the two
// only partly overlapped. Measured on 2 threads of a Zen 3 (AVX2), GB/s, x·wᵀ /
// x·w: cold T=1 17-18 / 20-21, T=4 13-15 / 12-15, T=8 6-10 / 8-9; cached T=1 43-45 /
// 35-37, T=4 20 / 16-21, T=8 9-10 / 8-10. From 6 tokens on, cached is no faster
// than cold: the kernels are bound by their FMAs, at ~40 GFLOP/s per core (the
// GEMM micro-kernel on L1 data: ~80).
func BenchmarkExpertsByT(b *testing.B) {
	const D, F, E, layers, cachedE = 768, 1344, 16, 3, 4
	r := newRand(15)
	w0 := randMat(r, tensor.BF16, F, D)
	ex := make([]Mat, layers*E)
	for i := range ex {
		ex[i] = Mat{DType: tensor.BF16, Rows: F, Cols: D, Data: append([]byte(nil), w0.Data...)}
	}
	for _, weights := range []string{"cold", "cached"} {
		for _, op := range []string{"T", "N"} {
			for _, T := range []int{1, 2, 3, 4, 6, 8} {
				b.Run(fmt.Sprintf("weights=%s/op=%s/T=%d/threads=2", weights, op, T), func(b *testing.B) {
					n, rot := E, layers // products per call, weight sets rotated
					if weights == "cached" {
						n, rot = cachedE, 1
					}
					p := parallel.New(2)
					defer p.Close()
					x := randF32(r, n*T*F)
					y := make([]float32, n*T*F)
					ps := make([]Product, n)
					b.SetBytes(int64(n * len(w0.Data)))
					it := 0
					for b.Loop() {
						base := it % rot * E
						it++
						for e := range ps {
							if op == "T" { // x [T, D] · wᵀ → [T, F]
								ps[e] = Product{Dst: y[e*T*F : (e+1)*T*F], X: x[e*T*D : (e+1)*T*D], T: T, W: ex[base+e]}
							} else { // x [T, F] · w → [T, D]
								ps[e] = Product{Dst: y[e*T*D : (e+1)*T*D], X: x[e*T*F : (e+1)*T*F], T: T, W: ex[base+e], NoTrans: true}
							}
						}
						MatMulBatch(p, ps)
					}
				})
			}
		}
	}
}
