package atomicfile

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// entries returns the names in dir.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

// onlyEntry fails unless dir holds exactly the file name (no temporary left over).
func onlyEntry(t *testing.T, dir, name string) {
	t.Helper()
	if got := entries(t, dir); len(got) != 1 || got[0] != name {
		t.Fatalf("directory holds %q, want just %q", got, name)
	}
}

func readString(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestCommitWritesContent(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "out.bin")
	f, err := Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if f.Path() != p {
		t.Errorf("Path() = %q, want %q", f.Path(), p)
	}
	bw := bufio.NewWriter(f)
	bw.WriteString("XXXX")
	bw.WriteString(" payload")
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("path exists before Commit: %v", err)
	}
	names := entries(t, dir)
	if len(names) != 1 || !strings.HasPrefix(names[0], ".out.bin.tmp-") {
		t.Fatalf("before Commit the directory holds %q, want one .out.bin.tmp-*", names)
	}
	if _, err := f.WriteAt([]byte("HEAD"), 0); err != nil { // header rewrite, as shards and GGUF do
		t.Fatal(err)
	}
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	if got := readString(t, p); got != "HEAD payload" {
		t.Errorf("content %q, want %q", got, "HEAD payload")
	}
	onlyEntry(t, dir, "out.bin")
	if runtime.GOOS != "windows" {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != Perm {
			t.Errorf("mode %v, want %v", st.Mode().Perm(), Perm)
		}
	}
	if err := f.Abort(); err != nil { // no-op after Commit
		t.Errorf("Abort after Commit: %v", err)
	}
	if got := readString(t, p); got != "HEAD payload" {
		t.Errorf("Abort after Commit changed the file to %q", got)
	}
	if err := f.Commit(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("second Commit: %v, want os.ErrClosed", err)
	}
	if _, err := f.Write([]byte("x")); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Write after Commit: %v, want os.ErrClosed", err)
	}
}

func TestAbortLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "out.bin")
	f, err := Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("partial")); err != nil {
		t.Fatal(err)
	}
	if err := f.Abort(); err != nil {
		t.Fatal(err)
	}
	if err := f.Abort(); err != nil {
		t.Fatalf("second Abort: %v", err)
	}
	if got := entries(t, dir); len(got) != 0 {
		t.Fatalf("after Abort the directory holds %q, want nothing", got)
	}
	if err := f.Commit(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Commit after Abort: %v, want os.ErrClosed", err)
	}
	if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Commit after Abort created the file: %v", err)
	}
}

func TestCommitAfterWriteErrorKeepsOldFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "keep.json")
	if err := os.WriteFile(p, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("new content")); err != nil {
		t.Fatal(err)
	}
	_, werr := f.WriteAt([]byte("x"), -1) // the OS rejects a negative offset
	if werr == nil {
		t.Fatal("WriteAt at offset -1 succeeded")
	}
	f.Write([]byte("more")) // later writes that succeed do not clear the error
	err = f.Commit()
	var ae *Error
	if !errors.As(err, &ae) || ae.Op != "write" || ae.Path != p || !errors.Is(err, werr) {
		t.Fatalf("Commit = %v, want a write *Error for %s wrapping %v", err, p, werr)
	}
	if got := readString(t, p); got != "old" {
		t.Errorf("old file became %q", got)
	}
	onlyEntry(t, dir, "keep.json")
}

func TestReplaceExisting(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "config.json")
	if err := os.WriteFile(p, []byte("old, longer than the new one"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := Create(p)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("new"))
	if got := readString(t, p); got != "old, longer than the new one" { // untouched until Commit
		t.Fatalf("before Commit the file reads %q", got)
	}
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	if got := readString(t, p); got != "new" {
		t.Errorf("content %q, want %q", got, "new")
	}
	onlyEntry(t, dir, "config.json")

	if err := WriteFile(p, []byte("third")); err != nil {
		t.Fatal(err)
	}
	if got := readString(t, p); got != "third" {
		t.Errorf("WriteFile: content %q, want %q", got, "third")
	}
	onlyEntry(t, dir, "config.json")
	if runtime.GOOS != "windows" {
		if st, _ := os.Stat(p); st.Mode().Perm() != Perm {
			t.Errorf("WriteFile over a 0600 file: mode %v, want %v", st.Mode().Perm(), Perm)
		}
	}
}

func TestErrorsNamePath(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "no-such-dir", "out.bin")
	for name, err := range map[string]error{
		"Create":    func() error { _, err := Create(missing); return err }(),
		"WriteFile": WriteFile(missing, []byte("x")),
	} {
		var ae *Error
		if !errors.As(err, &ae) || ae.Op != "create" || !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s into a missing directory: %v, want a create *Error matching os.ErrNotExist", name, err)
			continue
		}
		if msg := err.Error(); !strings.HasPrefix(msg, "atomicfile: ") || !strings.Contains(msg, missing) {
			t.Errorf("%s: message %q does not start with atomicfile: and name %s", name, msg, missing)
		}
	}

	// Renaming over a directory fails: the error names the path and the rename step.
	target := filepath.Join(dir, "taken")
	if err := os.Mkdir(target, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(target, "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	err := WriteFile(target, []byte("x"))
	var ae *Error
	if !errors.As(err, &ae) || ae.Op != "rename" || !strings.Contains(err.Error(), target) {
		t.Fatalf("WriteFile over a directory: %v, want a rename *Error naming %s", err, target)
	}
	if got := entries(t, dir); len(got) != 1 || got[0] != "taken" {
		t.Errorf("after a failed rename the directory holds %q, want just the directory", got)
	}
}

func TestSyncDir(t *testing.T) {
	if err := SyncDir(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" {
		if err := SyncDir(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("SyncDir of a missing directory: %v, want os.ErrNotExist", err)
		}
	}
}
