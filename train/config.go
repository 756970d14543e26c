package train

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"

	"github.com/dbrx-engine/dbrx/data"
	"github.com/dbrx-engine/dbrx/model/dbrx"
)

// Config is a training run, as written in the JSON file given to `dbrx train
// --config` (docs/training.md documents every field). Fields left out of the JSON keep
// the values of DefaultConfig. Relative paths are relative to the working directory.
type Config struct {
	// RunDir receives metrics.jsonl, eval.jsonl, experts.jsonl, loss.png, the resolved
	// config (train_config.json) and checkpoints/step-NNNNNNNN/.
	RunDir string `json:"run_dir"`
	// Seed drives parameter initialisation, data order and router jitter.
	Seed uint64 `json:"seed"`
	// Threads is the number of worker threads (0: all cores).
	Threads int `json:"threads"`
	// MaxSteps is the number of optimizer steps of the whole run.
	MaxSteps int `json:"max_steps"`

	Model     ModelConfig     `json:"model"`
	Data      DataConfig      `json:"data"`
	Optimizer OptimizerConfig `json:"optimizer"`

	// AuxLoss is the load-balancing loss: "megablocks" (default, what DBRX was
	// trained with), "hf" (Hugging Face's) or "none". It is weighted by the model's
	// ffn_config.moe_loss_weight.
	AuxLoss string `json:"aux_loss"`
	// ZLossWeight weights the router z-loss (0: off).
	ZLossWeight float64 `json:"z_loss_weight"`

	// LogEvery writes a metrics line (and a progress update) every N steps.
	LogEvery int `json:"log_every"`
	// EvalEvery computes the held-out loss every N steps and at the end (0: never).
	EvalEvery int `json:"eval_every"`
	// EvalBatches bounds the held-out batches per evaluation (0: all of them, at most
	// one pass).
	EvalBatches int `json:"eval_batches"`
	// ExpertStatsEvery logs the per-layer expert load every N steps (0: never).
	ExpertStatsEvery int `json:"expert_stats_every"`
	// PlotEvery redraws loss.png every N steps (0: only at the end).
	PlotEvery int `json:"plot_every"`
	// CheckpointEvery saves a checkpoint every N steps (0: only at the end and on
	// interruption).
	CheckpointEvery int `json:"checkpoint_every"`
	// KeepCheckpoints keeps the N most recent checkpoints (0: all).
	KeepCheckpoints int `json:"keep_checkpoints"`
	// DisableCheckpoints writes no checkpoint at all (benchmarks); an interrupted run
	// then cannot be resumed.
	DisableCheckpoints bool `json:"disable_checkpoints"`
}

// ModelConfig says where the initial weights come from: a Hugging Face checkpoint
// (InitFrom), or a fresh initialisation (normal(0, initializer_range), norms 1, from
// Seed) of the architecture in Config or ConfigFile.
type ModelConfig struct {
	InitFrom   string          `json:"init_from"`   // HF checkpoint directory
	Config     json.RawMessage `json:"config"`      // an HF config.json object
	ConfigFile string          `json:"config_file"` // or the path of one
}

// DataConfig selects the training data: token shards (Sources, mixed by Weights or a
// Curriculum), chat conversations (SFT) or random tokens (Synthetic, for benchmarks).
type DataConfig struct {
	SeqLen    int `json:"seq_len"`    // T: tokens per row
	BatchSize int `json:"batch_size"` // B: rows per micro-batch
	// GradAccum micro-batches are accumulated into each optimizer step, so a step sees
	// BatchSize·GradAccum rows.
	GradAccum int `json:"grad_accum"`
	// Shuffle visits windows in a seeded random order (default true).
	Shuffle bool `json:"shuffle"`

	Sources    []SourceConfig     `json:"sources"`
	Weights    map[string]float64 `json:"weights"`
	Curriculum []data.Stage       `json:"curriculum"`
	// EvalSources are the held-out shards. Default: the "heldout" split of every
	// source given by a manifest.
	EvalSources []SourceConfig `json:"eval_sources"`

	SFT *SFTConfig `json:"sft"`

	// Synthetic trains on uniformly random token ids (a benchmark and smoke test).
	Synthetic bool `json:"synthetic"`
}

