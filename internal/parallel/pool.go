// Package parallel runs loops across a fixed set of worker goroutines.
//
// A Pool is created once (one worker per core by default) and reused for every
// kernel call, so the decode loop does not spawn goroutines per step.
package parallel

import (
	"runtime"
	"sync"
)

// Pool splits index ranges across its workers. The zero value and a nil *Pool run
// everything on the calling goroutine.
type Pool struct {
	n    int
	jobs chan job
	once sync.Once
}

type job struct {
	fn     func(lo, hi int)
	lo, hi int
	wg     *sync.WaitGroup
}

// New returns a pool of n workers; n <= 0 means runtime.GOMAXPROCS(0).
func New(n int) *Pool {
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	p := &Pool{n: n, jobs: make(chan job, n)}
	for i := 1; i < n; i++ { // the caller is worker 0
		go p.work()
	}
	return p
}

func (p *Pool) work() {
	for j := range p.jobs {
		j.fn(j.lo, j.hi)
		j.wg.Done()
	}
}

// Workers is the number of goroutines (including the caller) that share a loop.
func (p *Pool) Workers() int {
	if p == nil || p.n < 1 {
		return 1
	}
	return p.n
}

// For calls fn on disjoint sub-ranges covering [0, n), each at least grain long
// (except possibly the last), and returns when all are done.
func (p *Pool) For(n, grain int, fn func(lo, hi int)) {
	if n <= 0 {
		return
	}
	w := p.Workers()
	if grain < 1 {
		grain = 1
	}
	chunks := (n + grain - 1) / grain
	if chunks > w {
		chunks = w
	}
	if chunks <= 1 {
		fn(0, n)
		return
	}
	var wg sync.WaitGroup
	per := (n + chunks - 1) / chunks
	wg.Add(chunks - 1)
	for c := 1; c < chunks; c++ {
		lo, hi := c*per, min((c+1)*per, n)
		if lo >= hi {
			wg.Done()
			continue
		}
		p.jobs <- job{fn: fn, lo: lo, hi: hi, wg: &wg}
	}
	fn(0, min(per, n))
	wg.Wait()
}

// Close stops the workers. The pool must not be used afterwards.
func (p *Pool) Close() {
	if p == nil {
		return
	}
	p.once.Do(func() { close(p.jobs) })
}
