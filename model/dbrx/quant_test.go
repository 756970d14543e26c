package dbrx

import (
	"math"
	"math/rand/v2"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/dbrx-engine/dbrx/internal/parallel"
	"github.com/dbrx-engine/dbrx/quant"
	"github.com/dbrx-engine/dbrx/tensor"
	"github.com/dbrx-engine/dbrx/weights"
)

// transposeW2 turns HF w2 [E·F, D] (F32 values) into the GGUF orientation [E·D, F].
func transposeW2(w []float32, E, F, D int) []float32 {
	out := make([]float32, len(w))
	for e := 0; e < E; e++ {
		for f := 0; f < F; f++ {
			for d := 0; d < D; d++ {
				out[(e*D+d)*F+f] = w[(e*F+f)*D+d]
			}
		}
	}
	return out
}

// quantizeSource returns two sources over the weights of src: q, with every matrix
// stored as dt where its rows fill whole blocks (else F32; norms and the router stay
// F32, as dbrx convert writes them) and the down projections as W2TName; and deq,
// the same tensors with q's values dequantized to F32 under the same names.
func quantizeSource(t *testing.T, c Config, src weights.Source, dt tensor.DType) (q, deq weights.Map) {
	t.Helper()
	qt, ok := quant.FromDType(dt)
	if !ok {
		t.Fatalf("no ggml type for %s", dt)
	}
	E, F, D := c.FFNConfig.MoENumExperts, c.FFNConfig.FFNHiddenSize, c.DModel
	q, deq = weights.Map{}, weights.Map{}
	for _, name := range src.Names() {
		s, _ := src.Tensor(name)
		vals := make([]float32, s.Shape.NumElements())
		if err := tensor.ToFloat32(vals, s.DType, s.Data); err != nil {
			t.Fatal(err)
		}
		shape := s.Shape
		if strings.HasSuffix(name, ".mlp.w2") {
			name += weights.TransposedSuffix
			vals = transposeW2(vals, E, F, D)
			shape = tensor.Shape{E * D, F}
		}
		cols := shape[len(shape)-1]
		target := qt
		if len(shape) == 1 || strings.HasSuffix(name, "router.layer.weight") || cols%qt.BlockSize() != 0 {
			target = quant.F32
		}
		rb, err := target.RowBytes(int64(cols))
		if err != nil {
			t.Fatal(err)
		}
		rows := len(vals) / cols
		data := make([]byte, rows*int(rb))
		back := make([]float32, len(vals))
		for r := 0; r < rows; r++ {
			row := data[r*int(rb) : (r+1)*int(rb)]
			if err := quant.Quantize(target, row, vals[r*cols:(r+1)*cols]); err != nil {
				t.Fatal(err)
			}
			if err := quant.Dequantize(target, back[r*cols:(r+1)*cols], row); err != nil {
				t.Fatal(err)
			}
		}
		tdt, _ := target.DType()
		q[name] = weights.Tensor{Name: name, DType: tdt, Shape: shape, Data: data}
		deq[name] = weights.Tensor{Name: name, DType: tensor.F32, Shape: shape, Data: tensor.Float32Bytes(back)}
	}
	return q, deq
}

// synthConfig is a model whose every matrix has rows of whole 256-value blocks, so
// the K-quants are used everywhere (the fixtures' D=64 and F=96/112 are not).
func synthConfig() Config {
	c := DefaultConfig()
	clip := 8.0
	c.DModel, c.NHeads, c.NLayers, c.VocabSize, c.MaxSeqLen = 256, 4, 2, 1000, 64
	c.AttnConfig.KVNHeads, c.AttnConfig.ClipQKV, c.AttnConfig.RopeTheta = 2, &clip, 10000
	c.FFNConfig.FFNHiddenSize, c.FFNConfig.MoENumExperts, c.FFNConfig.MoETopK = 512, 4, 2
	return c
}

