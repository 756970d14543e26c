package dbrx

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/dbrx-engine/dbrx/internal/numtest"
	"github.com/dbrx-engine/dbrx/internal/parallel"
)

// Tolerances from testdata/dbrx/README.md: the f32 reference differs from float64 by
// at most 1.6e-5 on these fixtures; we allow 1e-4 absolute on every logit.
const (
	logitTol  = 1e-4
	hiddenTol = 1e-4
)

var variants = []string{"A", "B", "C", "D"}

type arrayRef struct {
	File  string `json:"file"`
	Shape []int  `json:"shape"`
}

type fixtureCases struct {
	Cases []struct {
		Name          string    `json:"name"`
		InputIDs      [][]int   `json:"input_ids"`
		Argmax        []int     `json:"argmax"`
		Logits        *arrayRef `json:"logits"`
		LogitsPartial *struct {
			Cols      arrayRef `json:"cols"`
			Values    arrayRef `json:"values"`
			LastRow   arrayRef `json:"last_row"`
			TopIDs    arrayRef `json:"top_ids"`
			TopVals   arrayRef `json:"top_vals"`
			LogSumExp arrayRef `json:"logsumexp"`
		} `json:"logits_partial"`
	} `json:"cases"`
	Generation []struct {
		PromptIDs    []int `json:"prompt_ids"`
		MaxNewTokens int   `json:"max_new_tokens"`
		NewIDs       []int `json:"new_ids"`
	} `json:"generation"`
	Intermediates struct {
		Case         string   `json:"case"`
		HiddenStates arrayRef `json:"hidden_states"`
		RouterProbs  arrayRef `json:"router_probs"`
	} `json:"intermediates"`
}

func fixtureDir(v string) string { return filepath.Join("..", "..", "testdata", "dbrx", v) }

func loadFixture(t *testing.T, v string) (*Model, fixtureCases) {
	t.Helper()
	m, err := Load(fixtureDir(v))
	if err != nil {
		t.Fatalf("load %s: %v", v, err)
	}
	t.Cleanup(func() { m.Close() })
	b, err := os.ReadFile(filepath.Join(fixtureDir(v), "cases.json"))
	if err != nil {
		t.Fatal(err)
	}
	var fc fixtureCases
	if err := json.Unmarshal(b, &fc); err != nil {
		t.Fatal(err)
	}
	return m, fc
}

func readF32(t *testing.T, v string, a arrayRef) []float32 {
	t.Helper()
	x, err := numtest.ReadF32(filepath.Join(fixtureDir(v), a.File))
	if err != nil {
		t.Fatal(err)
	}
	return x
}

