package engine

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/dbrx-engine/dbrx/internal/parallel"
	"github.com/dbrx-engine/dbrx/model/dbrx"
	"github.com/dbrx-engine/dbrx/sample"
	"github.com/dbrx-engine/dbrx/tokenizer"
)

var (
	fixtureOnce sync.Once
	fixtureC    *dbrx.Model
	fixtureErr  error
)

// modelC loads fixture C (vocabulary 100352 = cl100k ids, max_seq_len 256) once.
func modelC(t testing.TB) *dbrx.Model {
	t.Helper()
	fixtureOnce.Do(func() { fixtureC, fixtureErr = dbrx.Load("../testdata/dbrx/C") })
	if fixtureErr != nil {
		t.Fatal(fixtureErr)
	}
	return fixtureC
}

func newEngine(t testing.TB, cfg Config, tok *tokenizer.Tokenizer) *Engine {
	t.Helper()
	pool := parallel.New(2)
	e, err := New(modelC(t), tok, pool, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close(); pool.Close() })
	return e
}

func randomPrompt(rng *rand.Rand, n int) []int {
	p := make([]int, n)
	for i := range p {
		p[i] = rng.IntN(100000)
	}
	return p
}

func collect(t testing.TB, st *Stream) ([]int, string, FinishReason) {
	t.Helper()
	var ids []int
	var text string
	var fin FinishReason
	for tok, err := range st.Tokens() {
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, tok.ID)
		text += tok.Text
		fin = tok.Finish
	}
	return ids, text, fin
}

// waitStats polls the engine's published counters (updated after each step).
func waitStats(t *testing.T, e *Engine, cond func(Stats) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond(e.Stats()) {
		if time.Now().After(deadline) {
			t.Fatalf("engine stats not reached: %+v", e.Stats())
		}
		time.Sleep(time.Millisecond)
	}
}

func greedy(prompt []int, n int) Request {
	return Request{Prompt: prompt, MaxNewTokens: n, IgnoreEOS: true}
}

// TestBatchedMatchesAlone: 16 simultaneous greedy sequences give the same tokens as
// the same requests run one at a time, and as the single-sequence Generator.
func TestBatchedMatchesAlone(t *testing.T) {
	e := newEngine(t, Config{PrefillChunk: 24, MaxStepTokens: 64}, nil)
	rng := rand.New(rand.NewPCG(7, 7))
	const n = 16
	prompts := make([][]int, n)
	for i := range prompts {
		prompts[i] = randomPrompt(rng, 5+7*i)
	}
	ctx := context.Background()
	alone := make([][]int, n)
	for i, p := range prompts {
		st, err := e.Submit(ctx, greedy(p, 12))
		if err != nil {
			t.Fatal(err)
		}
		alone[i], _, _ = collect(t, st)
	}
	// The argmax fast path (no log-probabilities wanted) picks the same tokens.
	for i, p := range prompts[:4] {
		req := greedy(p, 12)
		req.NoLogProb = true
		st, err := e.Submit(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if got, _, _ := collect(t, st); !slices.Equal(got, alone[i]) {
			t.Errorf("seq %d: argmax path %v, sampler %v", i, got, alone[i])
		}
	}
	g := &Generator{Model: modelC(t)}
	for i, p := range prompts[:3] {
		var want []int
		for tok, err := range g.Generate(ctx, greedy(p, 12)) {
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, tok.ID)
		}
		if !slices.Equal(want, alone[i]) {
			t.Errorf("seq %d: engine %v, generator %v", i, alone[i], want)
		}
	}
	streams := make([]*Stream, n)
	for i, p := range prompts {
		var err error
		if streams[i], err = e.Submit(ctx, greedy(p, 12)); err != nil {
			t.Fatal(err)
		}
	}
	for i, st := range streams {
		got, _, fin := collect(t, st)
		if !slices.Equal(got, alone[i]) {
			t.Errorf("seq %d batched %v, alone %v", i, got, alone[i])
		}
		if fin != FinishLength {
			t.Errorf("seq %d finish %q", i, fin)
		}
	}
}

