package kernel

import (
	"fmt"

	"github.com/dbrx-engine/dbrx/internal/parallel"
)

// Product is one matrix product of MatMulBatch.
//
//	x·wᵀ (NoTrans false): Dst [T, W.Rows] = X [T, W.Cols] · Wᵀ   (as MatMulT / MatMulTQ)
//	x·w  (NoTrans true):  Dst [T, W.Cols] = X [T, W.Rows] · W    (as MatMulN, overwriting)
type Product struct {
	Dst, X  []float32
	T       int
	W       Mat
	NoTrans bool
}

// MatMulBatch computes several independent decode-sized products in one parallel
// dispatch: the weight rows of all products, in order, are cut into batchPieces
// contiguous pieces per worker of equal estimated cost (bytes streamed plus
// multiply-adds), which the workers claim in order (parallel.Pool.ForEach), so
// each piece streams front to back, the pool is woken once instead of once per
// product, and a worker slowed down (by a busy machine, say) takes fewer pieces.
// An x·w product cut inside its rows gets the partial sums of its later pieces
// added afterwards, in piece order (so results depend only on the worker count).
//
// Products the banded path does not take (T > 16, x·w with a column count that is
// not a multiple of 8, quantized weights without a fused kernel for their T) run
// one by one through MatMulT, MatMulN or MatMulTQ. Results agree with those calls
// to rounding (the x·w sums may be split differently). A warmed-up call allocates
// nothing.
func MatMulBatch(p *parallel.Pool, ps []Product) {
	t := batchPool.get()
	t.ps = ps
	t.run(p)
	t.ps = nil
	for i := range t.mm {
		t.mm[i].dst, t.mm[i].x, t.mm[i].w, t.mm[i].xp = nil, nil, Mat{}, nil
	}
	for i := range t.q {
		t.q[i].dst, t.q[i].x, t.q[i].w = nil, nil, Mat{}
	}
	batchPool.put(t)
}

// batchPos is a boundary between bands: row r of product i.
type batchPos struct{ i, r int }

type batchTask struct {
	ps    []Product
	mode  []int8 // per product: 0 skip (empty), 1 banded float x·wᵀ, 2 banded float x·w, 3 banded quantized, 4 separate call
	rowC  []float64
	mm    []mmTask
	q     []qTask
	bound []batchPos // P+1 piece boundaries
	owner []int      // per piece: product whose partial sum part[s] holds, or -1
	part  []float32  // per piece: [maxTN]
	maxTN int
	// toPermute lists the x·wᵀ products whose pair-permuted activations are filled
	// in parallel before the bands run (w1 and v1 of an expert share one).
	toPermute []int
	fn        func(lo, hi int)
	fnPermute func(lo, hi int)
}

var batchPool = freeList[batchTask]{new: func() *batchTask {
	t := new(batchTask)
	t.fn, t.fnPermute = t.band, t.permute
	return t
}}

const (
	bSkip = iota
	bFloatT
	bFloatN
	bQuant
	bAlone
)

// batchMACCost is the cost of one multiply-add relative to one weight byte streamed
// from memory, for balancing bands (measured: ~10 GB/s per core of DRAM against
// ~20 G bf16 multiply-adds per second per core in the decode kernels).
const batchMACCost = 0.5

// batchPieces is the number of pieces per worker of a MatMulBatch (dynamic
// balance against per-piece cost: a cut x·w product adds a partial sum).
const batchPieces = 4

