package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/dbrx-engine/dbrx/internal/atomicfile"
	"github.com/dbrx-engine/dbrx/model/dbrx"
	"github.com/dbrx-engine/dbrx/safetensors"
	"github.com/dbrx-engine/dbrx/tensor"
)

func init() {
	register(command{name: "init", summary: "write a randomly initialised checkpoint of any shape (HF layout)", run: runInit})
}

// maxShardBytes matches transformers' default max_shard_size ("5GB").
const maxShardBytes = 5_000_000_000

func runInit(ctx context.Context, e env, args []string) error {
	fs := newFlags("init", e)
	cfgPath := fs.String("config", "", "config.json to instantiate (HF DbrxConfig; omitted fields take defaults)")
	seed := fs.Uint64("seed", 0, "random seed")
	dtype := fs.String("dtype", "bf16", "weight dtype: bf16 or f32")
	out := fs.String("out", "", "output directory")
	if _, err := parseFlags(fs, args); err != nil {
		return err
	}
	if *cfgPath == "" || *out == "" {
		return fmt.Errorf("%w: --config and --out are required", errUsage)
	}
	var dt tensor.DType
	switch *dtype {
	case "bf16":
		dt = tensor.BF16
	case "f32":
		dt = tensor.F32
	default:
		return fmt.Errorf("%w: --dtype must be bf16 or f32, got %q", errUsage, *dtype)
	}
	raw, err := os.ReadFile(*cfgPath)
	if err != nil {
		return err
	}
	cfg, err := dbrx.ParseConfig(raw)
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		return fmt.Errorf("%s: %w", *cfgPath, err)
	}
	if dt == tensor.BF16 {
		cfg.TorchDtype = "bfloat16"
	} else {
		cfg.TorchDtype = "float32"
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	names, shapes := cfg.ParamShapes()
	// Plan shards the way save_pretrained does: fill each up to the limit in order.
	type shard struct{ idx []int }
	var shards []shard
	var cur int64
	for i, s := range shapes {
		sz := tensor.Shape(s).NumElements() * int64(dt.Size())
		if len(shards) == 0 || (cur+sz > maxShardBytes && cur > 0) {
			shards = append(shards, shard{})
			cur = 0
		}
		shards[len(shards)-1].idx = append(shards[len(shards)-1].idx, i)
		cur += sz
	}
	weightMap := map[string]string{}
	var total int64
	var buf []float32
	var out16 []uint16
	for si, sh := range shards {
		file := "model.safetensors"
		if len(shards) > 1 {
			file = fmt.Sprintf("model-%05d-of-%05d.safetensors", si+1, len(shards))
		}
		decl := make([]safetensors.WriterTensor, len(sh.idx))
		for j, i := range sh.idx {
			decl[j] = safetensors.WriterTensor{Name: names[i], DType: dt, Shape: tensor.Shape(shapes[i])}
		}
		w, err := safetensors.Create(filepath.Join(*out, file), decl, map[string]string{"format": "pt"})
		if err != nil {
			return err
		}
		for _, i := range sh.idx {
			if err := ctx.Err(); err != nil {
				w.Abort()
				return err
			}
			n := int(tensor.Shape(shapes[i]).NumElements())
			buf = growF32(buf, n)
			cfg.InitParam(buf, names[i], i, *seed)
			var data []byte
			if dt == tensor.BF16 {
				if cap(out16) < n {
					out16 = make([]uint16, n)
				}
				out16 = out16[:n]
				for k, v := range buf {
					out16[k] = tensor.F32ToBF16(v)
				}
				data = tensor.Uint16Bytes(out16)
			} else {
				data = tensor.Float32Bytes(buf)
			}
			if err := w.WriteTensor(names[i], data); err != nil {
				w.Abort()
				return err
			}
			weightMap[names[i]] = file
			total += int64(len(data))
		}
		if err := w.Close(); err != nil {
			return err
		}
	}
	if len(shards) > 1 {
		idx, err := json.MarshalIndent(map[string]any{"metadata": map[string]any{"total_size": total}, "weight_map": weightMap}, "", "  ")
		if err != nil {
			return err
		}
		if err := atomicfile.WriteFile(filepath.Join(*out, "model.safetensors.index.json"), append(idx, '\n')); err != nil {
			return err
		}
	}
	cj, err := cfg.Marshal()
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(*out, "config.json"), cj); err != nil {
		return err
	}
	// DBRX's generation EOS ids (<|endoftext|>, <|im_end|>) only exist in a cl100k-sized vocabulary.
	gen := []byte("{\n  \"transformers_version\": \"4.43.4\"\n}\n")
	if cfg.VocabSize > 100279 {
		gen = []byte("{\n  \"eos_token_id\": [100257, 100279],\n  \"transformers_version\": \"4.43.4\"\n}\n")
	}
	if err := atomicfile.WriteFile(filepath.Join(*out, "generation_config.json"), gen); err != nil {
		return err
	}
	params := int64(0)
	for _, s := range shapes {
		params += tensor.Shape(s).NumElements()
	}
	fmt.Fprintf(e.stderr, "wrote %s: %d parameters, %d bytes of %s weights in %d file(s)\n", *out, params, total, dt, len(shards))
	return nil
}

func growF32(b []float32, n int) []float32 {
	if cap(b) < n {
		return make([]float32, n)
	}
	return b[:n]
}
