package dbrx

import (
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/dbrx-engine/dbrx/internal/kernel"
	"github.com/dbrx-engine/dbrx/internal/parallel"
	"github.com/dbrx-engine/dbrx/nn"
)

// KVCache holds one sequence's rotated keys and values for every layer.
type KVCache struct {
	K, V [][]float32 // [L][cap·KVH·Dh]: row j = position j, heads concatenated
	Len  int         // positions filled
	// MaxLen bounds the cache (the context length); appending past it is an error.
	MaxLen int
	rowLen int // KVH·Dh
}

// ErrContextFull is returned when a forward pass would grow a cache past MaxLen.
var ErrContextFull = errors.New("dbrx: context length exceeded")

// NewKVCache returns an empty cache for m bounded to maxLen positions (<= 0: the
// model's max_seq_len) with room reserved for reserve positions.
func (m *Model) NewKVCache(maxLen, reserve int) *KVCache {
	c := m.Config
	if maxLen <= 0 {
		maxLen = c.MaxSeqLen
	}
	kv := &KVCache{K: make([][]float32, c.NLayers), V: make([][]float32, c.NLayers), MaxLen: maxLen,
		rowLen: c.AttnConfig.KVNHeads * c.HeadDim()}
	kv.Reserve(min(reserve, maxLen))
	return kv
}

// Reserve makes room for n positions without reallocating later.
func (c *KVCache) Reserve(n int) {
	for l := range c.K {
		if cap(c.K[l]) < n*c.rowLen {
			k := make([]float32, c.Len*c.rowLen, n*c.rowLen)
			copy(k, c.K[l])
			v := make([]float32, c.Len*c.rowLen, n*c.rowLen)
			copy(v, c.V[l])
			c.K[l], c.V[l] = k, v
		}
	}
}

// Truncate forgets positions n and later (used to roll back or reuse a prefix).
func (c *KVCache) Truncate(n int) {
	if n < c.Len {
		c.Len = n
		for l := range c.K {
			c.K[l] = c.K[l][:n*c.rowLen]
			c.V[l] = c.V[l][:n*c.rowLen]
		}
	}
}

// CopyPrefix copies the first n positions of src into c (which must be empty or
// will be truncated), for prefix caching.
func (c *KVCache) CopyPrefix(src *KVCache, n int) {
	c.Truncate(0)
	c.Reserve(n)
	for l := range c.K {
		c.K[l] = append(c.K[l][:0], src.K[l][:n*c.rowLen]...)
		c.V[l] = append(c.V[l][:0], src.V[l][:n*c.rowLen]...)
	}
	c.Len = n
}

// Step is one sequence's part of a batched forward pass: its new tokens, appended to
// its cache at positions Cache.Len, Cache.Len+1, ...
type Step struct {
	Cache *KVCache
	IDs   []int
	// AllLogits asks for the logits of every new position; otherwise only the last.
	AllLogits bool
}

// TracePoint names an intermediate a Trace hook receives.
type TracePoint int

// Trace points, in the order they occur.
const (
	TraceEmbedding   TracePoint = iota // x [N, D] after the embedding
	TraceRouterProbs                   // probs [N, E] of layer l (softmax of router logits)
	TraceBlockOutput                   // x [N, D] after block l
	TraceFinalNorm                     // norm_f(x) [R, D] for the rows whose logits are taken
)

