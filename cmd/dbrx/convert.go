package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/dbrx-engine/dbrx/gguf"
	"github.com/dbrx-engine/dbrx/internal/parallel"
	"github.com/dbrx-engine/dbrx/model/dbrx"
	"github.com/dbrx-engine/dbrx/quant"
	"github.com/dbrx-engine/dbrx/safetensors"
	"github.com/dbrx-engine/dbrx/tensor"
	"github.com/dbrx-engine/dbrx/tokenizer"
	"github.com/dbrx-engine/dbrx/weights"
)

func init() {
	register(command{name: "convert", summary: "convert an HF checkpoint to GGUF (f32, f16, bf16, q8_0, q4_k, ...), streaming", run: runConvert})
}

// convertTypes are the --type values: the ggml type of every ≥2-D tensor (norms
// and the router stay F32) and the general.file_type label written (llama.cpp's
// LLAMA_FTYPE_*; for the K types the "_S" label, the nearest to a plain mix).
var convertTypes = map[string]struct {
	t        quant.Type
	fileType uint32
}{
	"f32":  {quant.F32, 0},
	"f16":  {quant.F16, 1},
	"bf16": {quant.BF16, 32},
	"q8_0": {quant.Q8_0, 7},
	"q4_0": {quant.Q4_0, 2},
	"q5_0": {quant.Q5_0, 8},
	"q4_k": {quant.Q4_K, 14},
	"q5_k": {quant.Q5_K, 16},
	"q6_k": {quant.Q6_K, 18},
}

// convertChunkBytes bounds the input bytes converted per step (and so, with the
// float32 and output staging, the converter's working memory).
const convertChunkBytes = 8 << 20

func runConvert(ctx context.Context, e env, args []string) error {
	fs := newFlags("convert", e)
	from := fs.String("from", "", "Hugging Face DBRX checkpoint directory (config.json + safetensors)")
	to := fs.String("to", "", "output: a .gguf file, or a directory for a Hugging Face checkpoint (types f32, f16, bf16)")
	typ := fs.String("type", "bf16", "tensor type: f32, f16, bf16, q8_0, q4_k (also q4_0, q5_0, q5_k, q6_k)")
	threads := fs.Int("threads", 0, "worker threads (0 = all cores)")
	name := fs.String("name", "", "general.name (default: the checkpoint directory's name)")
	quiet := fs.Bool("quiet", false, "no per-tensor progress lines")
	if _, err := parseFlags(fs, args); err != nil {
		return err
	}
	if *from == "" || *to == "" {
		return fmt.Errorf("%w: --from and --to are required", errUsage)
	}
	ct, ok := convertTypes[strings.ToLower(*typ)]
	if !ok {
		names := make([]string, 0, len(convertTypes))
		for n := range convertTypes {
			names = append(names, n)
		}
		sort.Strings(names)
		return fmt.Errorf("%w: --type %q: want one of %s", errUsage, *typ, strings.Join(names, ", "))
	}
	if !strings.HasSuffix(strings.ToLower(*to), ".gguf") {
		return convertToHF(ctx, e, *from, *to, strings.ToLower(*typ))
	}
	if *name == "" {
		*name = filepath.Base(filepath.Clean(*from))
	}
	pool := parallel.New(*threads)
	defer pool.Close()
	var progress io.Writer = e.stderr
	if *quiet {
		progress = io.Discard
	}
	return convertCheckpoint(ctx, convertOptions{From: *from, To: *to, Type: ct.t, FileType: ct.fileType, Name: *name,
		Pool: pool, Progress: progress})
}

type convertOptions struct {
	From, To string
	Type     quant.Type // requested type of ≥2-D tensors
	FileType uint32     // general.file_type
	Name     string     // general.name
	Pool     *parallel.Pool
	Progress io.Writer
}