// synthSource fills c's parameters with the fixtures' initialisation scales (wte
// N(0,1), norms 1+0.1·N, Wqkv 1.5/√D, out_proj/w1/v1 1/√D, w2 1/√F, router and
// lm_head 2/√D), so logits are large and attention and routing decisive.
func synthSource(c Config, seed uint64) weights.Map {
	r := rand.New(rand.NewPCG(seed, 1))
	D, F := float64(c.DModel), float64(c.FFNConfig.FFNHiddenSize)
	names, shapes := c.ParamShapes()
	m := weights.Map{}
	for i, n := range names {
		vals := make([]float32, tensor.Shape(shapes[i]).NumElements())
		scale, offset := 2/math.Sqrt(D), 0.0
		switch {
		case n == NameWte:
			scale = 1
		case strings.HasSuffix(n, "norm_1.weight") || strings.HasSuffix(n, "norm_2.weight") || n == NameNormF:
			scale, offset = 0.1, 1
		case strings.HasSuffix(n, "Wqkv.weight"):
			scale = 1.5 / math.Sqrt(D)
		case strings.HasSuffix(n, "out_proj.weight") || strings.HasSuffix(n, ".w1") || strings.HasSuffix(n, ".v1"):
			scale = 1 / math.Sqrt(D)
		case strings.HasSuffix(n, ".w2"):
			scale = 1 / math.Sqrt(F)
		}
		for j := range vals {
			vals[j] = float32(offset + scale*r.NormFloat64())
		}
		m[n] = weights.Tensor{Name: n, DType: tensor.F32, Shape: tensor.Shape(shapes[i]), Data: tensor.Float32Bytes(vals)}
	}
	return m
}

// TestQuantizedMatchesDequantized: a model bound to block-quantized weights gives
// the logits of the same model bound to those weights dequantized to F32 (MatMulTQ
// dequantizes exactly; only the summation order differs), for prefill and for
// cached decode, with the down projection in GGUF orientation.
func TestQuantizedMatchesDequantized(t *testing.T) {
	pool := parallel.New(0)
	defer pool.Close()
	fixA, err := weights.OpenSafetensors(fixtureDir("A"))
	if err != nil {
		t.Fatal(err)
	}
	defer fixA.Close()
	cfgA, err := LoadConfig(fixtureDir("A"))
	if err != nil {
		t.Fatal(err)
	}
	ids := []int{5, 17, 3, 200, 42, 42, 7, 311, 0, 99, 123}
	for _, c := range []struct {
		name string
		cfg  Config
		src  weights.Source
		dts  []tensor.DType
	}{
		{"A", cfgA, fixA, []tensor.DType{tensor.Q8_0, tensor.Q4_0, tensor.Q5_0}},
		{"synth", synthConfig(), synthSource(synthConfig(), 1), []tensor.DType{tensor.Q4_K, tensor.Q5_K, tensor.Q6_K, tensor.Q8_0}},
	} {
		for _, dt := range c.dts {
			t.Run(c.name+"/"+dt.String(), func(t *testing.T) {
				qs, ds := quantizeSource(t, c.cfg, c.src, dt)
				qm, err := Bind(c.cfg, qs)
				if err != nil {
					t.Fatal(err)
				}
				dm, err := Bind(c.cfg, ds)
				if err != nil {
					t.Fatal(err)
				}
				if qm.Blocks[0].W2T.DType != dt && qm.Blocks[0].W2T.DType != tensor.F32 || qm.Blocks[0].W1.DType != dt {
					t.Fatalf("bound as W1 %s, W2T %s", qm.Blocks[0].W1.DType, qm.Blocks[0].W2T.DType)
				}
				ws := NewWorkspace(pool)
				got := fullLogits(t, qm, ws, ids)
				want := fullLogits(t, dm, ws, ids)
				checkClose(t, "prefill logits", got, want, 1e-4)
				// Cached decode, one token at a time (the T=1 kernels), ends at the same logits.
				V := c.cfg.VocabSize
				cache := qm.NewKVCache(len(ids), len(ids))
				var last []float32
				for _, id := range ids {
					l, err := qm.Forward(ws, []Step{{Cache: cache, IDs: []int{id}}})
					if err != nil {
						t.Fatal(err)
					}
					last = l
				}
				checkClose(t, "decode logits", last, want[(len(ids)-1)*V:], 1e-4)
			})
		}
	}
}

