package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dbrx-engine/dbrx/internal/parallel"
	"github.com/dbrx-engine/dbrx/model/dbrx"
	"github.com/dbrx-engine/dbrx/sample"
	"github.com/dbrx-engine/dbrx/tokenizer"
)

// Errors returned by Submit (possibly wrapped) and by streams.
var (
	// ErrQueueFull: MaxQueue requests are already waiting; retry later (HTTP 429).
	ErrQueueFull = errors.New("engine: request queue is full")
	// ErrClosed: the engine was closed before or while the request ran.
	ErrClosed = errors.New("engine: closed")
	// ErrEmptyPrompt: the prompt has no tokens.
	ErrEmptyPrompt = errors.New("engine: empty prompt")
	// ErrTokenRange: a prompt id is outside the model's vocabulary.
	ErrTokenRange = errors.New("engine: prompt token outside the vocabulary")
	// ErrNoTokenizer: stop sequences (text) were given to an engine without a tokenizer.
	ErrNoTokenizer = errors.New("engine: stop sequences need a tokenizer")
	// ErrBadRequest matches every request validation error that is not one of the above.
	ErrBadRequest = errors.New("engine: invalid request")
)

// ContextLengthError reports a prompt that, with its token budget, does not fit in
// the context. It matches ErrPromptTooLong.
type ContextLengthError struct {
	PromptTokens int // prompt length
	MaxNewTokens int // requested budget (0: none requested)
	Context      int // the context length
}

func (e *ContextLengthError) Error() string {
	if e.MaxNewTokens > 0 {
		return fmt.Sprintf("engine: the prompt (%d tokens) plus max tokens (%d) exceeds the context length (%d)", e.PromptTokens, e.MaxNewTokens, e.Context)
	}
	return fmt.Sprintf("engine: the prompt (%d tokens) leaves no room to generate in the context length (%d)", e.PromptTokens, e.Context)
}

// Is reports true for ErrPromptTooLong.
func (e *ContextLengthError) Is(target error) bool { return target == ErrPromptTooLong }

// Engine runs many sequences on one model with continuous batching: one goroutine
// advances every running sequence together, one batched forward pass per step (a
// decode token for each decoding sequence plus prompt chunks of sequences being
// prefilled), admitting queued requests between steps. Each sequence has its own KV
// cache, sampler (with its own seeded RNG) and stop rules, so with greedy sampling a
// request's tokens do not depend on what else runs, up to the floating-point
// summation order of the kernels at different batch shapes.
//
// All methods are safe for concurrent use.
type Engine struct {
	m      *dbrx.Model
	tok    *tokenizer.Tokenizer
	pool   *parallel.Pool
	cfg    Config
	log    *slog.Logger
	maxCtx int
	eos    []int

	mu     sync.Mutex
	queue  []*seq
	closed bool
	wake   chan struct{} // capacity 1
	quit   chan struct{} // closed by Close
	done   chan struct{} // closed when the loop has exited

	// Owned by the loop goroutine.
	ws         *dbrx.Workspace
	running    []*seq
	prefix     *prefixCache
	steps      []dbrx.Step
	stepSeqs   []*seq
	todo       []sampleJob
	kvReserved int
	fwd        func(*dbrx.Workspace, []dbrx.Step) ([]float32, error) // nil: m.Forward (tests inject failures)
	routed     []uint64                                              // [L·E] routing counts of the current step
	taken      []bool                                                // [E] scratch for top-k

	// Published for Stats.
	nQueued, nRunning, kvTokens  atomic.Int64
	prefixEntries, prefixTokens  atomic.Int64
	prefixHits, prefixMisses     atomic.Uint64
	prefixHitTokens, stepCount   atomic.Uint64
	experts                      []atomic.Uint64 // [L·E]
	nLayers, nExperts, kvRowSize int
}