// Workspace holds the scratch buffers of Forward so decode steps do not allocate once
// the buffers have grown to the batch size. A Workspace is not safe for concurrent use.
type Workspace struct {
	Pool *parallel.Pool
	// Trace, if set, is called with intermediates (the slices are only valid during the call).
	Trace func(p TracePoint, layer int, x []float32)

	x, h, qkv, attn, proj, moe []float32 // [N, D] (qkv [N, QKVDim])
	probs                      []float32 // [N, E]
	topIdx                     []int     // [N, K]
	topW                       []float32 // [N, K]
	cnt                        []int     // [E+1] start offsets of each expert's tokens
	order                      []int     // [N·K] token index per (expert, slot) assignment
	orderW                     []float32 // [N·K] routing weight of that assignment
	xe, ye                     []float32 // [N·K, D] one row per (expert, slot) assignment
	ge, ue                     []float32 // [N·K, F]
	prods                      []kernel.Product
	cos, sin                   []float32 // [N, Dh/2]
	tokSeq, tokPos             []int     // [N]
	outRows                    []int     // [R] token index of each logits row
	normed                     []float32 // [R, D]
	logits                     []float32 // [R, V]

	// attention task state, set by block for attendRange
	attnFn    func(lo, hi int)
	attnPiece func(lo, hi int)
	attnTasks int
	attnPer   int
	attnSplit int
	ropeFn    func(lo, hi int)
	attnModel *Model
	attnSteps []Step
	attnLayer int

	// row-parallel LayerNorm and SwiGLU state, set by layerNorm and swiGLU
	lnFn, swiFn func(lo, hi int)
	lnDst, lnX  []float32 // [n, D]
	lnGamma     []float32 // [D]
	lnD, swiF   int
	swiG, swiU  []float32 // [rows, F]
}

// rowGrain is the rows per worker below which a row-parallel step of the layers
// (layerNorm, swiGLU) stays on the caller: a pool dispatch costs a few microseconds.
const rowGrain = 4

// layerNorm is nn.LayerNorm over n rows of D, split over ws.Pool by rows (each row
// computed exactly as alone, so a batch gives every sequence the same bits).
func (ws *Workspace) layerNorm(dst, x []float32, n, D int, gamma []float32) {
	if ws.lnFn == nil {
		ws.lnFn = ws.layerNormRows // bound once: a per-call closure would allocate
	}
	ws.lnDst, ws.lnX, ws.lnGamma, ws.lnD = dst, x, gamma, D
	ws.Pool.For(n, rowGrain, ws.lnFn)
	ws.lnDst, ws.lnX, ws.lnGamma = nil, nil, nil
}

func (ws *Workspace) layerNormRows(lo, hi int) {
	D := ws.lnD
	nn.LayerNorm(ws.lnDst[lo*D:hi*D], ws.lnX[lo*D:hi*D], hi-lo, D, ws.lnGamma, LayerNormEps)
}

// swiGLU sets g = silu(g)·u over rows of F, split over ws.Pool by rows; each row is
// one kernel.SiLUMulF32 call, so its bits do not depend on the batch around it.
//
//	g, u [rows, F]
func (ws *Workspace) swiGLU(g, u []float32, rows, F int) {
	if ws.swiFn == nil {
		ws.swiFn = ws.swiGLURows
	}
	ws.swiG, ws.swiU, ws.swiF = g, u, F
	ws.Pool.For(rows, rowGrain, ws.swiFn)
	ws.swiG, ws.swiU = nil, nil
}

func (ws *Workspace) swiGLURows(lo, hi int) {
	F := ws.swiF
	for r := lo; r < hi; r++ {
		g, u := ws.swiG[r*F:(r+1)*F], ws.swiU[r*F:(r+1)*F]
		kernel.SiLUMulF32(g, g, u)
	}
}

// NewWorkspace returns a workspace whose kernels run on pool (nil: single-threaded).
func NewWorkspace(pool *parallel.Pool) *Workspace { return &Workspace{Pool: pool} }

func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

