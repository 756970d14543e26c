package data

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"testing"
)

// seqShards writes a source of n tokens whose ids are base, base+1, ... split into
// shards of at most per tokens, so every token names its source and position.
func seqShards(t *testing.T, dir, name string, base, n, per int) Source {
	t.Helper()
	src := Source{Name: name}
	for i := 0; i < n; i += per {
		w, err := CreateShard(filepath.Join(dir, fmt.Sprintf("%s-%03d.tok", name, i/per)), EndOfText)
		if err != nil {
			t.Fatal(err)
		}
		ids := make([]uint32, 0, per)
		for j := i; j < min(i+per, n); j++ {
			ids = append(ids, uint32(base+j))
		}
		if err := w.WriteTokens(ids); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		src.Paths = append(src.Paths, w.Path())
	}
	return src
}

const baseA, baseB = 0, 1_000_000

type fixture struct {
	a, b Source
}

func newFixture(t *testing.T) fixture {
	dir := t.TempDir()
	return fixture{
		a: seqShards(t, dir, "code", baseA, 10_001, 3_000), // 1000 windows of T=10
		b: seqShards(t, dir, "prose", baseB, 5_001, 777),   // 500 windows
	}
}

func (f fixture) config() LoaderConfig {
	c := DefaultLoaderConfig()
	c.Sources = []Source{f.a, f.b}
	c.Batch, c.SeqLen, c.Seed = 4, 10, 7
	c.Weights = map[string]float64{"code": 0.7, "prose": 0.3}
	return c
}

