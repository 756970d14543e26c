package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dbrx-engine/dbrx/train"
)

// trainConfig writes a training config for a tiny model on synthetic tokens.
func trainConfig(t *testing.T, runDir string) string {
	t.Helper()
	cfg := `{
  "run_dir": "` + runDir + `",
  "seed": 3,
  "threads": 2,
  "max_steps": 6,
  "model": {"config": {"d_model": 32, "n_heads": 4, "n_layers": 2, "vocab_size": 128, "max_seq_len": 64,
    "attn_config": {"kv_n_heads": 2, "clip_qkv": 8},
    "ffn_config": {"ffn_hidden_size": 32, "moe_num_experts": 4, "moe_top_k": 2}}},
  "data": {"synthetic": true, "seq_len": 16, "batch_size": 2, "grad_accum": 2},
  "optimizer": {"name": "adamw", "lr": 0.003, "min_lr": 0.0003, "warmup_steps": 2, "decay_steps": 6},
  "eval_every": 3, "eval_batches": 1, "expert_stats_every": 2, "checkpoint_every": 2, "keep_checkpoints": 2
}`
	path := filepath.Join(t.TempDir(), "train.json")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func losses(t *testing.T, runDir string) []train.StepMetrics {
	t.Helper()
	m, err := train.ReadMetrics(filepath.Join(runDir, train.MetricsFile))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestTrainCommand trains, checks every output, generates with the checkpoint, and
// resumes a run interrupted (cancelled context, as Ctrl-C) before its first step and
// one stopped at step 4 by --max-steps: both end bit-identical to the uninterrupted run.
func TestTrainCommand(t *testing.T) {
	dir := t.TempDir()
	full := filepath.Join(dir, "full")
	cfg := trainConfig(t, full)
	_, stderr, code := dbrxCmd(t, "", "train", "--config", cfg)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stderr, "step 6/6") || !strings.Contains(stderr, "tok/s") || !strings.Contains(stderr, "MFU") || !strings.Contains(stderr, "ETA") {
		t.Errorf("no progress on stderr:\n%s", stderr)
	}
	for _, f := range []string{train.MetricsFile, train.EvalFile, train.ExpertsFile, train.PlotFile, train.ConfigFile} {
		if fi, err := os.Stat(filepath.Join(full, f)); err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	want := losses(t, full)
	if len(want) != 6 {
		t.Fatalf("%d metrics lines", len(want))
	}
	var keys map[string]any
	raw, _ := os.ReadFile(filepath.Join(full, train.MetricsFile))
	json.Unmarshal([]byte(strings.SplitN(string(raw), "\n", 2)[0]), &keys)
	for _, k := range []string{"step", "lr", "loss", "ce", "aux", "grad_norm", "tokens", "tokens_per_s", "mfu", "elapsed"} {
		if _, ok := keys[k]; !ok {
			t.Errorf("metrics line has no %q: %v", k, keys)
		}
	}
	ck, err := train.LatestCheckpoint(full)
	if err != nil {
		t.Fatal(err)
	}
	// The checkpoint is a model directory dbrx run accepts.
	out, stderr, code := dbrxCmd(t, "", "run", "--model", ck, "--ids", "1,2,3", "--max-new-tokens", "4", "--temperature", "0", "--format", "ids")
	if code != 0 {
		t.Fatalf("dbrx run on the checkpoint: exit %d: %s", code, stderr)
	}
	var gen []int
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &gen); err != nil || len(gen) != 4 {
		t.Errorf("dbrx run output %q: %v", out, err)
	}

	// Interrupted before the first step: exit 0, a step-0 checkpoint, then --resume.
	cut := filepath.Join(dir, "cut")
	cfgCut := trainConfig(t, cut)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var so, se strings.Builder
	if err := runTrain(ctx, env{stdin: strings.NewReader(""), stdout: &so, stderr: &se}, []string{"--config", cfgCut}); err != nil {
		t.Fatalf("interrupted run: %v", err)
	}
	if !strings.Contains(se.String(), "interrupted at step 0") || !strings.Contains(se.String(), "--resume") {
		t.Errorf("interrupt message: %s", se.String())
	}
	if _, stderr, code := dbrxCmd(t, "", "train", "--config", cfgCut, "--max-steps", "4", "--resume"); code != 0 {
		t.Fatalf("resume to 4: exit %d: %s", code, stderr)
	}
	if _, stderr, code := dbrxCmd(t, "", "train", "--config", cfgCut, "--resume"); code != 0 {
		t.Fatalf("resume to 6: exit %d: %s", code, stderr)
	}
	got := losses(t, cut)
	if len(got) != len(want) {
		t.Fatalf("%d metrics lines after resuming, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Step != w.Step || g.Loss != w.Loss || g.CE != w.CE || g.Aux != w.Aux || g.GradNorm != w.GradNorm || g.LR != w.LR || g.Tokens != w.Tokens {
			t.Errorf("step %d: resumed %+v, uninterrupted %+v", w.Step, g, w)
		}
	}

	// A new run in a directory with checkpoints is refused; a bad flag is a usage error.
	if _, _, code := dbrxCmd(t, "", "train", "--config", cfg); code != 1 {
		t.Errorf("restarting over checkpoints: exit %d, want 1", code)
	}
	if _, _, code := dbrxCmd(t, "", "train"); code != 2 {
		t.Errorf("no --config: exit %d, want 2", code)
	}
}

// TestTrainExampleConfigs parses every example config in configs/.
func TestTrainExampleConfigs(t *testing.T) {
	paths, _ := filepath.Glob(filepath.Join("..", "..", "configs", "train-*.json"))
	if len(paths) == 0 {
		t.Fatal("no configs/train-*.json")
	}
	for _, p := range paths {
		if _, err := train.LoadConfig(p); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
}
