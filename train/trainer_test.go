package train

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/dbrx-engine/dbrx/data"
	"github.com/dbrx-engine/dbrx/internal/parallel"
	"github.com/dbrx-engine/dbrx/model/dbrx"
)

// tinyModel is a 2-layer, 4-expert DBRX small enough for many steps per second. The
// router jitter is on so that resuming must restore the RNG too.
const tinyModel = `{"d_model": 32, "n_heads": 4, "n_layers": 2, "max_seq_len": 64, "vocab_size": 96,
 "attn_config": {"kv_n_heads": 2, "clip_qkv": 8},
 "ffn_config": {"ffn_hidden_size": 48, "moe_num_experts": 4, "moe_top_k": 2, "moe_jitter_eps": 0.01}}`

// writeShard writes ids as one token shard.
func writeShard(t *testing.T, path string, ids []uint32) string {
	t.Helper()
	w, err := data.CreateShard(path, 95)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteTokens(ids); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// randShard writes n random ids below 96 drawn from seed.
func randShard(t *testing.T, path string, n int, seed uint64) string {
	r := rand.New(rand.NewPCG(seed, 1))
	ids := make([]uint32, n)
	for i := range ids {
		ids[i] = uint32(r.IntN(96))
	}
	return writeShard(t, path, ids)
}

// shardConfig is a run over two mixed sources with a curriculum, a held-out
// source, gradient accumulation, jitter and every kind of output.
func shardConfig(t *testing.T, runDir, dataDir string) Config {
	t.Helper()
	a := randShard(t, filepath.Join(dataDir, "a.tok"), 3000, 1)
	b := randShard(t, filepath.Join(dataDir, "b.tok"), 2000, 2)
	h := randShard(t, filepath.Join(dataDir, "h.tok"), 1000, 3)
	c := DefaultConfig()
	c.RunDir = runDir
	c.Seed = 7
	c.Threads = 2
	c.MaxSteps = 8
	c.Model.Config = json.RawMessage(tinyModel)
	c.Data = DataConfig{SeqLen: 16, BatchSize: 3, GradAccum: 2, Shuffle: true,
		Sources: []SourceConfig{{Name: "a", Paths: []string{a}}, {Name: "b", Paths: []string{b}}},
		Curriculum: []data.Stage{
			{AtTokens: 0, Weights: map[string]float64{"a": 0.8, "b": 0.2}},
			{AtTokens: 300, Weights: map[string]float64{"a": 0.2, "b": 0.8}},
		},
		EvalSources: []SourceConfig{{Name: "h", Paths: []string{h}}},
	}
	c.Optimizer.LR, c.Optimizer.MinLR, c.Optimizer.WarmupSteps = 3e-3, 3e-4, 2
	c.Optimizer.GradClip = 0.5
	c.ZLossWeight = 1e-3
	c.EvalEvery, c.EvalBatches = 3, 2
	c.ExpertStatsEvery = 2
	c.PlotEvery = 4
	c.CheckpointEvery = 3
	c.KeepCheckpoints = 2
	return c
}

// runTrainer trains cfg to completion (or until ctx is cancelled).
func runTrainer(t *testing.T, ctx context.Context, cfg Config, opts Options) error {
	t.Helper()
	tr, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	return tr.Run(ctx)
}

func readLines[T any](t *testing.T, path string) []T {
	t.Helper()
	v, err := readJSONL[T](path)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// sameTrajectory compares every numeric field of two metrics logs that depends on
// the computation (not on timing), bit for bit.
func sameTrajectory(t *testing.T, got, want []StepMetrics) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d metrics lines, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		g.TokensPerSec, g.MFU, g.Elapsed = 0, 0, 0
		w.TokensPerSec, w.MFU, w.Elapsed = 0, 0, 0
		if g != w {
			t.Errorf("step %d: got %+v\nwant %+v", w.Step, g, w)
		}
	}
}

func sameParams(t *testing.T, a, b *dbrx.Params) {
	t.Helper()
	for i := range a.Flat {
		if math.Float32bits(a.Flat[i]) != math.Float32bits(b.Flat[i]) {
			t.Fatalf("parameters differ at flat index %d: %v vs %v", i, a.Flat[i], b.Flat[i])
		}
	}
}

