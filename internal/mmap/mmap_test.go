package mmap

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

func TestOpenContents(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []int{1, 7, 4096, 4096*3 + 17} {
		want := make([]byte, n)
		for i := range want {
			want[i] = byte(i*7 + 3)
		}
		p := filepath.Join(dir, "f")
		if err := os.WriteFile(p, want, 0o644); err != nil {
			t.Fatal(err)
		}
		r, err := Open(p)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(r.Data(), want) || r.Len() != n {
			t.Fatalf("n=%d: contents differ", n)
		}
		if runtime.GOOS == "linux" && !r.Mapped() {
			t.Errorf("n=%d: not mapped on linux", n)
		}
		if err := r.WillNeed(5, n); err != nil {
			t.Errorf("WillNeed: %v", err)
		}
		if err := r.WillNeed(-3, 10*n); err != nil {
			t.Errorf("WillNeed clipped: %v", err)
		}
		if err := r.Random(); err != nil {
			t.Errorf("Random: %v", err)
		}
		if err := r.Sequential(); err != nil {
			t.Errorf("Sequential: %v", err)
		}
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		if err := r.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		if r.Data() != nil {
			t.Error("Data not nil after Close")
		}
		if err := r.Random(); !errors.Is(err, ErrClosed) {
			t.Errorf("Random after Close: %v, want ErrClosed", err)
		}
	}
}

func TestOpenEmpty(t *testing.T) {
	p := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Data()) != 0 || r.Path() != p {
		t.Fatalf("empty file: len %d path %q", len(r.Data()), r.Path())
	}
	if err := r.WillNeed(0, 10); err != nil {
		t.Error(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v, want fs.ErrNotExist", err)
	}
	if _, err := Open(dir); err == nil {
		t.Error("directory: no error")
	}
}

func BenchmarkOpen(b *testing.B) {
	p := filepath.Join(b.TempDir(), "f")
	if err := os.WriteFile(p, make([]byte, 1<<20), 0o644); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		r, err := Open(p)
		if err != nil {
			b.Fatal(err)
		}
		r.Close()
	}
}