// seq is one running or queued sequence.
type seq struct {
	ctx       context.Context
	out       *Stream
	prompt    []int
	budget    int // max new tokens
	reserve   int // len(prompt) + budget
	sampler   *sample.Sampler
	wantTop   bool
	stopIDs   []int
	ignoreEOS bool
	dec       *tokenizer.StreamDecoder // nil without a tokenizer
	stop      stopText
	enq       time.Time

	cache     *dbrx.KVCache
	pos       int // prompt tokens in the cache
	chunk     int // prompt tokens in the current step
	generated []int
	done      bool
	tok       Token // token produced by the current step
	err       error // sampling failure of the current step
}

type sampleJob struct {
	s   *seq
	row []float32
}

// New starts an engine for m. tok may be nil (then tokens carry no Text and stop
// sequences are rejected); pool runs the kernels (nil: single-threaded). The engine
// goroutine runs until Close.
func New(m *dbrx.Model, tok *tokenizer.Tokenizer, pool *parallel.Pool, cfg Config) (*Engine, error) {
	if m == nil {
		return nil, errors.New("engine: nil model")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	mc := m.Config
	maxCtx := mc.MaxSeqLen
	if cfg.MaxContext > 0 && cfg.MaxContext < maxCtx {
		maxCtx = cfg.MaxContext
	}
	eos := mc.EOSTokenIDs
	if len(eos) == 0 && tok != nil {
		eos = tokenizer.EOSIDs()
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	L, E := mc.NLayers, mc.FFNConfig.MoENumExperts
	e := &Engine{
		m: m, tok: tok, pool: pool, cfg: cfg, log: log, maxCtx: maxCtx, eos: eos,
		wake: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{}),
		ws:      dbrx.NewWorkspace(pool),
		routed:  make([]uint64, L*E),
		taken:   make([]bool, E),
		experts: make([]atomic.Uint64, L*E),
		nLayers: L, nExperts: E,
		kvRowSize: mc.AttnConfig.KVNHeads * mc.HeadDim(),
	}
	if cfg.PrefixCacheTokens == 0 {
		cfg.PrefixCacheTokens = min(65536, PrefixCacheAutoBytes/(L*e.kvRowSize*2*4))
		e.cfg = cfg
	}
	if cfg.PrefixCacheTokens > 0 {
		e.prefix = newPrefixCache(cfg.PrefixCacheTokens, cfg.PrefixMinTokens)
	}
	e.ws.Trace = e.trace
	go e.loop()
	return e, nil
}

// Model returns the engine's model.
func (e *Engine) Model() *dbrx.Model { return e.m }

// Tokenizer returns the engine's tokenizer (possibly nil).
func (e *Engine) Tokenizer() *tokenizer.Tokenizer { return e.tok }

// MaxContext is the context length: prompt + generated tokens of one sequence.
func (e *Engine) MaxContext() int { return e.maxCtx }

// EOSIDs returns the ids that end generation by default.
func (e *Engine) EOSIDs() []int { return slices.Clone(e.eos) }

// Submit validates req and queues it. The returned Stream delivers its tokens; ctx
// cancellation (a client going away) ends the sequence and frees its cache at the
// next step. Errors: *ContextLengthError, ErrEmptyPrompt, ErrTokenRange,
// ErrNoTokenizer, sampling *sample.ConfigError, ErrQueueFull, ErrClosed.
func (e *Engine) Submit(ctx context.Context, req Request) (*Stream, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s, err := e.newSeq(ctx, req)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	switch {
	case e.closed:
		e.mu.Unlock()
		return nil, ErrClosed
	case len(e.queue) >= e.cfg.MaxQueue && e.purgeQueue() >= e.cfg.MaxQueue:
		e.mu.Unlock()
		return nil, ErrQueueFull
	}
	e.queue = append(e.queue, s)
	e.nQueued.Store(int64(len(e.queue)))
	e.mu.Unlock()
	select {
	case e.wake <- struct{}{}:
	default:
	}
	return s.out, nil
}

// purgeQueue drops queued requests whose context has ended (their clients left) and
// returns the queue length. e.mu is held.
func (e *Engine) purgeQueue() int {
	kept := e.queue[:0]
	for _, s := range e.queue {
		if err := s.ctx.Err(); err != nil {
			s.out.end(err)
			continue
		}
		kept = append(kept, s)
	}
	clear(e.queue[len(kept):])
	e.queue = kept
	e.nQueued.Store(int64(len(kept)))
	return len(kept)
}

// Generate is Submit followed by iteration over the stream; a submission error is
// yielded as the only element. Stopping the iteration early ends the sequence.
func (e *Engine) Generate(ctx context.Context, req Request) iter.Seq2[Token, error] {
	return func(yield func(Token, error) bool) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		st, err := e.Submit(ctx, req)
		if err != nil {
			yield(Token{}, err)
			return
		}
		for t, err := range st.Tokens() {
			if !yield(t, err) {
				return
			}
		}
	}
}

