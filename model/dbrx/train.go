package dbrx

import (
	"fmt"
	"math/rand/v2"

	"github.com/dbrx-engine/dbrx/internal/parallel"
	"github.com/dbrx-engine/dbrx/nn"
	"github.com/dbrx-engine/dbrx/tensor"
	"github.com/dbrx-engine/dbrx/weights"
)

// Training: mutable float32 parameters, a training forward over a batch [B, T] that
// keeps the activations, the losses (cross-entropy, load balancing, router z-loss)
// and the backward pass. The forward computes what Model.Forward computes, with the
// same kernels in the same order except for attention (blocked float32 GEMMs here,
// key by key in nn.CausalAttentionHead) and the experts' silu (the vectorised
// kernel.SiLUMulF32 here, nn.SiLU there), which agree to float32 rounding; so eval
// can bind the same Params to a Model.

// Params holds every parameter of a DBRX model as mutable float32 in state_dict order
// (Config.ParamShapes). Data[i] is a view into Flat, so an optimizer or an all-reduce
// can treat the whole model as one vector. A Params of the same Config also holds
// gradients.
type Params struct {
	Config Config
	Names  []string    // [P] HF state_dict names
	Shapes [][]int     // [P] PyTorch shapes
	Data   [][]float32 // [P] views into Flat
	Flat   []float32   // every parameter back to back
	index  map[string]int
}

// NewParams allocates zeroed parameters for c (validated).
func NewParams(c Config) (*Params, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	names, shapes := c.ParamShapes()
	total := 0
	for _, s := range shapes {
		total += numel(s)
	}
	p := &Params{Config: c, Names: names, Shapes: shapes, Data: make([][]float32, len(names)),
		Flat: make([]float32, total), index: make(map[string]int, len(names))}
	off := 0
	for i, s := range shapes {
		n := numel(s)
		p.Data[i] = p.Flat[off : off+n : off+n]
		off += n
		p.index[names[i]] = i
	}
	return p, nil
}

func numel(s []int) int {
	n := 1
	for _, d := range s {
		n *= d
	}
	return n
}

// Tensor returns the named parameter, or false.
func (p *Params) Tensor(name string) ([]float32, bool) {
	i, ok := p.index[name]
	if !ok {
		return nil, false
	}
	return p.Data[i], true
}

// Zero sets every value to 0 (to start accumulating gradients).
func (p *Params) Zero() { clear(p.Flat) }

// Init fills the parameters with the reference initialisation (Config.InitParam).
func (p *Params) Init(seed uint64) {
	for i, n := range p.Names {
		p.Config.InitParam(p.Data[i], n, i, seed)
	}
}

// sameLayout reports whether q can hold gradients for p.
func (p *Params) sameLayout(q *Params) bool {
	if q == nil || len(q.Flat) != len(p.Flat) || len(q.Data) != len(p.Data) {
		return false
	}
	for i := range p.Data {
		if len(p.Data[i]) != len(q.Data[i]) {
			return false
		}
	}
	return true
}

// Source exposes the parameters as F32 tensors without copying, for Bind (so eval
// runs the inference forward on the very values being trained) or for writing a
// checkpoint. The tensors alias p: later updates show through.
func (p *Params) Source() weights.Map {
	m := make(weights.Map, len(p.Names))
	for i, n := range p.Names {
		m[n] = weights.Tensor{Name: n, DType: tensor.F32, Shape: tensor.Shape(p.Shapes[i]), Data: tensor.Float32Bytes(p.Data[i])}
	}
	return m
}

// Bind returns an inference Model over p's values (zero copy).
func (p *Params) Bind() (*Model, error) { return Bind(p.Config, p.Source()) }

// ParamsFromSource copies (and widens BF16/F16 to) float32 every parameter of a
// checkpoint. Binding is strict: missing, unexpected and mis-shaped tensors are
// reported together.
func ParamsFromSource(c Config, src weights.Source) (*Params, error) {
	if _, err := Bind(c, src); err != nil { // strict check of names, shapes and dtypes
		return nil, err
	}
	p, err := NewParams(c)
	if err != nil {
		return nil, err
	}
	for i, n := range p.Names {
		t, _ := src.Tensor(n)
		if err := tensor.ToFloat32(p.Data[i], t.DType, t.Data); err != nil {
			return nil, fmt.Errorf("dbrx: %s: %w", n, err)
		}
	}
	return p, nil
}

