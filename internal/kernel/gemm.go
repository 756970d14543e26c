package kernel

import (
	"math"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/dbrx-engine/dbrx/internal/parallel"
	"github.com/dbrx-engine/dbrx/tensor"
)

// The blocked GEMM behind MatMulT and MatMulN (T > matvecMaxT) and MatMulATB:
//
//	C [M, N] (+)= A [M, K] · B [K, N]
//
// A (activations) is packed into [kc][6] panels that the 6×16 micro-kernel
// broadcasts from; B (weights, or the right-hand operand of aᵀ·b) into [kc][16]
// panels it loads as two vectors. Either operand can be transposed in memory:
//
//	A[i, p] = a[i*lda+p] (x of MatMulT/N)   or a[p*lda+i] (aT: the aᵀ of MatMulATB)
//	B[p, j] = w[j*ldw+p] (bT: MatMulT's w)  or w[p*ldw+j] (MatMulN's w, ATB's b)
//
// Loops (BLIS order): for each block of gemmNC output columns and kc reduction
// rows a worker packs a B block (≤ 384 KB, L2), then for each block of mc rows it
// takes the A block (packed once up front and shared when A is small, else packed
// now, ≤ 108 KB) and sweeps the micro-kernel over 16-column panels (B micro-panel
// in L1) × 6-row panels.
//
// Work is split into pieces along N, M or K, whichever packs the least (a cost
// model in plan); the workers claim pieces one at a time, so a worker whose core
// is shared with another process takes fewer. K pieces (a small C and a long
// reduction, as in dlogits·W) go into per-worker partial sums added at the end.
//
// Operands larger than the caches are streamed from DRAM while the micro-kernel
// computes: every call prefetches a few lines of the next B block and of the next
// A block (pfCursor), so packing finds them in cache.
const (
	gemmMR    = 6
	gemmNR    = 16
	gemmKC    = 256 // reduction block: B micro-panel 16 KB, A micro-panel 6 KB (L1)
	gemmKCMax = 384 // a reduction up to this long is one block
	gemmNC    = 256 // output columns per B block (kc·256 floats ≤ 384 KB in L2)
	gemmMC    = 72  // rows per A block (a multiple of gemmMR)
)

// Thresholds of the plan (variables so that tests can reach every path with small
// shapes).
var (
	aGlobalMax = 1 << 22 // an A of at most this many floats is packed once, up front
	bGlobalMax = 1 << 20 // so is a B of at most this many floats when row pieces share it
	// pfMinBytes: operands at least this large are prefetched block by block. A
	// BENCH expert (2 MiB of bf16) is streamed from memory by every prefill step,
	// and prefetching it makes its products at 24-128 tokens 5-20% faster
	// (interleaved runs, 2 threads) than with the earlier 4 MiB threshold.
	pfMinBytes = 1 << 20
)

// Work splits.
const (
	splitN = iota
	splitM
	splitK
)

// gemmOp is one product C [M, N] (+)= A [M, K] · B [K, N] (see the file comment).
type gemmOp struct {
	M, N, K int
	a       []float32
	lda     int
	aT      bool
	w       []byte // B's elements, dtype index d
	ldw     int
	bT      bool
	bPanel  bool // B is MatMulTPanels' w: PanelMat data of ldw columns (bT, d bf16)
	d       int
	c       []float32 // [M, N], row stride N
	acc     bool
}

// gemmState is the GEMM part of an mmTask: the plan and the shared buffers.
type gemmState struct {
	g       gemmOp
	wv      weightView
	es      int
	kc, mc  int
	split   int
	pieceW  int // piece length along the split dimension (columns, rows or kc)
	pieces  int
	aGlobal bool
	tp      int       // M rounded up to gemmMR
	apack   []float32 // A packed up front: [K/kc][tp/6][kc][6]
	bGlobal bool
	np      int       // N rounded up to gemmNR
	bpack   []float32 // B packed up front: [K/kc][np/16][kc][16]
	pfA     bool
	pfB     bool
	seq     uint64
	claimed atomic.Int64
	workers int
	part    []float32 // split K: partial sums of workers 1… [(workers-1)][M*N]
	used    []bool    // split K: worker w has written its sum

	fnPackA, fnWorker, fnReduce func(lo, hi int)
}

// gemmScratch is one worker's packing buffers.
type gemmScratch struct {
	b    []float32 // B block [nc/16][kc][16]
	a    []float32 // A block [mc/6][kc][6]
	ctmp [gemmMR * gemmNR]float32
	key  bKey // the B block b holds
}

