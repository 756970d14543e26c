// Package dbrx implements the DBRX architecture: its configuration (Hugging Face
// config.json with the reference's defaults and aliases), strict binding of checkpoint
// tensors to the model, and the float32 forward pass with a KV cache and batched
// prefill/decode over several sequences.
//
// Dimension glossary (see also package nn): T tokens, D d_model, H heads, KVH kv heads,
// Dh head dim (D/H), F expert hidden size, E experts, K active experts (top-k),
// V vocabulary, L layers.
package dbrx

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/dbrx-engine/dbrx/nn"
)

// LayerNormEps is fixed by the reference (PyTorch's nn.LayerNorm default); DBRX's
// config has no field for it.
const LayerNormEps = 1e-5

// AttnConfig is DbrxAttentionConfig (config.json "attn_config").
type AttnConfig struct {
	AttnPdrop float64 `json:"attn_pdrop"`
	// ClipQKV clamps the fused QKV projection to [-ClipQKV, ClipQKV]; nil means no clamp.
	ClipQKV   *float64 `json:"clip_qkv"`
	KVNHeads  int      `json:"kv_n_heads"`
	RopeTheta float64  `json:"rope_theta"`
}

// FFNConfig is DbrxFFNConfig (config.json "ffn_config").
type FFNConfig struct {
	// FFNActFn is {"name": "silu"} by default; only silu is supported.
	FFNActFn      map[string]any `json:"ffn_act_fn"`
	FFNHiddenSize int            `json:"ffn_hidden_size"`
	MoENumExperts int            `json:"moe_num_experts"`
	MoETopK       int            `json:"moe_top_k"`
	// MoEJitterEps scales multiplicative router input noise in training; nil = none.
	MoEJitterEps  *float64 `json:"moe_jitter_eps"`
	MoELossWeight float64  `json:"moe_loss_weight"`
	// MoENormalizeExpertWeights is the p of the p-norm the top-k weights are divided by;
	// nil leaves them unnormalised.
	MoENormalizeExpertWeights *float64 `json:"moe_normalize_expert_weights"`
}

// Config is DbrxConfig: every field holds its effective value (defaults applied).
type Config struct {
	DModel             int        `json:"d_model"`
	NHeads             int        `json:"n_heads"`
	NLayers            int        `json:"n_layers"`
	MaxSeqLen          int        `json:"max_seq_len"`
	VocabSize          int        `json:"vocab_size"`
	ResidPdrop         float64    `json:"resid_pdrop"`
	EmbPdrop           float64    `json:"emb_pdrop"`
	AttnConfig         AttnConfig `json:"attn_config"`
	FFNConfig          FFNConfig  `json:"ffn_config"`
	UseCache           bool       `json:"use_cache"`
	InitializerRange   float64    `json:"initializer_range"`
	OutputRouterLogits bool       `json:"output_router_logits"`
	TieWordEmbeddings  bool       `json:"tie_word_embeddings"`
	TorchDtype         string     `json:"torch_dtype,omitempty"`
	// EOSTokenIDs come from generation_config.json when present (not part of DbrxConfig).
	EOSTokenIDs []int `json:"-"`
}

// DefaultAttnConfig returns DbrxAttentionConfig's defaults.
func DefaultAttnConfig() AttnConfig {
	return AttnConfig{AttnPdrop: 0, ClipQKV: nil, KVNHeads: 1, RopeTheta: 10000}
}

// DefaultFFNConfig returns DbrxFFNConfig's defaults.
func DefaultFFNConfig() FFNConfig {
	one := 1.0
	return FFNConfig{
		FFNActFn:                  map[string]any{"name": "silu"},
		FFNHiddenSize:             3584,
		MoENumExperts:             4,
		MoETopK:                   1,
		MoELossWeight:             0.01,
		MoENormalizeExpertWeights: &one,
	}
}

