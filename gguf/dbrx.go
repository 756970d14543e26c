package gguf

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// DBRXArch is the general.architecture string of DBRX GGUF files (LLM_ARCH_DBRX).
const DBRXArch = "dbrx"

// DBRX metadata keys, as written by llama.cpp's convert_hf_to_gguf.py for DBRX.
const (
	KeyArchitecture        = "general.architecture"
	KeyName                = "general.name"
	KeyFileType            = "general.file_type"
	KeyQuantizationVersion = "general.quantization_version"

	KeyDBRXBlockCount      = "dbrx.block_count"                  // uint32: n_layers
	KeyDBRXContextLength   = "dbrx.context_length"               // uint32: max_seq_len
	KeyDBRXEmbeddingLength = "dbrx.embedding_length"             // uint32: d_model
	KeyDBRXFeedForward     = "dbrx.feed_forward_length"          // uint32: ffn_hidden_size (per expert)
	KeyDBRXHeadCount       = "dbrx.attention.head_count"         // uint32: n_heads
	KeyDBRXHeadCountKV     = "dbrx.attention.head_count_kv"      // uint32: kv_n_heads
	KeyDBRXRopeFreqBase    = "dbrx.rope.freq_base"               // float32: rope_theta
	KeyDBRXClampKQV        = "dbrx.attention.clamp_kqv"          // float32: clip_qkv (required by llama.cpp)
	KeyDBRXExpertCount     = "dbrx.expert_count"                 // uint32: moe_num_experts
	KeyDBRXExpertUsedCount = "dbrx.expert_used_count"            // uint32: moe_top_k
	KeyDBRXLayerNormEps    = "dbrx.attention.layer_norm_epsilon" // float32: 1e-5 (hard-coded by the converter)

	KeyTokenizerModel     = "tokenizer.ggml.model"            // "gpt2" for DBRX
	KeyTokenizerPre       = "tokenizer.ggml.pre"              // "dbrx"
	KeyTokenizerTokens    = "tokenizer.ggml.tokens"           // []string
	KeyTokenizerTokenType = "tokenizer.ggml.token_type"       // []int32, Token* constants
	KeyTokenizerMerges    = "tokenizer.ggml.merges"           // []string "left right"
	KeyTokenizerBOS       = "tokenizer.ggml.bos_token_id"     // uint32
	KeyTokenizerEOS       = "tokenizer.ggml.eos_token_id"     // uint32
	KeyTokenizerUNK       = "tokenizer.ggml.unknown_token_id" // uint32
	KeyTokenizerPAD       = "tokenizer.ggml.padding_token_id" // uint32
	KeyTokenizerAddBOS    = "tokenizer.ggml.add_bos_token"    // bool
	KeyTokenizerAddEOS    = "tokenizer.ggml.add_eos_token"    // bool
)

// Token types of tokenizer.ggml.token_type (llama.cpp llama_token_type, gguf-py
// TokenType).
const (
	TokenNormal      int32 = 1
	TokenUnknown     int32 = 2
	TokenControl     int32 = 3
	TokenUserDefined int32 = 4
	TokenUnused      int32 = 5
	TokenByte        int32 = 6
)

// DBRXConfig holds the DBRX hyper-parameters that fix tensor shapes and metadata
// (the HF config.json fields named in the comments).
type DBRXConfig struct {
	Layers        int     // n_layers (L)
	ContextLength int     // max_seq_len
	Dim           int     // d_model (D)
	FFN           int     // ffn_config.ffn_hidden_size, per expert (F)
	Heads         int     // n_heads (H)
	KVHeads       int     // attn_config.kv_n_heads (KVH)
	Experts       int     // ffn_config.moe_num_experts (E)
	ExpertsUsed   int     // ffn_config.moe_top_k (K)
	Vocab         int     // vocab_size (V), rows of wte and lm_head
	RopeTheta     float32 // attn_config.rope_theta
	ClampQKV      float32 // attn_config.clip_qkv
	NormEps       float32 // LayerNorm epsilon (the converter writes 1e-5)
}

