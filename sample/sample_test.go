package sample

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

var (
	negInf = float32(math.Inf(-1))
	posInf = float32(math.Inf(1))
	nan    = float32(math.NaN())
)

func mustNew(t testing.TB, cfg Config) *Sampler {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	return s
}

// randLogits returns n normal logits with standard deviation sd, from a fixed seed.
func randLogits(n int, sd float64, seed uint64) []float32 {
	r := rand.New(rand.NewPCG(seed, 1))
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64() * sd)
	}
	return x
}

// logs returns log(p) for a hand-built distribution.
func logs(p ...float64) []float32 {
	x := make([]float32, len(p))
	for i, v := range p {
		x[i] = float32(math.Log(v))
	}
	return x
}

// logSoftmax64 is the float64 oracle for log-probabilities.
func logSoftmax64(x []float32) []float64 {
	m := math.Inf(-1)
	for _, v := range x {
		m = math.Max(m, float64(v))
	}
	var s float64
	for _, v := range x {
		s += math.Exp(float64(v) - m)
	}
	lse := m + math.Log(s)
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(v) - lse
	}
	return out
}

// keptSet runs the filters of s on a copy of logits and returns the sorted surviving ids.
func keptSet(t *testing.T, s *Sampler, logits []float32) []int {
	t.Helper()
	x := slices.Clone(logits)
	m, _ := sanitize(x)
	s.size(len(x))
	c, _, _ := s.filter(x, m)
	var ids []int
	if c == nil {
		for i, w := range s.w[:len(x)] {
			if w > 0 {
				ids = append(ids, i)
			}
		}
	} else {
		for _, e := range c {
			if e.w > 0 {
				ids = append(ids, int(e.id))
			}
		}
	}
	slices.Sort(ids)
	return ids
}

// refKept is the sort-everything oracle for temperature, top-k, top-p and min-p.
func refKept(logits []float32, cfg Config) []int {
	type e struct {
		id int
		l  float32
		w  float64
	}
	m := float32(math.Inf(-1))
	for _, l := range logits {
		m = max(m, l)
	}
	var es []e
	invT := 1 / cfg.Temperature
	for i, l := range logits {
		if !math.IsInf(float64(l), -1) {
			es = append(es, e{i, l, float64(expf((l - m) * invT))})
		}
	}
	slices.SortStableFunc(es, func(a, b e) int {
		if a.l > b.l {
			return -1
		}
		if a.l < b.l {
			return 1
		}
		return a.id - b.id
	})
	if cfg.TopK > 0 && cfg.TopK < len(es) {
		es = es[:cfg.TopK]
	}
	if cfg.TopP > 0 && cfg.TopP < 1 {
		var tot float64
		for _, x := range es {
			tot += x.w
		}
		need := float64(cfg.TopP) * tot
		var acc float64
		for i, x := range es {
			acc += x.w
			if acc >= need {
				es = es[:i+1]
				break
			}
		}
	}
	var ids []int
	for _, x := range es {
		if x.w > 0 && x.w >= float64(cfg.MinP) {
			ids = append(ids, x.id)
		}
	}
	slices.Sort(ids)
	return ids
}

func TestArgmax(t *testing.T) {
	for _, tc := range []struct {
		x    []float32
		want int
	}{
		{nil, -1},
		{[]float32{nan, nan}, -1},
		{[]float32{negInf, negInf}, 0},
		{[]float32{1, 3, -2, 3, 0.5}, 1},
		{[]float32{nan, -5, -1, -1}, 2},
		{[]float32{-1, posInf, 2, posInf}, 1},
		{[]float32{7}, 0},
	} {
		if got := Argmax(tc.x); got != tc.want {
			t.Errorf("Argmax(%v) = %d, want %d", tc.x, got, tc.want)
		}
	}
}

func TestGreedy(t *testing.T) {
	s := mustNew(t, Config{})
	for _, tc := range []struct {
		x    []float32
		want int
	}{
		{[]float32{1, 3, -2, 3, 0.5}, 1}, // tie: lowest id
		{[]float32{2, 2, 2}, 0},
		{[]float32{-3, -1, -2}, 1},
		{[]float32{nan, 0.5, nan, 0.25}, 1},
		{[]float32{0, posInf, 1e30, posInf}, 1},
	} {
		r, err := s.Sample(slices.Clone(tc.x), nil)
		if err != nil || r.ID != tc.want {
			t.Errorf("greedy %v = %d, %v; want %d", tc.x, r.ID, err, tc.want)
		}
	}
	// Greedy agrees with Argmax on a full-size random row.
	x := randLogits(100352, 2, 7)
	want := Argmax(x)
	r, err := s.Sample(x, nil)
	if err != nil || r.ID != want {
		t.Fatalf("greedy on V=100352 = %d, %v; want %d", r.ID, err, want)
	}
}

