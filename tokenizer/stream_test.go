package tokenizer

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"
)

// streamAll feeds ids one by one and returns everything emitted, checking that each
// piece is valid UTF-8.
func streamAll(t *testing.T, tok *Tokenizer, ids []int) string {
	t.Helper()
	d := tok.NewStreamDecoder()
	var sb strings.Builder
	for _, id := range ids {
		b, err := d.Add(id)
		if err != nil {
			t.Fatalf("Add(%d): %v", id, err)
		}
		if !utf8.Valid(b) {
			t.Fatalf("Add(%d) emitted invalid UTF-8 %q", id, b)
		}
		sb.Write(b)
	}
	sb.Write(d.Flush())
	if d.Pending() != 0 {
		t.Fatal("pending bytes after Flush")
	}
	return sb.String()
}

func TestStreamDecoderHoldsPartialCharacters(t *testing.T) {
	tok := DBRX()
	d := tok.NewStreamDecoder()
	// "👍" is [9468, 239, 235]: F0 9F | 91 | 8D.
	for i, id := range []int{9468, 239} {
		b, err := d.Add(id)
		if err != nil || len(b) != 0 {
			t.Fatalf("step %d: %q, %v; want nothing yet", i, b, err)
		}
	}
	if d.Pending() != 3 {
		t.Fatalf("Pending = %d", d.Pending())
	}
	if b, err := d.Add(235); err != nil || string(b) != "👍" {
		t.Fatalf("last step: %q, %v", b, err)
	}
	// An incomplete character at the end becomes U+FFFD on Flush.
	if b, _ := d.Add(9468); len(b) != 0 {
		t.Fatalf("%q", b)
	}
	if got := string(d.Flush()); got != "\uFFFD" {
		t.Fatalf("Flush = %q", got)
	}
	if got := d.Flush(); got != nil {
		t.Fatalf("second Flush = %q", got)
	}
	// A character that cannot be completed is replaced as soon as that is known.
	if b, _ := d.Add(9468); len(b) != 0 {
		t.Fatalf("%q", b)
	}
	if b, _ := d.Add(64); string(b) != "\uFFFDa" {
		t.Fatalf("broken sequence: %q", b)
	}
	// Invalid ids are errors and leave the state alone.
	if b, _ := d.Add(9468); len(b) != 0 {
		t.Fatalf("%q", b)
	}
	for _, id := range []int{-1, 100256, 100270, VocabSize, 100351} {
		if _, err := d.Add(id); !errors.Is(err, ErrInvalidID) {
			t.Errorf("Add(%d) err = %v", id, err)
		}
	}
	if b, _ := d.Add(239); len(b) != 0 || d.Pending() != 3 {
		t.Fatalf("state changed by invalid ids: %q pending %d", b, d.Pending())
	}
	// Special tokens decode to their text.
	if b, _ := d.Add(235); string(b) != "👍" {
		t.Fatalf("%q", b)
	}
	if b, _ := d.Add(ImEnd); string(b) != ImEndToken {
		t.Fatalf("%q", b)
	}
}

// TestStreamDecoderMatchesLossyDecode: for random id sequences (which often split or
// break characters), the stream output equals DecodeString of the whole sequence.
func TestStreamDecoderMatchesLossyDecode(t *testing.T) {
	tok := DBRX()
	rng := rand.New(rand.NewPCG(9, 10))
	base := tok.EncodeOrdinary("naïve 日本語 👍🏽 𝐀 Ünïcödé — ok 👨‍👩‍👧 한국어")
	for range 2000 {
		n := rng.IntN(12)
		ids := make([]int, n)
		for i := range ids {
			switch rng.IntN(3) {
			case 0:
				ids[i] = base[rng.IntN(len(base))]
			case 1:
				ids[i] = 100 + rng.IntN(156) // single bytes 0x80.. and friends
			default:
				ids[i] = rng.IntN(100256)
			}
		}
		want, err := tok.DecodeString(ids)
		if err != nil {
			t.Fatal(err)
		}
		if got := streamAll(t, tok, ids); got != want {
			t.Fatalf("ids %v: stream %q, DecodeString %q", ids, got, want)
		}
	}
}

func TestStreamDecoderAllocs(t *testing.T) {
	tok := DBRX()
	ids := tok.EncodeOrdinary(strings.Repeat("naïve 日本語 👍🏽 text ", 20))
	d := tok.NewStreamDecoder()
	for _, id := range ids {
		d.Add(id)
	}
	allocs := testing.AllocsPerRun(10, func() {
		for _, id := range ids {
			d.Add(id)
		}
		d.Flush()
	})
	if allocs != 0 {
		t.Errorf("%v allocations per stream", allocs)
	}
}
