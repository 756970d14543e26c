package kernel

import (
	"fmt"
	"unsafe"

	"github.com/dbrx-engine/dbrx/internal/parallel"
	"github.com/dbrx-engine/dbrx/tensor"
)

// PanelMat is a bf16 weight [Rows, Cols] of y = x·wᵀ (the MatMulT orientation)
// packed for MatMulTPanels: panels of 16 rows, each column-major, so that the
// product is a sequence of outer products of broadcast activations with 16
// weight rows, whose sums land contiguously in dst (no horizontal sums), and a
// panel read from memory once serves every token of a batch from cache.
//
// Panel p holds rows 16p…16p+15 as [Cols][16] bf16, 32 bytes per column; within
// a column's 32 bytes the 32-bit lane j (j < 8) holds row 16p+j in its low half
// and row 16p+8+j in its high half, so that a 16-bit left shift widens rows 0-7
// and masking off the low halves widens rows 8-15, with no shuffle. Rows past
// Rows in the last panel are zeros.
type PanelMat struct {
	Rows, Cols int
	Data       []byte // [ceil(Rows/16)][Cols][16] bf16, halves interleaved
}

// panelRows is the number of weight rows of a panel.
const panelRows = 16

// panelIndex is the index of weight (n, k) in the uint16 view of PanelMat data
// of cols columns.
func panelIndex(n, k, cols int) int {
	p, j := n/panelRows, n%panelRows
	return (p*cols+k)*panelRows + 2*(j%8) + j/8
}

// PackPanelsBF16 packs a bf16 weight [N, K] into the panel layout of PanelMat
// (a copy of N rounded up to 16 rows × K × 2 bytes; w is not kept).
func PackPanelsBF16(w Mat) (PanelMat, error) {
	if w.DType != tensor.BF16 {
		return PanelMat{}, fmt.Errorf("kernel: PackPanelsBF16: %s weights [%d, %d], want bf16", w.DType, w.Rows, w.Cols)
	}
	N, K := w.Rows, w.Cols
	if want := N * K * 2; len(w.Data) != want {
		return PanelMat{}, fmt.Errorf("kernel: PackPanelsBF16: bf16 matrix [%d, %d] needs %d bytes, have %d", N, K, want, len(w.Data))
	}
	P := (N + panelRows - 1) / panelRows
	pm := PanelMat{Rows: N, Cols: K, Data: make([]byte, P*K*panelRows*2)}
	if len(pm.Data) == 0 {
		return pm, nil
	}
	src, dst := tensor.Uint16s(w.Data), tensor.Uint16s(pm.Data)
	for p := 0; p < P; p++ {
		out := dst[p*K*panelRows : (p+1)*K*panelRows] // [K][16]
		for j := 0; j < panelRows; j++ {
			n := p*panelRows + j
			if n >= N {
				break // the padding rows stay zero
			}
			row, o := src[n*K:(n+1)*K], 2*(j%8)+j/8
			for k, v := range row {
				out[k*panelRows+o] = v
			}
		}
	}
	return pm, nil
}

// MatMulTPanels computes dst[t, n] = Σ_k x[t, k] · w[n, k] for t < T, n < w.Rows,
// exactly what MatMulT computes over the bf16 weights w was packed from:
//
//	dst [T, w.Rows] f32, x [T, w.Cols] f32, w packed [N, K] bf16
//
// Products and sums are float32 (weights widened exactly); only the summation
// order may differ from MatMulT, and every product is taken, so a NaN or Inf in w
// reaches dst even where x is 0. Below panelGemmT (64) tokens, a token's outputs
// are the same bits whatever T is: batching does not change them. Panels are
// split over the pool's workers, claimed dynamically; with a pool, a warmed-up
// call allocates nothing.
func MatMulTPanels(p *parallel.Pool, dst, x []float32, T int, w PanelMat) {
	N, K := w.Rows, w.Cols
	P := (N + panelRows - 1) / panelRows
	if T < 0 || N < 0 || K < 0 {
		panic(fmt.Sprintf("kernel: MatMulTPanels with negative size T=%d N=%d K=%d", T, N, K))
	}
	if len(dst) < T*N || len(x) < T*K || len(w.Data) < P*K*panelRows*2 {
		panic(fmt.Sprintf("kernel: MatMulTPanels: dst %d, x %d floats, w [%d,%d] %d bytes do not fit T=%d",
			len(dst), len(x), N, K, len(w.Data), T))
	}
	if T == 0 || N == 0 {
		return
	}
	if K == 0 {
		clear(dst[:T*N])
		return
	}
	if T >= panelGemmT && simd != nil {
		// Many tokens: the blocked GEMM of gemm.go, its weight blocks widened
		// straight from the panels.
		t := getTask(dst, x, T, Mat{}, N, K, true, false)
		t.runGemm(p, gemmOp{M: T, N: N, K: K, a: x, lda: K, w: w.Data, d: dtIndex(tensor.BF16),
			bT: true, bPanel: true, ldw: K, c: dst})
		putTask(t)
		return
	}
	t := panelTasks.get()
	t.dst, t.x, t.T, t.w, t.k = dst, x, T, w, simd
	t.run(p)
	t.dst, t.x, t.w, t.k = nil, nil, PanelMat{}, nil
	panelTasks.put(t)
}

