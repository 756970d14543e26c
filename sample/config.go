package sample

import (
	"errors"
	"fmt"
	"math"
)

// MaxLogProbs is the largest Config.LogProbs accepted (OpenAI's top_logprobs limit).
const MaxLogProbs = 20

// ErrInvalidConfig is matched (errors.Is) by every error Validate returns.
var ErrInvalidConfig = errors.New("sample: invalid config")

// Config selects how a token is drawn from a logits row. The zero Config is greedy
// decoding with every filter and penalty off; DefaultConfig is OpenAI's defaults
// (plain sampling at temperature 1).
//
// Processing order (as in Hugging Face generate and vLLM): repetition penalty,
// presence/frequency penalties, temperature, top-k, top-p, min-p, then a draw from the
// renormalised distribution with the Sampler's own seeded RNG.
type Config struct {
	// Temperature divides the logits before the softmax, in [0, 2]. 0 is greedy:
	// argmax, the lowest id on ties; top-k, top-p and min-p do not apply.
	Temperature float32
	// TopK keeps the K most probable tokens (exactly K: ties at the boundary are broken
	// towards the lower id, so TopK = 1 is greedy at any temperature). 0 = off.
	TopK int
	// TopP keeps the smallest set of most probable tokens whose probability (after
	// top-k, renormalised) sums to at least TopP, in (0, 1]. 0 or 1 = off.
	TopP float32
	// MinP keeps tokens with p >= MinP * p_max (after top-p), in [0, 1]. 0 = off.
	MinP float32
	// RepetitionPenalty (> 0) is the Hugging Face penalty: every distinct id in the
	// history has logit > 0 ? logit/penalty : logit*penalty. 0 or 1 = off.
	RepetitionPenalty float32
	// PresencePenalty (OpenAI, in [-2, 2]) subtracts this once from the logit of every
	// id that occurs in the generated tokens.
	PresencePenalty float32
	// FrequencyPenalty (OpenAI, in [-2, 2]) subtracts this times the number of
	// occurrences of the id in the generated tokens.
	FrequencyPenalty float32
	// Seed seeds the Sampler's PCG generator. Every value, 0 included, is an explicit
	// seed: the same seed, config and inputs give the same tokens. A caller that wants
	// fresh randomness picks a random seed itself.
	Seed uint64
	// LogProbs is the number of most probable tokens reported in Result.Top, 0..20.
	LogProbs int
	// NoLogProb says the caller does not use Result.LogProb (it is not an OpenAI
	// parameter; an engine sets it for requests that ask for no logprobs). Sample then
	// skips the log-softmax over the vocabulary, an exp per logit, wherever the token
	// does not need it: a greedy call (Temperature 0, or TopK 1 at any temperature)
	// becomes penalties plus one argmax pass, and sampling at a temperature other than
	// 1 saves a whole exp pass. Result.LogProb is then 0; the tokens, and the RNG
	// stream, are exactly those without it. With LogProbs > 0 it has no effect: Top
	// needs the log-softmax, and LogProb comes with it. The zero value computes LogProb
	// on every call.
	NoLogProb bool
}

// DefaultConfig returns OpenAI's defaults: temperature 1, top_p 1, no penalties,
// seed 0, no top logprobs.
func DefaultConfig() Config {
	return Config{Temperature: 1, TopP: 1, RepetitionPenalty: 1}
}

// ConfigError reports one out-of-range Config field. Field is the OpenAI request
// parameter name ("temperature", "top_p", ...), so a server can put it in the
// error's "param".
type ConfigError struct {
	Field string // OpenAI parameter name, e.g. "top_p"
	Value any    // the rejected value
	Want  string // the accepted range, e.g. "in [0, 2]"
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("sample: %s = %v, want %s", e.Field, e.Value, e.Want)
}

// Is reports true for ErrInvalidConfig.
func (e *ConfigError) Is(target error) bool { return target == ErrInvalidConfig }

// Validate checks every field against the OpenAI ranges and returns all violations
// joined (each a *ConfigError matching ErrInvalidConfig), or nil. NaN and ±Inf are
// rejected everywhere.
func (c Config) Validate() error {
	var errs []error
	bad := func(field string, v any, want string) {
		errs = append(errs, &ConfigError{Field: field, Value: v, Want: want})
	}
	in := func(v, lo, hi float32) bool { return v >= lo && v <= hi } // false for NaN
	if !in(c.Temperature, 0, 2) {
		bad("temperature", c.Temperature, "in [0, 2]")
	}
	if c.TopK < 0 {
		bad("top_k", c.TopK, ">= 0 (0 = off)")
	}
	if !in(c.TopP, 0, 1) {
		bad("top_p", c.TopP, "in (0, 1] (0 = off)")
	}
	if !in(c.MinP, 0, 1) {
		bad("min_p", c.MinP, "in [0, 1]")
	}
	if !(c.RepetitionPenalty >= 0 && c.RepetitionPenalty <= math.MaxFloat32) {
		bad("repetition_penalty", c.RepetitionPenalty, "> 0 and finite (0 = off)")
	}
	if !in(c.PresencePenalty, -2, 2) {
		bad("presence_penalty", c.PresencePenalty, "in [-2, 2]")
	}
	if !in(c.FrequencyPenalty, -2, 2) {
		bad("frequency_penalty", c.FrequencyPenalty, "in [-2, 2]")
	}
	if c.LogProbs < 0 || c.LogProbs > MaxLogProbs {
		bad("top_logprobs", c.LogProbs, fmt.Sprintf("in [0, %d]", MaxLogProbs))
	}
	return errors.Join(errs...)
}
