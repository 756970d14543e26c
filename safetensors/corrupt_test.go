package safetensors

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/dbrx-engine/dbrx/tensor"
)

// rawFile assembles a safetensors file from a literal header (unpadded) and dataLen
// bytes of data.
func rawFile(header string, dataLen int) []byte {
	b := make([]byte, 8, 8+len(header)+dataLen)
	binary.LittleEndian.PutUint64(b, uint64(len(header)))
	b = append(b, header...)
	for i := range dataLen {
		b = append(b, byte(i))
	}
	return b
}

func writeTemp(t testing.TB, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func lenPrefix(n uint64, rest string) []byte {
	b := binary.LittleEndian.AppendUint64(nil, n)
	return append(b, rest...)
}

// corruptCase is one malformed file. at, when set, is a substring of the header whose
// first byte is the expected error offset; otherwise off is the expected offset.
type corruptCase struct {
	name  string
	file  []byte
	kinds []error
	at    string
	off   int64
	msg   []string // substrings of the message
}

const okEntry = `"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}`

func corruptCases() []corruptCase {
	e := func(entry string) string { return `{"__metadata__":{"format":"pt"},` + entry + `}` }
	return []corruptCase{
		{name: "empty file", file: nil, kinds: []error{ErrTruncated}, off: 0, msg: []string{"0 bytes"}},
		{name: "short file", file: []byte{1, 0, 0}, kinds: []error{ErrTruncated}, off: 0, msg: []string{"3 bytes", "8-byte"}},
		{name: "header length past EOF", file: lenPrefix(100, `{}`), kinds: []error{ErrTruncated}, off: 0, msg: []string{"100", "10-byte file"}},
		{name: "absurd header length", file: lenPrefix(1<<40, `{}`), kinds: []error{ErrBadHeader}, off: 0, msg: []string{"1099511627776", "limit"}},
		{name: "max uint64 header length", file: lenPrefix(^uint64(0), `{}`), kinds: []error{ErrBadHeader}, off: 0},
		{name: "empty header", file: rawFile(``, 0), kinds: []error{ErrBadHeader}, off: 8, msg: []string{"empty"}},
		{name: "invalid JSON", file: rawFile(`{"a":{"dtype":"F32",}}`, 0), kinds: []error{ErrBadHeader}, at: `}}`, msg: []string{"invalid JSON"}},
		{name: "unterminated JSON", file: rawFile(`{"a":{"dtype":"F32"`, 0), kinds: []error{ErrBadHeader}, off: 8 + 19, msg: []string{"end of input"}},
		{name: "header is an array", file: rawFile(`[1,2]`, 0), kinds: []error{ErrBadHeader}, off: 8, msg: []string{"not a JSON object"}},
		{name: "trailing data", file: rawFile(`{} x`, 0), kinds: []error{ErrBadHeader}, at: `x`, msg: []string{"after top-level value"}},
		{name: "two objects", file: rawFile(`{}{}`, 0), kinds: []error{ErrBadHeader}, off: 10},
		{name: "NUL padding", file: rawFile("{}\x00\x00", 0), kinds: []error{ErrBadHeader}, off: 10, msg: []string{`'\x00'`}},
		{name: "invalid UTF-8", file: rawFile("{\"a\xff\":{}}", 0), kinds: []error{ErrBadHeader}, off: 11, msg: []string{"UTF-8"}},
		{name: "entry is a number", file: rawFile(e(`"a":5`), 0), kinds: []error{ErrBadHeader}, at: `5}`, msg: []string{`"a"`, "must be an object", "number 5"}},
		{name: "entry is null", file: rawFile(e(`"a":null`), 0), kinds: []error{ErrBadHeader}, at: `null`},
		{name: "unknown dtype", file: rawFile(e(`"a":{"dtype":"F17","shape":[2],"data_offsets":[0,8]}`), 8), kinds: []error{ErrDType}, at: `"F17"`, msg: []string{`unknown dtype "F17"`, `"a".dtype`}},
		{name: "unsupported dtype", file: rawFile(e(`"a":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}`), 2), kinds: []error{ErrDType}, at: `"F8_E4M3"`, msg: []string{"unsupported dtype", "F8_E4M3"}},
		{name: "lower-case dtype", file: rawFile(e(`"a":{"dtype":"f32","shape":[2],"data_offsets":[0,8]}`), 8), kinds: []error{ErrDType}, at: `"f32"`},
		{name: "dtype not a string", file: rawFile(e(`"a":{"dtype":3,"shape":[2],"data_offsets":[0,8]}`), 8), kinds: []error{ErrDType}, at: `3,`},
		{name: "missing dtype", file: rawFile(e(`"a":{"shape":[2],"data_offsets":[0,8]}`), 8), kinds: []error{ErrDType}, at: `{"shape"`, msg: []string{"missing"}},
		{name: "negative dim", file: rawFile(e(`"a":{"dtype":"F32","shape":[2,-1],"data_offsets":[0,8]}`), 8), kinds: []error{ErrShape}, at: `[2,-1]`, msg: []string{"negative", "-1"}},
		{name: "fractional dim", file: rawFile(e(`"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,8]}`), 8), kinds: []error{ErrShape}, at: `[1.5]`, msg: []string{"not an integer"}},
		{name: "huge dim", file: rawFile(e(`"a":{"dtype":"F32","shape":[99999999999999999999],"data_offsets":[0,8]}`), 8), kinds: []error{ErrShape}, at: `[9`, msg: []string{"too large"}},
		{name: "shape null", file: rawFile(e(`"a":{"dtype":"F32","shape":null,"data_offsets":[0,8]}`), 8), kinds: []error{ErrShape}, at: `null`},
		{name: "numel overflow", file: rawFile(e(`"a":{"dtype":"F32","shape":[2147483647,2147483647,2147483647],"data_offsets":[0,8]}`), 8), kinds: []error{ErrShape}, at: `[21`, msg: []string{"overflows"}},
		{name: "byte size overflow", file: rawFile(e(`"a":{"dtype":"F64","shape":[1073741824,1073741824,4],"data_offsets":[0,8]}`), 8), kinds: []error{ErrShape}, at: `[10`, msg: []string{"overflows"}},
		{name: "offsets three ints", file: rawFile(e(`"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8,9]}`), 8), kinds: []error{ErrOffsets}, at: `[0,8,9]`, msg: []string{"[begin, end]", "array of 3"}},
		{name: "offsets strings", file: rawFile(e(`"a":{"dtype":"F32","shape":[2],"data_offsets":["0","8"]}`), 8), kinds: []error{ErrOffsets}, at: `["0"`, msg: []string{"not an integer"}},
		{name: "offsets object", file: rawFile(e(`"a":{"dtype":"F32","shape":[2],"data_offsets":{}}`), 8), kinds: []error{ErrOffsets}, at: `{}}`},
		{name: "negative offset", file: rawFile(e(`"a":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}`), 8), kinds: []error{ErrOffsets}, at: `[-8`, msg: []string{"negative"}},
		{name: "missing offsets", file: rawFile(e(`"a":{"dtype":"F32","shape":[2]}`), 8), kinds: []error{ErrOffsets}, at: `{"dtype"`, msg: []string{"missing"}},
		{name: "end before begin", file: rawFile(e(`"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}`), 8), kinds: []error{ErrOffsets}, at: `[8,0]`, msg: []string{"end 0 is before begin 8"}},
		{name: "end past data", file: rawFile(e(`"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}`), 7), kinds: []error{ErrOffsets, ErrTruncated}, at: `[0,8]`, msg: []string{"past the end of the 7-byte data section"}},
		{name: "size mismatch", file: rawFile(e(`"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}`), 12), kinds: []error{ErrSize}, at: `[0,8]`, msg: []string{"spans 8 bytes", "needs 12", "3 elements × 4 bytes"}},
		{name: "overlap", file: rawFile(e(okEntry+`,"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}`), 12), kinds: []error{ErrOverlap}, at: `"b"`, msg: []string{`"a"`, `"b"`, "[4, 12)", "[0, 8)"}},
		{name: "duplicate name", file: rawFile(e(okEntry+`,`+okEntry), 8), kinds: []error{ErrDuplicate}, at: `"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, msg: []string{`key "a" twice`}},
		{name: "duplicate metadata", file: rawFile(`{"__metadata__":{},"__metadata__":{}}`, 0), kinds: []error{ErrDuplicate}, off: 8 + 19},
		{name: "duplicate field", file: rawFile(`{"a":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, 8), kinds: []error{ErrDuplicate}, at: `"dtype":"F32","shape"`},
		{name: "metadata value not string", file: rawFile(`{"__metadata__":{"format":"pt","n":3},`+okEntry+`}`, 8), kinds: []error{ErrMetadata}, at: `3}`, msg: []string{`"__metadata__"."n"`, "number 3"}},
		{name: "metadata not object", file: rawFile(`{"__metadata__":["pt"],`+okEntry+`}`, 8), kinds: []error{ErrMetadata}, at: `["pt"]`},
		{name: "metadata nested object", file: rawFile(`{"__metadata__":{"x":{}},`+okEntry+`}`, 8), kinds: []error{ErrMetadata}, at: `{}}`},
	}
}

func TestCorruptFiles(t *testing.T) {
	for _, tc := range corruptCases() {
		t.Run(tc.name, func(t *testing.T) {
			p := writeTemp(t, "model.safetensors", tc.file)
			f, err := Open(p)
			if err == nil {
				f.Close()
				t.Fatal("Open succeeded")
			}
			for _, k := range tc.kinds {
				if !errors.Is(err, k) {
					t.Errorf("error %q does not match %q", err, k)
				}
			}
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("error %T is not a *FormatError: %v", err, err)
			}
			want := tc.off
			if tc.at != "" {
				i := strings.Index(string(tc.file[8:]), tc.at)
				if i < 0 {
					t.Fatalf("bad test: %q not in header", tc.at)
				}
				want = 8 + int64(i)
			}
			if fe.File != p || fe.Offset != want {
				t.Errorf("File %q Offset %d, want %q %d (%v)", fe.File, fe.Offset, p, want, err)
			}
			msg := err.Error()
			t.Log(msg)
			prefix := "safetensors: " + p + ": offset " + strconv.FormatInt(want, 10) + ": "
			if !strings.HasPrefix(msg, prefix) {
				t.Errorf("message %q does not start with %q", msg, prefix)
			}
			for _, s := range tc.msg {
				if !strings.Contains(msg, s) {
					t.Errorf("message %q lacks %q", msg, s)
				}
			}
			// The pure parser agrees.
			if _, _, perr := ParseHeader(tc.file, int64(len(tc.file))); perr == nil || !errors.Is(perr, tc.kinds[0]) {
				t.Errorf("ParseHeader: %v", perr)
			}
		})
	}
}