// panelGroup is the most tokens one kernel call takes (12 accumulators).
const panelGroup = 6

// Blocking of MatMulTPanels.
const (
	// panelGemmT is the fewest tokens that go to the blocked GEMM (gemm.go, its
	// weight blocks widened from the panels): with that many the product is
	// bound by the FMAs, and the GEMM's packed activations serve the
	// micro-kernel better than rows of x (measured on the LM head at T=512: ~25%
	// faster than the panel kernels; at T=64 within the noise, both ~5% slower
	// than MatMulT's GEMM over the row-major weights).
	panelGemmT = 64
	// panelTokBlock bounds the tokens whose activations sweep each panel before
	// the next one: their activations (panelTokBlock·K floats) stay in L2 while
	// the panels stream through.
	panelTokBlock = 48
	// panelKC is the columns of a panel that the token groups sweep at a time:
	// the chunk (12 KiB of weights) and a group's activations (9 KiB) then stay
	// in L1. Measured on the LM head in interleaved runs, 2 threads, against 256:
	// 3-5% less time at T=16, 2-3% at 32 and 48, level at 1-12; 768 (whole
	// panels) as good at K=768 but not within L1 at larger K; 128 4-5% worse.
	panelKC = 384
	// panelAhead is how far ahead (bytes) each stream of the streamed paths
	// prefetches from swPrefetchMinT tokens on (measured on the LM head at
	// T=1..4: 1 to 8 KiB within the noise).
	panelAhead = 2048
	// panelCallStreams is the number of streams read by consecutive calls when
	// the kernels for the tokens take one panel (4 to 6 tokens; measured on the
	// LM head at T=4: 1 and 4 no faster; splitting the tokens into 2+2 over
	// two-stream kernels no faster either).
	panelCallStreams = 2
)

// panelTask carries one MatMulTPanels through the pool without allocating.
type panelTask struct {
	dst, x []float32
	T      int
	w      PanelMat
	k      *kernels
	pieces int
	// tile holds the outputs of the last panel when it is partial (N%16 rows):
	// only the worker of the last piece uses it.
	tile               [panelGroup * panelRows]float32
	fnPiece, fnGeneric func(lo, hi int)
}

var panelTasks = freeList[panelTask]{new: func() *panelTask {
	t := new(panelTask)
	t.fnPiece, t.fnGeneric = t.piece, t.generic
	return t
}}

func (t *panelTask) run(p *parallel.Pool) {
	if t.k == nil {
		p.For(t.w.Rows, panelRows, t.fnGeneric)
		return
	}
	P := (t.w.Rows + panelRows - 1) / panelRows
	// batchPieces pieces per worker, claimed dynamically, each enough panels to
	// be split into streams.
	t.pieces = 1
	if W := p.Workers(); W > 1 {
		t.pieces = max(1, min(W*batchPieces, P/16))
	}
	p.ForEach(t.pieces, t.fnPiece)
}

func (t *panelTask) generic(lo, hi int) { matMulTPanelsGeneric(t.dst, t.x, t.T, t.w, lo, hi) }

// piece runs the panels of piece [lo, hi) of t.pieces.
func (t *panelTask) piece(lo, hi int) {
	P := (t.w.Rows + panelRows - 1) / panelRows
	p0, p1 := pieceBound(lo, t.pieces, P, 1), pieceBound(hi, t.pieces, P, 1)
	if p1 == P && t.w.Rows%panelRows != 0 {
		t.tailPanel(p1 - 1)
		p1--
	}
	if t.T <= panelGroup {
		t.streams(p0, p1)
	} else {
		t.groups(p0, p1)
	}
}

// streams runs whole panels [p0, p1) for at most panelGroup tokens, in one group:
// the weights are read once, so the product is bound by memory, and a core reads
// several far-apart streams faster than one. So the range is cut into S equal
// contiguous parts read at once: by the kernels of panelStreams[T] > 1 panels,
// one from each stream per call, or else (4 to 6 tokens) by consecutive calls on
// each stream's panel in turn. Either way the calls take panelKC columns at a
// time, as the groups do, so that a token's sums are the same bits for every T
// (see groups). From swPrefetchMinT tokens on, every stream prefetches panelAhead
// bytes ahead.
func (t *panelTask) streams(p0, p1 int) {
	K := t.w.Cols
	C := (K + panelKC - 1) / panelKC
	S, si, calls := panelStreams[t.T], 1, 1
	if S == 1 {
		S, si, calls = panelCallStreams, 0, panelCallStreams
	}
	if L := (p1 - p0) / S; S > 1 && L > 0 {
		for j := p0; j < p0+L; j++ {
			t.sweep(j, L, calls, C, si)
		}
		p0 += S * L
	}
	for j := p0; j < p1; j++ {
		t.sweep(j, 0, 1, C, 0)
	}
}