func (e *Engine) newSeq(ctx context.Context, req Request) (*seq, error) {
	n := len(req.Prompt)
	if n == 0 {
		return nil, ErrEmptyPrompt
	}
	V := e.m.Config.VocabSize
	for i, id := range req.Prompt {
		if id < 0 || id >= V {
			return nil, fmt.Errorf("%w: id %d at index %d, vocabulary [0, %d)", ErrTokenRange, id, i, V)
		}
	}
	if req.MaxNewTokens < 0 {
		return nil, fmt.Errorf("%w: max new tokens %d < 0", ErrBadRequest, req.MaxNewTokens)
	}
	if n >= e.maxCtx || n+req.MaxNewTokens > e.maxCtx {
		return nil, &ContextLengthError{PromptTokens: n, MaxNewTokens: req.MaxNewTokens, Context: e.maxCtx}
	}
	budget := req.MaxNewTokens
	if budget == 0 {
		budget = e.maxCtx - n
	}
	for _, s := range req.Stop {
		if s != "" && e.tok == nil {
			return nil, ErrNoTokenizer
		}
	}
	sc := req.Sampling
	sc.NoLogProb = req.NoLogProb // penalised or sampled requests skip the log-softmax too
	sampler, err := sample.New(sc)
	if err != nil {
		return nil, err
	}
	stopIDs := req.StopIDs
	if stopIDs == nil {
		stopIDs = e.eos
	}
	s := &seq{
		ctx: ctx, out: newStream(ctx, n), prompt: slices.Clone(req.Prompt),
		budget: budget, reserve: n + budget, sampler: sampler, wantTop: req.Sampling.LogProbs > 0,
		stopIDs: slices.Clone(stopIDs), ignoreEOS: req.IgnoreEOS,
		stop: newStopText(req.Stop), enq: time.Now(),
	}
	if e.tok != nil {
		s.dec = e.tok.NewStreamDecoder()
	}
	return s, nil
}

// Close cancels every queued and running sequence (their streams end with
// ErrClosed) and stops the engine goroutine. For a graceful drain, stop submitting
// and wait for the streams to end first.
func (e *Engine) Close() error {
	e.mu.Lock()
	if !e.closed {
		e.closed = true
		close(e.quit)
	}
	e.mu.Unlock()
	<-e.done
	return nil
}

func (e *Engine) loop() {
	defer close(e.done)
	for {
		if e.admit() {
			for _, s := range e.running {
				e.finish(s, ErrClosed, false)
			}
			e.running = nil
			e.publish()
			return
		}
		if len(e.running) == 0 {
			e.publish()
			select {
			case <-e.wake:
			case <-e.quit:
			}
			continue
		}
		e.step()
	}
}

