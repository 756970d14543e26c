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
// Products and sums are float32 (weights widened exactly); the summation order
// depends on the kernel, so results agree with the plain loop to rounding. Work is
// split over output columns across the pool (nil pool: single-threaded). With a
// pool, a warmed-up call allocates nothing.
func MatMulT(p *parallel.Pool, dst, x []float32, T int, w Mat) {
	N, K := w.Rows, w.Cols
	checkMatMul("MatMulT", dst, x, T, w, N, K)
	if T == 0 || N == 0 {
		return
	}
	if K == 0 {
		clear(dst[:T*N])
		return
	}
	t := getTask(dst, x, T, w, N, K, true, false)
	t.run(p)
	putTask(t)
}

// MatMulN computes dst[t, n] (+)= Σ_k x[t, k] · w[k, n] for t < T, n < w.Cols
// (y = x·w, no transpose; DBRX's expert down-projection w2 is used this way).
//
//	dst [T, w.Cols] f32, x [T, w.Rows] f32, w [K, N] f32|bf16|f16
//
// With accumulate false dst is overwritten. Every product is taken, so a NaN or Inf
// in w reaches dst even where x is 0. Work is split over output columns.
func MatMulN(p *parallel.Pool, dst, x []float32, T int, w Mat, accumulate bool) {
	K, N := w.Rows, w.Cols
	checkMatMul("MatMulN", dst, x, T, w, N, K)
	if T == 0 || N == 0 {
		return
	}
	if K == 0 {
		if !accumulate {
			clear(dst[:T*N])
		}
		return
	}
	t := getTask(dst, x, T, w, N, K, false, accumulate)
	t.run(p)
	putTask(t)
}

func checkMatMul(op string, dst, x []float32, T int, w Mat, N, K int) {
	if T < 0 || N < 0 || K < 0 {
		panic(fmt.Sprintf("kernel: %s with negative size T=%d N=%d K=%d", op, T, N, K))
	}
	if len(dst) < T*N || len(x) < T*K || len(w.Data) < N*K*w.DType.Size() || dtIndex(w.DType) == 0 && w.DType != tensor.F32 {
		panic(fmt.Sprintf("kernel: %s: dst %d, x %d floats, w %s [%d,%d] %d bytes do not fit T=%d",
			op, len(dst), len(x), w.DType, w.Rows, w.Cols, len(w.Data), T))
	}
}

// Decode/prefill split. T <= matvecMaxT uses the matvec kernels: weights are read
// from memory once, in blocks of mvRowBlock rows (x·wᵀ) or mvKBlock rows (x·w) that
// stay in L1/L2 while groups of up to 4 tokens sweep them. Larger T runs the blocked
// GEMM of gemm.go.
const (
	matvecMaxT = 16
	mvRowBlock = 24 // a multiple of every mvTRows entry
	// mvTBlockBytes bounds a block of weight rows of the x·wᵀ path for more than
	// 4 tokens (rows a multiple of 4, at most mvRowBlock): the block and one
	// token group's activations (4·K floats) then stay in L1 while every group
	// sweeps the block. Measured on the LM head at T=16 (K=768 bf16): 12 rows
	// take ~10% less time than 24.
	mvTBlockBytes = 18 << 10
	mvKBlock      = 48 // weight rows per block of the x·w decode path (a multiple of every mvRRows entry)
)

// mmTask carries one product through parallel.Pool.For without allocating: tasks are
// pooled and their method values are bound once.
type mmTask struct {
	dst, x []float32
	T      int
	w      Mat
	N, K   int
	trans  bool // MatMulT (w [N,K]); else MatMulN (w [K,N])
	acc    bool
	k      *kernels

	atbA, atbB []float32 // MatMulATB's operands (generic path)

	gemmState

	rowPieces int // x·wᵀ decode: row pieces claimed by the workers

	// xp is x [T, K] pair-permuted for the bf16 x·wᵀ decode kernels (permutePairs),
	// nil when they do not run; xpBuf is its storage, kept across calls.
	xp, xpBuf []float32

	fnGeneric, fnMatvec, fnMatvecRows, fnATB, fnMatvecPiece func(lo, hi int)
}

