package tokenizer

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

const fixtures = "../testdata/tokenizer/"

// readJSONL decodes each non-empty line of a fixture file into a T.
func readJSONL[T any](t testing.TB, path string) []T {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []T
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 64<<20)
	for line := 1; sc.Scan(); line++ {
		if len(sc.Bytes()) == 0 {
			continue
		}
		var v T
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("%s:%d: %v", path, line, err)
		}
		out = append(out, v)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatalf("%s: no cases", path)
	}
	return out
}

// diffIDs describes the first mismatch of two id sequences, or returns "".
func diffIDs(got, want []int) string {
	if slices.Equal(got, want) {
		return ""
	}
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	return fmt.Sprintf("first difference at index %d (len got %d, want %d)\n got[%d:] %v\nwant[%d:] %v",
		i, len(got), len(want), i, got[i:min(len(got), i+12)], i, want[i:min(len(want), i+12)])
}

func TestRanksFileSHA256(t *testing.T) {
	const want = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
	sum := sha256.Sum256(cl100kData)
	if got := hex.EncodeToString(sum[:]); got != want {
		t.Fatalf("embedded cl100k_base.tiktoken sha256 = %s, want %s", got, want)
	}
}

func TestVocabulary(t *testing.T) {
	tok := DBRX()
	if got := tok.NumTokens(); got != 100256+8 {
		t.Errorf("NumTokens = %d, want %d", got, 100256+8)
	}
	holes := []int{100256}
	for id := 100261; id <= 100275; id++ {
		holes = append(holes, id)
	}
	for _, id := range append(holes, -1, VocabSize, 100352, 1<<40) {
		if b, err := tok.TokenBytes(id); !errors.Is(err, ErrInvalidID) {
			t.Errorf("TokenBytes(%d) = %q, %v; want ErrInvalidID", id, b, err)
		}
	}
	n := 0
	for id := range VocabSize {
		if _, err := tok.TokenBytes(id); err == nil {
			n++
		}
	}
	if n != tok.NumTokens() {
		t.Errorf("%d decodable ids, want %d", n, tok.NumTokens())
	}
	if got := EOSIDs(); !slices.Equal(got, []int{100257, 100279}) {
		t.Errorf("EOSIDs = %v", got)
	}
	// Every token's bytes encode back to... at least decode exactly; single bytes map back.
	for b := range 256 {
		ids := tok.r.appendPiece(nil, string([]byte{byte(b)}), new(scratch))
		got, err := tok.Decode(ids)
		if err != nil || len(got) != 1 || got[0] != byte(b) {
			t.Fatalf("byte 0x%02x: ids %v decode %q %v", b, ids, got, err)
		}
	}
}

type encodeCase struct {
	Text           string `json:"text"`
	IDs            []int  `json:"ids"`
	AllowedSpecial string `json:"allowed_special"`
}

func TestEncodeFixtures(t *testing.T) {
	tok := DBRX()
	cases := readJSONL[encodeCase](t, fixtures+"cl100k_cases.jsonl")
	if len(cases) != 304 {
		t.Errorf("%d cases, want 304", len(cases))
	}
	for i, c := range cases {
		if d := diffIDs(tok.EncodeOrdinary(c.Text), c.IDs); d != "" {
			t.Errorf("case %d %q: %s", i, c.Text, d)
			continue
		}
		if d := diffIDs(tok.Encode(c.Text, AllowNone), c.IDs); d != "" {
			t.Errorf("case %d Encode(AllowNone): %s", i, d)
		}
		if d := diffIDs(tok.AppendEncode([]int{7}, c.Text, AllowNone), append([]int{7}, c.IDs...)); d != "" {
			t.Errorf("case %d AppendEncode: %s", i, d)
		}
		got, err := tok.Decode(c.IDs)
		if err != nil || string(got) != c.Text {
			t.Errorf("case %d: Decode = %q, %v; want %q", i, got, err, c.Text)
		}
	}
}