type bKey struct {
	seq     uint64
	jc, pc  int
	nc, kcb int
}

var gemmScratchPool = freeList[gemmScratch]{new: func() *gemmScratch {
	return &gemmScratch{b: make([]float32, gemmKCMax*gemmNC), a: make([]float32, gemmMC*gemmKCMax)}
}}

// freeList is a bounded stack of reusable buffers. Unlike a sync.Pool it neither
// empties at garbage collection nor misses when the goroutine that returns a
// buffer ran on another P than the one that takes it next (a pool worker and the
// caller), so a warmed-up call never allocates.
type freeList[T any] struct {
	mu    sync.Mutex
	items []*T
	new   func() *T
}

func (f *freeList[T]) get() *T {
	f.mu.Lock()
	if n := len(f.items); n > 0 {
		x := f.items[n-1]
		f.items = f.items[:n-1]
		f.mu.Unlock()
		return x
	}
	f.mu.Unlock()
	return f.new()
}

func (f *freeList[T]) put(x *T) {
	f.mu.Lock()
	if len(f.items) < 64 {
		f.items = append(f.items, x)
	}
	f.mu.Unlock()
}

// gemmSeq numbers GEMM calls so a worker's packed B block is never taken for
// another call's.
var gemmSeq atomic.Uint64

func ceilDiv(a, b int) int { return (a + b - 1) / b }

func roundUp(a, b int) int { return ceilDiv(a, b) * b }

// runGemm plans and runs g on the pool.
func (t *mmTask) runGemm(p *parallel.Pool, g gemmOp) {
	t.g = g
	t.wv = weightView{}
	switch g.d {
	case 0:
		t.wv.f32 = tensor.Float32s(g.w)
	default:
		t.wv.u16, t.wv.f16 = tensor.Uint16s(g.w), g.d == 2
	}
	t.es = 4
	if g.d != 0 {
		t.es = 2
	}
	W := p.Workers()
	t.plan(W)
	t.tp, t.np = roundUp(g.M, gemmMR), roundUp(g.N, gemmNR)
	if t.aGlobal {
		if need := t.tp * g.K; cap(t.apack) < need {
			t.apack = make([]float32, need)
		}
		t.apack = t.apack[:t.tp*g.K]
	}
	if t.bGlobal {
		if need := t.np * g.K; cap(t.bpack) < need {
			t.bpack = make([]float32, need)
		}
		t.bpack = t.bpack[:t.np*g.K]
	}
	if n := t.globalPanels(); n > 0 {
		p.For(n, 1, t.fnPackA)
	}
	t.workers = W
	if cap(t.used) < W {
		t.used = make([]bool, W)
	}
	t.used = t.used[:W]
	clear(t.used)
	if t.split == splitK && W > 1 {
		if need := (W - 1) * g.M * g.N; cap(t.part) < need {
			t.part = make([]float32, need)
		}
	}
	t.seq = gemmSeq.Add(1)
	t.claimed.Store(0)
	p.For(W, 1, t.fnWorker)
	if t.split == splitK && (W > 1 || !t.used[0]) {
		p.For(g.M, 8, t.fnReduce)
	}
}

