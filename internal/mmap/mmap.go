// Package mmap maps whole files read-only into memory.
//
// On Linux and the BSDs (including macOS) Open uses mmap(2) with PROT_READ and
// MAP_SHARED, so the returned bytes are backed by the page cache and cost no heap;
// elsewhere it falls back to reading the file into memory. Either way the caller sees
// a Region whose Data is the whole file.
//
// The mapping is read-only: writing to Data faults (SIGSEGV) on the mmap path. If the
// underlying file is truncated by another process while it is mapped, touching the lost
// pages raises SIGBUS; files that are read through a Region must not be modified in
// place (write a new file and rename it over the old one instead, which is safe).
package mmap

import (
	"errors"
	"fmt"
	"os"
)

// ErrClosed is returned by operations on a Region that has been closed.
var ErrClosed = errors.New("mmap: region is closed")

// Region is a read-only view of a whole file.
type Region struct {
	path   string
	data   []byte // whole file; nil for an empty file or after Close
	mapped bool   // data came from mmap and must be unmapped
	closed bool
}

// Open maps the whole regular file at path read-only. An empty file yields a Region
// with empty Data.
func Open(path string) (*Region, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("mmap: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("mmap: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("mmap: %s: not a regular file (mode %s)", path, fi.Mode())
	}
	size := fi.Size()
	if size == 0 {
		return &Region{path: path}, nil
	}
	if int64(int(size)) != size || size < 0 {
		return nil, fmt.Errorf("mmap: %s: file size %d does not fit in memory on this platform", path, size)
	}
	data, mapped, err := mapFile(f, int(size))
	if err != nil {
		return nil, fmt.Errorf("mmap: %s: %w", path, err)
	}
	if mapped {
		// Weights are read in long sweeps. Asking for transparent huge pages before the
		// first fault lets a file that is not yet cached come in as 2 MiB page-cache
		// folios, each mapped by one TLB entry (a one-core scan of the 1.1 GB BENCH
		// checkpoint: 9.6 GB/s in 4 KiB pages, 12.3 in 2 MiB). Only a hint: kernels
		// without THP refuse it, and pages already cached keep their size (which is
		// why atomicfile drops the cache of the files it writes).
		_ = madvise(data, adviceHugePage)
	}
	return &Region{path: path, data: data, mapped: mapped}, nil
}

// Path returns the path the Region was opened from.
func (r *Region) Path() string { return r.path }

// Data returns the file contents. The slice must not be written to and must not be
// used after Close.
func (r *Region) Data() []byte { return r.data }

// Len returns the size of the file in bytes.
func (r *Region) Len() int { return len(r.data) }

// Mapped reports whether Data is backed by a memory mapping (rather than a heap copy).
func (r *Region) Mapped() bool { return r.mapped }

// Close releases the mapping. It is safe to call more than once; calls after the first
// return nil.
func (r *Region) Close() error {
	if r == nil || r.closed {
		return nil
	}
	r.closed = true
	data, mapped := r.data, r.mapped
	r.data, r.mapped = nil, false
	if mapped && len(data) > 0 {
		if err := unmap(data); err != nil {
			return fmt.Errorf("mmap: %s: munmap: %w", r.path, err)
		}
	}
	return nil
}

// WillNeed tells the kernel that bytes [off, off+n) of the region will be read soon,
// so it can start reading them in. It is a hint: it is a no-op where unsupported and
// for ranges outside the region (which are clipped).
func (r *Region) WillNeed(off, n int) error { return r.advise(off, n, adviceWillNeed) }

// Random tells the kernel that the whole region will be read in random order, which
// turns off read-ahead. It is a hint and a no-op where unsupported.
func (r *Region) Random() error { return r.advise(0, len(r.data), adviceRandom) }

// Sequential tells the kernel that the whole region will be read front to back, which
// enables aggressive read-ahead. It is a hint and a no-op where unsupported.
func (r *Region) Sequential() error { return r.advise(0, len(r.data), adviceSequential) }

type advice int

const (
	adviceWillNeed advice = iota
	adviceRandom
	adviceSequential
	adviceHugePage
)

func (r *Region) advise(off, n int, a advice) error {
	if r == nil || r.closed {
		return ErrClosed
	}
	if !r.mapped || n <= 0 || off >= len(r.data) {
		return nil
	}
	if off < 0 {
		n += off
		off = 0
	}
	if n > len(r.data)-off {
		n = len(r.data) - off
	}
	if n <= 0 {
		return nil
	}
	// madvise needs a page-aligned start; the mapping itself starts on a page.
	ps := os.Getpagesize()
	start := off / ps * ps
	if err := madvise(r.data[start:off+n], a); err != nil {
		return fmt.Errorf("mmap: %s: madvise: %w", r.path, err)
	}
	return nil
}
