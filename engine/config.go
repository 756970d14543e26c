package engine

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Config tunes the continuous-batching Engine. The zero value of a field means its
// default (see DefaultConfig); Validate rejects negative or inconsistent values.
type Config struct {
	// MaxSeqs bounds the sequences that run (prefill or decode) at once; more wait
	// in the queue.
	MaxSeqs int
	// MaxQueue bounds the requests waiting to be admitted; Submit returns
	// ErrQueueFull beyond it.
	MaxQueue int
	// MaxStepTokens bounds the tokens of one batched forward pass: one per decoding
	// sequence plus the prompt chunks of sequences being prefilled.
	MaxStepTokens int
	// PrefillChunk bounds the prompt tokens one sequence prefills per step, so a long
	// prompt is split over several steps and running streams keep flowing.
	PrefillChunk int
	// MaxContext bounds prompt + generated tokens of a sequence (0: the model's
	// max_seq_len; larger values are clamped to it).
	MaxContext int
	// MaxKVTokens, if > 0, bounds the sum over running sequences of prompt + token
	// budget (the KV positions they may fill); a request that would pass it waits.
	MaxKVTokens int
	// PrefixCacheTokens bounds the KV positions kept by the prefix cache (LRU
	// eviction). 0 picks as many as fit in PrefixCacheAutoBytes of KV (at most
	// 65536); negative disables the cache.
	PrefixCacheTokens int
	// PrefixMinTokens is the shortest shared prefix worth reusing.
	PrefixMinTokens int
	// Logger receives engine events (nil: discarded).
	Logger *slog.Logger
	// OnStep, if set, is called on the engine goroutine after every batched forward
	// pass (for metrics). It must be fast and must not call back into the Engine.
	OnStep func(StepInfo)
}

// StepInfo describes one batched forward pass.
type StepInfo struct {
	Seqs          int           // sequences in the batch
	DecodeTokens  int           // decode tokens (one per decoding sequence)
	PrefillTokens int           // prompt tokens prefilled
	Duration      time.Duration // forward + sampling time
}

// PrefixCacheAutoBytes is the KV memory the prefix cache may hold when
// Config.PrefixCacheTokens is 0.
const PrefixCacheAutoBytes = 2 << 30

// DefaultConfig returns the defaults: 32 sequences, a queue of 256, 512-token steps
// with 256-token prefill chunks, the model's context, and a prefix cache of up to
// 2 GiB of KV (at most 65536 positions) reusing prefixes of 16 tokens or more.
func DefaultConfig() Config {
	return Config{
		MaxSeqs:         32,
		MaxQueue:        256,
		MaxStepTokens:   512,
		PrefillChunk:    256,
		PrefixMinTokens: 16,
	}
}

// withDefaults fills zero fields from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.MaxSeqs == 0 {
		c.MaxSeqs = d.MaxSeqs
	}
	if c.MaxQueue == 0 {
		c.MaxQueue = d.MaxQueue
	}
	if c.MaxStepTokens == 0 {
		c.MaxStepTokens = max(d.MaxStepTokens, c.MaxSeqs+1)
	}
	if c.PrefillChunk == 0 {
		c.PrefillChunk = min(d.PrefillChunk, c.MaxStepTokens)
	}
	if c.PrefixMinTokens == 0 {
		c.PrefixMinTokens = d.PrefixMinTokens
	}
	return c
}

// Validate reports every invalid field (after defaults are applied) joined.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	pos := func(name string, v int) {
		if v <= 0 {
			errs = append(errs, fmt.Errorf("engine: %s = %d, want > 0", name, v))
		}
	}
	pos("MaxSeqs", c.MaxSeqs)
	pos("MaxQueue", c.MaxQueue)
	pos("MaxStepTokens", c.MaxStepTokens)
	pos("PrefillChunk", c.PrefillChunk)
	pos("PrefixMinTokens", c.PrefixMinTokens)
	if c.MaxContext < 0 {
		errs = append(errs, fmt.Errorf("engine: MaxContext = %d, want >= 0", c.MaxContext))
	}
	if c.MaxKVTokens < 0 {
		errs = append(errs, fmt.Errorf("engine: MaxKVTokens = %d, want >= 0", c.MaxKVTokens))
	}
	if c.MaxStepTokens > 0 && c.MaxStepTokens <= c.MaxSeqs {
		errs = append(errs, fmt.Errorf("engine: MaxStepTokens = %d must exceed MaxSeqs = %d (one decode token each plus prefill)", c.MaxStepTokens, c.MaxSeqs))
	}
	return errors.Join(errs...)
}
