package safetensors

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParseHeader feeds arbitrary headers to ParseHeader. The input is the JSON
// header hdr, an adjustment lenAdj added to its length in the 8-byte prefix (0 keeps
// the prefix consistent, so mutations explore the JSON rather than break the prefix;
// other values exercise the length checks) and extra, the size of the data section
// beyond the header (so large tensors need no large inputs). ParseHeader must not
// panic, must fail with a *FormatError, and on success its header must satisfy every
// documented invariant, agree with encoding/json on the names, and survive re-encoding
// unchanged.
//
// Seeds are kept small (a fixture header is ~2 KB) because the fuzzer minimizes every
// new interesting input, which costs time quadratic in its size.
func FuzzParseHeader(f *testing.F) {
	add := func(file []byte, extra uint32) {
		if len(file) < 8 {
			f.Add(file, int64(0), extra)
			return
		}
		hdr := file[8:]
		f.Add(hdr, int64(binary.LittleEndian.Uint64(file))-int64(len(hdr)), extra)
	}
	// The fixtures' headers, cut down to their metadata and first two tensors.
	paths, _ := filepath.Glob(filepath.Join(fixtures, "*", "*.safetensors"))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		h, _, err := ParseHeader(b, int64(len(b)))
		if err != nil {
			f.Fatal(err)
		}
		enc, err := encodeHeader(h.Tensors[:2], h.Metadata)
		if err != nil {
			f.Fatal(err)
		}
		add(enc, uint32(h.Tensors[1].End))
	}
	for _, tc := range corruptCases() {
		add(tc.file, 0)
	}
	small := smallFile(f)
	n := 8 + int(binary.LittleEndian.Uint64(small))
	add(small[:n], uint32(len(small)-n))
	add(rawFile(`{"b":{"dtype":"U8","shape":[2],"data_offsets":[10,12]},`+okEntry+`}`, 0), 20)
	add(rawFile(`{"z1":{"dtype":"F32","shape":[0,5],"data_offsets":[4,4]},"s":{"dtype":"BOOL","shape":[],"data_offsets":[0,1]}}`, 0), 8)

	f.Fuzz(func(t *testing.T, hdr []byte, lenAdj int64, extra uint32) {
		b := binary.LittleEndian.AppendUint64(make([]byte, 0, 8+len(hdr)), uint64(int64(len(hdr))+lenAdj))
		b = append(b, hdr...)
		fileSize := int64(len(b)) + int64(extra)
		h, dataStart, err := ParseHeader(b, fileSize)
		if err != nil {
			var fe *FormatError
			if !errors.As(err, &fe) || fe.File != "" || fe.Err == nil || fe.Offset > fileSize {
				t.Fatalf("bad error %#v: %v", err, err)
			}
			return
		}
		if dataStart < 8 || dataStart > int64(len(b)) || dataStart > fileSize {
			t.Fatalf("dataStart %d, len(b) %d, fileSize %d", dataStart, len(b), fileSize)
		}
		dataSize := fileSize - dataStart
		var maxEnd int64
		names := make(map[string]bool)
		for i, ti := range h.Tensors {
			if names[ti.Name] || ti.Name == metadataKey {
				t.Fatalf("duplicate or reserved name %q", ti.Name)
			}
			names[ti.Name] = true
			if i > 0 && ti.Begin < h.Tensors[i-1].Begin {
				t.Fatal("not sorted by Begin")
			}
			if ti.Begin < 0 || ti.End < ti.Begin || ti.End > dataSize {
				t.Fatalf("%q: offsets [%d, %d) outside %d", ti.Name, ti.Begin, ti.End, dataSize)
			}
			if n := ti.Shape.NumElements(); n < 0 || n*int64(ti.DType.Size()) != ti.Size() || ti.DType.Size() == 0 {
				t.Fatalf("%q: %s %v does not fit %d bytes", ti.Name, ti.DType, ti.Shape, ti.Size())
			}
			if ti.Size() > 0 {
				if ti.Begin < maxEnd {
					t.Fatalf("%q overlaps", ti.Name)
				}
				maxEnd = ti.End
			}
		}
		// encoding/json, which checks syntax independently, sees the same names.
		var generic map[string]json.RawMessage
		if err := json.Unmarshal(b[8:dataStart], &generic); err != nil {
			t.Fatalf("accepted a header encoding/json rejects: %v", err)
		}
		delete(generic, metadataKey)
		if len(generic) != len(h.Tensors) {
			t.Fatalf("%d tensors, encoding/json sees %d keys", len(h.Tensors), len(generic))
		}
		for _, ti := range h.Tensors {
			if _, ok := generic[ti.Name]; !ok {
				t.Fatalf("tensor %q not a key for encoding/json", ti.Name)
			}
		}
		// Re-encode and parse again: same tensors, same metadata.
		enc, err := encodeHeader(h.Tensors, h.Metadata)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		h2, start2, err := ParseHeader(enc, int64(len(enc))+dataSize)
		if err != nil {
			t.Fatalf("re-parse: %v\n%s", err, enc[8:])
		}
		if start2%Alignment != 0 || len(h2.Tensors) != len(h.Tensors) || !equalMaps(h.Metadata, h2.Metadata) || (h.Metadata == nil) != (h2.Metadata == nil) {
			t.Fatalf("re-parse differs:\n%+v\n%+v", h, h2)
		}
		for i := range h.Tensors {
			a, b := h.Tensors[i], h2.Tensors[i]
			if a.Name != b.Name || a.DType != b.DType || !a.Shape.Equal(b.Shape) || a.Begin != b.Begin || a.End != b.End {
				t.Fatalf("tensor %d differs: %+v vs %+v", i, a, b)
			}
		}
	})
}
