package safetensors

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dbrx-engine/dbrx/tensor"
)

// shardedDir writes a two-shard checkpoint: a, b in shard 1 and c in shard 2.
func shardedDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	ts := []Tensor{
		{Name: "a", DType: tensor.F32, Shape: tensor.Shape{2}, Data: make([]byte, 8)},
		{Name: "b", DType: tensor.F32, Shape: tensor.Shape{2}, Data: make([]byte, 8)},
		{Name: "c", DType: tensor.BF16, Shape: tensor.Shape{8}, Data: make([]byte, 16)},
	}
	if err := WriteDir(dir, ts, nil, 16); err != nil {
		t.Fatal(err)
	}
	return dir
}

const (
	shard1 = "model-00001-of-00002.safetensors"
	shard2 = "model-00002-of-00002.safetensors"
)

func TestOpenDirSharded(t *testing.T) {
	dir := shardedDir(t)
	c, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := strings.Join(c.Names(), ","); got != "a,b,c" {
		t.Errorf("Names %s", got)
	}
	byIndex, err := OpenDir(filepath.Join(dir, IndexFileName))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(byIndex.Files(), c.Files()) || !slices.Equal(byIndex.Names(), c.Names()) {
		t.Errorf("opened by index path: %v %v", byIndex.Files(), byIndex.Names())
	}
	byIndex.Close()
	if f, _ := c.FileOf("c"); filepath.Base(f) != shard2 {
		t.Errorf("c in %s", f)
	}
	if info, ok := c.Info("c"); !ok || info.DType != tensor.BF16 || info.Begin != 0 || info.End != 16 {
		t.Errorf("Info(c) = %+v", info)
	}
	if _, ok := c.Tensor("zzz"); ok {
		t.Error("Tensor(zzz) found")
	}
	if _, ok := c.Info("zzz"); ok {
		t.Error("Info(zzz) found")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Tensor("a"); ok {
		t.Error("Tensor after Close")
	}
}

func TestOpenDirNotFound(t *testing.T) {
	if _, err := OpenDir(t.TempDir()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("empty dir: %v", err)
	}
	if _, err := OpenDir(filepath.Join(t.TempDir(), "nope")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing dir: %v", err)
	}
}

func TestIndexErrors(t *testing.T) {
	const ok = `{"metadata":{"total_size":32},"weight_map":{"a":"` + shard1 + `","b":"` + shard1 + `","c":"` + shard2 + `"}}`
	cases := []struct {
		name  string
		index string
		setup func(t *testing.T, dir string)
		kinds []error
		file  string   // file the error must name: "index", shard1, shard2
		at    string   // substring of the index at the error offset
		msg   []string // substrings of the message
	}{
		{name: "invalid JSON", index: `{"weight_map":{"a":}}`, kinds: []error{ErrIndex}, file: "index", at: `}}`},
		{name: "not an object", index: `[]`, kinds: []error{ErrIndex}, file: "index", at: `[]`},
		{name: "no weight_map", index: `{"metadata":{}}`, kinds: []error{ErrIndex}, file: "index", msg: []string{"weight_map: missing"}},
		{name: "weight_map not object", index: `{"weight_map":[]}`, kinds: []error{ErrIndex}, file: "index", at: `[]`},
		{name: "weight_map empty", index: `{"weight_map":{}}`, kinds: []error{ErrIndex}, file: "index", at: `{}`},
		{name: "metadata not object", index: `{"metadata":3,"weight_map":{"a":"x"}}`, kinds: []error{ErrIndex}, file: "index", at: `3`},
		{name: "shard not a string", index: `{"weight_map":{"a":1}}`, kinds: []error{ErrIndex}, file: "index", at: `1}`},
		{name: "shard outside dir", index: `{"weight_map":{"a":"../x.safetensors"}}`, kinds: []error{ErrIndex}, file: "index", at: `"../`, msg: []string{"inside the checkpoint directory"}},
		{name: "absolute shard", index: `{"weight_map":{"a":"/etc/passwd"}}`, kinds: []error{ErrIndex}, file: "index", at: `"/etc`},
		{name: "duplicate key", index: `{"weight_map":{"a":"` + shard1 + `","a":"` + shard1 + `"}}`, kinds: []error{ErrDuplicate, ErrIndex}, file: "index", at: `"a":"` + shard1 + `"}`},
		{
			name:  "missing shard file",
			index: strings.Replace(ok, `"c":"`+shard2, `"c":"model-00009-of-00009.safetensors`, 1),
			kinds: []error{ErrIndex, fs.ErrNotExist}, file: "index", at: `"c"`, msg: []string{"model-00009-of-00009.safetensors"},
		},
		{
			name:  "listed but absent from shard",
			index: strings.Replace(ok, `}}`, `,"ghost":"`+shard2+`"}}`, 1),
			kinds: []error{ErrIndex}, file: "index", at: `"ghost"`, msg: []string{`"ghost"`, "absent", shard2},
		},
		{
			name:  "claimed by another file",
			index: strings.Replace(ok, `"b":"`+shard1, `"b":"`+shard2, 1),
			kinds: []error{ErrIndex}, file: "index", at: `"b"`, msg: []string{shard1, shard2},
		},
		{
			name:  "in shard but not in index",
			index: strings.Replace(ok, `"b":"`+shard1+`",`, ``, 1),
			kinds: []error{ErrIndex}, file: "index", msg: []string{`"b"`, shard1, "not listed"},
		},
		{
			name:  "same name in two shards",
			index: ok,
			setup: func(t *testing.T, dir string) {
				// Shard 2 also holds "a".
				ts := []Tensor{
					{Name: "a", DType: tensor.F32, Shape: tensor.Shape{2}, Data: make([]byte, 8)},
					{Name: "c", DType: tensor.BF16, Shape: tensor.Shape{8}, Data: make([]byte, 16)},
				}
				if err := WriteFile(filepath.Join(dir, shard2), ts, nil); err != nil {
					t.Fatal(err)
				}
			},
			kinds: []error{ErrDuplicate, ErrIndex}, file: shard2, msg: []string{`"a"`, shard1},
		},
		{
			name:  "corrupt shard",
			index: ok,
			setup: func(t *testing.T, dir string) {
				if err := os.WriteFile(filepath.Join(dir, shard2), []byte{1, 2, 3}, 0o644); err != nil {
					t.Fatal(err)
				}
			},
			kinds: []error{ErrTruncated}, file: shard2,
		},
		{name: "not UTF-8", index: "{\"weight_map\":{\"a\xff\":\"x\"}}", kinds: []error{ErrIndex}, file: "index"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := shardedDir(t)
			index := filepath.Join(dir, IndexFileName)
			if err := os.WriteFile(index, []byte(tc.index), 0o644); err != nil {
				t.Fatal(err)
			}
			if tc.setup != nil {
				tc.setup(t, dir)
			}
			c, err := OpenDir(dir)
			if err == nil {
				c.Close()
				t.Fatal("OpenDir succeeded")
			}
			t.Log(err)
			for _, k := range tc.kinds {
				if !errors.Is(err, k) {
					t.Errorf("%v does not match %v", err, k)
				}
			}
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("%T is not a *FormatError", err)
			}
			wantFile := index
			if tc.file != "index" {
				wantFile = filepath.Join(dir, tc.file)
			}
			if fe.File != wantFile || !strings.HasPrefix(err.Error(), "safetensors: "+wantFile+": ") {
				t.Errorf("error names %q, want %q", fe.File, wantFile)
			}
			if tc.at != "" {
				if want := int64(strings.Index(tc.index, tc.at)); fe.Offset != want {
					t.Errorf("offset %d, want %d", fe.Offset, want)
				}
			}
			for _, s := range tc.msg {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("message lacks %q", s)
				}
			}
		})
	}
}

// model.safetensors wins over an index, as in transformers.
func TestOpenDirPrefersSingleFile(t *testing.T) {
	dir := shardedDir(t)
	one := []Tensor{{Name: "only", DType: tensor.U8, Shape: tensor.Shape{1}, Data: []byte{7}}}
	if err := WriteFile(filepath.Join(dir, SingleFileName), one, nil); err != nil {
		t.Fatal(err)
	}
	c, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if n := c.Names(); len(n) != 1 || n[0] != "only" {
		t.Errorf("Names %v", n)
	}
}