// plan picks the reduction block, the split and the piece size for W workers.
func (t *mmTask) plan(W int) {
	g := &t.g
	M, N, K := g.M, g.N, g.K
	if K <= gemmKCMax {
		t.kc = K
	} else {
		t.kc = roundUp(ceilDiv(K, ceilDiv(K, gemmKC)), 8)
	}
	kBlocks := ceilDiv(K, t.kc)
	t.aGlobal = M*K <= aGlobalMax
	t.pfA = !t.aGlobal && 4*M*K >= pfMinBytes
	t.pfB = t.es*K*N >= pfMinBytes

	// Estimated time in cycles: the micro-kernel's 16 MACs per cycle on the
	// busiest worker (pieces are claimed one at a time, so it takes ceil(pieces/W)
	// of them), plus about a cycle per packed element and a quarter per element of
	// packed A or B re-read from L3, shared by the workers. With several workers a
	// quarter of a piece is added for the one that starts or runs late (a shared
	// machine), so that cheap small pieces win over few large ones.
	macs := float64(M) * float64(N) * float64(K) / 16
	best := math.Inf(1)
	consider := func(split, pieceW, pieces, length int, work float64) {
		busiest := float64(min(ceilDiv(pieces, W)*pieceW, length)) / float64(length)
		c := macs*busiest + work/float64(W)
		if W > 1 {
			c += macs * float64(pieceW) / float64(length) / 4
		}
		if c < best {
			best, t.split, t.pieceW, t.pieces = c, split, pieceW, pieces
		}
	}
	// Piece lengths: whole blocks, and W·q equal pieces.
	widths := func(total, unit, block int) [7]int {
		ws := [7]int{block, block / 2, block / 4}
		for i := 0; i < 4; i++ {
			ws[3+i] = roundUp(ceilDiv(total, W<<i), unit)
		}
		return ws
	}
	mk, kn := float64(M)*float64(K), float64(K)*float64(N)
	for _, pw := range widths(N, gemmNR, gemmNC) {
		pw = min(pw, roundUp(N, gemmNR))
		pn := ceilDiv(N, pw)
		work := mk + kn + mk*float64(pn)/4 // A packed once, streamed per piece
		if !t.aGlobal {
			work = mk*float64(pn) + kn // A packed per piece
		}
		consider(splitN, pw, pn, N, work)
	}
	for _, pw := range widths(M, gemmMR, 4*gemmMC) {
		pw = min(pw, roundUp(M, gemmMR))
		pm := ceilDiv(M, pw)
		packB := kn * float64(pm)
		switch {
		case K*N <= bGlobalMax: // packed once, up front, streamed per piece
			packB = kn + kn*float64(pm)/4
		case N <= gemmNC && K <= t.kc: // one B block: each worker packs it once
			packB = kn * float64(min(pm, W))
		}
		consider(splitM, pw, pm, M, mk+packB)
	}
	if kBlocks >= 2 && (W == 1 || M*N <= 1<<20) {
		consider(splitK, t.kc, kBlocks, K, mk+kn+2*float64(M)*float64(N)*float64(W-1))
	}

	t.bGlobal = t.split == splitM && t.pieces > 1 && K*N <= bGlobalMax
	rows := M
	if t.split == splitM {
		rows = t.pieceW
	}
	t.mc = roundUp(ceilDiv(rows, ceilDiv(rows, gemmMC)), gemmMR)
}

// globalPanels is the number of panels packed up front: the A panels (6 rows)
// when aGlobal, then the B panels (16 columns) when bGlobal, all of K each.
func (t *mmTask) globalPanels() int {
	n := 0
	if t.aGlobal {
		n += t.tp / gemmMR
	}
	if t.bGlobal {
		n += t.np / gemmNR
	}
	return n
}

// packAGlobal packs global panels [lo, hi) (see globalPanels) for every reduction
// block.
func (t *mmTask) packAGlobal(lo, hi int) {
	K := t.g.K
	if t.aGlobal {
		ap := t.tp / gemmMR
		if a0, a1 := lo, min(hi, ap); a0 < a1 {
			for pc := 0; pc < K; pc += t.kc {
				kc := min(t.kc, K-pc)
				t.packABlock(t.apack[pc*t.tp+a0*gemmMR*kc:], a0*gemmMR, (a1-a0)*gemmMR, pc, kc)
			}
		}
		lo, hi = max(lo-ap, 0), hi-ap
	}
	if t.bGlobal && lo < hi {
		j0, j1 := lo*gemmNR, min(hi*gemmNR, t.g.N)
		for pc := 0; pc < K; pc += t.kc {
			kc := min(t.kc, K-pc)
			t.packB(t.bpack[pc*t.np+j0*kc:], j0, j1-j0, pc, kc)
		}
	}
}

// packABlock packs A rows [r0, r0+rows) (zeros past M) × reduction [pc, pc+kc) into
// ceil(rows/6) consecutive [kc][6] panels of dst.
func (t *mmTask) packABlock(dst []float32, r0, rows, pc, kc int) {
	g := &t.g
	panels := ceilDiv(rows, gemmMR)
	dst = dst[:panels*gemmMR*kc]
	full := min(rows, g.M-r0) / gemmMR // panels of 6 rows inside A
	if g.aT && full > 0 {
		t.k.packACB(&dst[0], &g.a[pc*g.lda+r0], g.lda, kc, full)
	}
	for q := 0; q < panels; q++ {
		p0, r := dst[q*gemmMR*kc:(q+1)*gemmMR*kc], r0+q*gemmMR
		k0 := 0
		if q < full {
			if g.aT {
				continue
			}
			if kc >= 8 {
				t.k.packAR(&p0[0], &g.a[r*g.lda+pc], g.lda, kc)
			}
			k0 = kc &^ 7
		}
		mr := min(gemmMR, g.M-r)
		for kk := k0; kk < kc; kk++ {
			for i := 0; i < gemmMR; i++ {
				var v float32
				if i < mr {
					if g.aT {
						v = g.a[(pc+kk)*g.lda+r+i]
					} else {
						v = g.a[(r+i)*g.lda+pc+kk]
					}
				}
				p0[kk*gemmMR+i] = v
			}
		}
	}
}