func (ws *Workspace) ensure(c Config, n, r int) {
	D, E, K, F := c.DModel, c.FFNConfig.MoENumExperts, c.FFNConfig.MoETopK, c.FFNConfig.FFNHiddenSize
	ws.x = grow(ws.x, n*D)
	ws.h = grow(ws.h, n*D)
	ws.qkv = grow(ws.qkv, n*c.QKVDim())
	ws.attn = grow(ws.attn, n*D)
	ws.proj = grow(ws.proj, n*D)
	ws.moe = grow(ws.moe, n*D)
	ws.probs = grow(ws.probs, n*E)
	ws.topIdx = grow(ws.topIdx, n*K)
	ws.topW = grow(ws.topW, n*K)
	ws.cnt = grow(ws.cnt, E+1)
	ws.order = grow(ws.order, n*K)
	ws.orderW = grow(ws.orderW, n*K)
	ws.xe = grow(ws.xe, n*K*D)
	ws.ye = grow(ws.ye, n*K*D)
	ws.ge = grow(ws.ge, n*K*F)
	ws.ue = grow(ws.ue, n*K*F)
	if cap(ws.prods) < 2*E {
		ws.prods = make([]kernel.Product, 0, 2*E)
	}
	ws.cos = grow(ws.cos, n*c.HeadDim()/2)
	ws.sin = grow(ws.sin, n*c.HeadDim()/2)
	ws.tokSeq = grow(ws.tokSeq, n)
	ws.tokPos = grow(ws.tokPos, n)
	ws.outRows = grow(ws.outRows, r)
	ws.normed = grow(ws.normed, r*D)
	ws.logits = grow(ws.logits, r*c.VocabSize)
}

// Forward runs the new tokens of every step through the model in one batched pass
// (each weight matrix is streamed once for all N tokens) and returns the logits
// [R, V]: for each step in order, T rows if AllLogits, else the last new token's row.
// The returned slice belongs to ws and is overwritten by the next call.
func (m *Model) Forward(ws *Workspace, steps []Step) ([]float32, error) {
	c := m.Config
	D, V := c.DModel, c.VocabSize
	n, r := 0, 0
	for i, s := range steps {
		if s.Cache == nil || len(s.Cache.K) != c.NLayers {
			return nil, fmt.Errorf("dbrx: step %d: missing or foreign KV cache", i)
		}
		if len(s.IDs) == 0 {
			return nil, fmt.Errorf("dbrx: step %d: no tokens", i)
		}
		if s.Cache.Len+len(s.IDs) > s.Cache.MaxLen {
			return nil, fmt.Errorf("%w: step %d: %d cached + %d new tokens > %d", ErrContextFull, i, s.Cache.Len, len(s.IDs), s.Cache.MaxLen)
		}
		for j, id := range s.IDs {
			if id < 0 || id >= V {
				return nil, fmt.Errorf("dbrx: step %d: token %d at index %d is outside the vocabulary [0, %d)", i, id, j, V)
			}
		}
		n += len(s.IDs)
		if s.AllLogits {
			r += len(s.IDs)
		} else {
			r++
		}
	}
	if n == 0 {
		return nil, errors.New("dbrx: forward with no steps")
	}
	ws.ensure(c, n, r)

	// Embedding, token bookkeeping and RoPE tables for every new token.
	half := c.HeadDim() / 2
	t, row := 0, 0
	for si, s := range steps {
		for j, id := range s.IDs {
			m.Wte.DecodeRow(ws.x[t*D:(t+1)*D], id)
			ws.tokSeq[t] = si
			ws.tokPos[t] = s.Cache.Len + j
			m.RoPE.Tables(ws.cos[t*half:(t+1)*half], ws.sin[t*half:(t+1)*half], ws.tokPos[t])
			if s.AllLogits || j == len(s.IDs)-1 {
				ws.outRows[row] = t
				row++
			}
			t++
		}
	}
	if ws.Trace != nil {
		ws.Trace(TraceEmbedding, -1, ws.x[:n*D])
	}
	for l := range m.Blocks {
		m.block(ws, steps, l, n)
		if ws.Trace != nil {
			ws.Trace(TraceBlockOutput, l, ws.x[:n*D])
		}
	}
	for _, s := range steps {
		s.Cache.Len += len(s.IDs)
	}
	for i, t := range ws.outRows[:r] {
		nn.LayerNorm(ws.normed[i*D:(i+1)*D], ws.x[t*D:(t+1)*D], 1, D, m.NormF, LayerNormEps)
	}
	if ws.Trace != nil {
		ws.Trace(TraceFinalNorm, -1, ws.normed[:r*D])
	}
	linear(ws.Pool, ws.logits[:r*V], ws.normed[:r*D], r, m.LMHead, m.lmPanels)
	return ws.logits[:r*V], nil
}

