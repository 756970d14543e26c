package dbrx

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dbrx-engine/dbrx/gguf"
	"github.com/dbrx-engine/dbrx/model"
	"github.com/dbrx-engine/dbrx/quant"
	"github.com/dbrx-engine/dbrx/tensor"
	"github.com/dbrx-engine/dbrx/weights"
)

// ggufFixture is an F32 GGUF rendering of a fixture, editable before writing.
type ggufFixture struct {
	kvs   []gguf.KV
	infos []gguf.TensorInfo
	data  map[string][]byte
}

// newGGUFFixture renders fixture v as llama.cpp lays DBRX out (names, dims, the
// permuted ffn_down_exps, dbrx.* metadata), all tensors F32, no tokenizer.
func newGGUFFixture(t *testing.T, v string) *ggufFixture {
	t.Helper()
	c, err := LoadConfig(fixtureDir(v))
	if err != nil {
		t.Fatal(err)
	}
	gc := gguf.DBRXConfig{Layers: c.NLayers, ContextLength: c.MaxSeqLen, Dim: c.DModel, FFN: c.FFNConfig.FFNHiddenSize,
		Heads: c.NHeads, KVHeads: c.AttnConfig.KVNHeads, Experts: c.FFNConfig.MoENumExperts, ExpertsUsed: c.FFNConfig.MoETopK,
		Vocab: c.VocabSize, RopeTheta: float32(c.AttnConfig.RopeTheta), NormEps: 1e-5}
	if c.AttnConfig.ClipQKV != nil {
		gc.ClampQKV = float32(*c.AttnConfig.ClipQKV)
	}
	kvs, err := gguf.DBRXMetadata(gc)
	if err != nil {
		t.Fatal(err)
	}
	switch p := c.FFNConfig.MoENormalizeExpertWeights; {
	case p == nil:
		kvs = append(kvs, gguf.KV{Key: GGUFKeyExpertWeightsNorm, Value: gguf.Bool(false)})
	case *p != 1:
		kvs = append(kvs, gguf.KV{Key: GGUFKeyExpertWeightsNormP, Value: gguf.Float32(float32(*p))})
	}
	plan, err := gguf.DBRXTensors(gc)
	if err != nil {
		t.Fatal(err)
	}
	src, err := weights.OpenSafetensors(fixtureDir(v))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	g := &ggufFixture{kvs: kvs, data: map[string][]byte{}}
	for _, p := range plan {
		s, _ := src.Tensor(p.HF)
		vals := make([]float32, s.Shape.NumElements())
		if err := tensor.ToFloat32(vals, s.DType, s.Data); err != nil {
			t.Fatal(err)
		}
		b := append([]byte(nil), tensor.Float32Bytes(vals)...)
		if p.PermuteDown {
			out := make([]byte, len(b))
			if err := gguf.DBRXPermuteDown(out, b, 4, gc.Experts, gc.FFN, gc.Dim); err != nil {
				t.Fatal(err)
			}
			b = out
		}
		g.infos = append(g.infos, gguf.TensorInfo{Name: p.GGUF, Type: quant.F32, Dims: p.Dims})
		g.data[p.GGUF] = b
	}
	return g
}

func (g *ggufFixture) setKV(key string, v gguf.Value) {
	for i := range g.kvs {
		if g.kvs[i].Key == key {
			g.kvs[i].Value = v
			return
		}
	}
	g.kvs = append(g.kvs, gguf.KV{Key: key, Value: v})
}

func (g *ggufFixture) dropKV(key string) {
	for i := range g.kvs {
		if g.kvs[i].Key == key {
			g.kvs = append(g.kvs[:i], g.kvs[i+1:]...)
			return
		}
	}
}

func (g *ggufFixture) dropTensor(name string) {
	for i := range g.infos {
		if g.infos[i].Name == name {
			g.infos = append(g.infos[:i], g.infos[i+1:]...)
			return
		}
	}
}