// packB packs output columns [jc, jc+nc) × reduction rows [pc, pc+kc) of B into b
// as ceil(nc/16) panels of [kc][16] floats, zero columns past the edge.
func (t *mmTask) packB(b []float32, jc, nc, pc, kc int) {
	g := &t.g
	d, es, ldw := g.d, t.es, g.ldw
	v := t.wv
	full := nc / gemmNR
	if g.bPanel { // panel n/16 widens to [kc][16] as it is, zero rows past N included
		for jr := 0; jr < nc; jr += gemmNR {
			n := jc + jr
			t.k.widenPanel(&b[jr*kc], &g.w[((n/panelRows)*ldw+pc)*panelRows*2], kc)
		}
		return
	}
	if !g.bT && full > 0 { // B[p, j] = w[p*ldw+j]: whole rows at once
		t.k.packNRows[d](&b[0], &g.w[(pc*ldw+jc)*es], ldw, kc, full)
	}
	for jr := 0; jr < nc; jr += gemmNR {
		nr := min(gemmNR, nc-jr)
		panel := b[jr*kc : jr*kc+gemmNR*kc]
		n := jc + jr
		if g.bT { // B[p, j] = w[j*ldw+p]
			k8 := 0
			if nr == gemmNR {
				t.k.packT[d](&panel[0], &g.w[(n*ldw+pc)*es], ldw, kc)
				k8 = kc &^ 7
			}
			for i := k8; i < kc; i++ {
				for j := 0; j < gemmNR; j++ {
					var f float32
					if j < nr {
						f = v.at((n+j)*ldw + pc + i)
					}
					panel[i*gemmNR+j] = f
				}
			}
			continue
		}
		if nr == gemmNR {
			continue
		}
		for i := 0; i < kc; i++ {
			for j := 0; j < gemmNR; j++ {
				var f float32
				if j < nr {
					f = v.at((pc+i)*ldw + n + j)
				}
				panel[i*gemmNR+j] = f
			}
		}
	}
}

// bounds returns the rows, columns and reduction range of a piece.
func (t *mmTask) bounds(piece int) (m0, m1, n0, n1, k0, k1 int) {
	g := &t.g
	m0, m1, n0, n1, k0, k1 = 0, g.M, 0, g.N, 0, g.K
	switch t.split {
	case splitN:
		n0 = piece * t.pieceW
		n1 = min(n0+t.pieceW, g.N)
	case splitM:
		m0 = piece * t.pieceW
		m1 = min(m0+t.pieceW, g.M)
	default:
		k0 = piece * t.kc
		k1 = min(k0+t.kc, g.K)
	}
	return
}

func (t *mmTask) claim() int {
	if i := int(t.claimed.Add(1) - 1); i < t.pieces {
		return i
	}
	return -1
}

// gemmWorker runs as worker lo (For hands out one index per worker; a pool busy
// elsewhere runs them all on the caller, the first then claiming every piece). A
// worker claims its next piece before working on the current one, so that it can
// prefetch for it.
func (t *mmTask) gemmWorker(lo, hi int) {
	ws := gemmScratchPool.get()
	for w := lo; w < hi; w++ {
		cur := t.claim()
		for cur >= 0 {
			next := t.claim()
			t.piece(ws, w, cur, next)
			cur = next
		}
	}
	gemmScratchPool.put(ws)
}

// step is one B block of a piece and the rows it is swept over.
type step struct {
	m0, m1, jc, nc, pc, kc int
}

// firstStep returns the first step of a piece.
func (t *mmTask) firstStep(piece int) step {
	m0, m1, n0, n1, k0, k1 := t.bounds(piece)
	return step{m0, m1, n0, min(gemmNC, n1-n0), k0, min(t.kc, k1-k0)}
}

