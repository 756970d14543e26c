package gguf

import (
	"encoding/binary"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dbrx-engine/dbrx/quant"
)

func tinyDBRX() DBRXConfig {
	return DBRXConfig{Layers: 2, ContextLength: 64, Dim: 64, FFN: 32, Heads: 4, KVHeads: 2,
		Experts: 4, ExpertsUsed: 2, Vocab: 40, RopeTheta: 500000, ClampQKV: 8, NormEps: 1e-5}
}

// TestDBRXReleasedDims checks the GGUF dims against the table of spec section 8.
func TestDBRXReleasedDims(t *testing.T) {
	ts, err := DBRXTensors(DBRXReleased())
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 3+8*40 {
		t.Fatalf("%d tensors", len(ts))
	}
	want := map[string][]uint64{
		"token_embd.weight":             {6144, 100352},
		"output_norm.weight":            {6144},
		"output.weight":                 {6144, 100352},
		"blk.7.attn_norm.weight":        {6144},
		"blk.7.attn_qkv.weight":         {6144, 8192},
		"blk.7.attn_output.weight":      {6144, 6144},
		"blk.7.attn_output_norm.weight": {6144},
		"blk.7.ffn_gate_inp.weight":     {6144, 16},
		"blk.7.ffn_gate_exps.weight":    {6144, 10752, 16},
		"blk.7.ffn_up_exps.weight":      {6144, 10752, 16},
		"blk.39.ffn_down_exps.weight":   {10752, 6144, 16},
	}
	found := 0
	var params uint64
	for _, x := range ts {
		if w, ok := want[x.GGUF]; ok {
			found++
			if !equalU64(w, x.Dims) {
				t.Errorf("%s: dims %v, want %v", x.GGUF, x.Dims, w)
			}
		}
		n := uint64(1)
		for _, d := range x.Dims {
			n *= d
		}
		hn := uint64(1)
		for _, d := range x.HFShape {
			hn *= uint64(d)
		}
		if n != hn {
			t.Errorf("%s: %d elements in GGUF, %d in HF", x.GGUF, n, hn)
		}
		params += n
		if x.Quantizable() != (len(x.Dims) > 1) || x.PermuteDown != strings.HasSuffix(x.GGUF, "ffn_down_exps.weight") {
			t.Errorf("%s: flags", x.GGUF)
		}
	}
	if found != len(want) {
		t.Errorf("found %d of %d expected tensors", found, len(want))
	}
	if params != 131596523520 { // spec section 2: total parameter count
		t.Errorf("%d parameters, want 131596523520", params)
	}
}

func TestDBRXNames(t *testing.T) {
	ts, err := DBRXTensors(DBRXReleased())
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range ts {
		if g, ok := DBRXGGUFName(x.HF); !ok || g != x.GGUF {
			t.Errorf("DBRXGGUFName(%q) = %q, %v; want %q", x.HF, g, ok, x.GGUF)
		}
		if h, ok := DBRXHFName(x.GGUF); !ok || h != x.HF {
			t.Errorf("DBRXHFName(%q) = %q, %v; want %q", x.GGUF, h, ok, x.HF)
		}
	}
	for hf, gg := range map[string]string{
		"transformer.blocks.0.ffn.experts.mlp.w2":                  "blk.0.ffn_down_exps.weight",
		"transformer.blocks.12.norm_attn_norm.norm_2.weight":       "blk.12.attn_output_norm.weight",
		"transformer.blocks.3.ffn.router.layer.weight":             "blk.3.ffn_gate_inp.weight",
		"transformer.blocks.39.norm_attn_norm.attn.Wqkv.weight":    "blk.39.attn_qkv.weight",
		"transformer.blocks.1.norm_attn_norm.attn.out_proj.weight": "blk.1.attn_output.weight",
	} {
		if g, ok := DBRXGGUFName(hf); !ok || g != gg {
			t.Errorf("DBRXGGUFName(%q) = %q", hf, g)
		}
	}
	for _, bad := range []string{
		"", "transformer.blocks.01.ffn.experts.mlp.w1", "transformer.blocks.x.ffn.experts.mlp.w1",
		"transformer.blocks.1.ffn.experts.mlp.w1.weight", "transformer.blocks..ffn.experts.mlp.w1",
		"transformer.blocks.1", "blk.1.ffn_norm.weight", "blk.-1.attn_norm.weight", "token_embd",
		"model.embed_tokens.weight", "blk.1.attn_norm.weight",
	} {
		if g, ok := DBRXGGUFName(bad); ok {
			t.Errorf("DBRXGGUFName(%q) = %q", bad, g)
		}
	}
	for _, bad := range []string{"blk.1.ffn_norm.weight", "blk.01.attn_norm.weight", "transformer.wte.weight", "blk.1.attn_norm"} {
		if h, ok := DBRXHFName(bad); ok {
			t.Errorf("DBRXHFName(%q) = %q", bad, h)
		}
	}
}

