package weights

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/dbrx-engine/dbrx/gguf"
	"github.com/dbrx-engine/dbrx/tensor"
)

// TransposedSuffix marks a tensor that a GGUF file stores transposed relative to
// the Hugging Face checkpoint. DBRX's expert down projection is the one case:
// HF w2 is [E·F, D] and is used untransposed (h·W2_e), while llama.cpp's
// ffn_down_exps (ne {F, D, E}) holds per expert the [D, F] matrix used as x·Wᵀ and
// is quantized along F. A GGUF Source exposes it as
//
//	transformer.blocks.{i}.ffn.experts.mlp.w2.T   [E·D, F] (expert e = rows e·D…)
//
// rather than under the HF name, so that a binder cannot mistake one orientation
// for the other; model/dbrx binds whichever of the two spellings the source has.
const TransposedSuffix = ".T"

// GGUF is a Source over a llama.cpp GGUF file of a DBRX model (general.architecture
// "dbrx"), read through mmap. Tensors are exposed under their Hugging Face names
// with Hugging Face shapes, in the file's ggml types (tensor.F32/F16/BF16 and the
// block types Q8_0, Q4_0, Q5_0, Q4_K, Q5_K, Q6_K), as zero-copy views:
//
//   - a 2-D ggml tensor with ne {C, R} is [R, C] (PyTorch order);
//   - the 3-D expert tensors ne {C, R, E} are flattened to [E·R, C]: ffn_gate_exps
//     and ffn_up_exps become w1 and v1 [E·F, D] exactly as in the HF checkpoint,
//     ffn_down_exps becomes w2.T [E·D, F] (see TransposedSuffix);
//   - a tensor whose name has no DBRX mapping keeps its GGUF name (a strict binder
//     then reports it as unexpected).
//
// The file's metadata is reachable through the Meta* methods.
type GGUF struct {
	f      *gguf.File
	path   string
	names  []string
	byName map[string]ggufTensor
}

type ggufTensor struct {
	file  string // the tensor's name in the file
	dtype tensor.DType
	shape tensor.Shape
}

// OpenGGUF maps a GGUF file and indexes its tensors under their HF names. It fails
// with a message naming the file if the file is not GGUF, its architecture is not
// "dbrx", or a tensor is in a ggml type the engine cannot compute with (Q4_1, Q2_K,
// the IQ formats, ...).
func OpenGGUF(path string) (*GGUF, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("weights: %w", err)
	}
	g, err := newGGUF(path, f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return g, nil
}

func newGGUF(path string, f *gguf.File) (*GGUF, error) {
	arch, err := f.GetString(gguf.KeyArchitecture)
	if err != nil {
		return nil, fmt.Errorf("weights: %w", err)
	}
	if arch != gguf.DBRXArch {
		return nil, fmt.Errorf("weights: %s: GGUF architecture %q is not supported (only %q)", path, arch, gguf.DBRXArch)
	}
	g := &GGUF{f: f, path: path, byName: make(map[string]ggufTensor, len(f.Tensors()))}
	var unsupported []string
	for _, ti := range f.Tensors() {
		dt, ok := ti.Type.DType()
		if !ok {
			unsupported = append(unsupported, fmt.Sprintf("%s (%s)", ti.Name, ti.Type))
			continue
		}
		name, ok := gguf.DBRXHFName(ti.Name)
		switch {
		case !ok:
			name = ti.Name
		case strings.HasSuffix(ti.Name, ".ffn_down_exps.weight"):
			name += TransposedSuffix
		}
		shape := ti.Shape()
		if len(shape) > 2 { // [E, R, C] -> [E·R, C]
			rows := 1
			for _, d := range shape[:len(shape)-1] {
				rows *= d
			}
			shape = tensor.Shape{rows, shape[len(shape)-1]}
		}
		if _, dup := g.byName[name]; dup {
			return nil, fmt.Errorf("weights: %s: two tensors map to %q", path, name)
		}
		g.byName[name] = ggufTensor{file: ti.Name, dtype: dt, shape: shape}
		g.names = append(g.names, name)
	}
	if len(unsupported) > 0 {
		const show = 5
		more := ""
		if len(unsupported) > show {
			more = fmt.Sprintf(" and %d more", len(unsupported)-show)
			unsupported = unsupported[:show]
		}
		return nil, fmt.Errorf("weights: %s: tensor types this engine cannot compute with: %s%s (supported: f32, f16, bf16, q8_0, q4_0, q5_0, q4_K, q5_K, q6_K)",
			path, strings.Join(unsupported, ", "), more)
	}
	sort.Strings(g.names)
	return g, nil
}

// Names implements Source (HF names, sorted).
func (g *GGUF) Names() []string { return g.names }

// Tensor implements Source: a zero-copy view of the tensor's bytes in the file.
func (g *GGUF) Tensor(name string) (Tensor, bool) {
	t, ok := g.byName[name]
	if !ok {
		return Tensor{}, false
	}
	data, _, ok := g.f.TensorData(t.file)
	if !ok {
		return Tensor{}, false
	}
	return Tensor{Name: name, DType: t.dtype, Shape: t.shape, Data: data}, true
}

// Close implements Source: it unmaps the file.
func (g *GGUF) Close() error { return g.f.Close() }

// Path returns the path the file was opened from.
func (g *GGUF) Path() string { return g.path }

// FileName returns the GGUF tensor name behind an exposed name, also for names the
// file lacks (for error messages about missing tensors); false if the name has no
// DBRX mapping.
func (g *GGUF) FileName(name string) (string, bool) {
	if t, ok := g.byName[name]; ok {
		return t.file, true
	}
	return gguf.DBRXGGUFName(strings.TrimSuffix(name, TransposedSuffix))
}

// HasMeta reports whether the file has the metadata key.
func (g *GGUF) HasMeta(key string) bool { _, ok := g.f.Lookup(key); return ok }

// MetaString returns a string metadata value.
func (g *GGUF) MetaString(key string) (string, error) { return wrapMeta(g.f.GetString(key)) }

// MetaUint returns a non-negative integer metadata value of any integer type.
func (g *GGUF) MetaUint(key string) (uint64, error) { return wrapMeta(g.f.GetUint64(key)) }

// MetaFloat returns a float32 (widened exactly) or float64 metadata value.
func (g *GGUF) MetaFloat(key string) (float64, error) { return wrapMeta(g.f.GetFloat64(key)) }

// MetaBool returns a bool metadata value.
func (g *GGUF) MetaBool(key string) (bool, error) { return wrapMeta(g.f.GetBool(key)) }

// MetaStrings returns a string-array metadata value (e.g. tokenizer.ggml.tokens).
func (g *GGUF) MetaStrings(key string) ([]string, error) {
	return wrapMeta(gguf.GetArrayOf[string](g.f, key))
}

// ErrNoMeta is wrapped by the Meta* errors for an absent key.
var ErrNoMeta = gguf.ErrNotFound

func wrapMeta[T any](v T, err error) (T, error) {
	if err != nil {
		return v, fmt.Errorf("weights: %w", err)
	}
	return v, nil
}

// IsGGUF reports whether path is a file that starts with the GGUF magic.
func IsGGUF(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var b [len(gguf.Magic)]byte
	_, err = io.ReadFull(f, b[:])
	return err == nil && string(b[:]) == gguf.Magic
}

var _ Source = (*GGUF)(nil)
