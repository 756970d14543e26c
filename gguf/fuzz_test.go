package gguf

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse feeds arbitrary bytes to the header parser. It must never panic; a
// rejection must be an *Error with an offset inside the input; an accepted file
// must have every tensor view inside the input and must survive re-encoding
// (header written back by the writer's encoder, data section copied) unchanged.
func FuzzParse(f *testing.F) {
	dir := f.TempDir()
	seed := func(name string, kvs []KV, ts []testTensor) {
		path := filepath.Join(dir, name)
		writeTestFile(f, path, kvs, ts)
		b, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	ts := testTensors(f)
	seed("all.gguf", allValueKVs(), ts[:4])
	seed("empty.gguf", nil, nil)
	seed("align64.gguf", []KV{{AlignmentKey, Uint32(64)}, {"a", ArrayOf([]string{"x", "yz"})}}, ts[6:9])
	meta, err := DBRXMetadata(tinyDBRX())
	if err != nil {
		f.Fatal(err)
	}
	seed("dbrx.gguf", meta, nil)
	base, _ := baseSpec().build()
	f.Add(base)
	v2 := bytes.Clone(base)
	v2[4] = 2
	f.Add(v2)

	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse("fuzz", data)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Offset < 0 || e.Offset > int64(len(data)) {
				t.Fatalf("bad error %v", err)
			}
			return
		}
		for _, ti := range file.Tensors() {
			b, _, ok := file.TensorData(ti.Name)
			if !ok || uint64(len(b)) != ti.Size || ti.Offset%file.Alignment() != 0 {
				t.Fatalf("tensor %q: view %d bytes, info %+v", ti.Name, len(b), ti)
			}
			_ = ti.Shape()
		}
		for _, kv := range file.Metadata() {
			_ = kv.Value.String()
		}

		if file.Alignment() > 1<<16 {
			return // valid, but re-encoding would allocate the huge padding
		}
		out := encodeHeader(file.Metadata(), file.Tensors())
		out = append(out, make([]byte, alignUp(uint64(len(out)), file.Alignment())-uint64(len(out)))...)
		if file.DataOffset() <= int64(len(data)) {
			out = append(out, data[file.DataOffset():]...)
		}
		again, err := Parse("fuzz2", out)
		if err != nil {
			t.Fatalf("re-encoded file rejected: %v", err)
		}
		if len(again.Metadata()) != len(file.Metadata()) || len(again.Tensors()) != len(file.Tensors()) {
			t.Fatal("re-encoded file differs in counts")
		}
		for i, kv := range file.Metadata() {
			kv2 := again.Metadata()[i]
			if kv2.Key != kv.Key || !bytes.Equal(valueBytes(kv2.Value), valueBytes(kv.Value)) {
				t.Fatalf("kv %d differs after re-encoding", i)
			}
		}
		for i, ti := range file.Tensors() {
			t2 := again.Tensors()[i]
			a, _, _ := file.TensorData(ti.Name)
			b, _, _ := again.TensorData(ti.Name)
			if t2.Name != ti.Name || t2.Type != ti.Type || t2.Offset != ti.Offset || t2.Size != ti.Size ||
				!equalU64(t2.Dims, ti.Dims) || !bytes.Equal(a, b) {
				t.Fatalf("tensor %d differs after re-encoding", i)
			}
		}
	})
}
