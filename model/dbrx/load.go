package dbrx

import (
	"errors"
	"fmt"
	"strings"

	"github.com/dbrx-engine/dbrx/model"
	"github.com/dbrx-engine/dbrx/weights"
)

// Load opens a DBRX model and binds it strictly: either a Hugging Face checkpoint
// directory (config.json plus model.safetensors or a sharded index) or a GGUF file
// (recognised by its magic; see LoadGGUF). Weights stay mmap'd.
func Load(path string) (*Model, error) {
	if weights.IsGGUF(path) {
		return LoadGGUF(path)
	}
	cfg, err := LoadConfig(path)
	if err != nil {
		return nil, err
	}
	src, err := weights.OpenSafetensors(path)
	if err != nil {
		return nil, err
	}
	m, err := Bind(cfg, src)
	if err != nil {
		src.Close()
		return nil, fmt.Errorf("dbrx: %s: %w", path, err)
	}
	return m, nil
}

// LoadGGUF opens a llama.cpp GGUF file of a DBRX model (as written by dbrx convert
// or llama.cpp's convert_hf_to_gguf.py), takes the config from its dbrx.* metadata
// (ConfigFromGGUF) and binds its tensors, quantized ones staying quantized. Binding
// errors name each tensor by its HF name and its GGUF name.
func LoadGGUF(path string) (*Model, error) {
	g, err := weights.OpenGGUF(path)
	if err != nil {
		return nil, err
	}
	cfg, err := ConfigFromGGUF(g)
	if err != nil {
		g.Close()
		return nil, err
	}
	m, err := Bind(cfg, g)
	if err != nil {
		g.Close()
		return nil, fmt.Errorf("dbrx: %s: %w", path, annotateGGUF(err, g))
	}
	return m, nil
}

// GGUF metadata keys read by ConfigFromGGUF: llama.cpp's LLM_ARCH_DBRX keys (the
// same strings as package gguf's KeyDBRX* constants, which this package may not
// import), plus two extensions written by dbrx convert only for configs llama.cpp
// cannot express (llama.cpp always renormalises the top-k weights to sum 1).
const (
	ggufBlockCount    = "dbrx.block_count"
	ggufContextLength = "dbrx.context_length"
	ggufEmbedding     = "dbrx.embedding_length"
	ggufFeedForward   = "dbrx.feed_forward_length"
	ggufHeadCount     = "dbrx.attention.head_count"
	ggufHeadCountKV   = "dbrx.attention.head_count_kv"
	ggufRopeFreqBase  = "dbrx.rope.freq_base"
	ggufClampKQV      = "dbrx.attention.clamp_kqv"
	ggufExpertCount   = "dbrx.expert_count"
	ggufExpertUsed    = "dbrx.expert_used_count"
	ggufLayerNormEps  = "dbrx.attention.layer_norm_epsilon"
	ggufEOS           = "tokenizer.ggml.eos_token_id"
	ggufEOT           = "tokenizer.ggml.eot_token_id"

	// GGUFKeyExpertWeightsNorm (bool, llama.cpp's "%s.expert_weights_norm") false
	// means moe_normalize_expert_weights = null (no renormalisation).
	GGUFKeyExpertWeightsNorm = "dbrx.expert_weights_norm"
	// GGUFKeyExpertWeightsNormP (float32, an extension) is the p of the p-norm when
	// moe_normalize_expert_weights is not 1.
	GGUFKeyExpertWeightsNormP = "dbrx.expert_weights_norm_p"
)