// convertCheckpoint streams an HF DBRX checkpoint into a GGUF file tensor by
// tensor: each tensor is read from its shard with positioned reads in chunks of
// rows, widened to float32 and quantized in parallel, and appended through the
// gguf streaming writer, so memory stays bounded by the chunk buffers (plus, for
// the down projection, one expert's [D, F] float32 transpose). The checkpoint is
// first bound strictly (names, shapes, dtypes), and the output appears atomically.
func convertCheckpoint(ctx context.Context, o convertOptions) error {
	cfg, err := dbrx.LoadConfig(o.From)
	if err != nil {
		return err
	}
	// Strict validation of names, shapes and dtypes, without reading weight data.
	src, err := weights.OpenSafetensors(o.From)
	if err != nil {
		return err
	}
	m, err := dbrx.Bind(cfg, src)
	if err != nil {
		src.Close()
		return fmt.Errorf("%s: %w", o.From, err)
	}
	for _, b := range m.Blocks {
		if b.W2.Rows == 0 {
			m.Close()
			return fmt.Errorf("%s: the down projections are not in HF orientation", o.From)
		}
	}
	m.Close()
	shards, err := openShards(o.From)
	if err != nil {
		return err
	}
	defer shards.close()

	gc := ggufConfig(cfg)
	plan, err := gguf.DBRXTensors(gc)
	if err != nil {
		return err
	}
	infos := make([]gguf.TensorInfo, len(plan))
	for i, t := range plan {
		infos[i] = gguf.TensorInfo{Name: t.GGUF, Type: ggufTypeFor(t, o.Type), Dims: t.Dims}
	}
	kvs, err := convertMetadata(cfg, gc, o)
	if err != nil {
		return err
	}
	w, err := gguf.Create(o.To, kvs, infos)
	if err != nil {
		return err
	}
	start := time.Now()
	c := &tensorConverter{pool: o.Pool}
	for i, t := range plan {
		if err := ctx.Err(); err != nil {
			w.Abort()
			return err
		}
		loc, ok := shards.where[t.HF]
		if !ok {
			w.Abort()
			return fmt.Errorf("%s: tensor %s vanished", o.From, t.HF)
		}
		typ := infos[i].Type
		fmt.Fprintf(o.Progress, "[%3d/%3d] %-32s %-5s %v\n", i+1, len(plan), t.GGUF, typ, t.Dims)
		c.reset(loc, t, typ, cfg)
		if err := w.WriteTensorFrom(t.GGUF, c); err != nil {
			w.Abort()
			if c.err != nil {
				return fmt.Errorf("%s: %w", t.HF, c.err)
			}
			return err
		}
	}
	if err := w.Close(); err != nil {
		return err
	}
	st, _ := os.Stat(o.To)
	var size int64
	if st != nil {
		size = st.Size()
	}
	fmt.Fprintf(o.Progress, "wrote %s: %d tensors, %.1f MB, %s in %.1fs\n", o.To, len(plan), float64(size)/1e6, o.Type, time.Since(start).Seconds())
	return nil
}

// ggufConfig maps the HF config to the GGUF DBRX hyper-parameters.
func ggufConfig(c dbrx.Config) gguf.DBRXConfig {
	g := gguf.DBRXConfig{
		Layers: c.NLayers, ContextLength: c.MaxSeqLen, Dim: c.DModel, FFN: c.FFNConfig.FFNHiddenSize,
		Heads: c.NHeads, KVHeads: c.AttnConfig.KVNHeads, Experts: c.FFNConfig.MoENumExperts,
		ExpertsUsed: c.FFNConfig.MoETopK, Vocab: c.VocabSize, RopeTheta: float32(c.AttnConfig.RopeTheta),
		NormEps: dbrx.LayerNormEps,
	}
	if c.AttnConfig.ClipQKV != nil {
		g.ClampQKV = float32(*c.AttnConfig.ClipQKV)
	}
	return g
}

// ggufTypeFor is the type a tensor is written in: norms (1-D) and the router
// (ffn_gate_inp) stay F32, as llama.cpp's converter keeps them; others take want,
// falling back when their rows (ne[0]) are not whole blocks the way llama.cpp's
// llama-quant does: Q4_K -> Q5_0, Q5_K -> Q8_0 (llama.cpp picks Q5_1, which this
// engine does not implement), Q6_K -> Q8_0, and then, or for a 32-value type,
// -> F16.
func ggufTypeFor(t gguf.DBRXTensor, want quant.Type) quant.Type {
	if !t.Quantizable() || strings.HasSuffix(t.GGUF, ".ffn_gate_inp.weight") {
		return quant.F32
	}
	fits := func(q quant.Type) bool { return t.Dims[0]%uint64(q.BlockSize()) == 0 }
	if fits(want) {
		return want
	}
	switch want {
	case quant.Q4_K:
		want = quant.Q5_0
	case quant.Q5_K, quant.Q6_K:
		want = quant.Q8_0
	}
	if fits(want) {
		return want
	}
	return quant.F16
}

