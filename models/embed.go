// Package models ships the project's own small DBRX model (models/dbrx-tiny, trained
// by this repository's training stack) inside the dbrx binary, so `dbrx run "prompt"`
// works with no download and no --model flag.
package models

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/dbrx-engine/dbrx/internal/atomicfile"
)

//go:embed dbrx-tiny/config.json dbrx-tiny/generation_config.json dbrx-tiny/model.safetensors dbrx-tiny/model.sha256
var tiny embed.FS

// DefaultName is the shipped model's name (its directory in the repository).
const DefaultName = "dbrx-tiny"

var files = []string{"config.json", "generation_config.json", "model.safetensors"}

// Default returns a directory holding the shipped model as an ordinary Hugging Face
// checkpoint, extracting it on first use into cacheDir/dbrx/dbrx-tiny-<sha256 prefix>
// (cacheDir "" means os.UserCacheDir, falling back to the temp dir). Extraction is
// atomic: each file is written and fsynced inside a temp directory (internal/atomicfile),
// which is renamed into place, so concurrent first runs are safe.
func Default(cacheDir string) (string, error) {
	sum, err := tiny.ReadFile("dbrx-tiny/model.sha256")
	if err != nil {
		return "", fmt.Errorf("models: %w", err)
	}
	hash := strings.Fields(string(sum))
	if len(hash) == 0 || len(hash[0]) < 16 {
		return "", errors.New("models: dbrx-tiny/model.sha256 is malformed")
	}
	if cacheDir == "" {
		if cacheDir, err = os.UserCacheDir(); err != nil {
			cacheDir = os.TempDir()
		}
	}
	dir := filepath.Join(cacheDir, "dbrx", DefaultName+"-"+hash[0][:16])
	if complete(dir) {
		return dir, nil
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", fmt.Errorf("models: %w", err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".extract-*")
	if err != nil {
		return "", fmt.Errorf("models: %w", err)
	}
	defer os.RemoveAll(tmp)
	for _, name := range files {
		b, err := tiny.ReadFile("dbrx-tiny/" + name)
		if err != nil {
			return "", fmt.Errorf("models: %w", err)
		}
		if name == "model.safetensors" {
			got := sha256.Sum256(b)
			if hex.EncodeToString(got[:]) != hash[0] {
				return "", errors.New("models: embedded model.safetensors does not match model.sha256")
			}
		}
		if err := atomicfile.WriteFile(filepath.Join(tmp, name), b); err != nil {
			return "", fmt.Errorf("models: %w", err)
		}
	}
	os.RemoveAll(dir) // a damaged earlier extraction (complete said no)
	if err := os.Rename(tmp, dir); err != nil {
		if complete(dir) { // another process won the race
			return dir, nil
		}
		return "", fmt.Errorf("models: %w", err)
	}
	// Make the rename durable. Best effort: the directory is complete and usable either
	// way, and an extraction a crash loses is redone by the next call (complete says no).
	atomicfile.SyncDir(filepath.Dir(dir))
	return dir, nil
}

func complete(dir string) bool {
	for _, name := range files {
		want, err := fs.Stat(tiny, "dbrx-tiny/"+name)
		if err != nil {
			return false
		}
		got, err := os.Stat(filepath.Join(dir, name))
		if err != nil || got.Size() != want.Size() {
			return false
		}
	}
	return true
}