// ConfigFromGGUF builds the Config of a DBRX GGUF file from its metadata, the way
// llama.cpp reads it: dbrx.block_count, context_length, embedding_length,
// feed_forward_length, attention.head_count(_kv), rope.freq_base,
// attention.clamp_kqv (absent: no clamp), expert_count, expert_used_count; the
// vocabulary size is the row count of token_embd.weight; EOSTokenIDs are
// tokenizer.ggml.eos_token_id and eot_token_id. attention.layer_norm_epsilon, if
// present, must be 1e-5 (the only value DBRX uses). Fields GGUF does not carry take
// DbrxConfig's defaults (dropouts 0, silu, moe_normalize_expert_weights 1 unless
// the GGUFKeyExpertWeightsNorm* keys say otherwise). The result is validated.
func ConfigFromGGUF(g *weights.GGUF) (Config, error) {
	c := DefaultConfig()
	bad := func(key, format string, a ...any) error {
		return &ConfigError{File: g.Path(), Field: key, Msg: fmt.Sprintf(format, a...)}
	}
	ints := []struct {
		key      string
		dst      *int
		optional bool
	}{
		{ggufBlockCount, &c.NLayers, false}, {ggufContextLength, &c.MaxSeqLen, false},
		{ggufEmbedding, &c.DModel, false}, {ggufFeedForward, &c.FFNConfig.FFNHiddenSize, false},
		{ggufHeadCount, &c.NHeads, false}, {ggufHeadCountKV, &c.AttnConfig.KVNHeads, true},
		{ggufExpertCount, &c.FFNConfig.MoENumExperts, false}, {ggufExpertUsed, &c.FFNConfig.MoETopK, false},
	}
	for _, k := range ints {
		if k.optional && !g.HasMeta(k.key) {
			continue
		}
		v, err := g.MetaUint(k.key)
		if err != nil {
			return Config{}, err
		}
		if v > 1<<30 {
			return Config{}, bad(k.key, "%d is implausibly large", v)
		}
		*k.dst = int(v)
	}
	if !g.HasMeta(ggufHeadCountKV) { // llama.cpp: n_head_kv defaults to n_head
		c.AttnConfig.KVNHeads = c.NHeads
	}
	if g.HasMeta(ggufRopeFreqBase) {
		v, err := g.MetaFloat(ggufRopeFreqBase)
		if err != nil {
			return Config{}, err
		}
		c.AttnConfig.RopeTheta = v
	}
	if g.HasMeta(ggufClampKQV) {
		v, err := g.MetaFloat(ggufClampKQV)
		if err != nil {
			return Config{}, err
		}
		if v != 0 {
			c.AttnConfig.ClipQKV = &v
		}
	}
	if g.HasMeta(ggufLayerNormEps) {
		v, err := g.MetaFloat(ggufLayerNormEps)
		if err != nil {
			return Config{}, err
		}
		if float32(v) != float32(LayerNormEps) {
			return Config{}, bad(ggufLayerNormEps, "%g is not supported (DBRX's LayerNorm uses %g)", float32(v), LayerNormEps)
		}
	}
	if g.HasMeta(GGUFKeyExpertWeightsNorm) {
		norm, err := g.MetaBool(GGUFKeyExpertWeightsNorm)
		if err != nil {
			return Config{}, err
		}
		if !norm {
			c.FFNConfig.MoENormalizeExpertWeights = nil
		}
	}
	if c.FFNConfig.MoENormalizeExpertWeights != nil && g.HasMeta(GGUFKeyExpertWeightsNormP) {
		p, err := g.MetaFloat(GGUFKeyExpertWeightsNormP)
		if err != nil {
			return Config{}, err
		}
		c.FFNConfig.MoENormalizeExpertWeights = &p
	}
	wte, ok := g.Tensor(NameWte)
	if !ok || len(wte.Shape) != 2 {
		return Config{}, bad("token_embd.weight", "the 2-D token embedding (which gives the vocabulary size) is missing")
	}
	c.VocabSize = wte.Shape[0]
	for _, key := range []string{ggufEOS, ggufEOT} {
		if !g.HasMeta(key) {
			continue
		}
		id, err := g.MetaUint(key)
		if err != nil {
			return Config{}, err
		}
		if id < uint64(c.VocabSize) && !containsInt(c.EOSTokenIDs, int(id)) {
			c.EOSTokenIDs = append(c.EOSTokenIDs, int(id))
		}
	}
	if err := c.Validate(); err != nil {
		var ce *ConfigError
		if errors.As(err, &ce) {
			ce.File = g.Path()
		}
		return Config{}, err
	}
	return c, nil
}

func containsInt(xs []int, v int) bool {
	for _, x := range xs {
		if x == v {
			return true
		}
	}
	return false
}

// annotateGGUF adds the GGUF tensor name to every name in a *model.BindError
// ("transformer.blocks.0.ffn.experts.mlp.w1 (GGUF blk.0.ffn_gate_exps.weight): ...").
func annotateGGUF(err error, g *weights.GGUF) error {
	var be *model.BindError
	if !errors.As(err, &be) {
		return err
	}
	out := *be
	annotate := func(xs []string) []string {
		ys := make([]string, len(xs))
		for i, x := range xs {
			name, rest, _ := strings.Cut(x, ": ")
			if file, ok := g.FileName(name); ok && file != name {
				name += " (GGUF " + file + ")"
			}
			if rest != "" {
				name += ": " + rest
			}
			ys[i] = name
		}
		return ys
	}
	out.Missing, out.Unexpected, out.Mismatched = annotate(be.Missing), annotate(be.Unexpected), annotate(be.Mismatched)
	return &out
}
