// Package atomicfile writes files so that a crash or an error never leaves a partial
// file behind: readers of the path see either the old file (or no file) or the complete
// new one, never anything in between.
//
// A File is built under a temporary name in the destination's own directory
// ("." + base + ".tmp-*", so the final rename never crosses a file system). Commit
// fsyncs it, sets its permissions to 0644 (what os.WriteFile gives under the usual
// umask; os.CreateTemp makes 0600), closes it, renames it over the path and, except on
// Windows, which cannot, fsyncs the directory so that the rename itself is durable.
// Abort, or any failure before the rename, removes the temporary file and leaves the
// path untouched.
//
// Errors are *Error values naming the final path and the step that failed.
package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
)

// Perm is the permission of every committed file.
const Perm os.FileMode = 0o644

// Error reports the step of an atomic write that failed. Err is the underlying error
// (os.ErrClosed for a File used after Commit or Abort).
type Error struct {
	Op   string // "create", "write", "fsync", "chmod", "close", "rename", "fsync directory", "remove", "commit"
	Path string // the final path (not the temporary name, which Err usually names)
	Err  error
}

func (e *Error) Error() string { return "atomicfile: " + e.Path + ": " + e.Op + ": " + e.Err.Error() }

func (e *Error) Unwrap() error { return e.Err }

// File is a file being written under a temporary name; it appears at its path only
// when Commit succeeds. Writes are unbuffered (wrap a File in a bufio.Writer and flush
// it before Commit). The first write error is remembered and reported again by
// Commit, which then discards the file. A File is not safe for concurrent use.
type File struct {
	path string
	f    *os.File // nil once committed or aborted
	err  error    // first write error
}

// Create starts a new file that will replace path when committed. The directory of
// path must exist.
func Create(path string) (*File, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, &Error{Op: "create", Path: path, Err: err}
	}
	return &File{path: path, f: f}, nil
}

// Path returns the path the file will have once committed.
func (f *File) Path() string { return f.path }

// Write appends p to the file (io.Writer).
func (f *File) Write(p []byte) (int, error) {
	if f.f == nil {
		return 0, &Error{Op: "write", Path: f.path, Err: os.ErrClosed}
	}
	n, err := f.f.Write(p)
	if err != nil && f.err == nil {
		f.err = err
	}
	return n, err
}

// WriteAt writes p at offset off (io.WriterAt), e.g. to fill in a header whose
// contents are known only at the end.
func (f *File) WriteAt(p []byte, off int64) (int, error) {
	if f.f == nil {
		return 0, &Error{Op: "write", Path: f.path, Err: os.ErrClosed}
	}
	n, err := f.f.WriteAt(p, off)
	if err != nil && f.err == nil {
		f.err = err
	}
	return n, err
}

// Commit makes the written bytes appear at the path: fsync, chmod 0644, close, rename
// over any existing file, fsync of the directory. If a write failed earlier, or any
// step before the rename fails, the temporary file is removed, the path is left as it
// was and the error is returned. An error from the final directory fsync means the
// new file is in place but its rename may not survive a crash. Commit after Commit or
// Abort returns an error matching os.ErrClosed.
func (f *File) Commit() error {
	if f.f == nil {
		return &Error{Op: "commit", Path: f.path, Err: os.ErrClosed}
	}
	tmp := f.f.Name()
	op, err := "write", f.err
	if err == nil {
		op, err = "chmod", f.f.Chmod(Perm)
	}
	if err == nil {
		op, err = "fsync", f.f.Sync()
	}
	if err == nil {
		// The written pages sit in the page cache as small folios, which later
		// mappings of the file (a model's weights, mapped by internal/mmap) would
		// keep using. Once the data is on disk they are clean; dropping them lets
		// the first reader bring the file back in 2 MiB folios, which stream
		// faster. Only an optimisation, so a refusal is ignored.
		_ = dropCache(f.f)
	}
	if cerr := f.f.Close(); err == nil {
		op, err = "close", cerr
	}
	f.f = nil
	if err == nil {
		op, err = "rename", os.Rename(tmp, f.path)
	}
	if err != nil {
		os.Remove(tmp)
		return &Error{Op: op, Path: f.path, Err: err}
	}
	if err := SyncDir(filepath.Dir(f.path)); err != nil {
		return &Error{Op: "fsync directory", Path: f.path, Err: err}
	}
	return nil
}

// Abort discards the file: it closes and removes the temporary file and leaves the
// path untouched. It does nothing after Commit or a previous Abort, so
// `defer f.Abort()` is safe. The error, if any, is from removing the temporary file.
func (f *File) Abort() error {
	if f.f == nil {
		return nil
	}
	tmp := f.f.Name()
	f.f.Close()
	f.f = nil
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return &Error{Op: "remove", Path: f.path, Err: err}
	}
	return nil
}

// WriteFile writes data to path atomically, replacing any existing file, with
// permissions 0644.
func WriteFile(path string, data []byte) error {
	f, err := Create(path)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Abort()
		return &Error{Op: "write", Path: path, Err: err}
	}
	return f.Commit()
}

// SyncDir fsyncs directory dir so that renames and creations in it are durable. On
// Windows, which cannot fsync a directory, it does nothing.
func SyncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
