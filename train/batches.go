package train

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"

	"github.com/dbrx-engine/dbrx/data"
	"github.com/dbrx-engine/dbrx/model/dbrx"
)

// batchSource yields training batches and can save and restore its position, so a
// resumed run sees exactly the batches an uninterrupted one would have.
type batchSource interface {
	// Next fills b with the next micro-batch (its slices may be reused by the next call).
	Next(b *dbrx.Batch) error
	// State is the position, as JSON.
	State() (json.RawMessage, error)
	// Restore moves to a position saved by State.
	Restore(json.RawMessage) error
	Close() error
}

// sourceState wraps every source's state with its kind, so a checkpoint of one kind
// of data cannot be restored into another.
type sourceState struct {
	Kind  string          `json:"kind"`
	State json.RawMessage `json:"state"`
}

func wrapState(kind string, v any) (json.RawMessage, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return json.Marshal(sourceState{Kind: kind, State: b})
}

func unwrapState(kind string, raw json.RawMessage, v any) error {
	var s sourceState
	if err := json.Unmarshal(raw, &s); err != nil {
		return fmt.Errorf("train: data state: %w", err)
	}
	if s.Kind != kind {
		return fmt.Errorf("train: data state is of a %q source, this run reads %q", s.Kind, kind)
	}
	if err := json.Unmarshal(s.State, v); err != nil {
		return fmt.Errorf("train: %s data state: %w", kind, err)
	}
	return nil
}

// shardSource adapts data.Loader (token shards, mixed, with a curriculum).
type shardSource struct {
	l  *data.Loader
	db data.Batch
}

func (s *shardSource) Next(b *dbrx.Batch) error {
	if err := s.l.Next(&s.db); err != nil {
		return err
	}
	b.B, b.T, b.IDs, b.Targets = s.db.B, s.db.T, s.db.Inputs, s.db.Targets
	return nil
}

func (s *shardSource) State() (json.RawMessage, error) { return wrapState("shards", s.l.State()) }

func (s *shardSource) Restore(raw json.RawMessage) error {
	var st data.LoaderState
	if err := unwrapState("shards", raw, &st); err != nil {
		return err
	}
	return s.l.Restore(st)
}

func (s *shardSource) Close() error { return s.l.Close() }

// resolveSources turns source configs into loader sources; defSplit applies where
// a manifest source names no split.
func resolveSources(cs []SourceConfig, defSplit string) ([]data.Source, error) {
	out := make([]data.Source, 0, len(cs))
	for _, c := range cs {
		if c.Manifest == "" {
			out = append(out, data.Source{Name: c.Name, Paths: c.Paths})
			continue
		}
		split := c.Split
		if split == "" {
			split = defSplit
		}
		s, err := data.ManifestSource(c.Manifest, split, c.Name)
		if err != nil {
			return nil, fmt.Errorf("train: source %q: %w", c.Name, err)
		}
		out = append(out, s)
	}
	return out, nil
}

// syntheticSource yields uniformly random token ids: row r is a pure function of
// (seed, r), so its state is the row counter.
type syntheticSource struct {
	seed  uint64
	V     int
	B, T  int
	row   int64
	toks  []int
	batch dbrx.Batch
}

type syntheticState struct {
	Row int64 `json:"row"`
}

func (s *syntheticSource) Next(b *dbrx.Batch) error {
	B, T := s.B, s.T
	if len(s.batch.IDs) != B*T {
		s.batch = dbrx.Batch{B: B, T: T, IDs: make([]int, B*T), Targets: make([]int, B*T)}
		s.toks = make([]int, T+1)
	}
	for r := 0; r < B; r++ {
		rng := rand.New(rand.NewPCG(s.seed, uint64(s.row)))
		for i := range s.toks {
			s.toks[i] = int(rng.Uint64() % uint64(s.V))
		}
		copy(s.batch.IDs[r*T:(r+1)*T], s.toks[:T])
		copy(s.batch.Targets[r*T:(r+1)*T], s.toks[1:])
		s.row++
	}
	*b = s.batch
	return nil
}

func (s *syntheticSource) State() (json.RawMessage, error) {
	return wrapState("synthetic", syntheticState{Row: s.row})
}

func (s *syntheticSource) Restore(raw json.RawMessage) error {
	var st syntheticState
	if err := unwrapState("synthetic", raw, &st); err != nil {
		return err
	}
	if st.Row < 0 {
		return fmt.Errorf("train: synthetic data state: negative row %d", st.Row)
	}
	s.row = st.Row
	return nil
}

func (s *syntheticSource) Close() error { return nil }

// copyBatch returns a deep copy of b (held-out batches are kept for every eval).
func copyBatch(b dbrx.Batch) dbrx.Batch {
	return dbrx.Batch{B: b.B, T: b.T, IDs: append([]int(nil), b.IDs...), Targets: append([]int(nil), b.Targets...)}
}