func TestRepetitionPenaltyHF(t *testing.T) {
	// HF RepetitionPenaltyLogitsProcessor: score < 0 ? score*p : score/p, once per distinct id.
	for _, tc := range []struct {
		penalty float32
		want    []float32
	}{
		{1.5, []float32{2 / 1.5, -1.5, 0.5, 3, -2, 0}},
		{0.8, []float32{2.5, -0.8, 0.5, 3, -2, 0}},
	} {
		s := mustNew(t, Config{RepetitionPenalty: tc.penalty})
		x := []float32{2, -1, 0.5, 3, -2, 0}
		r, err := s.Sample(x, []int{0, 1, 1, 5, 1})
		if err != nil {
			t.Fatal(err)
		}
		for i := range x {
			if math.Abs(float64(x[i]-tc.want[i])) > 1e-6 {
				t.Errorf("penalty %v: logits[%d] = %v, want %v", tc.penalty, i, x[i], tc.want[i])
			}
		}
		if r.ID != 3 {
			t.Errorf("penalty %v: greedy id %d, want 3", tc.penalty, r.ID)
		}
	}
}

func TestPresenceFrequencySplit(t *testing.T) {
	cfg := Config{RepetitionPenalty: 1.5, PresencePenalty: 0.5, FrequencyPenalty: 0.25}
	s := mustNew(t, cfg)
	x := []float32{2, -1, 0.5, 3, -2}
	// Prompt id 3 gets only the repetition penalty; generated 0 once, 1 twice.
	if _, err := s.SampleSplit(x, []int{3, 3}, []int{0, 1, 1}); err != nil {
		t.Fatal(err)
	}
	want := []float32{
		2/1.5 - 0.5 - 0.25*1,
		-1*1.5 - 0.5 - 0.25*2,
		0.5,
		3 / 1.5,
		-2,
	}
	for i := range x {
		if math.Abs(float64(x[i]-want[i])) > 1e-6 {
			t.Errorf("logits[%d] = %v, want %v", i, x[i], want[i])
		}
	}
	// Sample counts the whole history for presence/frequency too.
	x = []float32{2, -1, 0.5, 3, -2}
	if _, err := s.Sample(x, []int{3, 3, 0}); err != nil {
		t.Fatal(err)
	}
	if got, want := x[3], float32(3/1.5-0.5-0.25*2); math.Abs(float64(got-want)) > 1e-6 {
		t.Errorf("Sample history penalty: logits[3] = %v, want %v", got, want)
	}
}

// TestNoLogProb checks that Config.NoLogProb changes nothing but Result.LogProb: the
// same tokens, the same Top, the same rewritten rows and the same RNG stream, over
// greedy, top-k 1, penalised and sampling configs; LogProb is 0 exactly when it is
// skipped (no LogProbs requested) and bit-identical otherwise.
func TestNoLogProb(t *testing.T) {
	for _, V := range []int{1, 7, 1000, 100352} {
		for _, cfg := range []Config{
			{},
			{Temperature: 0.7, TopK: 1, Seed: 3},
			{Temperature: 1, TopK: 1, TopP: 0.5, MinP: 0.2, Seed: 4},
			{RepetitionPenalty: 1.3, PresencePenalty: 0.5, FrequencyPenalty: 0.2},
			{Temperature: 0.8, Seed: 5},
			{Temperature: 1, TopP: 0.9, Seed: 6},
			{Temperature: 0.7, TopK: 40, Seed: 7},
			{Temperature: 0.7, TopP: 0.9, MinP: 0.05, RepetitionPenalty: 1.1, FrequencyPenalty: 0.3, Seed: 8},
			{LogProbs: 5},
			{Temperature: 1.3, TopK: 1, LogProbs: 3},
		} {
			skip := cfg
			skip.NoLogProb = true
			a, b := mustNew(t, cfg), mustNew(t, skip)
			prompt := []int{0, V / 2, V - 1}
			var gen []int
			for step := range 12 {
				x := randLogits(V, 2, uint64(100*V+step))
				xa, xb := slices.Clone(x), slices.Clone(x)
				ra, err := a.SampleSplit(xa, prompt, gen)
				if err != nil {
					t.Fatal(err)
				}
				rb, err := b.SampleSplit(xb, prompt, gen)
				if err != nil {
					t.Fatal(err)
				}
				wantLP := ra.LogProb
				if cfg.LogProbs == 0 {
					wantLP = 0
				}
				if rb.ID != ra.ID || math.Float32bits(rb.LogProb) != math.Float32bits(wantLP) || !slices.Equal(rb.Top, ra.Top) || !slices.Equal(xa, xb) {
					t.Fatalf("V=%d %+v step %d: NoLogProb gives id %d logprob %v top %v, without it id %d logprob %v top %v (rows equal: %v)",
						V, cfg, step, rb.ID, rb.LogProb, rb.Top, ra.ID, ra.LogProb, ra.Top, slices.Equal(xa, xb))
				}
				gen = append(gen, ra.ID)
			}
			if a.pcg != b.pcg {
				t.Errorf("V=%d %+v: NoLogProb changed the RNG stream", V, cfg)
			}
		}
	}
}

