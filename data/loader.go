package data

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"sort"
)

// Source is one named token stream: its shards concatenated in order.
type Source struct {
	Name  string   // unique; the key of Weights and curriculum stages
	Paths []string // token shards, read in this order as one stream
}

// Stage is one step of a curriculum: from AtTokens global tokens on (counted as
// batch rows × T over all ranks), rows are drawn with these weights. Weights need not
// sum to 1; sources left out have weight 0.
type Stage struct {
	AtTokens int64              `json:"at_tokens"`
	Weights  map[string]float64 `json:"weights"`
}

// ParseCurriculum decodes a JSON array of stages, e.g.
//
//	[{"at_tokens": 0, "weights": {"code": 0.7, "prose": 0.3}},
//	 {"at_tokens": 2000000, "weights": {"code": 0.3, "prose": 0.7}}]
//
// Stage order and weights are checked here; source names by LoaderConfig.Validate.
func ParseCurriculum(b []byte) ([]Stage, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var st []Stage
	if err := dec.Decode(&st); err != nil {
		off := int64(-1)
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			off = se.Offset
		case errors.As(err, &te):
			off = te.Offset
		}
		return nil, formatErr(ErrInput, off, "curriculum", err.Error())
	}
	if dec.More() {
		return nil, formatErr(ErrInput, dec.InputOffset(), "curriculum", "trailing data after the array")
	}
	if err := checkStages(st, nil); err != nil {
		return nil, err
	}
	return st, nil
}

// checkStages checks order and weights; names, when non-nil, are the known sources.
func checkStages(st []Stage, names map[string]bool) error {
	if len(st) == 0 {
		return fmt.Errorf("%w: curriculum has no stages", ErrConfig)
	}
	if st[0].AtTokens != 0 {
		return fmt.Errorf("%w: curriculum: first stage starts at %d tokens, must start at 0", ErrConfig, st[0].AtTokens)
	}
	for i, s := range st {
		if i > 0 && s.AtTokens <= st[i-1].AtTokens {
			return fmt.Errorf("%w: curriculum: stage %d at_tokens %d is not after %d", ErrConfig, i, s.AtTokens, st[i-1].AtTokens)
		}
		if err := checkWeights(s.Weights, names); err != nil {
			return fmt.Errorf("%w: curriculum stage %d: %v", ErrConfig, i, err)
		}
	}
	return nil
}

func checkWeights(w map[string]float64, names map[string]bool) error {
	var sum float64
	for name, x := range w {
		if names != nil && !names[name] {
			return fmt.Errorf("weight for unknown source %q", name)
		}
		if !(x >= 0) || math.IsInf(x, 0) {
			return fmt.Errorf("weight %v of %q must be >= 0 and finite", x, name)
		}
		sum += x
	}
	if !(sum > 0) || math.IsInf(sum, 0) {
		return errors.New("weights must have a positive finite sum")
	}
	return nil
}

// LoaderConfig configures a Loader.
type LoaderConfig struct {
	Sources []Source
	// Weights mixes the sources when Curriculum is empty. Nil means proportional to
	// each source's token count.
	Weights map[string]float64
	// Curriculum, if set, replaces Weights: its first stage must be at 0 tokens.
	Curriculum []Stage

	Batch  int    // B: rows per rank per batch, >= 1
	SeqLen int    // T: tokens per row, >= 1; each row reads a window of T+1 tokens
	Seed   uint64 // drives the window order and the source choice
	// Shuffle visits each source's windows in a seeded random order per epoch;
	// false reads them in order (for evaluation).
	Shuffle bool

	Rank      int // this process's rank, in [0, WorldSize)
	WorldSize int // number of data-parallel ranks sharing each global batch, >= 1

	Verify bool // check every shard's payload checksum when opening
}

// DefaultLoaderConfig returns B=8, T=2048, shuffling, one rank; Sources must be set.
func DefaultLoaderConfig() LoaderConfig {
	return LoaderConfig{Batch: 8, SeqLen: 2048, Shuffle: true, WorldSize: 1}
}