// LoadParams reads a Hugging Face checkpoint directory into float32 Params.
func LoadParams(dir string) (*Params, error) {
	c, err := LoadConfig(dir)
	if err != nil {
		return nil, err
	}
	src, err := weights.OpenSafetensors(dir)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	p, err := ParamsFromSource(c, src)
	if err != nil {
		return nil, fmt.Errorf("dbrx: %s: %w", dir, err)
	}
	return p, nil
}

// blockParams are the float32 parameters of one block, in Block field order.
type blockParams struct {
	norm1   []float32 // [D]
	wqkv    []float32 // [QKV, D]
	outProj []float32 // [D, D]
	norm2   []float32 // [D]
	router  []float32 // [E, D]
	w1      []float32 // [E·F, D]
	v1      []float32 // [E·F, D]
	w2      []float32 // [E·F, D]
}

// paramView names the slices of a Params (or of its gradient).
type paramView struct {
	wte    []float32 // [V, D]
	blocks []blockParams
	normF  []float32 // [D]
	lmHead []float32 // [V, D]
}

// view relies on ParamShapes' order: wte, 8 tensors per block, norm_f, lm_head.
func (p *Params) view() paramView {
	L := p.Config.NLayers
	v := paramView{wte: p.Data[0], blocks: make([]blockParams, L), normF: p.Data[1+8*L], lmHead: p.Data[2+8*L]}
	for l := range v.blocks {
		d := p.Data[1+8*l : 9+8*l]
		v.blocks[l] = blockParams{d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]}
	}
	return v
}

// IgnoreIndex marks a target position that contributes no loss.
const IgnoreIndex = nn.IgnoreIndex

// Batch is B sequences of T tokens each (positions 0…T−1, causal attention within
// each sequence, no padding mask) with one target per position.
type Batch struct {
	B, T    int
	IDs     []int // [B·T] input token ids, sequence-major
	Targets []int // [B·T] the id each position must predict, or IgnoreIndex
}

// ShiftLabels turns Hugging Face-style labels [B, T] (aligned with the inputs; the
// model shifts them, logits[:, :-1] predict labels[:, 1:]) into per-position
// targets: target[b, t] = labels[b, t+1] and IgnoreIndex at t = T−1.
func ShiftLabels(labels []int, B, T int) []int {
	out := make([]int, B*T)
	for b := 0; b < B; b++ {
		for t := 0; t < T; t++ {
			if t+1 < T {
				out[b*T+t] = labels[b*T+t+1]
			} else {
				out[b*T+t] = IgnoreIndex
			}
		}
	}
	return out
}

// AuxLoss selects the load-balancing loss.
type AuxLoss int

const (
	// AuxMegaBlocks is MegaBlocks' batched_load_balancing_loss, per layer and with
	// 1/k (what DBRX was trained with; 1 at perfect balance). The default.
	AuxMegaBlocks AuxLoss = iota
	// AuxHF is Hugging Face's load_balancing_loss_func as DBRX used it up to
	// transformers 4.53: double softmax, pooled over layers, no 1/k. For parity.
	AuxHF
	// AuxNone adds no load-balancing loss.
	AuxNone
)

// String names the loss as the command line spells it.
func (a AuxLoss) String() string {
	switch a {
	case AuxMegaBlocks:
		return "megablocks"
	case AuxHF:
		return "hf"
	case AuxNone:
		return "none"
	}
	return fmt.Sprintf("AuxLoss(%d)", int(a))
}

// ParseAuxLoss is the inverse of String.
func ParseAuxLoss(s string) (AuxLoss, error) {
	for _, a := range []AuxLoss{AuxMegaBlocks, AuxHF, AuxNone} {
		if a.String() == s {
			return a, nil
		}
	}
	return 0, fmt.Errorf("dbrx: unknown aux loss %q (want megablocks, hf or none)", s)
}