// DefaultConfig returns DbrxConfig's constructor defaults (not the released DBRX shape).
func DefaultConfig() Config {
	return Config{
		DModel: 2048, NHeads: 16, NLayers: 24, MaxSeqLen: 2048, VocabSize: 32000,
		AttnConfig: DefaultAttnConfig(), FFNConfig: DefaultFFNConfig(),
		UseCache: true, InitializerRange: 0.02,
	}
}

// HeadDim is D/H.
func (c Config) HeadDim() int { return c.DModel / c.NHeads }

// QKVDim is the fused projection width D + 2·KVH·Dh.
func (c Config) QKVDim() int { return c.DModel + 2*c.AttnConfig.KVNHeads*c.HeadDim() }

// ConfigError names the config field that is wrong and why.
type ConfigError struct {
	File  string // may be empty
	Field string
	Msg   string
}

func (e *ConfigError) Error() string {
	if e.File != "" {
		return fmt.Sprintf("dbrx config: %s: %s: %s", e.File, e.Field, e.Msg)
	}
	return fmt.Sprintf("dbrx config: %s: %s", e.Field, e.Msg)
}

// Validate checks the invariants the forward pass relies on and reports the first
// offending field with its value.
func (c Config) Validate() error {
	bad := func(field, format string, a ...any) error {
		return &ConfigError{Field: field, Msg: fmt.Sprintf(format, a...)}
	}
	pos := []struct {
		name string
		v    int
	}{{"d_model", c.DModel}, {"n_heads", c.NHeads}, {"n_layers", c.NLayers}, {"max_seq_len", c.MaxSeqLen},
		{"vocab_size", c.VocabSize}, {"attn_config.kv_n_heads", c.AttnConfig.KVNHeads},
		{"ffn_config.ffn_hidden_size", c.FFNConfig.FFNHiddenSize}, {"ffn_config.moe_num_experts", c.FFNConfig.MoENumExperts}}
	for _, p := range pos {
		if p.v <= 0 {
			return bad(p.name, "must be positive, got %d", p.v)
		}
	}
	if c.DModel%c.NHeads != 0 {
		return bad("d_model", "%d is not divisible by n_heads %d", c.DModel, c.NHeads)
	}
	if c.HeadDim()%2 != 0 {
		return bad("d_model", "head dim %d (d_model %d / n_heads %d) must be even for RoPE", c.HeadDim(), c.DModel, c.NHeads)
	}
	if c.HeadDim() > nn.MaxHeadDim { // attention keeps a head's accumulator on the stack
		return bad("d_model", "head dim %d (d_model %d / n_heads %d) exceeds %d", c.HeadDim(), c.DModel, c.NHeads, nn.MaxHeadDim)
	}
	if c.NHeads%c.AttnConfig.KVNHeads != 0 {
		return bad("attn_config.kv_n_heads", "n_heads %d is not divisible by kv_n_heads %d", c.NHeads, c.AttnConfig.KVNHeads)
	}
	if k, e := c.FFNConfig.MoETopK, c.FFNConfig.MoENumExperts; k < 1 || k > e {
		return bad("ffn_config.moe_top_k", "%d must be in [1, moe_num_experts=%d]", k, e)
	}
	if t := c.AttnConfig.RopeTheta; !(t > 0) || math.IsInf(t, 0) {
		return bad("attn_config.rope_theta", "must be positive and finite, got %v", t)
	}
	if p := c.AttnConfig.ClipQKV; p != nil && (!(*p > 0) || math.IsInf(*p, 0)) {
		// The reference treats clip_qkv 0 as "no clip" (it tests truthiness); we normalise
		// that to nil in parsing, so a value here must be a usable bound.
		return bad("attn_config.clip_qkv", "must be positive and finite or null, got %v", *p)
	}
	if p := c.FFNConfig.MoENormalizeExpertWeights; p != nil && (!(*p > 0) || math.IsInf(*p, 0)) {
		return bad("ffn_config.moe_normalize_expert_weights", "must be a positive p-norm order or null, got %v", *p)
	}
	if name, err := activationName(c.FFNConfig.FFNActFn); err != nil {
		return bad("ffn_config.ffn_act_fn", "%v", err)
	} else if name != "silu" {
		return bad("ffn_config.ffn_act_fn", "activation %q is not supported (only silu)", name)
	}
	if c.TieWordEmbeddings {
		// Same refusal as the reference's DbrxConfig.
		return bad("tie_word_embeddings", "tie_word_embeddings is not supported for DBRX models")
	}
	for _, f := range []struct {
		name string
		v    float64
	}{{"resid_pdrop", c.ResidPdrop}, {"emb_pdrop", c.EmbPdrop}, {"attn_config.attn_pdrop", c.AttnConfig.AttnPdrop}} {
		if f.v < 0 || f.v >= 1 || math.IsNaN(f.v) {
			return bad(f.name, "dropout must be in [0, 1), got %v", f.v)
		}
	}
	return nil
}