// Validate checks the configuration without opening any file.
func (c LoaderConfig) Validate() error {
	switch {
	case c.Batch < 1:
		return fmt.Errorf("%w: Batch %d < 1", ErrConfig, c.Batch)
	case c.SeqLen < 1:
		return fmt.Errorf("%w: SeqLen %d < 1", ErrConfig, c.SeqLen)
	case c.WorldSize < 1:
		return fmt.Errorf("%w: WorldSize %d < 1", ErrConfig, c.WorldSize)
	case c.Rank < 0 || c.Rank >= c.WorldSize:
		return fmt.Errorf("%w: Rank %d not in [0, %d)", ErrConfig, c.Rank, c.WorldSize)
	case len(c.Sources) == 0:
		return fmt.Errorf("%w: no sources", ErrConfig)
	case c.Weights != nil && len(c.Curriculum) > 0:
		return fmt.Errorf("%w: give Weights or Curriculum, not both", ErrConfig)
	}
	names := map[string]bool{}
	for i, s := range c.Sources {
		switch {
		case s.Name == "":
			return fmt.Errorf("%w: source %d has no name", ErrConfig, i)
		case names[s.Name]:
			return fmt.Errorf("%w: duplicate source %q", ErrConfig, s.Name)
		case len(s.Paths) == 0:
			return fmt.Errorf("%w: source %q has no shards", ErrConfig, s.Name)
		}
		names[s.Name] = true
	}
	if len(c.Curriculum) > 0 {
		return checkStages(c.Curriculum, names)
	}
	if c.Weights != nil {
		if err := checkWeights(c.Weights, names); err != nil {
			return fmt.Errorf("%w: %v", ErrConfig, err)
		}
	}
	return nil
}

// Batch is one batch of training rows for this rank.
type Batch struct {
	B, T    int
	Inputs  []int   // [B*T] token ids; row r is Inputs[r*T : (r+1)*T]
	Targets []int   // [B*T] next-token labels: the window shifted by one
	Sources []int   // [B] index in LoaderConfig.Sources of each row's source
	Windows []int64 // [B] window index in its source (the window starts at token Windows[r]*T)
	Rows    []int64 // [B] global row index (over all ranks)
}

func (b *Batch) resize(B, T int) {
	b.B, b.T = B, T
	b.Inputs = grow(b.Inputs, B*T)
	b.Targets = grow(b.Targets, B*T)
	b.Sources = grow(b.Sources, B)
	b.Windows = grow(b.Windows, B)
	b.Rows = grow(b.Rows, B)
}

func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// stream is one source while loading.
type stream struct {
	name     string
	shards   []*Shard
	starts   []int64 // [len(shards)+1] token offset of each shard in the stream
	windows  int64   // (tokens-1)/T windows of T+1 tokens, overlapping by one
	key      uint64  // seed of this source's permutations
	consumed int64   // windows handed out so far, over all ranks and epochs
	epoch    int64   // epoch of perm, -1 if none
	perm     permutation
}

func (s *stream) tokens() int64 { return s.starts[len(s.starts)-1] }

// next returns the window index for the next row taken from s.
func (s *stream) next(shuffle bool) int64 {
	c := s.consumed
	s.consumed++
	e, pos := c/s.windows, c%s.windows
	if e != s.epoch {
		s.perm = newPermutation(uint64(s.windows), hash3(s.key, streamPerm, uint64(e)), shuffle)
		s.epoch = e
	}
	return int64(s.perm.at(uint64(pos)))
}

// read copies tokens [off, off+len(dst)) of the stream into dst.
func (s *stream) read(dst []uint32, off int64) {
	i := sort.Search(len(s.shards), func(i int) bool { return s.starts[i+1] > off })
	for len(dst) > 0 {
		n := copy(dst, s.shards[i].Tokens()[off-s.starts[i]:])
		dst, off = dst[n:], off+int64(n)
		i++
	}
}

type stage struct {
	at  int64
	cum []float64 // cumulative normalised weight per source index; last positive = 1
}

// Loader yields batches of fixed-length token windows. It is not safe for concurrent
// use.
type Loader struct {
	cfg     LoaderConfig
	streams []*stream
	stages  []stage
	row     int64    // next global row
	scratch []uint32 // [T+1]
}

