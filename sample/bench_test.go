package sample

import (
	"fmt"
	"testing"
)

// BenchmarkSample times one Sample call on a DBRX-sized row (V=100352, normal logits
// with standard deviation 2, a flat-ish worst case for top-p). Each iteration first
// restores the row (a 401 kB copy, included in the time). SetBytes is the row size, so
// MB/s is the logits bandwidth.
func BenchmarkSample(b *testing.B) {
	const V = 100352
	x := randLogits(V, 2, 1)
	hist := make([]int, 1024)
	for i := range hist {
		hist[i] = (i * 7919) % V
	}
	for _, bc := range []struct {
		name string
		cfg  Config
		hist []int
	}{
		{"mode=greedy", Config{}, nil},
		{"mode=temperature", Config{Temperature: 0.8}, nil},
		{"mode=top_p/p=0.95", Config{Temperature: 1, TopP: 0.95}, nil},
		{"mode=top_p/p=0.95/T=0.7", Config{Temperature: 0.7, TopP: 0.95}, nil},
		{"mode=top_k/k=40", Config{Temperature: 0.7, TopK: 40}, nil},
		{"mode=top_k+top_p/k=50/p=0.9", Config{Temperature: 0.7, TopK: 50, TopP: 0.9}, nil},
		{"mode=min_p/p=0.05", Config{Temperature: 1, MinP: 0.05}, nil},
		{"mode=penalties/hist=1024", Config{Temperature: 1, RepetitionPenalty: 1.1, PresencePenalty: 0.5, FrequencyPenalty: 0.5}, hist},
		{"mode=greedy/logprobs=20", Config{LogProbs: 20}, nil},
		// NoLogProb: the caller does not use Result.LogProb, so no exp where the token
		// does not need one (compare with the same mode without it above).
		{"mode=greedy/nologprob", Config{NoLogProb: true}, nil},
		{"mode=top_k/k=1/T=0.7", Config{Temperature: 0.7, TopK: 1}, nil},
		{"mode=top_k/k=1/T=0.7/nologprob", Config{Temperature: 0.7, TopK: 1, NoLogProb: true}, nil},
		{"mode=temperature/nologprob", Config{Temperature: 0.8, NoLogProb: true}, nil},
		{"mode=top_k/k=40/nologprob", Config{Temperature: 0.7, TopK: 40, NoLogProb: true}, nil},
		{"mode=penalties/hist=1024/greedy/nologprob", Config{RepetitionPenalty: 1.1, PresencePenalty: 0.5, FrequencyPenalty: 0.5, NoLogProb: true}, hist},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s := mustNew(b, bc.cfg)
			row := make([]float32, V)
			b.SetBytes(4 * V)
			b.ReportAllocs()
			for b.Loop() {
				copy(row, x)
				if _, err := s.Sample(row, bc.hist); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkArgmax is the floor for greedy decoding: one pass over the row.
func BenchmarkArgmax(b *testing.B) {
	x := randLogits(100352, 2, 1)
	b.SetBytes(4 * int64(len(x)))
	b.ReportAllocs()
	for b.Loop() {
		if Argmax(x) < 0 {
			b.Fatal("no argmax")
		}
	}
}

// BenchmarkSanitize is the pass every sampling call makes over its row (a finite row:
// maxFinite), beside the one-pass reference it replaced.
func BenchmarkSanitize(b *testing.B) {
	x := randLogits(100352, 2, 1)
	for _, impl := range []struct {
		name string
		fn   func([]float32) (float32, int)
	}{{"lanes", sanitize}, {"onepass", sanitizeRef}} {
		b.Run("impl="+impl.name, func(b *testing.B) {
			b.SetBytes(4 * int64(len(x)))
			b.ReportAllocs()
			for b.Loop() {
				if _, i := impl.fn(x); i < 0 {
					b.Fatal("no maximum")
				}
			}
		})
	}
}

func ExampleSampler_Sample() {
	s, err := New(Config{Temperature: 0.7, TopP: 0.9, Seed: 42, LogProbs: 2})
	if err != nil {
		panic(err)
	}
	logits := []float32{0.1, 3.2, 2.9, -1.0}
	r, err := s.Sample(logits, nil)
	if err != nil {
		panic(err)
	}
	fmt.Println(r.ID, len(r.Top), r.Top[0].ID)
	// Output: 1 2 1
}
