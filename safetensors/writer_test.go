package safetensors

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/dbrx-engine/dbrx/tensor"
)

func randTensor(r *rand.Rand, name string, dt tensor.DType, shape ...int) Tensor {
	s := tensor.Shape(shape)
	data := make([]byte, s.NumElements()*int64(dt.Size()))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	return Tensor{Name: name, DType: dt, Shape: s, Data: data}
}

func mixedTensors() []Tensor {
	r := rand.New(rand.NewPCG(1, 2))
	return []Tensor{
		randTensor(r, "embed", tensor.BF16, 7, 3), // 42 bytes: the next tensor starts unaligned
		randTensor(r, "w", tensor.F32, 5, 4),
		randTensor(r, "empty", tensor.F32, 0, 9),
		randTensor(r, "scalar", tensor.F64),
		randTensor(r, "h", tensor.F16, 17),
		randTensor(r, "ids", tensor.I64, 3),
		randTensor(r, "i32", tensor.I32, 2, 2),
		randTensor(r, "u32", tensor.U32, 1),
		randTensor(r, "q", tensor.I8, 33),
		randTensor(r, "mask", tensor.U8, 1, 1, 1, 5),
		randTensor(r, `we<ird> & "name"/ü`, tensor.F32, 1),
	}
}

func checkSame(t *testing.T, got Tensor, want Tensor) {
	t.Helper()
	if got.Name != want.Name || got.DType != want.DType || !got.Shape.Equal(want.Shape) || !bytes.Equal(got.Data, want.Data) {
		t.Errorf("tensor %q: got %s %v (%d bytes), want %s %v (%d bytes)", want.Name, got.DType, got.Shape, len(got.Data), want.DType, want.Shape, len(want.Data))
	}
}

func TestRoundTrip(t *testing.T) {
	ts := mixedTensors()
	p := filepath.Join(t.TempDir(), "rt.safetensors")
	md := map[string]string{"step": "12", "note": "<&>\n\"quoted\""}
	if err := WriteFile(p, ts, md); err != nil {
		t.Fatal(err)
	}
	f, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.DataOffset()%Alignment != 0 {
		t.Errorf("data starts at %d", f.DataOffset())
	}
	for i, info := range f.Tensors() {
		if info.Name != ts[i].Name {
			t.Errorf("tensor %d is %q, want %q (declared order)", i, info.Name, ts[i].Name)
		}
		got, ok := f.Tensor(ts[i].Name)
		if !ok {
			t.Fatalf("missing %q", ts[i].Name)
		}
		checkSame(t, got, ts[i])
	}
	if want := map[string]string{"step": "12", "note": "<&>\n\"quoted\"", "format": "pt"}; !equalMaps(f.Metadata(), want) {
		t.Errorf("metadata %v, want %v", f.Metadata(), want)
	}
	// An explicit format is kept.
	if err := WriteFile(p, ts[:1], map[string]string{"format": "np"}); err != nil {
		t.Fatal(err)
	}
	g, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if g.Metadata()["format"] != "np" {
		t.Errorf("format overwritten: %v", g.Metadata())
	}
	checkNoTemp(t, filepath.Dir(p))
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func checkNoTemp(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temporary file left behind: %s", e.Name())
		}
	}
}

// fileTensors returns the tensors of a file in storage order (views, valid until Close).
func fileTensors(t *testing.T, f *File) []Tensor {
	t.Helper()
	var ts []Tensor
	for _, info := range f.Tensors() {
		tt, _ := f.Tensor(info.Name)
		ts = append(ts, tt)
	}
	return ts
}

