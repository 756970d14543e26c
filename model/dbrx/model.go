package dbrx

import (
	"fmt"

	"github.com/dbrx-engine/dbrx/internal/kernel"
	"github.com/dbrx-engine/dbrx/model"
	"github.com/dbrx-engine/dbrx/nn"
	"github.com/dbrx-engine/dbrx/tensor"
	"github.com/dbrx-engine/dbrx/weights"
)

// Block is one DBRX transformer block (DbrxBlock = norm_attn_norm + ffn).
type Block struct {
	Norm1   []float32  // [D]            norm_attn_norm.norm_1.weight
	Wqkv    kernel.Mat // [D+2·KVH·Dh, D] norm_attn_norm.attn.Wqkv.weight
	OutProj kernel.Mat // [D, D]          norm_attn_norm.attn.out_proj.weight
	Norm2   []float32  // [D]            norm_attn_norm.norm_2.weight
	Router  kernel.Mat // [E, D]          ffn.router.layer.weight
	W1      kernel.Mat // [E·F, D]        ffn.experts.mlp.w1 (gate; expert e = rows e·F…)
	V1      kernel.Mat // [E·F, D]        ffn.experts.mlp.v1 (up)
	// The down projection comes in one of two orientations; exactly one is bound.
	W2  kernel.Mat // [E·F, D] ffn.experts.mlp.w2 (HF; expert e = rows e·F…, used untransposed: h·W2_e); F32/BF16/F16
	W2T kernel.Mat // [E·D, F] ffn.experts.mlp.w2.T (GGUF ffn_down_exps; expert e = rows e·D…, used as h·W2T_eᵀ); any weight type

	// wqkvPanels and outPanels are bf16 Wqkv and OutProj packed at Bind for
	// kernel.MatMulTPanels (Rows 0 for other weight types), as the LM head is:
	// with 8 or more tokens the panel kernels take ~30% less time than the
	// row-major ones on these shapes (a BENCH decode step of 16 sequences:
	// 3.3-3.6 -> 2.5-2.9 ms for Wqkv, 2.3-2.6 -> 1.6-1.8 ms for OutProj), and
	// below 64 tokens their sums do not depend on how many tokens share the
	// call, so decoding alone or in a batch gives these products the same bits.
	wqkvPanels kernel.PanelMat // [D+2·KVH·Dh, D]
	outPanels  kernel.PanelMat // [D, D]
}

// Model is a DBRX causal LM bound to its weights. Weights are views into the
// checkpoint (bf16 stays bf16), except that a bf16 LM head and bf16 attention
// projections are also packed once at Bind into the panel layout their batched
// products read (an extra (V + L·(QKVDim + D))·D·2 bytes, ~3% of real DBRX);
// the Model is read-only and safe for concurrent Forward calls with distinct
// Workspaces and caches.
type Model struct {
	Config Config
	Wte    kernel.Mat // [V, D] transformer.wte.weight
	Blocks []Block    // [L]
	NormF  []float32  // [D]    transformer.norm_f.weight
	LMHead kernel.Mat // [V, D] lm_head.weight
	RoPE   *nn.RoPE

	// lmPanels is a bf16 LMHead packed at Bind for kernel.MatMulTPanels (Rows 0
	// for other weight types): the LM head is the largest product of a batched
	// decode step, and the panel layout serves every sequence of a batch from one
	// read of the weights. Forward never touches LMHead's own pages then, so the
	// mmap'd checkpoint copy can be evicted.
	lmPanels kernel.PanelMat // [V, D] bf16, panels of 16 rows

	src weights.Source
}

// Names of the checkpoint tensors, exactly as DbrxForCausalLM's state_dict keys.
const (
	NameWte    = "transformer.wte.weight"
	NameNormF  = "transformer.norm_f.weight"
	NameLMHead = "lm_head.weight"
)

// BlockNames returns the tensor names of block i in Block field order
// (Norm1, Wqkv, OutProj, Norm2, Router, W1, V1, W2). A GGUF source holds the down
// projection as W2TName(i) instead of the last name.
func BlockNames(i int) [8]string {
	p := fmt.Sprintf("transformer.blocks.%d.", i)
	return [8]string{
		p + "norm_attn_norm.norm_1.weight",
		p + "norm_attn_norm.attn.Wqkv.weight",
		p + "norm_attn_norm.attn.out_proj.weight",
		p + "norm_attn_norm.norm_2.weight",
		p + "ffn.router.layer.weight",
		p + "ffn.experts.mlp.w1",
		p + "ffn.experts.mlp.v1",
		p + "ffn.experts.mlp.w2",
	}
}

