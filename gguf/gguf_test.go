package gguf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/dbrx-engine/dbrx/quant"
)

// allValueKVs has every value type, edge values, empty and nested arrays.
func allValueKVs() []KV {
	return []KV{
		{"general.architecture", String("test")},
		{"v.u8", Uint8(255)},
		{"v.i8", Int8(-128)},
		{"v.u16", Uint16(65535)},
		{"v.i16", Int16(-32768)},
		{"v.u32", Uint32(math.MaxUint32)},
		{"v.i32", Int32(math.MinInt32)},
		{"v.f32", Float32(float32(math.Inf(-1)))},
		{"v.f32nan", Float32(float32(math.NaN()))},
		{"v.bool.t", Bool(true)},
		{"v.bool.f", Bool(false)},
		{"v.str", String("héllo\x00wörld ✓")},
		{"v.str.empty", String("")},
		{"v.u64", Uint64(math.MaxUint64)},
		{"v.i64", Int64(math.MinInt64)},
		{"v.f64", Float64(math.SmallestNonzeroFloat64)},
		{"a.u8", ArrayOf([]uint8{0, 1, 255})},
		{"a.i8", ArrayOf([]int8{-1, 2})},
		{"a.u16", ArrayOf([]uint16{1, 65535})},
		{"a.i16", ArrayOf([]int16{-300})},
		{"a.u32", ArrayOf([]uint32{7, 8, 9})},
		{"a.i32", ArrayOf([]int32{-7, 1 << 30})},
		{"a.f32", ArrayOf([]float32{1.5, float32(math.Copysign(0, -1)), float32(math.Inf(1))})},
		{"a.bool", ArrayOf([]bool{true, false, true})},
		{"a.str", ArrayOf([]string{"a", "", "Ġthe", "<|im_end|>"})},
		{"a.u64", ArrayOf([]uint64{math.MaxUint64})},
		{"a.i64", ArrayOf([]int64{-1, math.MaxInt64})},
		{"a.f64", ArrayOf([]float64{math.Pi})},
		{"a.empty.str", ArrayOf([]string{})},
		{"a.empty.f32", ArrayOf[float32](nil)},
		{"a.nested", ArrayValue(NestedArray([]Array{
			MakeArray([]int32{1, 2}),
			MakeArray([]string{"x"}),
			NestedArray([]Array{MakeArray([]bool{true}), NestedArray(nil)}),
		}))},
	}
}

// valueBytes is the encoding of a value: equality that also holds for NaN.
func valueBytes(v Value) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, uint32(v.Type()))
	putValue(&b, v)
	return b.Bytes()
}

type testTensor struct {
	info TensorInfo
	data []byte
}

// testTensors quantizes small pseudo-random tensors of several types.
func testTensors(t testing.TB) []testTensor {
	t.Helper()
	specs := []struct {
		name string
		typ  quant.Type
		dims []uint64
	}{
		{"norm.weight", quant.F32, []uint64{7}},
		{"emb.f16", quant.F16, []uint64{3, 5}},
		{"emb.bf16", quant.BF16, []uint64{4, 1, 2}},
		{"w.q8_0", quant.Q8_0, []uint64{64, 3}},
		{"w.q4_0", quant.Q4_0, []uint64{32, 1, 1, 2}},
		{"w.q5_0", quant.Q5_0, []uint64{96}},
		{"w.q4_K", quant.Q4_K, []uint64{256, 3}},
		{"w.q5_K", quant.Q5_K, []uint64{512}},
		{"w.q6_K", quant.Q6_K, []uint64{256, 2}},
		{"empty", quant.F32, []uint64{0, 4}},
		{"w.q2_K.opaque", quant.Q2_K, []uint64{256}}, // known size, no codec here
	}
	var out []testTensor
	seed := uint32(1)
	for _, s := range specs {
		info := TensorInfo{Name: s.name, Type: s.typ, Dims: s.dims}
		n := int(info.NumElements())
		size, err := s.typ.RowBytes(int64(n))
		if err != nil {
			t.Fatal(err)
		}
		data := make([]byte, size)
		if s.typ.Supported() {
			x := make([]float32, n)
			for i := range x {
				seed = seed*1664525 + 1013904223
				x[i] = float32(int32(seed>>8)-1<<23) / (1 << 23)
			}
			if err := quant.Quantize(s.typ, data, x); err != nil {
				t.Fatal(err)
			}
		} else {
			for i := range data {
				data[i] = byte(i * 7)
			}
		}
		out = append(out, testTensor{info, data})
	}
	return out
}