func TestSpecialFixtures(t *testing.T) {
	tok := DBRX()
	// The reference is cl100k_base: "all" means its five specials, not the DBRX ones.
	cl100k, err := Allow(CL100KSpecialTokens()...)
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range readJSONL[encodeCase](t, fixtures+"cl100k_special_cases.jsonl") {
		if c.AllowedSpecial != "all" {
			t.Fatalf("case %d: allowed_special %q", i, c.AllowedSpecial)
		}
		if d := diffIDs(tok.Encode(c.Text, cl100k), c.IDs); d != "" {
			t.Errorf("case %d %q: %s", i, c.Text, d)
		}
		got, err := tok.Decode(c.IDs)
		if err != nil || string(got) != c.Text {
			t.Errorf("case %d: Decode = %q, %v", i, got, err)
		}
		// With AllowAll the DBRX markers are special too; decoding still restores the text.
		got, err = tok.Decode(tok.Encode(c.Text, AllowAll))
		if err != nil || string(got) != c.Text {
			t.Errorf("case %d: Decode(Encode(AllowAll)) = %q, %v", i, got, err)
		}
	}
	if d := diffIDs(tok.Encode("<|im_start|>not special in cl100k<|im_end|>", AllowAll),
		[]int{100278, 1962, 3361, 304, 1206, 1041, 74, 100279}); d != "" {
		t.Error("DBRX markers with AllowAll:", d)
	}
}

func TestDBRXSpecialTokens(t *testing.T) {
	var fx struct {
		CL100K map[string]int `json:"cl100k_special_tokens"`
		DBRX   map[string]int `json:"dbrx_added_tokens"`
		Roles  struct {
			EOS []int `json:"generation_eos_token_ids"`
		} `json:"dbrx_roles"`
		ModelVocab int `json:"model_vocab_size"`
	}
	data, err := os.ReadFile(fixtures + "dbrx_special_tokens.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &fx); err != nil {
		t.Fatal(err)
	}
	tok := DBRX()
	all := map[string]int{}
	for k, v := range fx.CL100K {
		all[k] = v
	}
	for k, v := range fx.DBRX {
		all[k] = v
	}
	if len(all) != 8 {
		t.Fatalf("fixture has %d special tokens", len(all))
	}
	for s, id := range all {
		if got, ok := tok.SpecialID(s); !ok || got != id {
			t.Errorf("SpecialID(%q) = %d, %v; want %d", s, got, ok, id)
		}
		if !tok.IsSpecial(id) {
			t.Errorf("IsSpecial(%d) = false", id)
		}
		if b, err := tok.TokenBytes(id); err != nil || string(b) != s {
			t.Errorf("TokenBytes(%d) = %q, %v", id, b, err)
		}
		if got := tok.Encode("x"+s+"y", AllowAll); !slices.Equal(got, []int{87, id, 88}) {
			t.Errorf("Encode(x%sy, AllowAll) = %v", s, got)
		}
		one, err := Allow(s)
		if err != nil || !one.Contains(s) {
			t.Fatalf("Allow(%q) = %v, %v", s, one, err)
		}
		if got := tok.Encode(s, one); !slices.Equal(got, []int{id}) {
			t.Errorf("Encode(%q, Allow(itself)) = %v", s, got)
		}
		if got := tok.Encode(s, AllowNone); len(got) < 3 || slices.Contains(got, id) {
			t.Errorf("Encode(%q, AllowNone) = %v, want ordinary text", s, got)
		}
	}
	for _, c := range []struct {
		name string
		id   int
	}{{EndOfTextToken, EndOfText}, {FIMPrefixToken, FIMPrefix}, {FIMMiddleToken, FIMMiddle},
		{FIMSuffixToken, FIMSuffix}, {EndOfPromptToken, EndOfPrompt}, {PadToken, Pad},
		{ImStartToken, ImStart}, {ImEndToken, ImEnd}} {
		if all[c.name] != c.id {
			t.Errorf("constant %s = %d, fixture %d", c.name, c.id, all[c.name])
		}
	}
	if !slices.Equal(EOSIDs(), fx.Roles.EOS) {
		t.Errorf("EOSIDs %v, fixture %v", EOSIDs(), fx.Roles.EOS)
	}
	if fx.ModelVocab < VocabSize {
		t.Errorf("model vocab %d < VocabSize %d", fx.ModelVocab, VocabSize)
	}
}