// nextStep returns the step after s within piece, or the first step of the piece
// next (ok false if there is none).
func (t *mmTask) nextStep(s step, piece, next int) (step, bool) {
	_, _, _, n1, k0, k1 := t.bounds(piece)
	if pc := s.pc + s.kc; pc < k1 {
		s.pc, s.kc = pc, min(t.kc, k1-pc)
		return s, true
	}
	if jc := s.jc + gemmNC; jc < n1 {
		s.jc, s.nc, s.pc, s.kc = jc, min(gemmNC, n1-jc), k0, min(t.kc, k1-k0)
		return s, true
	}
	if next < 0 {
		return s, false
	}
	return t.firstStep(next), true
}

// piece computes one piece on worker w.
func (t *mmTask) piece(ws *gemmScratch, w, piece, next int) {
	g := &t.g
	M, N := g.M, g.N
	_, _, n0, n1, k0, k1 := t.bounds(piece)
	c := g.c
	first := g.acc
	if t.split == splitK {
		if w > 0 {
			c = t.part[(w-1)*M*N : w*M*N]
			first = t.used[w]
		} else {
			first = g.acc || t.used[0]
		}
		t.used[w] = true
	}
	s := t.firstStep(piece)
	for s.jc = n0; s.jc < n1; s.jc += gemmNC {
		s.nc = min(gemmNC, n1-s.jc)
		for s.pc = k0; s.pc < k1; s.pc += t.kc {
			s.kc = min(t.kc, k1-s.pc)
			bb := ws.b
			if t.bGlobal {
				bb = t.bpack[s.pc*t.np+s.jc*s.kc:]
			} else if key := (bKey{t.seq, s.jc, s.pc, s.nc, s.kc}); ws.key != key {
				t.packB(ws.b, s.jc, s.nc, s.pc, s.kc)
				ws.key = key
			}
			acc := 0
			if first || s.pc > k0 {
				acc = 1
			}
			ns, more := t.nextStep(s, piece, next)
			var curB, curA pfCursor
			jPanels := ceilDiv(s.nc, gemmNR)
			if t.pfB && !t.bGlobal && more && (ns.jc != s.jc || ns.pc != s.pc || ns.nc != s.nc || ns.kc != s.kc) {
				t.bRegion(&curB, ns.jc, ns.nc, ns.pc, ns.kc, jPanels*ceilDiv(s.m1-s.m0, gemmMR))
			}
			for ic := s.m0; ic < s.m1; ic += t.mc {
				mc := min(t.mc, s.m1-ic)
				var ap []float32
				if t.aGlobal {
					ap = t.apack[s.pc*t.tp+ic*s.kc:]
				} else {
					ap = ws.a
					t.packABlock(ap, ic, mc, s.pc, s.kc)
				}
				if t.pfA {
					calls := jPanels * ceilDiv(mc, gemmMR)
					if nic := ic + t.mc; nic < s.m1 {
						t.aRegion(&curA, nic, min(t.mc, s.m1-nic), s.pc, s.kc, calls)
					} else if more {
						t.aRegion(&curA, ns.m0, min(t.mc, ns.m1-ns.m0), ns.pc, ns.kc, calls)
					}
				}
				t.sweep(ws, bb, c, acc, s.jc, s.nc, ic, mc, s.kc, ap, &curA, &curB)
			}
		}
	}
}

// sweep runs the micro-kernel over the B block bb (columns [jc, jc+nc)) and the
// A block ap (rows [ic, ic+mc)): one gemmCol call per 16-column panel for the
// whole 6-row panels, the gemm[mr] kernels for the edges. Each call prefetches for
// the cursors in turn.
func (t *mmTask) sweep(ws *gemmScratch, bb, c []float32, acc, jc, nc, ic, mc, kc int, ap []float32, curA, curB *pfCursor) {
	N := t.g.N
	k := t.k
	call := 0
	take := func(calls int) (uintptr, int, int) {
		first, second := curA, curB
		if call&1 != 0 {
			first, second = curB, curA
		}
		call++
		if pf, pfs, pfn := first.take(calls * first.quota); pfn > 0 {
			return pf, pfs, pfn
		}
		return second.take(calls * second.quota)
	}
	full := mc / gemmMR
	for jr := 0; jr < nc; jr += gemmNR {
		nr := min(gemmNR, nc-jr)
		bp := &bb[jr*kc]
		i0 := 0
		if nr == gemmNR && full > 0 {
			pf, pfs, pfn := take(full)
			k.gemmCol(&ap[0], bp, kc, &c[ic*N+jc+jr], N, full, acc, pf, pfs, pfn)
			i0 = full * gemmMR
		}
		for i := i0; i < mc; i += gemmMR {
			mr := min(gemmMR, mc-i)
			r0 := ic + i
			pf, pfs, pfn := take(1)
			a := &ap[i*kc]
			if nr == gemmNR {
				k.gemm[mr](a, bp, kc, &c[r0*N+jc+jr], N, acc, pf, pfs, pfn)
				continue
			}
			k.gemm[mr](a, bp, kc, &ws.ctmp[0], gemmNR, 0, pf, pfs, pfn)
			for r := 0; r < mr; r++ {
				row := c[(r0+r)*N+jc+jr : (r0+r)*N+jc+jr+nr]
				tmp := ws.ctmp[r*gemmNR : r*gemmNR+nr]
				if acc != 0 {
					for j := range row {
						row[j] += tmp[j]
					}
				} else {
					copy(row, tmp)
				}
			}
		}
	}
}