// NewLoader opens every shard of every source and returns a loader positioned at
// the first batch.
func NewLoader(cfg LoaderConfig) (_ *Loader, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	l := &Loader{cfg: cfg, scratch: make([]uint32, cfg.SeqLen+1)}
	defer func() {
		if err != nil {
			l.Close()
		}
	}()
	T := int64(cfg.SeqLen)
	for _, src := range cfg.Sources {
		h := fnv.New64a()
		h.Write([]byte(src.Name))
		s := &stream{name: src.Name, starts: []int64{0}, epoch: -1, key: hash3(cfg.Seed, h.Sum64(), 0)}
		l.streams = append(l.streams, s)
		for _, p := range src.Paths {
			sh, err := OpenShard(p)
			if err != nil {
				return nil, err
			}
			s.shards = append(s.shards, sh)
			if cfg.Verify {
				if err := sh.Verify(); err != nil {
					return nil, err
				}
			}
			s.starts = append(s.starts, s.tokens()+sh.Len())
		}
		if n := s.tokens(); n > 0 {
			s.windows = (n - 1) / T
		}
	}
	stages := cfg.Curriculum
	if len(stages) == 0 {
		w := cfg.Weights
		if w == nil {
			w = map[string]float64{}
			for _, s := range l.streams {
				w[s.name] = float64(s.tokens())
			}
		}
		stages = []Stage{{AtTokens: 0, Weights: w}}
	}
	for i, st := range stages {
		var sum float64
		cum := make([]float64, len(l.streams))
		last := -1
		for j, s := range l.streams {
			x := st.Weights[s.name]
			if x > 0 && s.windows == 0 {
				return nil, fmt.Errorf("%w: source %q has weight %v in stage %d but only %d tokens, fewer than SeqLen+1 = %d",
					ErrConfig, s.name, x, i, s.tokens(), T+1)
			}
			sum += x
			cum[j] = sum
			if x > 0 {
				last = j
			}
		}
		if last < 0 || !(sum > 0) {
			return nil, fmt.Errorf("%w: stage %d: no source has positive weight", ErrConfig, i)
		}
		for j := range cum {
			cum[j] /= sum
			if j >= last {
				cum[j] = 1
			}
		}
		l.stages = append(l.stages, stage{at: st.AtTokens, cum: cum})
	}
	return l, nil
}

// pick returns the source of global row g.
func (l *Loader) pick(g int64) int {
	tok := g * int64(l.cfg.SeqLen)
	k := sort.Search(len(l.stages), func(i int) bool { return l.stages[i].at > tok }) - 1
	u := unitFloat(hash3(l.cfg.Seed, streamSource, uint64(g)))
	cum := l.stages[k].cum
	for j, c := range cum {
		if u < c {
			return j
		}
	}
	return len(cum) - 1 // unreachable: the last positive entry is 1
}

// Next fills b with this rank's rows of the next global batch. The global batch has
// Batch×WorldSize rows; rank r gets rows [r·Batch, (r+1)·Batch) of it. Every rank
// must call Next the same number of times.
func (l *Loader) Next(b *Batch) error {
	B, T := l.cfg.Batch, l.cfg.SeqLen
	b.resize(B, T)
	lo := int64(l.cfg.Rank * B)
	global := int64(B * l.cfg.WorldSize)
	for k := range global {
		g := l.row + k
		si := l.pick(g)
		s := l.streams[si]
		w := s.next(l.cfg.Shuffle)
		if k < lo || k >= lo+int64(B) {
			continue
		}
		r := int(k - lo)
		s.read(l.scratch, w*int64(T))
		in, tg := b.Inputs[r*T:(r+1)*T], b.Targets[r*T:(r+1)*T]
		for t := range T {
			in[t] = int(l.scratch[t])
			tg[t] = int(l.scratch[t+1])
		}
		b.Sources[r], b.Windows[r], b.Rows[r] = si, w, g
	}
	l.row += global
	return nil
}

// TokensSeen is the number of input tokens handed out over all ranks: rows × T.
func (l *Loader) TokensSeen() int64 { return l.row * int64(l.cfg.SeqLen) }

// Windows returns the number of windows (rows per epoch) of the named source, or -1.
func (l *Loader) Windows(source string) int64 {
	for _, s := range l.streams {
		if s.name == source {
			return s.windows
		}
	}
	return -1
}