func TestSubmitErrors(t *testing.T) {
	e := newEngine(t, Config{}, nil)
	ctx := context.Background()
	maxCtx := e.MaxContext()
	cases := []struct {
		name string
		req  Request
		want error
	}{
		{"empty prompt", Request{}, ErrEmptyPrompt},
		{"negative id", Request{Prompt: []int{1, -1}}, ErrTokenRange},
		{"id past vocab", Request{Prompt: []int{100352}}, ErrTokenRange},
		{"negative budget", Request{Prompt: []int{1}, MaxNewTokens: -1}, ErrBadRequest},
		{"prompt fills context", Request{Prompt: make([]int, maxCtx)}, ErrPromptTooLong},
		{"prompt + budget over context", Request{Prompt: make([]int, 10), MaxNewTokens: maxCtx - 9}, ErrPromptTooLong},
		{"stop without tokenizer", Request{Prompt: []int{1}, Stop: []string{"x"}}, ErrNoTokenizer},
		{"bad temperature", Request{Prompt: []int{1}, Sampling: sample.Config{Temperature: 3}}, sample.ErrInvalidConfig},
	}
	for _, c := range cases {
		st, err := e.Submit(ctx, c.req)
		if !errors.Is(err, c.want) || st != nil {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
	var cle *ContextLengthError
	if _, err := e.Submit(ctx, Request{Prompt: make([]int, 10), MaxNewTokens: maxCtx}); !errors.As(err, &cle) || cle.Context != maxCtx || cle.PromptTokens != 10 {
		t.Errorf("context error %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := e.Submit(cctx, greedy([]int{1}, 1)); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled ctx: %v", err)
	}
	// Exactly filling the context is fine.
	st, err := e.Submit(ctx, greedy(make([]int, maxCtx-2), 2))
	if err != nil {
		t.Fatal(err)
	}
	if ids, _, fin := collect(t, st); len(ids) != 2 || fin != FinishLength {
		t.Errorf("full context: %v %q", ids, fin)
	}
}

func TestQueueFullAndClose(t *testing.T) {
	e := newEngine(t, Config{MaxSeqs: 1, MaxQueue: 2, MaxStepTokens: 8, PrefillChunk: 4}, nil)
	ctx := context.Background()
	var streams []*Stream
	for i := 0; i < 3; i++ {
		st, err := e.Submit(ctx, greedy([]int{1, 2, 3}, 200))
		if err != nil {
			t.Fatalf("submit %d: %v", i, err)
		}
		streams = append(streams, st)
		if i == 0 {
			if _, err := st.Next(); err != nil { // running, so the next two queue
				t.Fatal(err)
			}
		}
	}
	if _, err := e.Submit(ctx, greedy([]int{1}, 1)); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("want ErrQueueFull, got %v", err)
	}
	// A queued request whose client left frees its place at once.
	gone, cancel := context.WithCancel(ctx)
	e.mu.Lock()
	e.queue[1].ctx = gone
	e.mu.Unlock()
	cancel()
	st, err := e.Submit(ctx, greedy([]int{1, 2, 3}, 200))
	if err != nil {
		t.Fatalf("submit after a queued client left: %v", err)
	}
	if _, err := streams[2].Next(); !errors.Is(err, context.Canceled) {
		t.Errorf("purged stream: %v", err)
	}
	streams[2] = st
	waitStats(t, e, func(st Stats) bool { return st.Queued == 2 && st.Running == 1 })
	e.Close()
	for i, st := range streams {
		var err error
		for _, err = range st.Tokens() {
			if err != nil {
				break
			}
		}
		if !errors.Is(err, ErrClosed) {
			t.Errorf("stream %d after Close: %v", i, err)
		}
	}
	if _, err := e.Submit(ctx, greedy([]int{1}, 1)); !errors.Is(err, ErrClosed) {
		t.Errorf("submit after close: %v", err)
	}
}

func TestCancelFreesSequence(t *testing.T) {
	e := newEngine(t, Config{}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	st, err := e.Submit(ctx, greedy([]int{5, 6, 7}, 200))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Next(); err != nil {
		t.Fatal(err)
	}
	cancel()
	for {
		if _, err := st.Next(); err != nil {
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("got %v", err)
			}
			break
		}
	}
	waitStats(t, e, func(st Stats) bool { return st.Running == 0 && st.KVTokens == 0 })
	// A request cancelled while still queued is dropped at admission.
	e2 := newEngine(t, Config{MaxSeqs: 1, MaxStepTokens: 8}, nil)
	busy, _ := e2.Submit(context.Background(), greedy([]int{1}, 30))
	qctx, qcancel := context.WithCancel(context.Background())
	queued, err := e2.Submit(qctx, greedy([]int{2}, 30))
	if err != nil {
		t.Fatal(err)
	}
	qcancel()
	if _, err := queued.Next(); !errors.Is(err, context.Canceled) {
		t.Errorf("queued: %v", err)
	}
	collect(t, busy)
}

// TestStopIDs: the model's EOS ids (or explicit StopIDs) end a sequence with
// FinishStop, and are reported as the last token.
func TestStopIDs(t *testing.T) {
	e := newEngine(t, Config{}, nil)
	ctx := context.Background()
	prompt := []int{11, 12, 13}
	st, _ := e.Submit(ctx, greedy(prompt, 8))
	ids, _, _ := collect(t, st)
	stopAt := ids[3]
	first := slices.Index(ids, stopAt)
	st, _ = e.Submit(ctx, Request{Prompt: prompt, MaxNewTokens: 8, StopIDs: []int{stopAt}})
	got, _, fin := collect(t, st)
	if !slices.Equal(got, ids[:first+1]) || fin != FinishStop {
		t.Errorf("stop at %d: %v %q, want %v", stopAt, got, fin, ids[:first+1])
	}
	if info := st.Info(); info.CompletionTokens != first+1 || info.Finish != FinishStop || info.PromptTokens != 3 {
		t.Errorf("info %+v", info)
	}
}

// TestStopSequencesText: stop strings are matched across token boundaries and never
// emitted; the text of all tokens equals the decoded ids otherwise.
func TestStopSequencesText(t *testing.T) {
	tok := tokenizer.DBRX()
	e := newEngine(t, Config{}, tok)
	ctx := context.Background()
	prompt := tok.Encode("Hello, world", tokenizer.AllowNone)
	st, _ := e.Submit(ctx, greedy(prompt, 16))
	ids, text, fin := collect(t, st)
	if fin != FinishLength {
		t.Fatalf("finish %q", fin)
	}
	var kept []int
	for _, id := range ids {
		if _, err := tok.TokenBytes(id); err == nil {
			kept = append(kept, id)
		}
	}
	want, _ := tok.DecodeString(kept)
	if text != want {
		t.Fatalf("streamed text %q, decoded %q", text, want)
	}
	for cut := 1; cut+3 <= len(text); cut += 3 {
		stop := text[cut : cut+3]
		if !utf8.ValidString(stop) {
			continue
		}
		st, err := e.Submit(ctx, Request{Prompt: prompt, MaxNewTokens: 16, IgnoreEOS: true, Stop: []string{"\x00zz", stop}})
		if err != nil {
			t.Fatal(err)
		}
		_, got, fin := collect(t, st)
		wantText := text[:strings.Index(text, stop)]
		if got != wantText || fin != FinishStop {
			t.Errorf("stop %q: %q (%s), want %q", stop, got, fin, wantText)
		}
	}
}

func TestStopText(t *testing.T) {
	st := newStopText([]string{"END", "", "xy"})
	var out string
	for i, piece := range []string{"ab", "cE", "N", "x", "Q", "EN", "D", "tail"} {
		o, stopped := st.push([]byte(piece))
		out += o
		if stopped {
			if i != 6 || out != "abcENxQ" {
				t.Errorf("stopped at %d with %q", i, out)
			}
			return
		}
	}
	t.Errorf("no stop; out %q", out)
}

func TestPrefixCache(t *testing.T) {
	p := newPrefixCache(100, 4)
	kv := func(n int) *dbrx.KVCache { c := &dbrx.KVCache{Len: n}; return c }
	seqOf := func(lo, n int) []int {
		s := make([]int, n)
		for i := range s {
			s[i] = lo + i
		}
		return s
	}
	if e, n := p.lookup(seqOf(0, 10)); e != nil || n != 0 {
		t.Fatal("hit in empty cache")
	}
	p.insert(seqOf(0, 3), kv(3)) // shorter than min: ignored
	if len(p.entries) != 0 {
		t.Fatal("kept a too-short entry")
	}
	p.insert(seqOf(0, 20), kv(20))
	p.insert(seqOf(0, 30), kv(30)) // subsumes the first
	if len(p.entries) != 1 || p.tokens != 30 {
		t.Fatalf("entries %d tokens %d", len(p.entries), p.tokens)
	}
	p.insert(seqOf(0, 25), kv(25)) // covered: not added
	if len(p.entries) != 1 {
		t.Fatal("covered prefix added")
	}
	// The last prompt token is always recomputed.
	if _, n := p.lookup(seqOf(0, 30)); n != 29 {
		t.Errorf("full match reuses %d", n)
	}
	q := append(seqOf(0, 12), 999, 998)
	if _, n := p.lookup(q); n != 12 {
		t.Errorf("partial match reuses %d", n)
	}
	p.insert(seqOf(1000, 40), kv(40))
	p.insert(seqOf(2000, 40), kv(40)) // 110 > 100: evicts the least recently used
	if p.tokens > 100 || len(p.entries) != 2 {
		t.Fatalf("tokens %d entries %d", p.tokens, len(p.entries))
	}
	if _, n := p.lookup(seqOf(0, 30)); n != 0 {
		t.Error("LRU entry survived")
	}
	if p.hits != 2 || p.misses != 2 || p.hitTokens != 41 {
		t.Errorf("counters %d %d %d", p.hits, p.misses, p.hitTokens)
	}
}

// TestPrefixReuse: a prompt sharing a long prefix with a finished one reuses its KV
// and produces the same greedy tokens as without the cache.
func TestPrefixReuse(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	shared := randomPrompt(rng, 120)
	a := append(slices.Clone(shared), randomPrompt(rng, 5)...)
	b := append(slices.Clone(shared), randomPrompt(rng, 7)...)
	ctx := context.Background()

	cold := newEngine(t, Config{PrefixCacheTokens: -1}, nil)
	st, _ := cold.Submit(ctx, greedy(b, 8))
	want, _, _ := collect(t, st)

	e := newEngine(t, Config{}, nil)
	st, _ = e.Submit(ctx, greedy(a, 8))
	collect(t, st)
	if st.Info().CachedTokens != 0 {
		t.Errorf("first request cached %d", st.Info().CachedTokens)
	}
	st, _ = e.Submit(ctx, greedy(b, 8))
	got, _, _ := collect(t, st)
	if c := st.Info().CachedTokens; c != len(shared) {
		t.Errorf("cached %d tokens, want %d", c, len(shared))
	}
	if !slices.Equal(got, want) {
		t.Errorf("with prefix cache %v, without %v", got, want)
	}
	waitStats(t, e, func(s Stats) bool {
		return s.PrefixHits == 1 && s.PrefixHitTokens == uint64(len(shared)) && s.PrefixTokens > 0
	})
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []Config{{MaxSeqs: -1}, {MaxQueue: -2}, {MaxStepTokens: 4, MaxSeqs: 8}, {MaxContext: -1}, {MaxKVTokens: -1}, {PrefillChunk: -1}} {
		if c.Validate() == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	if _, err := New(nil, nil, nil, Config{}); err == nil {
		t.Error("nil model accepted")
	}
}

// TestRoutingCounts: every token of every layer is routed to top_k experts.
func TestRoutingCounts(t *testing.T) {
	e := newEngine(t, Config{}, nil)
	st, _ := e.Submit(context.Background(), greedy([]int{1, 2, 3, 4}, 3))
	collect(t, st)
	// 4 prompt tokens + 2 decode inputs pass through each layer.
	K := uint64(e.Model().Config.FFNConfig.MoETopK)
	for l, row := range e.Stats().ExpertTokens {
		var sum uint64
		for _, v := range row {
			sum += v
		}
		if sum != 6*K {
			t.Errorf("layer %d: %d routings, want %d", l, sum, 6*K)
		}
	}
}

func TestMaxKVTokensAdmission(t *testing.T) {
	e := newEngine(t, Config{MaxKVTokens: 40}, nil)
	ctx := context.Background()
	s1, _ := e.Submit(ctx, greedy([]int{1, 2}, 30))
	s2, _ := e.Submit(ctx, greedy([]int{3, 4}, 30)) // waits: 32 + 32 > 40
	if _, err := s1.Next(); err != nil {
		t.Fatal(err)
	}
	waitStats(t, e, func(st Stats) bool { return st.Queued == 1 && st.Running == 1 })
	collect(t, s1)
	if ids, _, _ := collect(t, s2); len(ids) != 30 {
		t.Errorf("second got %d tokens", len(ids))
	}
}

// TestChunkedPrefill: a long prompt is prefilled in PrefillChunk pieces, each step
// also advancing the sequence already decoding.
func TestChunkedPrefill(t *testing.T) {
	var mu sync.Mutex
	var infos []StepInfo
	e := newEngine(t, Config{MaxSeqs: 4, PrefillChunk: 16, MaxStepTokens: 32, OnStep: func(si StepInfo) {
		mu.Lock()
		infos = append(infos, si)
		mu.Unlock()
	}}, nil)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(5, 5))
	a, _ := e.Submit(ctx, greedy(randomPrompt(rng, 4), 60))
	if _, err := a.Next(); err != nil {
		t.Fatal(err)
	}
	b, _ := e.Submit(ctx, greedy(randomPrompt(rng, 120), 2))
	collect(t, b)
	collect(t, a)
	mu.Lock()
	defer mu.Unlock()
	mixed := 0
	for _, si := range infos {
		if si.PrefillTokens > 16 {
			t.Fatalf("step prefilled %d tokens, chunk is 16", si.PrefillTokens)
		}
		if si.PrefillTokens > 0 && si.DecodeTokens > 0 {
			mixed++
		}
	}
	if mixed < 120/16 {
		t.Errorf("only %d steps mixed prefill chunks with decoding", mixed)
	}
}

// TestInternalFailures: a failing or panicking forward pass and unsampleable logits
// fail only the sequences involved; the engine keeps serving.
func TestInternalFailures(t *testing.T) {
	e := newEngine(t, Config{}, nil)
	ctx := context.Background()
	V := e.Model().Config.VocabSize
	nan := make([]float32, V)
	for i := range nan {
		nan[i] = float32(math.NaN())
	}
	for _, c := range []struct {
		name string
		fwd  func(*dbrx.Workspace, []dbrx.Step) ([]float32, error)
		want string
	}{
		{"error", func(*dbrx.Workspace, []dbrx.Step) ([]float32, error) { return nil, errors.New("boom") }, "internal error: boom"},
		{"panic", func(*dbrx.Workspace, []dbrx.Step) ([]float32, error) { panic("kaboom") }, "panic in forward: kaboom"},
		{"nan logits", func(_ *dbrx.Workspace, steps []dbrx.Step) ([]float32, error) {
			for _, s := range steps {
				s.Cache.Len += len(s.IDs)
			}
			return nan, nil
		}, "sampling"},
	} {
		e.mu.Lock() // orders the write before the engine goroutine's next step
		e.fwd = c.fwd
		e.mu.Unlock()
		for _, noLP := range []bool{false, true} {
			req := greedy([]int{1, 2}, 3)
			req.NoLogProb = noLP
			st, err := e.Submit(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			_, err = st.Next()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%s: got %v, want %q", c.name, err, c.want)
			}
		}
	}
	e.mu.Lock()
	e.fwd = nil
	e.mu.Unlock()
	st, err := e.Submit(ctx, greedy([]int{1, 2}, 3))
	if err != nil {
		t.Fatal(err)
	}
	if ids, _, _ := collect(t, st); len(ids) != 3 {
		t.Errorf("after failures: %v", ids)
	}
}
