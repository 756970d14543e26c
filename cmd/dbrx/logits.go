package main

import (
	"context"
	"fmt"

	"github.com/dbrx-engine/dbrx/internal/atomicfile"
	"github.com/dbrx-engine/dbrx/internal/parallel"
	"github.com/dbrx-engine/dbrx/model/dbrx"
	"github.com/dbrx-engine/dbrx/tensor"
)

func init() {
	register(command{name: "logits", summary: "write the logits of every position as raw float32", run: runLogits})
}

func runLogits(ctx context.Context, e env, args []string) error {
	fs := newFlags("logits", e)
	modelDir := fs.String("model", "", "model directory (HF checkpoint)")
	idsFlag := fs.String("ids", "", "comma-separated token ids")
	out := fs.String("out", "", "output file: little-endian float32 [T, vocab_size], no header")
	threads := fs.Int("threads", 0, "worker threads (0 = all cores)")
	if _, err := parseFlags(fs, args); err != nil {
		return err
	}
	if *modelDir == "" || *out == "" {
		return fmt.Errorf("%w: --model, --ids and --out are required", errUsage)
	}
	ids, err := parseIDs(*idsFlag)
	if err != nil {
		return err
	}
	m, err := dbrx.Load(*modelDir)
	if err != nil {
		return err
	}
	defer m.Close()
	pool := parallel.New(*threads)
	defer pool.Close()
	cache := m.NewKVCache(len(ids), len(ids))
	logits, err := m.Forward(dbrx.NewWorkspace(pool), []dbrx.Step{{Cache: cache, IDs: ids, AllLogits: true}})
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(*out, tensor.Float32Bytes(logits))
}
