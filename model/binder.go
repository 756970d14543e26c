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
// remembers what was used so Finish can report leftovers. Weights may be F32, BF16,
// F16 or one of the ggml block types (Q8_0, Q4_0, Q5_0, Q4_K, Q5_K, Q6_K), whose
// data is rows of the innermost dimension, RowBytes each.
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
	case tensor.Q8_0, tensor.Q4_0, tensor.Q5_0, tensor.Q4_K, tensor.Q5_K, tensor.Q6_K:
	default:
		b.err.Mismatched = append(b.err.Mismatched, fmt.Sprintf("%s: dtype %s is not a weight type (F32, BF16, F16, Q8_0, Q4_0, Q5_0, Q4_K, Q5_K, Q6_K)", name, t.DType))
		return weights.Tensor{}, false
	}
	// Storage is rows of the innermost dimension; block types need whole blocks per row.
	inner, rows := 1, 1
	if len(shape) > 0 {
		inner = shape[len(shape)-1]
		rows = int(tensor.Shape(shape[:len(shape)-1]).NumElements())
	}
	rb, err := t.DType.RowBytes(inner)
	if err != nil {
		b.err.Mismatched = append(b.err.Mismatched, fmt.Sprintf("%s: %v", name, err))
		return weights.Tensor{}, false
	}
	if n := int64(rows) * int64(rb); int64(len(t.Data)) != n {
		b.err.Mismatched = append(b.err.Mismatched, fmt.Sprintf("%s: %d data bytes, want %d", name, len(t.Data), n))
		return weights.Tensor{}, false
	}
	return t, true
}

// Has reports whether the source holds name, without marking it used (to choose
// between alternative spellings of a weight, e.g. a transposed GGUF orientation).
func (b *Binder) Has(name string) bool {
	_, ok := b.src.Tensor(name)
	return ok
}

// Mat binds a 2-D weight [rows, cols] as a zero-copy matrix (bf16 stays bf16; a
// block-quantized weight stays quantized, each row cols/BlockSize whole blocks).
func (b *Binder) Mat(name string, rows, cols int) kernel.Mat {
	t, ok := b.get(name, rows, cols)
	if !ok {
		return kernel.Mat{}
	}
	return kernel.Mat{DType: t.DType, Rows: rows, Cols: cols, Data: t.Data}
}

// FloatMat is Mat for a weight that must be F32, BF16 or F16 (one used as x·w, for
// which there is no block-quantized kernel).
func (b *Binder) FloatMat(name string, rows, cols int) kernel.Mat {
	m := b.Mat(name, rows, cols)
	if m.IsQuantized() {
		b.err.Mismatched = append(b.err.Mismatched, fmt.Sprintf("%s: dtype %s: this weight must be F32, BF16 or F16", name, m.DType))
		return kernel.Mat{}
	}
	return m
}

// Vec binds a 1-D weight [n], widened (or dequantized) to a float32 copy (norm
// weights are tiny).
func (b *Binder) Vec(name string, n int) []float32 {
	t, ok := b.get(name, n)
	if !ok {
		return nil
	}
	out := make([]float32, n)
	kernel.Mat{DType: t.DType, Rows: 1, Cols: n, Data: t.Data}.DecodeRow(out, 0)
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