func loadCkpt(t *testing.T, dir string) *dbrx.Params {
	t.Helper()
	p, err := dbrx.LoadParams(dir)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestResumeBitExact interrupts a run (context cancelled, as Ctrl-C does) after step
// 4, resumes it in a new Trainer from the latest checkpoint, and requires every
// logged loss, gradient norm and eval loss, and the final weights, to equal those of
// an uninterrupted run bit for bit. The run mixes two sources under a curriculum,
// accumulates two micro-batches, clips, and draws router jitter.
func TestResumeBitExact(t *testing.T) {
	dataDir := t.TempDir()
	full := shardConfig(t, filepath.Join(t.TempDir(), "full"), dataDir)
	if err := runTrainer(t, context.Background(), full, Options{}); err != nil {
		t.Fatal(err)
	}

	cut := full
	cut.RunDir = filepath.Join(t.TempDir(), "cut")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err := runTrainer(t, ctx, cut, Options{Progress: func(p Progress) {
		if p.Step == 4 {
			cancel()
		}
	}})
	if !errors.Is(err, ErrInterrupted) || !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted run returned %v, want ErrInterrupted", err)
	}
	latest, err := LatestCheckpoint(cut.RunDir)
	if err != nil || filepath.Base(latest) != CheckpointName(4) {
		t.Fatalf("latest checkpoint %q (%v), want step 4", latest, err)
	}
	if err := runTrainer(t, context.Background(), cut, Options{Resume: "latest"}); err != nil {
		t.Fatal(err)
	}

	for _, f := range []string{MetricsFile} {
		sameTrajectory(t, readLines[StepMetrics](t, filepath.Join(cut.RunDir, f)), readLines[StepMetrics](t, filepath.Join(full.RunDir, f)))
	}
	ge, we := readLines[EvalMetrics](t, filepath.Join(cut.RunDir, EvalFile)), readLines[EvalMetrics](t, filepath.Join(full.RunDir, EvalFile))
	if len(ge) != len(we) || len(we) != 3 {
		t.Fatalf("%d eval lines, uninterrupted %d (want 3)", len(ge), len(we))
	}
	for i := range we {
		if ge[i].Step != we[i].Step || ge[i].Loss != we[i].Loss || ge[i].Tokens != we[i].Tokens {
			t.Errorf("eval %d: %+v, want %+v", i, ge[i], we[i])
		}
	}
	gx, wx := readLines[ExpertStats](t, filepath.Join(cut.RunDir, ExpertsFile)), readLines[ExpertStats](t, filepath.Join(full.RunDir, ExpertsFile))
	if !reflect.DeepEqual(gx, wx) {
		t.Errorf("expert statistics differ:\n%+v\n%+v", gx, wx)
	}
	a, _ := LatestCheckpoint(full.RunDir)
	b, _ := LatestCheckpoint(cut.RunDir)
	sameParams(t, loadCkpt(t, b), loadCkpt(t, a))

	// Checkpoints kept: the two newest of steps 3, 4 (interrupt), 6, 8.
	cks, _ := ListCheckpoints(cut.RunDir)
	if len(cks) != 2 || filepath.Base(cks[0]) != CheckpointName(6) || filepath.Base(cks[1]) != CheckpointName(8) {
		t.Errorf("kept checkpoints %v, want steps 6 and 8", cks)
	}
	ents, _ := os.ReadDir(filepath.Join(cut.RunDir, CheckpointsDir))
	if len(ents) != 2 {
		t.Errorf("checkpoints dir holds %d entries, want 2 (no temporaries)", len(ents))
	}
	// The losses move: the test would be vacuous on a constant curve.
	m := readLines[StepMetrics](t, filepath.Join(full.RunDir, MetricsFile))
	if len(m) != 8 || m[0].Loss == m[7].Loss || m[0].GradNorm == 0 {
		t.Errorf("suspicious trajectory: %+v", m)
	}
}