func TestAllowedSpecial(t *testing.T) {
	if _, err := Allow("<|nope|>"); !errors.Is(err, ErrUnknownSpecial) {
		t.Errorf("Allow(unknown) err = %v", err)
	}
	for _, c := range []struct {
		in   string
		want AllowedSpecial
		err  bool
	}{
		{"none", AllowNone, false},
		{"", AllowNone, false},
		{"all", AllowAll, false},
		{"<|im_start|>,<|im_end|>", AllowedSpecial{mask: 1<<6 | 1<<7}, false},
		{"<|im_start|>,bogus", AllowNone, true},
		{"All", AllowNone, true},
	} {
		got, err := ParseAllowedSpecial(c.in)
		if got != c.want || (err != nil) != c.err {
			t.Errorf("ParseAllowedSpecial(%q) = %v, %v", c.in, got, err)
		}
	}
	if AllowNone.Contains(EndOfTextToken) || !AllowAll.Contains(ImEndToken) || AllowAll.Contains("x") {
		t.Error("Contains")
	}
}

type decodeCase struct {
	IDs         []int  `json:"ids"`
	BytesHex    string `json:"bytes_hex"`
	ValidUTF8   *bool  `json:"valid_utf8"`
	Text        string `json:"text"`
	TextLossy   string `json:"text_lossy"`
	SingleToken *int   `json:"single_token"`
	ID          int    `json:"id"`
	Error       string `json:"error"`
}

func TestDecodeFixtures(t *testing.T) {
	tok := DBRX()
	var nSeq, nLossy, nSingle int
	for i, c := range readJSONL[decodeCase](t, fixtures+"cl100k_decode_cases.jsonl") {
		want, err := hex.DecodeString(c.BytesHex)
		if err != nil {
			t.Fatal(err)
		}
		if c.SingleToken != nil {
			nSingle++
			got, err := tok.TokenBytes(c.ID)
			if c.Error != "" {
				if !errors.Is(err, ErrInvalidID) {
					t.Errorf("case %d: TokenBytes(%d) = %x, %v; want error", i, c.ID, got, err)
				}
				if _, err := tok.Decode([]int{5, c.ID}); err == nil {
					t.Errorf("case %d: Decode accepted %d", i, c.ID)
				} else if e := (*IDError)(nil); !errors.As(err, &e) || e.Index != 1 || e.ID != c.ID {
					t.Errorf("case %d: Decode error %v", i, err)
				}
				continue
			}
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("case %d: TokenBytes(%d) = %x, %v; want %s", i, c.ID, got, err, c.BytesHex)
			}
			continue
		}
		nSeq++
		got, err := tok.Decode(c.IDs)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("case %d: Decode = %x, %v; want %s", i, got, err, c.BytesHex)
			continue
		}
		wantText := c.Text
		if c.ValidUTF8 != nil && !*c.ValidUTF8 {
			nLossy++
			wantText = c.TextLossy
		}
		if s, err := tok.DecodeString(c.IDs); err != nil || s != wantText {
			t.Errorf("case %d: DecodeString = %q, %v; want %q", i, s, err, wantText)
		}
		// The stream decoder gives the same text, valid at every step.
		d := tok.NewStreamDecoder()
		var sb strings.Builder
		for _, id := range c.IDs {
			b, err := d.Add(id)
			if err != nil {
				t.Fatal(err)
			}
			if !utf8.Valid(b) {
				t.Errorf("case %d: stream emitted invalid UTF-8 %x", i, b)
			}
			sb.Write(b)
		}
		sb.Write(d.Flush())
		if sb.String() != wantText {
			t.Errorf("case %d: stream = %q, want %q", i, sb.String(), wantText)
		}
	}
	if nSingle == 0 || nLossy == 0 || nSeq == 0 {
		t.Errorf("fixture shapes: %d sequences, %d lossy, %d single", nSeq, nLossy, nSingle)
	}
}

