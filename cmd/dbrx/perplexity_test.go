package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/dbrx-engine/dbrx/data"
)

// byteEncoder maps each byte to an id below fixture A's vocabulary of 512.
type byteEncoder struct{}

func (byteEncoder) EncodeOrdinary(s string) []int {
	ids := make([]int, len(s))
	for i := range len(s) {
		ids[i] = int(s[i])
	}
	return ids
}

// TestPerplexityCommand scores fixture A on a small prepared corpus and checks the
// unigram baseline against a direct computation on the same held-out tokens.
func TestPerplexityCommand(t *testing.T) {
	dir := t.TempDir()
	var inputs []string
	for i := range 40 {
		p := filepath.Join(dir, fmt.Sprintf("doc%02d.txt", i))
		text := fmt.Sprintf("document %d: the quick brown fox jumps over the lazy dog %d times.\n", i, i*i)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		inputs = append(inputs, p)
	}
	cfg := data.DefaultPrepareConfig()
	cfg.OutDir, cfg.Name, cfg.HeldOut, cfg.Seed, cfg.EOT = dir, "toy", 0.25, 1, 500
	if _, err := data.Prepare(context.Background(), cfg, byteEncoder{}, inputs); err != nil {
		t.Fatal(err)
	}
	manifest := filepath.Join(dir, "toy.json")
	stdout, stderr, code := dbrxCmd(t, "", "perplexity", "--model", fixture("A"), "--data", manifest, "--seq-len", "32", "--max-tokens", "0")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var rep perplexityReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("%q: %v", stdout, err)
	}
	held, err := readSplit(manifest, "heldout")
	if err != nil {
		t.Fatal(err)
	}
	train, err := readSplit(manifest, "train")
	if err != nil {
		t.Fatal(err)
	}
	if rep.Tokens != len(held)-1 {
		t.Errorf("scored %d tokens, want %d (every held-out token but the first)", rep.Tokens, len(held)-1)
	}
	counts := map[uint32]float64{}
	for _, id := range train {
		counts[id]++
	}
	var want float64
	for _, id := range held[1:] {
		want -= math.Log((counts[id] + 1) / (float64(len(train)) + 512))
	}
	want /= float64(len(held) - 1)
	if math.Abs(rep.UnigramNats-want) > 1e-9 {
		t.Errorf("unigram %v nats/token, want %v", rep.UnigramNats, want)
	}
	// A random model is far worse than a unigram model, and no better than about ln(512).
	if rep.ModelNats < rep.UnigramNats || math.IsNaN(rep.ModelNats) || math.Abs(rep.ModelPPL-math.Exp(rep.ModelNats)) > 1e-6*rep.ModelPPL {
		t.Errorf("model %v nats (ppl %v) vs unigram %v", rep.ModelNats, rep.ModelPPL, rep.UnigramNats)
	}
}
