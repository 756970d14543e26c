//go:build linux

package atomicfile

import (
	"os"

	"golang.org/x/sys/unix"
)

// dropCache evicts f's clean pages from the page cache. f must be fsynced.
func dropCache(f *os.File) error { return unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED) }
