package data

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzParseHeader checks that ParseHeader never panics, classifies every failure as a
// *FormatError with an offset inside the input, and that a header it accepts is
// re-encoded to the same bytes.
func FuzzParseHeader(f *testing.F) {
	good, _ := Header{Version: 1, DType: DTypeUint32, EOT: EndOfText, Tokens: 3, Documents: 1, PayloadCRC: 0xdeadbeef}.AppendBinary(nil)
	f.Add(good, int64(len(good)+12))
	f.Add(good, int64(-1))
	f.Add(good[:20], int64(20))
	f.Add([]byte("DBRXTOK1"), int64(8))
	f.Add(patch(good, offTokens, 1<<61, 8, true), int64(-1))
	f.Add(patch(good, offDocs, 7, 8, true), int64(-1))
	f.Add(patch(good, offVersion, 9, 4, true), int64(76))
	f.Fuzz(func(t *testing.T, b []byte, size int64) {
		h, err := ParseHeader(b, size)
		if err != nil {
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v is not a *FormatError", err)
			}
			if fe.Offset < 0 || fe.Offset > max(int64(len(b)), size) {
				t.Fatalf("offset %d outside input (len %d, size %d): %v", fe.Offset, len(b), size, err)
			}
			return
		}
		enc, _ := h.AppendBinary(nil)
		if !bytes.Equal(enc, b[:HeaderSize]) {
			t.Fatalf("re-encoded header differs:\n%x\n%x", enc, b[:HeaderSize])
		}
		if size >= 0 && size != h.FileSize() {
			t.Fatalf("accepted size %d for %d tokens", size, h.Tokens)
		}
		if h.Documents > h.Tokens || h.Tokens < 0 {
			t.Fatalf("inconsistent counts %+v", h)
		}
	})
}
