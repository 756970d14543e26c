package train

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/dbrx-engine/dbrx/data"
	"github.com/dbrx-engine/dbrx/internal/parallel"
	"github.com/dbrx-engine/dbrx/model/dbrx"
	"github.com/dbrx-engine/dbrx/optim"
)

// Files written in Config.RunDir.
const (
	MetricsFile = "metrics.jsonl"     // StepMetrics, one per logged step
	EvalFile    = "eval.jsonl"        // EvalMetrics
	ExpertsFile = "experts.jsonl"     // ExpertStats
	PlotFile    = "loss.png"          // PlotLoss of the two
	ConfigFile  = "train_config.json" // the resolved Config of the latest start
)

// ErrInterrupted is returned by Run when its context is cancelled: the trainer has
// saved a checkpoint of the last completed step, from which --resume continues.
var ErrInterrupted = errors.New("train: interrupted")

// Options are the run-time settings of a Trainer that are not part of its Config.
type Options struct {
	// Logger receives progress events (checkpoints, evals, expert load); nil discards.
	Logger *slog.Logger
	// Resume continues a run from a checkpoint: "latest" (the newest under RunDir) or
	// a checkpoint directory. Empty starts a new run, which is refused if RunDir
	// already holds checkpoints.
	Resume string
	// Progress, if set, is called after every logged step.
	Progress func(Progress)
}

// Progress is what Options.Progress receives.
type Progress struct {
	StepMetrics
	MaxSteps int
	ETA      time.Duration // for the remaining steps, at this process's pace
	EvalLoss float64       // latest held-out loss, NaN if none yet
}

// Trainer runs the training loop of one Config: micro-batches through the exact
// DBRX forward and backward, gradient accumulation, global-norm clipping, the
// optimizer under a warmup+cosine schedule, evaluation, metrics, plots and atomic
// checkpoints that resume bit for bit. A Trainer is not safe for concurrent use.
type Trainer struct {
	cfg  Config
	opts Options
	log  *slog.Logger

	pool    *parallel.Pool
	mc      dbrx.Config
	params  *dbrx.Params // weights being trained
	grads   *dbrx.Params // their gradient
	oparams []optim.Param
	opt     Optimizer
	st      *dbrx.TrainState
	sched   optim.Schedule
	aux     dbrx.AuxLoss

	src   batchSource
	batch dbrx.Batch
	evals []dbrx.Batch // held-out batches, fixed for the run

	pcg *rand.PCG  // router jitter
	rnd *rand.Rand // over pcg

	step      int
	tokens    int64
	elapsed   time.Duration // training time of earlier processes of this run
	lastLR    float64
	lastSaved int // step of the newest checkpoint, -1 if none
	lastEval  int // step of the last eval, -1 if none
	evalLoss  float64

	expCounts []int64 // [L·E] assignments since the last expert-stats line
	expTokens int64
	stepCnt   []int64 // [L·E] this step's, merged when the step completes

	genConfig []byte // generation_config.json carried into checkpoints

	metrics, evalLog, expertLog *jsonl
	trainPts, evalPts           []Point

	flopsPerToken float64
}