func activationName(m map[string]any) (string, error) {
	if m == nil {
		return "silu", nil
	}
	n, ok := m["name"].(string)
	if !ok {
		return "", errors.New(`must be an object with a string "name"`)
	}
	for k := range m {
		if k != "name" {
			return "", fmt.Errorf("activation keyword argument %q is not supported", k)
		}
	}
	return n, nil
}

// top-level keys that DbrxConfig maps to its own names (attribute_map).
var configAliases = map[string]string{
	"hidden_size":             "d_model",
	"num_attention_heads":     "n_heads",
	"num_hidden_layers":       "n_layers",
	"max_position_embeddings": "max_seq_len",
}

var attnKeys = map[string]bool{"attn_pdrop": true, "clip_qkv": true, "kv_n_heads": true, "rope_theta": true, "model_type": true}
var ffnKeys = map[string]bool{"ffn_act_fn": true, "ffn_hidden_size": true, "moe_num_experts": true, "moe_top_k": true,
	"moe_jitter_eps": true, "moe_loss_weight": true, "moe_normalize_expert_weights": true, "model_type": true}

// ParseConfig decodes a config.json, applying DbrxConfig's defaults to every omitted
// field (Hugging Face writes sub-configs in diff mode) and its attribute aliases.
// It does not call Validate.
func ParseConfig(data []byte) (Config, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return Config{}, &ConfigError{Field: "(json)", Msg: describeJSONError(data, err)}
	}
	if top == nil {
		return Config{}, &ConfigError{Field: "(json)", Msg: "config must be a JSON object"}
	}
	for alias, name := range configAliases {
		if v, ok := top[alias]; ok {
			if _, both := top[name]; both {
				return Config{}, &ConfigError{Field: alias, Msg: fmt.Sprintf("given together with %s", name)}
			}
			top[name] = v
		}
	}
	if mt, ok := top["model_type"]; ok {
		var s string
		if json.Unmarshal(mt, &s) != nil || (s != "dbrx" && s != "") {
			return Config{}, &ConfigError{Field: "model_type", Msg: fmt.Sprintf("expected \"dbrx\", got %s", mt)}
		}
	}
	c := DefaultConfig()
	fields := []struct {
		key string
		dst any
	}{
		{"d_model", &c.DModel}, {"n_heads", &c.NHeads}, {"n_layers", &c.NLayers}, {"max_seq_len", &c.MaxSeqLen},
		{"vocab_size", &c.VocabSize}, {"resid_pdrop", &c.ResidPdrop}, {"emb_pdrop", &c.EmbPdrop},
		{"use_cache", &c.UseCache}, {"initializer_range", &c.InitializerRange},
		{"output_router_logits", &c.OutputRouterLogits}, {"tie_word_embeddings", &c.TieWordEmbeddings},
		{"torch_dtype", &c.TorchDtype},
	}
	for _, f := range fields {
		if err := decodeField(top, f.key, f.key, f.dst); err != nil {
			return Config{}, err
		}
	}
	if err := decodeSub(top, "attn_config", attnKeys, &c.AttnConfig); err != nil {
		return Config{}, err
	}
	if err := decodeSub(top, "ffn_config", ffnKeys, &c.FFNConfig); err != nil {
		return Config{}, err
	}
	if p := c.AttnConfig.ClipQKV; p != nil && *p == 0 {
		c.AttnConfig.ClipQKV = nil // the reference tests `if self.clip_qkv is not None` but 0 would clamp all to 0
	}
	return c, nil
}

