package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

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
	return writeFileAtomic(*out, tensor.Float32Bytes(logits))
}

// writeFileAtomic writes data to a temp file beside path, fsyncs and renames it.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	if _, err = f.Write(data); err == nil {
		err = f.Chmod(0o644) // CreateTemp makes 0600; outputs are ordinary files
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