func mustLoader(t *testing.T, c LoaderConfig) *Loader {
	t.Helper()
	l, err := NewLoader(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func next(t *testing.T, l *Loader) Batch {
	t.Helper()
	var b Batch
	if err := l.Next(&b); err != nil {
		t.Fatal(err)
	}
	return b
}

func sameBatch(a, b Batch) bool {
	return slices.Equal(a.Inputs, b.Inputs) && slices.Equal(a.Targets, b.Targets) &&
		slices.Equal(a.Sources, b.Sources) && slices.Equal(a.Windows, b.Windows) && slices.Equal(a.Rows, b.Rows)
}

// checkRows verifies that every row is the window its metadata names.
func checkRows(t *testing.T, b Batch) {
	t.Helper()
	for r := range b.B {
		base := baseA
		if b.Sources[r] == 1 {
			base = baseB
		}
		start := base + int(b.Windows[r])*b.T
		for i := range b.T {
			if b.Inputs[r*b.T+i] != start+i || b.Targets[r*b.T+i] != start+i+1 {
				t.Fatalf("row %d pos %d: input %d target %d, want %d %d", r, i, b.Inputs[r*b.T+i], b.Targets[r*b.T+i], start+i, start+i+1)
			}
		}
	}
}

func TestLoaderDeterministic(t *testing.T) {
	f := newFixture(t)
	cv := f.config()
	cv.Verify = true
	l1, l2 := mustLoader(t, cv), mustLoader(t, f.config())
	c3 := f.config()
	c3.Seed = 8
	l3 := mustLoader(t, c3)
	differ := false
	for range 50 {
		a, b, c := next(t, l1), next(t, l2), next(t, l3)
		checkRows(t, a)
		if !sameBatch(a, b) {
			t.Fatal("same seed, different batches")
		}
		differ = differ || !sameBatch(a, c)
	}
	if !differ {
		t.Error("different seeds gave the same batches")
	}
	if l1.TokensSeen() != 50*4*10 {
		t.Errorf("TokensSeen = %d", l1.TokensSeen())
	}
}

func TestLoaderEpochs(t *testing.T) {
	f := newFixture(t)
	for _, shuffle := range []bool{true, false} {
		c := f.config()
		c.Sources, c.Weights, c.Shuffle, c.Batch = []Source{f.b}, nil, shuffle, 5
		l := mustLoader(t, c)
		if l.Windows("prose") != 500 {
			t.Fatalf("windows = %d", l.Windows("prose"))
		}
		var epochs [2][]int64
		for e := range 2 {
			for range 100 {
				b := next(t, l)
				epochs[e] = append(epochs[e], b.Windows...)
			}
		}
		for e, w := range epochs {
			s := slices.Sorted(slices.Values(w))
			for i := range s {
				if s[i] != int64(i) {
					t.Fatalf("shuffle=%v epoch %d is not a permutation of the windows", shuffle, e)
				}
			}
		}
		inOrder := slices.IsSorted(epochs[0])
		if inOrder == shuffle || shuffle == slices.Equal(epochs[0], epochs[1]) {
			t.Errorf("shuffle=%v: epoch 0 sorted %v, epochs equal %v", shuffle, inOrder, slices.Equal(epochs[0], epochs[1]))
		}
		if l.Epoch("prose") != 2 {
			t.Errorf("Epoch = %v", l.Epoch("prose"))
		}
	}
}

func TestLoaderResumeExact(t *testing.T) {
	f := newFixture(t)
	for _, k := range []int{0, 1, 37, 260} { // 260 batches crosses epoch boundaries of both sources
		ref := mustLoader(t, f.config())
		run := mustLoader(t, f.config())
		for range k {
			next(t, ref)
			next(t, run)
		}
		js, err := json.Marshal(run.State())
		if err != nil {
			t.Fatal(err)
		}
		var st LoaderState
		if err := json.Unmarshal(js, &st); err != nil {
			t.Fatal(err)
		}
		resumed := mustLoader(t, f.config())
		if err := resumed.Restore(st); err != nil {
			t.Fatal(err)
		}
		for i := range 300 {
			a, b := next(t, ref), next(t, resumed)
			if !sameBatch(a, b) {
				t.Fatalf("k=%d: batch %d after resume differs", k, i)
			}
		}
	}
}

func TestLoaderMixingFrequencies(t *testing.T) {
	f := newFixture(t)
	c := f.config()
	c.Batch = 100
	l := mustLoader(t, c)
	const rows = 40000
	var counts [2]int
	for range rows / c.Batch {
		b := next(t, l)
		for _, s := range b.Sources {
			counts[s]++
		}
	}
	// Binomial standard deviation sqrt(0.21/40000) = 0.0023; allow 0.01 (over 4σ).
	got := float64(counts[0]) / rows
	if math.Abs(got-0.7) > 0.01 {
		t.Errorf("code fraction %.4f, want 0.7 ± 0.01", got)
	}
	// Nil weights mix in proportion to tokens: 10001 : 5001.
	c.Weights = nil
	l = mustLoader(t, c)
	counts = [2]int{}
	for range rows / c.Batch {
		for _, s := range next(t, l).Sources {
			counts[s]++
		}
	}
	if got, want := float64(counts[0])/rows, 10001.0/15002; math.Abs(got-want) > 0.01 {
		t.Errorf("natural mix: code fraction %.4f, want %.4f ± 0.01", got, want)
	}
}

func TestLoaderCurriculum(t *testing.T) {
	f := newFixture(t)
	st, err := ParseCurriculum([]byte(`[
		{"at_tokens": 0, "weights": {"code": 1}},
		{"at_tokens": 2000, "weights": {"code": 0.5, "prose": 0.5}},
		{"at_tokens": 4000, "weights": {"prose": 1}}]`))
	if err != nil {
		t.Fatal(err)
	}
	c := f.config()
	c.Weights, c.Curriculum, c.Batch = nil, st, 7 // a batch straddles each switch
	l := mustLoader(t, c)
	var mid [2]int
	for range 100 {
		b := next(t, l)
		checkRows(t, b)
		for r, row := range b.Rows {
			tok := row * int64(c.SeqLen)
			switch {
			case tok < 2000 && b.Sources[r] != 0:
				t.Fatalf("row %d (token %d) from prose in the code-only stage", row, tok)
			case tok >= 4000 && b.Sources[r] != 1:
				t.Fatalf("row %d (token %d) from code in the prose-only stage", row, tok)
			case tok >= 2000 && tok < 4000:
				mid[b.Sources[r]]++
			}
		}
	}
	if mid[0] < 60 || mid[1] < 60 {
		t.Errorf("middle stage drew %v rows (code, prose) of 200", mid)
	}
}

func TestLoaderRankSharding(t *testing.T) {
	f := newFixture(t)
	const world = 3
	var ranks [world]*Loader
	for r := range world {
		c := f.config()
		c.Rank, c.WorldSize = r, world
		ranks[r] = mustLoader(t, c)
	}
	seenRows := map[int64]int{}
	seenWin := map[[2]int64]int{}
	const steps = 30 // 30·3·4 = 360 rows, fewer than either source's epoch
	for range steps {
		for r, l := range ranks {
			b := next(t, l)
			checkRows(t, b)
			for i, row := range b.Rows {
				if prev, dup := seenRows[row]; dup {
					t.Fatalf("row %d on ranks %d and %d", row, prev, r)
				}
				seenRows[row] = r
				key := [2]int64{int64(b.Sources[i]), b.Windows[i]}
				if prev, dup := seenWin[key]; dup {
					t.Fatalf("window %v on ranks %d and %d", key, prev, r)
				}
				seenWin[key] = r
			}
		}
	}
	if len(seenRows) != steps*world*4 {
		t.Errorf("%d distinct rows", len(seenRows))
	}
	for g := range int64(steps * world * 4) {
		if _, ok := seenRows[g]; !ok {
			t.Fatalf("global row %d missing", g)
		}
	}
	// The ranks' rows are the single-rank stream with a world-sized batch: rank r of
	// world 3 gets rows [4r, 4r+4) of each 12-row global batch.
	c := f.config()
	c.Batch = 12
	single := mustLoader(t, c)
	for r := range ranks {
		c := f.config()
		c.Rank, c.WorldSize = r, world
		ranks[r] = mustLoader(t, c)
	}
	for range 5 {
		g := next(t, single)
		for r, l := range ranks {
			b := next(t, l)
			if !slices.Equal(b.Inputs, g.Inputs[r*40:(r+1)*40]) || !slices.Equal(b.Rows, g.Rows[r*4:(r+1)*4]) {
				t.Fatalf("rank %d differs from rows of the global batch", r)
			}
		}
	}
	// A single-rank state restores into a 3-rank job: the global stream continues.
	st := single.State()
	for r := range ranks {
		c := f.config()
		c.Rank, c.WorldSize = r, world
		ranks[r] = mustLoader(t, c)
		if err := ranks[r].Restore(st); err != nil {
			t.Fatal(err)
		}
	}
	g := next(t, single)
	for r, l := range ranks {
		if b := next(t, l); !slices.Equal(b.Inputs, g.Inputs[r*40:(r+1)*40]) {
			t.Fatalf("rank %d after restore differs", r)
		}
	}
}

func TestLoaderErrors(t *testing.T) {
	f := newFixture(t)
	short := seqShards(t, t.TempDir(), "tiny", 0, 10, 10) // 10 tokens < T+1
	bad := []func(*LoaderConfig){
		func(c *LoaderConfig) { c.Batch = 0 },
		func(c *LoaderConfig) { c.SeqLen = 0 },
		func(c *LoaderConfig) { c.Rank = 1 },
		func(c *LoaderConfig) { c.WorldSize = 0 },
		func(c *LoaderConfig) { c.Sources = nil },
		func(c *LoaderConfig) { c.Sources = []Source{f.a, f.a} },
		func(c *LoaderConfig) { c.Sources[0].Paths = nil },
		func(c *LoaderConfig) { c.Weights = map[string]float64{"poetry": 1} },
		func(c *LoaderConfig) { c.Weights = map[string]float64{"code": -1, "prose": 2} },
		func(c *LoaderConfig) { c.Weights = map[string]float64{"code": 0} },
		func(c *LoaderConfig) { c.Curriculum = []Stage{{AtTokens: 0, Weights: map[string]float64{"code": 1}}} },
		func(c *LoaderConfig) {
			c.Weights, c.Curriculum = nil, []Stage{{AtTokens: 5, Weights: map[string]float64{"code": 1}}}
		},
		func(c *LoaderConfig) {
			c.Weights, c.Curriculum = nil, []Stage{{Weights: map[string]float64{"code": 1}}, {Weights: map[string]float64{"code": 1}}}
		},
		func(c *LoaderConfig) {
			c.Sources = append(c.Sources, short)
			c.Weights = map[string]float64{"code": 1, "tiny": 1}
		},
	}
	for i, edit := range bad {
		c := f.config()
		c.Sources = slices.Clone(c.Sources)
		edit(&c)
		if _, err := NewLoader(c); !errors.Is(err, ErrConfig) {
			t.Errorf("case %d: err = %v, want ErrConfig", i, err)
		}
	}
	c := f.config()
	c.Sources = []Source{{Name: "x", Paths: []string{"/nonexistent.tok"}}}
	c.Weights = nil
	if _, err := NewLoader(c); err == nil {
		t.Error("missing shard accepted")
	}
	// A zero-weight source may be too short.
	c = f.config()
	c.Sources = append(slices.Clone(c.Sources), short)
	mustLoader(t, c)

	for _, s := range []string{`[`, `{}`, `[{"at_tokens": 0, "weights": {"a": 1}, "x": 1}]`, `[{"at_tokens": 1, "weights": {"a": 1}}]`, `[] []`} {
		if _, err := ParseCurriculum([]byte(s)); err == nil {
			t.Errorf("ParseCurriculum(%s) accepted", s)
		}
	}

	l := mustLoader(t, f.config())
	next(t, l)
	good := l.State()
	edits := []func(*LoaderState){
		func(s *LoaderState) { s.Version = 2 },
		func(s *LoaderState) { s.Seed++ },
		func(s *LoaderState) { s.SeqLen = 11 },
		func(s *LoaderState) { s.Shuffle = false },
		func(s *LoaderState) { s.Row++ },
		func(s *LoaderState) { s.Row = -1 },
		func(s *LoaderState) { s.Sources[0].Tokens++ },
		func(s *LoaderState) { s.Sources[0].Name = "other" },
		func(s *LoaderState) { s.Sources[1] = s.Sources[0] },
		func(s *LoaderState) { s.Sources = s.Sources[:1] },
		func(s *LoaderState) { s.Sources[0].Consumed = -1 },
	}
	for i, edit := range edits {
		st := good
		st.Sources = slices.Clone(good.Sources)
		edit(&st)
		fresh := mustLoader(t, f.config())
		if err := fresh.Restore(st); !errors.Is(err, ErrState) {
			t.Errorf("state edit %d: err = %v, want ErrState", i, err)
		}
		if fresh.TokensSeen() != 0 {
			t.Errorf("state edit %d: failed Restore moved the loader", i)
		}
	}
}

func TestPermutationIsBijection(t *testing.T) {
	for _, n := range []uint64{1, 2, 3, 4, 5, 17, 64, 1000, 4097} {
		for seed := range uint64(3) {
			p := newPermutation(n, seed, true)
			seen := make([]bool, n)
			for i := range n {
				x := p.at(i)
				if x >= n || seen[x] {
					t.Fatalf("n=%d seed=%d: at(%d) = %d repeats or is out of range", n, seed, i, x)
				}
				seen[x] = true
			}
		}
	}
}

func BenchmarkLoaderNext(b *testing.B) {
	dir := b.TempDir()
	w, _ := CreateShard(filepath.Join(dir, "a.tok"), EndOfText)
	ids := make([]uint32, 1<<20)
	for i := range ids {
		ids[i] = uint32(i)
	}
	w.WriteTokens(ids)
	w.Close()
	c := DefaultLoaderConfig()
	c.Sources = []Source{{Name: "a", Paths: []string{w.Path()}}}
	c.Batch, c.SeqLen = 8, 1024
	l, err := NewLoader(c)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	var batch Batch
	b.SetBytes(int64(c.Batch * c.SeqLen * 4))
	b.ReportAllocs()
	for b.Loop() {
		l.Next(&batch)
	}
}
