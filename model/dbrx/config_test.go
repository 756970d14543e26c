package dbrx

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dbrx-engine/dbrx/model"
	"github.com/dbrx-engine/dbrx/tensor"
	"github.com/dbrx-engine/dbrx/weights"
)

func TestParseConfigDefaults(t *testing.T) {
	// Fixture B omits kv_n_heads (default 1), rope_theta and has an explicit null
	// moe_normalize_expert_weights; A omits moe_num_experts (default 4).
	a, err := LoadConfig(fixtureDir("A"))
	if err != nil {
		t.Fatal(err)
	}
	if a.FFNConfig.MoENumExperts != 4 || a.AttnConfig.RopeTheta != 10000 || *a.FFNConfig.MoENormalizeExpertWeights != 1 ||
		a.FFNConfig.MoELossWeight != 0.01 || a.FFNConfig.MoEJitterEps != nil || a.AttnConfig.KVNHeads != 2 || *a.AttnConfig.ClipQKV != 8 {
		t.Errorf("A resolved to %+v %+v", a.AttnConfig, a.FFNConfig)
	}
	b, err := LoadConfig(fixtureDir("B"))
	if err != nil {
		t.Fatal(err)
	}
	if b.AttnConfig.KVNHeads != 1 || b.FFNConfig.MoENormalizeExpertWeights != nil || b.FFNConfig.MoENumExperts != 8 || *b.AttnConfig.ClipQKV != 0.3 {
		t.Errorf("B resolved to %+v %+v", b.AttnConfig, b.FFNConfig)
	}
	c, err := LoadConfig(fixtureDir("C"))
	if err != nil {
		t.Fatal(err)
	}
	if c.AttnConfig.RopeTheta != 500000 || *c.FFNConfig.MoEJitterEps != 0.01 || c.FFNConfig.MoELossWeight != 0.05 || c.HeadDim() != 8 {
		t.Errorf("C resolved to %+v %+v", c.AttnConfig, c.FFNConfig)
	}
	d, err := LoadConfig(fixtureDir("D"))
	if err != nil {
		t.Fatal(err)
	}
	if *d.FFNConfig.MoENormalizeExpertWeights != 2 {
		t.Errorf("D moe_normalize_expert_weights = %v", *d.FFNConfig.MoENormalizeExpertWeights)
	}
	// Nothing at all: the class defaults.
	e, err := ParseConfig([]byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	if e.DModel != 2048 || e.NHeads != 16 || e.NLayers != 24 || e.FFNConfig.FFNHiddenSize != 3584 || e.FFNConfig.MoETopK != 1 {
		t.Errorf("empty config resolved to %+v", e)
	}
}

func TestParseConfigAliases(t *testing.T) {
	c, err := ParseConfig([]byte(`{"hidden_size": 128, "num_attention_heads": 8, "num_hidden_layers": 3, "max_position_embeddings": 512}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.DModel != 128 || c.NHeads != 8 || c.NLayers != 3 || c.MaxSeqLen != 512 {
		t.Errorf("aliases resolved to d=%d h=%d l=%d max=%d", c.DModel, c.NHeads, c.NLayers, c.MaxSeqLen)
	}
	if _, err := ParseConfig([]byte(`{"hidden_size": 128, "d_model": 64}`)); err == nil {
		t.Error("alias given together with its field: no error")
	}
}

func TestConfigErrors(t *testing.T) {
	base := `"d_model": 64, "n_heads": 4, "n_layers": 1, "vocab_size": 16`
	cases := []struct {
		json, field, value string
	}{
		{`{` + base + `, "attn_config": {"kv_n_heads": 3}}`, "attn_config.kv_n_heads", "3"},
		{`{"d_model": 65, "n_heads": 4}`, "d_model", "65"},
		{`{` + base + `, "d_model": 2064, "n_heads": 2}`, "d_model", "1032"},
		{`{` + base + `, "ffn_config": {"moe_top_k": 5}}`, "ffn_config.moe_top_k", "5"},
		{`{` + base + `, "ffn_config": {"moe_top_k": 0}}`, "ffn_config.moe_top_k", "0"},
		{`{` + base + `, "tie_word_embeddings": true}`, "tie_word_embeddings", "not supported"},
		{`{` + base + `, "ffn_config": {"ffn_act_fn": {"name": "gelu"}}}`, "ffn_config.ffn_act_fn", "gelu"},
		{`{` + base + `, "vocab_size": 0}`, "vocab_size", "0"},
		{`{` + base + `, "n_layers": -2}`, "n_layers", "-2"},
		{`{` + base + `, "ffn_config": {"ffn_hidden_size": 0}}`, "ffn_config.ffn_hidden_size", "0"},
		{`{` + base + `, "attn_config": {"rope_theta": -1}}`, "attn_config.rope_theta", "-1"},
		{`{` + base + `, "attn_config": {"bogus": 1}}`, "attn_config.bogus", "unknown"},
		{`{` + base + `, "ffn_config": {"moe_normalize_expert_weights": -1}}`, "moe_normalize_expert_weights", "-1"},
		{`{` + base + `, "d_model": "big"}`, "d_model", "big"},
		{`{` + base + `, "model_type": "llama"}`, "model_type", "llama"},
		{`{"d_model": 64,`, "(json)", "offset"},
		{`[1, 2]`, "(json)", ""},
	}
	for _, tc := range cases {
		c, err := ParseConfig([]byte(tc.json))
		if err == nil {
			err = c.Validate()
		}
		var ce *ConfigError
		if !errors.As(err, &ce) {
			t.Errorf("%s: got %v, want a *ConfigError", tc.json, err)
			continue
		}
		if !strings.Contains(ce.Field, tc.field) || !strings.Contains(err.Error(), tc.value) {
			t.Errorf("%s: error %q should name field %q and value %q", tc.json, err, tc.field, tc.value)
		}
	}
}

func TestLoadConfigNamesFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"tie_word_embeddings": true}`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadConfig(dir)
	if err == nil || !strings.Contains(err.Error(), "config.json") || !strings.Contains(err.Error(), "tie_word_embeddings") {
		t.Errorf("got %v", err)
	}
}

func TestConfigMarshalRoundTrip(t *testing.T) {
	for _, v := range variants {
		c, err := LoadConfig(fixtureDir(v))
		if err != nil {
			t.Fatal(err)
		}
		b, err := c.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		c2, err := ParseConfig(b)
		if err != nil {
			t.Fatal(err)
		}
		c2.EOSTokenIDs = c.EOSTokenIDs
		b2, _ := c2.Marshal()
		if string(b) != string(b2) {
			t.Errorf("%s: config changed in a round trip:\n%s\n%s", v, b, b2)
		}
	}
}

// TestBindReportsEverything removes one tensor, adds a stray one and reshapes a third,
// and expects all three in one BindError.
func TestBindReportsEverything(t *testing.T) {
	src, err := weights.OpenSafetensors(fixtureDir("A"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	cfg, err := LoadConfig(fixtureDir("A"))
	if err != nil {
		t.Fatal(err)
	}
	m := weights.Map{}
	for _, n := range src.Names() {
		tt, _ := src.Tensor(n)
		m[n] = tt
	}
	delete(m, "transformer.blocks.1.ffn.experts.mlp.v1")
	m["transformer.blocks.9.extra"] = weights.Tensor{Name: "x", DType: tensor.F32, Shape: tensor.Shape{1}, Data: make([]byte, 4)}
	w := m[NameNormF]
	w.Shape = tensor.Shape{32, 2}
	m[NameNormF] = w
	_, err = Bind(cfg, m)
	var be *model.BindError
	if !errors.As(err, &be) {
		t.Fatalf("got %v, want *model.BindError", err)
	}
	if len(be.Missing) != 1 || be.Missing[0] != "transformer.blocks.1.ffn.experts.mlp.v1" ||
		len(be.Unexpected) != 1 || be.Unexpected[0] != "transformer.blocks.9.extra" ||
		len(be.Mismatched) != 1 || !strings.Contains(be.Mismatched[0], NameNormF) {
		t.Errorf("bind error: %+v", be)
	}
	t.Log(err)
}

func TestBF16StaysBF16(t *testing.T) {
	m, err := Load(fixtureDir("C"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.LMHead.DType != tensor.BF16 || m.Blocks[0].W1.DType != tensor.BF16 {
		t.Errorf("bf16 checkpoint bound as %s/%s", m.LMHead.DType, m.Blocks[0].W1.DType)
	}
	// The bf16 LM head is packed for the panel product (the fixture logits of B
	// and C then test it); an f32 one is not.
	if p := m.lmPanels; p.Rows != m.Config.VocabSize || p.Cols != m.Config.DModel {
		t.Errorf("bf16 LM head packed as [%d, %d]", p.Rows, p.Cols)
	}
	// So are the attention projections.
	for i, b := range m.Blocks {
		if p := b.wqkvPanels; p.Rows != b.Wqkv.Rows || p.Cols != b.Wqkv.Cols {
			t.Errorf("block %d: bf16 Wqkv [%d, %d] packed as [%d, %d]", i, b.Wqkv.Rows, b.Wqkv.Cols, p.Rows, p.Cols)
		}
		if p := b.outPanels; p.Rows != b.OutProj.Rows || p.Cols != b.OutProj.Cols {
			t.Errorf("block %d: bf16 OutProj [%d, %d] packed as [%d, %d]", i, b.OutProj.Rows, b.OutProj.Cols, p.Rows, p.Cols)
		}
	}
	a, err := Load(fixtureDir("A"))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if a.lmPanels.Rows != 0 || a.Blocks[0].wqkvPanels.Rows != 0 || a.Blocks[0].outPanels.Rows != 0 {
		t.Errorf("f32 weights packed into panels")
	}
}

func TestForwardBadInput(t *testing.T) {
	m, err := Load(fixtureDir("A"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ws := NewWorkspace(nil)
	cache := m.NewKVCache(4, 4)
	for _, tc := range []struct {
		steps []Step
		want  string
	}{
		{[]Step{{Cache: cache, IDs: []int{512}}}, "outside the vocabulary"},
		{[]Step{{Cache: cache, IDs: []int{-1}}}, "outside the vocabulary"},
		{[]Step{{Cache: cache, IDs: nil}}, "no tokens"},
		{[]Step{{Cache: nil, IDs: []int{1}}}, "KV cache"},
		{[]Step{{Cache: cache, IDs: []int{1, 2, 3, 4, 5}}}, "context length"},
		{nil, "no steps"},
	} {
		_, err := m.Forward(ws, tc.steps)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v, want an error containing %q", err, tc.want)
		}
	}
	if _, err := m.Forward(ws, []Step{{Cache: cache, IDs: []int{1, 2, 3, 4}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Forward(ws, []Step{{Cache: cache, IDs: []int{1}}}); !errors.Is(err, ErrContextFull) {
		t.Errorf("full cache: got %v, want ErrContextFull", err)
	}
}