// admit moves queued requests into the running set while there is room. It reports
// whether the engine is closed (queued requests are then failed).
func (e *Engine) admit() (closed bool) {
	e.mu.Lock()
	if e.closed {
		for _, s := range e.queue {
			s.out.end(ErrClosed)
		}
		e.queue = nil
		e.nQueued.Store(0)
		e.mu.Unlock()
		return true
	}
	var admitted []*seq
	for len(e.queue) > 0 && len(e.running)+len(admitted) < e.cfg.MaxSeqs {
		s := e.queue[0]
		if err := s.ctx.Err(); err != nil {
			s.out.end(err)
			e.queue[0] = nil
			e.queue = e.queue[1:]
			continue
		}
		if e.cfg.MaxKVTokens > 0 && e.kvReserved+s.reserve > e.cfg.MaxKVTokens && len(e.running)+len(admitted) > 0 {
			break
		}
		e.kvReserved += s.reserve
		e.queue[0] = nil
		e.queue = e.queue[1:]
		admitted = append(admitted, s)
	}
	if len(e.queue) == 0 {
		e.queue = nil // let the backing array go
	}
	e.nQueued.Store(int64(len(e.queue)))
	e.mu.Unlock()
	for _, s := range admitted {
		e.start(s)
	}
	return false
}

// start gives an admitted sequence its cache, reusing a cached prefix if any.
func (e *Engine) start(s *seq) {
	now := time.Now()
	s.cache = e.m.NewKVCache(e.maxCtx, min(len(s.prompt)+min(s.budget, 64), e.maxCtx))
	cached := 0
	if e.prefix != nil {
		if ent, n := e.prefix.lookup(s.prompt); n > 0 {
			s.cache.CopyPrefix(ent.cache, n)
			s.pos, cached = n, n
		}
	}
	s.out.update(func(in *Info) {
		in.CachedTokens = cached
		in.QueueTime = now.Sub(s.enq)
	})
	e.running = append(e.running, s)
}

// step runs one batched forward pass over every running sequence and samples.
func (e *Engine) step() {
	t0 := time.Now()
	for _, s := range e.running {
		if err := s.ctx.Err(); err != nil {
			e.finish(s, err, true)
		}
	}
	e.compact()
	if len(e.running) == 0 {
		return
	}
	steps, seqs := e.steps[:0], e.stepSeqs[:0]
	budget := e.cfg.MaxStepTokens
	decode, prefill := 0, 0
	for _, s := range e.running {
		if s.pos == len(s.prompt) {
			steps = append(steps, dbrx.Step{Cache: s.cache, IDs: s.generated[len(s.generated)-1:]})
			seqs = append(seqs, s)
			s.chunk = 0
			budget--
			decode++
		}
	}
	for _, s := range e.running {
		if s.pos < len(s.prompt) && budget > 0 {
			n := min(len(s.prompt)-s.pos, e.cfg.PrefillChunk, budget)
			steps = append(steps, dbrx.Step{Cache: s.cache, IDs: s.prompt[s.pos : s.pos+n]})
			seqs = append(seqs, s)
			s.chunk = n
			budget -= n
			prefill += n
		}
	}
	e.steps, e.stepSeqs = steps, seqs
	logits, err := e.forward(steps)
	clear(e.steps) // drop cache references
	if err != nil {
		e.log.Error("engine: forward failed", "err", err, "seqs", len(seqs))
		for _, s := range seqs {
			e.finish(s, fmt.Errorf("engine: internal error: %w", err), false)
		}
		e.compact()
		return
	}
	V := e.m.Config.VocabSize
	todo := e.todo[:0]
	for i, s := range seqs {
		if s.chunk > 0 {
			s.pos += s.chunk
			if s.pos < len(s.prompt) {
				continue
			}
			e.cachePrompt(s)
		}
		todo = append(todo, sampleJob{s, logits[i*V : (i+1)*V]})
	}
	e.todo = todo
	if len(todo) > 1 && e.pool != nil {
		e.pool.For(len(todo), 1, func(lo, hi int) {
			for _, j := range todo[lo:hi] {
				j.s.sampleRow(j.row)
			}
		})
	} else {
		for _, j := range todo {
			j.s.sampleRow(j.row)
		}
	}
	for _, j := range todo {
		s := j.s
		if s.err != nil {
			e.finish(s, s.err, false)
			continue
		}
		if len(s.generated) == 1 {
			ttft := time.Since(s.enq)
			s.out.update(func(in *Info) { in.TimeToFirstToken = ttft })
		}
		s.out.push(s.tok)
		if s.tok.Finish != "" {
			e.finish(s, nil, true)
		}
	}
	clear(e.todo)
	e.compact()
	e.stepCount.Add(1)
	e.publish()
	if e.cfg.OnStep != nil {
		e.cfg.OnStep(StepInfo{Seqs: len(seqs), DecodeTokens: decode, PrefillTokens: prefill, Duration: time.Since(t0)})
	}
}