func decodeField(m map[string]json.RawMessage, key, field string, dst any) error {
	raw, ok := m[key]
	if !ok || string(raw) == "null" {
		return nil
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return &ConfigError{Field: field, Msg: fmt.Sprintf("cannot use %s: %v", raw, err)}
	}
	return nil
}

// decodeSub overlays a nested config object onto its defaults. Unknown keys are an
// error, as in the reference ("Found unknown kwargs").
func decodeSub(top map[string]json.RawMessage, name string, known map[string]bool, dst any) error {
	raw, ok := top[name]
	if !ok || string(raw) == "null" {
		return nil
	}
	var sub map[string]json.RawMessage
	if err := json.Unmarshal(raw, &sub); err != nil || sub == nil {
		return &ConfigError{Field: name, Msg: fmt.Sprintf("must be an object, got %s", raw)}
	}
	keys := make([]string, 0, len(sub))
	for k := range sub {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !known[k] {
			return &ConfigError{Field: name + "." + k, Msg: "unknown field"}
		}
	}
	// Explicit nulls must survive for pointer fields (null = "off"), so decode into
	// the defaults field by field rather than with one Unmarshal.
	for _, k := range keys {
		if k == "model_type" {
			continue
		}
		if err := setJSONField(dst, k, sub[k]); err != nil {
			return &ConfigError{Field: name + "." + k, Msg: err.Error()}
		}
	}
	return nil
}

// setJSONField decodes raw into the struct field whose json tag is key.
func setJSONField(dst any, key string, raw json.RawMessage) error {
	var err error
	null := string(raw) == "null"
	switch d := dst.(type) {
	case *AttnConfig:
		switch key {
		case "attn_pdrop":
			err = unmarshalNonNull(raw, &d.AttnPdrop)
		case "clip_qkv":
			if null {
				d.ClipQKV = nil
			} else {
				var v float64
				err = json.Unmarshal(raw, &v)
				d.ClipQKV = &v
			}
		case "kv_n_heads":
			err = unmarshalNonNull(raw, &d.KVNHeads)
		case "rope_theta":
			err = unmarshalNonNull(raw, &d.RopeTheta)
		}
	case *FFNConfig:
		switch key {
		case "ffn_act_fn":
			if null {
				d.FFNActFn = map[string]any{"name": "silu"}
			} else {
				d.FFNActFn = nil
				err = json.Unmarshal(raw, &d.FFNActFn)
			}
		case "ffn_hidden_size":
			err = unmarshalNonNull(raw, &d.FFNHiddenSize)
		case "moe_num_experts":
			err = unmarshalNonNull(raw, &d.MoENumExperts)
		case "moe_top_k":
			err = unmarshalNonNull(raw, &d.MoETopK)
		case "moe_loss_weight":
			err = unmarshalNonNull(raw, &d.MoELossWeight)
		case "moe_jitter_eps", "moe_normalize_expert_weights":
			p := &d.MoEJitterEps
			if key == "moe_normalize_expert_weights" {
				p = &d.MoENormalizeExpertWeights
			}
			if null {
				*p = nil
			} else {
				var v float64
				err = json.Unmarshal(raw, &v)
				*p = &v
			}
		}
	}
	if err != nil {
		return fmt.Errorf("cannot use %s: %v", raw, err)
	}
	return nil
}

func unmarshalNonNull(raw json.RawMessage, dst any) error {
	if string(raw) == "null" {
		return errors.New("null is not allowed")
	}
	return json.Unmarshal(raw, dst)
}

// describeJSONError adds the byte offset of a syntax error.
func describeJSONError(data []byte, err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("invalid JSON at byte offset %d: %v", se.Offset, err)
	}
	return "invalid JSON: " + err.Error()
}