// DBRXReleased is the configuration of the released DBRX Base/Instruct (132B).
func DBRXReleased() DBRXConfig {
	return DBRXConfig{
		Layers: 40, ContextLength: 32768, Dim: 6144, FFN: 10752, Heads: 48, KVHeads: 8,
		Experts: 16, ExpertsUsed: 4, Vocab: 100352, RopeTheta: 500000, ClampQKV: 8, NormEps: 1e-5,
	}
}

// Validate checks that the sizes are positive and consistent.
func (c DBRXConfig) Validate() error {
	for _, f := range []struct {
		name string
		v    int
	}{{"Layers", c.Layers}, {"ContextLength", c.ContextLength}, {"Dim", c.Dim}, {"FFN", c.FFN},
		{"Heads", c.Heads}, {"KVHeads", c.KVHeads}, {"Experts", c.Experts}, {"ExpertsUsed", c.ExpertsUsed}, {"Vocab", c.Vocab}} {
		if f.v <= 0 {
			return fmt.Errorf("gguf: DBRX config: %s = %d, must be positive", f.name, f.v)
		}
	}
	switch {
	case c.Dim%c.Heads != 0:
		return fmt.Errorf("gguf: DBRX config: Dim %d not divisible by Heads %d", c.Dim, c.Heads)
	case c.Heads%c.KVHeads != 0:
		return fmt.Errorf("gguf: DBRX config: Heads %d not divisible by KVHeads %d", c.Heads, c.KVHeads)
	case c.ExpertsUsed > c.Experts:
		return fmt.Errorf("gguf: DBRX config: ExpertsUsed %d > Experts %d", c.ExpertsUsed, c.Experts)
	case !(c.NormEps > 0):
		return fmt.Errorf("gguf: DBRX config: NormEps %g must be positive", c.NormEps)
	}
	return nil
}

// QKVDim is the fused QKV width D + 2·KVH·(D/H).
func (c DBRXConfig) QKVDim() int { return c.Dim + 2*c.KVHeads*(c.Dim/c.Heads) }

// DBRXTensor relates one HF DBRX weight to its GGUF tensor.
type DBRXTensor struct {
	HF      string   // HF state-dict key
	GGUF    string   // GGUF tensor name
	HFShape []int    // safetensors shape, outermost first
	Dims    []uint64 // GGUF ne, fastest first
	// PermuteDown marks ffn_down_exps: HF w2 [E·F, D], viewed [E, F, D], is stored
	// permuted to [E, D, F] (see DBRXPermuteDown); every other tensor's bytes are
	// the HF bytes in the same order.
	PermuteDown bool
}

// Quantizable reports whether llama.cpp's converter may quantize the tensor: 1-D
// tensors (norms) stay F32, every ≥2-D tensor may be quantized.
func (t DBRXTensor) Quantizable() bool { return len(t.Dims) >= 2 }

type dbrxLayerName struct{ hf, gguf string }

// Per-layer names: HF "transformer.blocks.{i}.<hf>" ↔ GGUF "blk.{i}.<gguf>". The
// expert weights have no ".weight" suffix in HF.
var dbrxLayerNames = []dbrxLayerName{
	{"norm_attn_norm.norm_1.weight", "attn_norm.weight"},
	{"norm_attn_norm.attn.Wqkv.weight", "attn_qkv.weight"},
	{"norm_attn_norm.attn.out_proj.weight", "attn_output.weight"},
	{"norm_attn_norm.norm_2.weight", "attn_output_norm.weight"},
	{"ffn.router.layer.weight", "ffn_gate_inp.weight"},
	{"ffn.experts.mlp.w1", "ffn_gate_exps.weight"},
	{"ffn.experts.mlp.v1", "ffn_up_exps.weight"},
	{"ffn.experts.mlp.w2", "ffn_down_exps.weight"},
}