// forward runs the model, turning a panic into an error so one bad step cannot take
// the server down.
func (e *Engine) forward(steps []dbrx.Step) (logits []float32, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic in forward: %v", r)
		}
	}()
	if e.fwd != nil {
		logits, err = e.fwd(e.ws, steps)
	} else {
		logits, err = e.m.Forward(e.ws, steps)
	}
	for i, c := range e.routed {
		if c != 0 {
			e.experts[i].Add(c)
			e.routed[i] = 0
		}
	}
	return logits, err
}

// trace counts the experts each token is routed to (the top-k of the router
// probabilities, lower index first on ties, as nn.TopK selects them).
func (e *Engine) trace(p dbrx.TracePoint, layer int, probs []float32) {
	if p != dbrx.TraceRouterProbs || layer < 0 || layer >= e.nLayers {
		return
	}
	E, K := e.nExperts, e.m.Config.FFNConfig.MoETopK
	counts := e.routed[layer*E : (layer+1)*E]
	for t := 0; t+E <= len(probs); t += E {
		row := probs[t : t+E]
		clear(e.taken)
		for k := 0; k < K; k++ {
			best := -1
			for j, v := range row {
				if !e.taken[j] && (best < 0 || v > row[best]) {
					best = j
				}
			}
			if best < 0 {
				break
			}
			e.taken[best] = true
			counts[best]++
		}
	}
}

// cachePrompt offers a just-prefilled prompt to the prefix cache (a copy: the
// sequence keeps its own cache), so concurrent requests sharing it benefit at once.
func (e *Engine) cachePrompt(s *seq) {
	p := e.prefix
	if !p.enabled() || len(s.prompt) < p.min || len(s.prompt) > p.max || p.covers(s.prompt) {
		return
	}
	c := e.m.NewKVCache(e.maxCtx, len(s.prompt))
	c.CopyPrefix(s.cache, len(s.prompt))
	p.insert(s.prompt, c)
}

// sampleRow samples the next token of s from its logits row and applies the stop
// rules, leaving the token in s.tok (or the failure in s.err). It touches only s, so
// rows are sampled in parallel.
func (s *seq) sampleRow(row []float32) {
	// With NoLogProb the sampler's greedy path is a single argmax pass.
	res, err := s.sampler.SampleSplit(row, s.prompt, s.generated)
	if err != nil {
		s.err = fmt.Errorf("engine: sampling: %w", err)
		return
	}
	if s.wantTop {
		res = res.Clone()
	} else {
		res.Top = nil
	}
	tok := Token{ID: res.ID, LogProb: res.LogProb, Top: res.Top}
	s.generated = append(s.generated, res.ID)
	if !s.ignoreEOS && slices.Contains(s.stopIDs, res.ID) {
		tok.Finish = FinishStop
		tok.Text = s.flushText()
		s.tok = tok
		return
	}
	if s.dec != nil {
		b, _ := s.dec.Add(res.ID) // ids that are no token (embedding padding) decode to nothing
		text, stopped := s.stop.push(b)
		tok.Text = text
		if stopped {
			tok.Finish = FinishStop
			s.tok = tok
			return
		}
	}
	if len(s.generated) >= s.budget {
		tok.Finish = FinishLength
		tok.Text += s.flushText()
	}
	s.tok = tok
}

// flushText ends the text stream: an incomplete character becomes U+FFFD and held
// text that did not turn into a stop sequence is released.
func (s *seq) flushText() string {
	if s.dec == nil {
		return ""
	}
	text, stopped := s.stop.push(s.dec.Flush())
	if stopped {
		return text
	}
	return text + s.stop.flush()
}