// TestNoLogProbSkipsExp checks, through the scratch row every exp pass writes, that
// greedy, top-k 1 and top-k 40 calls with NoLogProb do no full-vocabulary exp.
func TestNoLogProbSkipsExp(t *testing.T) {
	x := randLogits(100352, 2, 12)
	for _, cfg := range []Config{
		{NoLogProb: true},
		{Temperature: 0.7, TopK: 1, NoLogProb: true},
		{Temperature: 0.7, TopK: 40, NoLogProb: true},
		{RepetitionPenalty: 1.2, PresencePenalty: 1, NoLogProb: true},
	} {
		s := mustNew(t, cfg)
		for range 3 {
			if _, err := s.SampleSplit(slices.Clone(x), []int{1, 2}, []int{3}); err != nil {
				t.Fatal(err)
			}
		}
		if i := slices.IndexFunc(s.w, func(w float32) bool { return w != 0 }); i >= 0 {
			t.Errorf("%+v: an exp pass ran (w[%d] = %v)", cfg, i, s.w[i])
		}
		cfg.NoLogProb = false // the oracle for the test itself: without it the pass runs
		s = mustNew(t, cfg)
		s.Sample(slices.Clone(x), nil)
		if !slices.ContainsFunc(s.w, func(w float32) bool { return w != 0 }) {
			t.Errorf("%+v: no exp pass without NoLogProb either; the check above proves nothing", cfg)
		}
	}
}

// TestTopKOneLogProb checks that top-k 1 at any temperature reports greedy's token,
// log-probability and Top bit for bit, and takes exactly one RNG value per call.
func TestTopKOneLogProb(t *testing.T) {
	x := randLogits(5000, 2, 13)
	g := mustNew(t, Config{LogProbs: 4})
	want, err := g.Sample(slices.Clone(x), nil)
	if err != nil {
		t.Fatal(err)
	}
	want = want.Clone()
	for _, temp := range []float32{0.2, 1, 1.9} {
		s := mustNew(t, Config{Temperature: temp, TopK: 1, LogProbs: 4, Seed: 9})
		var ref rand.PCG
		ref.Seed(9, pcgStream)
		for range 5 {
			r, err := s.Sample(slices.Clone(x), nil)
			if err != nil {
				t.Fatal(err)
			}
			ref.Uint64()
			if r.ID != want.ID || math.Float32bits(r.LogProb) != math.Float32bits(want.LogProb) || !slices.Equal(r.Top, want.Top) {
				t.Fatalf("T=%v top-k 1: %+v, greedy %+v", temp, r, want)
			}
		}
		if s.pcg != ref {
			t.Errorf("T=%v top-k 1: not exactly one RNG value per call", temp)
		}
	}
}

func TestPenaltyBadID(t *testing.T) {
	s := mustNew(t, Config{RepetitionPenalty: 2, FrequencyPenalty: 1})
	orig := []float32{1, 2, 3}
	for _, h := range [][]int{{0, 1, 3}, {-1}, {2, 2, 99}} {
		x := slices.Clone(orig)
		_, err := s.Sample(x, h)
		if !errors.Is(err, ErrTokenRange) {
			t.Fatalf("history %v: err %v, want ErrTokenRange", h, err)
		}
		if !slices.Equal(x, orig) {
			t.Fatalf("history %v: logits changed to %v on error", h, x)
		}
	}
	// Counts were cleared: a good call sees only its own history.
	x := slices.Clone(orig)
	if _, err := s.Sample(x, []int{1}); err != nil {
		t.Fatal(err)
	}
	if want := []float32{1, 2.0/2 - 1, 3}; !slices.Equal(x, want) {
		t.Fatalf("after errors: logits %v, want %v", x, want)
	}
}

func TestTopKOneIsGreedy(t *testing.T) {
	x := randLogits(5000, 1, 3)
	x[100], x[4000] = 10, 10 // tied maximum: greedy takes 100
	want := Argmax(x)
	for _, temp := range []float32{0.01, 0.3, 0.7, 1, 1.5, 2} {
		for seed := range uint64(5) {
			s := mustNew(t, Config{Temperature: temp, TopK: 1, TopP: 0.9, Seed: seed})
			for range 20 {
				r, err := s.Sample(slices.Clone(x), nil)
				if err != nil || r.ID != want {
					t.Fatalf("T=%v seed=%d: got %d, %v; want %d", temp, seed, r.ID, err, want)
				}
			}
		}
	}
}