// block runs transformer block l over the n tokens in ws.x, appending to the caches.
func (m *Model) block(ws *Workspace, steps []Step, l, n int) {
	c := m.Config
	b := &m.Blocks[l]
	D, Q := c.DModel, c.QKVDim()

	// Attention: h = LN(x); qkv = clamp(h·Wqkvᵀ); rope; append K/V; attend; project.
	ws.layerNorm(ws.h[:n*D], ws.x[:n*D], n, D, b.Norm1)
	linear(ws.Pool, ws.qkv[:n*Q], ws.h[:n*D], n, b.Wqkv, b.wqkvPanels)
	m.attention(ws, steps, l, n)
	linear(ws.Pool, ws.proj[:n*D], ws.attn[:n*D], n, b.OutProj, b.outPanels)
	for i, v := range ws.proj[:n*D] {
		ws.x[i] += v
	}

	// MoE: h = LN(x); route; experts over their tokens only; weighted sum; residual.
	ws.layerNorm(ws.h[:n*D], ws.x[:n*D], n, D, b.Norm2)
	m.moe(ws, b, l, n)
	for i, v := range ws.moe[:n*D] {
		ws.x[i] += v
	}
}

// attention clamps and rotates the new tokens' q and k (ws.qkv [n, QKVDim]), appends their k
// and v to the caches of layer l and writes every head's output to ws.attn [n, D].
func (m *Model) attention(ws *Workspace, steps []Step, l, n int) {
	c := m.Config
	KVH, Dh := c.AttnConfig.KVNHeads, c.HeadDim()
	kvRow := KVH * Dh
	ws.attnModel, ws.attnSteps, ws.attnLayer = m, steps, l
	if ws.attnFn == nil {
		// bound once: a per-call closure would allocate
		ws.attnFn, ws.attnPiece = ws.attendRange, ws.attendPieces
	}
	// A task is a token's attention over all its KV heads: a cache row holds every
	// KV head of a position, and the memory system fetches whole rows (a task per
	// KV head would read each row from DRAM once per head). With too few tokens to
	// occupy the workers a task is one KV head. Sequences of a batch differ in
	// length, so tasks are claimed dynamically, in pieces of ws.attnPer tasks (one
	// in decode; a few in a long prefill, whose pieces must stay under ForEach's
	// limit); a handful of tasks is split statically.
	ws.attnSplit = 1
	if n < 2*ws.Pool.Workers() {
		ws.attnSplit = KVH
	}
	// The caches grow here; the tokens are rotated and their rows written in
	// parallel (each row write is a cache miss, and a decode batch has one per
	// sequence).
	for _, s := range steps {
		kv, r := s.Cache, len(s.IDs)*kvRow
		kv.K[l] = slices.Grow(kv.K[l], r)[:len(kv.K[l])+r]
		kv.V[l] = slices.Grow(kv.V[l], r)[:len(kv.V[l])+r]
	}
	if ws.ropeFn == nil {
		ws.ropeFn = ws.ropeAppend
	}
	ws.Pool.For(n, attnRopeGrain, ws.ropeFn)
	tasks := n * ws.attnSplit
	ws.attnTasks, ws.attnPer = tasks, max(1, (tasks+attnMaxPieces-1)/attnMaxPieces)
	if pieces := (tasks + ws.attnPer - 1) / ws.attnPer; pieces >= 4 {
		ws.Pool.ForEach(pieces, ws.attnPiece)
	} else {
		ws.Pool.For(tasks, 1, ws.attnFn)
	}
	ws.attnSteps = nil
}

// attnRopeGrain is the least number of tokens per worker worth rotating and
// appending in parallel.
const attnRopeGrain = 4