var taskPool = freeList[mmTask]{new: func() *mmTask {
	t := new(mmTask)
	t.fnGeneric, t.fnMatvec, t.fnMatvecRows, t.fnATB = t.generic, t.matvec, t.matvecRows, t.atbGeneric
	t.fnMatvecPiece = t.matvecPiece
	t.fnPackA, t.fnWorker, t.fnReduce = t.packAGlobal, t.gemmWorker, t.reduce
	return t
}}

func getTask(dst, x []float32, T int, w Mat, N, K int, trans, acc bool) *mmTask {
	t := taskPool.get()
	t.dst, t.x, t.T, t.w, t.N, t.K, t.trans, t.acc, t.k = dst, x, T, w, N, K, trans, acc, simd
	return t
}

func putTask(t *mmTask) {
	t.dst, t.x, t.w, t.k, t.atbA, t.atbB, t.xp = nil, nil, Mat{}, nil, nil, nil, nil
	t.g = gemmOp{}
	taskPool.put(t)
}

func (t *mmTask) run(p *parallel.Pool) {
	switch {
	case t.k == nil:
		p.For(t.N, 16, t.fnGeneric)
	case t.T <= matvecMaxT && !t.trans && p.Workers() > 1 && t.K >= 4*mvKBlock*p.Workers():
		// x·w: one contiguous band of weight rows per worker streams better
		// than a strip of every row.
		t.workers = p.Workers()
		if need := (t.workers - 1) * t.T * t.N; cap(t.part) < need {
			t.part = make([]float32, need)
		}
		p.For(t.workers, 1, t.fnMatvecRows)
		t.reduceRows(0, t.T)
	case t.T <= matvecMaxT && t.trans:
		t.preparePairs()
		// batchPieces pieces of rows per worker, claimed dynamically (see MatMulBatch).
		t.rowPieces = 1
		if W := p.Workers(); W > 1 {
			t.rowPieces = max(1, min(W*batchPieces, t.N/64))
		}
		p.ForEach(t.rowPieces, t.fnMatvecPiece)
	case t.T <= matvecMaxT:
		p.For(t.N, 64, t.fnMatvec)
	default:
		g := gemmOp{M: t.T, N: t.N, K: t.K, a: t.x, lda: t.K, w: t.w.Data, d: dtIndex(t.w.DType),
			bT: t.trans, ldw: t.N, c: t.dst, acc: t.acc}
		if t.trans {
			g.ldw = t.K
		}
		t.runGemm(p, g)
	}
}

func (t *mmTask) generic(lo, hi int) {
	if t.trans {
		matMulTGeneric(t.dst, t.x, t.T, t.w, lo, hi)
	} else {
		matMulNGeneric(t.dst, t.x, t.T, t.w, lo, hi, t.acc)
	}
}

// matvecPiece runs the decode kernels on row pieces [lo, hi) of t.rowPieces (piece
// boundaries at multiples of 16 rows).
func (t *mmTask) matvecPiece(lo, hi int) {
	t.matvec(pieceBound(lo, t.rowPieces, t.N, 16), pieceBound(hi, t.rowPieces, t.N, 16))
}

// pieceBound is where piece i of pieces (i <= pieces) starts among n rows: an even
// split rounded down to a multiple of align (a power of two); the last piece ends at n.
func pieceBound(i, pieces, n, align int) int {
	if i >= pieces {
		return n
	}
	return n * i / pieces &^ (align - 1)
}

// Streams of the decode paths. A core reads several sequential streams through
// memory faster than one (measured on the BENCH experts, one thread: ~13 GB/s for
// 4 streams against ~8 for rows read one after another, beside ~15 for a plain
// read of two far-apart streams), so the single-group decode kernels take one row
// from each of several equal parts of their row range at a time.
const (
	mvTPAhead   = 2 // rows ahead, in its stream, that each x·wᵀ row prefetches
	mvRStreams  = 4 // streams of the x·w decode path (at most the bf16 mvRRows of every T <= 4)
	mvRAheadRow = 2 // rows ahead, in its stream, that each x·w row prefetches
)

