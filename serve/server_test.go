package serve

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dbrx-engine/dbrx/engine"
	"github.com/dbrx-engine/dbrx/internal/parallel"
	"github.com/dbrx-engine/dbrx/model/dbrx"
	"github.com/dbrx-engine/dbrx/tokenizer"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

const (
	testModel = "C"
	testKey   = "sk-test-key"
)

var (
	fixtureOnce sync.Once
	fixtureC    *dbrx.Model
	fixtureErr  error
)

// modelC loads fixture C with its context raised from 256 to 1024 positions (a copy
// of config.json beside links to the weights), so chat prompts with the ~220-token
// default system prompt leave room to generate.
func modelC(t testing.TB) *dbrx.Model {
	t.Helper()
	fixtureOnce.Do(func() { fixtureC, fixtureErr = loadWideC() })
	if fixtureErr != nil {
		t.Fatal(fixtureErr)
	}
	return fixtureC
}

func loadWideC() (*dbrx.Model, error) {
	src, err := filepath.Abs("../testdata/dbrx/C")
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "dbrx-serve-test-")
	if err != nil {
		return nil, err
	}
	tmpDir = dir
	entries, err := os.ReadDir(src)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		name := e.Name()
		switch {
		case name == "config.json":
			b, err := os.ReadFile(filepath.Join(src, name))
			if err != nil {
				return nil, err
			}
			var cfg map[string]any
			if err := json.Unmarshal(b, &cfg); err != nil {
				return nil, err
			}
			cfg["max_seq_len"] = testContext
			if b, err = json.Marshal(cfg); err != nil {
				return nil, err
			}
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
				return nil, err
			}
		case strings.HasSuffix(name, ".json") || strings.HasSuffix(name, ".safetensors"):
			if err := os.Symlink(filepath.Join(src, name), filepath.Join(dir, name)); err != nil {
				return nil, err
			}
		}
	}
	return dbrx.Load(dir)
}

const testContext = 1024

var tmpDir string

func TestMain(m *testing.M) {
	code := m.Run()
	if tmpDir != "" {
		os.RemoveAll(tmpDir)
	}
	os.Exit(code)
}

type harness struct {
	srv    *Server
	eng    *engine.Engine
	ts     *httptest.Server
	client openai.Client
}

// newHarness serves fixture C (max_seq_len 256, cl100k vocabulary) over real HTTP.
func newHarness(t *testing.T, ecfg engine.Config, scfg Config) *harness {
	t.Helper()
	if scfg.ModelName == "" {
		scfg.ModelName = testModel
	}
	if scfg.APIKeys == nil {
		scfg.APIKeys = []string{testKey}
	}
	srv, err := New(scfg)
	if err != nil {
		t.Fatal(err)
	}
	ecfg.OnStep = srv.OnStep
	pool := parallel.New(2)
	eng, err := engine.New(modelC(t), tokenizer.DBRX(), pool, ecfg)
	if err != nil {
		t.Fatal(err)
	}
	srv.SetEngine(eng)
	ts := httptest.NewServer(srv)
	t.Cleanup(func() {
		ts.Close()
		eng.Close()
		pool.Close()
	})
	return &harness{srv: srv, eng: eng, ts: ts, client: openai.NewClient(option.WithBaseURL(ts.URL+"/v1/"),
		option.WithAPIKey(testKey), option.WithMaxRetries(0))}
}

func userChat(text string, maxTokens int64) openai.ChatCompletionNewParams {
	return openai.ChatCompletionNewParams{
		Model:       testModel,
		Messages:    []openai.ChatCompletionMessageParamUnion{openai.UserMessage(text)},
		MaxTokens:   openai.Int(maxTokens),
		Temperature: openai.Float(0),
	}
}

// post sends a raw JSON body and returns the status and decoded body.
func (h *harness) post(t *testing.T, path, body string, key string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("POST", h.ts.URL+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &out); err != nil && resp.Header.Get("Content-Type") == "application/json" {
		t.Fatalf("%s: bad JSON %q: %v", path, b, err)
	}
	return resp.StatusCode, out
}

func apiErr(t *testing.T, err error) *openai.Error {
	t.Helper()
	var e *openai.Error
	if !errors.As(err, &e) {
		t.Fatalf("want *openai.Error, got %v", err)
	}
	return e
}

