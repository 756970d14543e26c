//go:build linux

package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestCommitDropsPageCache: after Commit the file's bytes are on disk and none of
// its pages stay in the page cache (mincore over a fresh mapping counts them), so
// the first reader brings it back in large folios. tmpfs keeps file pages in memory
// whatever it is told, so the test needs a disk-backed temporary directory.
func TestCommitDropsPageCache(t *testing.T) {
	dir := t.TempDir()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	if st.Type == unix.TMPFS_MAGIC || st.Type == unix.RAMFS_MAGIC {
		t.Skipf("%s is in memory (fs type %#x): nothing to drop", dir, st.Type)
	}
	const n = 8 << 20
	data := make([]byte, n)
	for i := range data {
		data[i] = byte(i * 31)
	}
	path := filepath.Join(dir, "weights.bin")
	if err := WriteFile(path, data); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := unix.Mmap(int(f.Fd()), 0, n, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	vec := make([]byte, (n+os.Getpagesize()-1)/os.Getpagesize())
	if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(n), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
		t.Fatalf("mincore: %v", e)
	}
	resident := 0
	for _, v := range vec {
		resident += int(v & 1)
	}
	if resident != 0 {
		t.Errorf("%d of %d pages still cached after Commit, want 0", resident, len(vec))
	}
	if got, err := os.ReadFile(path); err != nil || string(got) != string(data) {
		t.Fatalf("contents after Commit differ (err %v)", err)
	}
}
