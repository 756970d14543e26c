package safetensors

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"unsafe"

	"github.com/dbrx-engine/dbrx/tensor"
)

const fixtures = "../testdata/dbrx"

// dbrxConfig is the part of a fixture's config.json that determines tensor shapes.
type dbrxConfig struct {
	DModel     int `json:"d_model"`
	NHeads     int `json:"n_heads"`
	NLayers    int `json:"n_layers"`
	Vocab      int `json:"vocab_size"`
	AttnConfig struct {
		KVNHeads int `json:"kv_n_heads"`
	} `json:"attn_config"`
	FFNConfig struct {
		Hidden  int `json:"ffn_hidden_size"`
		Experts int `json:"moe_num_experts"`
	} `json:"ffn_config"`
}

// expectedShapes lists every tensor of a DBRX checkpoint with its shape (fixture README).
func expectedShapes(t *testing.T, variant string) map[string]tensor.Shape {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixtures, variant, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var c dbrxConfig
	c.AttnConfig.KVNHeads, c.FFNConfig.Experts = 1, 4 // DbrxConfig defaults, omitted from config.json
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	d, hd := c.DModel, c.DModel/c.NHeads
	ef := c.FFNConfig.Experts * c.FFNConfig.Hidden
	m := map[string]tensor.Shape{
		"transformer.wte.weight":    {c.Vocab, d},
		"transformer.norm_f.weight": {d},
		"lm_head.weight":            {c.Vocab, d},
	}
	for i := range c.NLayers {
		p := fmt.Sprintf("transformer.blocks.%d.", i)
		m[p+"norm_attn_norm.norm_1.weight"] = tensor.Shape{d}
		m[p+"norm_attn_norm.attn.Wqkv.weight"] = tensor.Shape{d + 2*c.AttnConfig.KVNHeads*hd, d}
		m[p+"norm_attn_norm.attn.out_proj.weight"] = tensor.Shape{d, d}
		m[p+"norm_attn_norm.norm_2.weight"] = tensor.Shape{d}
		m[p+"ffn.router.layer.weight"] = tensor.Shape{c.FFNConfig.Experts, d}
		m[p+"ffn.experts.mlp.w1"] = tensor.Shape{ef, d}
		m[p+"ffn.experts.mlp.v1"] = tensor.Shape{ef, d}
		m[p+"ffn.experts.mlp.w2"] = tensor.Shape{ef, d}
	}
	return m
}

func TestFixtureCheckpoints(t *testing.T) {
	cases := []struct {
		variant string
		dtype   tensor.DType
		files   []string
	}{
		{"A", tensor.F32, []string{"model.safetensors"}},
		{"B", tensor.BF16, []string{"model.safetensors"}},
		{"C", tensor.BF16, []string{"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"}},
		{"D", tensor.F32, []string{"model.safetensors"}},
	}
	for _, tc := range cases {
		t.Run("variant="+tc.variant, func(t *testing.T) {
			dir := filepath.Join(fixtures, tc.variant)
			c, err := OpenDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			var wantFiles []string
			for _, f := range tc.files {
				wantFiles = append(wantFiles, filepath.Join(dir, f))
			}
			if got := c.Files(); !slices.Equal(got, wantFiles) {
				t.Errorf("Files = %v, want %v", got, wantFiles)
			}
			want := expectedShapes(t, tc.variant)
			names := c.Names()
			if !slices.IsSorted(names) {
				t.Error("Names not sorted")
			}
			if len(names) != len(want) {
				t.Errorf("%d tensors, want %d", len(names), len(want))
			}
			var total int64
			for _, n := range names {
				ws, ok := want[n]
				if !ok {
					t.Errorf("unexpected tensor %q", n)
					continue
				}
				tt, ok := c.Tensor(n)
				if !ok {
					t.Fatalf("Tensor(%q) missing", n)
				}
				info, _ := c.Info(n)
				if tt.DType != tc.dtype || !tt.Shape.Equal(ws) || info.DType != tc.dtype || !info.Shape.Equal(ws) {
					t.Errorf("%s: %s %v, want %s %v", n, tt.DType, tt.Shape, tc.dtype, ws)
				}
				if int64(len(tt.Data)) != ws.NumElements()*int64(tc.dtype.Size()) || info.Size() != int64(len(tt.Data)) {
					t.Errorf("%s: %d bytes", n, len(tt.Data))
				}
				if len(tt.Data) > 0 && uintptr(unsafe.Pointer(&tt.Data[0]))%uintptr(tc.dtype.Size()) != 0 {
					t.Errorf("%s: data not %d-byte aligned", n, tc.dtype.Size())
				}
				total += int64(len(tt.Data))
			}
			if got := c.TotalSize(); got != total {
				t.Errorf("TotalSize = %d, want %d", got, total)
			}
			for _, f := range c.Shards() {
				if md := f.Metadata(); md["format"] != "pt" {
					t.Errorf("%s: metadata %v, want format=pt", f.Path(), md)
				}
				if f.DataOffset()%8 != 0 {
					t.Errorf("%s: data section at %d, not 8-byte aligned", f.Path(), f.DataOffset())
				}
			}
			if tc.variant == "C" {
				b, err := os.ReadFile(filepath.Join(dir, IndexFileName))
				if err != nil {
					t.Fatal(err)
				}
				var idx Index
				if err := json.Unmarshal(b, &idx); err != nil {
					t.Fatal(err)
				}
				if idx.Metadata.TotalSize != total {
					t.Errorf("index total_size %d, summed tensor bytes %d", idx.Metadata.TotalSize, total)
				}
				if f, _ := c.FileOf("lm_head.weight"); filepath.Base(f) != tc.files[1] {
					t.Errorf("lm_head.weight in %s", f)
				}
			}
		})
	}
}

