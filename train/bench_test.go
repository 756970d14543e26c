package train

import (
	"context"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkTrainStep runs optimizer steps of configs/train-bench.json (the TRAIN
// shape: d_model 256, 4 heads, 2 KV heads, 4 layers, 8 experts top-2, F 512, vocab
// 100352, batch 8×256, 2 threads) through the real trainer loop. It reports
// tokens/s, MFU (against PeakFLOPsPerCore × threads) and CPU seconds per step, which
// is the steadier figure on a shared machine.
//
//	go test ./train -run '^$' -bench TrainStep -benchtime 5x
func BenchmarkTrainStep(b *testing.B) {
	cfg, err := LoadConfig(filepath.Join("..", "configs", "train-bench.json"))
	if err != nil {
		b.Fatal(err)
	}
	cfg.RunDir = b.TempDir()
	cfg.MaxSteps = 1 << 30
	tr, err := New(cfg, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Close()
	ctx := context.Background()
	if _, err := tr.trainStep(ctx); err != nil { // warm-up: buffers, optimizer state
		b.Fatal(err)
	}
	tok := float64(tr.tokensPerStep())
	c0, t0 := cpuTime(), time.Now()
	b.ResetTimer()
	for b.Loop() {
		if _, err := tr.trainStep(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	wall, cpu := time.Since(t0).Seconds(), (cpuTime() - c0).Seconds()
	n := float64(b.N)
	tps := tok * n / wall
	b.ReportMetric(tps, "tokens/s")
	b.ReportMetric(100*tr.flopsPerToken*tps/(PeakFLOPsPerCore*float64(tr.pool.Workers())), "MFU%")
	b.ReportMetric(cpu/n, "cpu-s/step")
	b.ReportMetric(tok*n/cpu*float64(tr.pool.Workers()), "tokens/s@cpu")
}
