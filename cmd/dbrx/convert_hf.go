package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/dbrx-engine/dbrx/internal/atomicfile"
	"github.com/dbrx-engine/dbrx/model/dbrx"
	"github.com/dbrx-engine/dbrx/safetensors"
	"github.com/dbrx-engine/dbrx/tensor"
)

// convertToHF rewrites a Hugging Face DBRX checkpoint in another float dtype (for
// example a float32 training checkpoint as a bf16 release), tensor by tensor, into a
// single model.safetensors with the same names and shapes.
func convertToHF(ctx context.Context, e env, from, to, typ string) error {
	var dt tensor.DType
	var torch string
	switch typ {
	case "f32":
		dt, torch = tensor.F32, "float32"
	case "f16":
		dt, torch = tensor.F16, "float16"
	case "bf16":
		dt, torch = tensor.BF16, "bfloat16"
	default:
		return fmt.Errorf("%w: --type %q cannot be written as a Hugging Face checkpoint (f32, f16, bf16; use a .gguf output for quantized types)", errUsage, typ)
	}
	cfg, err := dbrx.LoadConfig(from)
	if err != nil {
		return err
	}
	src, err := safetensors.OpenDir(from)
	if err != nil {
		return err
	}
	defer src.Close()
	// Bind first so a wrong checkpoint fails before anything is written.
	if m, err := dbrx.Load(from); err != nil {
		return err
	} else {
		m.Close()
	}
	names, _ := cfg.ParamShapes()
	decl := make([]safetensors.WriterTensor, len(names))
	for i, n := range names {
		info, _ := src.Info(n)
		decl[i] = safetensors.WriterTensor{Name: n, DType: dt, Shape: info.Shape}
	}
	if err := os.MkdirAll(to, 0o755); err != nil {
		return err
	}
	w, err := safetensors.Create(filepath.Join(to, "model.safetensors"), decl, map[string]string{"format": "pt"})
	if err != nil {
		return err
	}
	var f32 []float32
	var out []byte
	var total int64
	for i, n := range names {
		if err := ctx.Err(); err != nil {
			w.Abort()
			return err
		}
		t, _ := src.Tensor(n)
		numel := int(decl[i].Shape.NumElements())
		f32 = growF32(f32, numel)
		if err := tensor.ToFloat32(f32, t.DType, t.Data); err != nil {
			w.Abort()
			return fmt.Errorf("%s: %w", n, err)
		}
		out = out[:0]
		switch dt {
		case tensor.F32:
			out = append(out, tensor.Float32Bytes(f32)...)
		default:
			for _, v := range f32 {
				var h uint16
				if dt == tensor.BF16 {
					h = tensor.F32ToBF16(v)
				} else {
					h = tensor.F32ToF16(v)
				}
				out = append(out, byte(h), byte(h>>8))
			}
		}
		if err := w.WriteTensor(n, out); err != nil {
			w.Abort()
			return err
		}
		total += int64(len(out))
	}
	if err := w.Close(); err != nil {
		return err
	}
	cfg.TorchDtype = torch
	cj, err := cfg.Marshal()
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(to, "config.json"), cj); err != nil {
		return err
	}
	if g, err := os.ReadFile(filepath.Join(from, "generation_config.json")); err == nil {
		if err := atomicfile.WriteFile(filepath.Join(to, "generation_config.json"), g); err != nil {
			return err
		}
	}
	fmt.Fprintf(e.stderr, "wrote %s: %d tensors, %d bytes of %s\n", to, len(names), total, dt)
	return nil
}
