package data

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// byteEncoder maps each byte to its value + 1 (so no id is 0 or EndOfText).
type byteEncoder struct{}

func (byteEncoder) EncodeOrdinary(s string) []int {
	ids := make([]int, len(s))
	for i := 0; i < len(s); i++ {
		ids[i] = int(s[i]) + 1
	}
	return ids
}

func mustWrite(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readAllShards(t *testing.T, paths []string) []uint32 {
	t.Helper()
	var out []uint32
	for _, p := range paths {
		s, err := OpenShard(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Verify(); err != nil {
			t.Fatal(err)
		}
		out = append(out, s.Tokens()...)
		s.Close()
	}
	return out
}

func decodeDocs(ids []uint32) []string {
	var docs []string
	var cur []byte
	for _, id := range ids {
		if id == EndOfText {
			docs = append(docs, string(cur))
			cur = cur[:0]
			continue
		}
		cur = append(cur, byte(id-1))
	}
	return docs
}

func TestPrepareTextAndJSONL(t *testing.T) {
	in := t.TempDir()
	mustWrite(t, filepath.Join(in, "src/a.go"), "package a\n")
	mustWrite(t, filepath.Join(in, "src/sub/b.go"), "package b\n\nfunc B() {}\n")
	mustWrite(t, filepath.Join(in, "src/readme.md"), "not Go")
	mustWrite(t, filepath.Join(in, "src/.git/c.go"), "hidden")
	mustWrite(t, filepath.Join(in, "src/empty.go"), "")
	mustWrite(t, filepath.Join(in, "docs.jsonl"), `{"text":"first doc"}`+"\n\n"+`{"text":"second\ndoc","id":3}`+"\n"+`{"text":""}`+"\n"+`{"text":"third"}`)
	cfg := DefaultPrepareConfig()
	cfg.OutDir, cfg.Name = filepath.Join(t.TempDir(), "out"), "mix"
	cfg.Exts = []string{".go"}
	var calls int
	var last [2]int64
	cfg.Progress = func(done, total int64) { calls++; last = [2]int64{done, total} }
	st, err := Prepare(context.Background(), cfg, byteEncoder{}, []string{filepath.Join(in, "src"), filepath.Join(in, "docs.jsonl")})
	if err != nil {
		t.Fatal(err)
	}
	if st.Files != 4 || st.Documents != 5 || st.HeldOut.Documents != 0 || len(st.Train.Shards) != 1 || len(st.HeldOut.Shards) != 0 {
		t.Errorf("stats %+v", st)
	}
	if calls < 2 || last[0] != last[1] || last[1] != st.InputBytes {
		t.Errorf("progress: %d calls, last %v, input bytes %d", calls, last, st.InputBytes)
	}
	docs := decodeDocs(readAllShards(t, st.Train.Shards))
	want := []string{"package a\n", "package b\n\nfunc B() {}\n", "first doc", "second\ndoc", "third"}
	if !slices.Equal(docs, want) {
		t.Errorf("documents %q, want %q", docs, want)
	}
	var n int64
	for _, d := range want {
		n += int64(len(d)) + 1
	}
	if st.Tokens != n {
		t.Errorf("tokens %d, want %d", st.Tokens, n)
	}
	m, err := ReadManifest(st.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "mix" || len(m.Train) != 1 || m.Train[0].Tokens != n || m.Train[0].Documents != 5 || len(m.HeldOut) != 0 {
		t.Errorf("manifest %+v", m)
	}
	src, err := ManifestSource(st.Manifest, SplitTrain, "mix")
	if err != nil || len(src.Paths) != 1 {
		t.Fatalf("ManifestSource: %+v %v", src, err)
	}
	if _, err := ManifestSource(st.Manifest, SplitHeldOut, "mix"); !errors.Is(err, ErrConfig) {
		t.Errorf("empty split: %v", err)
	}
	// A shard replaced behind the manifest's back is detected.
	writeShard(t, src.Paths[0], [][]int{{1}})
	if _, err := ManifestSource(st.Manifest, SplitTrain, "mix"); !errors.Is(err, ErrChecksum) {
		t.Errorf("tampered shard: %v", err)
	}
}

func manyDocs(t *testing.T, dir string, n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "{\"text\": \"document number %d %s\"}\n", i, strings.Repeat("x", i%37))
	}
	p := filepath.Join(dir, "many.jsonl")
	mustWrite(t, p, b.String())
	return p
}

func TestPrepareSplitShardsDeterminism(t *testing.T) {
	in := manyDocs(t, t.TempDir(), 3000)
	run := func(workers int, out string) PrepareStats {
		cfg := DefaultPrepareConfig()
		cfg.OutDir, cfg.Name, cfg.HeldOut, cfg.Seed = out, "d", 0.1, 42
		cfg.Workers, cfg.ShardTokens, cfg.BatchBytes = workers, 20000, 5000
		st, err := Prepare(context.Background(), cfg, byteEncoder{}, []string{in})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	a, b := run(1, filepath.Join(t.TempDir(), "a")), run(4, filepath.Join(t.TempDir(), "b"))
	frac := float64(a.HeldOut.Documents) / float64(a.Documents)
	if a.Documents != 3000 || frac < 0.08 || frac > 0.12 {
		t.Errorf("%d documents, held-out fraction %.3f, want 0.1 ± 0.02", a.Documents, frac)
	}
	if len(a.Train.Shards) < 3 {
		t.Errorf("only %d train shards with ShardTokens 20000 and %d tokens", len(a.Train.Shards), a.Train.Tokens)
	}
	for _, p := range a.Train.Shards {
		if h, _ := ReadShardHeader(p); h.Tokens > 20000+100 {
			t.Errorf("%s: %d tokens", p, h.Tokens)
		}
	}
	if len(a.Train.Shards) != len(b.Train.Shards) || len(a.HeldOut.Shards) != len(b.HeldOut.Shards) {
		t.Fatalf("shard counts differ across worker counts")
	}
	for i, p := range slices.Concat(a.Train.Shards, a.HeldOut.Shards) {
		q := slices.Concat(b.Train.Shards, b.HeldOut.Shards)[i]
		x, _ := os.ReadFile(p)
		y, _ := os.ReadFile(q)
		if !bytes.Equal(x, y) {
			t.Errorf("%s and %s differ", p, q)
		}
	}
	// Train and held-out are disjoint and together hold every document once.
	tr := decodeDocs(readAllShards(t, a.Train.Shards))
	ho := decodeDocs(readAllShards(t, a.HeldOut.Shards))
	all := slices.Concat(tr, ho)
	slices.Sort(all)
	if len(slices.Compact(all)) != 3000 {
		t.Errorf("documents lost or duplicated")
	}
	// Rerunning with fewer shards removes the stale ones.
	cfg := DefaultPrepareConfig()
	cfg.OutDir, cfg.Name = filepath.Dir(a.Manifest), "d"
	st, err := Prepare(context.Background(), cfg, byteEncoder{}, []string{in})
	if err != nil {
		t.Fatal(err)
	}
	left, _ := filepath.Glob(filepath.Join(cfg.OutDir, "d-*.tok"))
	if len(left) != len(st.Train.Shards) {
		t.Errorf("%d shard files after rerun, manifest lists %d", len(left), len(st.Train.Shards))
	}
}

func TestPrepareErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.jsonl")
	mustWrite(t, bad, `{"text":"ok"}`+"\n"+`{"text": 5}`+"\n")
	cfg := DefaultPrepareConfig()
	cfg.OutDir, cfg.Name = filepath.Join(dir, "out"), "x"
	_, err := Prepare(context.Background(), cfg, byteEncoder{}, []string{bad})
	var fe *FormatError
	if !errors.Is(err, ErrInput) || !errors.As(err, &fe) || fe.Field != "line 2" || fe.Offset != 14 {
		t.Errorf("non-string text: %v", err)
	}
	mustWrite(t, bad, `{"text":"ok"}`+"\n"+`{"txt":"a"}`+"\n")
	if _, err = Prepare(context.Background(), cfg, byteEncoder{}, []string{bad}); !errors.Is(err, ErrInput) {
		t.Errorf("missing field: %v", err)
	}
	mustWrite(t, bad, `{"text":"ok"}`+"\n"+`{"text":"a"`+"\n")
	if _, err = Prepare(context.Background(), cfg, byteEncoder{}, []string{bad}); !errors.Is(err, ErrInput) || !errors.As(err, &fe) || fe.Offset < 14 {
		t.Errorf("syntax error: %v", err)
	}
	if ents, _ := os.ReadDir(cfg.OutDir); len(ents) != 0 {
		t.Errorf("failed runs left %d files", len(ents))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Prepare(ctx, cfg, byteEncoder{}, []string{manyDocs(t, dir, 10)}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	for _, c := range []PrepareConfig{
		{}, {OutDir: "o", Name: "a/b", TextField: "text", ShardTokens: 1, BatchBytes: 1},
		{OutDir: "o", Name: "a", HeldOut: 1, TextField: "text", ShardTokens: 1, BatchBytes: 1},
	} {
		if _, err := Prepare(context.Background(), c, byteEncoder{}, []string{bad}); !errors.Is(err, ErrConfig) {
			t.Errorf("config %+v: %v", c, err)
		}
	}
	if _, err := Prepare(context.Background(), cfg, byteEncoder{}, []string{filepath.Join(dir, "nope")}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing input: %v", err)
	}
}