// The writer reproduces every fixture file byte for byte from its tensors and metadata.
func TestRewriteFixturesIdentical(t *testing.T) {
	paths, _ := filepath.Glob(filepath.Join(fixtures, "*", "*.safetensors"))
	if len(paths) < 8 {
		t.Fatalf("found only %d fixture files", len(paths))
	}
	out := t.TempDir()
	for _, p := range paths {
		f, err := Open(p)
		if err != nil {
			t.Fatal(err)
		}
		q := filepath.Join(out, "x.safetensors")
		if err := WriteFile(q, fileTensors(t, f), f.Metadata()); err != nil {
			t.Fatal(err)
		}
		f.Close()
		want, _ := os.ReadFile(p)
		got, _ := os.ReadFile(q)
		if !bytes.Equal(got, want) {
			t.Errorf("%s: rewritten file differs (%d vs %d bytes)", p, len(got), len(want))
		}
	}
}

// WriteDir reproduces fixture C (two shards and the index) byte for byte.
func TestWriteDirFixtureC(t *testing.T) {
	src := filepath.Join(fixtures, "C")
	c, err := OpenDir(src)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var all []Tensor
	var shard1 int64
	for i, f := range c.Shards() {
		ts := fileTensors(t, f)
		all = append(all, ts...)
		if i == 0 {
			for _, tt := range ts {
				shard1 += int64(len(tt.Data))
			}
		}
	}
	out := t.TempDir()
	if err := WriteDir(out, all, nil, shard1); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{IndexFileName, "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"} {
		want, _ := os.ReadFile(filepath.Join(src, name))
		got, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from the fixture (%d vs %d bytes)", name, len(got), len(want))
		}
	}
	ents, _ := os.ReadDir(out)
	if len(ents) != 3 {
		t.Errorf("%d files written, want 3", len(ents))
	}
}

func TestWriteDirLayouts(t *testing.T) {
	ts := mixedTensors()
	dir := filepath.Join(t.TempDir(), "ckpt")
	var total int64
	for _, tt := range ts {
		total += int64(len(tt.Data))
	}
	read := func(wantFiles int) {
		t.Helper()
		c, err := OpenDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if len(c.Files()) != wantFiles {
			t.Errorf("%d files, want %d: %v", len(c.Files()), wantFiles, c.Files())
		}
		names := c.Names()
		if len(names) != len(ts) || c.TotalSize() != total {
			t.Errorf("%d names, total %d; want %d, %d", len(names), c.TotalSize(), len(ts), total)
		}
		for _, want := range ts {
			got, ok := c.Tensor(want.Name)
			if !ok {
				t.Fatalf("missing %q", want.Name)
			}
			checkSame(t, got, want)
		}
		checkNoTemp(t, dir)
	}
	// Sharded: a limit of 40 bytes splits greedily; the 42-byte tensor gets its own shard.
	if err := WriteDir(dir, ts, nil, 40); err != nil {
		t.Fatal(err)
	}
	shards, _ := filepath.Glob(filepath.Join(dir, "model-*-of-*.safetensors"))
	n := len(shards)
	if n < 3 {
		t.Fatalf("%d shards", n)
	}
	read(n)
	if _, err := os.Stat(filepath.Join(dir, IndexFileName)); err != nil {
		t.Fatal(err)
	}
	// Rewriting as one file removes the index and the shards.
	if err := WriteDir(dir, ts, map[string]string{"x": "y"}, 0); err != nil {
		t.Fatal(err)
	}
	read(1)
	if left, _ := filepath.Glob(filepath.Join(dir, "model*")); !slices.Equal(left, []string{filepath.Join(dir, SingleFileName)}) {
		t.Errorf("files left: %v", left)
	}
	// Fewer shards than before: old extra shards and model.safetensors are removed.
	if err := WriteDir(dir, ts, nil, 40); err != nil {
		t.Fatal(err)
	}
	if err := WriteDir(dir, ts, nil, 100); err != nil {
		t.Fatal(err)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "model*"))
	m := len(left) - 1 // minus the index
	if m >= n || slices.Contains(left, filepath.Join(dir, SingleFileName)) {
		t.Errorf("files left: %v", left)
	}
	read(m)
	// A limit larger than everything gives a single file.
	if err := WriteDir(dir, ts, nil, 1<<30); err != nil {
		t.Fatal(err)
	}
	read(1)
	// Unrelated files are untouched.
	other := filepath.Join(dir, "config.json")
	os.WriteFile(other, []byte("{}"), 0o644)
	if err := WriteDir(dir, ts, nil, 40); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Error("config.json removed")
	}
}

