package optim

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/dbrx-engine/dbrx/internal/parallel"
)

// Sentinel errors; every error returned by this package matches one with errors.Is.
var (
	// ErrParam: a Param has len(G) != len(W), an empty or duplicate name.
	ErrParam = errors.New("optim: bad parameter")
	// ErrLR: the learning rate is negative, NaN or infinite.
	ErrLR = errors.New("optim: bad learning rate")
	// ErrState: optimizer state to load is missing, mis-shaped or of another optimizer.
	ErrState = errors.New("optim: bad optimizer state")
	// ErrConfig: a configuration field is out of range.
	ErrConfig = errors.New("optim: invalid config")
)

// Param is one trainable tensor, flattened.
type Param struct {
	Name string    // unique, e.g. "transformer.blocks.0.ffn.experts.mlp.w1"
	W    []float32 // [n] weights, updated in place
	G    []float32 // [n] gradient of the loss with respect to W
	// Decay enables weight decay for this tensor. By convention it is false for norm
	// weights, biases and other 1-D tensors (see DefaultDecay).
	Decay bool
}

// DefaultDecay is the usual weight-decay convention: decay matrices (ndim >= 2) but not
// 1-D tensors (biases, norm scales) nor anything whose name contains "norm".
func DefaultDecay(name string, ndim int) bool {
	return ndim >= 2 && !strings.Contains(strings.ToLower(name), "norm")
}

// ZeroGrads sets every gradient to zero, before the first micro-batch of a step.
func ZeroGrads(params []Param) {
	for _, p := range params {
		clear(p.G)
	}
}

// ScaleGrads multiplies every gradient by s (in float32).
func ScaleGrads(params []Param, s float32) {
	for _, p := range params {
		g := p.G
		for i := range g {
			g[i] *= s
		}
	}
}

// AverageGrads divides accumulated gradients by the number of micro-batches, turning a
// sum of per-micro-batch mean gradients into the mean over the whole step. n <= 1 is
// a no-op.
func AverageGrads(params []Param, microbatches int) {
	if microbatches > 1 {
		ScaleGrads(params, float32(1/float64(microbatches)))
	}
}

// normBlock is the block length of the partial sums in SumSquares: fixed, so the
// result does not depend on the number of workers.
const normBlock = 1 << 16

// SumSquares returns the sum of the squares of all gradient elements, accumulated in
// float64 in fixed blocks of elements, four partial sums a block (so it is the same
// for any pool size). For data parallel training, all-reduce this sum across ranks
// and take the square root.
func SumSquares(pool *parallel.Pool, params []Param) float64 {
	var nblk int
	for _, p := range params {
		nblk += (len(p.G) + normBlock - 1) / normBlock
	}
	type blk struct{ p, lo, hi int }
	blocks := make([]blk, 0, nblk)
	for i, p := range params {
		for lo := 0; lo < len(p.G); lo += normBlock {
			blocks = append(blocks, blk{i, lo, min(lo+normBlock, len(p.G))})
		}
	}
	part := make([]float64, len(blocks))
	pool.For(len(blocks), 1, func(lo, hi int) {
		for b := lo; b < hi; b++ {
			part[b] = sumSquares(params[blocks[b].p].G[blocks[b].lo:blocks[b].hi])
		}
	})
	var s float64
	for _, x := range part {
		s += x
	}
	return s
}

// sumSquares is Σ x² in float64 over four interleaved partial sums (four add chains
// instead of one), added pairwise at the end.
func sumSquares(x []float32) float64 {
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= len(x); i += 4 {
		v := x[i : i+4 : i+4]
		a, b, c, d := float64(v[0]), float64(v[1]), float64(v[2]), float64(v[3])
		s0 += a * a
		s1 += b * b
		s2 += c * c
		s3 += d * d
	}
	for ; i < len(x); i++ {
		a := float64(x[i])
		s0 += a * a
	}
	return (s0 + s1) + (s2 + s3)
}

// ClipScale returns the factor torch.nn.utils.clip_grad_norm_ multiplies gradients
// by: maxNorm/(norm+1e-6) when that is below 1, and whether clipping applies. A NaN or
// infinite norm, or maxNorm <= 0, never clips.
func ClipScale(norm, maxNorm float64) (scale float32, clip bool) {
	if !(maxNorm > 0) || math.IsNaN(norm) || math.IsInf(norm, 0) {
		return 1, false
	}
	c := maxNorm / (norm + 1e-6)
	if c >= 1 {
		return 1, false
	}
	return float32(c), true
}