// Epoch returns how many full passes over the named source have been handed out
// (fractional), or -1 for an unknown source.
func (l *Loader) Epoch(source string) float64 {
	for _, s := range l.streams {
		if s.name == source {
			if s.windows == 0 {
				return 0
			}
			return float64(s.consumed) / float64(s.windows)
		}
	}
	return -1
}

// Close unmaps every shard.
func (l *Loader) Close() error {
	var first error
	for _, s := range l.streams {
		for _, sh := range s.shards {
			if err := sh.Close(); err != nil && first == nil {
				first = err
			}
		}
	}
	return first
}

// LoaderState is the position of a Loader, JSON-serialisable. It is the same on every
// rank.
type LoaderState struct {
	Version int           `json:"version"`
	Seed    uint64        `json:"seed"`
	SeqLen  int           `json:"seq_len"`
	Shuffle bool          `json:"shuffle"`
	Row     int64         `json:"row"` // next global row
	Sources []SourceState `json:"sources"`
}

// SourceState is the position of one source.
type SourceState struct {
	Name     string `json:"name"`
	Tokens   int64  `json:"tokens"`   // size of the stream, to detect changed data
	Consumed int64  `json:"consumed"` // windows handed out, over all epochs
}

const loaderStateVersion = 1

// State returns the loader's position.
func (l *Loader) State() LoaderState {
	st := LoaderState{Version: loaderStateVersion, Seed: l.cfg.Seed, SeqLen: l.cfg.SeqLen, Shuffle: l.cfg.Shuffle, Row: l.row}
	for _, s := range l.streams {
		st.Sources = append(st.Sources, SourceState{Name: s.name, Tokens: s.tokens(), Consumed: s.consumed})
	}
	return st
}

// Restore moves the loader to a position saved by State, after which it yields
// exactly the batches the saved loader would have. Seed, SeqLen, Shuffle and the
// sources (names and token counts) must match; Batch, WorldSize, Rank and the
// weights may differ (the global row stream simply continues). On error the loader
// is unchanged.
func (l *Loader) Restore(st LoaderState) error {
	switch {
	case st.Version != loaderStateVersion:
		return fmt.Errorf("%w: version %d, want %d", ErrState, st.Version, loaderStateVersion)
	case st.Seed != l.cfg.Seed:
		return fmt.Errorf("%w: seed %d, loader has %d", ErrState, st.Seed, l.cfg.Seed)
	case st.SeqLen != l.cfg.SeqLen:
		return fmt.Errorf("%w: seq_len %d, loader has %d", ErrState, st.SeqLen, l.cfg.SeqLen)
	case st.Shuffle != l.cfg.Shuffle:
		return fmt.Errorf("%w: shuffle %v, loader has %v", ErrState, st.Shuffle, l.cfg.Shuffle)
	case st.Row < 0:
		return fmt.Errorf("%w: negative row %d", ErrState, st.Row)
	case len(st.Sources) != len(l.streams):
		return fmt.Errorf("%w: %d sources, loader has %d", ErrState, len(st.Sources), len(l.streams))
	}
	consumed := make([]int64, len(l.streams))
	seen := make([]bool, len(l.streams))
	var sum int64
	for _, ss := range st.Sources {
		i := -1
		for j, s := range l.streams {
			if s.name == ss.Name {
				i = j
			}
		}
		switch {
		case i < 0:
			return fmt.Errorf("%w: unknown source %q", ErrState, ss.Name)
		case seen[i]:
			return fmt.Errorf("%w: source %q twice", ErrState, ss.Name)
		case ss.Tokens != l.streams[i].tokens():
			return fmt.Errorf("%w: source %q had %d tokens, now %d", ErrState, ss.Name, ss.Tokens, l.streams[i].tokens())
		case ss.Consumed < 0 || ss.Consumed > 0 && l.streams[i].windows == 0:
			return fmt.Errorf("%w: source %q: consumed %d windows of %d", ErrState, ss.Name, ss.Consumed, l.streams[i].windows)
		}
		seen[i], consumed[i] = true, ss.Consumed
		sum += ss.Consumed
	}
	if sum != st.Row {
		return fmt.Errorf("%w: sources consumed %d windows in total but row is %d", ErrState, sum, st.Row)
	}
	l.row = st.Row
	for i, s := range l.streams {
		s.consumed, s.epoch = consumed[i], -1
	}
	return nil
}