// swPrefetchMinT is the fewest tokens for which the streamed decode paths
// (matvecPairs, matvecN and the panel streams) prefetch ahead in software. With
// one or two tokens a product is a plain stream that the hardware prefetchers
// serve better alone; from three on, the compute per line holds them back and the
// hints win. Measured in interleaved runs on the BENCH shape, 2 threads: the
// experts' products 4-12% faster at T=1 and 2 without the hints, 5-15% slower at
// T=4 and 6; a one-sequence decode step 6-8% faster, a 16-sequence one level.
const swPrefetchMinT = 3

// prefetchAhead is the prefetch distance in bytes of a streamed decode product of
// T tokens whose tuned distance is d: d, or 0 (the line being read, a no-op
// hint) below swPrefetchMinT tokens.
func prefetchAhead(T, d int) int {
	if T < swPrefetchMinT {
		return 0
	}
	return d
}

// mvTPGroup is the token group of the bf16 pair kernels for the tokens [t0, T):
// up to 8 tokens run in one group, which reads the weights once as streams
// (measured on the BENCH experts at T=6 and 8: ~25% faster than two groups
// sweeping cached blocks, though the kernels for 6-8 tokens are ~10% slower on
// cached data than 4×2); more are split into groups of 3 or 4, as equal as
// possible (9 = 3+3+3, 16 = 4·4), which sweep cached blocks.
func mvTPGroup(t0, T int) int {
	if T < len(mvTPRows) {
		return T - t0
	}
	groups := (T + 3) / 4
	i := (t0*groups + T - 1) / T // the group that starts at t0
	return (i+1)*T/groups - i*T/groups
}

// preparePairs sets t.xp for an x·wᵀ decode product over bf16 weights (the pair
// kernels), nil otherwise.
func (t *mmTask) preparePairs() {
	if t.allocPairs() {
		t.permute()
	}
}

// allocPairs sets t.xp to storage for the pair-permuted activations when the bf16
// pair kernels run (reporting whether they do), nil otherwise; permute fills it.
func (t *mmTask) allocPairs() bool {
	t.xp = nil
	if t.w.DType != tensor.BF16 || t.k.mvTP[1] == nil || t.K < 16 {
		return false
	}
	t.xpBuf = growT(t.xpBuf, t.T*t.K)
	t.xp = t.xpBuf
	return true
}

// permute writes x pair-permuted into t.xp.
func (t *mmTask) permute() { permutePairs(t.xp, t.x, t.T, t.K) }

// matvec runs the decode kernels on output columns [lo, hi).
func (t *mmTask) matvec(lo, hi int) {
	if !t.trans {
		t.matvecN(t.dst, t.acc, 0, t.K, lo, hi)
		return
	}
	d, es := dtIndex(t.w.DType), t.w.DType.Size()
	T, N, K := t.T, t.N, t.K
	dst, x, w := t.dst, t.x, t.w
	kk := K &^ 7 // columns the kernels take
	if t.xp != nil {
		kk = K &^ 15
		t.matvecPairs(lo, hi)
	} else {
		rb := mvRowBlock
		if T > 4 {
			rb = min(rb, max(4, mvTBlockBytes/(K*es)&^3))
		}
		for n0 := lo; n0 < hi; n0 += rb {
			n1 := min(n0+rb, hi)
			for t0 := 0; t0 < T; t0 += 4 {
				ks := t.k.mvT[d][min(4, T-t0)]
				for n := n0; n < n1; n += len(ks) {
					r := min(len(ks), n1-n)
					ks[r-1](&dst[t0*N+n], N, &x[t0*K], K, &w.Data[n*K*es], K, K)
				}
			}
		}
	}
	if kk < K { // the columns past the kernels'
		v := viewOf(w)
		for t := 0; t < T; t++ {
			xr := x[t*K+kk : t*K+K]
			for n := lo; n < hi; n++ {
				s := dst[t*N+n]
				for i, a := range xr {
					s += a * v.at(n*K+kk+i)
				}
				dst[t*N+n] = s
			}
		}
	}
}

