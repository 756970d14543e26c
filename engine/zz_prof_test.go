package engine

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/dbrx-engine/dbrx/internal/parallel"
	"github.com/dbrx-engine/dbrx/model/dbrx"
)

func TestZZProf(t *testing.T) {
	m, err := dbrx.Load("/tmp/benchmodel")
	if err != nil {
		t.Fatal(err)
	}
	pool := parallel.New(0)
	for _, n := range []int{1, 16} {
		var steps []StepInfo
		var mu sync.Mutex
		e, _ := New(m, nil, pool, Config{OnStep: func(si StepInfo) { mu.Lock(); steps = append(steps, si); mu.Unlock() }})
		rng := rand.New(rand.NewPCG(1, 1))
		var wg sync.WaitGroup
		t0 := time.Now()
		for i := 0; i < n; i++ {
			st, _ := e.Submit(context.Background(), greedy(randomPrompt(rng, 16), 32))
			wg.Go(func() { collect(t, st) })
		}
		wg.Wait()
		var dec time.Duration
		nd := 0
		for _, s := range steps {
			if s.PrefillTokens == 0 {
				dec += s.Duration
				nd++
			}
		}
		t.Logf("n=%d wall %v, decode steps %d mean %v", n, time.Since(t0), nd, dec/time.Duration(nd))
		e.Close()
	}
}
