package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/dbrx-engine/dbrx/chat"
	"github.com/dbrx-engine/dbrx/engine"
	"github.com/dbrx-engine/dbrx/internal/parallel"
	"github.com/dbrx-engine/dbrx/model/dbrx"
	"github.com/dbrx-engine/dbrx/sample"
	"github.com/dbrx-engine/dbrx/tokenizer"
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
	modelDir := fs.String("model", "", "model: HF checkpoint directory or .gguf file (default: $DBRX_MODEL, else the shipped dbrx-tiny)")
	idsFlag := fs.String("ids", "", "prompt as comma-separated token ids (instead of text)")
	chatMode := fs.Bool("chat", false, "wrap the text prompt in the DBRX chat template (one user turn)")
	system := fs.String("system", "", "with --chat: system prompt (default: DBRX's default system prompt)")
	format := fs.String("format", "text", "output: text (streamed decoded text), or ids (one JSON array of the generated ids)")
	threads := fs.Int("threads", 0, "worker threads (0 = all cores)")
	sf := addSamplingFlags(fs)
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if *modelDir, _, err = resolveModel(*modelDir); err != nil {
		return err
	}
	if *format != "text" && *format != "ids" {
		return fmt.Errorf("%w: --format must be text or ids, got %q", errUsage, *format)
	}
	scfg, err := sf.config()
	if err != nil {
		return err
	}
	tok := tokenizer.DBRX()
	var prompt []int
	switch {
	case *idsFlag != "" && len(pos) > 0:
		return fmt.Errorf("%w: give either --ids or a text prompt, not both", errUsage)
	case *idsFlag != "":
		if *chatMode {
			return fmt.Errorf("%w: --chat needs a text prompt, not --ids", errUsage)
		}
		if prompt, err = parseIDs(*idsFlag); err != nil {
			return err
		}
	case len(pos) > 0:
		text := strings.Join(pos, " ")
		if *chatMode {
			var msgs []chat.Message
			if *system != "" {
				msgs = append(msgs, chat.Message{Role: "system", Content: *system})
			}
			msgs = append(msgs, chat.Message{Role: "user", Content: text})
			prompt = chat.Encode(tok, msgs, chat.DefaultOptions())
		} else {
			prompt = tok.Encode(text, tokenizer.AllowAll)
		}
	default:
		return fmt.Errorf("%w: a prompt is required (text, or --ids)", errUsage)
	}
	if len(prompt) == 0 {
		return fmt.Errorf("%w: the prompt encodes to no tokens", errUsage)
	}
	m, err := dbrx.Load(*modelDir)
	if err != nil {
		return err
	}
	defer m.Close()
	pool := parallel.New(*threads)
	defer pool.Close()
	g := &engine.Generator{Model: m, Pool: pool}
	req := engine.Request{Prompt: prompt, MaxNewTokens: *sf.maxNew, Sampling: scfg}
	if len(m.Config.EOSTokenIDs) == 0 && m.Config.VocabSize > tokenizer.ImEnd {
		req.StopIDs = tokenizer.EOSIDs()
	}
	out := []int{}
	var dec *tokenizer.StreamDecoder
	w := bufio.NewWriter(e.stdout)
	if *format == "text" {
		dec = tok.NewStreamDecoder()
	}
	for t, err := range g.Generate(ctx, req) {
		if err != nil {
			w.Flush()
			return err
		}
		out = append(out, t.ID)
		if dec != nil && !(t.Finish == engine.FinishStop && slices.Contains(req.StopIDs, t.ID)) {
			if b, err := dec.Add(t.ID); err == nil {
				w.Write(b)
				w.Flush()
			}
		}
	}
	if dec != nil {
		w.Write(dec.Flush())
		w.WriteString("\n")
		return w.Flush()
	}
	b, err := json.Marshal(out)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(e.stdout, "%s\n", b)
	return err
}
