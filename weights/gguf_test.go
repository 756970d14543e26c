package weights

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dbrx-engine/dbrx/gguf"
	"github.com/dbrx-engine/dbrx/quant"
	"github.com/dbrx-engine/dbrx/tensor"
)

func writeGGUF(t *testing.T, arch string, infos []gguf.TensorInfo) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "m.gguf")
	kvs := []gguf.KV{{Key: gguf.KeyArchitecture, Value: gguf.String(arch)}, {Key: gguf.KeyDBRXBlockCount, Value: gguf.Uint32(1)},
		{Key: gguf.KeyDBRXRopeFreqBase, Value: gguf.Float32(5e5)}}
	w, err := gguf.Create(path, kvs, infos)
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range w.Tensors() {
		data := make([]byte, in.Size)
		for i := range data {
			data[i] = byte(i)
		}
		if err := w.WriteTensor(in.Name, data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestOpenGGUF(t *testing.T) {
	path := writeGGUF(t, "dbrx", []gguf.TensorInfo{
		{Name: "token_embd.weight", Type: quant.F32, Dims: []uint64{4, 8}},
		{Name: "blk.0.attn_norm.weight", Type: quant.F32, Dims: []uint64{4}},
		{Name: "blk.0.ffn_gate_exps.weight", Type: quant.Q8_0, Dims: []uint64{32, 3, 2}},
		{Name: "blk.0.ffn_down_exps.weight", Type: quant.F16, Dims: []uint64{3, 32, 2}},
		{Name: "rope_freqs.weight", Type: quant.BF16, Dims: []uint64{2}},
	})
	if !IsGGUF(path) || IsGGUF(filepath.Dir(path)) || IsGGUF("/nonexistent") {
		t.Error("IsGGUF wrong")
	}
	g, err := OpenGGUF(path)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	want := map[string]struct {
		dt    tensor.DType
		shape tensor.Shape
		bytes int
		file  string
	}{
		"transformer.wte.weight":                            {tensor.F32, tensor.Shape{8, 4}, 128, "token_embd.weight"},
		"transformer.blocks.0.norm_attn_norm.norm_1.weight": {tensor.F32, tensor.Shape{4}, 16, "blk.0.attn_norm.weight"},
		"transformer.blocks.0.ffn.experts.mlp.w1":           {tensor.Q8_0, tensor.Shape{6, 32}, 6 * 34, "blk.0.ffn_gate_exps.weight"},
		"transformer.blocks.0.ffn.experts.mlp.w2.T":         {tensor.F16, tensor.Shape{64, 3}, 64 * 3 * 2, "blk.0.ffn_down_exps.weight"},
		"rope_freqs.weight":                                 {tensor.BF16, tensor.Shape{2}, 4, "rope_freqs.weight"},
	}
	if len(g.Names()) != len(want) {
		t.Errorf("names %v", g.Names())
	}
	for name, w := range want {
		x, ok := g.Tensor(name)
		if !ok {
			t.Errorf("no %s among %v", name, g.Names())
			continue
		}
		if x.DType != w.dt || !x.Shape.Equal(w.shape) || len(x.Data) != w.bytes || x.Name != name {
			t.Errorf("%s: %s %v %d bytes, want %s %v %d", name, x.DType, x.Shape, len(x.Data), w.dt, w.shape, w.bytes)
		}
		if f, ok := g.FileName(name); !ok || f != w.file {
			t.Errorf("FileName(%s) = %q, %v", name, f, ok)
		}
	}
	if f, ok := g.FileName("lm_head.weight"); !ok || f != "output.weight" { // absent, but mapped
		t.Errorf("FileName(lm_head.weight) = %q, %v", f, ok)
	}
	if n, err := g.MetaUint(gguf.KeyDBRXBlockCount); err != nil || n != 1 {
		t.Errorf("block count %d, %v", n, err)
	}
	if f, err := g.MetaFloat(gguf.KeyDBRXRopeFreqBase); err != nil || f != 5e5 {
		t.Errorf("rope %v, %v", f, err)
	}
	if _, err := g.MetaUint("dbrx.nope"); !errors.Is(err, ErrNoMeta) || g.HasMeta("dbrx.nope") || !g.HasMeta(gguf.KeyArchitecture) {
		t.Errorf("absent key: %v", err)
	}
	if _, err := g.MetaString(gguf.KeyDBRXBlockCount); err == nil || !strings.Contains(err.Error(), "block_count") {
		t.Errorf("wrong type: %v", err)
	}
}

func TestOpenGGUFErrors(t *testing.T) {
	for _, c := range []struct {
		arch  string
		infos []gguf.TensorInfo
		want  string
	}{
		{"llama", nil, `architecture "llama" is not supported`},
		{"dbrx", []gguf.TensorInfo{{Name: "output.weight", Type: quant.Q4_1, Dims: []uint64{32, 2}},
			{Name: "token_embd.weight", Type: quant.IQ4_NL, Dims: []uint64{32, 2}}}, "output.weight (q4_1), token_embd.weight (iq4_nl)"},
	} {
		_, err := OpenGGUF(writeGGUF(t, c.arch, c.infos))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("err %v, want %q", err, c.want)
		}
	}
	bad := filepath.Join(t.TempDir(), "x.gguf")
	if err := os.WriteFile(bad, []byte("GGUF\x03\x00"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenGGUF(bad); err == nil || !strings.HasPrefix(err.Error(), "weights: gguf: ") {
		t.Errorf("truncated: %v", err)
	}
}
