// Package sample picks the next token from a row of logits: greedy, temperature,
// top-k, top-p (nucleus), min-p, the Hugging Face repetition penalty and the OpenAI
// presence/frequency penalties, with an explicit per-Sampler seeded RNG and OpenAI-style
// log-probabilities.
//
// A Sampler belongs to one sequence: it owns its RNG (math/rand/v2 PCG seeded from
// Config.Seed) and its scratch buffers, so concurrent sequences use one Sampler each and
// never interfere, and after the first call Sample does not allocate. A Sampler is not
// safe for concurrent use.
//
// The package sees only []float32 rows and []int ids; it imports only the standard
// library.
package sample

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
)

// Errors returned by Sample and SampleSplit (possibly wrapped with details).
var (
	// ErrEmptyLogits: the logits row has length 0.
	ErrEmptyLogits = errors.New("sample: empty logits")
	// ErrNoCandidates: every logit is -Inf or NaN (after penalties), nothing can be drawn.
	ErrNoCandidates = errors.New("sample: every logit is -Inf or NaN")
	// ErrTokenRange: a history id is outside [0, len(logits)).
	ErrTokenRange = errors.New("sample: history id out of range")
)

// pcgStream is the fixed second PCG seed word; Config.Seed is the first.
const pcgStream = 0x9e3779b97f4a7c15

// TokenLogProb is one token and its log-probability.
type TokenLogProb struct {
	ID      int
	LogProb float32
}

// Result is one sampled token.
//
// Log-probabilities follow OpenAI and vLLM: they are log-softmax of the logits after the
// penalties but before temperature and before top-k/top-p/min-p truncation, i.e. the
// model's own distribution as penalised. They are therefore independent of Temperature
// and of the filters, and with Temperature 0 they are the same numbers.
type Result struct {
	ID      int     // chosen token id
	LogProb float32 // log-probability of ID; 0 when Config.NoLogProb skipped it
	// Top holds the Config.LogProbs most probable tokens, most probable first (lower id
	// first on ties); tokens whose logit is -Inf are never listed, so Top can be
	// shorter. Top aliases the Sampler's buffer and is valid only until its next call:
	// use Clone to keep it.
	Top []TokenLogProb
}

// Clone returns r with Top copied out of the Sampler's buffer.
func (r Result) Clone() Result {
	if r.Top != nil {
		r.Top = append([]TokenLogProb(nil), r.Top...)
	}
	return r
}

// cand is one surviving token in the sparse (filtered) candidate set.
type cand struct {
	id    int32
	logit float32 // post-penalty logit, the sort key (with id on ties)
	w     float32 // exp((logit - max) / T), unnormalised probability
}

// Sampler draws tokens according to a Config. Create it with New.
type Sampler struct {
	cfg Config
	pcg rand.PCG

	greedy    bool    // temperature 0 (or subnormal): no randomness
	argmax    bool    // greedy, or top-k 1: the token is the argmax of the penalised row
	needLSE   bool    // the log-sum-exp is wanted: for Result.LogProb or Top
	invT      float32 // 1/Temperature
	topP      float64 // active when 0 < topP < 1
	minP      float32 // active when > 0
	repP      float32 // active when != 0 && != 1
	penalties bool

	// Scratch, sized on first use for the vocabulary and reused afterwards.
	w       []float32      // [V] dense weights
	cands   []cand         // [≤V] sparse candidates
	cnt     []int32        // [V] penalty counts; all zero between calls
	touched []int32        // [≤V] ids with cnt != 0
	top     []TokenLogProb // [LogProbs]
	hist    [128]float64   // top-p weight mass per float32 exponent
}

// New validates cfg and returns a Sampler whose RNG is seeded from cfg.Seed.
func New(cfg Config) (*Sampler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Sampler{cfg: cfg}
	s.pcg.Seed(cfg.Seed, pcgStream)
	s.greedy = cfg.Temperature == 0
	if !s.greedy {
		s.invT = 1 / cfg.Temperature
		if math.IsInf(float64(s.invT), 0) { // subnormal temperature: the T -> 0 limit
			s.greedy = true
		}
	}
	if cfg.TopP > 0 && cfg.TopP < 1 {
		s.topP = float64(cfg.TopP)
	}
	s.minP = cfg.MinP
	if cfg.RepetitionPenalty != 0 && cfg.RepetitionPenalty != 1 {
		s.repP = cfg.RepetitionPenalty
	}
	s.penalties = s.repP != 0 || cfg.PresencePenalty != 0 || cfg.FrequencyPenalty != 0
	// Top-k 1 keeps only the first token in candidate order (highest logit, lowest id),
	// whose weight is exp(0) = 1 and which top-p and min-p always keep: the argmax.
	s.argmax = s.greedy || cfg.TopK == 1
	s.needLSE = !cfg.NoLogProb || cfg.LogProbs > 0
	return s, nil
}