func TestListModels(t *testing.T) {
	h := newHarness(t, engine.Config{}, Config{})
	ctx := context.Background()
	page, err := h.client.Models.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Data) != 1 || page.Data[0].ID != testModel || page.Data[0].Object != "model" {
		t.Fatalf("models %+v", page.Data)
	}
	m, err := h.client.Models.Get(ctx, testModel)
	if err != nil || m.ID != testModel {
		t.Fatalf("get: %v %+v", err, m)
	}
	_, err = h.client.Models.Get(ctx, "gpt-4")
	if e := apiErr(t, err); e.StatusCode != 404 || e.Code != "model_not_found" {
		t.Fatalf("get unknown: %+v", e)
	}
}

func TestChatCompletion(t *testing.T) {
	h := newHarness(t, engine.Config{}, Config{})
	ctx := context.Background()
	resp, err := h.client.Chat.Completions.New(ctx, userChat("What is Machine Learning?", 8))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Object != "chat.completion" || resp.Model != testModel || !strings.HasPrefix(resp.ID, "chatcmpl-") {
		t.Errorf("header fields %q %q %q", resp.Object, resp.Model, resp.ID)
	}
	if len(resp.Choices) != 1 {
		t.Fatalf("%d choices", len(resp.Choices))
	}
	c := resp.Choices[0]
	if c.FinishReason != "length" || c.Message.Role != "assistant" {
		t.Errorf("finish %q role %q", c.FinishReason, c.Message.Role)
	}
	want, _ := DBRXTemplate(tokenizer.DBRX())([]Message{{Role: "user", Content: "What is Machine Learning?"}})
	if resp.Usage.PromptTokens != int64(len(want)) || resp.Usage.CompletionTokens != 8 || resp.Usage.TotalTokens != int64(len(want))+8 {
		t.Errorf("usage %+v, want prompt %d completion 8", resp.Usage, len(want))
	}
	// Greedy is deterministic, and the second run reuses the cached prompt prefix.
	again, err := h.client.Chat.Completions.New(ctx, userChat("What is Machine Learning?", 8))
	if err != nil {
		t.Fatal(err)
	}
	if again.Choices[0].Message.Content != c.Message.Content {
		t.Errorf("greedy differs: %q vs %q", again.Choices[0].Message.Content, c.Message.Content)
	}
	if again.Usage.PromptTokensDetails.CachedTokens == 0 {
		t.Errorf("no cached tokens on the repeated prompt: %+v", again.Usage)
	}
}