var dbrxGlobalNames = []dbrxLayerName{
	{"transformer.wte.weight", "token_embd.weight"},
	{"transformer.norm_f.weight", "output_norm.weight"},
	{"lm_head.weight", "output.weight"},
}

const (
	hfBlockPrefix   = "transformer.blocks."
	ggufBlockPrefix = "blk."
)

// DBRXGGUFName maps an HF DBRX state-dict key to its GGUF tensor name.
func DBRXGGUFName(hf string) (string, bool) {
	return mapDBRXName(hf, hfBlockPrefix, ggufBlockPrefix, true)
}

// DBRXHFName maps a GGUF DBRX tensor name to its HF state-dict key.
func DBRXHFName(gguf string) (string, bool) {
	return mapDBRXName(gguf, ggufBlockPrefix, hfBlockPrefix, false)
}

func mapDBRXName(name, fromPrefix, toPrefix string, fromHF bool) (string, bool) {
	for _, g := range dbrxGlobalNames {
		from, to := g.gguf, g.hf
		if fromHF {
			from, to = g.hf, g.gguf
		}
		if name == from {
			return to, true
		}
	}
	rest, ok := strings.CutPrefix(name, fromPrefix)
	if !ok {
		return "", false
	}
	idx, suffix, ok := strings.Cut(rest, ".")
	if !ok || !isLayerIndex(idx) {
		return "", false
	}
	for _, l := range dbrxLayerNames {
		from, to := l.gguf, l.hf
		if fromHF {
			from, to = l.hf, l.gguf
		}
		if suffix == from {
			return toPrefix + idx + "." + to, true
		}
	}
	return "", false
}