// ropeAppend clamps the qkv rows of tokens [lo, hi) in ws.qkv (clip_qkv), rotates
// their q and k heads and writes their k and v into their rows (already
// allocated) of the caches of layer ws.attnLayer.
func (ws *Workspace) ropeAppend(lo, hi int) {
	m, steps, l := ws.attnModel, ws.attnSteps, ws.attnLayer
	c := m.Config
	D, H, KVH, Dh, Q := c.DModel, c.NHeads, c.AttnConfig.KVNHeads, c.HeadDim(), c.QKVDim()
	half, kvRow := Dh/2, KVH*Dh
	for t := lo; t < hi; t++ {
		q := ws.qkv[t*Q : (t+1)*Q]
		if clip := c.AttnConfig.ClipQKV; clip != nil {
			nn.Clamp(q, float32(*clip))
		}
		cos, sin := ws.cos[t*half:(t+1)*half], ws.sin[t*half:(t+1)*half]
		m.RoPE.Apply(q[:D], H, cos, sin)
		m.RoPE.Apply(q[D:D+kvRow], KVH, cos, sin)
		cache, row := steps[ws.tokSeq[t]].Cache, ws.tokPos[t]*kvRow
		copy(cache.K[l][row:row+kvRow], q[D:D+kvRow])
		copy(cache.V[l][row:row+kvRow], q[D+kvRow:D+2*kvRow])
	}
}

// attnMaxPieces bounds the dynamically claimed pieces of one attention call.
const attnMaxPieces = 4096

// attendPieces computes attention for pieces [lo, hi) of ws.attnPer tasks.
func (ws *Workspace) attendPieces(lo, hi int) {
	ws.attendRange(lo*ws.attnPer, min(hi*ws.attnPer, ws.attnTasks))
}

// attendRange computes attention for tasks [lo, hi): task = token·attnSplit + part,
// the part covering KV heads [part·KVH/attnSplit, (part+1)·KVH/attnSplit). The query
// heads of a KV head's GQA group are computed together, each cached key and value
// row read once for them.
func (ws *Workspace) attendRange(lo, hi int) {
	m, steps, l, split := ws.attnModel, ws.attnSteps, ws.attnLayer, ws.attnSplit
	c := m.Config
	D, H, KVH, Dh := c.DModel, c.NHeads, c.AttnConfig.KVNHeads, c.HeadDim()
	Q, kvRow, group := c.QKVDim(), KVH*Dh, H/KVH
	scale := float32(1 / math.Sqrt(float64(Dh)))
	for task := lo; task < hi; task++ {
		t, part := task/split, task%split
		cache := steps[ws.tokSeq[t]].Cache
		for g := part * KVH / split; g < (part+1)*KVH/split; g++ {
			h0, h1 := g*group*Dh, (g+1)*group*Dh // the group's query heads, [group·Dh]
			nn.CausalAttentionGroup(ws.attn[t*D+h0:t*D+h1], ws.qkv[t*Q+h0:t*Q+h1], group,
				cache.K[l], cache.V[l], kvRow, g*Dh, ws.tokPos[t]+1, scale)
		}
	}
}

// linear computes dst [T, w.Rows] = x [T, w.Cols] · wᵀ on packed, the panel copy
// of w, when there is one (packed.Rows > 0), else on w itself.
func linear(p *parallel.Pool, dst, x []float32, T int, w kernel.Mat, packed kernel.PanelMat) {
	if packed.Rows > 0 {
		kernel.MatMulTPanels(p, dst, x, T, packed)
		return
	}
	matT(p, dst, x, T, w)
}

// matT computes dst [T, w.Rows] = x [T, w.Cols] · wᵀ for any weight type: float
// matrices go to kernel.MatMulT, block-quantized ones to kernel.MatMulTQ.
func matT(p *parallel.Pool, dst, x []float32, T int, w kernel.Mat) {
	if w.IsQuantized() {
		kernel.MatMulTQ(p, dst, x, T, w)
		return
	}
	kernel.MatMulT(p, dst, x, T, w)
}

