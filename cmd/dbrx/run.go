package main

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/dbrx-engine/dbrx/engine"
	"github.com/dbrx-engine/dbrx/internal/parallel"
	"github.com/dbrx-engine/dbrx/model/dbrx"
	"github.com/dbrx-engine/dbrx/sample"
)

func init() {
	register(command{name: "run", summary: "generate a continuation of a prompt (text or --ids)", run: runRun})
}

// samplingFlags are shared by run and chat.
type samplingFlags struct {
	maxNew                       *int
	temperature, topP, minP, rep *float64
	topK                         *int
	seed                         *uint64
	presencePenalty, freqPenalty *float64
}

func addSamplingFlags(fs interface {
	Int(string, int, string) *int
	Float64(string, float64, string) *float64
	Uint64(string, uint64, string) *uint64
}) samplingFlags {
	return samplingFlags{
		maxNew:          fs.Int("max-new-tokens", 128, "maximum tokens to generate"),
		temperature:     fs.Float64("temperature", 0.7, "sampling temperature (0 = greedy)"),
		topK:            fs.Int("top-k", 50, "keep the k most likely tokens (0 = off)"),
		topP:            fs.Float64("top-p", 0.95, "nucleus sampling mass (1 = off)"),
		minP:            fs.Float64("min-p", 0, "drop tokens below min-p × the top probability (0 = off)"),
		rep:             fs.Float64("repetition-penalty", 1, "HF repetition penalty (1 = off)"),
		presencePenalty: fs.Float64("presence-penalty", 0, "OpenAI presence penalty"),
		freqPenalty:     fs.Float64("frequency-penalty", 0, "OpenAI frequency penalty"),
		seed:            fs.Uint64("seed", 0, "random seed"),
	}
}

func (s samplingFlags) config() (sample.Config, error) {
	c := sample.Config{
		Temperature: float32(*s.temperature), TopK: *s.topK, TopP: float32(*s.topP), MinP: float32(*s.minP),
		RepetitionPenalty: float32(*s.rep), PresencePenalty: float32(*s.presencePenalty),
		FrequencyPenalty: float32(*s.freqPenalty), Seed: *s.seed,
	}
	if err := c.Validate(); err != nil {
		return c, fmt.Errorf("%w: %v", errUsage, err)
	}
	return c, nil
}

func runRun(ctx context.Context, e env, args []string) error {
	fs := newFlags("run", e)
	modelDir := fs.String("model", "", "model directory (HF checkpoint)")
	idsFlag := fs.String("ids", "", "prompt as comma-separated token ids (instead of text)")
	format := fs.String("format", "text", "output: text, or ids (one JSON array of the generated ids)")
	threads := fs.Int("threads", 0, "worker threads (0 = all cores)")
	sf := addSamplingFlags(fs)
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if *modelDir == "" {
		return fmt.Errorf("%w: --model is required", errUsage)
	}
	if *format != "text" && *format != "ids" {
		return fmt.Errorf("%w: --format must be text or ids, got %q", errUsage, *format)
	}
	scfg, err := sf.config()
	if err != nil {
		return err
	}
	var prompt []int
	switch {
	case *idsFlag != "" && len(pos) > 0:
		return fmt.Errorf("%w: give either --ids or a text prompt, not both", errUsage)
	case *idsFlag != "":
		if prompt, err = parseIDs(*idsFlag); err != nil {
			return err
		}
	default:
		return fmt.Errorf("%w: a prompt is required (--ids; text prompts need the tokenizer)", errUsage)
	}
	m, err := dbrx.Load(*modelDir)
	if err != nil {
		return err
	}
	defer m.Close()
	pool := parallel.New(*threads)
	defer pool.Close()
	g := &engine.Generator{Model: m, Pool: pool}
	out := []int{}
	for tok, err := range g.Generate(ctx, engine.Request{Prompt: prompt, MaxNewTokens: *sf.maxNew, Sampling: scfg}) {
		if err != nil {
			return err
		}
		out = append(out, tok.ID)
	}
	b, err := json.Marshal(out)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(e.stdout, "%s\n", b)
	return err
}