// finish ends s: its stream gets io.EOF (err nil) or err, and its cache goes to the
// prefix cache if donate and it is consistent. The caller removes it from running
// with compact.
func (e *Engine) finish(s *seq, err error, donate bool) {
	if s.done {
		return
	}
	s.done = true
	fin := s.tok.Finish
	n := len(s.generated)
	s.out.update(func(in *Info) {
		in.CompletionTokens = n
		if err == nil {
			in.Finish = fin
		}
	})
	if err == nil {
		s.out.end(io.EOF)
	} else {
		s.out.end(err)
	}
	e.kvReserved -= s.reserve
	if donate && s.cache != nil && e.prefix.enabled() {
		L := s.cache.Len
		toks := make([]int, 0, L)
		toks = append(toks, s.prompt[:min(L, len(s.prompt))]...)
		if L > len(s.prompt) {
			toks = append(toks, s.generated[:L-len(s.prompt)]...)
		}
		c := s.cache
		if cap(c.K[0]) > L*e.kvRowSize*5/4+64*e.kvRowSize {
			c = e.m.NewKVCache(e.maxCtx, L)
			c.CopyPrefix(s.cache, L)
		}
		e.prefix.insert(toks, c)
	}
	s.cache = nil
	s.sampler = nil
}

// compact removes finished sequences from the running set.
func (e *Engine) compact() {
	live := e.running[:0]
	for _, s := range e.running {
		if !s.done {
			live = append(live, s)
		}
	}
	clear(e.running[len(live):])
	e.running = live
}

// publish updates the counters Stats reads.
func (e *Engine) publish() {
	kv := 0
	for _, s := range e.running {
		if s.cache != nil {
			kv += s.cache.Len
		}
	}
	e.kvTokens.Store(int64(kv))
	e.nRunning.Store(int64(len(e.running)))
	if p := e.prefix; p != nil {
		e.prefixEntries.Store(int64(len(p.entries)))
		e.prefixTokens.Store(int64(p.tokens))
		e.prefixHits.Store(p.hits)
		e.prefixMisses.Store(p.misses)
		e.prefixHitTokens.Store(p.hitTokens)
	}
}

// Stats is a snapshot of the engine's state and counters.
type Stats struct {
	Queued          int        // requests waiting for admission
	Running         int        // sequences in the batch (prefill or decode)
	KVTokens        int        // KV positions held by running sequences
	PrefixEntries   int        // prefix-cache entries
	PrefixTokens    int        // KV positions held by the prefix cache
	PrefixHits      uint64     // admissions that reused a cached prefix
	PrefixMisses    uint64     // admissions that found none
	PrefixHitTokens uint64     // prompt tokens not recomputed thanks to the cache
	Steps           uint64     // batched forward passes run
	KVBytesPerToken int        // bytes of one KV position (all layers, K and V)
	ExpertTokens    [][]uint64 // [layer][expert] tokens routed to each expert
}

// Stats returns a snapshot of the engine's counters.
func (e *Engine) Stats() Stats {
	st := Stats{
		Queued: int(e.nQueued.Load()), Running: int(e.nRunning.Load()), KVTokens: int(e.kvTokens.Load()),
		PrefixEntries: int(e.prefixEntries.Load()), PrefixTokens: int(e.prefixTokens.Load()),
		PrefixHits: e.prefixHits.Load(), PrefixMisses: e.prefixMisses.Load(), PrefixHitTokens: e.prefixHitTokens.Load(),
		Steps:           e.stepCount.Load(),
		KVBytesPerToken: e.nLayers * e.kvRowSize * 2 * 4,
		ExpertTokens:    make([][]uint64, e.nLayers),
	}
	for l := range st.ExpertTokens {
		row := make([]uint64, e.nExperts)
		for x := range row {
			row[x] = e.experts[l*e.nExperts+x].Load()
		}
		st.ExpertTokens[l] = row
	}
	return st
}
