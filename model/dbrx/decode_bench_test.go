package dbrx

import (
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/dbrx-engine/dbrx/internal/parallel"
)

// BenchmarkDecodeBatch times one batched decode step: B sequences, each with a
// 64-token context, advance by one token together (the server's continuous-batching
// step). It needs a checkpoint, e.g. the BENCH shape:
//
//	dbrx init --config configs/bench.json --seed 1 --dtype bf16 --out /tmp/bench-bf16
//	DBRX_BENCH_MODEL=/tmp/bench-bf16 go test ./model/dbrx -run '^$' -bench DecodeBatch
func BenchmarkDecodeBatch(b *testing.B) {
	dir := os.Getenv("DBRX_BENCH_MODEL")
	if dir == "" {
		b.Skip("DBRX_BENCH_MODEL is not set")
	}
	m, err := Load(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	pool := parallel.New(0)
	defer pool.Close()
	for _, B := range []int{1, 4, 16} {
		b.Run(fmt.Sprintf("B=%d", B), func(b *testing.B) {
			ws := NewWorkspace(pool)
			const ctx = 64
			steps := make([]Step, B)
			for i := range steps {
				cache := m.NewKVCache(ctx+1, ctx+1)
				ids := make([]int, ctx)
				for j := range ids {
					ids[j] = (i*ctx + j*7919) % m.Config.VocabSize
				}
				if _, err := m.Forward(ws, []Step{{Cache: cache, IDs: ids}}); err != nil {
					b.Fatal(err)
				}
				steps[i] = Step{Cache: cache, IDs: []int{i + 1}}
			}
			b.ResetTimer()
			c0 := cpuTime()
			for b.Loop() {
				for i := range steps {
					steps[i].Cache.Truncate(ctx)
				}
				if _, err := m.Forward(ws, steps); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(B)*float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
			// CPU time per step (both threads, spin-waits included): steadier than the
			// wall clock on a shared machine.
			b.ReportMetric(float64((cpuTime()-c0).Microseconds())/1e3/float64(b.N), "cpu-ms/op")
		})
	}
}

// cpuTime is the CPU time of the process (all threads).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