// matvecPairs runs the bf16 pair kernels on rows [lo, hi) over the first K&^15
// columns.
func (t *mmTask) matvecPairs(lo, hi int) {
	const es = 2
	T, N, K := t.T, t.N, t.K
	dst, xp, w := t.dst, t.xp, t.w.Data
	if T < len(mvTPRows) {
		// One token group: each call takes one row from each of R streams (R
		// equal contiguous parts of [lo, hi)); every row prefetches its line
		// mvTPAhead rows further down its stream.
		ks := t.k.mvTP[T]
		R := len(ks)
		L := (hi - lo) / R
		pfd := prefetchAhead(T, mvTPAhead*K*es)
		for n := lo; n < lo+L; n++ {
			ks[R-1](&dst[n], N, L, &xp[0], K, &w[n*K*es], L*K, K, pfd)
		}
		for n := lo + R*L; n < hi; n++ {
			ks[0](&dst[n], N, 1, &xp[0], K, &w[n*K*es], K, K, pfd)
		}
		return
	}
	// Several token groups: blocks of rb rows stay in cache while every group
	// sweeps them; the first group prefetches the next block (measured on the LM
	// head at T=16: cutting the range into streams as above does not help there).
	rb := min(mvRowBlock, max(4, mvTBlockBytes/(K*es)&^3))
	for n0 := lo; n0 < hi; n0 += rb {
		n1 := min(n0+rb, hi)
		for t0, g := 0, 0; t0 < T; t0 += g {
			g = mvTPGroup(t0, T)
			ks := t.k.mvTP[g]
			pfd := 0 // later groups: their own lines, in cache (a harmless hint)
			if t0 == 0 {
				pfd = rb * K * es
			}
			for n := n0; n < n1; n += len(ks) {
				r := min(len(ks), n1-n)
				ks[r-1](&dst[t0*N+n], N, 1, &xp[t0*K], K, &w[n*K*es], K, K, pfd)
			}
		}
	}
}

// matvecN adds x·w over weight rows [k0, k1) into columns [lo, hi) of out [T, N]
// (overwriting them first unless acc): bf16 weights for up to 8 tokens are read
// as mvRStreams streams; otherwise it streams blocks of mvKBlock weight rows
// (contiguous within each row's strip) and every token group adds their
// contribution to its strip of out.
func (t *mmTask) matvecN(out []float32, acc bool, k0, k1, lo, hi int) {
	d, es := dtIndex(t.w.DType), t.w.DType.Size()
	T, N, K := t.T, t.N, t.K
	x, w := t.x, t.w
	n8 := lo + (hi-lo)&^7 // end of the whole 8-column vectors
	kc, accC := k0, acc   // where the passes over consecutive rows start
	// The bf16 kernels keep the columns in pair order (pairPos) while they add up.
	pairs := t.w.DType == tensor.BF16 && n8 > lo
	if pairs && acc {
		reorderPairs(out, N, T, lo, n8-lo, true)
	}
	if pairs && T <= 2*4 {
		// Every pass takes one row from each of mvRStreams streams (equal
		// contiguous parts of [k0, k1)), for one or two token groups (the second
		// rereads the rows from L1), their x gathered into xs; every row
		// prefetches its line mvRAheadRow rows further down its stream. The last
		// (k1-k0)%mvRStreams rows take the passes below.
		const S = mvRStreams
		if L := (k1 - k0) / S; L > 0 {
			// xs [T][S] comes from a free list: a local array would escape
			// through the kernel call by func value.
			xs := streamX.get()
			defer streamX.put(xs)
			pfd := prefetchAhead(T, mvRAheadRow*N*es)
			g0 := (T + 1) / 2 // tokens of the first group when there are two
			if T <= 4 {
				g0 = T
			}
			for j := 0; j < L; j++ {
				for tt := 0; tt < T; tt++ {
					for s := 0; s < S; s++ {
						xs[tt*S+s] = x[tt*K+k0+s*L+j]
					}
				}
				a := 1
				if j == 0 && !acc {
					a = 0
				}
				for t0, g := 0, g0; t0 < T; t0, g = t0+g, T-g0 {
					ks := t.k.mvR[d][g]
					ks[S-1](&out[t0*N+lo], N, &xs[t0*S], S, &w.Data[((k0+j)*N+lo)*es], L*N, n8-lo, a, pfd)
				}
			}
			kc, accC = k0+S*L, true
		}
	}
	if n8 > lo {
		for b0 := kc; b0 < k1; b0 += mvKBlock {
			b1 := min(b0+mvKBlock, k1)
			for t0 := 0; t0 < T; t0 += 4 {
				ks := t.k.mvR[d][min(4, T-t0)]
				if T == 1 && es == 2 {
					// A single token over 16-bit weights takes one row per pass:
					// the weights are then read strictly in order, which the
					// hardware prefetchers stream best.
					ks = ks[:1]
				}
				for k := b0; k < b1; {
					kr := min(len(ks), b1-k)
					a := 1
					if k == kc && !accC {
						a = 0
					}
					// Prefetch the rows two passes ahead.
					ks[kr-1](&out[t0*N+lo], N, &x[t0*K+k], K, &w.Data[(k*N+lo)*es], N, n8-lo, a, 2*kr*N*es)
					k += kr
				}
			}
		}
	}
	if pairs {
		reorderPairs(out, N, T, lo, n8-lo, false)
	}
	if n8 < hi {
		if k0 != 0 || k1 != K {
			panic("kernel: matvecN: column tail with a partial row range")
		}
		matMulNGeneric(out, x, T, w, n8, hi, acc)
	}
}