func (g *ggufFixture) write(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "model.gguf")
	w, err := gguf.Create(path, g.kvs, g.infos)
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range g.infos {
		if err := w.WriteTensor(in.Name, g.data[in.Name]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestLoadGGUFFixtures: every fixture as an F32 GGUF (llama.cpp layout) loads with
// the config of its config.json and reproduces the reference logits.
func TestLoadGGUFFixtures(t *testing.T) {
	for _, v := range variants {
		t.Run(v, func(t *testing.T) {
			path := newGGUFFixture(t, v).write(t)
			m, err := Load(path)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			want, err := LoadConfig(fixtureDir(v))
			if err != nil {
				t.Fatal(err)
			}
			got := m.Config
			eq := func(a, b *float64) bool { return (a == nil) == (b == nil) && (a == nil || float32(*a) == float32(*b)) }
			if got.DModel != want.DModel || got.NHeads != want.NHeads || got.NLayers != want.NLayers || got.VocabSize != want.VocabSize ||
				got.MaxSeqLen != want.MaxSeqLen || got.AttnConfig.KVNHeads != want.AttnConfig.KVNHeads ||
				float32(got.AttnConfig.RopeTheta) != float32(want.AttnConfig.RopeTheta) || !eq(got.AttnConfig.ClipQKV, want.AttnConfig.ClipQKV) ||
				got.FFNConfig.FFNHiddenSize != want.FFNConfig.FFNHiddenSize || got.FFNConfig.MoENumExperts != want.FFNConfig.MoENumExperts ||
				got.FFNConfig.MoETopK != want.FFNConfig.MoETopK || !eq(got.FFNConfig.MoENormalizeExpertWeights, want.FFNConfig.MoENormalizeExpertWeights) {
				t.Errorf("config from GGUF %+v\nwant %+v", got, want)
			}
			_, fc := loadFixture(t, v)
			ws := NewWorkspace(nil)
			for _, cs := range fc.Cases {
				if cs.Logits == nil {
					continue
				}
				checkClose(t, cs.Name, fullLogits(t, m, ws, cs.InputIDs[0]), readF32(t, v, *cs.Logits), logitTol)
			}
		})
	}
}

// TestLoadGGUFErrors: broken GGUF files fail with messages that say what is wrong.
func TestLoadGGUFErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		edit func(g *ggufFixture)
		want []string
	}{
		{"wrong arch", func(g *ggufFixture) { g.setKV(gguf.KeyArchitecture, gguf.String("llama")) },
			[]string{`architecture "llama" is not supported`}},
		{"missing tensor", func(g *ggufFixture) { g.dropTensor("blk.1.ffn_up_exps.weight") },
			[]string{"1 missing tensors", "transformer.blocks.1.ffn.experts.mlp.v1 (GGUF blk.1.ffn_up_exps.weight)"}},
		{"missing down", func(g *ggufFixture) { g.dropTensor("blk.0.ffn_down_exps.weight") },
			[]string{"missing", "mlp.w2 (GGUF blk.0.ffn_down_exps.weight)"}},
		{"wrong shape", func(g *ggufFixture) {
			for i := range g.infos {
				if g.infos[i].Name == "blk.0.attn_qkv.weight" {
					g.infos[i].Dims = []uint64{64, 96}
					g.data["blk.0.attn_qkv.weight"] = g.data["blk.0.attn_qkv.weight"][:64*96*4]
				}
			}
		}, []string{"mismatched", "Wqkv.weight (GGUF blk.0.attn_qkv.weight): shape [96 64], want [128 64]"}},
		{"extra tensor", func(g *ggufFixture) {
			g.infos = append(g.infos, gguf.TensorInfo{Name: "rope_freqs.weight", Type: quant.F32, Dims: []uint64{8}})
			g.data["rope_freqs.weight"] = make([]byte, 32)
		}, []string{"unexpected", "rope_freqs.weight"}},
		{"unsupported type", func(g *ggufFixture) {
			for i := range g.infos {
				if g.infos[i].Name == "output.weight" {
					g.infos[i].Type = quant.Q4_1
					g.data["output.weight"] = make([]byte, 512*2*20)
				}
			}
		}, []string{"output.weight (q4_1)", "cannot compute with"}},
		{"missing key", func(g *ggufFixture) { g.dropKV(gguf.KeyDBRXBlockCount) },
			[]string{`"dbrx.block_count"`, "not found"}},
		{"wrong key type", func(g *ggufFixture) { g.setKV(gguf.KeyDBRXExpertCount, gguf.String("four")) },
			[]string{`"dbrx.expert_count"`, "wrong value type"}},
		{"bad eps", func(g *ggufFixture) { g.setKV(gguf.KeyDBRXLayerNormEps, gguf.Float32(1e-6)) },
			[]string{"layer_norm_epsilon", "not supported"}},
		{"bad config", func(g *ggufFixture) { g.setKV(gguf.KeyDBRXExpertUsedCount, gguf.Uint32(9)) },
			[]string{"moe_top_k", "9 must be in [1, moe_num_experts=4]"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := newGGUFFixture(t, "A")
			c.edit(g)
			path := g.write(t)
			_, err := Load(path)
			if err == nil {
				t.Fatal("loaded")
			}
			t.Logf("%v", err)
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
	// A truncated file is reported by the GGUF reader (not mistaken for a directory).
	path := newGGUFFixture(t, "A").write(t)
	b, _ := os.ReadFile(path)
	if err := os.WriteFile(path, b[:len(b)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "gguf:") {
		t.Errorf("truncated: %v", err)
	}
	var be *model.BindError
	g := newGGUFFixture(t, "A")
	g.dropTensor("output.weight")
	if _, err := Load(g.write(t)); !errors.As(err, &be) || len(be.Missing) != 1 {
		t.Errorf("missing output.weight: %v is not a *model.BindError with one missing tensor", err)
	}
}

// TestGGUFKeys: the metadata keys this package spells out are package gguf's.
func TestGGUFKeys(t *testing.T) {
	for _, p := range [][2]string{
		{ggufBlockCount, gguf.KeyDBRXBlockCount}, {ggufContextLength, gguf.KeyDBRXContextLength},
		{ggufEmbedding, gguf.KeyDBRXEmbeddingLength}, {ggufFeedForward, gguf.KeyDBRXFeedForward},
		{ggufHeadCount, gguf.KeyDBRXHeadCount}, {ggufHeadCountKV, gguf.KeyDBRXHeadCountKV},
		{ggufRopeFreqBase, gguf.KeyDBRXRopeFreqBase}, {ggufClampKQV, gguf.KeyDBRXClampKQV},
		{ggufExpertCount, gguf.KeyDBRXExpertCount}, {ggufExpertUsed, gguf.KeyDBRXExpertUsedCount},
		{ggufLayerNormEps, gguf.KeyDBRXLayerNormEps}, {ggufEOS, gguf.KeyTokenizerEOS},
	} {
		if p[0] != p[1] {
			t.Errorf("key %q != gguf's %q", p[0], p[1])
		}
	}
}
