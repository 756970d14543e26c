package tokenizer

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"
)

// Special token ids: cl100k_base's and the DBRX added tokens.
const (
	EndOfText   = 100257 // <|endoftext|>: bos = eos = unk
	FIMPrefix   = 100258 // <|fim_prefix|>
	FIMMiddle   = 100259 // <|fim_middle|>
	FIMSuffix   = 100260 // <|fim_suffix|>
	EndOfPrompt = 100276 // <|endofprompt|>
	Pad         = 100277 // <|pad|> (DBRX)
	ImStart     = 100278 // <|im_start|> (DBRX)
	ImEnd       = 100279 // <|im_end|> (DBRX)

	// VocabSize is the number of token ids (0..100279). Ids 100256 and 100261..100275
	// are holes. The model's embedding has 100352 rows; rows from 100280 on are no token.
	VocabSize = 100280
)

// Special token strings.
const (
	EndOfTextToken   = "<|endoftext|>"
	FIMPrefixToken   = "<|fim_prefix|>"
	FIMMiddleToken   = "<|fim_middle|>"
	FIMSuffixToken   = "<|fim_suffix|>"
	EndOfPromptToken = "<|endofprompt|>"
	PadToken         = "<|pad|>"
	ImStartToken     = "<|im_start|>"
	ImEndToken       = "<|im_end|>"
)

// specials lists the special tokens; index i is bit i of an AllowedSpecial.
var specials = [...]struct {
	text string
	id   int
}{
	{EndOfTextToken, EndOfText},
	{FIMPrefixToken, FIMPrefix},
	{FIMMiddleToken, FIMMiddle},
	{FIMSuffixToken, FIMSuffix},
	{EndOfPromptToken, EndOfPrompt},
	{PadToken, Pad},
	{ImStartToken, ImStart},
	{ImEndToken, ImEnd},
}

// EOSIDs returns the ids that end generation (generation_config.json eos_token_id).
func EOSIDs() []int { return []int{EndOfText, ImEnd} }

// CL100KSpecialTokens returns the strings of cl100k_base's own special tokens (without
// the DBRX additions), for Allow.
func CL100KSpecialTokens() []string {
	return []string{EndOfTextToken, FIMPrefixToken, FIMMiddleToken, FIMSuffixToken, EndOfPromptToken}
}

// Errors.
var (
	// ErrInvalidID is wrapped by the *IDError that decoding returns for an id that is no
	// token: negative, >= VocabSize, or a hole.
	ErrInvalidID = errors.New("tokenizer: no such token")
	// ErrUnknownSpecial is returned by Allow and ParseAllowedSpecial for a string that is
	// not a special token.
	ErrUnknownSpecial = errors.New("tokenizer: unknown special token")
)

// IDError reports an invalid id at position Index of the decoded sequence.
type IDError struct {
	Index int
	ID    int
}

func (e *IDError) Error() string {
	return fmt.Sprintf("tokenizer: id %d at index %d: no such token", e.ID, e.Index)
}

func (e *IDError) Unwrap() error { return ErrInvalidID }

// AllowedSpecial is the set of special-token strings that Encode turns into their ids;
// all other special strings are encoded as ordinary text. The zero value is AllowNone.
type AllowedSpecial struct{ mask uint8 }

var (
	// AllowNone encodes special-token strings as ordinary text (tiktoken encode_ordinary).
	AllowNone = AllowedSpecial{}
	// AllowAll recognises all eight special tokens, as the DBRX HF tokenizer does.
	AllowAll = AllowedSpecial{mask: 1<<len(specials) - 1}
)

// Allow returns the set of the given special-token strings.
func Allow(tokens ...string) (AllowedSpecial, error) {
	var a AllowedSpecial
next:
	for _, t := range tokens {
		for i, s := range specials {
			if s.text == t {
				a.mask |= 1 << i
				continue next
			}
		}
		return AllowNone, fmt.Errorf("%w: %q", ErrUnknownSpecial, t)
	}
	return a, nil
}

// ParseAllowedSpecial parses "none", "all", or a comma-separated list of special-token
// strings.
func ParseAllowedSpecial(s string) (AllowedSpecial, error) {
	switch s {
	case "none", "":
		return AllowNone, nil
	case "all":
		return AllowAll, nil
	}
	return Allow(strings.Split(s, ",")...)
}

// Contains reports whether the special-token string tok is in the set.
func (a AllowedSpecial) Contains(tok string) bool {
	for i, s := range specials {
		if s.text == tok {
			return a.mask&(1<<i) != 0
		}
	}
	return false
}

// Tokenizer encodes text to DBRX token ids and back. It is immutable and safe for
// concurrent use.
type Tokenizer struct {
	r    *ranks
	pool sync.Pool // *scratch
}

