package safetensors

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParseHeader feeds arbitrary prefixes to ParseHeader with a file size of len(b)
// plus extra (so large data sections need no large inputs). ParseHeader must not
// panic, must fail with a *FormatError, and on success its header must satisfy every
// documented invariant and survive re-encoding unchanged.
func FuzzParseHeader(f *testing.F) {
	paths, _ := filepath.Glob(filepath.Join(fixtures, "*", "*.safetensors"))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		n := 8 + int64(binary.LittleEndian.Uint64(b))
		f.Add(b[:n], uint32(int64(len(b))-n))
	}
	for _, tc := range corruptCases() {
		f.Add(tc.file, uint32(0))
	}
	f.Add(smallFile(f), uint32(0))
	f.Add(rawFile(`{"b":{"dtype":"U8","shape":[2],"data_offsets":[10,12]},`+okEntry+`}`, 20), uint32(0))
	f.Add(rawFile(`{"z1":{"dtype":"F32","shape":[0,5],"data_offsets":[4,4]},"s":{"dtype":"BOOL","shape":[],"data_offsets":[0,1]}}`, 0), uint32(8))

	f.Fuzz(func(t *testing.T, b []byte, extra uint32) {
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
