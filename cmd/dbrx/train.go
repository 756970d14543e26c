package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/dbrx-engine/dbrx/train"
)

func init() {
	register(command{name: "train", summary: "pretrain or fine-tune (SFT) a model from a JSON training config", run: runTrain})
}

// resumeFlag is --resume (the newest checkpoint of the run) or --resume=DIR.
type resumeFlag struct{ v string }

func (f *resumeFlag) String() string { return f.v }
func (f *resumeFlag) Set(s string) error {
	switch s {
	case "true":
		f.v = "latest"
	case "false", "":
		f.v = ""
	default:
		f.v = s
	}
	return nil
}
func (f *resumeFlag) IsBoolFlag() bool { return true }

func runTrain(ctx context.Context, e env, args []string) error {
	fs := newFlags("train", e)
	cfgPath := fs.String("config", "", "training config (JSON; see docs/training.md)")
	var resume resumeFlag
	fs.Var(&resume, "resume", "continue the run from its newest checkpoint; --resume=DIR continues from that checkpoint")
	maxSteps := fs.Int("max-steps", 0, "override max_steps")
	runDir := fs.String("run-dir", "", "override run_dir")
	threads := fs.Int("threads", -1, "override threads (0 = all cores)")
	progress := fs.Bool("progress", true, "draw a progress bar when stderr is a terminal (otherwise a line per logged step)")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, pos[0])
	}
	if *cfgPath == "" {
		return fmt.Errorf("%w: --config is required", errUsage)
	}
	cfg, err := train.LoadConfig(*cfgPath)
	if err != nil {
		return err
	}
	if *maxSteps > 0 {
		cfg.MaxSteps = *maxSteps
	}
	if *runDir != "" {
		cfg.RunDir = *runDir
	}
	if *threads >= 0 {
		cfg.Threads = *threads
	}
	if err := cfg.Validate(); err != nil {
		return err
	}

	con := &console{w: e.stderr, tty: isTerminal(e.stderr)}
	opts := train.Options{Logger: slog.New(slog.NewTextHandler(con, nil)), Resume: resume.v}
	if *progress {
		opts.Progress = con.progress
	}
	tr, err := train.New(cfg, opts)
	if err != nil {
		return err
	}
	defer tr.Close()
	err = tr.Run(ctx)
	con.finish()
	if errors.Is(err, train.ErrInterrupted) {
		fmt.Fprintf(e.stderr, "dbrx train: %v\ncontinue with: dbrx train --config %s --resume\n", err, *cfgPath)
		return nil
	}
	if err != nil {
		return err
	}
	where := fmt.Sprintf("checkpoints in %s", filepath.Join(cfg.RunDir, train.CheckpointsDir))
	if cfg.DisableCheckpoints {
		where = "checkpoints disabled"
	}
	fmt.Fprintf(e.stderr, "dbrx train: done, %d steps, %d tokens; %s; metrics and loss curve in %s\n",
		tr.Step(), tr.TokensSeen(), where, cfg.RunDir)
	return nil
}

// console serialises the progress bar and log lines on stderr: on a terminal the bar
// is one line redrawn in place, cleared before a log line and drawn again after it.
type console struct {
	mu   sync.Mutex
	w    io.Writer
	tty  bool
	bar  string
	last time.Time
}

// Write is the log handler's output.
func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tty && c.bar != "" {
		fmt.Fprint(c.w, "\r\033[K")
	}
	n, err := c.w.Write(p)
	if c.tty && c.bar != "" {
		fmt.Fprint(c.w, c.bar)
	}
	return n, err
}

func (c *console) progress(p train.Progress) {
	c.mu.Lock()
	defer c.mu.Unlock()
	const width = 24
	frac := min(float64(p.Step)/float64(max(p.MaxSteps, 1)), 1)
	fill := int(frac * width)
	var sb strings.Builder
	fmt.Fprintf(&sb, "step %d/%d [%s%s] loss %.4f", p.Step, p.MaxSteps, strings.Repeat("#", fill), strings.Repeat("-", width-fill), p.Loss)
	if !math.IsNaN(p.EvalLoss) {
		fmt.Fprintf(&sb, " eval %.4f", p.EvalLoss)
	}
	fmt.Fprintf(&sb, " | lr %.3g | %.0f tok/s | MFU %.1f%% | ETA %s", p.LR, p.TokensPerSec, 100*p.MFU, p.ETA.Round(time.Second))
	c.bar = sb.String()
	if !c.tty {
		fmt.Fprintln(c.w, c.bar)
		return
	}
	now := time.Now()
	if now.Sub(c.last) < 100*time.Millisecond && p.Step < p.MaxSteps {
		return
	}
	c.last = now
	fmt.Fprint(c.w, "\r\033[K"+c.bar)
}

func (c *console) finish() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tty && c.bar != "" {
		fmt.Fprintln(c.w)
	}
	c.bar = ""
}