func TestChatStreamIncludeUsage(t *testing.T) {
	h := newHarness(t, engine.Config{}, Config{})
	ctx := context.Background()
	whole, err := h.client.Chat.Completions.New(ctx, userChat("Tell me a story.", 10))
	if err != nil {
		t.Fatal(err)
	}
	p := userChat("Tell me a story.", 10)
	p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	p.Logprobs = openai.Bool(true)
	p.TopLogprobs = openai.Int(3)
	stream := h.client.Chat.Completions.NewStreaming(ctx, p)
	var acc openai.ChatCompletionAccumulator
	chunks, usageChunks, lps := 0, 0, 0
	for stream.Next() {
		ch := stream.Current()
		acc.AddChunk(ch)
		chunks++
		if ch.Object != "chat.completion.chunk" {
			t.Errorf("object %q", ch.Object)
		}
		if ch.JSON.Usage.Valid() && ch.Usage.TotalTokens > 0 {
			usageChunks++
			if len(ch.Choices) != 0 {
				t.Errorf("usage chunk has %d choices", len(ch.Choices))
			}
		}
		for _, c := range ch.Choices {
			for _, lp := range c.Logprobs.Content {
				lps++
				if len(lp.TopLogprobs) != 3 {
					t.Errorf("top_logprobs %d", len(lp.TopLogprobs))
				}
			}
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if usageChunks != 1 || acc.Usage.CompletionTokens != 10 || acc.Usage.PromptTokens != whole.Usage.PromptTokens {
		t.Errorf("usage chunks %d, usage %+v", usageChunks, acc.Usage)
	}
	if got := acc.Choices[0].Message.Content; got != whole.Choices[0].Message.Content {
		t.Errorf("streamed %q, whole %q", got, whole.Choices[0].Message.Content)
	}
	if acc.Choices[0].FinishReason != "length" {
		t.Errorf("finish %q", acc.Choices[0].FinishReason)
	}
	if lps != 10 {
		t.Errorf("%d logprob entries, want 10", lps)
	}
}

func TestCompletions(t *testing.T) {
	h := newHarness(t, engine.Config{}, Config{})
	ctx := context.Background()
	p := openai.CompletionNewParams{Model: testModel, Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("Once upon a time")},
		MaxTokens: openai.Int(6), Temperature: openai.Float(0), Logprobs: openai.Int(2)}
	resp, err := h.client.Completions.New(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Object != "text_completion" || len(resp.Choices) != 1 || resp.Choices[0].FinishReason != "length" {
		t.Fatalf("%+v", resp)
	}
	ids := tokenizer.DBRX().Encode("Once upon a time", tokenizer.AllowAll)
	if resp.Usage.PromptTokens != int64(len(ids)) || resp.Usage.CompletionTokens != 6 {
		t.Errorf("usage %+v", resp.Usage)
	}
	if n := len(resp.Choices[0].Logprobs.Tokens); n != 6 {
		t.Errorf("%d logprob tokens", n)
	}
	// Token-id prompts give the same completion; the stream matches.
	ip := p
	ip.Prompt = openai.CompletionNewParamsPromptUnion{OfArrayOfTokens: toInt64(ids)}
	byIDs, err := h.client.Completions.New(ctx, ip)
	if err != nil {
		t.Fatal(err)
	}
	if byIDs.Choices[0].Text != resp.Choices[0].Text {
		t.Errorf("ids prompt %q, text prompt %q", byIDs.Choices[0].Text, resp.Choices[0].Text)
	}
	sp := p
	sp.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	stream := h.client.Completions.NewStreaming(ctx, sp)
	var text string
	var usage int64
	fin := ""
	for stream.Next() {
		c := stream.Current()
		for _, ch := range c.Choices {
			text += ch.Text
			if ch.FinishReason != "" {
				fin = string(ch.FinishReason)
			}
		}
		usage += c.Usage.CompletionTokens
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if text != resp.Choices[0].Text || fin != "length" || usage != 6 {
		t.Errorf("stream %q fin %q usage %d; whole %q", text, fin, usage, resp.Choices[0].Text)
	}
	// Several prompts × n choices.
	mp := p
	mp.Prompt = openai.CompletionNewParamsPromptUnion{OfArrayOfStrings: []string{"a", "b"}}
	mp.N = openai.Int(2)
	multi, err := h.client.Completions.New(ctx, mp)
	if err != nil {
		t.Fatal(err)
	}
	if len(multi.Choices) != 4 || multi.Choices[0].Text != multi.Choices[1].Text {
		t.Errorf("multi %+v", multi.Choices)
	}
}

func toInt64(ids []int) []int64 {
	out := make([]int64, len(ids))
	for i, v := range ids {
		out[i] = int64(v)
	}
	return out
}

// TestStopSequences: a stop sequence spanning a token boundary ends the text just
// before it (finish_reason "stop") and is never emitted, streamed or not.
func TestStopSequences(t *testing.T) {
	h := newHarness(t, engine.Config{}, Config{})
	ctx := context.Background()
	base := openai.CompletionNewParams{Model: testModel, Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("The quick brown fox")},
		MaxTokens: openai.Int(12), Temperature: openai.Float(0), Logprobs: openai.Int(0)}
	full, err := h.client.Completions.New(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	text := full.Choices[0].Text
	toks := full.Choices[0].Logprobs.Tokens
	// Find a boundary between two tokens with printable text on both sides.
	stop, at := "", -1
	off := 0
	for i := 0; i+1 < len(toks); i++ {
		off += len(toks[i])
		a, b := toks[i], toks[i+1]
		if off > 0 && len(a) > 0 && len(b) > 0 && !strings.ContainsRune(a+b, '\uFFFD') && off <= len(text) {
			la, fb := a[len(a)-1:], b[:1]
			cand := la + fb
			if strings.Index(text, cand) == off-1 {
				stop, at = cand, off-1
				break
			}
		}
	}
	if at < 0 {
		t.Skipf("no usable token boundary in %q (%q)", text, toks)
	}
	t.Logf("full %q, stop %q at %d", text, stop, at)
	sp := base
	sp.Stop = openai.CompletionNewParamsStopUnion{OfStringArray: []string{"\x00never", stop}}
	got, err := h.client.Completions.New(ctx, sp)
	if err != nil {
		t.Fatal(err)
	}
	if got.Choices[0].Text != text[:at] || got.Choices[0].FinishReason != "stop" {
		t.Errorf("with stop %q: %q (%s), want %q (stop); full %q", stop, got.Choices[0].Text, got.Choices[0].FinishReason, text[:at], text)
	}
	stream := h.client.Completions.NewStreaming(ctx, sp)
	var streamed string
	for stream.Next() {
		for _, c := range stream.Current().Choices {
			streamed += c.Text
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if streamed != text[:at] {
		t.Errorf("streamed %q, want %q", streamed, text[:at])
	}
	// Chat with a string stop.
	cp := userChat("hello", 12)
	cfull, err := h.client.Chat.Completions.New(ctx, cp)
	if err != nil {
		t.Fatal(err)
	}
	ct := cfull.Choices[0].Message.Content
	if len(ct) >= 3 {
		s := ct[1:3]
		if strings.ContainsRune(s, '\uFFFD') || !isASCII(s) {
			return
		}
		t.Logf("chat %q, stop %q", ct, s)
		cp.Stop = openai.ChatCompletionNewParamsStopUnion{OfString: openai.String(s)}
		cs, err := h.client.Chat.Completions.New(ctx, cp)
		if err != nil {
			t.Fatal(err)
		}
		if want := ct[:strings.Index(ct, s)]; cs.Choices[0].Message.Content != want || cs.Choices[0].FinishReason != "stop" {
			t.Errorf("chat stop %q: %q (%s), want %q", s, cs.Choices[0].Message.Content, cs.Choices[0].FinishReason, want)
		}
	}
}

// TestStreamN: streamed choices carry their index; each equals its non-streamed twin.
func TestStreamN(t *testing.T) {
	h := newHarness(t, engine.Config{}, Config{})
	ctx := context.Background()
	p := userChat("Two answers please.", 6)
	p.Temperature, p.Seed, p.N = openai.Float(0.9), openai.Int(11), openai.Int(2)
	whole, err := h.client.Chat.Completions.New(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	stream := h.client.Chat.Completions.NewStreaming(ctx, p)
	var acc openai.ChatCompletionAccumulator
	for stream.Next() {
		acc.AddChunk(stream.Current())
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if len(acc.Choices) != 2 {
		t.Fatalf("%d streamed choices", len(acc.Choices))
	}
	for i := range 2 {
		if acc.Choices[i].Message.Content != whole.Choices[i].Message.Content || acc.Choices[i].FinishReason != whole.Choices[i].FinishReason {
			t.Errorf("choice %d: streamed %q (%s), whole %q (%s)", i, acc.Choices[i].Message.Content, acc.Choices[i].FinishReason,
				whole.Choices[i].Message.Content, whole.Choices[i].FinishReason)
		}
	}
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func TestSeedReproducible(t *testing.T) {
	h := newHarness(t, engine.Config{}, Config{})
	ctx := context.Background()
	run := func(seed int64) string {
		p := userChat("Pick a random word.", 12)
		p.Temperature = openai.Float(1)
		p.Seed = openai.Int(seed)
		r, err := h.client.Chat.Completions.New(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		return r.Choices[0].Message.Content
	}
	a, b, c := run(42), run(42), run(43)
	if a != b {
		t.Errorf("seed 42 gave %q then %q", a, b)
	}
	if a == c {
		t.Errorf("seeds 42 and 43 both gave %q", a)
	}
	// top_k = 1 (an extension) is greedy at any temperature.
	gp := userChat("Pick a random word.", 12)
	gr, err := h.client.Chat.Completions.New(ctx, gp)
	if err != nil {
		t.Fatal(err)
	}
	kp := userChat("Pick a random word.", 12)
	kp.Temperature = openai.Float(1.5)
	kr, err := h.client.Chat.Completions.New(ctx, kp, option.WithJSONSet("top_k", 1), option.WithJSONSet("min_p", 0.1),
		option.WithJSONSet("repetition_penalty", 1))
	if err != nil {
		t.Fatal(err)
	}
	if kr.Choices[0].Message.Content != gr.Choices[0].Message.Content {
		t.Errorf("top_k 1: %q, greedy %q", kr.Choices[0].Message.Content, gr.Choices[0].Message.Content)
	}
	// n choices with a seed: reproducible as a whole, and different from each other.
	p := userChat("Pick a random word.", 12)
	p.Temperature, p.Seed, p.N = openai.Float(1), openai.Int(7), openai.Int(3)
	r1, err := h.client.Chat.Completions.New(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := h.client.Chat.Completions.New(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if len(r1.Choices) != 3 {
		t.Fatalf("%d choices", len(r1.Choices))
	}
	for i := range r1.Choices {
		if r1.Choices[i].Index != int64(i) || r1.Choices[i].Message.Content != r2.Choices[i].Message.Content {
			t.Errorf("choice %d: %q vs %q", i, r1.Choices[i].Message.Content, r2.Choices[i].Message.Content)
		}
	}
	if r1.Choices[0].Message.Content == r1.Choices[1].Message.Content {
		t.Errorf("choices 0 and 1 are equal: %q", r1.Choices[0].Message.Content)
	}
}

func TestAuth(t *testing.T) {
	h := newHarness(t, engine.Config{}, Config{})
	ctx := context.Background()
	for _, key := range []string{"wrong", testKey + "x", ""} {
		c := openai.NewClient(option.WithBaseURL(h.ts.URL+"/v1/"), option.WithAPIKey(key), option.WithMaxRetries(0))
		_, err := c.Models.List(ctx)
		if e := apiErr(t, err); e.StatusCode != 401 || e.Code != "invalid_api_key" || e.Type != "invalid_request_error" {
			t.Errorf("key %q: %+v", key, e)
		}
	}
	st, body := h.post(t, "/v1/chat/completions", `{}`, "")
	if st != 401 || body["error"] == nil {
		t.Errorf("no key: %d %v", st, body)
	}
	// /health and /metrics need no key.
	for _, p := range []string{"/health", "/metrics"} {
		resp, err := http.Get(h.ts.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s: %d", p, resp.StatusCode)
		}
	}
}

// TestBadRequests: every invalid input is an OpenAI-shaped 4xx naming the parameter.
func TestBadRequests(t *testing.T) {
	h := newHarness(t, engine.Config{}, Config{MaxBodyBytes: 64 << 10})
	msgs := `"messages":[{"role":"user","content":"hi"}]`
	chat := func(extra string) string { return `{"model":"C",` + msgs + extra + `}` }
	long := strings.Repeat("hello ", 1100)
	cases := []struct {
		name, path, body string
		status           int
		param, code      string
	}{
		{"temperature range", "/v1/chat/completions", chat(`,"temperature":3`), 400, "temperature", "invalid_value"},
		{"temperature type", "/v1/chat/completions", chat(`,"temperature":"hot"`), 400, "temperature", "invalid_type"},
		{"top_p", "/v1/chat/completions", chat(`,"top_p":1.5`), 400, "top_p", "invalid_value"},
		{"presence", "/v1/chat/completions", chat(`,"presence_penalty":-3`), 400, "presence_penalty", "invalid_value"},
		{"frequency", "/v1/chat/completions", chat(`,"frequency_penalty":2.5`), 400, "frequency_penalty", "invalid_value"},
		{"max_tokens 0", "/v1/chat/completions", chat(`,"max_tokens":0`), 400, "max_tokens", "integer_below_min_value"},
		{"max_completion_tokens", "/v1/chat/completions", chat(`,"max_completion_tokens":-1`), 400, "max_completion_tokens", "integer_below_min_value"},
		{"max_tokens float", "/v1/chat/completions", chat(`,"max_tokens":1.5`), 400, "max_tokens", "invalid_type"},
		{"n 0", "/v1/chat/completions", chat(`,"n":0`), 400, "n", "invalid_value"},
		{"n huge", "/v1/chat/completions", chat(`,"n":1000`), 400, "n", "invalid_value"},
		{"top_logprobs alone", "/v1/chat/completions", chat(`,"top_logprobs":2`), 400, "top_logprobs", "invalid_value"},
		{"top_logprobs range", "/v1/chat/completions", chat(`,"logprobs":true,"top_logprobs":21`), 400, "top_logprobs", "invalid_value"},
		{"stop type", "/v1/chat/completions", chat(`,"stop":5`), 400, "stop", "invalid_type"},
		{"stop too many", "/v1/chat/completions", chat(`,"stop":["a","b","c","d","e"]`), 400, "stop", "array_above_max_length"},
		{"stream_options no stream", "/v1/chat/completions", chat(`,"stream_options":{"include_usage":true}`), 400, "stream_options", "invalid_value"},
		{"top_k", "/v1/chat/completions", chat(`,"top_k":-5`), 400, "top_k", "invalid_value"},
		{"min_p", "/v1/chat/completions", chat(`,"min_p":2`), 400, "min_p", "invalid_value"},
		{"repetition_penalty", "/v1/chat/completions", chat(`,"repetition_penalty":0`), 400, "repetition_penalty", "invalid_value"},
		{"no model", "/v1/chat/completions", `{` + msgs + `}`, 400, "model", "missing_required_parameter"},
		{"unknown model", "/v1/chat/completions", `{"model":"gpt-4",` + msgs + `}`, 404, "model", "model_not_found"},
		{"no messages", "/v1/chat/completions", `{"model":"C","messages":[]}`, 400, "messages", "empty_array"},
		{"bad role", "/v1/chat/completions", `{"model":"C","messages":[{"role":"wizard","content":"x"}]}`, 400, "messages[0].role", "invalid_value"},
		{"only system", "/v1/chat/completions", `{"model":"C","messages":[{"role":"system","content":"x"}]}`, 400, "messages", "invalid_value"},
		{"no role", "/v1/chat/completions", `{"model":"C","messages":[{"content":"x"}]}`, 400, "messages[0].role", "missing_required_parameter"},
		{"image part", "/v1/chat/completions", `{"model":"C","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}`, 400, "messages[0].content[0].type", "invalid_value"},
		{"content type", "/v1/chat/completions", `{"model":"C","messages":[{"role":"user","content":7}]}`, 400, "messages[0].content", "invalid_type"},
		{"messages type", "/v1/chat/completions", `{"model":"C","messages":"hi"}`, 400, "messages", "invalid_type"},
		{"context", "/v1/chat/completions", `{"model":"C","messages":[{"role":"user","content":"` + long + `"}]}`, 400, "messages", "context_length_exceeded"},
		{"context with max_tokens", "/v1/chat/completions", chat(`,"max_tokens":900`), 400, "messages", "context_length_exceeded"},
		{"bad json", "/v1/chat/completions", `{"model":`, 400, "", "invalid_json"},
		{"not an object", "/v1/chat/completions", `[1,2]`, 400, "", "invalid_json"},
		{"empty body", "/v1/chat/completions", ``, 400, "", "invalid_json"},
		{"too large", "/v1/chat/completions", `{"model":"C","x":"` + strings.Repeat("a", 70<<10) + `"}`, 413, "", ""},
		{"no prompt", "/v1/completions", `{"model":"C"}`, 400, "prompt", "missing_required_parameter"},
		{"prompt type", "/v1/completions", `{"model":"C","prompt":{"a":1}}`, 400, "prompt", "invalid_type"},
		{"prompt ids range", "/v1/completions", `{"model":"C","prompt":[1,2,999999]}`, 400, "prompt", "invalid_value"},
		{"prompt negative id", "/v1/completions", `{"model":"C","prompt":[-1]}`, 400, "prompt", "invalid_value"},
		{"empty id prompt", "/v1/completions", `{"model":"C","prompt":[[1],[]]}`, 400, "prompt", "invalid_value"},
		{"completion logprobs", "/v1/completions", `{"model":"C","prompt":"x","logprobs":6}`, 400, "logprobs", "invalid_value"},
		{"completion context", "/v1/completions", `{"model":"C","prompt":"x","max_tokens":100000}`, 400, "prompt", "context_length_exceeded"},
		{"unknown path", "/v1/embeddings", `{}`, 404, "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st, body := h.post(t, c.path, c.body, testKey)
			if st != c.status {
				t.Fatalf("status %d, want %d: %v", st, c.status, body)
			}
			e, ok := body["error"].(map[string]any)
			if !ok {
				t.Fatalf("no error object: %v", body)
			}
			if msg, _ := e["message"].(string); msg == "" {
				t.Errorf("empty message")
			}
			if _, ok := e["type"].(string); !ok {
				t.Errorf("no type: %v", e)
			}
			param, _ := e["param"].(string)
			code, _ := e["code"].(string)
			if param != c.param || (c.code != "" && code != c.code) {
				t.Errorf("param %q code %q, want %q %q (%v)", param, code, c.param, c.code, e["message"])
			}
		})
	}
	// The SDK surfaces the same errors.
	p := userChat("hi", 5)
	p.Temperature = openai.Float(-1)
	_, err := h.client.Chat.Completions.New(context.Background(), p)
	if e := apiErr(t, err); e.StatusCode != 400 || e.Param != "temperature" {
		t.Errorf("sdk: %+v", e)
	}
	// Unknown fields are ignored.
	st, body := h.post(t, "/v1/chat/completions", chat(`,"max_tokens":2,"temperature":0,"frobnicate":{"x":[1]},"tools":[],"user":"u1"`), testKey)
	if st != 200 {
		t.Errorf("unknown fields: %d %v", st, body)
	}
	// The server still works after all of that.
	if _, err := h.client.Chat.Completions.New(context.Background(), userChat("hi", 2)); err != nil {
		t.Fatal(err)
	}
}

// TestConcurrentStreamsMatchSequential: 16 simultaneous streaming greedy requests
// give the same tokens as the same requests run one at a time.
func TestConcurrentStreamsMatchSequential(t *testing.T) {
	h := newHarness(t, engine.Config{MaxSeqs: 16, PrefillChunk: 32, MaxStepTokens: 96}, Config{})
	ctx := context.Background()
	const n = 16
	params := func(i int) openai.ChatCompletionNewParams {
		p := userChat(fmt.Sprintf("Request number %d: %s", i, strings.Repeat("tell me more ", i)), 10)
		p.Logprobs = openai.Bool(true)
		p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
		return p
	}
	run := func(i int) ([]string, string, error) {
		stream := h.client.Chat.Completions.NewStreaming(ctx, params(i))
		var toks []string
		var text string
		for stream.Next() {
			for _, c := range stream.Current().Choices {
				text += c.Delta.Content
				for _, lp := range c.Logprobs.Content {
					toks = append(toks, fmt.Sprint(lp.Bytes))
				}
			}
		}
		return toks, text, stream.Err()
	}
	seqToks := make([][]string, n)
	seqText := make([]string, n)
	for i := range n {
		var err error
		if seqToks[i], seqText[i], err = run(i); err != nil {
			t.Fatal(err)
		}
		if len(seqToks[i]) != 10 {
			t.Fatalf("request %d: %d tokens", i, len(seqToks[i]))
		}
	}
	parToks := make([][]string, n)
	parText := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { parToks[i], parText[i], errs[i] = run(i) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("request %d: %v", i, errs[i])
		}
		if strings.Join(parToks[i], " ") != strings.Join(seqToks[i], " ") || parText[i] != seqText[i] {
			t.Errorf("request %d: concurrent %q, sequential %q", i, parText[i], seqText[i])
		}
	}
	// The batch really was shared: some step ran more than one sequence.
	if !strings.Contains(h.metrics(t), "dbrx_batch_size_bucket") {
		t.Error("no batch size metric")
	}
}

func (h *harness) metrics(t *testing.T) string {
	t.Helper()
	resp, err := http.Get(h.ts.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func TestMetrics(t *testing.T) {
	h := newHarness(t, engine.Config{}, Config{})
	if _, err := h.client.Chat.Completions.New(context.Background(), userChat("hi", 3)); err != nil {
		t.Fatal(err)
	}
	h.post(t, "/v1/chat/completions", `{"model":"C","messages":[]}`, testKey)
	m := h.metrics(t)
	for _, want := range []string{
		`dbrx_requests_total{code="200",endpoint="chat"} 1`,
		`dbrx_requests_total{code="400",endpoint="chat"} 1`,
		`dbrx_request_errors_total{endpoint="chat",type="invalid_request_error"} 1`,
		`dbrx_generated_tokens_total 3`,
		"dbrx_prompt_tokens_total",
		"dbrx_time_to_first_token_seconds_count 1",
		"dbrx_inter_token_latency_seconds_count 2",
		"dbrx_queue_depth 0",
		"dbrx_batch_size_count",
		"dbrx_kv_cache_tokens",
		`dbrx_expert_tokens_total{expert="15",layer="2"}`,
		"dbrx_ready 1",
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	// Routing counts: every token of every layer goes to top_k experts.
	var sum float64
	for line := range strings.Lines(m) {
		if strings.HasPrefix(line, `dbrx_expert_tokens_total{`) && strings.Contains(line, `layer="0"`) {
			var v float64
			fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v)
			sum += v
		}
	}
	st := h.eng.Stats()
	if sum == 0 || int(sum)%4 != 0 || st.Steps == 0 {
		t.Errorf("layer 0 routed %v tokens (want a positive multiple of top_k 4)", sum)
	}
}

// TestQueueFull: with one running slot and a queue of one, a third request is a 429.
func TestQueueFull(t *testing.T) {
	h := newHarness(t, engine.Config{MaxSeqs: 1, MaxQueue: 1, MaxStepTokens: 64, PrefillChunk: 32}, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	long := userChat("go on", 60)
	long.Temperature = openai.Float(0)
	s1 := h.client.Chat.Completions.NewStreaming(ctx, long)
	if !s1.Next() {
		t.Fatal(s1.Err())
	}
	done := make(chan error, 1)
	go func() {
		_, err := h.client.Chat.Completions.New(ctx, userChat("second", 2))
		done <- err
	}()
	waitFor(t, func() bool { return h.eng.Stats().Queued == 1 })
	_, err := h.client.Chat.Completions.New(ctx, userChat("third", 2))
	if e := apiErr(t, err); e.StatusCode != 429 || e.Code != "rate_limit_exceeded" {
		t.Errorf("third: %+v", e)
	}
	for s1.Next() {
	}
	if err := <-done; err != nil {
		t.Errorf("queued request failed: %v", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestDisconnectCancels: a client going away mid-stream ends its sequence and frees
// its KV cache.
func TestDisconnectCancels(t *testing.T) {
	h := newHarness(t, engine.Config{}, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	p := userChat("a long story please", 60)
	stream := h.client.Chat.Completions.NewStreaming(ctx, p)
	for i := 0; i < 3 && stream.Next(); i++ {
	}
	if h.eng.Stats().Running != 1 {
		t.Fatalf("running %d", h.eng.Stats().Running)
	}
	cancel()
	stream.Close()
	waitFor(t, func() bool { st := h.eng.Stats(); return st.Running == 0 && st.KVTokens == 0 })
	// Raw connection drop during a non-streaming request as well.
	req, _ := http.NewRequest("POST", h.ts.URL+"/v1/chat/completions", strings.NewReader(`{"model":"C","max_tokens":60,"messages":[{"role":"user","content":"more"}]}`))
	req.Header.Set("Authorization", "Bearer "+testKey)
	rctx, rcancel := context.WithCancel(context.Background())
	go func() {
		waitFor(t, func() bool { return h.eng.Stats().Running == 1 })
		rcancel()
	}()
	if _, err := http.DefaultClient.Do(req.WithContext(rctx)); err == nil {
		t.Fatal("request was not cancelled")
	}
	waitFor(t, func() bool { return h.eng.Stats().Running == 0 })
}

func TestHealthAndDrain(t *testing.T) {
	srv, err := New(Config{ModelName: testModel})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	get := func(p string) int {
		resp, err := http.Get(ts.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := get("/health"); st != 503 {
		t.Errorf("health before load: %d", st)
	}
	if st := get("/v1/models"); st != 503 {
		t.Errorf("models before load: %d", st)
	}
	pool := parallel.New(1)
	defer pool.Close()
	eng, err := engine.New(modelC(t), tokenizer.DBRX(), pool, engine.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	srv.SetEngine(eng)
	if st := get("/health"); st != 200 {
		t.Errorf("health after load: %d", st)
	}
	srv.SetDraining()
	if st := get("/health"); st != 503 {
		t.Errorf("health while draining: %d", st)
	}
	if st := get("/v1/models"); st != 503 {
		t.Errorf("models while draining: %d", st)
	}
}

// TestGracefulShutdown: http.Server.Shutdown lets an in-flight stream finish.
func TestGracefulShutdown(t *testing.T) {
	h := newHarness(t, engine.Config{}, Config{})
	hs := &http.Server{Handler: h.srv}
	ln := h.ts.Listener
	_ = ln
	ts := httptest.NewUnstartedServer(h.srv)
	ts.Config = hs
	ts.Start()
	defer ts.Close()
	client := openai.NewClient(option.WithBaseURL(ts.URL+"/v1/"), option.WithAPIKey(testKey), option.WithMaxRetries(0))
	stream := client.Chat.Completions.NewStreaming(context.Background(), userChat("finish me", 20))
	if !stream.Next() {
		t.Fatal(stream.Err())
	}
	shut := make(chan error, 1)
	go func() {
		h.srv.SetDraining()
		shut <- hs.Shutdown(context.Background())
	}()
	text := ""
	fin := ""
	for stream.Next() {
		for _, c := range stream.Current().Choices {
			text += c.Delta.Content
			if c.FinishReason != "" {
				fin = c.FinishReason
			}
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if fin != "length" {
		t.Errorf("stream cut during drain: finish %q", fin)
	}
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
}

// TestSSEShape checks the raw event stream: role first, content deltas, a finish
// chunk, the usage chunk with empty choices, then [DONE].
func TestSSEShape(t *testing.T) {
	h := newHarness(t, engine.Config{}, Config{})
	req, _ := http.NewRequest("POST", h.ts.URL+"/v1/chat/completions", strings.NewReader(
		`{"model":"C","max_tokens":3,"temperature":0,"stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Authorization", "Bearer "+testKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("content type %q", ct)
	}
	var events []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			events = append(events, d)
		}
	}
	if len(events) < 4 || events[len(events)-1] != "[DONE]" {
		t.Fatalf("events %q", events)
	}
	var first, usageChunk map[string]any
	json.Unmarshal([]byte(events[0]), &first)
	json.Unmarshal([]byte(events[len(events)-2]), &usageChunk)
	if d := first["choices"].([]any)[0].(map[string]any)["delta"].(map[string]any); d["role"] != "assistant" {
		t.Errorf("first delta %v", d)
	}
	if _, ok := first["usage"]; !ok || first["usage"] != nil {
		t.Errorf("first chunk usage %v (want explicit null)", first["usage"])
	}
	if ch := usageChunk["choices"].([]any); len(ch) != 0 || usageChunk["usage"] == nil {
		t.Errorf("usage chunk %v", usageChunk)
	}
}