// isLayerIndex accepts canonical decimal layer numbers: "0", "17", not "01" or "+1".
func isLayerIndex(s string) bool {
	if s == "" || len(s) > 9 || (len(s) > 1 && s[0] == '0') {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// DBRXTensors lists every DBRX weight with its HF shape and GGUF dims, in a fixed
// order: token_embd, then per block attn_norm, attn_qkv, attn_output,
// attn_output_norm, ffn_gate_inp, ffn_gate_exps, ffn_up_exps, ffn_down_exps, then
// output_norm and output.
func DBRXTensors(c DBRXConfig) ([]DBRXTensor, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	u := func(xs ...int) []uint64 {
		out := make([]uint64, len(xs))
		for i, x := range xs {
			out[i] = uint64(x)
		}
		return out
	}
	D, F, E, V, QKV := c.Dim, c.FFN, c.Experts, c.Vocab, c.QKVDim()
	ts := []DBRXTensor{{HF: "transformer.wte.weight", GGUF: "token_embd.weight", HFShape: []int{V, D}, Dims: u(D, V)}}
	for i := 0; i < c.Layers; i++ {
		hf := hfBlockPrefix + strconv.Itoa(i) + "."
		gg := ggufBlockPrefix + strconv.Itoa(i) + "."
		ts = append(ts,
			DBRXTensor{HF: hf + "norm_attn_norm.norm_1.weight", GGUF: gg + "attn_norm.weight", HFShape: []int{D}, Dims: u(D)},
			DBRXTensor{HF: hf + "norm_attn_norm.attn.Wqkv.weight", GGUF: gg + "attn_qkv.weight", HFShape: []int{QKV, D}, Dims: u(D, QKV)},
			DBRXTensor{HF: hf + "norm_attn_norm.attn.out_proj.weight", GGUF: gg + "attn_output.weight", HFShape: []int{D, D}, Dims: u(D, D)},
			DBRXTensor{HF: hf + "norm_attn_norm.norm_2.weight", GGUF: gg + "attn_output_norm.weight", HFShape: []int{D}, Dims: u(D)},
			DBRXTensor{HF: hf + "ffn.router.layer.weight", GGUF: gg + "ffn_gate_inp.weight", HFShape: []int{E, D}, Dims: u(D, E)},
			DBRXTensor{HF: hf + "ffn.experts.mlp.w1", GGUF: gg + "ffn_gate_exps.weight", HFShape: []int{E * F, D}, Dims: u(D, F, E)},
			DBRXTensor{HF: hf + "ffn.experts.mlp.v1", GGUF: gg + "ffn_up_exps.weight", HFShape: []int{E * F, D}, Dims: u(D, F, E)},
			DBRXTensor{HF: hf + "ffn.experts.mlp.w2", GGUF: gg + "ffn_down_exps.weight", HFShape: []int{E * F, D}, Dims: u(F, D, E), PermuteDown: true},
		)
	}
	ts = append(ts,
		DBRXTensor{HF: "transformer.norm_f.weight", GGUF: "output_norm.weight", HFShape: []int{D}, Dims: u(D)},
		DBRXTensor{HF: "lm_head.weight", GGUF: "output.weight", HFShape: []int{V, D}, Dims: u(D, V)},
	)
	return ts, nil
}

// DBRXMetadata returns the general.* and dbrx.* metadata of a DBRX GGUF file, as
// llama.cpp's converter writes it (counts uint32, reals float32), plus
// general.alignment = 32 and general.quantization_version = 2. Tokenizer keys come
// from DBRXTokenizerMetadata; general.file_type is left to the caller.
func DBRXMetadata(c DBRXConfig) ([]KV, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return []KV{
		{KeyArchitecture, String(DBRXArch)},
		{AlignmentKey, Uint32(DefaultAlignment)},
		{KeyQuantizationVersion, Uint32(2)},
		{KeyDBRXBlockCount, Uint32(uint32(c.Layers))},
		{KeyDBRXContextLength, Uint32(uint32(c.ContextLength))},
		{KeyDBRXEmbeddingLength, Uint32(uint32(c.Dim))},
		{KeyDBRXFeedForward, Uint32(uint32(c.FFN))},
		{KeyDBRXHeadCount, Uint32(uint32(c.Heads))},
		{KeyDBRXHeadCountKV, Uint32(uint32(c.KVHeads))},
		{KeyDBRXRopeFreqBase, Float32(c.RopeTheta)},
		{KeyDBRXClampKQV, Float32(c.ClampQKV)},
		{KeyDBRXExpertCount, Uint32(uint32(c.Experts))},
		{KeyDBRXExpertUsedCount, Uint32(uint32(c.ExpertsUsed))},
		{KeyDBRXLayerNormEps, Float32(c.NormEps)},
	}, nil
}

// DBRXConfigFromFile reads the DBRX hyper-parameters back from a file's metadata.
// Vocab is the row count of token_embd.weight.
func DBRXConfigFromFile(f *File) (DBRXConfig, error) {
	var c DBRXConfig
	arch, err := f.GetString(KeyArchitecture)
	if err != nil {
		return c, err
	}
	if arch != DBRXArch {
		return c, &Error{File: f.name, Offset: -1, Msg: fmt.Sprintf("%s = %q, want %q", KeyArchitecture, arch, DBRXArch), Err: ErrWrongType}
	}
	ints := []struct {
		key string
		dst *int
	}{
		{KeyDBRXBlockCount, &c.Layers}, {KeyDBRXContextLength, &c.ContextLength}, {KeyDBRXEmbeddingLength, &c.Dim},
		{KeyDBRXFeedForward, &c.FFN}, {KeyDBRXHeadCount, &c.Heads}, {KeyDBRXHeadCountKV, &c.KVHeads},
		{KeyDBRXExpertCount, &c.Experts}, {KeyDBRXExpertUsedCount, &c.ExpertsUsed},
	}
	for _, k := range ints {
		v, err := f.GetUint32(k.key)
		if err != nil {
			return c, err
		}
		if v > 1<<30 {
			return c, &Error{File: f.name, Offset: -1, Msg: fmt.Sprintf("key %q = %d is implausibly large", k.key, v), Err: ErrCorrupt}
		}
		*k.dst = int(v)
	}
	floats := []struct {
		key string
		dst *float32
	}{{KeyDBRXRopeFreqBase, &c.RopeTheta}, {KeyDBRXClampKQV, &c.ClampQKV}, {KeyDBRXLayerNormEps, &c.NormEps}}
	for _, k := range floats {
		if *k.dst, err = f.GetFloat32(k.key); err != nil {
			return c, err
		}
	}
	emb, ok := f.Tensor("token_embd.weight")
	if !ok || len(emb.Dims) != 2 || emb.Dims[1] > 1<<30 {
		return c, &Error{File: f.name, Offset: -1, Msg: "tensor \"token_embd.weight\" (2-D) for the vocabulary size", Err: ErrNotFound}
	}
	c.Vocab = int(emb.Dims[1])
	return c, c.Validate()
}

// DBRXPermuteDown reorders HF w2 bytes, viewed as [experts][ffn][dim] elements of
// elemSize bytes, into GGUF ffn_down_exps order [experts][dim][ffn] (ne = {F, D,
// E}). dst and src must both be experts·ffn·dim·elemSize bytes. Only unquantized
// element types can be permuted; quantize after permuting.
func DBRXPermuteDown(dst, src []byte, elemSize, experts, ffn, dim int) error {
	if elemSize <= 0 || experts <= 0 || ffn <= 0 || dim <= 0 {
		return fmt.Errorf("gguf: DBRXPermuteDown: sizes must be positive")
	}
	n := experts * ffn * dim * elemSize
	if len(src) != n || len(dst) != n {
		return fmt.Errorf("gguf: DBRXPermuteDown: need %d bytes, have src %d dst %d", n, len(src), len(dst))
	}
	for e := 0; e < experts; e++ {
		base := e * ffn * dim * elemSize
		for f := 0; f < ffn; f++ {
			for d := 0; d < dim; d++ {
				s := base + (f*dim+d)*elemSize
				t := base + (d*ffn+f)*elemSize
				copy(dst[t:t+elemSize], src[s:s+elemSize])
			}
		}
	}
	return nil
}

// DBRXVocab is the tokenizer input of DBRXTokenizerMetadata (the tokenizer
// package owns the actual vocabulary).
type DBRXVocab struct {
	// Tokens[id] is the raw byte string of token id; nil for an id without a token
	// (written as "[PAD{id}]" with type TokenUnused, as llama.cpp's converter pads
	// the vocabulary to vocab_size).
	Tokens [][]byte
	// Types[id] is a Token* constant; nil means TokenNormal for every present token.
	// Normal (and byte) tokens are stored in GPT-2 byte-level form (bytes_to_unicode,
	// e.g. " the" → "Ġthe"); control and user-defined tokens (<|im_start|>, ...) are
	// stored as their literal UTF-8 text.
	Types []int32
	// Merges are the BPE merges in priority order as raw byte pairs; each is stored
	// as "left right" in byte-level form.
	Merges [][2][]byte
	// BOS, EOS, UNK, PAD are token ids; a negative id is omitted.
	BOS, EOS, UNK, PAD int32
	// AddBOS, AddEOS become tokenizer.ggml.add_bos_token / add_eos_token (false for DBRX).
	AddBOS, AddEOS bool
}

// DBRXTokenizerMetadata builds the tokenizer.ggml.* metadata (model "gpt2", pre
// "dbrx") from raw token bytes.
func DBRXTokenizerMetadata(v DBRXVocab) ([]KV, error) {
	n := len(v.Tokens)
	if n == 0 {
		return nil, errors.New("gguf: DBRX tokenizer: no tokens")
	}
	if v.Types != nil && len(v.Types) != n {
		return nil, fmt.Errorf("gguf: DBRX tokenizer: %d types for %d tokens", len(v.Types), n)
	}
	tokens := make([]string, n)
	types := make([]int32, n)
	for id, tok := range v.Tokens {
		typ := TokenNormal
		if v.Types != nil {
			typ = v.Types[id]
			if typ < TokenNormal || typ > TokenByte {
				return nil, fmt.Errorf("gguf: DBRX tokenizer: token %d: type %d", id, typ)
			}
		}
		switch {
		case tok == nil:
			tokens[id], typ = fmt.Sprintf("[PAD%d]", id), TokenUnused
		case typ == TokenControl || typ == TokenUserDefined:
			if !utf8.Valid(tok) {
				return nil, fmt.Errorf("gguf: DBRX tokenizer: special token %d is not valid UTF-8", id)
			}
			tokens[id] = string(tok)
		default:
			tokens[id] = ByteLevelEncode(tok)
		}
		types[id] = typ
	}
	merges := make([]string, len(v.Merges))
	for i, m := range v.Merges {
		if len(m[0]) == 0 || len(m[1]) == 0 {
			return nil, fmt.Errorf("gguf: DBRX tokenizer: merge %d has an empty side", i)
		}
		merges[i] = ByteLevelEncode(m[0]) + " " + ByteLevelEncode(m[1])
	}
	kvs := []KV{
		{KeyTokenizerModel, String("gpt2")},
		{KeyTokenizerPre, String("dbrx")},
		{KeyTokenizerTokens, ArrayOf(tokens)},
		{KeyTokenizerTokenType, ArrayOf(types)},
		{KeyTokenizerMerges, ArrayOf(merges)},
	}
	for _, id := range []struct {
		key string
		id  int32
	}{{KeyTokenizerBOS, v.BOS}, {KeyTokenizerEOS, v.EOS}, {KeyTokenizerUNK, v.UNK}, {KeyTokenizerPAD, v.PAD}} {
		if id.id < 0 {
			continue
		}
		if int(id.id) >= n {
			return nil, fmt.Errorf("gguf: DBRX tokenizer: %s %d out of range [0, %d)", id.key, id.id, n)
		}
		kvs = append(kvs, KV{id.key, Uint32(uint32(id.id))})
	}
	kvs = append(kvs, KV{KeyTokenizerAddBOS, Bool(v.AddBOS)}, KV{KeyTokenizerAddEOS, Bool(v.AddEOS)})
	return kvs, nil
}

// byteToRune is GPT-2's bytes_to_unicode: printable bytes '!'..'~', '¡'..'¬',
// '®'..'ÿ' map to themselves, the other 68 bytes to U+0100.. in byte order.
var byteToRune, runeToByte = func() ([256]rune, map[rune]byte) {
	var b2r [256]rune
	r2b := make(map[rune]byte, 256)
	next := rune(256)
	for b := 0; b < 256; b++ {
		if ('!' <= b && b <= '~') || (0xA1 <= b && b <= 0xAC) || (0xAE <= b && b <= 0xFF) {
			b2r[b] = rune(b)
		} else {
			b2r[b] = next
			next++
		}
		r2b[b2r[b]] = byte(b)
	}
	return b2r, r2b
}()

// ByteLevelEncode renders raw token bytes in GPT-2 byte-level form, the spelling of
// tokenizer.ggml.tokens for "gpt2" vocabularies.
func ByteLevelEncode(b []byte) string {
	var sb strings.Builder
	sb.Grow(2 * len(b))
	for _, c := range b {
		sb.WriteRune(byteToRune[c])
	}
	return sb.String()
}

// ByteLevelDecode inverts ByteLevelEncode; ok is false if s has a rune outside
// the 256-symbol alphabet.
func ByteLevelDecode(s string) ([]byte, bool) {
	out := make([]byte, 0, len(s))
	for _, r := range s {
		b, ok := runeToByte[r]
		if !ok {
			return nil, false
		}
		out = append(out, b)
	}
	return out, true
}