// SourceConfig is one token stream: the shards of a manifest split, or explicit
// shard paths.
type SourceConfig struct {
	Name     string   `json:"name"`
	Manifest string   `json:"manifest"` // written by `dbrx data prepare`
	Split    string   `json:"split"`    // "train" (default) or "heldout"
	Paths    []string `json:"paths"`    // .tok shards, instead of a manifest
}

// SFTConfig is supervised chat fine-tuning on JSONL conversations, one
// {"messages": [{"role": ..., "content": ...}, ...]} per line, rendered with the
// DBRX chat template; only assistant tokens (content and the closing <|im_end|>)
// carry loss.
type SFTConfig struct {
	Train []string `json:"train"` // JSONL files
	Eval  []string `json:"eval"`  // held-out JSONL files (optional)
	// Pack concatenates conversations into full rows; otherwise each conversation is
	// one row, truncated or padded to seq_len.
	Pack bool `json:"pack"`
	// DefaultSystemPrompt inserts DBRX's default system prompt in conversations
	// without a system message.
	DefaultSystemPrompt bool `json:"default_system_prompt"`
}

// OptimizerConfig selects the optimizer and the learning-rate schedule: linear
// warmup to LR over WarmupSteps, then cosine decay to MinLR at DecaySteps.
type OptimizerConfig struct {
	Name        string   `json:"name"` // "adamw" (default) or "lionw"
	LR          float64  `json:"lr"`
	MinLR       float64  `json:"min_lr"`
	WarmupSteps int      `json:"warmup_steps"`
	DecaySteps  int      `json:"decay_steps"` // 0: max_steps
	Beta1       *float64 `json:"beta1"`       // default 0.9
	Beta2       *float64 `json:"beta2"`       // default 0.95 (adamw), 0.99 (lionw)
	Eps         *float64 `json:"eps"`         // adamw only; default 1e-8
	WeightDecay *float64 `json:"weight_decay"`
	// GradClip clips the global gradient norm (0: off).
	GradClip float64 `json:"grad_clip"`
}

// DefaultConfig returns the defaults every field of a JSON config starts from.
func DefaultConfig() Config {
	return Config{
		MaxSteps: 1000,
		Data:     DataConfig{SeqLen: 2048, BatchSize: 8, GradAccum: 1, Shuffle: true},
		Optimizer: OptimizerConfig{Name: "adamw", LR: 3e-4, MinLR: 3e-5, WarmupSteps: 100,
			GradClip: 1.0},
		AuxLoss:     "megablocks",
		LogEvery:    1,
		EvalBatches: 8,
	}
}

// ErrConfig marks an invalid training configuration.
var ErrConfig = errors.New("train: invalid config")

// ParseConfig decodes a JSON training config over DefaultConfig. Unknown fields are
// errors, reported with their byte offset.
func ParseConfig(b []byte) (Config, error) {
	c := DefaultConfig()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			return Config{}, fmt.Errorf("%w: byte %d: %v", ErrConfig, se.Offset, err)
		case errors.As(err, &te):
			return Config{}, fmt.Errorf("%w: byte %d: field %s: %v", ErrConfig, te.Offset, te.Field, err)
		}
		return Config{}, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	if dec.More() {
		return Config{}, fmt.Errorf("%w: byte %d: trailing data after the object", ErrConfig, dec.InputOffset())
	}
	return c, nil
}