// Config returns the configuration the Sampler was created with.
func (s *Sampler) Config() Config { return s.cfg }

// Reseed restarts the Sampler's RNG as if it had been created with Config.Seed = seed.
func (s *Sampler) Reseed(seed uint64) {
	s.cfg.Seed = seed
	s.pcg.Seed(seed, pcgStream)
}

// Sample picks the next token id from logits [V]. history holds the ids seen so far and
// feeds all three penalties: the repetition penalty applies to each distinct id in it,
// and presence/frequency count its occurrences. For OpenAI semantics, where presence and
// frequency count only generated tokens while the repetition penalty also covers the
// prompt, use SampleSplit. Sample(l, h) is SampleSplit(l, nil, h).
//
// logits is modified in place: penalties are applied, NaN becomes -Inf, and if any logit
// is +Inf the row becomes 0 at the +Inf entries and -Inf elsewhere (the limit
// distribution, uniform over the +Inf tokens). Bad input is an error, never a panic; on
// ErrTokenRange logits is left untouched.
//
// A greedy call uses no randomness; every other call takes exactly one 64-bit value from
// the Sampler's PCG, so the tokens depend only on the seed, the config and the rows.
func (s *Sampler) Sample(logits []float32, history []int) (Result, error) {
	return s.SampleSplit(logits, nil, history)
}

// SampleSplit is Sample with the history split as OpenAI and vLLM do: the repetition
// penalty applies to every distinct id in prompt or generated, while the presence and
// frequency penalties count occurrences in generated only. Everything else is as for
// Sample.
func (s *Sampler) SampleSplit(logits []float32, prompt, generated []int) (Result, error) {
	V := len(logits)
	if V == 0 {
		return Result{}, ErrEmptyLogits
	}
	if V > math.MaxInt32 {
		return Result{}, fmt.Errorf("sample: %d logits, more than %d", V, math.MaxInt32)
	}
	s.size(V)
	if s.penalties {
		if err := s.applyPenalties(logits, prompt, generated); err != nil {
			return Result{}, err
		}
	}
	m, amax := sanitize(logits)
	if math.IsInf(float64(m), -1) {
		return Result{}, ErrNoCandidates
	}

	var id int
	var lse float64 // log-sum-exp of the (penalised) logits at temperature 1, if needLSE
	if s.argmax {
		id = amax
		if !s.greedy {
			s.pcg.Uint64() // a draw from the one top-k 1 candidate takes one value, as every non-greedy call does
		}
		if s.needLSE {
			lse = s.logSumExp(logits, m)
		}
	} else {
		id, lse = s.draw(logits, m)
		if id < 0 { // unreachable: the maximum always survives with weight 1
			id = amax
		}
	}
	res := Result{ID: id}
	if s.needLSE {
		res.LogProb = float32(float64(logits[id]) - lse)
	}
	if s.cfg.LogProbs > 0 {
		res.Top = s.topLogProbs(logits, lse)
	}
	return res, nil
}

// size makes the per-vocabulary scratch fit a row of V logits.
func (s *Sampler) size(V int) {
	if len(s.w) != V {
		s.w = make([]float32, V)
		s.cands = make([]cand, V)
	}
}

// applyPenalties applies the repetition, presence and frequency penalties in place. It
// checks every id before touching logits.
func (s *Sampler) applyPenalties(logits []float32, prompt, generated []int) error {
	V := len(logits)
	if len(s.cnt) != V {
		s.cnt = make([]int32, V)
		s.touched = make([]int32, 0, V)
	}
	s.touched = s.touched[:0]
	// cnt[id] = 1 + occurrences in generated, for every id seen in prompt or generated.
	for pass, ids := range [2][]int{prompt, generated} {
		for i, id := range ids {
			if id < 0 || id >= V {
				for _, t := range s.touched {
					s.cnt[t] = 0
				}
				which := "prompt"
				if pass == 1 {
					which = "generated"
				}
				return fmt.Errorf("%w: %s[%d] = %d, vocabulary size %d", ErrTokenRange, which, i, id, V)
			}
			if s.cnt[id] == 0 {
				s.cnt[id] = 1
				s.touched = append(s.touched, int32(id))
			}
			if pass == 1 && s.cnt[id] < math.MaxInt32 {
				s.cnt[id]++
			}
		}
	}
	rp, pres, freq := s.repP, s.cfg.PresencePenalty, s.cfg.FrequencyPenalty
	for _, t := range s.touched {
		l := logits[t]
		if rp != 0 {
			if l > 0 {
				l /= rp
			} else {
				l *= rp
			}
		}
		if c := s.cnt[t] - 1; c > 0 {
			l -= pres + freq*float32(c)
		}
		logits[t] = l
		s.cnt[t] = 0
	}
	return nil
}