var (
	dbrxOnce sync.Once
	dbrxTok  *Tokenizer
	dbrxErr  error
)

// New returns the DBRX tokenizer built from the embedded cl100k_base ranks. The table
// is parsed once, on the first call; later calls return the same *Tokenizer.
func New() (*Tokenizer, error) {
	dbrxOnce.Do(func() {
		bmpClassOnce.Do(buildClasses)
		dbrxTok, dbrxErr = NewFromRanks("cl100k_base.tiktoken", cl100kData)
	})
	return dbrxTok, dbrxErr
}

// DBRX returns the DBRX tokenizer, like New. The embedded table is checked by this
// package's tests, so it cannot fail to parse; if it ever did, DBRX panics.
func DBRX() *Tokenizer {
	t, err := New()
	if err != nil {
		panic(err)
	}
	return t
}

// NewFromRanks builds a tokenizer from the contents of a .tiktoken rank file (one
// "<base64 token bytes> <rank>" per line), with the DBRX special tokens. Ranks must be
// distinct and below EndOfText, and each of the 256 single bytes must be a token.
// name is used in errors (*ParseError).
func NewFromRanks(name string, data []byte) (*Tokenizer, error) {
	r, err := parseRanks(name, data, EndOfText)
	if err != nil {
		return nil, err
	}
	bmpClassOnce.Do(buildClasses)
	return &Tokenizer{r: r}, nil
}

// NumTokens returns the number of mergeable tokens (100256 for cl100k_base) plus the
// eight special tokens.
func (t *Tokenizer) NumTokens() int { return t.r.count + len(specials) }

// SpecialID returns the id of a special-token string.
func (t *Tokenizer) SpecialID(tok string) (int, bool) {
	for _, s := range specials {
		if s.text == tok {
			return s.id, true
		}
	}
	return 0, false
}

// IsSpecial reports whether id is a special token.
func (t *Tokenizer) IsSpecial(id int) bool {
	for _, s := range specials {
		if s.id == id {
			return true
		}
	}
	return false
}

// TokenBytes returns the bytes of one token (a special token's string for a special
// id). The slice is shared: it must not be modified.
func (t *Tokenizer) TokenBytes(id int) ([]byte, error) {
	if b, ok := t.tokenBytes(id); ok {
		return b, nil
	}
	return nil, &IDError{Index: 0, ID: id}
}

var specialBytes = func() (b [len(specials)][]byte) {
	for i, s := range specials {
		b[i] = []byte(s.text)
	}
	return b
}()

func (t *Tokenizer) tokenBytes(id int) ([]byte, bool) {
	if id >= 0 && id < t.r.n {
		b := t.r.token(uint32(id))
		return b, len(b) > 0
	}
	if id >= EndOfText && id < VocabSize {
		for i, s := range specials {
			if s.id == id {
				return specialBytes[i][:len(s.text):len(s.text)], true
			}
		}
	}
	return nil, false
}

// Decode returns the bytes of ids concatenated. An id that is no token is an *IDError.
func (t *Tokenizer) Decode(ids []int) ([]byte, error) {
	return t.AppendDecode(nil, ids)
}

// AppendDecode appends the bytes of ids to dst. On error dst is returned unchanged.
func (t *Tokenizer) AppendDecode(dst []byte, ids []int) ([]byte, error) {
	n0 := len(dst)
	for i, id := range ids {
		b, ok := t.tokenBytes(id)
		if !ok {
			return dst[:n0], &IDError{Index: i, ID: id}
		}
		dst = append(dst, b...)
	}
	return dst, nil
}

// DecodeString decodes ids to text, replacing each maximal invalid UTF-8 subsequence
// with U+FFFD (WHATWG TextDecoder; Python's errors="replace").
func (t *Tokenizer) DecodeString(ids []int) (string, error) {
	b, err := t.Decode(ids)
	if err != nil {
		return "", err
	}
	if utf8.Valid(b) {
		return string(b), nil
	}
	return string(appendValidUTF8(nil, b)), nil
}

// EncodeOrdinary encodes text with special-token strings treated as ordinary text.
func (t *Tokenizer) EncodeOrdinary(text string) []int {
	return t.Encode(text, AllowNone)
}

// parallelMin is the input size from which Encode uses several goroutines.
const parallelMin = 256 << 10

// Encode encodes text. Special-token strings in allowed become their ids; other text,
// including other special strings, is encoded as ordinary text. Invalid UTF-8 is first
// replaced as described in the package documentation. Inputs of 256 KiB or more are
// encoded on runtime.GOMAXPROCS(0) goroutines.
func (t *Tokenizer) Encode(text string, allowed AllowedSpecial) []int {
	return t.EncodeParallel(text, allowed, 0)
}