// W2TName is the name of block i's down projection in the transposed (GGUF,
// llama.cpp ffn_down_exps) orientation [E·D, F]: the HF name plus
// weights.TransposedSuffix.
func W2TName(i int) string { return BlockNames(i)[7] + weights.TransposedSuffix }

// ParamShapes lists every parameter name with its shape, in state_dict order.
func (c Config) ParamShapes() (names []string, shapes [][]int) {
	D, V, E, F := c.DModel, c.VocabSize, c.FFNConfig.MoENumExperts, c.FFNConfig.FFNHiddenSize
	add := func(n string, s ...int) { names = append(names, n); shapes = append(shapes, s) }
	add(NameWte, V, D)
	for i := 0; i < c.NLayers; i++ {
		n := BlockNames(i)
		add(n[0], D)
		add(n[1], c.QKVDim(), D)
		add(n[2], D, D)
		add(n[3], D)
		add(n[4], E, D)
		add(n[5], E*F, D)
		add(n[6], E*F, D)
		add(n[7], E*F, D)
	}
	add(NameNormF, D)
	add(NameLMHead, V, D)
	return names, shapes
}

// Bind attaches the tensors of src to a model of config c. Every missing, unexpected
// or mis-shaped tensor is reported together in one *model.BindError. The model keeps
// src open; Close releases it.
//
// Matrices may be F32, BF16, F16 or ggml block types (see model.Binder); norms are
// widened to float32. The down projection is bound from W2TName(i) ([E·D, F], any
// weight type) when src has that name and not the HF one, else from the HF w2
// ([E·F, D], float types only); a source holding both is rejected (the unused one
// is unexpected).
func Bind(c Config, src weights.Source) (*Model, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	D, V, E, F := c.DModel, c.VocabSize, c.FFNConfig.MoENumExperts, c.FFNConfig.FFNHiddenSize
	b := model.NewBinder(src)
	m := &Model{Config: c, src: src}
	m.Wte = b.Mat(NameWte, V, D)
	m.Blocks = make([]Block, c.NLayers)
	for i := range m.Blocks {
		n := BlockNames(i)
		m.Blocks[i] = Block{
			Norm1:   b.Vec(n[0], D),
			Wqkv:    b.Mat(n[1], c.QKVDim(), D),
			OutProj: b.Mat(n[2], D, D),
			Norm2:   b.Vec(n[3], D),
			Router:  b.Mat(n[4], E, D),
			W1:      b.Mat(n[5], E*F, D),
			V1:      b.Mat(n[6], E*F, D),
		}
		if t := W2TName(i); b.Has(t) && !b.Has(n[7]) {
			m.Blocks[i].W2T = b.Mat(t, E*D, F)
		} else {
			m.Blocks[i].W2 = b.FloatMat(n[7], E*F, D)
		}
	}
	m.NormF = b.Vec(NameNormF, D)
	m.LMHead = b.Mat(NameLMHead, V, D)
	if err := b.Finish(); err != nil {
		return nil, err
	}
	var err error
	if m.lmPanels, err = packPanels(NameLMHead, m.LMHead); err != nil {
		return nil, err
	}
	for i := range m.Blocks {
		b, n := &m.Blocks[i], BlockNames(i)
		if b.wqkvPanels, err = packPanels(n[1], b.Wqkv); err != nil {
			return nil, err
		}
		if b.outPanels, err = packPanels(n[2], b.OutProj); err != nil {
			return nil, err
		}
	}
	m.RoPE = nn.NewRoPE(c.HeadDim(), c.AttnConfig.RopeTheta)
	return m, nil
}

// packPanels packs w (tensor name) for kernel.MatMulTPanels when it is plain bf16;
// other weight types get an empty PanelMat and keep running on w as bound.
func packPanels(name string, w kernel.Mat) (kernel.PanelMat, error) {
	if w.DType != tensor.BF16 || w.IsQuantized() {
		return kernel.PanelMat{}, nil
	}
	p, err := kernel.PackPanelsBF16(w)
	if err != nil {
		return kernel.PanelMat{}, fmt.Errorf("dbrx: packing %s: %w", name, err)
	}
	return p, nil
}

// Close releases the weight source. The model must not be used afterwards.
func (m *Model) Close() error {
	if m.src == nil {
		return nil
	}
	return m.src.Close()
}
