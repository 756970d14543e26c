//go:build linux

package mmap

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"
)

// TestOpenAsksForHugePages: Open marks the mapping VM_HUGEPAGE ("hg" in the VmFlags
// of /proc/self/smaps) before anything touches it, so a file that is not yet cached
// is read into 2 MiB folios. Kernels built without transparent huge pages refuse
// the hint; the test then has nothing to check.
func TestOpenAsksForHugePages(t *testing.T) {
	if _, err := os.Stat("/sys/kernel/mm/transparent_hugepage"); err != nil {
		t.Skip("kernel without transparent huge pages")
	}
	p := filepath.Join(t.TempDir(), "w")
	if err := os.WriteFile(p, make([]byte, 4<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	start := fmt.Sprintf("%x-", uintptr(unsafe.Pointer(&r.Data()[0])))
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skip("no /proc/self/smaps")
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	in := false
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, start) {
			in = true
		}
		if in && strings.HasPrefix(line, "VmFlags:") {
			if !strings.Contains(line+" ", " hg ") {
				t.Errorf("mapping at %s not marked for huge pages: %s", start, line)
			}
			return
		}
	}
	t.Fatalf("mapping at %s not found in /proc/self/smaps (%v)", start, sc.Err())
}