// sweep runs all T tokens over the panels j, j+L, …: calls of the kernel si (0
// one panel, 1 the panelStreams[T] panels L apart) on each of the panels j, j+L,
// …, j+(calls-1)·L in turn, per column chunk (C of them).
func (t *panelTask) sweep(j, L, calls, C, si int) {
	T, N, K := t.T, t.w.Rows, t.w.Cols
	pb := K * panelRows * 2
	dst, x, w := t.dst, t.x, t.w.Data
	kern := t.k.panel[T][si]
	pfd := prefetchAhead(T, panelAhead)
	for c := 0; c < C; c++ {
		k0, k1 := c*K/C&^3, (c+1)*K/C&^3
		if c == C-1 {
			k1 = K
		}
		for s := 0; s < calls; s++ {
			q := j + s*L
			kern(&dst[q*panelRows], N, L*panelRows, &x[k0], K, &w[q*pb+k0*panelRows*2], L*pb, k1-k0, c, pfd, 0, 0, 0)
		}
	}
}

// groups runs whole panels [p0, p1) for more than panelGroup tokens: per block of
// at most panelTokBlock tokens, every panel is swept, panelKC columns at a time
// (the chunk of the panel and the activations of a group then stay in L1), by
// token groups of at most panelGroup (as equal as possible: 16 = 6+5+5). The
// calls of a panel share the prefetch of the next one (call i of n fetches the
// i-th of n slices of it), so that the memory traffic is spread over the whole
// sweep rather than bursting during the first group.
func (t *panelTask) groups(p0, p1 int) {
	T, N, K := t.T, t.w.Rows, t.w.Cols
	pb := K * panelRows * 2
	lines := (pb + 63) / 64
	P := (N + panelRows - 1) / panelRows
	dst, x, w := t.dst, t.x, t.w.Data
	ks := &t.k.panel
	C := (K + panelKC - 1) / panelKC // column chunks
	for b0 := 0; b0 < T; b0 += panelTokBlock {
		b1 := min(T, b0+panelTokBlock)
		G := (b1 - b0 + panelGroup - 1) / panelGroup
		slice := (lines + C*G - 1) / (C * G)
		for j := p0; j < p1; j++ {
			next := j + 1
			if next >= P {
				next = j // nothing left to fetch: the hint refetches this panel
			}
			i := 0 // calls so far on this panel
			for c := 0; c < C; c++ {
				k0, k1 := c*K/C&^3, (c+1)*K/C&^3
				if c == C-1 {
					k1 = K
				}
				for g := 0; g < G; g++ {
					t0, t1 := b0+g*(b1-b0)/G, b0+(g+1)*(b1-b0)/G
					n := max(0, min(slice, lines-i*slice))
					pf := uintptr(unsafe.Pointer(&w[next*pb+min(i*slice*64, pb-1)])) // a hint, never dereferenced in Go
					ks[t1-t0][0](&dst[t0*N+j*panelRows], N, 0, &x[t0*K+k0], K, &w[j*pb+k0*panelRows*2], 0, k1-k0, c, 0, pf, 64, n)
					i++
				}
			}
		}
	}
}

// tailPanel runs the last panel, j, when it is partial: through t.tile, of which
// only the real rows are copied to dst.
func (t *panelTask) tailPanel(j int) {
	T, N, K := t.T, t.w.Rows, t.w.Cols
	pb := K * panelRows * 2
	r := N - j*panelRows // rows of the panel in dst
	for t0 := 0; t0 < T; t0 += panelGroup {
		m := min(panelGroup, T-t0)
		t.k.panel[m][0](&t.tile[0], panelRows, 0, &t.x[t0*K], K, &t.w.Data[j*pb], 0, K, 0, 0, 0, 0, 0)
		for i := 0; i < m; i++ {
			copy(t.dst[(t0+i)*N+j*panelRows:(t0+i)*N+N], t.tile[i*panelRows:i*panelRows+r])
		}
	}
}

// matMulTPanelsGeneric is the twin of MatMulTPanels restricted to output columns
// [n0, n1):
//
//	dst[t*N+n] = Σ_k x[t*K+k] · w[n, k]
func matMulTPanelsGeneric(dst, x []float32, T int, w PanelMat, n0, n1 int) {
	N, K := w.Rows, w.Cols
	u := tensor.Uint16s(w.Data)
	for n := n0; n < n1; n++ {
		for t := 0; t < T; t++ {
			var s float32
			for k, a := range x[t*K : (t+1)*K] {
				s += a * tensor.BF16ToF32(u[panelIndex(n, k, K)])
			}
			dst[t*N+n] = s
		}
	}
}