// GGUF keys dbrx convert writes beyond gguf.DBRXMetadata.
const keyTokenizerEOT = "tokenizer.ggml.eot_token_id"

// convertMetadata is gguf.DBRXMetadata plus general.name and file_type, the
// tokenizer, and the two extension keys for a top-k renormalisation other than
// llama.cpp's fixed sum-to-1 (model/dbrx reads them back).
func convertMetadata(c dbrx.Config, gc gguf.DBRXConfig, o convertOptions) ([]gguf.KV, error) {
	meta, err := gguf.DBRXMetadata(gc)
	if err != nil {
		return nil, err
	}
	var kvs []gguf.KV
	for _, kv := range meta {
		if kv.Key == gguf.KeyDBRXClampKQV && c.AttnConfig.ClipQKV == nil {
			continue // no clamp; llama.cpp requires the key, so such files load only here
		}
		kvs = append(kvs, kv)
		if kv.Key == gguf.KeyArchitecture {
			kvs = append(kvs, gguf.KV{Key: gguf.KeyName, Value: gguf.String(o.Name)},
				gguf.KV{Key: gguf.KeyFileType, Value: gguf.Uint32(o.FileType)})
		}
	}
	switch p := c.FFNConfig.MoENormalizeExpertWeights; {
	case p == nil:
		kvs = append(kvs, gguf.KV{Key: dbrx.GGUFKeyExpertWeightsNorm, Value: gguf.Bool(false)})
	case *p != 1:
		kvs = append(kvs, gguf.KV{Key: dbrx.GGUFKeyExpertWeightsNormP, Value: gguf.Float32(float32(*p))})
	}
	v, err := dbrxVocab(c.VocabSize)
	if err != nil {
		return nil, err
	}
	tk, err := gguf.DBRXTokenizerMetadata(v)
	if err != nil {
		return nil, err
	}
	kvs = append(kvs, tk...)
	if tokenizer.ImEnd < c.VocabSize {
		kvs = append(kvs, gguf.KV{Key: keyTokenizerEOT, Value: gguf.Uint32(tokenizer.ImEnd)})
	}
	return kvs, nil
}

// dbrxVocab is the DBRX tokenizer (cl100k_base + DBRX specials) as GGUF vocabulary
// input: ids 0..vocabSize-1, holes and ids past the tokenizer padded as [PAD{id}]
// (UNUSED), specials CONTROL, and the BPE merges derived from the ranks. A model
// with a vocabulary smaller than the tokenizer's gets its first vocabSize ids and
// only the merges among them.
func dbrxVocab(vocabSize int) (gguf.DBRXVocab, error) {
	tok, err := tokenizer.New()
	if err != nil {
		return gguf.DBRXVocab{}, err
	}
	v := gguf.DBRXVocab{Tokens: make([][]byte, vocabSize), Types: make([]int32, vocabSize), BOS: -1, EOS: -1, UNK: -1, PAD: -1}
	for id := range v.Tokens {
		b, err := tok.TokenBytes(id)
		switch {
		case err != nil:
			v.Types[id] = gguf.TokenUnused
		case tok.IsSpecial(id):
			v.Tokens[id], v.Types[id] = b, gguf.TokenControl
		default:
			v.Tokens[id], v.Types[id] = b, gguf.TokenNormal
		}
	}
	v.Merges = deriveMerges(v.Tokens, v.Types)
	if tokenizer.EndOfText < vocabSize {
		v.BOS, v.EOS, v.UNK = tokenizer.EndOfText, tokenizer.EndOfText, tokenizer.EndOfText
	}
	if tokenizer.Pad < vocabSize {
		v.PAD = tokenizer.Pad
	}
	return v, nil
}

