// Package engine owns the generation loop: it prefills prompts, decodes with the KV
// cache, samples, applies stop rules (stop ids and text stop sequences matched
// across token boundaries) and streams tokens. Servers, evaluation and the command
// line are thin clients of it.
//
// Engine is the continuous-batching scheduler: one goroutine advances all running
// sequences together, one batched forward pass per step, admits queued requests
// between steps, splits long prompts into chunks, and reuses the KV of earlier
// prompts through an LRU prefix cache. Generator is the plain single-sequence loop.
package engine

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"

	"github.com/dbrx-engine/dbrx/internal/parallel"
	"github.com/dbrx-engine/dbrx/model/dbrx"
	"github.com/dbrx-engine/dbrx/sample"
)

// Request is one generation job.
type Request struct {
	Prompt       []int
	MaxNewTokens int
	Sampling     sample.Config
	// StopIDs end generation when sampled (they are reported, then generation stops).
	// Nil means the model's EOS ids (generation_config.json).
	StopIDs []int
	// Stop lists text stop sequences (Engine only; it needs a tokenizer): generation
	// ends when the decoded text contains one, which is not emitted.
	Stop []string
	// IgnoreEOS disables stopping on StopIDs (benchmarks).
	IgnoreEOS bool
	// NoLogProb says Token.LogProb is not needed (Engine only): the sampler then skips
	// the log-softmax over the vocabulary (sample.Config.NoLogProb), so a greedy
	// request is one argmax pass. LogProb is 0 in its tokens.
	NoLogProb bool
}

// FinishReason says why a sequence ended, in OpenAI's words.
type FinishReason string

// Finish reasons.
const (
	FinishStop   FinishReason = "stop"   // a stop id (EOS) or stop sequence
	FinishLength FinishReason = "length" // max new tokens or the context length
)

// Token is one generated token.
type Token struct {
	ID      int
	LogProb float32
	Top     []sample.TokenLogProb // top alternatives when Sampling.LogProbs > 0
	// Text is the decoded text this token releases (Engine with a tokenizer): it can
	// be empty (an incomplete character, or text held back because it may begin a
	// stop sequence) or carry text of earlier tokens. Stop ids and stop sequences are
	// never part of it.
	Text string
	// Finish is set on the last token of a sequence.
	Finish FinishReason
}

// Generator runs single sequences on a model (no batching, no tokenizer: Request.Stop
// is ignored); it is what `dbrx run` uses.
type Generator struct {
	Model *dbrx.Model
	Pool  *parallel.Pool
	// MaxContext bounds prompt + generated tokens (0: the model's max_seq_len).
	MaxContext int
}

// ErrPromptTooLong means the prompt does not fit in the context.
var ErrPromptTooLong = errors.New("engine: prompt does not fit in the context")

// Generate streams the tokens of req. The sequence ends at MaxNewTokens, at a stop
// id, at the context length, or when ctx is cancelled (yielding ctx.Err()).
func (g *Generator) Generate(ctx context.Context, req Request) iter.Seq2[Token, error] {
	return func(yield func(Token, error) bool) {
		m := g.Model
		maxCtx := g.MaxContext
		if maxCtx <= 0 {
			maxCtx = m.Config.MaxSeqLen
		}
		if len(req.Prompt) == 0 {
			yield(Token{}, errors.New("engine: empty prompt"))
			return
		}
		if len(req.Prompt) >= maxCtx {
			yield(Token{}, fmt.Errorf("%w: %d prompt tokens, context length %d", ErrPromptTooLong, len(req.Prompt), maxCtx))
			return
		}
		sampler, err := sample.New(req.Sampling)
		if err != nil {
			yield(Token{}, err)
			return
		}
		stop := req.StopIDs
		if stop == nil {
			stop = m.Config.EOSTokenIDs
		}
		budget := req.MaxNewTokens
		if budget <= 0 || len(req.Prompt)+budget > maxCtx {
			budget = maxCtx - len(req.Prompt)
		}
		cache := m.NewKVCache(maxCtx, len(req.Prompt)+budget)
		ws := dbrx.NewWorkspace(g.Pool)
		generated := make([]int, 0, budget)
		next := req.Prompt
		for len(generated) < budget {
			if err := ctx.Err(); err != nil {
				yield(Token{}, err)
				return
			}
			logits, err := m.Forward(ws, []dbrx.Step{{Cache: cache, IDs: next}})
			if err != nil {
				yield(Token{}, err)
				return
			}
			res, err := sampler.SampleSplit(logits, req.Prompt, generated)
			if err != nil {
				yield(Token{}, err)
				return
			}
			res = res.Clone()
			tok := Token{ID: res.ID, LogProb: res.LogProb, Top: res.Top}
			generated = append(generated, res.ID)
			if !req.IgnoreEOS && slices.Contains(stop, res.ID) {
				tok.Finish = FinishStop
			} else if len(generated) == budget {
				tok.Finish = FinishLength
			}
			if !yield(tok, nil) || tok.Finish != "" {
				return
			}
			next = generated[len(generated)-1:]
		}
	}
}
