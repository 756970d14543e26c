package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/dbrx-engine/dbrx/data"
	"github.com/dbrx-engine/dbrx/tokenizer"
)

func init() {
	register(command{
		name:    "data",
		summary: "prepare token shards from text/JSONL (prepare) and inspect them (stats)",
		run:     runData,
	})
}

// The shard format's default separator must be the tokenizer's.
var _ = [1]struct{}{}[data.EndOfText-tokenizer.EndOfText]

const dataUsage = `usage:
  dbrx data prepare --out DIR --name NAME [--heldout F] [--seed N] [--jsonl] [--ext .go,.md] FILES_OR_DIRS...
  dbrx data stats [--no-verify] SHARD.tok|MANIFEST.json...`

func runData(ctx context.Context, e env, args []string) error {
	if len(args) == 0 {
		fmt.Fprintln(e.stderr, dataUsage)
		return fmt.Errorf("%w: missing subcommand", errUsage)
	}
	switch args[0] {
	case "prepare":
		return runDataPrepare(ctx, e, args[1:])
	case "stats":
		return runDataStats(e, args[1:])
	case "-h", "--help", "help":
		fmt.Fprintln(e.stderr, dataUsage)
		return nil
	}
	fmt.Fprintln(e.stderr, dataUsage)
	return fmt.Errorf("%w: unknown subcommand %q", errUsage, args[0])
}

func runDataPrepare(ctx context.Context, e env, args []string) error {
	d := data.DefaultPrepareConfig()
	fs := newFlags("data prepare", e)
	out := fs.String("out", "", "output directory (required)")
	name := fs.String("name", "", "dataset name: prefix of the shards and of NAME.json (required)")
	heldout := fs.Float64("heldout", 0, "fraction of documents for the held-out split, in [0, 1)")
	seed := fs.Uint64("seed", 0, "seed of the train/held-out split")
	jsonl := fs.Bool("jsonl", false, `read every input as JSONL (one {"text": ...} document per line); *.jsonl always is`)
	field := fs.String("text-field", d.TextField, "JSONL field holding the document text")
	ext := fs.String("ext", "", "comma-separated extensions to keep when walking directories (e.g. .go,.md)")
	shardTokens := fs.Int64("shard-tokens", d.ShardTokens, "tokens per shard before starting a new one")
	workers := fs.Int("workers", 0, "tokenizer goroutines (0 = all cores)")
	progress := fs.Bool("progress", true, "show a progress bar when stderr is a terminal")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if *out == "" || *name == "" {
		return fmt.Errorf("%w: --out and --name are required", errUsage)
	}
	if len(pos) == 0 {
		return fmt.Errorf("%w: no input files or directories", errUsage)
	}
	d.OutDir, d.Name, d.HeldOut, d.Seed, d.JSONL = *out, *name, *heldout, *seed, *jsonl
	d.TextField, d.ShardTokens, d.Workers = *field, *shardTokens, *workers
	for _, x := range strings.Split(*ext, ",") {
		if x = strings.TrimSpace(x); x != "" {
			if !strings.HasPrefix(x, ".") {
				x = "." + x
			}
			d.Exts = append(d.Exts, x)
		}
	}
	if err := d.Validate(); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	tok, err := tokenizer.New()
	if err != nil {
		return err
	}
	var bar *progressBar
	if *progress && isTerminal(e.stderr) {
		bar = &progressBar{w: e.stderr, start: time.Now()}
		d.Progress = bar.update
	}
	st, err := data.Prepare(ctx, d, tok, pos)
	bar.finish()
	if err != nil {
		return err
	}
	secs := st.Duration.Seconds()
	rate := 0.0
	if secs > 0 {
		rate = float64(st.Tokens) / secs
	}
	w := e.stdout
	fmt.Fprintf(w, "files      %d (%s)\n", st.Files, humanBytes(st.InputBytes))
	fmt.Fprintf(w, "documents  %d (train %d, held-out %d)\n", st.Documents, st.Train.Documents, st.HeldOut.Documents)
	fmt.Fprintf(w, "tokens     %d (train %d, held-out %d)\n", st.Tokens, st.Train.Tokens, st.HeldOut.Tokens)
	fmt.Fprintf(w, "shards     %d train, %d held-out (%s of tokens)\n", len(st.Train.Shards), len(st.HeldOut.Shards), humanBytes(st.Tokens*4))
	fmt.Fprintf(w, "time       %.2fs, %.0f tokens/s, %s/s of text\n", secs, rate, humanBytes(int64(float64(st.InputBytes)/max(secs, 1e-9))))
	_, err = fmt.Fprintf(w, "manifest   %s\n", st.Manifest)
	return err
}