func TestFixtureSpotValues(t *testing.T) {
	f, err := Open(filepath.Join(fixtures, "A", "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w1, ok := f.Tensor("transformer.blocks.0.ffn.experts.mlp.w1")
	if !ok || w1.DType != tensor.F32 || !w1.Shape.Equal(tensor.Shape{384, 64}) {
		t.Fatalf("w1 = %v %v %v", ok, w1.DType, w1.Shape)
	}
	// Zero copy: the view points into the mapping at data start + Begin.
	info, _ := f.Info(w1.Name)
	region := f.Region().Data()
	if &w1.Data[0] != &region[f.DataOffset()+info.Begin] {
		t.Error("Tensor data is not a view of the mapping")
	}
	if cap(w1.Data) != len(w1.Data) {
		t.Error("Tensor data capacity reaches past the tensor")
	}
	// Norms are 1 + 0.1·N(0,1): all values near 1.
	n1, _ := f.Tensor("transformer.blocks.0.norm_attn_norm.norm_1.weight")
	for i, v := range tensor.Float32s(n1.Data) {
		if v < 0.3 || v > 1.7 {
			t.Errorf("norm_1[%d] = %v, implausible", i, v)
		}
	}
	// Tensors are sorted by position and contiguous, as the README promises.
	ts := f.Tensors()
	var end int64
	for _, ti := range ts {
		if ti.Begin != end {
			t.Errorf("%s begins at %d, previous ended at %d", ti.Name, ti.Begin, end)
		}
		end = ti.End
	}
	if f.DataOffset()+end != f.Size() {
		t.Errorf("data ends at %d, file is %d bytes", f.DataOffset()+end, f.Size())
	}
	if _, ok := f.Tensor("nope"); ok {
		t.Error("Tensor(nope) found")
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, ok := f.Tensor(w1.Name); ok {
		t.Error("Tensor after Close returned data")
	}
}

func TestFixtureBF16StaysBF16(t *testing.T) {
	f, err := Open(filepath.Join(fixtures, "B", "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tt, _ := f.Tensor("transformer.blocks.0.norm_attn_norm.norm_1.weight")
	if tt.DType != tensor.BF16 || len(tt.Data) != 64*2 {
		t.Fatalf("norm_1: %s, %d bytes", tt.DType, len(tt.Data))
	}
	for i, h := range tensor.Uint16s(tt.Data) {
		if v := tensor.BF16ToF32(h); v < 0.3 || v > 1.7 {
			t.Errorf("norm_1[%d] = %v, implausible", i, v)
		}
	}
}

func TestFixtureGrads(t *testing.T) {
	for _, v := range []string{"A", "B", "D"} {
		p := filepath.Join(fixtures, v, "grads.safetensors")
		c, err := OpenDir(p)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if len(c.Names()) == 0 || len(c.Files()) != 1 || c.Files()[0] != p {
			t.Errorf("%s: %d tensors, files %v", p, len(c.Names()), c.Files())
		}
		if md := c.Shards()[0].Metadata(); md["format"] != "pt" {
			t.Errorf("%s: metadata %v", p, md)
		}
		c.Close()
	}
}