func TestTopPHandBuilt(t *testing.T) {
	// Sorted: id1 .40, id3 .30, id4 .15, id2 .10, id0 .05; cumulative .40 .70 .85 .95 1.
	x := logs(0.05, 0.4, 0.1, 0.3, 0.15)
	for _, tc := range []struct {
		p    float32
		want []int
	}{
		{0.3, []int{1}},
		{0.5, []int{1, 3}},
		{0.69, []int{1, 3}},
		{0.71, []int{1, 3, 4}},
		{0.9, []int{1, 2, 3, 4}},
		{0.97, []int{0, 1, 2, 3, 4}},
		{1, []int{0, 1, 2, 3, 4}},
	} {
		s := mustNew(t, Config{Temperature: 1, TopP: tc.p})
		if got := keptSet(t, s, x); !slices.Equal(got, tc.want) {
			t.Errorf("top_p=%v kept %v, want %v", tc.p, got, tc.want)
		}
	}
	// Ties at the cut go to the lower id: .4 .4 then .1 (id0) reaches .85.
	s := mustNew(t, Config{Temperature: 1, TopP: 0.85})
	if got := keptSet(t, s, logs(0.1, 0.4, 0.1, 0.4)); !slices.Equal(got, []int{0, 1, 3}) {
		t.Errorf("tied top_p kept %v, want [0 1 3]", got)
	}
	// Top-p after top-k is relative to the top-k mass: top-2 = {1: .4, 3: .3} renormalised
	// to .571/.429, so top_p=0.5 keeps only id 1 and top_p=0.6 keeps both.
	for p, want := range map[float32][]int{0.5: {1}, 0.6: {1, 3}} {
		s := mustNew(t, Config{Temperature: 1, TopK: 2, TopP: p})
		if got := keptSet(t, s, x); !slices.Equal(got, want) {
			t.Errorf("top_k=2 top_p=%v kept %v, want %v", p, got, want)
		}
	}
}

func TestMinP(t *testing.T) {
	x := logs(0.5, 0.2, 0.1, 0.05, 0.15)
	for _, tc := range []struct {
		cfg  Config
		want []int
	}{
		{Config{Temperature: 1, MinP: 0.25}, []int{0, 1, 4}}, // p >= .125
		{Config{Temperature: 1, MinP: 0.35}, []int{0, 1}},    // p >= .175
		{Config{Temperature: 1, MinP: 1}, []int{0}},
		{Config{Temperature: 1, MinP: 0.05}, []int{0, 1, 2, 3, 4}},
		// At T=0.5 the ratios square: .16 .04 .01 .09 of the max, min_p .05 keeps 0, 1, 4.
		{Config{Temperature: 0.5, MinP: 0.05}, []int{0, 1, 4}},
		// After top-p 0.6 ({0, 1}) min_p 0.25 (of the max) keeps {0, 1}.
		{Config{Temperature: 1, TopP: 0.6, MinP: 0.25}, []int{0, 1}},
		{Config{Temperature: 1, TopK: 4, MinP: 0.25}, []int{0, 1, 4}},
	} {
		s := mustNew(t, tc.cfg)
		if got := keptSet(t, s, x); !slices.Equal(got, tc.want) {
			t.Errorf("%+v kept %v, want %v", tc.cfg, got, tc.want)
		}
	}
}

// TestFilterMatchesReference checks the partial-selection paths (top-k heap and
// quickselect, top-p histogram prefilter and quickselect) against the sort-everything
// oracle on many rows, including heavy ties and -Inf entries.
func TestFilterMatchesReference(t *testing.T) {
	rows := map[string][]float32{
		"V=1":           {0.5},
		"V=2":           {1, 1},
		"V=17":          randLogits(17, 1, 1),
		"V=1000,sd=1":   randLogits(1000, 1, 2),
		"V=5003,sd=4":   randLogits(5003, 4, 3),
		"V=100352,sd=2": randLogits(100352, 2, 4),
	}
	tied := randLogits(4099, 2, 5)
	for i := range tied {
		tied[i] = float32(math.Round(float64(tied[i]) * 2)) // many exact ties
		if i%7 == 0 {
			tied[i] = negInf
		}
	}
	rows["V=4099,ties,-Inf"] = tied
	cfgs := []Config{
		{Temperature: 1},
		{Temperature: 0.7, TopK: 1},
		{Temperature: 0.7, TopK: 40},
		{Temperature: 1.3, TopK: 3000},
		{Temperature: 1, TopK: 50000},
		{Temperature: 1, TopP: 0.95},
		{Temperature: 0.6, TopP: 0.5},
		{Temperature: 1.8, TopP: 0.999},
		{Temperature: 0.05, TopP: 0.9},
		{Temperature: 0.9, TopK: 50, TopP: 0.8},
		{Temperature: 1, TopK: 2000, TopP: 0.9, MinP: 0.01},
		{Temperature: 1, MinP: 0.1},
		{Temperature: 1.5, TopP: 0.97, MinP: 0.02},
	}
	for name, x := range rows {
		for _, cfg := range cfgs {
			s := mustNew(t, cfg)
			got, want := keptSet(t, s, x), refKept(x, cfg)
			if !slices.Equal(got, want) {
				t.Errorf("%s %+v: kept %d ids, oracle %d (first got %v, want %v)",
					name, cfg, len(got), len(want), got[:min(5, len(got))], want[:min(5, len(want))])
			}
		}
	}
}