// deriveMerges recovers the BPE merge list of a rank-based (tiktoken) vocabulary,
// as tiktoken-to-Hugging-Face converters do: for each normal token of two or more
// bytes, in rank (= id) order, run byte-level BPE on its bytes using only merges
// that produce lower-ranked tokens; the two parts left are the merge that creates
// it. Tokens that do not reduce to exactly two parts get no merge.
func deriveMerges(tokens [][]byte, types []int32) [][2][]byte {
	rank := make(map[string]int, len(tokens))
	for id, t := range tokens {
		if t != nil && types[id] == gguf.TokenNormal {
			rank[string(t)] = id
		}
	}
	var merges [][2][]byte
	var cut []int // part i is t[cut[i]:cut[i+1]]
	for id, t := range tokens {
		if len(t) < 2 || types[id] != gguf.TokenNormal {
			continue
		}
		cut = cut[:0]
		for i := 0; i <= len(t); i++ {
			cut = append(cut, i)
		}
		for len(cut) > 3 { // more than two parts
			best, bestRank := -1, id
			for i := 0; i+2 < len(cut); i++ {
				if r, ok := rank[string(t[cut[i]:cut[i+2]])]; ok && r < bestRank {
					best, bestRank = i, r
				}
			}
			if best < 0 {
				break
			}
			cut = append(cut[:best+1], cut[best+2:]...) // join parts best and best+1
		}
		if len(cut) == 3 {
			merges = append(merges, [2][]byte{t[:cut[1]], t[cut[1]:]})
		}
	}
	return merges
}

// ---- checkpoint access by positioned reads ----

// tensorLoc is where a tensor's bytes are in a shard.
type tensorLoc struct {
	f     *os.File
	off   int64 // absolute file offset of the first byte
	dtype tensor.DType
	shape tensor.Shape
}

type shardSet struct {
	files []*os.File
	where map[string]tensorLoc
}

func (s *shardSet) close() {
	for _, f := range s.files {
		f.Close()
	}
}

// openShards indexes the tensors of a checkpoint (single file or shards) and opens
// each shard for positioned reads; the headers are parsed (and validated) by
// package safetensors, whose mappings are closed again at once.
func openShards(dir string) (*shardSet, error) {
	var paths []string
	single := filepath.Join(dir, safetensors.SingleFileName)
	if st, err := os.Stat(dir); err == nil && !st.IsDir() {
		single = dir
	}
	if _, err := os.Stat(single); err == nil {
		paths = []string{single}
	} else {
		raw, err := os.ReadFile(filepath.Join(dir, safetensors.IndexFileName))
		if err != nil {
			return nil, err
		}
		var idx struct {
			WeightMap map[string]string `json:"weight_map"`
		}
		if err := json.Unmarshal(raw, &idx); err != nil {
			return nil, fmt.Errorf("%s: %w", safetensors.IndexFileName, err)
		}
		seen := map[string]bool{}
		for _, f := range idx.WeightMap {
			if !seen[f] {
				seen[f] = true
				paths = append(paths, filepath.Join(dir, f))
			}
		}
		sort.Strings(paths)
	}
	s := &shardSet{where: map[string]tensorLoc{}}
	for _, p := range paths {
		sf, err := safetensors.Open(p)
		if err != nil {
			s.close()
			return nil, err
		}
		base := sf.DataOffset()
		infos := sf.Tensors()
		sf.Close()
		f, err := os.Open(p)
		if err != nil {
			s.close()
			return nil, err
		}
		s.files = append(s.files, f)
		for _, t := range infos {
			s.where[t.Name] = tensorLoc{f: f, off: base + t.Begin, dtype: t.DType, shape: t.Shape}
		}
	}
	return s, nil
}

// ---- streaming conversion of one tensor ----

// tensorConverter is an io.Reader producing one GGUF tensor's bytes: rows of the
// output orientation, converted a chunk at a time in parallel.
type tensorConverter struct {
	pool *parallel.Pool

	loc      tensorLoc
	out      quant.Type
	rows     int // output rows
	cols     int // values per output row
	permute  bool
	E, F, D  int
	next     int // next output row to produce
	outRB    int // output row bytes
	inES     int // input element size
	pending  []byte
	err      error
	inBuf    []byte    // raw input chunk
	f32      []float32 // widened chunk [rows, cols] (or one expert's [D, F] transpose)
	outBuf   []byte    // converted chunk
	expert   int       // expert whose transpose is in f32 (permute), -1 if none
	rowF32   []float32
	chunkRow int
}