// TestResumeFromGivenCheckpoint resumes from an explicit, older checkpoint: the
// logs are cut back to its step and the run still ends where an uninterrupted one
// does.
func TestResumeFromGivenCheckpoint(t *testing.T) {
	dataDir := t.TempDir()
	full := shardConfig(t, filepath.Join(t.TempDir(), "full"), dataDir)
	full.KeepCheckpoints = 0
	if err := runTrainer(t, context.Background(), full, Options{}); err != nil {
		t.Fatal(err)
	}
	want := readLines[StepMetrics](t, filepath.Join(full.RunDir, MetricsFile))
	ck := filepath.Join(full.RunDir, CheckpointsDir, CheckpointName(3))
	if err := runTrainer(t, context.Background(), full, Options{Resume: ck}); err != nil {
		t.Fatal(err)
	}
	sameTrajectory(t, readLines[StepMetrics](t, filepath.Join(full.RunDir, MetricsFile)), want)
	cks, _ := ListCheckpoints(full.RunDir)
	if len(cks) != 3 { // 3, 6 (rewritten) and 8 (rewritten)
		t.Errorf("checkpoints after the rewind: %v", cks)
	}
	if _, err := New(full, Options{}); err == nil {
		t.Error("starting a new run in a directory with checkpoints should fail")
	}
}

