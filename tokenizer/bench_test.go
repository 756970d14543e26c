package tokenizer

import (
	"encoding/json"
	"flag"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
)

// The benchmark corpus is built at run time: corpusSize bytes of Go sources from the
// toolchain (GOROOT/src, all *.go files in a fixed pseudo-random order, the last one
// cut), which mix code, English comments, string literals, generated tables and some
// non-ASCII test data. The same bytes
// can be written out for the reference benchmark (scripts/bench-tokenizer.sh):
//
//	go test ./tokenizer -run TestWriteBenchCorpus -corpus-out /tmp/corpus.txt
var (
	corpusOut = flag.String("corpus-out", "", "write the benchmark corpus to this file (TestWriteBenchCorpus)")
	corpusIDs = flag.String("corpus-ids", "", "JSON array of the reference's ids for the corpus (TestBenchCorpusIDs)")
)

const corpusSize = 10 << 20

var (
	corpusOnce sync.Once
	corpusText string
	corpusErr  error
)

func benchCorpus(tb testing.TB) string {
	tb.Helper()
	corpusOnce.Do(func() {
		root := filepath.Join(goroot(tb), "src")
		var files []string
		corpusErr = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.IsDir() && strings.HasSuffix(path, ".go") {
				files = append(files, path)
			}
			return nil
		})
		sort.Strings(files)
		rand.New(rand.NewPCG(1, 2)).Shuffle(len(files), func(i, j int) { files[i], files[j] = files[j], files[i] })
		var sb strings.Builder
		for _, f := range files {
			if sb.Len() >= corpusSize || corpusErr != nil {
				break
			}
			b, err := os.ReadFile(f)
			if err != nil {
				corpusErr = err
				break
			}
			sb.Write(b[:min(len(b), corpusSize-sb.Len())])
		}
		corpusText = sb.String()
		if corpusErr == nil && len(corpusText) < corpusSize {
			corpusErr = fs.ErrNotExist
		}
	})
	if corpusErr != nil {
		tb.Skipf("no Go source corpus under GOROOT/src: %v", corpusErr)
	}
	return corpusText
}

func TestWriteBenchCorpus(t *testing.T) {
	if *corpusOut == "" {
		t.Skip("set -corpus-out to write the benchmark corpus")
	}
	if err := os.WriteFile(*corpusOut, []byte(benchCorpus(t)), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestBenchCorpusIDs compares the ids of the corpus with the reference's.
func TestBenchCorpusIDs(t *testing.T) {
	if *corpusIDs == "" {
		t.Skip("set -corpus-ids to compare with the reference's ids")
	}
	data, err := os.ReadFile(*corpusIDs)
	if err != nil {
		t.Fatal(err)
	}
	var want []int
	if err := json.Unmarshal(data, &want); err != nil {
		t.Fatal(err)
	}
	if d := diffIDs(DBRX().Encode(benchCorpus(t), AllowNone), want); d != "" {
		t.Fatal(d)
	}
	t.Logf("%d ids equal", len(want))
}

// BenchmarkEncode measures Encode over the 10 MB corpus on GOMAXPROCS cores
// (go test -bench Encode -cpu 1,2).
func BenchmarkEncode(b *testing.B) {
	tok := DBRX()
	text := benchCorpus(b)
	b.Run("corpus=gosrc", func(b *testing.B) {
		b.SetBytes(int64(len(text)))
		b.ReportAllocs()
		var n int
		for b.Loop() {
			n = len(tok.Encode(text, AllowNone))
		}
		b.ReportMetric(float64(len(text))/float64(n), "bytes/token")
	})
}

// BenchmarkEncodeSmall measures one chat-sized message (no parallelism).
func BenchmarkEncodeSmall(b *testing.B) {
	tok := DBRX()
	text := benchCorpus(b)[:4096]
	sc := new(scratch)
	var dst []int
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		dst = tok.appendEncode(dst[:0], text, AllowAll, sc)
	}
}

func BenchmarkDecode(b *testing.B) {
	tok := DBRX()
	ids := tok.Encode(benchCorpus(b), AllowNone)
	dst, _ := tok.Decode(ids)
	b.SetBytes(int64(len(dst)))
	b.ReportAllocs()
	for b.Loop() {
		dst, _ = tok.AppendDecode(dst[:0], ids)
	}
}

func BenchmarkStreamDecode(b *testing.B) {
	tok := DBRX()
	ids := tok.Encode(benchCorpus(b)[:1<<20], AllowNone)
	b.SetBytes(1 << 20)
	b.ReportAllocs()
	for b.Loop() {
		d := tok.NewStreamDecoder()
		for _, id := range ids {
			d.Add(id)
		}
		d.Flush()
	}
}

func BenchmarkMergeLong(b *testing.B) {
	tok := DBRX()
	rng := rand.New(rand.NewPCG(1, 1))
	p := make([]byte, 1<<16)
	for i := range p {
		p[i] = "abcdefgh"[rng.IntN(8)]
	}
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		tok.EncodeOrdinary(string(p))
	}
}

// goroot asks the go command where the toolchain lives (runtime.GOROOT is deprecated).
func goroot(tb testing.TB) string {
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		tb.Skipf("go env GOROOT: %v", err)
	}
	return strings.TrimSpace(string(out))
}