// sanitize turns NaN into -Inf and resolves +Inf (see Sample), returning the maximum
// and the lowest index holding it.
func sanitize(x []float32) (m float32, amax int) {
	if m, amax, ok := maxFinite(x); ok {
		return m, amax // nothing to rewrite
	}
	negInf := float32(math.Inf(-1))
	m = negInf
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
			if math.IsInf(float64(v), 1) {
				x[i] = 0
			} else {
				x[i] = negInf
			}
		}
		m = 0
	}
	return m, amax
}

// maxFinite returns the maximum of x and the lowest index holding it, and ok when
// every entry is finite (ok is false, and m and amax meaningless, if x is empty or
// holds a NaN or an infinity; a row whose sum overflows also reports false, which
// only costs the slower exact pass). It is the common case of sanitize, in two
// passes: the maximum and the sum in four lanes held in registers, then the first
// index holding the maximum (~2x faster over a full vocabulary than one pass that
// also tracks the index of each lane's maximum). A maximum of 0 compares equal to
// both zeros, so the first zero of either sign is found, as a single pass of
// strict compares would keep it.
func maxFinite(x []float32) (m float32, amax int, ok bool) {
	n := len(x) &^ 3
	if n == 0 {
		return 0, 0, false
	}
	m0, m1, m2, m3 := x[0], x[1], x[2], x[3]
	var s0, s1, s2, s3 float32 // NaN or ±Inf anywhere makes their total non-finite
	for i := 0; i < n; i += 4 {
		v := x[i : i+4 : i+4]
		s0, s1, s2, s3 = s0+v[0], s1+v[1], s2+v[2], s3+v[3]
		if v[0] > m0 {
			m0 = v[0]
		}
		if v[1] > m1 {
			m1 = v[1]
		}
		if v[2] > m2 {
			m2 = v[2]
		}
		if v[3] > m3 {
			m3 = v[3]
		}
	}
	sum, m := (s0+s1)+(s2+s3), max(m0, m1, m2, m3)
	for _, v := range x[n:] {
		sum += v
		if v > m {
			m = v
		}
	}
	if sum-sum != 0 { // NaN or ±Inf
		return 0, 0, false
	}
	for i, v := range x {
		if v == m {
			return v, i, true
		}
	}
	return 0, 0, false // unreachable: m is one of the entries
}

// logSumExp returns log Σ exp(x) for a sanitised row with finite maximum m, using s.w
// as scratch.
func (s *Sampler) logSumExp(x []float32, m float32) float64 {
	return float64(m) + math.Log(expShift(s.w, x, m, 1))
}

// draw samples at temperature > 0 and returns the id (-1 only if nothing survived,
// which cannot happen) and the temperature-1 log-sum-exp (0 unless s.needLSE).
func (s *Sampler) draw(logits []float32, m float32) (int, float64) {
	c, total, lse := s.filter(logits, m)
	u := s.float64() * total
	var acc float64
	last := -1
	if c != nil {
		for _, x := range c {
			if x.w > 0 {
				acc += float64(x.w)
				last = int(x.id)
				if u < acc {
					return last, lse
				}
			}
		}
		return last, lse // rounding left u >= acc: the last positive weight
	}
	for i, w := range s.w[:len(logits)] {
		if w > 0 {
			acc += float64(w)
			last = i
			if u < acc {
				return i, lse
			}
		}
	}
	return last, lse
}