// TestW2Orientations: the GGUF orientation in float gives the HF checkpoint's
// logits; holding both orientations, or a quantized HF-orientation w2, is an error.
func TestW2Orientations(t *testing.T) {
	src, err := weights.OpenSafetensors(fixtureDir("A"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	c, err := LoadConfig(fixtureDir("A"))
	if err != nil {
		t.Fatal(err)
	}
	E, F, D := c.FFNConfig.MoENumExperts, c.FFNConfig.FFNHiddenSize, c.DModel
	m := weights.Map{}
	for _, n := range src.Names() {
		m[n], _ = src.Tensor(n)
	}
	both := weights.Map{}
	for n, v := range m {
		both[n] = v
	}
	tm := weights.Map{}
	for n, v := range m {
		if !strings.HasSuffix(n, ".mlp.w2") {
			tm[n] = v
			continue
		}
		vals := tensor.Float32s(v.Data)
		tr := weights.Tensor{Name: n + weights.TransposedSuffix, DType: tensor.F32, Shape: tensor.Shape{E * D, F},
			Data: tensor.Float32Bytes(transposeW2(vals, E, F, D))}
		tm[tr.Name], both[tr.Name] = tr, tr
	}
	hf, err := Bind(c, m)
	if err != nil {
		t.Fatal(err)
	}
	gm, err := Bind(c, tm)
	if err != nil {
		t.Fatal(err)
	}
	if gm.Blocks[1].W2T.Rows != E*D || gm.Blocks[1].W2.Rows != 0 || hf.Blocks[1].W2.Rows != E*F || hf.Blocks[1].W2T.Rows != 0 {
		t.Fatal("wrong orientation bound")
	}
	ws := NewWorkspace(nil)
	ids := []int{1, 2, 3, 4, 5, 6, 7}
	checkClose(t, "w2.T vs w2 logits", fullLogits(t, gm, ws, ids), fullLogits(t, hf, ws, ids), 1e-5)

	if _, err := Bind(c, both); err == nil || !strings.Contains(err.Error(), "unexpected") || !strings.Contains(err.Error(), "w2.T") {
		t.Errorf("both orientations: err %v", err)
	}
	qs, _ := quantizeSource(t, c, m, tensor.Q8_0)
	bad := weights.Map{}
	for n, v := range qs {
		bad[n] = v
	}
	for n, v := range m { // HF-orientation w2, quantized: there is no x·w kernel for it
		if strings.HasSuffix(n, ".mlp.w2") {
			delete(bad, n+weights.TransposedSuffix)
			vals := tensor.Float32s(v.Data)
			data := make([]byte, len(vals)/32*34)
			if err := quant.Quantize(quant.Q8_0, data, vals); err != nil {
				t.Fatal(err)
			}
			bad[n] = weights.Tensor{Name: n, DType: tensor.Q8_0, Shape: v.Shape, Data: data}
		}
	}
	if _, err := Bind(c, bad); err == nil || !strings.Contains(err.Error(), "must be F32, BF16 or F16") {
		t.Errorf("quantized HF w2: err %v", err)
	}
}

// TestQuantizedDecodeAllocs: a decode step over quantized weights allocates nothing.
func TestQuantizedDecodeAllocs(t *testing.T) {
	// Scratch may come from a sync.Pool, which a GC cycle (likely while other test
	// packages run) can empty: measure the steady state with GC off.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	c := synthConfig()
	qs, _ := quantizeSource(t, c, synthSource(c, 2), tensor.Q4_K)
	m, err := Bind(c, qs)
	if err != nil {
		t.Fatal(err)
	}
	pool := parallel.New(2)
	defer pool.Close()
	ws := NewWorkspace(pool)
	cache := m.NewKVCache(0, 64)
	steps := []Step{{Cache: cache, IDs: []int{1, 2, 3, 4, 5, 6}}}
	if _, err := m.Forward(ws, steps); err != nil {
		t.Fatal(err)
	}
	steps[0].IDs = []int{42}
	if _, err := m.Forward(ws, steps); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(20, func() {
		if _, err := m.Forward(ws, steps); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("quantized decode step allocates %.1f times, want 0", allocs)
	}
}