// LoadConfig reads and validates a JSON training config file.
func LoadConfig(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("train: %w", err)
	}
	c, err := ParseConfig(b)
	if err == nil {
		err = c.Validate()
	}
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	bad := func(f string, a ...any) error { return fmt.Errorf("%w: "+f, append([]any{ErrConfig}, a...)...) }
	d, o := c.Data, c.Optimizer
	switch {
	case c.RunDir == "":
		return bad("run_dir is empty")
	case c.Threads < 0:
		return bad("threads %d < 0", c.Threads)
	case c.MaxSteps < 1:
		return bad("max_steps %d < 1", c.MaxSteps)
	case d.SeqLen < 1:
		return bad("data.seq_len %d < 1", d.SeqLen)
	case d.BatchSize < 1:
		return bad("data.batch_size %d < 1", d.BatchSize)
	case d.GradAccum < 1:
		return bad("data.grad_accum %d < 1", d.GradAccum)
	case c.LogEvery < 1:
		return bad("log_every %d < 1", c.LogEvery)
	case c.EvalEvery < 0 || c.EvalBatches < 0 || c.ExpertStatsEvery < 0 || c.PlotEvery < 0 ||
		c.CheckpointEvery < 0 || c.KeepCheckpoints < 0:
		return bad("eval_every, eval_batches, expert_stats_every, plot_every, checkpoint_every and keep_checkpoints must be >= 0")
	case !finite(c.ZLossWeight) || c.ZLossWeight < 0:
		return bad("z_loss_weight %v must be finite and >= 0", c.ZLossWeight)
	}
	if _, err := dbrx.ParseAuxLoss(c.AuxLoss); err != nil {
		return bad("aux_loss: %v", err)
	}
	m := c.Model
	n := 0
	for _, set := range []bool{m.InitFrom != "", len(m.Config) > 0, m.ConfigFile != ""} {
		if set {
			n++
		}
	}
	if n != 1 {
		return bad("model: give exactly one of init_from, config and config_file")
	}
	kinds := 0
	for _, set := range []bool{len(d.Sources) > 0, d.SFT != nil, d.Synthetic} {
		if set {
			kinds++
		}
	}
	if kinds != 1 {
		return bad("data: give exactly one of sources, sft and synthetic")
	}
	if (d.Weights != nil || len(d.Curriculum) > 0) && len(d.Sources) == 0 {
		return bad("data: weights and curriculum need sources")
	}
	if d.Weights != nil && len(d.Curriculum) > 0 {
		return bad("data: give weights or curriculum, not both")
	}
	for i, s := range append(append([]SourceConfig(nil), d.Sources...), d.EvalSources...) {
		switch {
		case s.Name == "":
			return bad("data source %d has no name", i)
		case (s.Manifest == "") == (len(s.Paths) == 0):
			return bad("data source %q: give a manifest or paths", s.Name)
		case s.Split != "" && s.Split != data.SplitTrain && s.Split != data.SplitHeldOut:
			return bad("data source %q: split %q, want %q or %q", s.Name, s.Split, data.SplitTrain, data.SplitHeldOut)
		}
	}
	if d.SFT != nil && len(d.SFT.Train) == 0 {
		return bad("data.sft.train lists no files")
	}
	switch o.Name {
	case "adamw", "lionw":
	default:
		return bad("optimizer.name %q, want adamw or lionw", o.Name)
	}
	if !(o.LR > 0) || !finite(o.LR) || !(o.MinLR >= 0 && o.MinLR <= o.LR) {
		return bad("optimizer: need 0 < lr (%v) and 0 <= min_lr (%v) <= lr", o.LR, o.MinLR)
	}
	if o.WarmupSteps < 0 || o.DecaySteps < 0 {
		return bad("optimizer: warmup_steps and decay_steps must be >= 0")
	}
	if !finite(o.GradClip) || o.GradClip < 0 {
		return bad("optimizer.grad_clip %v must be finite and >= 0", o.GradClip)
	}
	if o.Name == "lionw" && o.Eps != nil {
		return bad("optimizer.eps is an adamw setting")
	}
	if _, err := c.schedule(); err != nil {
		return bad("optimizer: %v", err)
	}
	return nil
}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

func orDefault(p *float64, d float64) float64 {
	if p != nil {
		return *p
	}
	return d
}