// filter applies temperature, top-k, top-p and min-p to a sanitised row with finite
// maximum m. The surviving tokens are c with their weights, or, when c is nil, every
// token with its weight in s.w; total is the sum of the surviving weights and lse the
// temperature-1 log-sum-exp of the whole row (left 0 when s.needLSE is false).
func (s *Sampler) filter(logits []float32, m float32) (c []cand, total, lse float64) {
	V := len(logits)
	invT := s.invT
	if invT != 1 && s.needLSE { // with invT == 1 the dense weights give it for free
		lse = s.logSumExp(logits, m) // before the weights overwrite s.w
	}
	if k := s.cfg.TopK; k > 0 && k < V {
		c = s.topK(logits, k)
		for i := range c {
			w := expf((c[i].logit - m) * invT)
			c[i].w = w
			total += float64(w)
		}
		if invT == 1 && s.needLSE {
			lse = s.logSumExp(logits, m)
		}
	} else {
		total = s.denseWeights(logits, m)
		if invT == 1 {
			lse = float64(m) + math.Log(total)
		}
		if s.topP > 0 {
			c = s.nucleusCandidates(logits, s.topP*total)
		}
	}
	if s.topP > 0 {
		c = c[:nucleus(c, s.topP*total)]
		total = sumW(c)
	}
	if s.minP > 0 {
		// The most probable token survives every filter and has weight exp(0) = 1,
		// so p >= minP*p_max is w >= minP.
		if c == nil {
			c = s.cands[:0]
			for i, w := range s.w[:V] {
				if w >= s.minP {
					c = append(c, cand{id: int32(i), logit: logits[i], w: w})
				}
			}
		} else {
			n := 0
			for _, x := range c {
				if x.w >= s.minP {
					c[n] = x
					n++
				}
			}
			c = c[:n]
		}
		total = sumW(c)
	}
	return c, total, lse
}

// denseWeights fills s.w[i] = exp((logits[i]-m)/T) and returns their sum. With top-p
// on it also fills s.hist with the mass per float32 exponent.
func (s *Sampler) denseWeights(logits []float32, m float32) float64 {
	total := expShift(s.w, logits, m, s.invT)
	if s.topP > 0 {
		s.hist = [128]float64{}
		for _, x := range s.w[:len(logits)] {
			s.hist[(math.Float32bits(x)>>23)&127] += float64(x)
		}
	}
	return total
}

// nucleusCandidates copies into s.cands the dense tokens that can be in the nucleus of
// mass need: using the exponent histogram it finds the highest exponent bucket b such
// that the mass in buckets >= b reaches need. Those tokens are a prefix of the sorted
// order holding at least need, so the nucleus lies inside them.
func (s *Sampler) nucleusCandidates(logits []float32, need float64) []cand {
	cut := uint32(0)
	var acc float64
	for b := 127; b >= 0; b-- {
		acc += s.hist[b]
		if acc >= need {
			cut = uint32(b)
			break
		}
	}
	c := s.cands[:0]
	minBits := cut << 23
	for i, w := range s.w[:len(logits)] {
		if w > 0 && math.Float32bits(w) >= minBits {
			c = append(c, cand{id: int32(i), logit: logits[i], w: w})
		}
	}
	return c
}

func sumW(c []cand) float64 {
	var t float64
	for _, x := range c {
		t += float64(x.w)
	}
	return t
}

// float64 returns a uniform number in [0, 1), as rand.Float64 does.
func (s *Sampler) float64() float64 {
	return float64(s.pcg.Uint64()>>11) * 0x1p-53
}

// topLogProbs returns the LogProbs most probable finite tokens with their
// log-probabilities, in s.top.
func (s *Sampler) topLogProbs(logits []float32, lse float64) []TokenLogProb {
	n := s.cfg.LogProbs
	if cap(s.top) < n {
		s.top = make([]TokenLogProb, 0, n)
	}
	t := s.top[:0]
	// t holds logits in LogProb while scanning, sorted descending. floor is -Inf until t
	// is full, then its smallest logit; scanning ids upward means an equal logit never
	// displaces an earlier (lower) id, and -Inf tokens are never listed.
	floor := float32(math.Inf(-1))
	for i, l := range logits {
		if l <= floor {
			continue
		}
		if len(t) < n {
			t = append(t, TokenLogProb{})
		}
		j := len(t) - 1
		for j > 0 && t[j-1].LogProb < l {
			t[j] = t[j-1]
			j--
		}
		t[j] = TokenLogProb{ID: i, LogProb: l}
		if len(t) == n {
			floor = t[n-1].LogProb
		}
	}
	for i := range t {
		t[i].LogProb = float32(float64(t[i].LogProb) - lse)
	}
	s.top = t
	return t
}

// Argmax returns the index of the largest logit, the lowest index on ties. NaN entries
// are ignored; it returns -1 if logits is empty or all NaN.
func Argmax(logits []float32) int {
	if _, i, ok := maxFinite(logits); ok {
		return i
	}
	best := -1
	var m float32
	for i, v := range logits {
		if v != v {
			continue
		}
		if best < 0 || v > m {
			best, m = i, v
		}
	}
	return best
}

// log2 of n rounded up, at least 1; the introselect depth budget.
func depthBudget(n int) int { return 2 * (bits.Len(uint(n)) + 1) }