func TestWriteDirErrors(t *testing.T) {
	dir := t.TempDir()
	ts := mixedTensors()
	bad := slices.Clone(ts)
	bad[1].Data = bad[1].Data[1:]
	if err := WriteDir(dir, bad, nil, 40); !errors.Is(err, ErrSize) {
		t.Errorf("short data: %v", err)
	}
	dup := append(slices.Clone(ts), ts[0])
	if err := WriteDir(dir, dup, nil, 40); !errors.Is(err, ErrDuplicate) {
		t.Errorf("duplicate: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("files written despite invalid input: %v", ents)
	}
}

func TestWriterStreaming(t *testing.T) {
	ts := mixedTensors()
	decl := make([]WriterTensor, len(ts))
	for i, tt := range ts {
		decl[i] = WriterTensor{tt.Name, tt.DType, tt.Shape}
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "s.safetensors")
	w, err := Create(p, decl, nil)
	if err != nil {
		t.Fatal(err)
	}
	if w.Path() != p {
		t.Errorf("Path %q", w.Path())
	}
	if err := w.WriteTensor(ts[1].Name, ts[1].Data); err == nil || !strings.Contains(err.Error(), "declared order") {
		t.Errorf("out of order: %v", err)
	}
	if err := w.WriteTensor(ts[0].Name, ts[0].Data[:3]); !errors.Is(err, ErrSize) {
		t.Errorf("short data: %v", err)
	}
	for _, tt := range ts { // the failed calls wrote nothing; the writer is still usable
		if err := w.WriteTensor(tt.Name, tt.Data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.WriteTensor("more", nil); err == nil {
		t.Error("write past the declared tensors succeeded")
	}
	if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
		t.Error("file visible before Close")
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	w.Abort() // no-op after Close
	if err := w.WriteTensor(ts[0].Name, ts[0].Data); err == nil {
		t.Error("write after Close succeeded")
	}
	f, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, tt := range ts {
		got, _ := f.Tensor(tt.Name)
		checkSame(t, got, tt)
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v", st.Mode())
	}
	checkNoTemp(t, dir)
}

func TestWriterIncompleteAndAbort(t *testing.T) {
	dir := t.TempDir()
	ts := mixedTensors()
	decl := []WriterTensor{{ts[0].Name, ts[0].DType, ts[0].Shape}, {ts[1].Name, ts[1].DType, ts[1].Shape}}
	p := filepath.Join(dir, "inc.safetensors")
	w, err := Create(p, decl, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteTensor(ts[0].Name, ts[0].Data); err != nil {
		t.Fatal(err)
	}
	err = w.Close()
	if err == nil || !strings.Contains(err.Error(), "1 of 2") || !strings.Contains(err.Error(), ts[1].Name) {
		t.Errorf("incomplete Close: %v", err)
	}
	if err2 := w.Close(); err2 == nil {
		t.Error("second Close of a failed writer returned nil")
	}
	if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
		t.Error("incomplete file left at the final path")
	}
	checkNoTemp(t, dir)

	// An existing file survives an aborted rewrite.
	if err := WriteFile(p, ts[:1], nil); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(p)
	w, err = Create(p, decl, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.WriteTensor(ts[0].Name, ts[0].Data)
	w.Abort()
	w.Abort()
	if err := w.Close(); err != nil {
		t.Errorf("Close after Abort: %v", err)
	}
	after, _ := os.ReadFile(p)
	if !bytes.Equal(before, after) {
		t.Error("aborted write changed the existing file")
	}
	checkNoTemp(t, dir)
}

func TestCreateErrors(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "e.safetensors")
	cases := []struct {
		name string
		decl []WriterTensor
		md   map[string]string
		kind error
	}{
		{"duplicate", []WriterTensor{{"a", tensor.F32, nil}, {"a", tensor.F32, nil}}, nil, ErrDuplicate},
		{"reserved name", []WriterTensor{{"__metadata__", tensor.F32, nil}}, nil, ErrBadHeader},
		{"invalid dtype", []WriterTensor{{"a", tensor.Invalid, tensor.Shape{1}}}, nil, ErrDType},
		{"unknown dtype", []WriterTensor{{"a", tensor.DType(200), tensor.Shape{1}}}, nil, ErrDType},
		{"negative dim", []WriterTensor{{"a", tensor.F32, tensor.Shape{-1}}}, nil, ErrShape},
		{"overflow", []WriterTensor{{"a", tensor.F64, tensor.Shape{1 << 30, 1 << 30, 1 << 30}}}, nil, ErrShape},
		{"total overflow", []WriterTensor{{"a", tensor.U8, tensor.Shape{1 << 30, 1 << 30, 4}}, {"b", tensor.U8, tensor.Shape{1 << 30, 1 << 30, 4}}}, nil, ErrOffsets},
		{"bad UTF-8 name", []WriterTensor{{"a\xff", tensor.F32, nil}}, nil, ErrBadHeader},
		{"bad UTF-8 metadata", nil, map[string]string{"k": "\xfe"}, ErrMetadata},
	}
	for _, tc := range cases {
		w, err := Create(p, tc.decl, tc.md)
		if err == nil {
			w.Abort()
			t.Errorf("%s: Create succeeded", tc.name)
			continue
		}
		if !errors.Is(err, tc.kind) || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: %v, want %v naming the path", tc.name, err, tc.kind)
		}
	}
	missing := filepath.Join(dir, "no", "such", "dir", "x.safetensors")
	if _, err := Create(missing, nil, nil); err == nil || !strings.HasPrefix(err.Error(), "safetensors: ") || !strings.Contains(err.Error(), missing) {
		t.Errorf("Create in a missing directory: %v, want a safetensors: error naming %s", err, missing)
	}
	if err := WriteFile(p, []Tensor{{Name: "a", DType: tensor.F32, Shape: tensor.Shape{2}, Data: make([]byte, 4)}}, nil); !errors.Is(err, ErrSize) {
		t.Errorf("WriteFile short data: %v", err)
	}
	checkNoTemp(t, dir)
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("files left: %v", ents)
	}
}

// A failed Close (here the rename, onto a directory) names the file and the step and
// leaves no temporary file.
func TestCloseFailure(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "m.safetensors")
	if err := os.MkdirAll(filepath.Join(p, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	err := WriteFile(p, []Tensor{{Name: "a", DType: tensor.F32, Shape: tensor.Shape{1}, Data: make([]byte, 4)}}, nil)
	if err == nil || !strings.HasPrefix(err.Error(), "safetensors: ") || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "rename") {
		t.Fatalf("WriteFile onto a directory: %v, want a safetensors: error naming %s and the rename", err, p)
	}
	checkNoTemp(t, dir)
}

// Tensors written with 8-byte header alignment come back naturally aligned when every
// tensor's size is a multiple of the largest element size, as in the fixtures.
func TestAlignment(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	ts := []Tensor{randTensor(r, "a", tensor.BF16, 6), randTensor(r, "b", tensor.F32, 5), randTensor(r, "c", tensor.F64, 3)}
	p := filepath.Join(t.TempDir(), "al.safetensors")
	if err := WriteFile(p, ts, nil); err != nil {
		t.Fatal(err)
	}
	f, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, tt := range ts {
		got, _ := f.Tensor(tt.Name)
		if a := uintptr(unsafe.Pointer(&got.Data[0])) % 4; a != 0 {
			t.Errorf("%s misaligned by %d", tt.Name, a)
		}
	}
}
