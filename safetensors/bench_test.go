package safetensors

import (
	"fmt"
	"path/filepath"
	"testing"
)

// BenchmarkOpenDir measures opening (mapping and validating) fixture checkpoints;
// SetBytes is the checkpoint's tensor bytes, so MB/s says how cheap a zero-copy open is.
func BenchmarkOpenDir(b *testing.B) {
	for _, v := range []string{"A", "C"} {
		b.Run("variant="+v, func(b *testing.B) {
			dir := filepath.Join(fixtures, v)
			c, err := OpenDir(dir)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(c.TotalSize())
			c.Close()
			b.ReportAllocs()
			for b.Loop() {
				c, err := OpenDir(dir)
				if err != nil {
					b.Fatal(err)
				}
				c.Close()
			}
		})
	}
}

// BenchmarkParseHeader measures the header parser alone on fixture C's first shard.
func BenchmarkParseHeader(b *testing.B) {
	f, err := Open(filepath.Join(fixtures, "C", "model-00001-of-00002.safetensors"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	data := f.Region().Data()
	hdr := data[:f.DataOffset()]
	b.SetBytes(int64(len(hdr)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := ParseHeader(hdr, int64(len(data))); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWriteFile measures streaming a checkpoint to disk (including fsync).
func BenchmarkWriteFile(b *testing.B) {
	c, err := OpenDir(filepath.Join(fixtures, "A"))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	var ts []Tensor
	for _, n := range c.Names() {
		t, _ := c.Tensor(n)
		ts = append(ts, t)
	}
	b.SetBytes(c.TotalSize())
	dir := b.TempDir()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if err := WriteFile(filepath.Join(dir, fmt.Sprint(i%2, ".safetensors")), ts, nil); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