// reorderPairs puts the whole 16-column chunks of columns [lo, lo+n8) of out [T,
// ldd] into pair order (toPairs) or back into natural order; see pairPos.
func reorderPairs(out []float32, ldd, T, lo, n8 int, toPairs bool) {
	var tmp [16]float32
	for t := 0; t < T; t++ {
		row := out[t*ldd+lo : t*ldd+lo+n8&^15]
		for c := 0; c < len(row); c += 16 {
			ch := row[c : c+16]
			copy(tmp[:], ch)
			for j := 0; j < 8; j++ {
				if toPairs {
					ch[j], ch[8+j] = tmp[2*j], tmp[2*j+1]
				} else {
					ch[2*j], ch[2*j+1] = tmp[j], tmp[8+j]
				}
			}
		}
	}
}

// streamX holds the activations of one pass of the streamed x·w decode path.
var streamX = freeList[[8 * mvRStreams]float32]{new: func() *[8 * mvRStreams]float32 { return new([8 * mvRStreams]float32) }}

// matvecRows is the x·w decode path split over weight rows rather than columns:
// worker slot s streams a contiguous band of rows (whole rows, one sequential read)
// into dst (slot 0) or its partial sum [T, N] (the others), added up afterwards.
// Slot 0 also takes the last N%8 columns over all rows.
func (t *mmTask) matvecRows(lo, hi int) {
	T, N, K, W := t.T, t.N, t.K, t.workers
	n8 := N &^ 7
	for s := lo; s < hi; s++ {
		k0 := s * K / W / mvKBlock * mvKBlock
		k1 := (s + 1) * K / W / mvKBlock * mvKBlock
		if s == W-1 {
			k1 = K
		}
		if s == 0 {
			if n8 < N {
				matMulNGeneric(t.dst, t.x, T, t.w, n8, N, t.acc)
			}
			if k1 > k0 {
				t.matvecN(t.dst, t.acc, k0, k1, 0, n8)
			} else if !t.acc {
				for i := 0; i < T; i++ {
					clear(t.dst[i*N : i*N+n8])
				}
			}
			continue
		}
		part := t.part[(s-1)*T*N : s*T*N]
		if k1 > k0 {
			t.matvecN(part, false, k0, k1, 0, n8)
		} else {
			clear(part)
		}
	}
}

// reduceRows adds the partial sums of matvecRows into dst rows [lo, hi) (tokens).
func (t *mmTask) reduceRows(lo, hi int) {
	T, N := t.T, t.N
	n8 := N &^ 7
	for s := 1; s < t.workers; s++ {
		part := t.part[(s-1)*T*N : s*T*N]
		for i := lo; i < hi; i++ {
			AxpyF32(t.dst[i*N:i*N+n8], 1, part[i*N:i*N+n8])
		}
	}
}