// TestSpecVectors are tiktoken's own cl100k_base tests (spec section 11).
func TestSpecVectors(t *testing.T) {
	tok := DBRX()
	for _, c := range []struct {
		text    string
		allowed AllowedSpecial
		want    []int
	}{
		{"hello world", AllowNone, []int{15339, 1917}},
		{"hello <|endoftext|>", AllowAll, []int{15339, 220, 100257}},
		{"rer", AllowNone, []int{38149}},
		{"'rer", AllowNone, []int{2351, 81}},
		{"today\n ", AllowNone, []int{31213, 198, 220}},
		{"today\n \n", AllowNone, []int{31213, 27907}},
		{"today\n  \n", AllowNone, []int{31213, 14211}},
		{" \x850", AllowNone, []int{220, 126, 227, 15}}, // Python " \x85" is U+0085
		{"👍", AllowNone, []int{9468, 239, 235}},
	} {
		text := c.text
		if text == " \x850" {
			text = " \u00850"
		}
		if d := diffIDs(tok.Encode(text, c.allowed), c.want); d != "" {
			t.Errorf("%q: %s", text, d)
		}
	}
	if got, err := tok.Decode([]int{62085}); err != nil || string(got) != " \xec\x8b\xa4\xed" {
		t.Errorf("Decode([62085]) = %x, %v", got, err)
	}
}

// TestReferenceVectors are cases checked against the npm tiktoken package 1.0.22 while
// developing (scripts/tokbench/crosscheck.sh): Unicode 16.0 letters and digits that Go's
// unicode package (15.0.0) does not know, case-folded contractions, lookahead corners.
func TestReferenceVectors(t *testing.T) {
	tok := DBRX()
	for _, c := range []struct {
		text string
		want []int
	}{
		{"{a\U00013FA3'd12", []int{90, 64, 172, 241, 122, 96, 4265, 717}},
		{"\u6028\r\n\u0361\U000142CC're", []int{17486, 101, 319, 137, 94, 172, 242, 233, 234, 2351}},
		{"\u1C89's", []int{157, 110, 231, 596}},               // U+1C89 (Unicode 16) is a letter
		{"\U00010D40123", []int{172, 238, 113, 222, 717, 18}}, // U+10D40 (Unicode 16) is a digit
		{"\U000323B0's", []int{172, 110, 236, 108, 6, 82}},    // U+323B0 (Unicode 17) is not a letter here
		{"'\u017Fx '\u017F", []int{6, 129, 123, 87, 364, 129, 123}},
	} {
		if d := diffIDs(tok.EncodeOrdinary(c.text), c.want); d != "" {
			t.Errorf("%q: %s", c.text, d)
		}
	}
}

// TestContractionFolds checks the claim in contraction(): among the Unicode simple case
// fold orbits of s, t, r, e, v, m, l, d only 's' has a non-ASCII member, U+017F.
func TestContractionFolds(t *testing.T) {
	for _, c := range "strevmld" {
		var orbit []rune
		for r := unicode.SimpleFold(c); r != c; r = unicode.SimpleFold(r) {
			orbit = append(orbit, r)
		}
		for _, r := range orbit {
			if r >= utf8.RuneSelf && !(c == 's' && r == 'ſ') {
				t.Errorf("%c folds with %U", c, r)
			}
		}
	}
	// Every fold of every contraction is one piece.
	tok := DBRX()
	for _, s := range []string{"s", "t", "re", "ve", "m", "ll", "d"} {
		for _, v := range foldVariants(s) {
			if n := nextPiece("'"+v+"x", 0); n != 1+len(v) {
				t.Errorf("'%s: piece length %d", v, n)
			}
		}
	}
	_ = tok
}

func foldVariants(s string) []string {
	if s == "" {
		return []string{""}
	}
	r, n := utf8.DecodeRuneInString(s)
	var out []string
	for _, rest := range foldVariants(s[n:]) {
		out = append(out, string(r)+rest)
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			out = append(out, string(f)+rest)
		}
	}
	return out
}