// LoadConfig reads dir/config.json (and dir/generation_config.json's eos_token_id if
// present), applies defaults and validates.
func LoadConfig(dir string) (Config, error) {
	path := filepath.Join(dir, "config.json")
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("dbrx config: %w", err)
	}
	c, err := ParseConfig(data)
	if err == nil {
		err = c.Validate()
	}
	if err != nil {
		var ce *ConfigError
		if errors.As(err, &ce) {
			ce.File = path
		}
		return Config{}, err
	}
	if g, err := os.ReadFile(filepath.Join(dir, "generation_config.json")); err == nil {
		var gc struct {
			EOS json.RawMessage `json:"eos_token_id"`
		}
		if json.Unmarshal(g, &gc) == nil && len(gc.EOS) > 0 && string(gc.EOS) != "null" {
			var one int
			var many []int
			if json.Unmarshal(gc.EOS, &one) == nil {
				c.EOSTokenIDs = []int{one}
			} else if json.Unmarshal(gc.EOS, &many) == nil {
				c.EOSTokenIDs = many
			} else {
				return Config{}, &ConfigError{File: filepath.Join(dir, "generation_config.json"), Field: "eos_token_id", Msg: "must be an int or a list of ints, got " + strings.TrimSpace(string(gc.EOS))}
			}
		}
	}
	return c, nil
}

// Marshal writes the config the way Hugging Face's save_pretrained does (full values,
// model_type "dbrx", architectures), suitable for config.json.
func (c Config) Marshal() ([]byte, error) {
	type attnOut struct {
		AttnPdrop float64  `json:"attn_pdrop"`
		ClipQKV   *float64 `json:"clip_qkv"`
		KVNHeads  int      `json:"kv_n_heads"`
		ModelType string   `json:"model_type"`
		RopeTheta float64  `json:"rope_theta"`
	}
	type ffnOut struct {
		FFNActFn                  map[string]any `json:"ffn_act_fn"`
		FFNHiddenSize             int            `json:"ffn_hidden_size"`
		ModelType                 string         `json:"model_type"`
		MoEJitterEps              *float64       `json:"moe_jitter_eps"`
		MoELossWeight             float64        `json:"moe_loss_weight"`
		MoENormalizeExpertWeights *float64       `json:"moe_normalize_expert_weights"`
		MoENumExperts             int            `json:"moe_num_experts"`
		MoETopK                   int            `json:"moe_top_k"`
	}
	dtype := c.TorchDtype
	if dtype == "" {
		dtype = "float32"
	}
	act := c.FFNConfig.FFNActFn
	if act == nil {
		act = map[string]any{"name": "silu"}
	}
	out := map[string]any{
		"architectures": []string{"DbrxForCausalLM"},
		"attn_config": attnOut{AttnPdrop: c.AttnConfig.AttnPdrop, ClipQKV: c.AttnConfig.ClipQKV,
			KVNHeads: c.AttnConfig.KVNHeads, RopeTheta: c.AttnConfig.RopeTheta},
		"d_model":   c.DModel,
		"emb_pdrop": c.EmbPdrop,
		"ffn_config": ffnOut{FFNActFn: act, FFNHiddenSize: c.FFNConfig.FFNHiddenSize,
			MoEJitterEps: c.FFNConfig.MoEJitterEps, MoELossWeight: c.FFNConfig.MoELossWeight,
			MoENormalizeExpertWeights: c.FFNConfig.MoENormalizeExpertWeights,
			MoENumExperts:             c.FFNConfig.MoENumExperts, MoETopK: c.FFNConfig.MoETopK},
		"initializer_range":    c.InitializerRange,
		"max_seq_len":          c.MaxSeqLen,
		"model_type":           "dbrx",
		"n_heads":              c.NHeads,
		"n_layers":             c.NLayers,
		"output_router_logits": c.OutputRouterLogits,
		"resid_pdrop":          c.ResidPdrop,
		"tie_word_embeddings":  false,
		"torch_dtype":          dtype,
		"transformers_version": "4.43.4",
		"use_cache":            c.UseCache,
		"vocab_size":           c.VocabSize,
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("dbrx config: %w", err)
	}
	return append(b, '\n'), nil
}