func TestAcceptedVariations(t *testing.T) {
	cases := []struct {
		name   string
		header string
		data   int
		check  func(t *testing.T, f *File)
	}{
		{"no metadata", `{` + okEntry + `}`, 8, func(t *testing.T, f *File) {
			if f.Metadata() != nil {
				t.Errorf("metadata %v", f.Metadata())
			}
		}},
		{"null metadata", `{"__metadata__":null,` + okEntry + `}`, 8, nil},
		{"empty header object", `{}`, 0, func(t *testing.T, f *File) {
			if len(f.Tensors()) != 0 {
				t.Error("tensors in empty file")
			}
		}},
		{"whitespace everywhere", " {\n \"a\" :\t{ \"dtype\" : \"F32\" , \"shape\" : [ 2 ] ,\r\"data_offsets\":[ 0 ,8 ] } , \"__metadata__\" : { \"k\" : \"v\" } } ", 8, func(t *testing.T, f *File) {
			if a, ok := f.Tensor("a"); !ok || len(a.Data) != 8 || f.Metadata()["k"] != "v" {
				t.Errorf("a = %+v, metadata %v", a, f.Metadata())
			}
		}},
		{"whitespace padding", " \n\t{" + okEntry + "}  \r\n ", 8, nil},
		{"gap and trailing bytes", `{"b":{"dtype":"U8","shape":[2],"data_offsets":[10,12]},` + okEntry + `}`, 20, func(t *testing.T, f *File) {
			ts := f.Tensors()
			if len(ts) != 2 || ts[0].Name != "a" || ts[1].Name != "b" {
				t.Errorf("tensors not sorted by offset: %+v", ts)
			}
			b, _ := f.Tensor("b")
			if string(b.Data) != "\x0a\x0b" {
				t.Errorf("b data %x", b.Data)
			}
		}},
		{"BOOL as U8", `{"m":{"dtype":"BOOL","shape":[3],"data_offsets":[0,3]}}`, 3, func(t *testing.T, f *File) {
			m, _ := f.Tensor("m")
			if m.DType != tensor.U8 || len(m.Data) != 3 {
				t.Errorf("BOOL read as %s, %d bytes", m.DType, len(m.Data))
			}
		}},
		{"empty tensors share offsets", `{"z1":{"dtype":"F32","shape":[0,5],"data_offsets":[4,4]},"z2":{"dtype":"BF16","shape":[0],"data_offsets":[4,4]},` + okEntry + `}`, 8, func(t *testing.T, f *File) {
			z, ok := f.Tensor("z1")
			if !ok || len(z.Data) != 0 || !z.Shape.Equal(tensor.Shape{0, 5}) {
				t.Errorf("z1 = %v %+v", ok, z)
			}
		}},
		{"scalar", `{"s":{"dtype":"I64","shape":[],"data_offsets":[0,8]}}`, 8, func(t *testing.T, f *File) {
			s, _ := f.Tensor("s")
			if len(s.Shape) != 0 || len(s.Data) != 8 || s.DType != tensor.I64 {
				t.Errorf("scalar %+v", s)
			}
		}},
		{"all dtypes", `{"f64":{"dtype":"F64","shape":[1],"data_offsets":[0,8]},"i64":{"dtype":"I64","shape":[1],"data_offsets":[8,16]},` +
			`"i32":{"dtype":"I32","shape":[1],"data_offsets":[16,20]},"u32":{"dtype":"U32","shape":[1],"data_offsets":[20,24]},` +
			`"f16":{"dtype":"F16","shape":[1],"data_offsets":[24,26]},"bf16":{"dtype":"BF16","shape":[1],"data_offsets":[26,28]},` +
			`"i8":{"dtype":"I8","shape":[1],"data_offsets":[28,29]},"u8":{"dtype":"U8","shape":[1],"data_offsets":[29,30]}}`, 30, func(t *testing.T, f *File) {
			for _, n := range []string{"f64", "i64", "i32", "u32", "f16", "bf16", "i8", "u8"} {
				tt, _ := f.Tensor(n)
				if !strings.EqualFold(tt.DType.String(), n) {
					t.Errorf("%s read as %s", n, tt.DType)
				}
			}
		}},
		{"unknown entry keys ignored", `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"extra":[1,{"x":null}]}}`, 8, nil},
		{"escaped name", `{"a\"\u00e9\n":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`, 1, func(t *testing.T, f *File) {
			if _, ok := f.Tensor("a\"é\n"); !ok {
				t.Errorf("escaped name not decoded: %+v", f.Tensors())
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Open(writeTemp(t, "x.safetensors", rawFile(tc.header, tc.data)))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if tc.check != nil {
				tc.check(t, f)
			}
		})
	}
}

// smallFile is a valid file with a few tensors of mixed dtypes.
func smallFile(t testing.TB) []byte {
	t.Helper()
	p := filepath.Join(t.TempDir(), "small.safetensors")
	ts := []Tensor{
		{Name: "w", DType: tensor.F32, Shape: tensor.Shape{2, 3}, Data: make([]byte, 24)},
		{Name: "b", DType: tensor.BF16, Shape: tensor.Shape{3}, Data: []byte{1, 2, 3, 4, 5, 6}},
		{Name: "i", DType: tensor.I64, Shape: tensor.Shape{1}, Data: []byte{9, 9, 9, 9, 9, 9, 9, 9}},
	}
	if err := WriteFile(p, ts, map[string]string{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestTruncatedEverywhere(t *testing.T) {
	full := smallFile(t)
	dir := t.TempDir()
	p := filepath.Join(dir, "cut.safetensors")
	for cut := range len(full) {
		if err := os.WriteFile(p, full[:cut], 0o644); err != nil {
			t.Fatal(err)
		}
		f, err := Open(p)
		if err == nil {
			f.Close()
			t.Fatalf("cut at %d of %d: Open succeeded", cut, len(full))
		}
		var fe *FormatError
		if !errors.As(err, &fe) || fe.File != p {
			t.Fatalf("cut at %d: %v is not a FormatError naming the file", cut, err)
		}
		if !errors.Is(err, ErrTruncated) {
			t.Errorf("cut at %d: %v does not match ErrTruncated", cut, err)
		}
		// ParseHeader given a short buffer of a complete file also fails cleanly.
		if _, _, err := ParseHeader(full[:cut], int64(len(full))); err == nil {
			if hdrEnd := 8 + int64(binary.LittleEndian.Uint64(full)); int64(cut) < hdrEnd {
				t.Errorf("ParseHeader(prefix %d) succeeded", cut)
			}
		}
	}
	if f, err := Open(writeTemp(t, "full.safetensors", full)); err != nil {
		t.Fatal(err)
	} else {
		f.Close()
	}
}

func TestParseHeaderArgs(t *testing.T) {
	full := smallFile(t)
	if _, _, err := ParseHeader(full, int64(len(full))-1); !errors.Is(err, ErrTruncated) {
		t.Errorf("fileSize < len(b): %v", err)
	}
	h, start, err := ParseHeader(full, int64(len(full)))
	if err != nil {
		t.Fatal(err)
	}
	if start%8 != 0 || len(h.Tensors) != 3 || h.Metadata["k"] != "v" || h.Metadata["format"] != "pt" {
		t.Errorf("start %d header %+v", start, h)
	}
	// Just the header prefix is enough.
	if _, _, err := ParseHeader(full[:start], int64(len(full))); err != nil {
		t.Errorf("header prefix: %v", err)
	}
	var fe *FormatError
	_, _, err = ParseHeader(full[:start], start+4)
	if !errors.As(err, &fe) || fe.File != "" || !strings.HasPrefix(err.Error(), "safetensors: offset ") {
		t.Errorf("no-file error: %v", err)
	}
}

func TestJSONInt(t *testing.T) {
	cases := []struct {
		in    string
		v     int64
		isInt bool
		err   bool
	}{
		{"0", 0, true, false}, {"-0", 0, true, false}, {"17", 17, true, false}, {" 5 ", 5, true, false},
		{"9223372036854775807", 1<<63 - 1, true, false}, {"9223372036854775808", 0, true, true},
		{"-9223372036854775808", -1 << 63, true, false}, {"-9223372036854775809", 0, true, true},
		{"99999999999999999999999", 0, true, true}, {"01", 0, false, false}, {"1.0", 0, false, false},
		{"1e3", 0, false, false}, {"-", 0, false, false}, {"", 0, false, false}, {`"1"`, 0, false, false},
		{"true", 0, false, false}, {"--1", 0, false, false},
	}
	for _, c := range cases {
		v, isInt, err := jsonInt([]byte(c.in))
		if isInt != c.isInt || (err != nil) != c.err || (err == nil && v != c.v) {
			t.Errorf("jsonInt(%q) = %d, %v, %v", c.in, v, isInt, err)
		}
	}
}