// New prepares a run: it builds or loads the model (fresh initialisation,
// init_from, or the checkpoint given by opts.Resume), the optimizer, and the data.
func New(cfg Config, opts Options) (_ *Trainer, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	t := &Trainer{cfg: cfg, opts: opts, log: opts.Logger, lastSaved: -1, lastEval: -1, evalLoss: math.NaN()}
	if t.log == nil {
		t.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	defer func() {
		if err != nil {
			t.Close()
		}
	}()
	if err := os.MkdirAll(cfg.RunDir, 0o755); err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	removeStaleTemps(cfg.RunDir)

	ckpt := ""
	switch opts.Resume {
	case "":
		if cks, err := ListCheckpoints(cfg.RunDir); err != nil {
			return nil, err
		} else if len(cks) > 0 {
			return nil, fmt.Errorf("%w: %s already holds checkpoints (newest %s): resume it or choose another run_dir",
				ErrConfig, cfg.RunDir, cks[len(cks)-1])
		}
	case "latest", "true":
		if ckpt, err = LatestCheckpoint(cfg.RunDir); err != nil {
			return nil, err
		}
	default:
		ckpt = opts.Resume
	}

	if err := t.loadModel(ckpt); err != nil {
		return nil, err
	}
	t.sched, _ = cfg.schedule()
	t.aux, _ = dbrx.ParseAuxLoss(cfg.AuxLoss)
	t.pool = parallel.New(cfg.Threads)
	t.st = dbrx.NewTrainState(t.pool)
	if t.grads, err = dbrx.NewParams(t.mc); err != nil {
		return nil, err
	}
	t.oparams = optimParams(t.params, t.grads)
	if t.opt, err = cfg.newOptimizer(t.pool); err != nil {
		return nil, err
	}
	if err := t.openData(); err != nil {
		return nil, err
	}
	t.pcg = rand.NewPCG(cfg.Seed, 0x6a6974746572) // "jitter"
	t.rnd = rand.New(t.pcg)
	E := t.mc.FFNConfig.MoENumExperts
	t.expCounts = make([]int64, t.mc.NLayers*E)
	t.stepCnt = make([]int64, t.mc.NLayers*E)
	t.flopsPerToken = FLOPsPerToken(t.mc, cfg.Data.SeqLen)

	if ckpt != "" {
		if err := t.restore(ckpt); err != nil {
			return nil, err
		}
	} else {
		for _, f := range []string{MetricsFile, EvalFile, ExpertsFile} {
			if err := os.Remove(filepath.Join(cfg.RunDir, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("train: %w", err)
			}
		}
	}
	cj, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	if err := writeAtomic(filepath.Join(cfg.RunDir, ConfigFile), append(cj, '\n')); err != nil {
		return nil, err
	}
	if t.metrics, err = openJSONL(filepath.Join(cfg.RunDir, MetricsFile)); err != nil {
		return nil, err
	}
	if t.evalLog, err = openJSONL(filepath.Join(cfg.RunDir, EvalFile)); err != nil {
		return nil, err
	}
	if t.expertLog, err = openJSONL(filepath.Join(cfg.RunDir, ExpertsFile)); err != nil {
		return nil, err
	}
	total := len(t.params.Flat)
	t.log.Info("train: ready", "params", total, "active_params", ActiveParams(t.mc),
		"gflop_per_token", t.flopsPerToken/1e9, "tokens_per_step", t.tokensPerStep(),
		"threads", t.pool.Workers(), "step", t.step, "max_steps", cfg.MaxSteps)
	return t, nil
}

// loadModel builds the parameters: from a checkpoint, init_from, or fresh.
func (t *Trainer) loadModel(ckpt string) error {
	m := t.cfg.Model
	var err error
	dir := ckpt
	if dir == "" {
		dir = m.InitFrom
	}
	if dir != "" {
		if t.params, err = dbrx.LoadParams(dir); err != nil {
			return err
		}
		t.mc = t.params.Config
		if g, err := os.ReadFile(filepath.Join(dir, GenerationConfig)); err == nil {
			t.genConfig = g
		}
		t.log.Info("train: loaded weights", "from", dir)
	} else {
		raw := []byte(m.Config)
		if m.ConfigFile != "" {
			if raw, err = os.ReadFile(m.ConfigFile); err != nil {
				return fmt.Errorf("train: %w", err)
			}
		}
		if t.mc, err = dbrx.ParseConfig(raw); err != nil {
			return fmt.Errorf("train: model config: %w", err)
		}
		if t.params, err = dbrx.NewParams(t.mc); err != nil {
			return fmt.Errorf("train: model config: %w", err)
		}
		t.params.Init(t.cfg.Seed)
	}
	if t.mc.MaxSeqLen > 0 && t.cfg.Data.SeqLen > t.mc.MaxSeqLen {
		t.log.Warn("train: seq_len exceeds the model's max_seq_len", "seq_len", t.cfg.Data.SeqLen, "max_seq_len", t.mc.MaxSeqLen)
	}
	return nil
}

// openData builds the training source and the held-out batches.
func (t *Trainer) openData() error {
	d := t.cfg.Data
	B, T := d.BatchSize, d.SeqLen
	wantEval := t.cfg.EvalEvery > 0
	switch {
	case d.Synthetic:
		t.src = &syntheticSource{seed: t.cfg.Seed, V: t.mc.VocabSize, B: B, T: T}
		if wantEval {
			ev := &syntheticSource{seed: t.cfg.Seed ^ 0x6576616c, V: t.mc.VocabSize, B: B, T: T}
			if err := t.takeEvals(ev, max(t.cfg.EvalBatches, 1)); err != nil {
				return err
			}
		}
	case d.SFT != nil:
		ex, skipped, err := loadExamples(d.SFT.Train, d.SFT.DefaultSystemPrompt)
		if err != nil {
			return err
		}
		if skipped > 0 {
			t.log.Warn("train: conversations without assistant tokens skipped", "count", skipped)
		}
		t.logTruncation(ex, "train")
		pad := sftPadID(t.mc.VocabSize)
		t.src = newSFTSource(ex, t.cfg.Seed, d.Shuffle, d.SFT.Pack, pad, B, T)
		if wantEval && len(d.SFT.Eval) > 0 {
			ev, _, err := loadExamples(d.SFT.Eval, d.SFT.DefaultSystemPrompt)
			if err != nil {
				return err
			}
			s := newSFTSource(ev, t.cfg.Seed, false, d.SFT.Pack, pad, B, T)
			n := (len(ev) + B - 1) / B
			if d.SFT.Pack {
				n = int((s.total + int64(B*T) - 1) / int64(B*T))
			}
			if t.cfg.EvalBatches > 0 {
				n = min(n, t.cfg.EvalBatches)
			}
			if err := t.takeEvals(s, n); err != nil {
				return err
			}
		}
	default:
		srcs, err := resolveSources(d.Sources, data.SplitTrain)
		if err != nil {
			return err
		}
		l, err := data.NewLoader(data.LoaderConfig{Sources: srcs, Weights: d.Weights, Curriculum: d.Curriculum,
			Batch: B, SeqLen: T, Seed: t.cfg.Seed, Shuffle: d.Shuffle, WorldSize: 1})
		if err != nil {
			return fmt.Errorf("train: %w", err)
		}
		t.src = &shardSource{l: l}
		if wantEval {
			return t.openShardEval()
		}
	}
	return nil
}

// openShardEval reads the held-out batches of a token-shard run: eval_sources, or
// the held-out split of every manifest source that has one.
func (t *Trainer) openShardEval() error {
	d := t.cfg.Data
	var srcs []data.Source
	if len(d.EvalSources) > 0 {
		var err error
		if srcs, err = resolveSources(d.EvalSources, data.SplitHeldOut); err != nil {
			return err
		}
	} else {
		for _, c := range d.Sources {
			if c.Manifest == "" {
				continue
			}
			s, err := data.ManifestSource(c.Manifest, data.SplitHeldOut, c.Name)
			if err != nil {
				t.log.Warn("train: no held-out data for source", "source", c.Name, "err", err)
				continue
			}
			srcs = append(srcs, s)
		}
	}
	if len(srcs) == 0 {
		t.log.Warn("train: eval_every is set but there is no held-out data; evaluation is off")
		return nil
	}
	l, err := data.NewLoader(data.LoaderConfig{Sources: srcs, Batch: d.BatchSize, SeqLen: d.SeqLen,
		Seed: t.cfg.Seed, Shuffle: false, WorldSize: 1})
	if err != nil {
		return fmt.Errorf("train: eval data: %w", err)
	}
	ev := &shardSource{l: l}
	defer ev.Close()
	n := t.cfg.EvalBatches
	if n == 0 {
		var w int64
		for _, s := range srcs {
			w += l.Windows(s.Name)
		}
		n = int(max(1, w/int64(d.BatchSize)))
	}
	return t.takeEvals(ev, n)
}

// takeEvals stores the first n batches of src as the held-out set.
func (t *Trainer) takeEvals(src batchSource, n int) error {
	var b dbrx.Batch
	for i := 0; i < n; i++ {
		if err := src.Next(&b); err != nil {
			return fmt.Errorf("train: eval data: %w", err)
		}
		t.evals = append(t.evals, copyBatch(b))
	}
	return nil
}

func (t *Trainer) logTruncation(ex []Example, what string) {
	if t.cfg.Data.SFT.Pack {
		return
	}
	n := 0
	for _, e := range ex {
		if len(e.IDs) > t.cfg.Data.SeqLen+1 {
			n++
		}
	}
	if n > 0 {
		t.log.Warn("train: conversations longer than seq_len+1 tokens are truncated", "split", what, "count", n, "of", len(ex))
	}
}

// restore loads the optimizer and trainer state of a checkpoint (the weights are
// already loaded) and trims the run's logs to its step.
func (t *Trainer) restore(dir string) error {
	st, err := readState(dir)
	if err != nil {
		return err
	}
	d := t.cfg.Data
	if st.Seed != t.cfg.Seed || st.SeqLen != d.SeqLen {
		return fmt.Errorf("%w: checkpoint %s was trained with seed %d and seq_len %d, the config says %d and %d",
			ErrConfig, dir, st.Seed, st.SeqLen, t.cfg.Seed, d.SeqLen)
	}
	if st.BatchSize != d.BatchSize || st.GradAccum != d.GradAccum {
		t.log.Warn("train: batch_size or grad_accum differ from the checkpoint's; the run will not match an uninterrupted one",
			"checkpoint_batch", st.BatchSize, "checkpoint_accum", st.GradAccum)
	}
	if st.Optimizer != t.cfg.Optimizer.Name {
		return fmt.Errorf("%w: checkpoint %s has %s optimizer state, the config says %s", ErrConfig, dir, st.Optimizer, t.cfg.Optimizer.Name)
	}
	if err := loadOptimizer(filepath.Join(dir, OptimizerFile), t.opt, t.oparams); err != nil {
		return err
	}
	if err := t.src.Restore(st.Data); err != nil {
		return err
	}
	if err := t.pcg.UnmarshalBinary(st.RNG); err != nil {
		return fmt.Errorf("train: %s: rng: %w", dir, err)
	}
	if len(st.ExpertCounts) == len(t.expCounts) {
		copy(t.expCounts, st.ExpertCounts)
		t.expTokens = st.ExpertTokens
	}
	// Rewinding to an older checkpoint abandons the later ones: remove them, so that a
	// later --resume cannot pick a checkpoint of the abandoned timeline.
	cks, err := ListCheckpoints(t.cfg.RunDir)
	if err != nil {
		return err
	}
	for _, ck := range cks {
		if n, _ := checkpointStep(filepath.Base(ck)); n > st.Step {
			t.log.Warn("train: removing a checkpoint newer than the one resumed from", "checkpoint", ck)
			if err := os.RemoveAll(ck); err != nil {
				return fmt.Errorf("train: %w", err)
			}
		}
	}
	t.step, t.tokens, t.lastLR = st.Step, st.TokensSeen, st.LR
	t.elapsed = time.Duration(st.ElapsedSeconds * float64(time.Second))
	t.lastSaved = st.Step

	ml, err := truncateJSONL(filepath.Join(t.cfg.RunDir, MetricsFile), st.Step)
	if err != nil {
		return err
	}
	for _, line := range ml {
		var m StepMetrics
		if json.Unmarshal(line, &m) == nil {
			t.trainPts = append(t.trainPts, Point{m.Step, m.Loss})
		}
	}
	el, err := truncateJSONL(filepath.Join(t.cfg.RunDir, EvalFile), st.Step)
	if err != nil {
		return err
	}
	for _, line := range el {
		var m EvalMetrics
		if json.Unmarshal(line, &m) == nil {
			t.evalPts = append(t.evalPts, Point{m.Step, m.Loss})
			t.lastEval, t.evalLoss = m.Step, m.Loss
		}
	}
	if _, err := truncateJSONL(filepath.Join(t.cfg.RunDir, ExpertsFile), st.Step); err != nil {
		return err
	}
	t.log.Info("train: resumed", "checkpoint", dir, "step", st.Step, "tokens", st.TokensSeen)
	return nil
}

// Close releases the data, the worker pool and the log files.
func (t *Trainer) Close() error {
	var first error
	keep := func(err error) {
		if err != nil && first == nil {
			first = err
		}
	}
	if t.src != nil {
		keep(t.src.Close())
		t.src = nil
	}
	if t.pool != nil {
		t.pool.Close()
		t.pool = nil
	}
	keep(t.metrics.Close())
	keep(t.evalLog.Close())
	keep(t.expertLog.Close())
	return first
}

// Step returns the number of optimizer steps taken.
func (t *Trainer) Step() int { return t.step }

// TokensSeen returns the number of input tokens trained on.
func (t *Trainer) TokensSeen() int64 { return t.tokens }

// Params returns the live parameters (Params.Bind gives an inference model on them).
func (t *Trainer) Params() *dbrx.Params { return t.params }

// ModelConfig returns the architecture being trained.
func (t *Trainer) ModelConfig() dbrx.Config { return t.mc }

func (t *Trainer) tokensPerStep() int64 {
	d := t.cfg.Data
	return int64(d.BatchSize * d.SeqLen * d.GradAccum)
}

// errStepCancelled aborts a step between micro-batches.
var errStepCancelled = errors.New("train: step cancelled")

// trainStep runs one optimizer step: grad_accum micro-batches, clipping, update.
// Cancelled between micro-batches, it rewinds the data and RNG and returns
// errStepCancelled with the parameters untouched.
func (t *Trainer) trainStep(ctx context.Context) (StepMetrics, error) {
	d := t.cfg.Data
	srcState, err := t.src.State()
	if err != nil {
		return StepMetrics{}, err
	}
	rngState, err := t.pcg.MarshalBinary()
	if err != nil {
		return StepMetrics{}, err
	}
	rewind := func() error {
		if err := t.src.Restore(srcState); err != nil {
			return err
		}
		return t.pcg.UnmarshalBinary(rngState)
	}
	lr := t.sched.LR(t.step + 1)
	g := t.grads.Flat
	t.pool.For(len(g), 1<<16, func(lo, hi int) { clear(g[lo:hi]) })
	clear(t.stepCnt)
	var stepTok int64
	opt := dbrx.TrainOptions{AuxLoss: t.aux, ZLossWeight: t.cfg.ZLossWeight,
		GradScale: float32(1 / float64(d.GradAccum)), Train: true, Rand: t.rnd}
	var m StepMetrics
	for mb := 0; mb < d.GradAccum; mb++ {
		if mb > 0 && ctx.Err() != nil {
			if err := rewind(); err != nil {
				return StepMetrics{}, err
			}
			return StepMetrics{}, errStepCancelled
		}
		if err := t.src.Next(&t.batch); err != nil {
			return StepMetrics{}, err
		}
		ls, err := t.st.LossAndGrad(t.params, t.batch, opt, t.grads)
		if err != nil {
			return StepMetrics{}, fmt.Errorf("train: step %d: %w", t.step+1, err)
		}
		m.Loss += ls.Total
		m.CE += ls.CE
		m.Aux += ls.Aux
		m.Z += ls.Z
		stepTok += int64(t.st.AddExpertCounts(t.stepCnt))
	}
	n := float64(d.GradAccum)
	m.Loss, m.CE, m.Aux, m.Z = m.Loss/n, m.CE/n, m.Aux/n, m.Z/n
	// Clipping (torch's clip_grad_norm_) scales the gradients as the optimizer reads
	// them: the same float32 products without a pass of their own.
	m.GradNorm = math.Sqrt(optim.SumSquares(t.pool, t.oparams))
	clip, _ := optim.ClipScale(m.GradNorm, t.cfg.Optimizer.GradClip)
	if math.IsNaN(m.GradNorm) || math.IsInf(m.GradNorm, 0) {
		m.Skipped = true
		t.log.Warn("train: non-finite gradient norm, update skipped", "step", t.step+1, "grad_norm", m.GradNorm)
	} else if err := t.opt.StepScaled(t.oparams, lr, clip); err != nil {
		return StepMetrics{}, fmt.Errorf("train: step %d: %w", t.step+1, err)
	}
	for i, c := range t.stepCnt {
		t.expCounts[i] += c
	}
	t.expTokens += stepTok
	t.step++
	t.tokens += t.tokensPerStep()
	t.lastLR = lr
	m.Step, m.LR, m.Tokens = t.step, lr, t.tokens
	return m, nil
}

// Run trains until max_steps, evaluating, logging and checkpointing on the way. When
// ctx is cancelled it stops after the current micro-batch, saves a checkpoint of the
// last completed step and returns an error matching ErrInterrupted.
func (t *Trainer) Run(ctx context.Context) error {
	c := t.cfg
	start := time.Now()
	startStep := t.step
	var trainTime time.Duration // since the last logged line
	var trainTok int64
	elapsed := func() time.Duration { return t.elapsed + time.Since(start) }
	for t.step < c.MaxSteps {
		if ctx.Err() != nil {
			return t.interrupt(ctx, elapsed())
		}
		t0 := time.Now()
		m, err := t.trainStep(ctx)
		if errors.Is(err, errStepCancelled) {
			return t.interrupt(ctx, elapsed())
		}
		if err != nil {
			return err
		}
		trainTime += time.Since(t0)
		trainTok += t.tokensPerStep()
		last := t.step == c.MaxSteps
		if t.step%c.LogEvery == 0 || last {
			if s := trainTime.Seconds(); s > 0 {
				m.TokensPerSec = float64(trainTok) / s
			}
			m.MFU = t.flopsPerToken * m.TokensPerSec / (PeakFLOPsPerCore * float64(t.pool.Workers()))
			m.Elapsed = elapsed().Seconds()
			trainTime, trainTok = 0, 0
			if err := t.metrics.write(m); err != nil {
				return err
			}
			t.trainPts = append(t.trainPts, Point{m.Step, m.Loss})
			if t.opts.Progress != nil {
				perStep := time.Since(start) / time.Duration(t.step-startStep)
				t.opts.Progress(Progress{StepMetrics: m, MaxSteps: c.MaxSteps,
					ETA: perStep * time.Duration(c.MaxSteps-t.step), EvalLoss: t.evalLoss})
			}
		}
		if c.EvalEvery > 0 && (t.step%c.EvalEvery == 0 || last) {
			if _, err := t.evaluate(elapsed()); err != nil {
				return err
			}
		}
		if c.ExpertStatsEvery > 0 && (t.step%c.ExpertStatsEvery == 0 || last) {
			if err := t.writeExpertStats(); err != nil {
				return err
			}
		}
		if c.PlotEvery > 0 && t.step%c.PlotEvery == 0 || last {
			if err := t.plot(); err != nil {
				return err
			}
		}
		if !c.DisableCheckpoints && (c.CheckpointEvery > 0 && t.step%c.CheckpointEvery == 0 || last) {
			if _, err := t.save(elapsed()); err != nil {
				return err
			}
		}
	}
	if t.lastSaved != t.step && !c.DisableCheckpoints { // resumed at max_steps: nothing ran
		if _, err := t.save(elapsed()); err != nil {
			return err
		}
	}
	return nil
}

// interrupt saves a checkpoint (unless this step has one) and the plot.
func (t *Trainer) interrupt(ctx context.Context, el time.Duration) error {
	dir := filepath.Join(t.cfg.RunDir, CheckpointsDir, CheckpointName(t.step))
	if t.lastSaved != t.step && !t.cfg.DisableCheckpoints {
		var err error
		if dir, err = t.save(el); err != nil {
			return err
		}
	}
	if err := t.plot(); err != nil {
		return err
	}
	if t.cfg.DisableCheckpoints {
		return fmt.Errorf("%w at step %d (checkpoints are disabled): %w", ErrInterrupted, t.step, context.Cause(ctx))
	}
	return fmt.Errorf("%w at step %d (checkpoint %s): %w", ErrInterrupted, t.step, dir, context.Cause(ctx))
}

// Evaluate returns the mean cross-entropy per target over the held-out batches (it
// does not touch the training state: parameters, data position or RNG).
func (t *Trainer) Evaluate() (EvalMetrics, error) {
	if len(t.evals) == 0 {
		return EvalMetrics{}, errors.New("train: no held-out data")
	}
	var sum float64
	n := 0
	for _, b := range t.evals {
		ls, err := t.st.Forward(t.params, b, dbrx.TrainOptions{AuxLoss: dbrx.AuxNone})
		if err != nil {
			return EvalMetrics{}, fmt.Errorf("train: eval: %w", err)
		}
		sum += ls.CE * float64(ls.Tokens)
		n += ls.Tokens
	}
	m := EvalMetrics{Step: t.step, Tokens: n}
	if n > 0 {
		m.Loss = sum / float64(n)
	}
	return m, nil
}

func (t *Trainer) evaluate(el time.Duration) (EvalMetrics, error) {
	if len(t.evals) == 0 {
		return EvalMetrics{}, nil
	}
	m, err := t.Evaluate()
	if err != nil {
		return m, err
	}
	m.Elapsed = el.Seconds()
	t.lastEval, t.evalLoss = t.step, m.Loss
	t.evalPts = append(t.evalPts, Point{m.Step, m.Loss})
	t.log.Info("train: eval", "step", m.Step, "eval_loss", m.Loss, "tokens", m.Tokens)
	return m, t.evalLog.write(m)
}

// writeExpertStats logs the expert load since the previous line and resets it.
func (t *Trainer) writeExpertStats() error {
	if t.expTokens == 0 {
		return nil
	}
	L, E := t.mc.NLayers, t.mc.FFNConfig.MoENumExperts
	s := ExpertStats{Step: t.step, Tokens: t.expTokens, Load: make([][]float64, L), MaxOverMean: make([]float64, L)}
	for l := 0; l < L; l++ {
		s.Load[l] = make([]float64, E)
		var mx, sum float64
		for e := 0; e < E; e++ {
			f := float64(t.expCounts[l*E+e]) / float64(t.expTokens)
			s.Load[l][e] = f
			mx = math.Max(mx, f)
			sum += f
		}
		if sum > 0 {
			s.MaxOverMean[l] = mx / (sum / float64(E))
		}
	}
	clear(t.expCounts)
	t.expTokens = 0
	t.log.Info("train: expert load", "step", s.Step, "max_over_mean", s.MaxOverMean)
	return t.expertLog.write(s)
}

// plot redraws loss.png.
func (t *Trainer) plot() error {
	b, err := PlotLoss(t.trainPts, t.evalPts)
	if err != nil {
		return err
	}
	return writeAtomic(filepath.Join(t.cfg.RunDir, PlotFile), b)
}

// Checkpoint saves a checkpoint of the current step now.
func (t *Trainer) Checkpoint() (string, error) { return t.save(t.elapsed) }

func (t *Trainer) save(el time.Duration) (string, error) {
	srcState, err := t.src.State()
	if err != nil {
		return "", err
	}
	rng, err := t.pcg.MarshalBinary()
	if err != nil {
		return "", err
	}
	d := t.cfg.Data
	st := State{Step: t.step, TokensSeen: t.tokens, ElapsedSeconds: el.Seconds(), LR: t.lastLR,
		Schedule: t.sched, Optimizer: t.cfg.Optimizer.Name, Data: srcState, RNG: rng,
		ExpertCounts: t.expCounts, ExpertTokens: t.expTokens,
		Seed: t.cfg.Seed, SeqLen: d.SeqLen, BatchSize: d.BatchSize, GradAccum: d.GradAccum}
	t0 := time.Now()
	dir, err := saveCheckpoint(t.cfg.RunDir, t.params, t.opt, st, t.genConfig, t.cfg.KeepCheckpoints)
	if err != nil {
		return "", err
	}
	t.lastSaved = t.step
	t.log.Info("train: checkpoint", "step", t.step, "dir", dir, "seconds", time.Since(t0).Seconds())
	return dir, nil
}
