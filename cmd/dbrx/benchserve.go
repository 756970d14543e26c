package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dbrx-engine/dbrx/engine"
	"github.com/dbrx-engine/dbrx/internal/parallel"
	"github.com/dbrx-engine/dbrx/model/dbrx"
	"github.com/dbrx-engine/dbrx/serve"
	"github.com/dbrx-engine/dbrx/tokenizer"
)

func init() {
	register(command{name: "bench-serve", summary: "benchmark the HTTP server: aggregate tokens/s by concurrency, time to first token with a cached prefix", run: runBenchServe})
}

func runBenchServe(ctx context.Context, e env, args []string) error {
	fs := newFlags("bench-serve", e)
	modelDir := fs.String("model", "", "model directory (HF checkpoint)")
	streamsFlag := fs.String("streams", "1,4,16", "comma-separated concurrency levels")
	maxTokens := fs.Int("max-tokens", 128, "tokens generated per stream")
	promptLen := fs.Int("prompt-tokens", 16, "prompt tokens per stream in the throughput runs")
	prefix := fs.Int("prefix", 300, "shared prefix tokens in the time-to-first-token runs (0 = skip)")
	suffix := fs.Int("suffix", 16, "distinct suffix tokens after the shared prefix")
	runs := fs.Int("ttft-runs", 5, "time-to-first-token samples each way")
	reps := fs.Int("reps", 1, "repetitions of the throughput levels (the best of each level is reported)")
	threads := fs.Int("threads", 0, "worker threads (0 = all cores)")
	seed := fs.Uint64("seed", 1, "seed of the random prompts")
	asJSON := fs.Bool("json", false, "print one JSON object instead of a table")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	ef := addEngineFlags(fs)
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, pos[0])
	}
	if *modelDir == "" {
		return fmt.Errorf("%w: --model is required", errUsage)
	}
	var levels []int
	for _, s := range strings.Split(*streamsFlag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return fmt.Errorf("%w: --streams: bad level %q", errUsage, s)
		}
		levels = append(levels, n)
	}
	if *maxTokens < 1 || *promptLen < 1 || *prefix < 0 || *suffix < 1 || *runs < 1 || *reps < 1 {
		return fmt.Errorf("%w: --max-tokens, --prompt-tokens, --suffix, --ttft-runs and --reps must be >= 1, --prefix >= 0", errUsage)
	}
	ecfg, err := ef.config()
	if err != nil {
		return err
	}
	if mx := slices.Max(levels); ecfg.MaxSeqs < mx {
		return fmt.Errorf("%w: --max-seqs %d is below the largest --streams level %d", errUsage, ecfg.MaxSeqs, mx)
	}

	m, err := dbrx.Load(*modelDir)
	if err != nil {
		return err
	}
	defer m.Close()
	pool := parallel.New(*threads)
	defer pool.Close()
	srv, err := serve.New(serve.Config{ModelName: "bench"})
	if err != nil {
		return err
	}
	var stepMu sync.Mutex
	var stepN int
	var stepDur time.Duration
	ecfg.OnStep = func(si engine.StepInfo) {
		srv.OnStep(si)
		if si.PrefillTokens == 0 {
			stepMu.Lock()
			stepN++
			stepDur += si.Duration
			stepMu.Unlock()
		}
	}
	stepMean := func() float64 {
		stepMu.Lock()
		defer stepMu.Unlock()
		if stepN == 0 {
			return 0
		}
		v := float64(stepDur.Microseconds()) / 1e3 / float64(stepN)
		stepN, stepDur = 0, 0
		return v
	}
	eng, err := engine.New(m, tokenizer.DBRX(), pool, ecfg)
	if err != nil {
		return err
	}
	defer eng.Close()
	srv.SetEngine(eng)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: srv}
	go hs.Serve(ln)
	defer hs.Close()
	b := &benchClient{url: "http://" + ln.Addr().String() + "/v1/completions", client: &http.Client{}}
	rng := rand.New(rand.NewPCG(*seed, 0x5eed))
	V := min(m.Config.VocabSize, tokenizer.EndOfText) // ordinary tokens only
	randIDs := func(n int) []int {
		ids := make([]int, n)
		for i := range ids {
			ids[i] = rng.IntN(V)
		}
		return ids
	}
	c := m.Config
	report := benchReport{Model: *modelDir, DModel: c.DModel, Layers: c.NLayers, Experts: c.FFNConfig.MoENumExperts,
		TopK: c.FFNConfig.MoETopK, Vocab: c.VocabSize, Threads: pool.Workers(), MaxTokens: *maxTokens, PromptTokens: *promptLen}
	if !*asJSON {
		fmt.Fprintf(e.stdout, "model %s: d_model %d, %d layers, %d experts top-%d, vocab %d; %d threads\n",
			*modelDir, c.DModel, c.NLayers, c.FFNConfig.MoENumExperts, c.FFNConfig.MoETopK, c.VocabSize, pool.Workers())
		fmt.Fprintf(e.stdout, "throughput: %d-token prompts, %d generated tokens per stream, greedy, streaming /v1/completions, best of %d\n", *promptLen, *maxTokens, *reps)
		fmt.Fprintf(e.stdout, "%8s %10s %8s %12s %14s %10s %10s %10s\n", "streams", "gen_tokens", "wall_s", "agg_tok/s", "stream_tok/s", "ttft_ms", "itl_ms", "step_ms")
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	// Warm up (page in the weights, grow the workspace).
	if _, err := b.run(ctx, randIDs(*promptLen), 4); err != nil {
		return err
	}
	stepMean()
	// Each repetition runs every level once (levels interleaved, so load from other
	// processes spreads over all of them); the best repetition of each level counts.
	best := make([]benchLevel, len(levels))
	for rep := range *reps {
		for li, n := range levels {
			lvl, err := b.level(ctx, n, *promptLen, *maxTokens, randIDs)
			if err != nil {
				return err
			}
			lvl.MeanDecodeStepms = stepMean()
			if rep == 0 || lvl.AggTokensPerSec > best[li].AggTokensPerSec {
				best[li] = lvl
			}
		}
	}
	report.Levels = best
	if !*asJSON {
		for _, lvl := range best {
			fmt.Fprintf(e.stdout, "%8d %10d %8.2f %12.1f %14.1f %10.1f %10.1f %10.1f\n", lvl.Streams, lvl.GeneratedTokens, lvl.WallSeconds,
				lvl.AggTokensPerSec, lvl.StreamTokensPerSec, lvl.MeanTTFTms, lvl.MeanITLms, lvl.MeanDecodeStepms)
		}
	}
	if len(report.Levels) > 1 {
		report.Speedup = report.Levels[len(report.Levels)-1].AggTokensPerSec / report.Levels[0].AggTokensPerSec
		if !*asJSON {
			fmt.Fprintf(e.stdout, "aggregate speed-up, %d streams vs %d: %.2fx\n", report.Levels[len(report.Levels)-1].Streams,
				report.Levels[0].Streams, report.Speedup)
		}
	}

	if *prefix > 0 {
		if *prefix+*suffix+2 > eng.MaxContext() {
			return fmt.Errorf("%w: --prefix + --suffix exceeds the context (%d)", errUsage, eng.MaxContext())
		}
		median := func(d []time.Duration) float64 {
			slices.Sort(d)
			return float64(d[len(d)/2].Microseconds()) / 1e3
		}
		var cold, warm []time.Duration
		for range *runs { // a fresh prefix each time: nothing cached
			r, err := b.run(ctx, append(randIDs(*prefix), randIDs(*suffix)...), 1)
			if err != nil {
				return err
			}
			cold = append(cold, r.ttft)
		}
		shared := randIDs(*prefix)
		if _, err := b.run(ctx, append(slices.Clone(shared), randIDs(*suffix)...), 1); err != nil {
			return err
		}
		for range *runs {
			r, err := b.run(ctx, append(slices.Clone(shared), randIDs(*suffix)...), 1)
			if err != nil {
				return err
			}
			if r.cached < *prefix {
				return fmt.Errorf("bench-serve: expected %d cached prompt tokens, server reported %d", *prefix, r.cached)
			}
			warm = append(warm, r.ttft)
		}
		report.Prefix, report.Suffix = *prefix, *suffix
		report.TTFTUncachedms, report.TTFTCachedms = median(cold), median(warm)
		report.TTFTRatio = report.TTFTUncachedms / report.TTFTCachedms
		if !*asJSON {
			fmt.Fprintf(e.stdout, "time to first token, %d-token shared prefix + %d-token suffix (median of %d):\n", *prefix, *suffix, *runs)
			fmt.Fprintf(e.stdout, "  uncached %8.1f ms\n  cached   %8.1f ms\n  ratio    %8.2fx\n", report.TTFTUncachedms, report.TTFTCachedms, report.TTFTRatio)
		}
	}
	if *asJSON {
		out, _ := json.MarshalIndent(report, "", "  ")
		fmt.Fprintf(e.stdout, "%s\n", out)
	}
	return nil
}

