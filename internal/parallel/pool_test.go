package parallel

import (
	"sync"
	"sync/atomic"
	"testing"
)

// cover runs For and checks that the chunks are disjoint, cover [0, n) and respect
// the grain.
func cover(t *testing.T, p *Pool, n, grain int) {
	t.Helper()
	hits := make([]int32, n)
	var calls atomic.Int32
	p.For(n, grain, func(lo, hi int) {
		calls.Add(1)
		if lo >= hi {
			t.Errorf("n=%d grain=%d: empty chunk [%d,%d)", n, grain, lo, hi)
		}
		if (lo%max(grain, 1) != 0 || hi-lo < grain) && hi != n {
			t.Errorf("n=%d grain=%d: chunk [%d,%d) below grain", n, grain, lo, hi)
		}
		for i := lo; i < hi; i++ {
			atomic.AddInt32(&hits[i], 1)
		}
	})
	for i, h := range hits {
		if h != 1 {
			t.Fatalf("n=%d grain=%d: index %d covered %d times", n, grain, i, h)
		}
	}
	if c := int(calls.Load()); c > p.Workers() {
		t.Errorf("n=%d grain=%d: %d chunks for %d workers", n, grain, c, p.Workers())
	}
}

func TestForCovers(t *testing.T) {
	for _, workers := range []int{1, 2, 3, 8} {
		p := New(workers)
		for _, n := range []int{0, 1, 2, 7, 15, 17, 33, 100, 4099} {
			for _, grain := range []int{0, 1, 3, 16, 64, 5000} {
				cover(t, p, n, grain)
			}
		}
		p.Close()
	}
	cover(t, nil, 37, 4)
	cover(t, &Pool{}, 37, 4)
}

func TestForRepeated(t *testing.T) {
	p := New(4)
	defer p.Close()
	var sum atomic.Int64
	for i := 0; i < 20000; i++ {
		p.For(64, 1, func(lo, hi int) { sum.Add(int64(hi - lo)) })
	}
	if got := sum.Load(); got != 20000*64 {
		t.Fatalf("sum %d, want %d", got, 20000*64)
	}
}

func TestForConcurrentAndNested(t *testing.T) {
	p := New(3)
	defer p.Close()
	var wg sync.WaitGroup
	var total atomic.Int64
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				p.For(30, 1, func(lo, hi int) {
					p.For(hi-lo, 1, func(a, b int) { total.Add(int64(b - a)) }) // nested: serial
				})
			}
		}()
	}
	wg.Wait()
	if got := total.Load(); got != 4*500*30 {
		t.Fatalf("total %d, want %d", got, 4*500*30)
	}
}

func TestCloseThenFor(t *testing.T) {
	p := New(4)
	p.Close()
	p.Close() // idempotent
	cover(t, p, 100, 1)
	var nilPool *Pool
	nilPool.Close()
	if nilPool.Workers() != 1 {
		t.Fatal("nil pool has one worker")
	}
}

func TestForAllocs(t *testing.T) {
	p := New(2)
	defer p.Close()
	var sink atomic.Int64
	fn := func(lo, hi int) { sink.Add(int64(hi - lo)) }
	if a := testing.AllocsPerRun(1000, func() { p.For(1000, 1, fn) }); a != 0 {
		t.Fatalf("For allocates %.1f times per call", a)
	}
}

func BenchmarkFor(b *testing.B) {
	for _, workers := range []int{1, 2} {
		b.Run("workers="+string(rune('0'+workers)), func(b *testing.B) {
			p := New(workers)
			defer p.Close()
			var sink atomic.Int64
			fn := func(lo, hi int) { sink.Add(int64(hi - lo)) }
			b.ReportAllocs()
			for b.Loop() {
				p.For(1000, 1, fn)
			}
		})
	}
}

func TestForEach(t *testing.T) {
	for _, workers := range []int{1, 2, 3} {
		p := New(workers)
		for _, n := range []int{0, 1, 2, 7, 100, 1000} {
			hits := make([]int32, n)
			p.ForEach(n, func(lo, hi int) {
				if hi != lo+1 {
					t.Errorf("n=%d: piece [%d,%d)", n, lo, hi)
				}
				atomic.AddInt32(&hits[lo], 1)
			})
			for i, h := range hits {
				if h != 1 {
					t.Fatalf("workers=%d n=%d: piece %d run %d times", workers, n, i, h)
				}
			}
		}
		p.Close()
	}
	var nilPool *Pool
	count := 0
	nilPool.ForEach(5, func(lo, hi int) { count++ })
	if count != 5 {
		t.Fatalf("nil pool ran %d pieces, want 5", count)
	}
}
