package dbrx

import (
	"runtime/debug"
	"testing"

	"github.com/dbrx-engine/dbrx/internal/parallel"
)

// TestDecodeStepAllocs asserts that a decode step allocates nothing once the
// workspace and the cache have been sized (issue 7: no allocation per decode step).
func TestDecodeStepAllocs(t *testing.T) {
	// Scratch may come from a sync.Pool, which a GC cycle (likely while other test
	// packages run) can empty: measure the steady state with GC off.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	m, err := Load(fixtureDir("C"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	pool := parallel.New(2)
	defer pool.Close()
	ws := NewWorkspace(pool)
	cache := m.NewKVCache(0, 256)
	steps := []Step{{Cache: cache, IDs: []int{1, 2, 3}}}
	if _, err := m.Forward(ws, steps); err != nil {
		t.Fatal(err)
	}
	one := []int{42}
	steps[0].IDs = one
	allocs := testing.AllocsPerRun(50, func() {
		if _, err := m.Forward(ws, steps); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("decode step allocates %.1f times, want 0", allocs)
	}
}