type benchLevel struct {
	Streams            int     `json:"streams"`
	GeneratedTokens    int     `json:"generated_tokens"`
	WallSeconds        float64 `json:"wall_s"`
	AggTokensPerSec    float64 `json:"aggregate_tokens_per_s"`
	StreamTokensPerSec float64 `json:"stream_tokens_per_s"`
	MeanTTFTms         float64 `json:"mean_ttft_ms"`
	MeanITLms          float64 `json:"mean_itl_ms"`
	MeanDecodeStepms   float64 `json:"mean_decode_step_ms"` // engine step without prefill: forward + sampling
}

type benchReport struct {
	Model          string       `json:"model"`
	DModel         int          `json:"d_model"`
	Layers         int          `json:"n_layers"`
	Experts        int          `json:"experts"`
	TopK           int          `json:"top_k"`
	Vocab          int          `json:"vocab"`
	Threads        int          `json:"threads"`
	MaxTokens      int          `json:"max_tokens"`
	PromptTokens   int          `json:"prompt_tokens"`
	Levels         []benchLevel `json:"levels"`
	Speedup        float64      `json:"speedup"`
	Prefix         int          `json:"prefix_tokens,omitempty"`
	Suffix         int          `json:"suffix_tokens,omitempty"`
	TTFTUncachedms float64      `json:"ttft_uncached_ms,omitempty"`
	TTFTCachedms   float64      `json:"ttft_cached_ms,omitempty"`
	TTFTRatio      float64      `json:"ttft_ratio,omitempty"`
}