func TestInvalidUTF8(t *testing.T) {
	tok := DBRX()
	for _, c := range []struct{ in, want string }{
		{"\xff", "\uFFFD"},
		{"a\xe2\x82b", "a\uFFFDb"},             // truncated 3-byte sequence: one U+FFFD
		{"a\xe2\x82", "a\uFFFD"},               // truncated at the end
		{"\xf0\x80\x80", "\uFFFD\uFFFD\uFFFD"}, // overlong lead: each byte
		{"\xed\xa0\x80", "\uFFFD\uFFFD\uFFFD"}, // surrogate
		{"\xc0\xaf", "\uFFFD\uFFFD"},
		{"x\xf4\x90\x80\x80", "x\uFFFD\uFFFD\uFFFD\uFFFD"},
		{"\xf4\x8f\xbf", "\uFFFD"},
		{"ok \x80 <|endoftext|>\xfe", "ok \uFFFD <|endoftext|>\uFFFD"},
	} {
		if got := validString(c.in); got != c.want {
			t.Errorf("validString(%q) = %q, want %q", c.in, got, c.want)
		}
		for _, a := range []AllowedSpecial{AllowNone, AllowAll} {
			ids := tok.Encode(c.in, a)
			if want := tok.Encode(c.want, a); !slices.Equal(ids, want) {
				t.Errorf("Encode(%q) = %v, want %v", c.in, ids, want)
			}
			if got, err := tok.Decode(ids); err != nil || string(got) != c.want {
				t.Errorf("Decode(Encode(%q)) = %q, %v", c.in, got, err)
			}
		}
	}
}

// TestMergeHeapMatchesScan checks the heap merge against tiktoken's scan on long and
// short pieces, including runs that merge in many different orders.
func TestMergeHeapMatchesScan(t *testing.T) {
	tok := DBRX()
	rng := rand.New(rand.NewPCG(1, 2))
	alpha := []string{"a", "b", "e", "th", " ", "\t", "=", "-", "0", "é", "中", "\xf0", "\x80", "ab", "aaaa"}
	sc := new(scratch)
	for i := range 3000 {
		var sb strings.Builder
		n := 2 + rng.IntN(1+i%400)
		for sb.Len() < n {
			sb.WriteString(alpha[rng.IntN(len(alpha))])
		}
		p := sb.String()
		a := tok.r.mergeScan(nil, p, sc)
		b := tok.r.mergeHeap(nil, p, sc)
		if !slices.Equal(a, b) {
			t.Fatalf("%q:\nscan %v\nheap %v", p, a, b)
		}
	}
	long := strings.Repeat("a", 100000)
	if got, err := tok.Decode(tok.EncodeOrdinary(long)); err != nil || string(got) != long {
		t.Fatal("long run does not round-trip")
	}
}

// stressText returns random text over an alphabet that exercises every branch of the
// pre-tokenizer and the chunk cutter.
func stressText(rng *rand.Rand, n int) string {
	atoms := []string{"a", "Zy", " hello", " world", "\n", "\n\n", "\r\n", " ", "  ", "\t", "\tx", "'s", "'LL", "ſ",
		"12", "1234", "٣", "!", "...", "<|endoftext|>", "<|im_end|>", "<|", "é", "中文", "👍", "\u00a0", "\u3000",
		"\u0085", "x\n", "\n}", "a b", "\v", "\u0301"}
	var sb strings.Builder
	for sb.Len() < n {
		sb.WriteString(atoms[rng.IntN(len(atoms))])
	}
	return sb.String()
}

// TestSafeCuts checks that encoding the two sides of every safe cut separately gives
// the ids of the whole, for random stress text.
func TestSafeCuts(t *testing.T) {
	tok := DBRX()
	rng := rand.New(rand.NewPCG(3, 4))
	sc := new(scratch)
	cuts := 0
	for range 300 {
		s := stressText(rng, 200)
		for _, a := range []AllowedSpecial{AllowNone, AllowAll} {
			whole := tok.appendEncode(nil, s, a, sc)
			for b := safeCut(s, 1); b < len(s); b = safeCut(s, b+1) {
				cuts++
				got := tok.appendEncode(tok.appendEncode(nil, s[:b], a, sc), s[b:], a, sc)
				if d := diffIDs(got, whole); d != "" {
					t.Fatalf("cut %d of %q: %s", b, s, d)
				}
			}
		}
	}
	if cuts < 1000 {
		t.Errorf("only %d cuts tested", cuts)
	}
}

