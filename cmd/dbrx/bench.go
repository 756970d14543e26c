package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/dbrx-engine/dbrx/internal/parallel"
	"github.com/dbrx-engine/dbrx/model/dbrx"
)

func init() {
	register(command{name: "bench", summary: "measure prefill and decode tokens/s (llama-bench style)", run: runBench})
}

type benchResult struct {
	Test       string  `json:"test"`
	Threads    int     `json:"threads"`
	TokensPerS float64 `json:"tokens_per_second"`
	Stddev     float64 `json:"stddev"`
	WeightType string  `json:"weight_type"`
	GBPerS     float64 `json:"effective_gb_per_second,omitempty"`
}

func runBench(ctx context.Context, e env, args []string) error {
	fs := newFlags("bench", e)
	modelDir := fs.String("model", "", "model directory or file")
	threads := fs.Int("threads", 0, "worker threads (0 = all cores)")
	nPrompt := fs.Int("prompt", 512, "prompt tokens for the prefill test (0 = skip)")
	nGen := fs.Int("gen", 128, "generated tokens for the decode test (0 = skip)")
	reps := fs.Int("reps", 3, "repetitions of each test")
	asJSON := fs.Bool("json", false, "print one JSON object per test instead of a table")
	memcpy := fs.Bool("memcpy", true, "also measure plain memory-copy bandwidth for comparison")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the timed tests to this file")
	if _, err := parseFlags(fs, args); err != nil {
		return err
	}
	if *modelDir == "" {
		return fmt.Errorf("%w: --model is required", errUsage)
	}
	if *reps < 1 {
		return fmt.Errorf("%w: --reps must be at least 1", errUsage)
	}
	m, err := dbrx.Load(*modelDir)
	if err != nil {
		return err
	}
	defer m.Close()
	pool := parallel.New(*threads)
	defer pool.Close()
	nThreads := pool.Workers()
	wt := weightTypeName(m)
	activeBytes := activeWeightBytes(m)
	rng := rand.New(rand.NewPCG(1, 2))
	randomIDs := func(n int) []int {
		ids := make([]int, n)
		for i := range ids {
			ids[i] = rng.IntN(m.Config.VocabSize)
		}
		return ids
	}
	ws := dbrx.NewWorkspace(pool)
	maxLen := max(*nPrompt, *nGen) + 1
	cache := m.NewKVCache(maxLen, maxLen)

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("bench: cpu profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("bench: cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	var results []benchResult
	measure := func(test string, tokens int, fn func() error) error {
		if err := fn(); err != nil { // warm-up: page in weights, grow buffers
			return err
		}
		rates := make([]float64, *reps)
		for r := range rates {
			if err := ctx.Err(); err != nil {
				return err
			}
			start := time.Now()
			if err := fn(); err != nil {
				return err
			}
			rates[r] = float64(tokens) / time.Since(start).Seconds()
		}
		mean, sd := meanStd(rates)
		res := benchResult{Test: test, Threads: nThreads, TokensPerS: mean, Stddev: sd, WeightType: wt}
		if test[:2] == "tg" {
			res.GBPerS = mean * float64(activeBytes) / 1e9
		}
		results = append(results, res)
		return nil
	}
	if *nPrompt > 0 {
		ids := randomIDs(*nPrompt)
		if err := measure(fmt.Sprintf("pp%d", *nPrompt), *nPrompt, func() error {
			cache.Truncate(0)
			_, err := m.Forward(ws, []dbrx.Step{{Cache: cache, IDs: ids}})
			return err
		}); err != nil {
			return err
		}
	}
	if *nGen > 0 {
		ids := randomIDs(*nGen)
		if err := measure(fmt.Sprintf("tg%d", *nGen), *nGen, func() error {
			cache.Truncate(0)
			for _, id := range ids {
				if _, err := m.Forward(ws, []dbrx.Step{{Cache: cache, IDs: []int{id}}}); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return err
		}
	}
	var copyGBs float64
	if *memcpy {
		copyGBs = memcpyGBs(*reps)
	}
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		for _, r := range results {
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
		if *memcpy {
			return enc.Encode(map[string]any{"test": "memcpy", "gb_per_second": copyGBs})
		}
		return nil
	}
	total := int64(0)
	params := int64(0)
	names, shapes := m.Config.ParamShapes()
	for i := range names {
		n := int64(1)
		for _, d := range shapes[i] {
			n *= int64(d)
		}
		params += n
	}
	total = weightBytes(m)
	fmt.Fprintf(e.stdout, "| model | size | params | active/token | backend | threads | test | t/s | GB/s |\n")
	fmt.Fprintf(e.stdout, "| --- | ---: | ---: | ---: | --- | ---: | --- | ---: | ---: |\n")
	for _, r := range results {
		gb := ""
		if r.GBPerS > 0 {
			gb = fmt.Sprintf("%.2f", r.GBPerS)
		}
		fmt.Fprintf(e.stdout, "| dbrx %s | %.2f GiB | %.2f M | %.2f MB | CPU | %d | %s | %.2f ± %.2f | %s |\n",
			wt, float64(total)/(1<<30), float64(params)/1e6, float64(activeBytes)/1e6, r.Threads, r.Test, r.TokensPerS, r.Stddev, gb)
	}
	if *memcpy {
		fmt.Fprintf(e.stdout, "\nmemcpy bandwidth (same run): %.2f GB/s; decode reads %.2f MB of weights per token\n", copyGBs, float64(activeBytes)/1e6)
	}
	return nil
}

func meanStd(x []float64) (mean, sd float64) {
	for _, v := range x {
		mean += v
	}
	mean /= float64(len(x))
	if len(x) < 2 {
		return mean, 0
	}
	for _, v := range x {
		sd += (v - mean) * (v - mean)
	}
	return mean, math.Sqrt(sd / float64(len(x)-1))
}

// weightBytes is the stored size of every weight of m.
func weightBytes(m *dbrx.Model) int64 {
	n := int64(len(m.Wte.Data) + len(m.LMHead.Data) + 4*len(m.NormF))
	for _, b := range m.Blocks {
		n += int64(len(b.Wqkv.Data) + len(b.OutProj.Data) + len(b.Router.Data) + len(b.W1.Data) + len(b.V1.Data) + len(b.W2.Data) + len(b.W2T.Data) + 4*len(b.Norm1) + 4*len(b.Norm2))
	}
	return n
}

// activeWeightBytes is what one decode step must read: every dense matrix, top_k of
// the E experts, lm_head, and one embedding row.
func activeWeightBytes(m *dbrx.Model) int64 {
	c := m.Config
	E, K := int64(c.FFNConfig.MoENumExperts), int64(c.FFNConfig.MoETopK)
	n := int64(len(m.LMHead.Data)) + int64(len(m.Wte.Data))/int64(c.VocabSize)
	for _, b := range m.Blocks {
		n += int64(len(b.Wqkv.Data) + len(b.OutProj.Data) + len(b.Router.Data))
		n += int64(len(b.W1.Data)+len(b.V1.Data)+len(b.W2.Data)+len(b.W2T.Data)) * K / E
	}
	return n
}

// memcpyGBs measures copy bandwidth over a buffer far larger than the caches,
// counting bytes read plus bytes written as a copy benchmark does.
func memcpyGBs(reps int) float64 {
	const size = 256 << 20
	src := make([]byte, size)
	dst := make([]byte, size)
	for i := range src {
		src[i] = byte(i)
	}
	copy(dst, src)
	best := 0.0
	for r := 0; r < reps; r++ {
		start := time.Now()
		copy(dst, src)
		gbs := 2 * float64(size) / time.Since(start).Seconds() / 1e9
		best = math.Max(best, gbs)
	}
	return best
}

// weightTypeName names the model's main weight type (that of the expert gate
// matrices, which dominate its size), in llama-bench's lower-case spelling.
func weightTypeName(m *dbrx.Model) string {
	return strings.ToLower(m.Blocks[0].W1.DType.String())
}