// AppendEncode appends the ids of text to dst on the calling goroutine.
func (t *Tokenizer) AppendEncode(dst []int, text string, allowed AllowedSpecial) []int {
	text = validString(text)
	sc := t.getScratch()
	dst = t.appendEncode(dst, text, allowed, sc)
	t.pool.Put(sc)
	return dst
}

// EncodeParallel is Encode on at most workers goroutines (<= 0: runtime.GOMAXPROCS(0)).
// The text is cut only where no pre-token or special token can span, so the result is
// the same for any number of workers.
func (t *Tokenizer) EncodeParallel(text string, allowed AllowedSpecial, workers int) []int {
	text = validString(text)
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	if workers == 1 || len(text) < parallelMin {
		sc := t.getScratch()
		ids := t.appendEncode(make([]int, 0, len(text)/3+1), text, allowed, sc)
		t.pool.Put(sc)
		return ids
	}
	chunks := splitChunks(text, min(4*workers, len(text)/(parallelMin/4)))
	out := make([][]int, len(chunks))
	var nextChunk atomic.Int64
	var wg sync.WaitGroup
	for range min(workers, len(chunks)) {
		wg.Go(func() {
			sc := t.getScratch()
			for {
				c := int(nextChunk.Add(1)) - 1
				if c >= len(chunks) {
					break
				}
				out[c] = t.appendEncode(make([]int, 0, len(chunks[c])/3+1), chunks[c], allowed, sc)
			}
			t.pool.Put(sc)
		})
	}
	wg.Wait()
	total := 0
	for _, o := range out {
		total += len(o)
	}
	ids := make([]int, 0, total)
	for _, o := range out {
		ids = append(ids, o...)
	}
	return ids
}

func (t *Tokenizer) getScratch() *scratch {
	if sc, ok := t.pool.Get().(*scratch); ok {
		return sc
	}
	return new(scratch)
}

// splitChunks cuts s into about n pieces at safe points (see safeCut).
func splitChunks(s string, n int) []string {
	if n < 2 {
		return []string{s}
	}
	size := len(s) / n
	chunks := make([]string, 0, n)
	start := 0
	for len(chunks) < n-1 {
		cut := safeCut(s, max(start+size, start+1))
		if cut >= len(s) {
			break
		}
		chunks = append(chunks, s[start:cut])
		start = cut
	}
	return append(chunks, s[start:])
}

// safeCut returns the first b >= from (or len(s)) such that no pre-token or special
// token spans b: s[b-1] is an ASCII letter and s[b] is ' ' or '\n', or s[b-1] is '\n'
// and s[b] is ASCII and not white space. In both cases every character class run of the
// pattern (letters, digits, white space, other, CR/LF) ends at b, and no special token
// contains ' ' or '\n'.
func safeCut(s string, from int) int {
	for b := max(from, 1); b < len(s); b++ {
		p, c := s[b-1], s[b]
		if (p == '\n' && c < utf8.RuneSelf && asciiClass[c]&clS == 0) ||
			((c == ' ' || c == '\n') && p < utf8.RuneSelf && asciiClass[p]&clL != 0) {
			return b
		}
	}
	return len(s)
}

// appendEncode encodes valid UTF-8 text serially.
func (t *Tokenizer) appendEncode(dst []int, text string, allowed AllowedSpecial, sc *scratch) []int {
	if sc.cache == nil && len(text) >= cacheMinText {
		sc.cache = new([cacheSize]cacheEntry)
	}
	for allowed.mask != 0 {
		at, sp := findSpecial(text, allowed)
		if at < 0 {
			break
		}
		dst = t.appendOrdinary(dst, text[:at], sc)
		dst = append(dst, specials[sp].id)
		text = text[at+len(specials[sp].text):]
	}
	return t.appendOrdinary(dst, text, sc)
}

// findSpecial returns the offset and index of the leftmost allowed special token in s,
// or -1.
func findSpecial(s string, allowed AllowedSpecial) (int, int) {
	for off := 0; ; {
		i := strings.Index(s[off:], "<|")
		if i < 0 {
			return -1, 0
		}
		off += i
		for k, sp := range specials {
			if allowed.mask&(1<<k) != 0 && strings.HasPrefix(s[off:], sp.text) {
				return off, k
			}
		}
		off++
	}
}

func (t *Tokenizer) appendOrdinary(dst []int, s string, sc *scratch) []int {
	for i := 0; i < len(s); {
		j := nextPiece(s, i)
		dst = t.r.appendPiece(dst, s[i:j], sc)
		i = j
	}
	return dst
}
