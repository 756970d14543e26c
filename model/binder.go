// Package model holds what every architecture shares: the weight Binder that attaches
// checkpoint tensors to model fields strictly (missing, unused and mis-shaped tensors
// are all reported together in one error).
package model

import (
	"fmt"
	"sort"
	"strings"

	"github.com/dbrx-engine/dbrx/internal/kernel"
	"github.com/dbrx-engine/dbrx/tensor"
	"github.com/dbrx-engine/dbrx/weights"
)

// BindError lists every problem found while binding a checkpoint to a model.
type BindError struct {
	Missing    []string // expected tensors absent from the checkpoint
	Unexpected []string // checkpoint tensors the model does not use
	Mismatched []string // "name: reason" for wrong shape or dtype
}

func (e *BindError) Error() string {
	var b strings.Builder
	b.WriteString("model: checkpoint does not match the model:")
	list := func(what string, xs []string) {
		if len(xs) == 0 {
			return
		}
		const show = 20
		fmt.Fprintf(&b, "\n  %d %s:", len(xs), what)
		for i, x := range xs {
			if i == show {
				fmt.Fprintf(&b, "\n    ... and %d more", len(xs)-show)
				break
			}
			b.WriteString("\n    " + x)
		}
	}
	list("missing tensors", e.Missing)
	list("unexpected tensors", e.Unexpected)
	list("mismatched tensors", e.Mismatched)
	return b.String()
}

// Binder takes tensors out of a Source by name, checking shape and dtype, and
// remembers what was used so Finish can report leftovers.
type Binder struct {
	src  weights.Source
	used map[string]bool
	err  BindError
}

// NewBinder starts binding against src.
func NewBinder(src weights.Source) *Binder {
	return &Binder{src: src, used: map[string]bool{}}
}

func (b *Binder) get(name string, shape ...int) (weights.Tensor, bool) {
	b.used[name] = true
	t, ok := b.src.Tensor(name)
	if !ok {
		b.err.Missing = append(b.err.Missing, name)
		return weights.Tensor{}, false
	}
	if !t.Shape.Equal(tensor.Shape(shape)) {
		b.err.Mismatched = append(b.err.Mismatched, fmt.Sprintf("%s: shape %v, want %v", name, t.Shape, shape))
		return weights.Tensor{}, false
	}
	switch t.DType {
	case tensor.F32, tensor.BF16, tensor.F16:
	default:
		b.err.Mismatched = append(b.err.Mismatched, fmt.Sprintf("%s: dtype %s is not a float type (F32, BF16, F16)", name, t.DType))
		return weights.Tensor{}, false
	}
	if n := tensor.Shape(shape).NumElements() * int64(t.DType.Size()); int64(len(t.Data)) != n {
		b.err.Mismatched = append(b.err.Mismatched, fmt.Sprintf("%s: %d data bytes, want %d", name, len(t.Data), n))
		return weights.Tensor{}, false
	}
	return t, true
}

// Mat binds a 2-D weight [rows, cols] as a zero-copy matrix (bf16 stays bf16).
func (b *Binder) Mat(name string, rows, cols int) kernel.Mat {
	t, ok := b.get(name, rows, cols)
	if !ok {
		return kernel.Mat{}
	}
	return kernel.Mat{DType: t.DType, Rows: rows, Cols: cols, Data: t.Data}
}

// Vec binds a 1-D weight [n], widened to a float32 copy (norm weights are tiny).
func (b *Binder) Vec(name string, n int) []float32 {
	t, ok := b.get(name, n)
	if !ok {
		return nil
	}
	out := make([]float32, n)
	if err := tensor.ToFloat32(out, t.DType, t.Data); err != nil {
		b.err.Mismatched = append(b.err.Mismatched, name+": "+err.Error())
	}
	return out
}

// Finish reports every missing, unexpected and mismatched tensor together, or nil.
func (b *Binder) Finish() error {
	for _, n := range b.src.Names() {
		if !b.used[n] {
			b.err.Unexpected = append(b.err.Unexpected, n)
		}
	}
	if len(b.err.Missing)+len(b.err.Unexpected)+len(b.err.Mismatched) == 0 {
		return nil
	}
	sort.Strings(b.err.Missing)
	sort.Strings(b.err.Unexpected)
	sort.Strings(b.err.Mismatched)
	e := b.err
	return &e
}