func TestSeedReproducible(t *testing.T) {
	x := randLogits(1000, 1, 9)
	run := func(seed uint64, n int) []int {
		s := mustNew(t, Config{Temperature: 1, TopP: 0.95, Seed: seed})
		ids := make([]int, n)
		for i := range ids {
			r, err := s.Sample(slices.Clone(x), nil)
			if err != nil {
				t.Fatal(err)
			}
			ids[i] = r.ID
		}
		return ids
	}
	a, b, c := run(42, 200), run(42, 200), run(43, 200)
	if !slices.Equal(a, b) {
		t.Fatal("same seed gave different sequences")
	}
	if slices.Equal(a, c) {
		t.Fatal("seeds 42 and 43 gave the same sequence")
	}
	// Reseed restarts the stream.
	s := mustNew(t, Config{Temperature: 1, TopP: 0.95, Seed: 7})
	for range 10 {
		s.Sample(slices.Clone(x), nil)
	}
	s.Reseed(42)
	for i := range 200 {
		if r, _ := s.Sample(slices.Clone(x), nil); r.ID != a[i] {
			t.Fatalf("after Reseed(42) draw %d = %d, want %d", i, r.ID, a[i])
		}
	}
}

// TestEmpiricalFrequencies draws 20000 tokens and compares the frequencies with the
// renormalised softmax: max |freq - p| <= 0.01 and Pearson chi-square below the 0.1%
// critical value for its degrees of freedom.
func TestEmpiricalFrequencies(t *testing.T) {
	const n = 20000
	base := []float32{1.2, -0.3, 0.8, 2.0, -1.0, 0.1, 1.5, -2.2}
	chi2crit := []float64{0, 10.83, 13.82, 16.27, 18.47, 20.52, 22.46, 24.32} // df 1..7, p=0.001
	for _, cfg := range []Config{
		{Temperature: 1, Seed: 1},
		{Temperature: 0.7, Seed: 2},
		{Temperature: 2, Seed: 3},
		{Temperature: 1.3, TopK: 5, Seed: 4},
		{Temperature: 1, TopP: 0.8, Seed: 5},
		{Temperature: 0.8, MinP: 0.1, Seed: 6},
	} {
		s := mustNew(t, cfg)
		kept := refKept(base, cfg)
		// Oracle probabilities over the kept set in float64.
		p := make([]float64, len(base))
		var tot float64
		for _, id := range kept {
			p[id] = math.Exp(float64(base[id]) / float64(cfg.Temperature))
			tot += p[id]
		}
		for i := range p {
			p[i] /= tot
		}
		counts := make([]int, len(base))
		for range n {
			r, err := s.Sample(slices.Clone(base), nil)
			if err != nil {
				t.Fatal(err)
			}
			counts[r.ID]++
		}
		var maxDiff, chi2 float64
		for i, c := range counts {
			if p[i] == 0 {
				if c != 0 {
					t.Errorf("%+v: drew filtered token %d %d times", cfg, i, c)
				}
				continue
			}
			f := float64(c) / n
			maxDiff = max(maxDiff, math.Abs(f-p[i]))
			e := p[i] * n
			chi2 += (float64(c) - e) * (float64(c) - e) / e
		}
		df := len(kept) - 1
		if maxDiff > 0.01 || (df > 0 && chi2 > chi2crit[df]) {
			t.Errorf("%+v: max |freq-p| = %.4f (limit 0.01), chi2 = %.2f (df %d, limit %.2f)",
				cfg, maxDiff, chi2, df, chi2crit[df])
		}
		t.Logf("%+v: max |freq-p| = %.4f, chi2 = %.2f, df %d", cfg, maxDiff, chi2, df)
	}
}

