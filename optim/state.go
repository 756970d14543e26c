package optim

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// State tensor names are Prefix + parameter name; the scalars are JSON under MetaKey.
const (
	ExpAvgPrefix   = "exp_avg."    // first moment (AdamW, LionW)
	ExpAvgSqPrefix = "exp_avg_sq." // second moment (AdamW)
	MetaKey        = "optim"       // metadata key of the JSON scalars
)

// stateMeta is the JSON stored under MetaKey.
type stateMeta struct {
	Kind        string   `json:"kind"` // "adamw" or "lionw"
	Step        int      `json:"step"`
	Beta1       float64  `json:"beta1"`
	Beta2       float64  `json:"beta2"`
	Eps         *float64 `json:"eps,omitempty"`
	WeightDecay float64  `json:"weight_decay"`
}

// State returns the optimizer state: one [n] float32 tensor per parameter and moment
// (ExpAvgPrefix+name, ExpAvgSqPrefix+name) and metadata {MetaKey: JSON with the kind,
// step count and hyper-parameters}, ready to be written as a safetensors file. The
// slices alias the optimizer's buffers: write them out before the next Step.
func (o *AdamW) State() (tensors map[string][]float32, meta map[string]string) {
	eps := o.cfg.Eps
	return o.export(stateMeta{Kind: "adamw", Step: o.steps, Beta1: o.cfg.Beta1, Beta2: o.cfg.Beta2, Eps: &eps, WeightDecay: o.cfg.WeightDecay})
}

// LoadState replaces the optimizer state with one saved by State, copying the
// tensors (the caller may release them afterwards). Every parameter in params must
// have its moments, of its length, unless the saved step count is 0; moments of
// parameters not in params are an error too (a renamed or dropped parameter).
// Tensors whose names have neither prefix are ignored. The hyper-parameters in meta
// are informational: the optimizer keeps its own Config. On error the optimizer is
// unchanged.
func (o *AdamW) LoadState(params []Param, tensors map[string][]float32, meta map[string]string) error {
	return o.load("adamw", params, tensors, meta)
}

// State is AdamW.State for Lion: only ExpAvgPrefix tensors.
func (o *LionW) State() (tensors map[string][]float32, meta map[string]string) {
	return o.export(stateMeta{Kind: "lionw", Step: o.steps, Beta1: o.cfg.Beta1, Beta2: o.cfg.Beta2, WeightDecay: o.cfg.WeightDecay})
}

// LoadState is AdamW.LoadState for Lion.
func (o *LionW) LoadState(params []Param, tensors map[string][]float32, meta map[string]string) error {
	return o.load("lionw", params, tensors, meta)
}

func (e *engine) export(m stateMeta) (map[string][]float32, map[string]string) {
	t := make(map[string][]float32, len(e.state)*2)
	for name, s := range e.state {
		t[ExpAvgPrefix+name] = s.m
		if e.twoM {
			t[ExpAvgSqPrefix+name] = s.v
		}
	}
	b, err := json.Marshal(m)
	if err != nil { // only plain fields: cannot happen
		panic(err)
	}
	return t, map[string]string{MetaKey: string(b)}
}

func (e *engine) load(kind string, params []Param, tensors map[string][]float32, meta map[string]string) error {
	raw, ok := meta[MetaKey]
	if !ok {
		return fmt.Errorf("%w: metadata has no %q entry", ErrState, MetaKey)
	}
	var m stateMeta
	dec := json.NewDecoder(strings.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return fmt.Errorf("%w: metadata %q: %v", ErrState, MetaKey, err)
	}
	if m.Kind != kind {
		return fmt.Errorf("%w: state of optimizer %q, want %q", ErrState, m.Kind, kind)
	}
	if m.Step < 0 {
		return fmt.Errorf("%w: negative step count %d", ErrState, m.Step)
	}
	prefixes := []string{ExpAvgPrefix}
	if e.twoM {
		prefixes = append(prefixes, ExpAvgSqPrefix)
	}
	want := make(map[string]int, len(params))
	for i, p := range params {
		if p.Name == "" {
			return fmt.Errorf("%w: param %d has no name", ErrParam, i)
		}
		if _, dup := want[p.Name]; dup {
			return fmt.Errorf("%w: duplicate name %q", ErrParam, p.Name)
		}
		want[p.Name] = len(p.W)
	}
	// Foreign moments: names with an optimizer prefix that belong to no parameter.
	var extra []string
	for name := range tensors {
		var pname string
		switch {
		case strings.HasPrefix(name, ExpAvgSqPrefix):
			if !e.twoM {
				extra = append(extra, name)
				continue
			}
			pname = name[len(ExpAvgSqPrefix):]
		case strings.HasPrefix(name, ExpAvgPrefix):
			pname = name[len(ExpAvgPrefix):]
		default:
			continue
		}
		if _, ok := want[pname]; !ok {
			extra = append(extra, name)
		}
	}
	if len(extra) > 0 {
		sort.Strings(extra)
		return fmt.Errorf("%w: %d state tensors match no parameter, first %q", ErrState, len(extra), extra[0])
	}
	state := make(map[string]*slot, len(params))
	for _, p := range params {
		n := want[p.Name]
		var bufs [2][]float32
		present := 0
		for k, pre := range prefixes {
			t, ok := tensors[pre+p.Name]
			if !ok {
				continue
			}
			present++
			if len(t) != n {
				return fmt.Errorf("%w: %q has %d elements, parameter has %d", ErrState, pre+p.Name, len(t), n)
			}
			bufs[k] = t
		}
		switch {
		case present == 0 && m.Step == 0:
			continue // not yet created; Step will allocate zeros
		case present < len(prefixes):
			for _, pre := range prefixes {
				if _, ok := tensors[pre+p.Name]; !ok {
					return fmt.Errorf("%w: missing %q (step %d)", ErrState, pre+p.Name, m.Step)
				}
			}
		}
		s := &slot{m: append([]float32(nil), bufs[0]...)}
		if e.twoM {
			s.v = append([]float32(nil), bufs[1]...)
		}
		state[p.Name] = s
	}
	e.state, e.steps = state, m.Step
	e.names, e.lens, e.offs, e.slots = nil, nil, nil, nil // re-resolve on the next Step
	return nil
}