func writeTestFile(t testing.TB, path string, kvs []KV, ts []testTensor) []TensorInfo {
	t.Helper()
	infos := make([]TensorInfo, len(ts))
	for i, x := range ts {
		infos[i] = x.info
	}
	w, err := Create(path, kvs, infos)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range ts {
		if err := w.WriteTensor(x.info.Name, x.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return w.Tensors()
}

func TestRoundTrip(t *testing.T) {
	for _, align := range []uint32{0, 32, 64, 1} {
		kvs := allValueKVs()
		if align != 0 {
			kvs = append(kvs, KV{AlignmentKey, Uint32(align)})
		}
		want := uint64(align)
		if align == 0 {
			want = DefaultAlignment
		}
		path := filepath.Join(t.TempDir(), "rt.gguf")
		ts := testTensors(t)
		written := writeTestFile(t, path, kvs, ts)

		f, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		if f.Version() != 3 || f.Alignment() != want || f.DataOffset()%int64(want) != 0 {
			t.Errorf("align %d: version %d alignment %d data offset %d", align, f.Version(), f.Alignment(), f.DataOffset())
		}
		md := f.Metadata()
		if len(md) != len(kvs) {
			t.Fatalf("%d kvs, want %d", len(md), len(kvs))
		}
		for i, kv := range kvs {
			if md[i].Key != kv.Key || !bytes.Equal(valueBytes(md[i].Value), valueBytes(kv.Value)) {
				t.Errorf("kv %d: got %s = %v, want %s = %v", i, md[i].Key, md[i].Value, kv.Key, kv.Value)
			}
			if v, ok := f.Lookup(kv.Key); !ok || v.Type() != kv.Value.Type() {
				t.Errorf("Lookup(%q) = %v, %v", kv.Key, v, ok)
			}
		}
		// llama.cpp's layout: contiguous, each tensor padded to the alignment, and the
		// file ends after the last tensor's padding.
		var off uint64
		for i, ti := range f.Tensors() {
			x := ts[i]
			if ti.Name != x.info.Name || ti.Type != x.info.Type || !equalU64(ti.Dims, x.info.Dims) ||
				ti.Size != uint64(len(x.data)) || ti.Offset != off || written[i].Offset != ti.Offset {
				t.Errorf("tensor %d: got %+v, want %+v at offset %d", i, ti, x.info, off)
			}
			off += alignUp(ti.Size, want)
			data, info, ok := f.TensorData(ti.Name)
			if !ok || !bytes.Equal(data, x.data) || info.Name != ti.Name || cap(data) != len(data) {
				t.Errorf("tensor %q: data mismatch", ti.Name)
			}
		}
		if st, _ := os.Stat(path); st.Size() != f.DataOffset()+int64(off) {
			t.Errorf("file size %d, want %d", st.Size(), f.DataOffset()+int64(off))
		}
		sh := f.Tensors()[2].Shape()
		if len(sh) != 3 || sh[0] != 2 || sh[1] != 1 || sh[2] != 4 {
			t.Errorf("Shape of dims {4,1,2} = %v", sh)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if _, _, ok := f.TensorData("w.q8_0"); ok {
			t.Error("TensorData after Close")
		}
		if err := f.Close(); err != nil {
			t.Error("second Close:", err)
		}
	}
}

func equalU64(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestGetters(t *testing.T) {
	kvs := []KV{
		{"u8", Uint8(7)}, {"i32", Int32(40)}, {"neg", Int32(-1)}, {"u64big", Uint64(1 << 40)},
		{"f32", Float32(1e-5)}, {"f64", Float64(0.25)}, {"s", String("dbrx")}, {"b", Bool(true)},
		{"toks", ArrayOf([]string{"a", "b"})}, {"types", ArrayOf([]int32{1, 3})},
	}
	path := filepath.Join(t.TempDir(), "g.gguf")
	writeTestFile(t, path, kvs, nil)
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if v, err := f.GetUint32("u8"); err != nil || v != 7 {
		t.Errorf("GetUint32(u8) = %d, %v", v, err)
	}
	if v, err := f.GetUint32("i32"); err != nil || v != 40 {
		t.Errorf("GetUint32(i32) = %d, %v", v, err)
	}
	if v, err := f.GetInt64("neg"); err != nil || v != -1 {
		t.Errorf("GetInt64(neg) = %d, %v", v, err)
	}
	if v, err := f.GetUint64("u64big"); err != nil || v != 1<<40 {
		t.Errorf("GetUint64 = %d, %v", v, err)
	}
	if v, err := f.GetFloat32("f32"); err != nil || v != 1e-5 {
		t.Errorf("GetFloat32 = %g, %v", v, err)
	}
	if v, err := f.GetFloat32("f64"); err != nil || v != 0.25 {
		t.Errorf("GetFloat32(f64) = %g, %v", v, err)
	}
	if v, err := f.GetString("s"); err != nil || v != "dbrx" {
		t.Errorf("GetString = %q, %v", v, err)
	}
	if v, err := f.GetBool("b"); err != nil || !v {
		t.Errorf("GetBool = %v, %v", v, err)
	}
	if a, err := f.GetArray("toks"); err != nil || a.Len() != 2 || a.Elem() != TypeString || a.Index(1).String() != `"b"` {
		t.Errorf("GetArray = %v, %v", a, err)
	}
	if xs, err := GetArrayOf[int32](f, "types"); err != nil || len(xs) != 2 || xs[1] != 3 {
		t.Errorf("GetArrayOf[int32] = %v, %v", xs, err)
	}
	for _, c := range []struct {
		err  error
		call func() error
	}{
		{ErrNotFound, func() error { _, err := f.GetString("missing"); return err }},
		{ErrWrongType, func() error { _, err := f.GetString("u8"); return err }},
		{ErrWrongType, func() error { _, err := f.GetUint32("neg"); return err }},
		{ErrWrongType, func() error { _, err := f.GetUint32("u64big"); return err }},
		{ErrWrongType, func() error { _, err := f.GetFloat32("s"); return err }},
		{ErrWrongType, func() error { _, err := GetArrayOf[string](f, "types"); return err }},
		{ErrWrongType, func() error { _, err := f.GetArray("b"); return err }},
	} {
		err := c.call()
		if !errors.Is(err, c.err) {
			t.Errorf("got %v, want %v", err, c.err)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "gguf: "+path+": ") {
			t.Errorf("error %q does not name the file", err)
		}
	}
	_, err = f.GetUint32("neg")
	if !strings.Contains(err.Error(), "offset ") {
		t.Errorf("type error %q does not name the key's offset", err)
	}
}

func TestWriterMisuse(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "m.gguf")
	ts := testTensors(t)[:3]
	infos := []TensorInfo{ts[0].info, ts[1].info, ts[2].info}
	noFile := func(when string) {
		t.Helper()
		ents, _ := os.ReadDir(dir)
		if len(ents) != 0 {
			t.Errorf("%s: directory holds %v", when, ents)
		}
	}

	// Out of order, wrong size, short reader, missing tensor: the call (or Close)
	// fails, Close reports the failure, and nothing is left in the directory.
	for _, c := range []struct {
		name    string
		use     func(w *Writer) error
		callErr error // nil: the call succeeds
		closeIs error
	}{
		{"order", func(w *Writer) error { return w.WriteTensor(ts[1].info.Name, ts[1].data) }, ErrWriter, ErrWriter},
		{"size", func(w *Writer) error { return w.WriteTensor(ts[0].info.Name, ts[0].data[1:]) }, ErrWriter, ErrWriter},
		{"short", func(w *Writer) error {
			return w.WriteTensorFrom(ts[0].info.Name, bytes.NewReader(ts[0].data[:3]))
		}, io.EOF, io.EOF},
		{"missing", func(w *Writer) error { return w.WriteTensor(ts[0].info.Name, ts[0].data) }, nil, ErrWriter},
	} {
		w, err := Create(path, nil, infos)
		if err != nil {
			t.Fatal(err)
		}
		err = c.use(w)
		if (c.callErr == nil) != (err == nil) || (c.callErr != nil && !errors.Is(err, c.callErr)) {
			t.Errorf("%s: call error %v, want %v", c.name, err, c.callErr)
		}
		if err := w.Close(); !errors.Is(err, c.closeIs) {
			t.Errorf("%s: Close error %v, want %v", c.name, err, c.closeIs)
		}
		noFile(c.name)
	}

	// Abort discards; calls after Close/Abort fail; Close after Abort reports it.
	w, err := Create(path, nil, infos)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Abort(); err != nil {
		t.Fatal(err)
	}
	noFile("abort")
	if err := w.WriteTensor(ts[0].info.Name, ts[0].data); err == nil {
		t.Error("write after Abort succeeded")
	}
	if err := w.Close(); err == nil {
		t.Error("Close after Abort succeeded")
	}

	// Streaming from a reader works and a second Close is a no-op.
	w, err = Create(path, nil, infos[:1])
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteTensorFrom(ts[0].info.Name, bytes.NewReader(ts[0].data)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Error("second Close:", err)
	}
	if err := w.WriteTensor("x", nil); !errors.Is(err, ErrClosed) {
		t.Errorf("write after Close: %v", err)
	}
	if err := w.Abort(); err != nil {
		t.Error("Abort after Close:", err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Error("Abort after Close removed the file")
	}

	bad := []struct {
		name  string
		err   error
		kvs   []KV
		infos []TensorInfo
	}{
		{"dup key", ErrDuplicate, []KV{{"a", Uint8(1)}, {"a", Uint8(2)}}, nil},
		{"empty key", ErrCorrupt, []KV{{"", Uint8(1)}}, nil},
		{"zero value", ErrCorrupt, []KV{{"a", Value{}}}, nil},
		{"zero array", ErrCorrupt, []KV{{"a", ArrayValue(Array{})}}, nil},
		{"align type", ErrWrongType, []KV{{AlignmentKey, Uint64(32)}}, nil},
		{"align pow2", ErrCorrupt, []KV{{AlignmentKey, Uint32(48)}}, nil},
		{"dup tensor", ErrDuplicate, nil, []TensorInfo{infos[0], infos[0]}},
		{"long name", ErrCorrupt, nil, []TensorInfo{{Name: strings.Repeat("x", 64), Type: quant.F32, Dims: []uint64{1}}}},
		{"bad type", ErrUnknownType, nil, []TensorInfo{{Name: "x", Type: 4, Dims: []uint64{1}}}},
		{"5 dims", ErrCorrupt, nil, []TensorInfo{{Name: "x", Type: quant.F32, Dims: []uint64{1, 1, 1, 1, 1}}}},
		{"block", ErrCorrupt, nil, []TensorInfo{{Name: "x", Type: quant.Q4_K, Dims: []uint64{128, 2}}}},
		{"overflow", ErrCorrupt, nil, []TensorInfo{{Name: "x", Type: quant.F32, Dims: []uint64{1 << 40, 1 << 40}}}},
	}
	for _, c := range bad {
		if _, err := Create(path+".bad", c.kvs, c.infos); !errors.Is(err, c.err) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.err)
		}
	}
	if _, err := os.Stat(path + ".bad"); err == nil {
		t.Error("rejected Create left a file")
	}
}

// ---- hand-built files for corruption tests ----

// fileSpec builds a small GGUF file field by field, recording where each field
// starts, so tests can corrupt one field and check the offset in the error.
type fileSpec struct {
	magic         string
	version       uint32
	nTensors, nKV int64 // -1: actual counts
	kvs           []rawKV
	tensors       []rawTensor
	dataLen       int // bytes after the data section start
}

type rawKV struct {
	key     string
	keyLen  int64 // -1: len(key)
	typ     uint32
	payload []byte
}

type rawTensor struct {
	name   string
	dims   []uint64
	nDims  int64 // -1: len(dims)
	typ    uint32
	offset uint64
}

func u32b(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
func u64b(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }
func strb(s string) []byte { return append(u64b(uint64(len(s))), s...) }

func (s fileSpec) build() ([]byte, map[string]int) {
	marks := map[string]int{}
	var b []byte
	mark := func(k string) { marks[k] = len(b) }
	b = append(b, s.magic...)
	mark("version")
	b = append(b, u32b(s.version)...)
	nt, nk := s.nTensors, s.nKV
	if nt < 0 {
		nt = int64(len(s.tensors))
	}
	if nk < 0 {
		nk = int64(len(s.kvs))
	}
	mark("ntensors")
	b = append(b, u64b(uint64(nt))...)
	mark("nkv")
	b = append(b, u64b(uint64(nk))...)
	for i, kv := range s.kvs {
		p := "kv" + string(rune('0'+i))
		mark(p)
		kl := kv.keyLen
		if kl < 0 {
			kl = int64(len(kv.key))
		}
		b = append(b, u64b(uint64(kl))...)
		b = append(b, kv.key...)
		mark(p + ".type")
		b = append(b, u32b(kv.typ)...)
		mark(p + ".value")
		b = append(b, kv.payload...)
	}
	for i, t := range s.tensors {
		p := "t" + string(rune('0'+i))
		mark(p)
		b = append(b, strb(t.name)...)
		mark(p + ".ndims")
		nd := t.nDims
		if nd < 0 {
			nd = int64(len(t.dims))
		}
		b = append(b, u32b(uint32(nd))...)
		for _, d := range t.dims {
			b = append(b, u64b(d)...)
		}
		mark(p + ".type")
		b = append(b, u32b(t.typ)...)
		mark(p + ".offset")
		b = append(b, u64b(t.offset)...)
	}
	mark("end")
	for len(b)%32 != 0 {
		b = append(b, 0)
	}
	mark("data")
	b = append(b, make([]byte, s.dataLen)...)
	return b, marks
}

// baseSpec: two KVs and two tensors, a (F32 [32], 128 bytes at 0) and b (Q8_0
// [32, 2], 68 bytes at 128).
func baseSpec() fileSpec {
	return fileSpec{
		magic: "GGUF", version: 3, nTensors: -1, nKV: -1,
		kvs: []rawKV{
			{key: "general.architecture", keyLen: -1, typ: uint32(TypeString), payload: strb("test")},
			{key: "flag", keyLen: -1, typ: uint32(TypeBool), payload: []byte{1}},
		},
		tensors: []rawTensor{
			{name: "a", dims: []uint64{32}, nDims: -1, typ: uint32(quant.F32), offset: 0},
			{name: "b", dims: []uint64{32, 2}, nDims: -1, typ: uint32(quant.Q8_0), offset: 128},
		},
		dataLen: 128 + 68,
	}
}

// A failed commit (here the rename, onto a directory) is a *Error naming the file
// and the step, and leaves no temporary file; a committed file is an ordinary 0644 one.
func TestWriterCommitFailure(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "m.gguf")
	if err := os.MkdirAll(filepath.Join(path, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	ts := testTensors(t)[:1]
	write := func(path string) error {
		w, err := Create(path, nil, []TensorInfo{ts[0].info})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.WriteTensor(ts[0].info.Name, ts[0].data); err != nil {
			t.Fatal(err)
		}
		return w.Close()
	}
	err := write(path)
	var ge *Error
	if !errors.As(err, &ge) || ge.Msg != "rename" || !strings.HasPrefix(err.Error(), "gguf: "+path+": ") {
		t.Fatalf("Close onto a directory: %v, want a gguf *Error naming %s and the rename", err, path)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 || ents[0].Name() != "m.gguf" {
		t.Errorf("failed Close left %v, want just the directory", ents)
	}
	good := filepath.Join(dir, "good.gguf")
	if err := write(good); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(good)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", fi.Mode().Perm())
	}
}

func TestBaseSpecParses(t *testing.T) {
	data, _ := baseSpec().build()
	f, err := Parse("base.gguf", data)
	if err != nil {
		t.Fatal(err)
	}
	if b, ti, ok := f.TensorData("b"); !ok || len(b) != 68 || ti.Type != quant.Q8_0 {
		t.Fatalf("tensor b: %d bytes, %+v", len(b), ti)
	}
}

func TestCorrupt(t *testing.T) {
	type tc struct {
		name   string
		err    error
		mutate func(s *fileSpec)
		at     string // mark whose offset the error must name ("" = literal offset in atOff)
		atOff  int
	}
	cases := []tc{
		{"bad magic", ErrBadMagic, func(s *fileSpec) { s.magic = "GGML" }, "", 0},
		{"version 1", ErrVersion, func(s *fileSpec) { s.version = 1 }, "version", 0},
		{"version 4", ErrVersion, func(s *fileSpec) { s.version = 4 }, "version", 0},
		{"big endian", ErrVersion, func(s *fileSpec) { s.version = 3 << 24 }, "version", 0},
		{"huge kv count", ErrTruncated, func(s *fileSpec) { s.nKV = 1 << 60 }, "nkv", 0},
		{"huge tensor count", ErrTruncated, func(s *fileSpec) { s.nTensors = 1 << 60 }, "ntensors", 0},
		{"string length past EOF", ErrTruncated, func(s *fileSpec) { s.kvs[0].keyLen = 1 << 40 }, "kv0", 0},
		{"value string past EOF", ErrTruncated, func(s *fileSpec) { s.kvs[0].payload = u64b(1 << 62) }, "kv0.value", 0},
		{"empty key", ErrCorrupt, func(s *fileSpec) { s.kvs[1].key = "" }, "kv1", 0},
		{"duplicate key", ErrDuplicate, func(s *fileSpec) { s.kvs[1].key = s.kvs[0].key }, "kv1", 0},
		{"unknown value type", ErrUnknownType, func(s *fileSpec) { s.kvs[1].typ = 13 }, "kv1.type", 0},
		{"bad bool", ErrCorrupt, func(s *fileSpec) { s.kvs[1].payload = []byte{2} }, "kv1.value", 0},
		{"unknown array elem type", ErrUnknownType, func(s *fileSpec) {
			s.kvs[1] = rawKV{key: "arr", keyLen: -1, typ: uint32(TypeArray), payload: append(u32b(99), u64b(0)...)}
		}, "kv1.value", 0},
		{"array count past EOF", ErrTruncated, func(s *fileSpec) {
			s.kvs[1] = rawKV{key: "arr", keyLen: -1, typ: uint32(TypeArray), payload: append(u32b(uint32(TypeUint64)), u64b(1<<58)...)}
		}, "kv1.value", 0},
		{"string array count past EOF", ErrTruncated, func(s *fileSpec) {
			s.kvs[1] = rawKV{key: "arr", keyLen: -1, typ: uint32(TypeArray), payload: append(u32b(uint32(TypeString)), u64b(1<<40)...)}
		}, "kv1.value", 0},
		{"nesting", ErrCorrupt, func(s *fileSpec) {
			var p []byte
			for range 10 {
				p = append(p, append(u32b(uint32(TypeArray)), u64b(1)...)...)
			}
			p = append(p, append(u32b(uint32(TypeUint8)), u64b(0)...)...)
			s.kvs[1] = rawKV{key: "deep", keyLen: -1, typ: uint32(TypeArray), payload: p}
		}, "", -1},
		{"alignment type", ErrWrongType, func(s *fileSpec) {
			s.kvs[1] = rawKV{key: AlignmentKey, keyLen: -1, typ: uint32(TypeUint64), payload: u64b(32)}
		}, "kv1", 0},
		{"alignment zero", ErrCorrupt, func(s *fileSpec) {
			s.kvs[1] = rawKV{key: AlignmentKey, keyLen: -1, typ: uint32(TypeUint32), payload: u32b(0)}
		}, "kv1", 0},
		{"too many dims", ErrCorrupt, func(s *fileSpec) { s.tensors[0].nDims = 5 }, "t0.ndims", 0},
		{"dims overflow", ErrCorrupt, func(s *fileSpec) { s.tensors[1].dims = []uint64{1 << 32, 1 << 32} }, "", -1},
		{"unknown ggml type", ErrUnknownType, func(s *fileSpec) { s.tensors[1].typ = 4 }, "t1.type", 0},
		{"ggml type 1000", ErrUnknownType, func(s *fileSpec) { s.tensors[1].typ = 1000 }, "t1.type", 0},
		{"row not whole blocks", ErrCorrupt, func(s *fileSpec) { s.tensors[1].dims = []uint64{16, 4} }, "t1.type", 0},
		{"misaligned offset", ErrMisaligned, func(s *fileSpec) { s.tensors[1].offset = 129 }, "t1.offset", 0},
		{"tensor data past EOF", ErrTruncated, func(s *fileSpec) { s.tensors[1].offset = 1 << 20 }, "t1.offset", 0},
		{"tensor data end past EOF", ErrTruncated, func(s *fileSpec) { s.dataLen = 128 + 67 }, "t1.offset", 0},
		{"offset near 2^64", ErrTruncated, func(s *fileSpec) { s.tensors[1].offset = math.MaxUint64 - 31 }, "t1.offset", 0},
		{"overlap", ErrOverlap, func(s *fileSpec) { s.tensors[1].offset = 96 }, "t1.offset", 0},
		{"duplicate tensor", ErrDuplicate, func(s *fileSpec) { s.tensors[1].name = "a" }, "t1", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := baseSpec()
			c.mutate(&s)
			data, marks := s.build()
			_, err := Parse("bad.gguf", data)
			if !errors.Is(err, c.err) {
				t.Fatalf("got %v, want %v", err, c.err)
			}
			var e *Error
			if !errors.As(err, &e) || e.File != "bad.gguf" || e.Offset < 0 {
				t.Fatalf("error %v lacks file or offset", err)
			}
			if c.atOff >= 0 {
				want := c.atOff
				if c.at != "" {
					want = marks[c.at]
				}
				if e.Offset != int64(want) {
					t.Errorf("offset %d, want %d (%s): %v", e.Offset, want, c.at, err)
				}
			}
			if !strings.HasPrefix(err.Error(), "gguf: bad.gguf: offset ") {
				t.Errorf("message %q", err)
			}
			t.Log(err)
		})
	}
}

// TestTruncated cuts a written file at every byte: every cut before the end of
// the last tensor's data fails with ErrTruncated naming an offset; cuts inside the
// final padding still parse (llama.cpp only needs each tensor inside the file).
func TestTruncated(t *testing.T) {
	path := filepath.Join(t.TempDir(), "t.gguf")
	ts := testTensors(t)[:4]
	writeTestFile(t, path, allValueKVs()[:6], ts)
	full, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := Parse("t.gguf", full)
	if err != nil {
		t.Fatal(err)
	}
	last := f.Tensors()[len(f.Tensors())-1]
	need := f.DataOffset() + int64(last.Offset+last.Size)
	for cut := 0; cut < len(full); cut++ {
		_, err := Parse("t.gguf", full[:cut])
		if int64(cut) >= need {
			if err != nil {
				t.Errorf("cut %d (inside final padding): %v", cut, err)
			}
			continue
		}
		var e *Error
		if !errors.Is(err, ErrTruncated) || !errors.As(err, &e) || e.Offset < 0 || e.Offset > int64(cut) {
			t.Fatalf("cut %d: %v", cut, err)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	if _, err := Open(filepath.Join(t.TempDir(), "missing.gguf")); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	empty := filepath.Join(t.TempDir(), "empty.gguf")
	os.WriteFile(empty, nil, 0o644)
	if _, err := Open(empty); !errors.Is(err, ErrTruncated) {
		t.Errorf("empty file: %v", err)
	}
}

func TestValueAccessors(t *testing.T) {
	if u, ok := Int8(-1).AsUint64(); ok {
		t.Errorf("AsUint64(int8 -1) = %d", u)
	}
	if i, ok := Uint64(math.MaxUint64).AsInt64(); ok {
		t.Errorf("AsInt64(max uint64) = %d", i)
	}
	if f, ok := Float32(0.5).AsFloat64(); !ok || f != 0.5 {
		t.Error("AsFloat64")
	}
	if _, ok := String("x").AsFloat64(); ok {
		t.Error("string as float")
	}
	if s := (Value{}).String(); s != "<invalid>" {
		t.Error(s)
	}
	a := MakeArray(make([]int32, 20))
	if s := a.String(); !strings.HasSuffix(s, "…]") || !strings.HasPrefix(s, "[int32 × 20:") {
		t.Error(s)
	}
	if ValueType(13).Valid() || ValueType(13).String() != "type(13)" || TypeFloat64.String() != "float64" {
		t.Error("ValueType names")
	}
}