func (t *batchTask) run(p *parallel.Pool) {
	n := len(t.ps)
	t.mode = growT(t.mode, n)
	t.rowC = growT(t.rowC, n)
	if cap(t.mm) < n {
		t.mm = make([]mmTask, n)
		t.q = make([]qTask, n)
	}
	t.mm, t.q = t.mm[:n], t.q[:n]
	total := 0.0
	t.maxTN = 0
	t.toPermute = t.toPermute[:0]
	for i := range t.ps {
		pr := &t.ps[i]
		w := pr.W
		N, K := w.Rows, w.Cols
		if pr.NoTrans {
			N, K = w.Cols, w.Rows
		}
		if len(pr.Dst) < pr.T*N || len(pr.X) < pr.T*K {
			panic(fmt.Sprintf("kernel: MatMulBatch: product %d: dst %d, x %d floats do not fit T=%d, w [%d,%d]", i, len(pr.Dst), len(pr.X), pr.T, w.Rows, w.Cols))
		}
		m := int8(bAlone)
		switch {
		case pr.T == 0 || N == 0:
			m = bSkip
		case K == 0 || pr.T > matvecMaxT || simd == nil:
		case w.IsQuantized():
			if !pr.NoTrans && pr.T <= qSmallT {
				if f := qFormatOf(w.DType); f.mv[pr.T] != nil {
					m = bQuant
					q := &t.q[i]
					q.dst, q.x, q.T, q.w, q.N, q.K, q.rb, q.f = pr.Dst, pr.X, pr.T, w, N, K, w.RowBytes(), f
				}
			}
		case pr.NoTrans && N%8 == 0:
			m = bFloatN
			t.maxTN = max(t.maxTN, pr.T*N)
		case !pr.NoTrans:
			m = bFloatT
		}
		if m == bFloatT || m == bFloatN {
			checkMatMul("MatMulBatch", pr.Dst, pr.X, pr.T, w, N, K)
			mt := &t.mm[i]
			mt.dst, mt.x, mt.T, mt.w, mt.N, mt.K, mt.trans, mt.acc, mt.k = pr.Dst, pr.X, pr.T, w, N, K, !pr.NoTrans, false, simd
			mt.xp = nil
			if m == bFloatT {
				t.preparePairs(i)
			}
		}
		t.mode[i] = m
		t.rowC[i] = 0
		if m == bFloatT || m == bFloatN || m == bQuant {
			t.rowC[i] = float64(w.RowBytes()) + batchMACCost*float64(pr.T*w.Cols)
			total += t.rowC[i] * float64(w.Rows)
		}
	}
	p.For(len(t.toPermute), 1, t.fnPermute)
	if total > 0 {
		W := p.Workers()
		if W > 1 {
			W *= batchPieces
		}
		t.bound = growT(t.bound, W+1)
		t.owner = growT(t.owner, W)
		if need := W * t.maxTN; cap(t.part) < need {
			t.part = make([]float32, need)
		}
		// Boundaries: the first row whose cumulative cost start reaches s/W of the total.
		i, acc := 0, 0.0
		for s := 0; s <= W; s++ {
			target := total * float64(s) / float64(W)
			for i < n && (t.rowC[i] == 0 || acc+t.rowC[i]*float64(t.ps[i].W.Rows) <= target) {
				acc += t.rowC[i] * float64(t.ps[i].W.Rows)
				i++
			}
			r := 0
			if i < n && s < W {
				r = int((target - acc) / t.rowC[i])
				g := 4 // row granularity: whole kernel row groups
				if t.mode[i] == bFloatN {
					g = mvKBlock
				}
				r = r / g * g
				r = min(r, t.ps[i].W.Rows)
			}
			if s == W {
				i, r = n, 0
			}
			t.bound[s] = batchPos{i, r}
		}
		p.ForEach(W, t.fn)
		for s := 1; s < W; s++ {
			if i := t.owner[s]; i >= 0 {
				pr := &t.ps[i]
				N := pr.W.Cols
				AxpyF32(pr.Dst[:pr.T*N], 1, t.part[s*t.maxTN:s*t.maxTN+pr.T*N])
			}
		}
	}
	for i := range t.ps {
		if t.mode[i] != bAlone {
			continue
		}
		pr := &t.ps[i]
		switch {
		case pr.W.IsQuantized():
			MatMulTQ(p, pr.Dst, pr.X, pr.T, pr.W)
		case pr.NoTrans:
			MatMulN(p, pr.Dst, pr.X, pr.T, pr.W, false)
		default:
			MatMulT(p, pr.Dst, pr.X, pr.T, pr.W)
		}
	}
}

// preparePairs gives x·wᵀ product i storage for its pair-permuted activations
// (the bf16 kernels), listed in toPermute to be filled in parallel, or shares
// those of an earlier product with the same x (an expert's w1 and v1).
func (t *batchTask) preparePairs(i int) {
	pr, mt := &t.ps[i], &t.mm[i]
	for j := i - 1; j >= 0; j-- {
		q, mq := &t.ps[j], &t.mm[j]
		if t.mode[j] == bFloatT && mq.xp != nil && q.T == pr.T && mq.K == mt.K && mt.w.DType == mq.w.DType && &q.X[0] == &pr.X[0] {
			mt.xp = mq.xp
			return
		}
	}
	if mt.allocPairs() {
		t.toPermute = append(t.toPermute, i)
	}
}

// permute fills the pair-permuted activations of products toPermute[lo:hi].
func (t *batchTask) permute(lo, hi int) {
	for _, i := range t.toPermute[lo:hi] {
		t.mm[i].permute()
	}
}

// band runs pieces [lo, hi).
func (t *batchTask) band(lo, hi int) {
	for s := lo; s < hi; s++ {
		t.owner[s] = -1
		b0, b1 := t.bound[s], t.bound[s+1]
		for i := b0.i; i < len(t.ps) && (i < b1.i || i == b1.i && b1.r > 0); i++ {
			r0, r1 := 0, t.ps[i].W.Rows
			if i == b0.i {
				r0 = b0.r
			}
			if i == b1.i {
				r1 = b1.r
			}
			if r0 >= r1 {
				continue
			}
			switch t.mode[i] {
			case bFloatT:
				t.mm[i].matvec(r0, r1)
			case bQuant:
				t.q[i].fused(r0, r1)
			case bFloatN:
				mt := &t.mm[i]
				out := mt.dst
				if r0 > 0 { // a later worker's share: a partial sum, added afterwards
					out = t.part[s*t.maxTN : s*t.maxTN+mt.T*mt.N]
					t.owner[s] = i
				}
				mt.matvecN(out, false, r0, r1, 0, mt.N)
			}
		}
	}
}

func growT[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}