func TestEncodeParallel(t *testing.T) {
	tok := DBRX()
	rng := rand.New(rand.NewPCG(5, 6))
	s := stressText(rng, 3*parallelMin)
	// The piece cache (used for inputs this large) changes nothing.
	if sc := new(scratch); !slices.Equal(tok.appendOrdinary(nil, s, sc), tok.AppendEncode(nil, s, AllowNone)) || sc.cache != nil {
		t.Fatal("cached and uncached encodings differ")
	}
	for _, a := range []AllowedSpecial{AllowNone, AllowAll} {
		want := tok.AppendEncode(nil, s, a)
		for _, w := range []int{0, 1, 2, 3, 8, 64} {
			if d := diffIDs(tok.EncodeParallel(s, a, w), want); d != "" {
				t.Errorf("workers %d: %s", w, d)
			}
		}
		if d := diffIDs(tok.Encode(s, a), want); d != "" {
			t.Errorf("Encode: %s", d)
		}
	}
	// Text with no safe cut at all still encodes correctly.
	one := strings.Repeat("é", parallelMin)
	if got, err := tok.Decode(tok.EncodeParallel(one, AllowNone, 4)); err != nil || string(got) != one {
		t.Error("uncuttable text")
	}
}

// TestEncodeAllocs: the merge loop allocates nothing once the scratch and output have
// grown.
func TestEncodeAllocs(t *testing.T) {
	tok := DBRX()
	text := stressText(rand.New(rand.NewPCG(7, 8)), 20000) + strings.Repeat("x", 1000)
	sc := new(scratch)
	dst := tok.appendEncode(nil, text, AllowAll, sc)
	allocs := testing.AllocsPerRun(20, func() {
		dst = tok.appendEncode(dst[:0], text, AllowAll, sc)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per encode", allocs)
	}
}

func TestNewFromRanksErrors(t *testing.T) {
	var all strings.Builder
	for b := range 256 {
		fmt.Fprintf(&all, "%s %d\n", b64([]byte{byte(b)}), b)
	}
	base := all.String()
	for _, c := range []struct {
		name, data, want string
	}{
		{"empty", "", "no tokens"},
		{"no space", "IQ==0\n", "want"},
		{"bad rank", "IQ== x\n", "bad rank"},
		{"big rank", "IQ== 100257\n", "not below"},
		{"bad base64", "!!!! 0\n", "bad base64"},
		{"empty token", " 0\n", "empty token"},
		{"dup rank", base + "YWI= 5\n", "appears twice"},
		{"dup token", base + "IQ== 300\n", "appears twice"},
		{"missing byte", strings.Replace(base, b64([]byte{7})+" 7\n", "", 1), "byte 0x07"},
	} {
		_, err := NewFromRanks("t.tiktoken", []byte(c.data))
		var pe *ParseError
		if !errors.As(err, &pe) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "t.tiktoken") {
			t.Errorf("%s: err = %v, want %q", c.name, err, c.want)
		}
	}
	tok, err := NewFromRanks("t", []byte(base+"YWI= 300\r\n\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := tok.EncodeOrdinary("ab"); !slices.Equal(got, []int{300}) {
		t.Errorf("small table: %v", got)
	}
}

func b64(b []byte) string {
	const enc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	var sb strings.Builder
	for i := 0; i < len(b); i += 3 {
		var v uint32
		n := min(3, len(b)-i)
		for k := range 3 {
			v <<= 8
			if k < n {
				v |= uint32(b[i+k])
			}
		}
		for k := range 4 {
			if k <= n {
				sb.WriteByte(enc[v>>(18-6*k)&63])
			} else {
				sb.WriteByte('=')
			}
		}
	}
	return sb.String()
}