func runDataStats(e env, args []string) error {
	fs := newFlags("data stats", e)
	noVerify := fs.Bool("no-verify", false, "skip the payload checksum (read headers only)")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return fmt.Errorf("%w: give shard (.tok) or manifest (.json) paths", errUsage)
	}
	w := e.stdout
	for _, p := range pos {
		if strings.EqualFold(filepath.Ext(p), ".json") {
			m, err := data.ReadManifest(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "%s: dataset %q, %d input files (%s), seed %d, held-out fraction %g, eot %d\n",
				p, m.Name, m.Files, humanBytes(m.InputBytes), m.Seed, m.HeldOutFraction, m.EOT)
			for _, split := range []struct {
				name   string
				shards []data.ShardInfo
			}{{data.SplitTrain, m.Train}, {data.SplitHeldOut, m.HeldOut}} {
				var tokens, docs int64
				for _, s := range split.shards {
					tokens += s.Tokens
					docs += s.Documents
				}
				fmt.Fprintf(w, "  %-8s %d shards, %d documents, %d tokens\n", split.name, len(split.shards), docs, tokens)
				if len(split.shards) == 0 {
					continue
				}
				src, err := data.ManifestSource(p, split.name, m.Name)
				if err != nil {
					return err
				}
				for _, sp := range src.Paths {
					if err := shardStats(w, sp, !*noVerify, "    "); err != nil {
						return err
					}
				}
			}
			continue
		}
		if err := shardStats(w, p, !*noVerify, ""); err != nil {
			return err
		}
	}
	return nil
}

func shardStats(w io.Writer, path string, verify bool, indent string) error {
	status := "not verified"
	var h data.Header
	if verify {
		s, err := data.OpenShard(path)
		if err != nil {
			return err
		}
		h = s.Header()
		err = s.Verify()
		s.Close()
		if err != nil {
			return err
		}
		status = "ok"
	} else {
		var err error
		if h, err = data.ReadShardHeader(path); err != nil {
			return err
		}
	}
	avg := 0.0
	if h.Documents > 0 {
		avg = float64(h.Tokens) / float64(h.Documents)
	}
	_, err := fmt.Fprintf(w, "%s%s: v%d uint32, eot %d, %d tokens, %d documents (%.1f tokens/doc), %s, crc32c %08x %s\n",
		indent, path, h.Version, h.EOT, h.Tokens, h.Documents, avg, humanBytes(h.FileSize()), h.PayloadCRC, status)
	return err
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n), 0
	for v >= unit && i < 5 {
		v /= unit
		i++
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGTP"[i-1])
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// progressBar draws "[#####-----]  45%  12.3 MiB/s  ETA 1m2s" on one terminal line,
// at most ten times a second.
type progressBar struct {
	mu    sync.Mutex
	w     io.Writer
	start time.Time
	last  time.Time
	drawn bool
}

func (b *progressBar) update(done, total int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	if b.drawn && now.Sub(b.last) < 100*time.Millisecond && done < total {
		return
	}
	b.last, b.drawn = now, true
	frac := 1.0
	if total > 0 {
		frac = min(float64(done)/float64(total), 1)
	}
	const width = 30
	fill := int(frac * width)
	el := now.Sub(b.start).Seconds()
	rate, eta := 0.0, "?"
	if el > 0 {
		rate = float64(done) / el
	}
	if rate > 0 {
		eta = time.Duration(float64(total-done) / rate * float64(time.Second)).Round(time.Second).String()
	}
	fmt.Fprintf(b.w, "\r[%s%s] %3.0f%%  %s/s  ETA %s   ",
		strings.Repeat("#", fill), strings.Repeat("-", width-fill), frac*100, humanBytes(int64(rate)), eta)
}

func (b *progressBar) finish() {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.drawn {
		fmt.Fprintln(b.w)
	}
}
