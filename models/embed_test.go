package models

import (
	"os"
	"path/filepath"
	"testing"
)

// TestDefaultExtracts checks the shipped model extracts once, completely, and is
// reused on the next call.
func TestDefaultExtracts(t *testing.T) {
	cache := t.TempDir()
	dir, err := Default(cache)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("extracted model lacks %s: %v", f, err)
		}
	}
	again, err := Default(cache)
	if err != nil || again != dir {
		t.Errorf("second call: %q, %v; want %q", again, err, dir)
	}
	// A damaged extraction (wrong size) is replaced.
	if err := os.Truncate(filepath.Join(dir, "model.safetensors"), 10); err != nil {
		t.Fatal(err)
	}
	if complete(dir) {
		t.Error("truncated extraction counted as complete")
	}
	if again, err = Default(cache); err != nil || again != dir || !complete(dir) {
		t.Errorf("re-extraction: %q, %v", again, err)
	}
}
