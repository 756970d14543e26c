// Package parallel runs loops across a fixed set of worker goroutines.
//
// A Pool is created once (one worker per core by default) and reused for every
// kernel call: For neither spawns goroutines nor allocates. Workers are started by
// New and park between loops; a loop is published by bumping a generation counter
// and the caller takes part in the work itself, so a pool of n workers runs n-1
// goroutines plus the caller.
//
// Waking is two-staged: a worker that has just finished a loop spins for a short
// while on the generation counter (decode calls kernels back to back, tens of
// microseconds apart), then parks on a channel. The caller likewise spins briefly
// before it blocks waiting for the last chunk.
package parallel

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// spinTime bounds the busy-wait of a worker looking for the next loop, and of a
// caller waiting for the last chunk, before they block on a channel: long enough to
// bridge the gap between two kernel calls of a decode step, short enough not to
// steal a shared machine's cores. Spinners yield the processor every 64 checks.
const spinTime = 20 * time.Microsecond

// spinner tracks one bounded busy-wait.
type spinner struct {
	n        int
	deadline time.Time
}

// spin reports whether to keep spinning.
func (s *spinner) spin() bool {
	s.n++
	if s.n&63 != 0 {
		return true
	}
	now := time.Now()
	if s.deadline.IsZero() {
		s.deadline = now.Add(spinTime)
	} else if now.After(s.deadline) {
		return false
	}
	runtime.Gosched()
	return true
}

// maxWorkers keeps the chunk count within the 16 bits that Pool.claim gives it.
const maxWorkers = 1<<16 - 1

// Pool splits index ranges across its workers. The zero value and a nil *Pool run
// everything on the calling goroutine.
//
// For may be called from several goroutines at once: one loop at a time uses the
// workers, and a call that finds the pool busy (including a nested call made from
// inside fn) runs its loop serially on its own goroutine instead of waiting.
type Pool struct {
	n int

	busy sync.Mutex // held by the caller whose loop owns the workers

	// The loop being run; written by its caller before gen is bumped, read by
	// workers after they claim a chunk of that generation.
	fn    func(lo, hi int)
	total int // loop length
	per   int // chunk length

	// claim packs the generation (bits 32-63), the chunk count (bits 16-31) and the
	// next chunk index (bits 0-15), so a worker late from an older loop can neither
	// claim a chunk of a newer one nor read the newer loop's fields early.
	claim   atomic.Uint64
	pending atomic.Int64 // chunks not yet finished in the current loop
	gen     atomic.Uint32
	closed  atomic.Bool

	wake []chan struct{} // one per worker goroutine, buffered 1
	done chan struct{}   // buffered 1; receives one token per loop
	exit sync.WaitGroup
}

// New returns a pool of n workers; n <= 0 means runtime.GOMAXPROCS(0).
func New(n int) *Pool {
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	n = min(n, maxWorkers)
	p := &Pool{n: n, done: make(chan struct{}, 1)}
	p.wake = make([]chan struct{}, n-1)
	p.exit.Add(n - 1)
	for i := range p.wake { // the caller is worker 0
		p.wake[i] = make(chan struct{}, 1)
		go p.work(p.wake[i])
	}
	return p
}

// Workers is the number of goroutines (including the caller) that share a loop.
func (p *Pool) Workers() int {
	if p == nil || p.n < 1 {
		return 1
	}
	return p.n
}

// For calls fn on disjoint sub-ranges covering [0, n) and returns when all are done.
// The ranges are contiguous chunks, at most one per worker; every chunk boundary is
// a multiple of grain, so each chunk is at least grain long except possibly the
// last (n < 2·grain runs as one chunk on the caller).
func (p *Pool) For(n, grain int, fn func(lo, hi int)) {
	if n <= 0 {
		return
	}
	if grain < 1 {
		grain = 1
	}
	chunks := min(n/grain, p.Workers())
	if chunks <= 1 || p.closed.Load() || !p.busy.TryLock() {
		fn(0, n)
		return
	}
	per := (n + chunks - 1) / chunks
	per = (per + grain - 1) / grain * grain
	chunks = (n + per - 1) / per
	p.run(fn, n, per, chunks)
}

// ForEach calls fn(i, i+1) for every i in [0, n), the workers claiming the indices
// one at a time in increasing order, and returns when all are done. It is For for
// a loop cut into more pieces than workers: a worker that finishes early (or
// started late: a preempted thread on a shared machine) takes more pieces, so the
// loop is balanced dynamically. n must be at most 65535.
func (p *Pool) ForEach(n int, fn func(lo, hi int)) {
	if n <= 0 {
		return
	}
	if n > maxWorkers {
		panic("parallel: ForEach over more than 65535 pieces")
	}
	if n == 1 || p.Workers() == 1 || p.closed.Load() || !p.busy.TryLock() {
		for i := 0; i < n; i++ {
			fn(i, i+1)
		}
		return
	}
	p.run(fn, n, 1, n)
}

// run publishes a loop of chunks pieces of per indices (n in all) to the workers,
// takes part in it and waits for the last piece; the caller holds p.busy.
func (p *Pool) run(fn func(lo, hi int), n, per, chunks int) {
	p.fn, p.total, p.per = fn, n, per
	p.pending.Store(int64(chunks))
	g := p.gen.Load() + 1
	p.claim.Store(uint64(g)<<32 | uint64(chunks)<<16)
	p.gen.Store(g) // publish
	for i := 0; i < chunks-1 && i < len(p.wake); i++ {
		select {
		case p.wake[i] <- struct{}{}:
		default: // a token is already waiting
		}
	}
	p.runChunks(g)
	var s spinner
	for p.pending.Load() != 0 && s.spin() {
	}
	<-p.done // exactly one token per loop, sent by whoever finished the last chunk
	p.fn = nil
	p.busy.Unlock()
}

// runChunks claims and runs chunks of generation g until none are left.
func (p *Pool) runChunks(g uint32) {
	for {
		c := p.claim.Load()
		if uint32(c>>32) != g || uint16(c) >= uint16(c>>16) {
			return
		}
		if !p.claim.CompareAndSwap(c, c+1) {
			continue
		}
		i := int(uint16(c))
		lo := i * p.per
		hi := min(lo+p.per, p.total)
		p.fn(lo, hi)
		if p.pending.Add(-1) == 0 {
			p.done <- struct{}{}
		}
	}
}

func (p *Pool) work(wake chan struct{}) {
	defer p.exit.Done()
	seen := p.gen.Load()
	for {
		var s spinner
		for p.gen.Load() == seen && !p.closed.Load() {
			if !s.spin() {
				<-wake // tokens may be stale: the loop condition re-checks
			}
		}
		if p.closed.Load() {
			return
		}
		seen = p.gen.Load()
		p.runChunks(seen)
	}
}

// Close stops the workers and waits for them to exit. The pool must not be used
// concurrently with or after Close (For then runs serially).
func (p *Pool) Close() {
	if p == nil || p.closed.Swap(true) {
		return
	}
	for _, c := range p.wake {
		select {
		case c <- struct{}{}:
		default:
		}
	}
	p.exit.Wait()
}