// ClipGlobalNorm computes the L2 norm of all gradients together (in float64) and, when
// it exceeds maxNorm, scales every gradient by maxNorm/(norm+1e-6), like
// torch.nn.utils.clip_grad_norm_. It returns the norm before clipping. A NaN or
// infinite norm leaves the gradients unchanged (the caller should skip the step);
// maxNorm <= 0 only measures.
func ClipGlobalNorm(params []Param, maxNorm float64) (norm float64) {
	return ClipGlobalNormPool(nil, params, maxNorm)
}

// ClipGlobalNormPool is ClipGlobalNorm with the reduction and scaling spread over pool.
func ClipGlobalNormPool(pool *parallel.Pool, params []Param, maxNorm float64) (norm float64) {
	norm = math.Sqrt(SumSquares(pool, params))
	if s, clip := ClipScale(norm, maxNorm); clip {
		pool.For(len(params), 1, func(lo, hi int) { ScaleGrads(params[lo:hi], s) })
	}
	return norm
}

// slot is the state of one parameter.
type slot struct {
	m, v []float32 // [n] first and second moments (v nil for Lion)
}

// engine is the machinery shared by the optimizers: state by name, the layout of the
// current parameter list, and a parallel element loop over it.
type engine struct {
	pool  *parallel.Pool
	steps int
	twoM  bool // keeps a second moment
	state map[string]*slot

	// Layout of the parameter list of the last Step, reused while it does not change.
	names  []string
	lens   []int
	offs   []int // [P+1] prefix sums of lens
	slots  []*slot
	params []Param // valid during a Step only
	// gradScale multiplies every gradient as the kernel reads it (StepScaled).
	gradScale float32
	kern      func(p *Param, s *slot, lo, hi int)
	loop      func(lo, hi int)
}

const grain = 1 << 14

func newEngine(pool *parallel.Pool, twoM bool) engine {
	return engine{pool: pool, twoM: twoM, state: map[string]*slot{}}
}

// prepare checks params and resolves (allocating on first use) their state.
func (e *engine) prepare(params []Param) error {
	same := len(params) == len(e.names)
	for i := 0; same && i < len(params); i++ {
		same = params[i].Name == e.names[i] && len(params[i].W) == e.lens[i] && len(params[i].G) == e.lens[i]
	}
	if same {
		return nil
	}
	seen := make(map[string]bool, len(params))
	for i, p := range params {
		if p.Name == "" {
			return fmt.Errorf("%w: param %d has no name", ErrParam, i)
		}
		if seen[p.Name] {
			return fmt.Errorf("%w: duplicate name %q", ErrParam, p.Name)
		}
		seen[p.Name] = true
		if len(p.G) != len(p.W) {
			return fmt.Errorf("%w: %q: len(G) = %d, len(W) = %d", ErrParam, p.Name, len(p.G), len(p.W))
		}
		if s, ok := e.state[p.Name]; ok && len(s.m) != len(p.W) {
			return fmt.Errorf("%w: %q: %d elements, its optimizer state has %d", ErrParam, p.Name, len(p.W), len(s.m))
		}
	}
	e.names, e.lens, e.offs, e.slots = e.names[:0], e.lens[:0], append(e.offs[:0], 0), e.slots[:0]
	for _, p := range params {
		s, ok := e.state[p.Name]
		if !ok {
			s = &slot{m: make([]float32, len(p.W))}
			if e.twoM {
				s.v = make([]float32, len(p.W))
			}
			e.state[p.Name] = s
		}
		e.names = append(e.names, p.Name)
		e.lens = append(e.lens, len(p.W))
		e.offs = append(e.offs, e.offs[len(e.offs)-1]+len(p.W))
		e.slots = append(e.slots, s)
	}
	return nil
}

// run applies e.kern to every element of params, in parallel over contiguous ranges
// of the concatenated parameters.
func (e *engine) run(params []Param) {
	if e.loop == nil {
		e.loop = e.apply
	}
	e.params = params
	e.pool.For(e.offs[len(e.offs)-1], grain, e.loop)
	e.params = nil
}

func (e *engine) apply(lo, hi int) {
	p := sort.SearchInts(e.offs, lo+1) - 1 // last param starting at or before lo
	for ; p < len(e.params) && e.offs[p] < hi; p++ {
		a, b := max(lo, e.offs[p]), min(hi, e.offs[p+1])
		if a < b {
			e.kern(&e.params[p], e.slots[p], a-e.offs[p], b-e.offs[p])
		}
	}
}

func checkLR(lr float64) error {
	if !(lr >= 0) || math.IsInf(lr, 0) {
		return fmt.Errorf("%w: %v", ErrLR, lr)
	}
	return nil
}