func TestLogProbs(t *testing.T) {
	for _, V := range []int{7, 1000, 100352} {
		x := randLogits(V, 3, uint64(V))
		hist := []int{0, 3, 3, 5}
		for _, cfg := range []Config{
			{LogProbs: 5},
			{Temperature: 0.8, TopP: 0.9, LogProbs: 20, Seed: 1},
			{Temperature: 1.7, TopK: 10, RepetitionPenalty: 1.3, FrequencyPenalty: 0.4, LogProbs: 3},
		} {
			s := mustNew(t, cfg)
			x := slices.Clone(x)
			r, err := s.Sample(x, hist)
			if err != nil {
				t.Fatal(err)
			}
			// x now holds the penalised logits: the distribution logprobs describe.
			ref := logSoftmax64(x)
			if d := math.Abs(float64(r.LogProb) - ref[r.ID]); d > 1e-5 {
				t.Errorf("V=%d %+v: LogProb(%d) = %v, want %v (diff %.2g)", V, cfg, r.ID, r.LogProb, ref[r.ID], d)
			}
			order := make([]int, V)
			for i := range order {
				order[i] = i
			}
			slices.SortStableFunc(order, func(a, b int) int {
				if x[a] > x[b] {
					return -1
				}
				if x[a] < x[b] {
					return 1
				}
				return 0
			})
			if want := min(cfg.LogProbs, V); len(r.Top) != want {
				t.Fatalf("V=%d: %d top logprobs, want %d", V, len(r.Top), want)
			}
			for i, tl := range r.Top {
				if tl.ID != order[i] {
					t.Errorf("V=%d %+v: Top[%d].ID = %d, want %d", V, cfg, i, tl.ID, order[i])
				}
				if d := math.Abs(float64(tl.LogProb) - ref[tl.ID]); d > 1e-5 {
					t.Errorf("V=%d: Top[%d].LogProb = %v, want %v", V, i, tl.LogProb, ref[tl.ID])
				}
			}
		}
	}
	// Top skips -Inf tokens and breaks ties by lower id; Clone detaches it.
	s := mustNew(t, Config{LogProbs: 4})
	r, err := s.Sample([]float32{negInf, 1, nan, 1, 0}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r = r.Clone()
	want := []TokenLogProb{
		{1, float32(1 - math.Log(2*math.E+1))},
		{3, float32(1 - math.Log(2*math.E+1))},
		{4, float32(-math.Log(2*math.E + 1))},
	}
	if len(r.Top) != 3 {
		t.Fatalf("Top = %v, want %v", r.Top, want)
	}
	for i := range want {
		if r.Top[i].ID != want[i].ID || math.Abs(float64(r.Top[i].LogProb-want[i].LogProb)) > 1e-6 {
			t.Fatalf("Top = %v, want %v", r.Top, want)
		}
	}
	s.Sample([]float32{5, 0, 0, 0, 0}, nil)
	if r.Top[0].ID != 1 {
		t.Fatal("Clone did not detach Top from the Sampler buffer")
	}
}

func TestNonFinite(t *testing.T) {
	for _, cfg := range []Config{{}, {Temperature: 1}, {Temperature: 1, TopK: 2}, {Temperature: 1, TopP: 0.5}, {Temperature: 1, MinP: 0.5}} {
		s := mustNew(t, cfg)
		if _, err := s.Sample(nil, nil); !errors.Is(err, ErrEmptyLogits) {
			t.Errorf("%+v empty: err %v", cfg, err)
		}
		for _, x := range [][]float32{{negInf, negInf}, {nan}, {nan, negInf, nan}} {
			if _, err := s.Sample(x, nil); !errors.Is(err, ErrNoCandidates) {
				t.Errorf("%+v %v: err %v, want ErrNoCandidates", cfg, x, err)
			}
		}
		// NaN is -Inf: never drawn.
		for range 200 {
			r, err := s.Sample([]float32{nan, 0, nan, 0.1, negInf}, nil)
			if err != nil || (r.ID != 1 && r.ID != 3) {
				t.Fatalf("%+v NaN row: %d, %v", cfg, r.ID, err)
			}
		}
		// +Inf entries share all the mass.
		for range 200 {
			r, err := s.Sample([]float32{1e30, posInf, nan, posInf}, nil)
			if err != nil || (r.ID != 1 && r.ID != 3) {
				t.Fatalf("%+v +Inf row: %d, %v", cfg, r.ID, err)
			}
			if math.Abs(float64(r.LogProb)+math.Ln2) > 1e-6 {
				t.Fatalf("+Inf row logprob %v, want -ln 2", r.LogProb)
			}
		}
	}
	// A penalty that overflows to +Inf is handled the same way.
	s := mustNew(t, Config{Temperature: 1, RepetitionPenalty: 1e-10})
	r, err := s.Sample([]float32{3e38, 1e38, 2}, []int{0})
	if err != nil || r.ID != 0 {
		t.Fatalf("overflowing penalty: %d, %v", r.ID, err)
	}
	// Subnormal temperature is the greedy limit, not NaN weights.
	s = mustNew(t, Config{Temperature: 1e-45})
	if r, err := s.Sample([]float32{1, 3, 3}, nil); err != nil || r.ID != 1 {
		t.Fatalf("T=1e-45: %d, %v", r.ID, err)
	}
}

func TestValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("DefaultConfig: %v", err)
	}
	if err := (Config{}).Validate(); err != nil {
		t.Fatalf("zero Config: %v", err)
	}
	ok := Config{Temperature: 2, TopK: 100352, TopP: 1, MinP: 1, RepetitionPenalty: 0.01,
		PresencePenalty: -2, FrequencyPenalty: 2, Seed: math.MaxUint64, LogProbs: 20}
	if err := ok.Validate(); err != nil {
		t.Fatalf("boundary config: %v", err)
	}
	for _, tc := range []struct {
		mod   func(*Config)
		field string
		value string
	}{
		{func(c *Config) { c.Temperature = -0.1 }, "temperature", "-0.1"},
		{func(c *Config) { c.Temperature = 2.5 }, "temperature", "2.5"},
		{func(c *Config) { c.Temperature = nan }, "temperature", "NaN"},
		{func(c *Config) { c.TopK = -1 }, "top_k", "-1"},
		{func(c *Config) { c.TopP = -0.5 }, "top_p", "-0.5"},
		{func(c *Config) { c.TopP = 1.01 }, "top_p", "1.01"},
		{func(c *Config) { c.MinP = -0.01 }, "min_p", "-0.01"},
		{func(c *Config) { c.MinP = 1.5 }, "min_p", "1.5"},
		{func(c *Config) { c.RepetitionPenalty = -1 }, "repetition_penalty", "-1"},
		{func(c *Config) { c.RepetitionPenalty = posInf }, "repetition_penalty", "+Inf"},
		{func(c *Config) { c.PresencePenalty = 2.1 }, "presence_penalty", "2.1"},
		{func(c *Config) { c.PresencePenalty = -3 }, "presence_penalty", "-3"},
		{func(c *Config) { c.FrequencyPenalty = -2.5 }, "frequency_penalty", "-2.5"},
		{func(c *Config) { c.FrequencyPenalty = nan }, "frequency_penalty", "NaN"},
		{func(c *Config) { c.LogProbs = -1 }, "top_logprobs", "-1"},
		{func(c *Config) { c.LogProbs = 21 }, "top_logprobs", "21"},
	} {
		c := DefaultConfig()
		tc.mod(&c)
		err := c.Validate()
		var ce *ConfigError
		if !errors.Is(err, ErrInvalidConfig) || !errors.As(err, &ce) || ce.Field != tc.field {
			t.Errorf("%s=%s: err %v", tc.field, tc.value, err)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, tc.field) || !strings.Contains(msg, tc.value) {
			t.Errorf("error %q does not name %s and %s", msg, tc.field, tc.value)
		}
		if _, err := New(c); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("New accepted %s=%s", tc.field, tc.value)
		}
	}
	// All violations are reported together.
	err := Config{Temperature: 3, TopK: -1, LogProbs: 99}.Validate()
	for _, f := range []string{"temperature", "top_k", "top_logprobs"} {
		if err == nil || !strings.Contains(err.Error(), f) {
			t.Errorf("joined error %v lacks %s", err, f)
		}
	}
}

