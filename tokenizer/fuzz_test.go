package tokenizer

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func addEncodeSeeds(f *testing.F) {
	for _, s := range []string{"", "hello world", "today\n \n", "'s'LL ſ", " \u00850", "👍🏽", "a\xe2\x82b",
		"<|endoftext|>x<|im_start|>", "  \t\n\r\n x", "1234567", "\xff\xfe", "Ᲊ's \U00010D40123"} {
		f.Add(s)
	}
	for _, c := range []string{"cl100k_cases.jsonl", "cl100k_special_cases.jsonl"} {
		for _, c := range readJSONL[encodeCase](f, fixtures+c) {
			f.Add(c.Text)
		}
	}
}

// FuzzEncode: no panics; ids in range; deterministic; every split at a safe cut and every
// worker count give the same ids; decode(encode(s)) == s for valid UTF-8 (and the
// WHATWG-repaired s otherwise), with and without special tokens.
func FuzzEncode(f *testing.F) {
	addEncodeSeeds(f)
	tok := DBRX()
	f.Fuzz(func(t *testing.T, s string) {
		want := s
		if !utf8.ValidString(s) {
			want = string(appendValidUTF8(nil, s))
		}
		for _, a := range []AllowedSpecial{AllowNone, AllowAll} {
			ids := tok.Encode(s, a)
			for _, id := range ids {
				if _, ok := tok.tokenBytes(id); !ok || (a == AllowNone && id >= 100256) {
					t.Fatalf("id %d out of range", id)
				}
			}
			if again := tok.Encode(s, a); !slices.Equal(ids, again) {
				t.Fatalf("not deterministic: %v vs %v", ids, again)
			}
			got, err := tok.Decode(ids)
			if err != nil || string(got) != want {
				t.Fatalf("Decode(Encode(%q)) = %q, %v", s, got, err)
			}
			sc := new(scratch)
			for k := 2; k <= 4; k++ {
				var parts []int
				for _, c := range splitChunks(want, k) {
					parts = tok.appendEncode(parts, c, a, sc)
				}
				if !slices.Equal(parts, ids) {
					t.Fatalf("split in %d: %v vs %v", k, parts, ids)
				}
			}
		}
	})
}

// FuzzStreamDecoder: any id sequence streams to valid UTF-8 equal to the lossy decoding
// of the concatenated bytes; invalid ids are errors, never panics.
func FuzzStreamDecoder(f *testing.F) {
	f.Add([]byte{0x24, 0xf6, 0x00, 0x00, 0xef, 0x00, 0x00, 0x00})
	f.Add([]byte{0x05, 0x01, 0x00, 0x00, 0xff, 0xff, 0xff, 0x7f})
	tok := DBRX()
	f.Fuzz(func(t *testing.T, data []byte) {
		var ids []int
		for len(data) >= 4 {
			v := int(int32(binary.LittleEndian.Uint32(data)))
			if v >= 0 {
				v %= 100352 + 16 // mostly real ids, some past the vocabulary
			}
			ids = append(ids, v)
			data = data[4:]
		}
		d := tok.NewStreamDecoder()
		var out, raw []byte
		for _, id := range ids {
			b, err := d.Add(id)
			tb, ok := tok.tokenBytes(id)
			if ok != (err == nil) {
				t.Fatalf("Add(%d) err = %v, token ok = %v", id, err, ok)
			}
			if !utf8.Valid(b) {
				t.Fatalf("Add(%d) emitted %q", id, b)
			}
			out = append(out, b...)
			raw = append(raw, tb...)
		}
		out = append(out, d.Flush()...)
		if want := appendValidUTF8(nil, raw); !bytes.Equal(out, want) {
			t.Fatalf("stream %q, want %q", out, want)
		}
		if _, err := tok.Decode(ids); err != nil && !strings.Contains(err.Error(), "no such token") {
			t.Fatal(err)
		}
	})
}

// FuzzNewFromRanks: the rank file parser never panics and what it accepts round-trips
// every byte.
func FuzzNewFromRanks(f *testing.F) {
	var seed strings.Builder
	for b := range 256 {
		fmt.Fprintf(&seed, "%s %d\n", b64([]byte{byte(b)}), b)
	}
	f.Add([]byte(seed.String() + "YWI= 300\nYWJj 301\n"))
	f.Add([]byte("IQ== 0\nIg== 1\n"))
	f.Add(cl100kData[:4096])
	f.Fuzz(func(t *testing.T, data []byte) {
		tok, err := NewFromRanks("fuzz", data)
		if err != nil {
			return
		}
		s := "x\xffy héllo 👍"
		got, err := tok.Decode(tok.EncodeOrdinary(s))
		if err != nil || string(got) != validString(s) {
			t.Fatalf("round trip: %q, %v", got, err)
		}
	})
}