func TestDBRXConfigValidate(t *testing.T) {
	if err := DBRXReleased().Validate(); err != nil {
		t.Fatal(err)
	}
	if q := DBRXReleased().QKVDim(); q != 8192 {
		t.Errorf("QKVDim = %d", q)
	}
	for _, mut := range []func(c *DBRXConfig){
		func(c *DBRXConfig) { c.Layers = 0 },
		func(c *DBRXConfig) { c.Heads = 5 },
		func(c *DBRXConfig) { c.KVHeads = 5 },
		func(c *DBRXConfig) { c.ExpertsUsed = 17 },
		func(c *DBRXConfig) { c.NormEps = 0 },
	} {
		c := DBRXReleased()
		mut(&c)
		if c.Validate() == nil {
			t.Errorf("invalid config %+v accepted", c)
		}
		if _, err := DBRXTensors(c); err == nil {
			t.Error("DBRXTensors accepted an invalid config")
		}
	}
}

// TestDBRXFile converts a tiny random HF DBRX state dict (float32) to GGUF the way
// a converter would, reads it back and checks names, config and the w2 permute.
func TestDBRXFile(t *testing.T) {
	c := tinyDBRX()
	ts, err := DBRXTensors(c)
	if err != nil {
		t.Fatal(err)
	}
	meta, err := DBRXMetadata(c)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := DBRXTokenizerMetadata(DBRXVocab{Tokens: tinyVocab(c.Vocab), BOS: 0, EOS: 0, UNK: -1, PAD: 1})
	if err != nil {
		t.Fatal(err)
	}
	meta = append(meta, tok...)
	hf := map[string][]float32{}
	var infos []TensorInfo
	var datas [][]byte
	seed := uint32(5)
	for _, x := range ts {
		n := 1
		for _, d := range x.HFShape {
			n *= d
		}
		v := make([]float32, n)
		for i := range v {
			seed = seed*1664525 + 1013904223
			v[i] = float32(int32(seed)) / (1 << 31)
		}
		hf[x.HF] = v
		raw := make([]byte, 4*n)
		for i, f := range v {
			binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(f))
		}
		if x.PermuteDown {
			p := make([]byte, len(raw))
			if err := DBRXPermuteDown(p, raw, 4, c.Experts, c.FFN, c.Dim); err != nil {
				t.Fatal(err)
			}
			raw = p
		}
		typ := quant.F32
		if x.Quantizable() {
			typ = quant.Q8_0
			q := make([]byte, mustRowBytes(t, typ, n))
			f := make([]float32, n)
			for i := range f {
				f[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
			}
			if err := quant.Quantize(typ, q, f); err != nil {
				t.Fatal(err)
			}
			raw = q
		}
		infos = append(infos, TensorInfo{Name: x.GGUF, Type: typ, Dims: x.Dims})
		datas = append(datas, raw)
	}
	path := filepath.Join(t.TempDir(), "dbrx.gguf")
	w, err := Create(path, meta, infos)
	if err != nil {
		t.Fatal(err)
	}
	for i, in := range infos {
		if err := w.WriteTensor(in.Name, datas[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := DBRXConfigFromFile(f)
	if err != nil {
		t.Fatal(err)
	}
	if got != c {
		t.Errorf("config %+v, want %+v", got, c)
	}
	if s, _ := f.GetString(KeyTokenizerPre); s != "dbrx" {
		t.Errorf("pre = %q", s)
	}
	if clamp, _ := f.GetFloat32(KeyDBRXClampKQV); clamp != 8 {
		t.Errorf("clamp_kqv = %g", clamp)
	}
	// ffn_down_exps element (e, d, f) — ne {F, D, E}, index f + F*(d + D*e) — is HF
	// w2 row e*F+f, column d, up to Q8_0 rounding.
	down, info, ok := f.TensorData("blk.1.ffn_down_exps.weight")
	if !ok || info.Type != quant.Q8_0 {
		t.Fatal("no ffn_down_exps")
	}
	deq := make([]float32, info.NumElements())
	if err := quant.Dequantize(info.Type, deq, down); err != nil {
		t.Fatal(err)
	}
	w2 := hf["transformer.blocks.1.ffn.experts.mlp.w2"]
	for e := 0; e < c.Experts; e++ {
		for d := 0; d < c.Dim; d++ {
			for ff := 0; ff < c.FFN; ff++ {
				g := deq[ff+c.FFN*(d+c.Dim*e)]
				h := w2[(e*c.FFN+ff)*c.Dim+d]
				if math.Abs(float64(g-h)) > 0.01 {
					t.Fatalf("down[e=%d][d=%d][f=%d] = %g, HF w2 = %g", e, d, ff, g, h)
				}
			}
		}
	}
	for _, ti := range f.Tensors() {
		if _, ok := DBRXHFName(ti.Name); !ok {
			t.Errorf("tensor %q has no HF name", ti.Name)
		}
	}
	norm, _, _ := f.TensorData("blk.0.attn_output_norm.weight")
	if math.Float32frombits(binary.LittleEndian.Uint32(norm)) != hf["transformer.blocks.0.norm_attn_norm.norm_2.weight"][0] {
		t.Error("F32 norm data differs")
	}
}

func mustRowBytes(t testing.TB, ty quant.Type, n int) int {
	t.Helper()
	b, err := ty.RowBytes(int64(n))
	if err != nil {
		t.Fatal(err)
	}
	return int(b)
}

func tinyVocab(n int) [][]byte {
	toks := make([][]byte, n)
	for i := range toks {
		if i%7 != 3 { // every 7th id from 3 is missing → [PAD{id}]
			toks[i] = []byte{byte(i), ' ', byte('a' + i%26)}
		}
	}
	return toks
}

func TestDBRXPermuteDown(t *testing.T) {
	const E, F, D = 2, 3, 4
	src := make([]byte, 2*E*F*D)
	for i := 0; i < E*F*D; i++ {
		binary.LittleEndian.PutUint16(src[2*i:], uint16(i))
	}
	dst := make([]byte, len(src))
	if err := DBRXPermuteDown(dst, src, 2, E, F, D); err != nil {
		t.Fatal(err)
	}
	for e := 0; e < E; e++ {
		for f := 0; f < F; f++ {
			for d := 0; d < D; d++ {
				got := binary.LittleEndian.Uint16(dst[2*((e*D+d)*F+f):])
				if want := uint16((e*F+f)*D + d); got != want {
					t.Fatalf("[%d][%d][%d] = %d, want %d", e, d, f, got, want)
				}
			}
		}
	}
	if err := DBRXPermuteDown(dst[1:], src, 2, E, F, D); err == nil {
		t.Error("short dst accepted")
	}
}

func TestByteLevel(t *testing.T) {
	for in, want := range map[string]string{
		" the": "Ġthe", "\n": "Ċ", "\t": "ĉ", "hello": "hello", "\x00": "Ā", "\x7f": "ġ", "\xad": "Ń",
		"é": "Ã©", "<|im_end|>": "<|im_end|>",
	} {
		if got := ByteLevelEncode([]byte(in)); got != want {
			t.Errorf("ByteLevelEncode(%q) = %q, want %q", in, got, want)
		}
	}
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	s := ByteLevelEncode(all)
	seen := map[rune]bool{}
	for _, r := range s {
		if seen[r] || r > 0x143 {
			t.Fatalf("rune %U repeated or out of range", r)
		}
		seen[r] = true
	}
	back, ok := ByteLevelDecode(s)
	if !ok || string(back) != string(all) {
		t.Fatal("ByteLevelDecode does not invert ByteLevelEncode")
	}
	if _, ok := ByteLevelDecode("Ő"); ok {
		t.Error("decoded a rune outside the alphabet")
	}
}

func TestDBRXTokenizer(t *testing.T) {
	v := DBRXVocab{
		Tokens: [][]byte{[]byte("a"), []byte(" the"), nil, []byte("<|im_start|>"), {0xff, 0x0a}},
		Types:  []int32{TokenNormal, TokenNormal, TokenNormal, TokenControl, TokenNormal},
		Merges: [][2][]byte{{[]byte(" "), []byte("t")}, {[]byte("h"), []byte("e")}},
		BOS:    0, EOS: 3, UNK: -1, PAD: 2,
	}
	kvs, err := DBRXTokenizerMetadata(v)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Value{}
	for _, kv := range kvs {
		got[kv.Key] = kv.Value
	}
	toks, _ := ArrayAs[string](mustArray(t, got[KeyTokenizerTokens]))
	if strings.Join(toks, "|") != "a|Ġthe|[PAD2]|<|im_start|>|ÿĊ" {
		t.Errorf("tokens %q", toks)
	}
	types, _ := ArrayAs[int32](mustArray(t, got[KeyTokenizerTokenType]))
	if len(types) != 5 || types[2] != TokenUnused || types[3] != TokenControl || types[0] != TokenNormal {
		t.Errorf("types %v", types)
	}
	merges, _ := ArrayAs[string](mustArray(t, got[KeyTokenizerMerges]))
	if strings.Join(merges, ",") != "Ġ t,h e" {
		t.Errorf("merges %q", merges)
	}
	if s, _ := got[KeyTokenizerModel].AsString(); s != "gpt2" {
		t.Errorf("model %q", s)
	}
	if id, _ := got[KeyTokenizerEOS].AsUint64(); id != 3 {
		t.Errorf("eos %d", id)
	}
	if _, ok := got[KeyTokenizerUNK]; ok {
		t.Error("negative UNK written")
	}
	for _, bad := range []DBRXVocab{
		{},
		{Tokens: v.Tokens, Types: []int32{1}},
		{Tokens: v.Tokens, BOS: 9, UNK: -1, EOS: -1, PAD: -1},
		{Tokens: [][]byte{{0xff}}, Types: []int32{TokenControl}},
		{Tokens: v.Tokens, Types: []int32{1, 1, 1, 9, 1}},
		{Tokens: v.Tokens, Merges: [][2][]byte{{nil, []byte("x")}}},
	} {
		if _, err := DBRXTokenizerMetadata(bad); err == nil {
			t.Errorf("accepted %+v", bad)
		}
	}
}

func mustArray(t *testing.T, v Value) Array {
	t.Helper()
	a, ok := v.AsArray()
	if !ok {
		t.Fatalf("%v is not an array", v)
	}
	return a
}