// moe computes ws.moe = Σ_slots w·expert(ws.h) for n tokens, grouping the tokens by
// expert (MegaBlocks' dropless layout) so each expert's weights stream once.
func (m *Model) moe(ws *Workspace, b *Block, l, n int) {
	c := m.Config
	D, E, K, F := c.DModel, c.FFNConfig.MoENumExperts, c.FFNConfig.MoETopK, c.FFNConfig.FFNHiddenSize
	probs := ws.probs[:n*E]
	matT(ws.Pool, probs, ws.h[:n*D], n, b.Router)
	for t := 0; t < n; t++ {
		p := probs[t*E : (t+1)*E]
		nn.Softmax(p)
		nn.TopK(p, K, c.FFNConfig.MoENormalizeExpertWeights, ws.topIdx[t*K:(t+1)*K], ws.topW[t*K:(t+1)*K])
	}
	if ws.Trace != nil {
		ws.Trace(TraceRouterProbs, l, probs)
	}
	// Counting sort of the (token, slot) assignments by expert.
	cnt := ws.cnt[:E+1]
	clear(cnt)
	for _, e := range ws.topIdx[:n*K] {
		cnt[e+1]++
	}
	for e := 0; e < E; e++ {
		cnt[e+1] += cnt[e]
	}
	for a, e := range ws.topIdx[:n*K] {
		// cnt[e] is used as the fill cursor, then restored below.
		ws.order[cnt[e]] = a / K
		ws.orderW[cnt[e]] = ws.topW[a]
		cnt[e]++
	}
	for e := E; e > 0; e-- {
		cnt[e] = cnt[e-1]
	}
	cnt[0] = 0

	// All active experts run in two parallel dispatches: w1 and v1 of every expert
	// in one, then every w2, so the pool is woken twice per layer and each worker
	// streams one contiguous band of the experts' weights.
	nk := n * K
	xe, ge, ue, ye := ws.xe[:nk*D], ws.ge[:nk*F], ws.ue[:nk*F], ws.ye[:nk*D]
	for a, t := range ws.order[:nk] {
		copy(xe[a*D:(a+1)*D], ws.h[t*D:(t+1)*D])
	}
	// Every w1, then every v1: consecutive experts' rows are adjacent in memory, so
	// a worker's band reads them as one stream (the kernels prefetch ahead).
	ps := ws.prods[:0]
	for j, wm := range [2]kernel.Mat{b.W1, b.V1} {
		dst := [2][]float32{ge, ue}[j]
		for e := 0; e < E; e++ {
			lo, hi := cnt[e], cnt[e+1]
			if hi > lo {
				ps = append(ps, kernel.Product{Dst: dst[lo*F : hi*F], X: xe[lo*D : hi*D], T: hi - lo, W: wm.SliceRows(e*F, (e+1)*F)})
			}
		}
	}
	kernel.MatMulBatch(ws.Pool, ps)
	ws.swiGLU(ge, ue, nk, F)
	ps = ps[:0]
	for e := 0; e < E; e++ {
		lo, hi := cnt[e], cnt[e+1]
		if hi == lo {
			continue
		}
		p := kernel.Product{Dst: ye[lo*D : hi*D], X: ge[lo*F : hi*F], T: hi - lo}
		if b.W2T.Rows > 0 { // GGUF orientation: per expert [D, F], y = h·W2T_eᵀ
			p.W = b.W2T.SliceRows(e*D, (e+1)*D)
		} else { // HF orientation: per expert [F, D], y = h·W2_e
			p.W, p.NoTrans = b.W2.SliceRows(e*F, (e+1)*F), true
		}
		ps = append(ps, p)
	}
	kernel.MatMulBatch(ws.Pool, ps)
	clear(ps[:cap(ps)]) // drop the references to this step's buffers
	ws.prods = ps[:0]

	out := ws.moe[:n*D]
	clear(out)
	for a, t := range ws.order[:nk] {
		kernel.AxpyF32(out[t*D:(t+1)*D], ws.orderW[a], ye[a*D:(a+1)*D])
	}
}