// TestLoaderDeterminismThroughTrainer: the same config trains to the same bits;
// another seed changes the data order (and so the curve); and the batches the
// trainer consumed are exactly those of an independent data.Loader.
func TestLoaderDeterminismThroughTrainer(t *testing.T) {
	dataDir := t.TempDir()
	cfg := shardConfig(t, filepath.Join(t.TempDir(), "one"), dataDir)
	cfg.MaxSteps, cfg.EvalEvery, cfg.CheckpointEvery = 3, 0, 0
	if err := runTrainer(t, context.Background(), cfg, Options{}); err != nil {
		t.Fatal(err)
	}
	two := cfg
	two.RunDir = filepath.Join(t.TempDir(), "two")
	if err := runTrainer(t, context.Background(), two, Options{}); err != nil {
		t.Fatal(err)
	}
	first := readLines[StepMetrics](t, filepath.Join(cfg.RunDir, MetricsFile))
	sameTrajectory(t, readLines[StepMetrics](t, filepath.Join(two.RunDir, MetricsFile)), first)

	other := cfg
	other.RunDir = filepath.Join(t.TempDir(), "other")
	other.Seed = 8
	if err := runTrainer(t, context.Background(), other, Options{}); err != nil {
		t.Fatal(err)
	}
	if o := readLines[StepMetrics](t, filepath.Join(other.RunDir, MetricsFile)); o[0].CE == first[0].CE {
		t.Error("a different seed gave the same first loss")
	}

	// The trainer's source against an independent loader over the same shards.
	tr2, err := New(func() Config { c := cfg; c.RunDir = filepath.Join(t.TempDir(), "src"); return c }(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer tr2.Close()
	srcs, _ := resolveSources(cfg.Data.Sources, data.SplitTrain)
	l, err := data.NewLoader(data.LoaderConfig{Sources: srcs, Curriculum: cfg.Data.Curriculum, Batch: 3, SeqLen: 16,
		Seed: cfg.Seed, Shuffle: true, WorldSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var db data.Batch
	var b dbrx.Batch
	for i := 0; i < 10; i++ {
		if err := tr2.src.Next(&b); err != nil {
			t.Fatal(err)
		}
		if err := l.Next(&db); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(b.IDs, db.Inputs) || !reflect.DeepEqual(b.Targets, db.Targets) {
			t.Fatalf("batch %d differs from the data.Loader's", i)
		}
	}
}

// TestOverfitOneBatch trains a tiny model through the real loop on a single
// repeated batch until the loss is below 0.1.
func TestOverfitOneBatch(t *testing.T) {
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(3, 3))
	ids := make([]uint32, 17) // exactly one window of T+1 = 17 tokens
	for i := range ids {
		ids[i] = uint32(r.IntN(96))
	}
	src := writeShard(t, filepath.Join(dir, "one.tok"), ids)
	c := DefaultConfig()
	c.RunDir = filepath.Join(dir, "run")
	c.Seed, c.Threads, c.MaxSteps = 1, 2, 150
	c.Model.Config = json.RawMessage(tinyModel)
	c.Data = DataConfig{SeqLen: 16, BatchSize: 2, GradAccum: 1, Shuffle: true,
		Sources: []SourceConfig{{Name: "one", Paths: []string{src}}}}
	c.Optimizer = OptimizerConfig{Name: "adamw", LR: 1e-2, MinLR: 1e-3, WarmupSteps: 5, GradClip: 1}
	c.LogEvery = 10
	if err := runTrainer(t, context.Background(), c, Options{}); err != nil {
		t.Fatal(err)
	}
	m := readLines[StepMetrics](t, filepath.Join(c.RunDir, MetricsFile))
	last := m[len(m)-1]
	t.Logf("first %+v", m[0])
	t.Logf("last  %+v", last)
	if last.Step != 150 || !(last.Loss < 0.1) {
		t.Fatalf("after %d steps loss %.4f (ce %.4f), want < 0.1", last.Step, last.Loss, last.CE)
	}
}

// TestCheckpointLoadable: a checkpoint is a Hugging Face model directory that
// dbrx.Load binds strictly and whose logits equal those of the in-memory params.
func TestCheckpointLoadable(t *testing.T) {
	dataDir := t.TempDir()
	cfg := shardConfig(t, filepath.Join(t.TempDir(), "run"), dataDir)
	cfg.MaxSteps, cfg.EvalEvery = 2, 0
	tr, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if err := tr.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	dir, err := LatestCheckpoint(cfg.RunDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"config.json", ModelFile, OptimizerFile, StateFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
	disk, err := dbrx.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer disk.Close()
	mem, err := tr.Params().Bind()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(disk.Config.FFNConfig, mem.Config.FFNConfig) || disk.Config.DModel != mem.Config.DModel {
		t.Errorf("config.json round trip: %+v, want %+v", disk.Config, mem.Config)
	}
	pool := parallel.New(2)
	defer pool.Close()
	ids := []int{1, 5, 9, 94, 0, 33, 2}
	logits := func(m *dbrx.Model) []float32 {
		out, err := m.Forward(dbrx.NewWorkspace(pool), []dbrx.Step{{Cache: m.NewKVCache(len(ids), len(ids)), IDs: ids, AllLogits: true}})
		if err != nil {
			t.Fatal(err)
		}
		return append([]float32(nil), out...)
	}
	a, b := logits(disk), logits(mem)
	if len(a) != len(ids)*96 {
		t.Fatalf("%d logits", len(a))
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			t.Fatalf("logit %d: checkpoint %v, in memory %v", i, a[i], b[i])
		}
	}
	var cj map[string]any
	raw, _ := os.ReadFile(filepath.Join(dir, "config.json"))
	if err := json.Unmarshal(raw, &cj); err != nil || cj["model_type"] != "dbrx" || cj["torch_dtype"] != "float32" {
		t.Errorf("config.json: %v %v", cj, err)
	}
}

// TestPlotPNG decodes the loss plot and checks that both curves were drawn.
func TestPlotPNG(t *testing.T) {
	var tr, ev []Point
	for s := 1; s <= 300; s++ {
		tr = append(tr, Point{s, 2 + 8*math.Exp(-float64(s)/40) + 0.2*math.Sin(float64(s))})
		if s%50 == 0 {
			ev = append(ev, Point{s, 2.3 + 8*math.Exp(-float64(s)/40)})
		}
	}
	b, err := PlotLoss(tr, ev)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if img.Bounds().Dx() != plotW || img.Bounds().Dy() != plotH {
		t.Fatalf("size %v", img.Bounds())
	}
	count := map[[3]uint32]int{}
	for y := 0; y < plotH; y++ {
		for x := 0; x < plotW; x++ {
			r, g, b, _ := img.At(x, y).RGBA()
			count[[3]uint32{r >> 8, g >> 8, b >> 8}]++
		}
	}
	for _, c := range []struct {
		name string
		rgb  [3]uint32
	}{{"train", [3]uint32{31, 90, 180}}, {"eval", [3]uint32{230, 110, 20}}, {"axis", [3]uint32{0, 0, 0}}} {
		if count[c.rgb] < 200 {
			t.Errorf("%s colour drawn on %d pixels", c.name, count[c.rgb])
		}
	}
	if out := os.Getenv("DBRX_PLOT_OUT"); out != "" {
		os.WriteFile(out, b, 0o644)
	}
	// Degenerate inputs draw without panicking.
	for _, pts := range [][]Point{nil, {{1, 3}}, {{1, math.NaN()}, {2, math.Inf(1)}}} {
		if _, err := PlotLoss(pts, nil); err != nil {
			t.Error(err)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	ok := DefaultConfig()
	ok.RunDir = "r"
	ok.Model.Config = json.RawMessage(tinyModel)
	ok.Data.Synthetic = true
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*Config){
		"no run dir":    func(c *Config) { c.RunDir = "" },
		"two models":    func(c *Config) { c.Model.InitFrom = "x" },
		"two data":      func(c *Config) { c.Data.SFT = &SFTConfig{Train: []string{"a"}} },
		"bad optimizer": func(c *Config) { c.Optimizer.Name = "sgd" },
		"min lr > lr":   func(c *Config) { c.Optimizer.MinLR = 1 },
		"bad aux":       func(c *Config) { c.AuxLoss = "x" },
		"accum 0":       func(c *Config) { c.Data.GradAccum = 0 },
		"lion eps":      func(c *Config) { c.Optimizer.Name = "lionw"; e := 1e-8; c.Optimizer.Eps = &e },
	} {
		c := ok
		mut(&c)
		if err := c.Validate(); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := ParseConfig([]byte(`{"run_dir": "r", "nope": 1}`)); !errors.Is(err, ErrConfig) {
		t.Errorf("unknown field: %v", err)
	}
	c, err := ParseConfig([]byte(`{"run_dir": "r", "data": {"seq_len": 8}}`))
	if err != nil || c.Data.BatchSize != 8 || !c.Data.Shuffle || c.Data.SeqLen != 8 {
		t.Errorf("defaults under a partial object: %+v %v", c.Data, err)
	}
	// The schedule: warmup from lr/warmup, cosine to min_lr at max_steps.
	s := DefaultConfig()
	s.MaxSteps, s.Optimizer.WarmupSteps = 100, 10
	if got := s.LR(1); math.Abs(got-3e-5) > 1e-12 {
		t.Errorf("LR(1) = %v", got)
	}
	if got := s.LR(10); got != 3e-4 {
		t.Errorf("LR(10) = %v", got)
	}
	if got := s.LR(100); got != 3e-5 {
		t.Errorf("LR(100) = %v", got)
	}
}

func TestFLOPs(t *testing.T) {
	c := dbrx.DefaultConfig()
	c.DModel, c.NHeads, c.NLayers, c.VocabSize = 256, 4, 4, 100352
	c.AttnConfig.KVNHeads = 2
	c.FFNConfig.FFNHiddenSize, c.FFNConfig.MoENumExperts, c.FFNConfig.MoETopK = 512, 8, 2
	// per layer: Wqkv 512·256 + out 256² + router 8·256 + 2 experts·3·512·256
	want := int64(4*(512*256+256*256+8*256+2*3*512*256) + 100352*256)
	if got := ActiveParams(c); got != want {
		t.Errorf("active params %d, want %d", got, want)
	}
	if got, w := FLOPsPerToken(c, 256), 6*float64(want)+6*4*256*257; got != w {
		t.Errorf("flops/token %v, want %v", got, w)
	}
}

// cancelSource cancels a context while the call-th batch is being read: the trainer
// notices before the next micro-batch, in the middle of a step.
type cancelSource struct {
	batchSource
	calls, at int
	cancel    context.CancelFunc
}

func (c *cancelSource) Next(b *dbrx.Batch) error {
	if c.calls == c.at {
		c.cancel()
	}
	c.calls++
	return c.batchSource.Next(b)
}

// TestInterruptMidStep cancels between the two micro-batches of step 3: the partial
// step is discarded (data position and RNG rewound), the checkpoint is of step 2,
// and the resumed run still matches the uninterrupted one bit for bit.
func TestInterruptMidStep(t *testing.T) {
	dataDir := t.TempDir()
	full := shardConfig(t, filepath.Join(t.TempDir(), "full"), dataDir)
	full.MaxSteps, full.CheckpointEvery = 5, 0
	if err := runTrainer(t, context.Background(), full, Options{}); err != nil {
		t.Fatal(err)
	}
	cut := full
	cut.RunDir = filepath.Join(t.TempDir(), "cut")
	tr, err := New(cut, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tr.src = &cancelSource{batchSource: tr.src, at: 4, cancel: cancel} // step 3, micro-batch 1
	err = tr.Run(ctx)
	tr.Close()
	if !errors.Is(err, ErrInterrupted) || tr.Step() != 2 {
		t.Fatalf("Run returned %v at step %d, want ErrInterrupted at step 2", err, tr.Step())
	}
	if err := runTrainer(t, context.Background(), cut, Options{Resume: "latest"}); err != nil {
		t.Fatal(err)
	}
	sameTrajectory(t, readLines[StepMetrics](t, filepath.Join(cut.RunDir, MetricsFile)), readLines[StepMetrics](t, filepath.Join(full.RunDir, MetricsFile)))
	a, _ := LatestCheckpoint(full.RunDir)
	b, _ := LatestCheckpoint(cut.RunDir)
	sameParams(t, loadCkpt(t, b), loadCkpt(t, a))

	// Expert load lines: per layer, fractions of tokens summing to top_k = 2.
	for _, s := range readLines[ExpertStats](t, filepath.Join(full.RunDir, ExpertsFile)) {
		for l, load := range s.Load {
			var sum float64
			for _, f := range load {
				sum += f
			}
			if math.Abs(sum-2) > 1e-9 || s.MaxOverMean[l] < 1 {
				t.Errorf("step %d layer %d: load %v sums to %v", s.Step, l, load, sum)
			}
		}
	}
}

// TestInitFrom continues training a Hugging Face checkpoint (fixture B: bf16 weights
// written by transformers): the weights are widened, the first loss is the model's
// loss on the first batch, and generation_config.json is carried into checkpoints.
func TestInitFrom(t *testing.T) {
	src := filepath.Join("..", "testdata", "dbrx", "B")
	c := DefaultConfig()
	c.RunDir = t.TempDir()
	c.Seed, c.Threads, c.MaxSteps = 5, 2, 2
	c.Model.InitFrom = src
	c.Data = DataConfig{Synthetic: true, SeqLen: 12, BatchSize: 2, GradAccum: 1}
	tr, err := New(c, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	// The first batch's loss under the untouched checkpoint weights.
	p0, err := dbrx.LoadParams(src)
	if err != nil {
		t.Fatal(err)
	}
	first := &syntheticSource{seed: c.Seed, V: p0.Config.VocabSize, B: 2, T: 12}
	var b dbrx.Batch
	first.Next(&b)
	pool := parallel.New(2)
	defer pool.Close()
	ls, err := dbrx.NewTrainState(pool).Forward(p0, b, dbrx.TrainOptions{AuxLoss: dbrx.AuxMegaBlocks})
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	m := readLines[StepMetrics](t, filepath.Join(c.RunDir, MetricsFile))
	if m[0].Loss != ls.Total {
		t.Errorf("first loss %v, checkpoint's loss on that batch %v", m[0].Loss, ls.Total)
	}
	ck, _ := LatestCheckpoint(c.RunDir)
	want, _ := os.ReadFile(filepath.Join(src, GenerationConfig))
	got, err := os.ReadFile(filepath.Join(ck, GenerationConfig))
	if err != nil || string(got) != string(want) {
		t.Errorf("generation_config.json not carried over: %v", err)
	}
	if p := loadCkpt(t, ck); p.Config.FFNConfig.MoETopK != p0.Config.FFNConfig.MoETopK || p.Config.AttnConfig.ClipQKV == nil {
		t.Errorf("config not carried over: %+v", p.Config)
	}
}
