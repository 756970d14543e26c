package gguf

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkParse parses a metadata-only file shaped like DBRX's header: the model
// keys, a 100352-token vocabulary with token types, and 100000 merges. MB/s is
// header bytes per second.
func BenchmarkParse(b *testing.B) {
	c := tinyDBRX()
	meta, err := DBRXMetadata(c)
	if err != nil {
		b.Fatal(err)
	}
	const vocab = 100352
	toks := make([][]byte, vocab)
	for i := range toks {
		toks[i] = []byte(fmt.Sprintf(" tok%d", i))
	}
	merges := make([][2][]byte, 100000)
	for i := range merges {
		merges[i] = [2][]byte{[]byte(fmt.Sprintf(" t%d", i)), []byte("ok")}
	}
	tok, err := DBRXTokenizerMetadata(DBRXVocab{Tokens: toks, Merges: merges, BOS: 0, EOS: 0, UNK: -1, PAD: -1})
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), "bench.gguf")
	writeTestFile(b, path, append(meta, tok...), nil)
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse("bench", data); err != nil {
			b.Fatal(err)
		}
	}
}