// reduce adds the partial sums of a split-K product into C rows [lo, hi).
func (t *mmTask) reduce(lo, hi int) {
	g := &t.g
	MN, N := g.M*g.N, g.N
	dst := g.c[lo*N : hi*N]
	fresh := !t.used[0] && !g.acc // dst holds nothing yet
	for w := 1; w < t.workers; w++ {
		if !t.used[w] {
			continue
		}
		part := t.part[(w-1)*MN+lo*N : (w-1)*MN+hi*N]
		if fresh {
			copy(dst, part)
			fresh = false
			continue
		}
		AxpyF32(dst, 1, part)
	}
}

// aRegion points cur at the memory of A rows [ic, ic+mc) × reduction [pc, pc+kc),
// to be prefetched over calls micro-kernel calls.
func (t *mmTask) aRegion(cur *pfCursor, ic, mc, pc, kc, calls int) {
	g := &t.g
	if g.aT {
		cur.set(unsafe.Pointer(&g.a[pc*g.lda+ic]), kc, 4*mc, 4*g.lda, calls)
		return
	}
	cur.set(unsafe.Pointer(&g.a[ic*g.lda+pc]), mc, 4*kc, 4*g.lda, calls)
}

// bRegion points cur at the memory of B's block [pc, pc+kc) × [jc, jc+nc).
func (t *mmTask) bRegion(cur *pfCursor, jc, nc, pc, kc, calls int) {
	g := &t.g
	es := t.es
	if g.bPanel {
		cur.set(unsafe.Pointer(&g.w[((jc/panelRows)*g.ldw+pc)*panelRows*2]), ceilDiv(nc, panelRows), panelRows*2*kc, panelRows*2*g.ldw, calls)
		return
	}
	if g.bT {
		cur.set(unsafe.Pointer(&g.w[(jc*g.ldw+pc)*es]), nc, es*kc, es*g.ldw, calls)
		return
	}
	cur.set(unsafe.Pointer(&g.w[(pc*g.ldw+jc)*es]), kc, es*nc, es*g.ldw, calls)
}

// pfCursor walks the cache lines of a region of rows (segments of seg bytes,
// stride bytes apart) column by column, handing each micro-kernel call a few lines
// to prefetch: the lines at one offset in consecutive rows, or consecutive lines of
// a contiguous region. Addresses are hints only, never dereferenced in Go.
type pfCursor struct {
	base   uintptr
	stride int
	rows   int
	seg    int
	off    int // byte offset of the current column
	row    int // next row of the current column
	quota  int // lines per call
}

func (c *pfCursor) set(base unsafe.Pointer, rows, seg, stride, calls int) {
	b := uintptr(base)
	if rows == 1 || seg == stride { // contiguous: one column of lines
		end := b + uintptr(rows*seg)
		b &^= 63
		rows, seg, stride = int((end-b+63)/64), 1, 64
	}
	c.base, c.rows, c.seg, c.stride, c.off, c.row = b, rows, seg, stride, 0, 0
	cols := 1
	if seg > 1 {
		cols = (seg-1)/64 + 2
	}
	// Calls alternate between the two cursors of a sweep.
	c.quota = ceilDiv(2*rows*cols, max(calls, 1)) + 1
}

// take returns the next lines to prefetch, at most want: n lines at p, p+s, …
// (n = 0: done).
func (c *pfCursor) take(want int) (p uintptr, s, n int) {
	if c.row >= c.rows {
		if c.rows == 0 || c.off >= c.seg-1 {
			return 0, 0, 0
		}
		c.off = min(c.off+64, c.seg-1)
		c.row = 0
	}
	n = min(want, c.rows-c.row)
	p = c.base + uintptr(c.off+c.row*c.stride)
	c.row += n
	return p, c.stride, n
}
