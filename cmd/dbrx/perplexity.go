package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"strings"

	"github.com/dbrx-engine/dbrx/data"
	"github.com/dbrx-engine/dbrx/internal/parallel"
	"github.com/dbrx-engine/dbrx/model/dbrx"
)

func init() {
	register(command{name: "perplexity", summary: "held-out cross-entropy of a model on token shards, with a unigram baseline", run: runPerplexity})
}

type perplexityReport struct {
	Data        string  `json:"data"`
	Split       string  `json:"split"`
	Tokens      int     `json:"tokens"`
	ModelNats   float64 `json:"model_nats_per_token"`
	ModelPPL    float64 `json:"model_perplexity"`
	UnigramNats float64 `json:"unigram_nats_per_token,omitempty"`
	UnigramPPL  float64 `json:"unigram_perplexity,omitempty"`
}

func runPerplexity(ctx context.Context, e env, args []string) error {
	fs := newFlags("perplexity", e)
	modelDir := fs.String("model", "", "model directory (HF checkpoint)")
	manifests := fs.String("data", "", "comma-separated dbrx data manifests (NAME.json)")
	split := fs.String("split", "heldout", "manifest split to score: heldout or train")
	seqLen := fs.Int("seq-len", 256, "tokens of context per window (windows do not overlap)")
	maxTokens := fs.Int("max-tokens", 65536, "score at most this many target tokens per manifest (0 = all)")
	unigram := fs.Bool("unigram", true, "also score a unigram model counted on the train split (add-one smoothing over the vocabulary)")
	threads := fs.Int("threads", 0, "worker threads (0 = all cores)")
	if _, err := parseFlags(fs, args); err != nil {
		return err
	}
	if *modelDir == "" || *manifests == "" {
		return fmt.Errorf("%w: --model and --data are required", errUsage)
	}
	if *seqLen < 1 {
		return fmt.Errorf("%w: --seq-len must be positive", errUsage)
	}
	m, err := dbrx.Load(*modelDir)
	if err != nil {
		return err
	}
	defer m.Close()
	pool := parallel.New(*threads)
	defer pool.Close()
	ws := dbrx.NewWorkspace(pool)
	enc := json.NewEncoder(e.stdout)
	for _, path := range strings.Split(*manifests, ",") {
		rep, err := scoreManifest(ctx, m, ws, path, *split, *seqLen, *maxTokens, *unigram)
		if err != nil {
			return err
		}
		if err := enc.Encode(rep); err != nil {
			return err
		}
	}
	return nil
}

// readSplit returns every token of one split of a manifest, concatenated.
func readSplit(path, split string) ([]uint32, error) {
	src, err := data.ManifestSource(path, split, filepath.Base(path))
	if err != nil {
		return nil, err
	}
	var all []uint32
	for _, p := range src.Paths {
		sh, err := data.OpenShard(p)
		if err != nil {
			return nil, err
		}
		all = append(all, sh.Tokens()...)
		if err := sh.Close(); err != nil {
			return nil, err
		}
	}
	return all, nil
}

func scoreManifest(ctx context.Context, m *dbrx.Model, ws *dbrx.Workspace, path, split string, seqLen, maxTokens int, unigram bool) (perplexityReport, error) {
	rep := perplexityReport{Data: path, Split: split}
	toks, err := readSplit(path, split)
	if err != nil {
		return rep, err
	}
	V := m.Config.VocabSize
	var uni []float64 // log-probabilities of the smoothed unigram model
	if unigram {
		train, err := readSplit(path, "train")
		if err != nil {
			return rep, err
		}
		counts := make([]float64, V)
		for _, t := range train {
			if int(t) < V {
				counts[t]++
			}
		}
		uni = make([]float64, V)
		denom := math.Log(float64(len(train)) + float64(V))
		for i, c := range counts {
			uni[i] = math.Log(c+1) - denom
		}
	}
	cache := m.NewKVCache(seqLen, seqLen)
	var modelSum, uniSum float64
	for start := 0; start+1 < len(toks); start += seqLen {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		if maxTokens > 0 && rep.Tokens >= maxTokens {
			break
		}
		end := min(start+seqLen+1, len(toks))
		ids := make([]int, end-start)
		for i, t := range toks[start:end] {
			if int(t) >= V {
				return rep, fmt.Errorf("%s: token %d at %d is outside the model's vocabulary %d", path, t, start+i, V)
			}
			ids[i] = int(t)
		}
		cache.Truncate(0)
		logits, err := m.Forward(ws, []dbrx.Step{{Cache: cache, IDs: ids[:len(ids)-1], AllLogits: true}})
		if err != nil {
			return rep, err
		}
		for p := 0; p+1 < len(ids); p++ {
			row := logits[p*V : (p+1)*V]
			mx := row[0]
			for _, v := range row {
				mx = max(mx, v)
			}
			var s float64
			for _, v := range row {
				s += math.Exp(float64(v - mx))
			}
			target := ids[p+1]
			modelSum += float64(mx) + math.Log(s) - float64(row[target])
			if uni != nil {
				uniSum -= uni[target]
			}
			rep.Tokens++
		}
	}
	if rep.Tokens == 0 {
		return rep, fmt.Errorf("%s: the %s split has fewer than 2 tokens", path, split)
	}
	rep.ModelNats = modelSum / float64(rep.Tokens)
	rep.ModelPPL = math.Exp(rep.ModelNats)
	if uni != nil {
		rep.UnigramNats = uniSum / float64(rep.Tokens)
		rep.UnigramPPL = math.Exp(rep.UnigramNats)
	}
	return rep, nil
}