func TestExpf(t *testing.T) {
	worst := 0.0
	for x := float32(-87.3); x <= 0; x += 0.00037 {
		e := math.Exp(float64(x))
		worst = max(worst, math.Abs(float64(expf(x))-e)/e)
	}
	if worst > 2e-7 {
		t.Fatalf("expf max relative error %.3g, want <= 2e-7", worst)
	}
	for _, x := range []float32{0, negInf, -88, -1000, nan} {
		want := float32(math.Exp(float64(x)))
		if x < -87.34 || x != x {
			want = 0
		}
		if got := expf(x); got != want {
			t.Errorf("expf(%v) = %v, want %v", x, got, want)
		}
	}
}

func TestZeroAllocs(t *testing.T) {
	x := randLogits(100352, 2, 11)
	hist := make([]int, 300)
	for i := range hist {
		hist[i] = (i * 7919) % len(x)
	}
	for name, cfg := range map[string]Config{
		"greedy":      {},
		"greedy_nolp": {NoLogProb: true},
		"top_k_nolp":  {Temperature: 0.7, TopK: 40, NoLogProb: true},
		"temp":        {Temperature: 0.8},
		"top_p":       {Temperature: 1, TopP: 0.95},
		"top_k":       {Temperature: 0.7, TopK: 40},
		"top_k_big":   {Temperature: 0.7, TopK: 60000, TopP: 0.9},
		"min_p":       {Temperature: 1, MinP: 0.05},
		"penalties":   {Temperature: 1, RepetitionPenalty: 1.1, PresencePenalty: 0.5, FrequencyPenalty: 0.5, LogProbs: 20},
	} {
		s := mustNew(t, cfg)
		row := slices.Clone(x)
		s.Sample(row, hist) // first call sizes the buffers
		allocs := testing.AllocsPerRun(20, func() {
			copy(row, x)
			if _, err := s.Sample(row, hist); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per Sample, want 0", name, allocs)
		}
	}
}

func FuzzSample(f *testing.F) {
	f.Add([]byte{0, 0, 128, 63, 0, 0, 0, 64}, uint8(100), uint8(3), uint8(200), uint8(10), uint8(5))
	f.Add([]byte{0, 0, 192, 127, 0, 0, 128, 255, 0, 0, 128, 127}, uint8(50), uint8(0), uint8(255), uint8(0), uint8(0))
	f.Fuzz(func(t *testing.T, raw []byte, temp, topK, topP, minP, pen uint8) {
		x := make([]float32, len(raw)/4)
		for i := range x {
			x[i] = math.Float32frombits(uint32(raw[4*i]) | uint32(raw[4*i+1])<<8 | uint32(raw[4*i+2])<<16 | uint32(raw[4*i+3])<<24)
		}
		cfg := Config{
			Temperature:       float32(temp) / 127.5,
			TopK:              int(topK % 8),
			TopP:              float32(topP) / 255,
			MinP:              float32(minP) / 255,
			RepetitionPenalty: float32(pen)/64 + 0.01,
			PresencePenalty:   float32(pen)/64 - 2,
			FrequencyPenalty:  2 - float32(pen)/64,
			Seed:              uint64(temp),
			LogProbs:          int(pen % 21),
		}
		s := mustNew(t, cfg)
		hist := []int{int(pen) % max(1, len(x)), 0}
		r, err := s.Sample(x, hist[:min(len(x), 2)])
		if err != nil {
			return
		}
		if r.ID < 0 || r.ID >= len(x) || math.IsInf(float64(x[r.ID]), -1) || x[r.ID] != x[r.ID] {
			t.Fatalf("id %d invalid for %v", r.ID, x)
		}
		if r.LogProb > 0 || r.LogProb != r.LogProb {
			t.Fatalf("logprob %v", r.LogProb)
		}
	})
}

// sanitizeRef is sanitize as one plain pass: the test oracle, and the baseline of
// BenchmarkSanitize.
func sanitizeRef(x []float32) (float32, int) {
	m, amax := negInf, 0
	for i, v := range x {
		if v != v {
			x[i] = negInf
			continue
		}
		if v > m {
			m, amax = v, i
		}
	}
	if math.IsInf(float64(m), 1) {
		for i, v := range x {
			x[i] = negInf
			if math.IsInf(float64(v), 1) {
				x[i] = 0
			}
		}
		m = 0
	}
	return m, amax
}

// TestSanitizeFastPath checks sanitize (whose finite rows take maxFinite) against the
// plain one-pass definition: NaN becomes -Inf, +Inf resolves, and the result is the
// maximum with the lowest index holding it (the same bits: a zero maximum keeps the
// sign of the first zero), on rows with ties, non-finite entries, zeros of both
// signs and lengths around the 4-lane blocks.
func TestSanitizeFastPath(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 33, 100352} {
		for trial := range 40 {
			x := make([]float32, n)
			for i := range x {
				x[i] = float32(r.IntN(7)) // many ties
			}
			switch trial % 6 {
			case 1:
				x[r.IntN(n)] = nan
			case 2:
				x[r.IntN(n)] = posInf
			case 3:
				x[r.IntN(n)] = negInf
			case 4:
				x[r.IntN(n)] = 3e38 // finite, but the lane sums may overflow
				x[r.IntN(n)] = 3e38
			case 5: // the maximum is 0, held by zeros of both signs
				for i := range x {
					x[i] = -x[i]
				}
				x[r.IntN(n)] = 0
			}
			want := slices.Clone(x)
			wm, wa := sanitizeRef(want)
			gm, ga := sanitize(x)
			if math.Float32bits(gm) != math.Float32bits(wm) || ga != wa || !slices.Equal(x, want) {
				t.Fatalf("n=%d trial %d: sanitize = (%v, %d), reference (%v, %d); rows equal %v", n, trial, gm, ga, wm, wa, slices.Equal(x, want))
			}
		}
	}
}