type benchClient struct {
	url    string
	client *http.Client
}

type streamResult struct {
	tokens      int
	cached      int
	ttft        time.Duration // request sent -> first token chunk
	first, last time.Time
}

func (r streamResult) itl() time.Duration {
	if r.tokens < 2 {
		return 0
	}
	return r.last.Sub(r.first) / time.Duration(r.tokens-1)
}

// level runs n concurrent streams and measures their aggregate throughput.
func (b *benchClient) level(ctx context.Context, n, promptLen, maxTokens int, randIDs func(int) []int) (benchLevel, error) {
	var wg sync.WaitGroup
	res := make([]streamResult, n)
	errs := make([]error, n)
	prompts := make([][]int, n)
	for i := range prompts {
		prompts[i] = randIDs(promptLen)
	}
	t0 := time.Now()
	for i := range n {
		wg.Go(func() { res[i], errs[i] = b.run(ctx, prompts[i], maxTokens) })
	}
	wg.Wait()
	wall := time.Since(t0)
	if err := errors.Join(errs...); err != nil {
		return benchLevel{}, err
	}
	lvl := benchLevel{Streams: n, WallSeconds: wall.Seconds()}
	var ttft, itl time.Duration
	for _, r := range res {
		lvl.GeneratedTokens += r.tokens
		ttft += r.ttft
		itl += r.itl()
	}
	lvl.AggTokensPerSec = float64(lvl.GeneratedTokens) / wall.Seconds()
	lvl.StreamTokensPerSec = lvl.AggTokensPerSec / float64(n)
	lvl.MeanTTFTms = float64(ttft.Microseconds()) / 1e3 / float64(n)
	lvl.MeanITLms = float64(itl.Microseconds()) / 1e3 / float64(n)
	return lvl, nil
}

// run streams one greedy completion of ids and times it.
func (b *benchClient) run(ctx context.Context, ids []int, maxTokens int) (streamResult, error) {
	body, _ := json.Marshal(map[string]any{"model": "bench", "prompt": ids, "max_tokens": maxTokens, "temperature": 0,
		"stream": true, "stream_options": map[string]any{"include_usage": true}, "ignore_eos": true})
	req, err := http.NewRequestWithContext(ctx, "POST", b.url, bytes.NewReader(body))
	if err != nil {
		return streamResult{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	t0 := time.Now()
	resp, err := b.client.Do(req)
	if err != nil {
		return streamResult{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		msg, _ := io.ReadAll(resp.Body)
		return streamResult{}, fmt.Errorf("bench-serve: HTTP %d: %s", resp.StatusCode, msg)
	}
	var r streamResult
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok || data == "[DONE]" {
			continue
		}
		var ch struct {
			Choices []struct {
				Text string `json:"text"`
			} `json:"choices"`
			Usage *struct {
				CompletionTokens int `json:"completion_tokens"`
				Details          *struct {
					Cached int `json:"cached_tokens"`
				} `json:"prompt_tokens_details"`
			} `json:"usage"`
			Error *struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal([]byte(data), &ch); err != nil {
			return r, err
		}
		if ch.Error != nil {
			return r, errors.New("bench-serve: " + ch.Error.Message)
		}
		now := time.Now()
		if len(ch.Choices) > 0 {
			if r.first.IsZero() {
				r.first, r.ttft = now, now.Sub(t0)
			}
			r.last = now
		}
		if ch.Usage != nil {
			r.tokens = ch.Usage.CompletionTokens
			if ch.Usage.Details != nil {
				r.cached = ch.Usage.Details.Cached
			}
		}
	}
	return r, sc.Err()
}