// TrainOptions configures the training forward and backward.
type TrainOptions struct {
	// AuxLoss is the load-balancing loss, weighted by ffn_config.moe_loss_weight.
	AuxLoss AuxLoss
	// ZLossWeight weights MegaBlocks' router z-loss (0: off).
	ZLossWeight float64
	// GradScale multiplies every gradient (0 means 1): Backward accumulates
	// d(GradScale·Total)/dθ, e.g. 1/microbatches for gradient accumulation.
	GradScale float32
	// Train enables training-mode randomness: with ffn_config.moe_jitter_eps > 0 the
	// router input (only the router's, as in MegaBlocks and the Databricks reference)
	// is multiplied by U(1−eps, 1+eps) drawn from Rand, which is then required.
	// Dropout is not implemented: Train with a non-zero *_pdrop is an error.
	Train bool
	Rand  *rand.Rand
}

// Losses of one forward pass.
type Losses struct {
	CE    float64 // mean cross-entropy over the counted targets (0 if none)
	Aux   float64 // the selected load-balancing loss, unweighted
	Z     float64 // router z-loss, unweighted (0 when off)
	Total float64 // CE + moe_loss_weight·Aux + ZLossWeight·Z
	// Tokens is the number of targets that are not IgnoreIndex.
	Tokens int
}

// TrainState holds a training forward's activations (kept for Backward) and the
// scratch of both passes. Buffers grow to the largest batch seen and are reused.
// A TrainState is not safe for concurrent use.
type TrainState struct {
	Pool *parallel.Pool

	// set by Forward, used by Backward
	p      *Params
	batch  Batch
	opt    TrainOptions
	losses Losses
	ready  bool

	n      int         // B·T tokens
	xs     [][]float32 // [L+1][N, D] residual stream entering block l (xs[L]: after the last)
	layers []layerActs // [L]
	meanF  []float64   // [N]
	rstdF  []float64   // [N]
	hf     []float32   // [N, D] norm_f output
	cos    []float32   // [T, Dh/2]
	sin    []float32   // [T, Dh/2]
	rowCE  []float64   // [N] per-position cross-entropy
	// the LM head's rows with a target (head gathers them when some are ignored)
	headRows []int         // [≤N] their positions
	hfKept   []float32     // [≤N, D] their norm_f outputs
	tgKept   []int         // [≤N] their targets
	ceKept   []float64     // [≤N] their losses
	headAll  bool          // tests: no gathering, ignored rows go through the head too
	logits   []float32     // [R, V] one chunk of logits (R rows)
	probsL   [][]float32   // [L] views of layers[l].probs
	rlogL    [][]float32   // [L] views of layers[l].rlogits
	topL     [][]int       // [L] views of layers[l].topIdx
	bw       backwardState // backward scratch
}

// layerActs are the activations of one block that the backward pass reads.
type layerActs struct {
	mean1, rstd1 []float64 // [N]
	h1           []float32 // [N, D] norm_1 output
	qkvPre       []float32 // [N, QKV] before the clamp (the clamp's mask)
	qkv          []float32 // [N, QKV] clamped, q and k rotated
	attn         []float32 // [N, D] heads concatenated, before out_proj
	lse          []float64 // [N, H] attention log-sum-exp
	xMid         []float32 // [N, D] residual after attention
	mean2, rstd2 []float64 // [N]
	h2           []float32 // [N, D] norm_2 output (the experts' input)
	jit          []float32 // [N, D] router jitter factors (empty without jitter)
	rinBuf       []float32 // [N, D] h2⊙jit (empty without jitter)
	rin          []float32 // [N, D] router input: h2, or rinBuf
	rlogits      []float32 // [N, E] router logits
	probs        []float32 // [N, E] router softmax
	topIdx       []int     // [N, K] selected experts, best first
	topW         []float32 // [N, K] their (renormalised) weights
	cnt          []int     // [E+1] start of each expert's assignments in order
	order        []int     // [N·K] assignment t·K+s, grouped by expert
	g, u         []float32 // [N·K, F] gate and up projections, in order
	y            []float32 // [N·K, D] expert outputs before weighting, in order
}

// NewTrainState returns a state whose loops run on pool (nil: single-threaded).
func NewTrainState(pool *parallel.Pool) *TrainState { return &TrainState{Pool: pool} }
