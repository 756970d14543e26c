package data

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

func writeShard(t testing.TB, path string, docs [][]int) {
	t.Helper()
	w, err := CreateShard(path, EndOfText)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range docs {
		if err := w.WriteDocument(d); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestShardRoundTrip(t *testing.T) {
	dir := t.TempDir()
	big := make([]int, 70000) // crosses the writer's internal buffer
	for i := range big {
		big[i] = i * 7 % 100000
	}
	docs := [][]int{{1, 2, 3}, {}, big, {99999, 0}}
	path := filepath.Join(dir, "a.tok")
	writeShard(t, path, docs)
	var want []uint32
	for _, d := range docs {
		for _, id := range d {
			want = append(want, uint32(id))
		}
		want = append(want, EndOfText)
	}
	s, err := OpenShard(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	h := s.Header()
	if h.Tokens != int64(len(want)) || h.Documents != 4 || h.EOT != EndOfText || h.Version != Version || h.DType != DTypeUint32 {
		t.Errorf("header %+v", h)
	}
	if !slices.Equal(s.Tokens(), want) {
		t.Error("tokens differ")
	}
	if err := s.Verify(); err != nil {
		t.Error(err)
	}
	fi, _ := os.Stat(path)
	if fi.Size() != h.FileSize() {
		t.Errorf("file size %d, header says %d", fi.Size(), h.FileSize())
	}
	if rh, err := ReadShardHeader(path); err != nil || rh != h {
		t.Errorf("ReadShardHeader = %+v, %v", rh, err)
	}
	// No temporary files are left behind.
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("directory holds %d entries", len(ents))
	}

	// WriteTokens counts documents by EOT ids; an empty shard is valid.
	w, err := CreateShard(filepath.Join(dir, "b.tok"), 7)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteTokens([]uint32{1, 7, 2, 7}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil || w.Documents() != 2 || w.Tokens() != 4 {
		t.Errorf("WriteTokens: %v docs %d tokens %d", err, w.Documents(), w.Tokens())
	}
	writeShard(t, filepath.Join(dir, "empty.tok"), nil)
	e, err := OpenShard(filepath.Join(dir, "empty.tok"))
	if err != nil {
		t.Fatal(err)
	}
	if e.Len() != 0 || len(e.Tokens()) != 0 || e.Verify() != nil {
		t.Errorf("empty shard: len %d, verify %v", e.Len(), e.Verify())
	}
	e.Close()
}

func TestShardWriterBadIDAndAbort(t *testing.T) {
	dir := t.TempDir()
	w, err := CreateShard(filepath.Join(dir, "x.tok"), EndOfText)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteDocument([]int{1, -1}); err == nil {
		t.Error("negative id accepted")
	}
	w.Abort()
	if err := w.Close(); err == nil {
		t.Error("Close after Abort succeeded")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("Abort left %d files", len(ents))
	}
}

// A failed Close (here the rename, over a directory) names the shard and leaves no
// temporary file; a successful one gives an ordinary 0644 file.
func TestShardWriterCloseFailure(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "x.tok")
	if err := os.MkdirAll(filepath.Join(p, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	w, err := CreateShard(p, EndOfText)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteDocument([]int{1, 2}); err != nil {
		t.Fatal(err)
	}
	err = w.Close()
	if err == nil || !strings.HasPrefix(err.Error(), "data: ") || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "rename") {
		t.Fatalf("Close onto a directory: %v, want a data: error naming %s and the rename", err, p)
	}
	if err2 := w.Close(); err2 == nil || err2.Error() != err.Error() {
		t.Errorf("second Close = %v, want the first error again", err2)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 || ents[0].Name() != "x.tok" || !ents[0].IsDir() {
		t.Errorf("failed Close left %v, want just the directory", ents)
	}

	good := filepath.Join(dir, "good.tok")
	writeShard(t, good, [][]int{{5}})
	fi, err := os.Stat(good)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm() != 0o644 {
		t.Errorf("shard mode %v, want 0644", fi.Mode().Perm())
	}
}

// patch rewrites a header field and (if fix) the header checksum.
func patch(b []byte, off int, v uint64, size int, fix bool) []byte {
	b = slices.Clone(b)
	switch size {
	case 4:
		binary.LittleEndian.PutUint32(b[off:], uint32(v))
	case 8:
		binary.LittleEndian.PutUint64(b[off:], v)
	case 1:
		b[off] = byte(v)
	}
	if fix {
		binary.LittleEndian.PutUint32(b[offHeaderCRC:], crc32.Checksum(b[:offHeaderCRC], castagnoli))
	}
	return b
}

func TestCorruptShards(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.tok")
	writeShard(t, good, [][]int{{5, 6, 7}, {8}})
	orig, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	n := int64(len(orig))
	cases := []struct {
		name    string
		b       []byte
		kind    error
		off     int64
		verify  bool // error only from Verify
		openErr bool
	}{
		{"empty", nil, ErrTruncated, 0, false, true},
		{"short header", orig[:40], ErrTruncated, 40, false, true},
		{"not a shard", []byte("hello"), ErrMagic, 0, false, true},
		{"magic", patch(orig, 0, 'X', 1, true), ErrMagic, 0, false, true},
		{"version", patch(orig, offVersion, 2, 4, true), ErrVersion, offVersion, false, true},
		{"header crc", patch(orig, offTokens, 3, 8, false), ErrChecksum, offHeaderCRC, false, true},
		{"header size", patch(orig, offHdrSize, 128, 4, true), ErrHeader, offHdrSize, false, true},
		{"dtype", patch(orig, offDType, 2, 4, true), ErrDType, offDType, false, true},
		{"reserved", patch(orig, offReserved+3, 1, 1, true), ErrHeader, offReserved + 3, false, true},
		{"docs > tokens", patch(orig, offDocs, 99, 8, true), ErrHeader, offDocs, false, true},
		{"huge count", patch(orig, offTokens, 1<<62, 8, true), ErrHeader, offTokens, false, true},
		{"truncated payload", orig[:n-2], ErrTruncated, n - 2, false, true},
		{"trailing bytes", append(slices.Clone(orig), 0, 0, 0, 0), ErrSize, n, false, true},
		{"payload flip", patch(orig, HeaderSize+4, 0x55, 1, false), ErrChecksum, HeaderSize, true, false},
		{"doc count", patch(orig, offDocs, 1, 8, true), ErrChecksum, offDocs, true, false},
	}
	for _, c := range cases {
		p := filepath.Join(dir, "bad.tok")
		if err := os.WriteFile(p, c.b, 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := OpenShard(p)
		if c.openErr != (err != nil) {
			t.Errorf("%s: OpenShard err = %v", c.name, err)
			if s != nil {
				s.Close()
			}
			continue
		}
		if err == nil {
			err = s.Verify()
			s.Close()
		}
		var fe *FormatError
		if !errors.Is(err, c.kind) || !errors.As(err, &fe) || fe.Offset != c.off || fe.File != p {
			t.Errorf("%s: err = %v, want %v at offset %d in %s", c.name, err, c.kind, c.off, p)
		}
	}
	if _, err := OpenShard(filepath.Join(dir, "missing.tok")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}