func readI32(t *testing.T, v string, a arrayRef) []int {
	t.Helper()
	x, err := numtest.ReadI32(filepath.Join(fixtureDir(v), a.File))
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// fullLogits runs a fresh forward over ids and returns all logits [T, V].
func fullLogits(t *testing.T, m *Model, ws *Workspace, ids []int) []float32 {
	t.Helper()
	cache := m.NewKVCache(len(ids)+32, len(ids))
	out, err := m.Forward(ws, []Step{{Cache: cache, IDs: ids, AllLogits: true}})
	if err != nil {
		t.Fatal(err)
	}
	return append([]float32(nil), out...)
}

func argmax(x []float32) int {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return best
}

func checkClose(t *testing.T, what string, got, want []float32, tol float64) {
	t.Helper()
	d := numtest.Compare(got, want, tol)
	if d.Bad > 0 {
		t.Errorf("%s: %d values off by more than %g (max abs %.3g at %d):%s", what, d.Bad, tol, d.MaxAbs, d.WorstIdx, d.Report)
	} else {
		t.Logf("%s: max abs diff %.3g", what, d.MaxAbs)
	}
}

func TestFixtureLogits(t *testing.T) {
	pool := parallel.New(0)
	defer pool.Close()
	for _, v := range variants {
		t.Run(v, func(t *testing.T) {
			m, fc := loadFixture(t, v)
			ws := NewWorkspace(pool)
			V := m.Config.VocabSize
			for _, cs := range fc.Cases {
				ids := cs.InputIDs[0]
				T := len(ids)
				got := fullLogits(t, m, ws, ids)
				for p := 0; p < T; p++ {
					if a := argmax(got[p*V : (p+1)*V]); a != cs.Argmax[p] {
						t.Errorf("%s: argmax at position %d = %d, want %d", cs.Name, p, a, cs.Argmax[p])
					}
				}
				if cs.Logits != nil {
					checkClose(t, cs.Name+" logits", got, readF32(t, v, *cs.Logits), logitTol)
					continue
				}
				lp := cs.LogitsPartial
				if lp == nil {
					t.Fatalf("%s: case has neither logits nor logits_partial", cs.Name)
				}
				cols := readI32(t, v, lp.Cols)
				vals := make([]float32, 0, T*len(cols))
				for p := 0; p < T; p++ {
					for _, c := range cols {
						vals = append(vals, got[p*V+c])
					}
				}
				checkClose(t, cs.Name+" logits[:, cols]", vals, readF32(t, v, lp.Values), logitTol)
				checkClose(t, cs.Name+" last row", got[(T-1)*V:], readF32(t, v, lp.LastRow), logitTol)
				topIDs, topVals := readI32(t, v, lp.TopIDs), readF32(t, v, lp.TopVals)
				gotTop := make([]float32, len(topIDs))
				for i, id := range topIDs {
					gotTop[i] = got[(i/8)*V+id]
				}
				checkClose(t, cs.Name+" top-8 values", gotTop, topVals, logitTol)
				lse := make([]float32, T)
				for p := 0; p < T; p++ {
					row := got[p*V : (p+1)*V]
					mx := float64(row[argmax(row)])
					var s float64
					for _, x := range row {
						s += math.Exp(float64(x) - mx)
					}
					lse[p] = float32(mx + math.Log(s))
				}
				checkClose(t, cs.Name+" logsumexp", lse, readF32(t, v, lp.LogSumExp), logitTol)
			}
		})
	}
}

func TestFixtureIntermediates(t *testing.T) {
	for _, v := range variants {
		t.Run(v, func(t *testing.T) {
			m, fc := loadFixture(t, v)
			var ids []int
			for _, cs := range fc.Cases {
				if cs.Name == fc.Intermediates.Case {
					ids = cs.InputIDs[0]
				}
			}
			c := m.Config
			T, D, E := len(ids), c.DModel, c.FFNConfig.MoENumExperts
			hidden := make([]float32, 0, (c.NLayers+1)*T*D)
			var probs []float32
			ws := NewWorkspace(nil)
			ws.Trace = func(p TracePoint, l int, x []float32) {
				switch {
				case p == TraceEmbedding, p == TraceBlockOutput && l < c.NLayers-1, p == TraceFinalNorm:
					hidden = append(hidden, x...)
				case p == TraceRouterProbs:
					probs = append(probs, x...)
				}
			}
			cache := m.NewKVCache(0, T)
			if _, err := m.Forward(ws, []Step{{Cache: cache, IDs: ids, AllLogits: true}}); err != nil {
				t.Fatal(err)
			}
			checkClose(t, "hidden_states", hidden, readF32(t, v, fc.Intermediates.HiddenStates), hiddenTol)
			if len(probs) != c.NLayers*T*E {
				t.Fatalf("router probs: %d values, want %d", len(probs), c.NLayers*T*E)
			}
			checkClose(t, "router_probs", probs, readF32(t, v, fc.Intermediates.RouterProbs), hiddenTol)
		})
	}
}

// TestFixtureGreedy checks the 16-token greedy continuations with the KV cache, and
// that every cached decode step's logits equal a full forward over the same prefix.
func TestFixtureGreedy(t *testing.T) {
	pool := parallel.New(0)
	defer pool.Close()
	for _, v := range variants {
		t.Run(v, func(t *testing.T) {
			m, fc := loadFixture(t, v)
			ws := NewWorkspace(pool)
			full := NewWorkspace(pool)
			V := m.Config.VocabSize
			for gi, g := range fc.Generation {
				cache := m.NewKVCache(0, len(g.PromptIDs)+g.MaxNewTokens)
				seq := append([]int(nil), g.PromptIDs...)
				logits, err := m.Forward(ws, []Step{{Cache: cache, IDs: g.PromptIDs}})
				if err != nil {
					t.Fatal(err)
				}
				var got []int
				var worst float64
				for step := 0; step < g.MaxNewTokens; step++ {
					ref := fullLogits(t, m, full, seq)
					d := numtest.Compare(logits, ref[len(ref)-V:], 1e-5)
					worst = math.Max(worst, d.MaxAbs)
					next := argmax(logits)
					got = append(got, next)
					seq = append(seq, next)
					if logits, err = m.Forward(ws, []Step{{Cache: cache, IDs: []int{next}}}); err != nil {
						t.Fatal(err)
					}
				}
				for i := range g.NewIDs {
					if got[i] != g.NewIDs[i] {
						t.Fatalf("generation %d: got %v, want %v", gi, got, g.NewIDs)
					}
				}
				// Cached decode must agree with a full forward to float32 noise.
				if worst > 1e-5 {
					t.Errorf("generation %d: cached decode differs from full forward by %.3g > 1e-5", gi, worst)
				}
				t.Logf("generation %d: 16 tokens match; cached vs full max abs diff %.3g", gi, worst)
			}
		})
	}
}

// TestBatchedEqualsSingle runs two sequences of different lengths in one Forward and
// checks each against running it alone (continuous batching must not change results).
func TestBatchedEqualsSingle(t *testing.T) {
	m, fc := loadFixture(t, "C")
	ws := NewWorkspace(nil)
	a, b := fc.Cases[1].InputIDs[0], fc.Cases[2].InputIDs[0]
	V := m.Config.VocabSize
	ca, cb := m.NewKVCache(0, 64), m.NewKVCache(0, 64)
	out, err := m.Forward(ws, []Step{{Cache: ca, IDs: a}, {Cache: cb, IDs: b, AllLogits: true}})
	if err != nil {
		t.Fatal(err)
	}
	out = append([]float32(nil), out...)
	la := fullLogits(t, m, ws, a)
	lb := fullLogits(t, m, ws, b)
	checkClose(t, "batched seq a", out[:V], la[len(la)-V:], 1e-5)
	checkClose(t, "batched seq b", out[V:], lb, 1e-5)
}