func (c *tensorConverter) reset(loc tensorLoc, t gguf.DBRXTensor, out quant.Type, cfg dbrx.Config) {
	c.loc, c.out, c.permute, c.next, c.pending, c.err, c.expert = loc, out, t.PermuteDown, 0, nil, nil, -1
	c.E, c.F, c.D = cfg.FFNConfig.MoENumExperts, cfg.FFNConfig.FFNHiddenSize, cfg.DModel
	c.cols = int(t.Dims[0])
	c.rows = int(gguf.TensorInfo{Dims: t.Dims}.NumElements()) / max(c.cols, 1)
	rb, _ := out.RowBytes(int64(c.cols))
	c.outRB = int(rb)
	c.inES = loc.dtype.Size()
	c.chunkRow = max(1, convertChunkBytes/max(1, c.cols*c.inES))
}

// Read implements io.Reader.
func (c *tensorConverter) Read(p []byte) (int, error) {
	if len(c.pending) == 0 {
		if c.next >= c.rows {
			return 0, io.EOF
		}
		if err := c.fill(); err != nil {
			c.err = err
			return 0, err
		}
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

// fill converts the next chunk of output rows into c.pending.
func (c *tensorConverter) fill() error {
	r0 := c.next
	r1 := min(c.rows, r0+c.chunkRow)
	if c.permute { // output row (e, d) = column d of expert e's HF [F, D]
		e := r0 / c.D
		r1 = min(r1, (e+1)*c.D)
		if c.expert != e {
			if err := c.loadExpertT(e); err != nil {
				return err
			}
		}
	} else {
		n := (r1 - r0) * c.cols * c.inES
		c.inBuf = growBytes(c.inBuf, n)
		if _, err := c.loc.f.ReadAt(c.inBuf, c.loc.off+int64(r0*c.cols*c.inES)); err != nil {
			return err
		}
		c.f32 = growF32(c.f32, (r1-r0)*c.cols)
	}
	c.outBuf = growBytes(c.outBuf, (r1-r0)*c.outRB)
	var (
		mu       sync.Mutex
		firstErr error
	)
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
	}
	cols, rb, es := c.cols, c.outRB, c.inES
	c.pool.For(r1-r0, 1, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			var row []float32
			if c.permute {
				d := (r0 + i) % c.D
				row = c.f32[d*cols : (d+1)*cols]
			} else {
				row = c.f32[i*cols : (i+1)*cols]
				if err := tensor.ToFloat32(row, c.loc.dtype, c.inBuf[i*cols*es:(i+1)*cols*es]); err != nil {
					fail(err)
				}
			}
			if err := quant.Quantize(c.out, c.outBuf[i*rb:(i+1)*rb], row); err != nil {
				fail(err)
			}
		}
	})
	if firstErr != nil {
		return firstErr
	}
	c.pending = c.outBuf[:(r1-r0)*rb]
	c.next = r1
	return nil
}

// loadExpertT reads expert e's HF w2 block [F, D] in chunks of rows and stores its
// transpose [D, F] in c.f32.
func (c *tensorConverter) loadExpertT(e int) error {
	F, D, es := c.F, c.D, c.inES
	c.f32 = growF32(c.f32, D*F)
	step := max(1, convertChunkBytes/(D*es))
	c.rowF32 = growF32(c.rowF32, min(step, F)*D)
	for f0 := 0; f0 < F; f0 += step {
		f1 := min(F, f0+step)
		c.inBuf = growBytes(c.inBuf, (f1-f0)*D*es)
		if _, err := c.loc.f.ReadAt(c.inBuf, c.loc.off+int64((e*F+f0)*D*es)); err != nil {
			return err
		}
		wide := c.rowF32[:(f1-f0)*D]
		if err := tensor.ToFloat32(wide, c.loc.dtype, c.inBuf); err != nil {
			return err
		}
		for f := f0; f < f1; f++ {
			src := wide[(f-f0)*D : (f-f0+1)*D]
			for d, v := range src {
				c.f32[d*F+f] = v
			}
		}
	}
	c.expert = e
	return nil
}

func growBytes(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	return b[:n]
}
