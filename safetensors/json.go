package safetensors

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// member is one key/value pair of a JSON object, with absolute byte offsets.
type member struct {
	Key    string
	KeyOff int64  // offset of the key's opening quote
	ValOff int64  // offset of the value's first byte
	Val    []byte // the raw value, a sub-slice of the input
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// readObject parses b, which must hold exactly one JSON object (plus surrounding
// whitespace), into its members in order. base is the absolute offset of b[0], used in
// error offsets. Duplicate keys are reported with ErrDuplicate; other problems with
// kind. what names the object in messages ("header", "tensor entry", ...).
func readObject(b []byte, base int64, kind error, field, what string) ([]member, error) {
	start := int64(0)
	for start < int64(len(b)) && isSpace(b[start]) {
		start++
	}
	if start >= int64(len(b)) {
		return nil, formatErr(kind, base+start, field, "%s is empty", what)
	}
	if b[start] != '{' {
		return nil, formatErr(kind, base+start, field, "%s is not a JSON object (starts with %s)", what, describeByte(b[start]))
	}
	// Check the syntax of the whole object first: encoding/json reports exact offsets
	// only for a complete buffer, not for values read through a Decoder.
	if !json.Valid(b) {
		if err := json.Unmarshal(b, new(json.RawMessage)); err != nil {
			return nil, jsonErr(err, b, base, kind, field, what)
		}
	}
	return readMembers(b, base, kind, field, what)
}

// readMembers is readObject for a b that is already known to be valid JSON starting
// with '{' after optional whitespace (the whole input, or a member value of an object
// that readObject accepted). It walks the bytes directly instead of using
// encoding/json's Decoder, which allocates per token; it still checks every index, so
// it returns an error rather than panicking if b is not valid after all.
func readMembers(b []byte, base int64, kind error, field, what string) ([]member, error) {
	bad := func(i int) error {
		return formatErr(kind, base+int64(min(i, len(b))), field, "invalid JSON in %s", what)
	}
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return nil, bad(i)
	}
	i = skipSpace(b, i+1)
	var members []member
	var seen map[string]int64
	if i < len(b) && b[i] == '}' {
		return members, nil
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return nil, bad(i)
		}
		keyOff := i
		end, ok := stringEnd(b, i)
		if !ok {
			return nil, bad(i)
		}
		key, ok := jsonString(b[i:end])
		if !ok {
			return nil, bad(i)
		}
		if seen == nil {
			seen = make(map[string]int64)
		}
		if prev, dup := seen[key]; dup {
			return nil, formatErr(ErrDuplicate, base+int64(keyOff), joinField(field, strconv.Quote(key)),
				"%s has key %q twice (first at offset %d)", what, key, prev)
		}
		seen[key] = base + int64(keyOff)
		i = skipSpace(b, end)
		if i >= len(b) || b[i] != ':' {
			return nil, bad(i)
		}
		valOff := skipSpace(b, i+1)
		valEnd, ok := valueEnd(b, valOff)
		if !ok {
			return nil, bad(valOff)
		}
		members = append(members, member{Key: key, KeyOff: base + int64(keyOff), ValOff: base + int64(valOff), Val: b[valOff:valEnd]})
		i = skipSpace(b, valEnd)
		if i >= len(b) {
			return nil, bad(i)
		}
		if b[i] == '}' {
			return members, nil
		}
		if b[i] != ',' {
			return nil, bad(i)
		}
		i = skipSpace(b, i+1)
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

// stringEnd returns the index just past the JSON string starting at b[i] == '"'.
func stringEnd(b []byte, i int) (int, bool) {
	if i >= len(b) || b[i] != '"' {
		return 0, false
	}
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++ // skip the escaped byte (\uXXXX's hex digits need no care)
		case '"':
			return i + 1, true
		}
	}
	return 0, false
}

// valueEnd returns the index just past the JSON value starting at b[i], for valid JSON.
func valueEnd(b []byte, i int) (int, bool) {
	depth := 0
	for i < len(b) {
		switch c := b[i]; c {
		case '"':
			end, ok := stringEnd(b, i)
			if !ok {
				return 0, false
			}
			if i = end; depth == 0 {
				return i, true
			}
		case '{', '[':
			depth++
			i++
		case '}', ']':
			if depth == 0 {
				return 0, false
			}
			depth--
			i++
			if depth == 0 {
				return i, true
			}
		default:
			if depth > 0 {
				i++
				continue
			}
			// A number or literal at top level: it ends at a delimiter.
			j := i
			for j < len(b) && !isSpace(b[j]) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ':' {
				j++
			}
			if j == i {
				return 0, false
			}
			return j, true
		}
	}
	return 0, false
}

func joinField(parent, child string) string {
	if parent == "" {
		return child
	}
	return parent + "." + child
}

func describeByte(c byte) string {
	if c >= 0x20 && c < 0x7f {
		return strconv.QuoteRune(rune(c))
	}
	return "byte 0x" + strconv.FormatUint(uint64(c), 16)
}

// jsonErr converts an encoding/json error into a *FormatError with an absolute offset.
func jsonErr(err error, b []byte, base int64, kind error, field, what string) error {
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se) && se.Offset >= int64(len(b)) && strings.Contains(se.Error(), "unexpected end"):
		return &FormatError{Offset: base + int64(len(b)), Field: field, Msg: "invalid JSON in " + what + ": unexpected end of input", Err: kind}
	case errors.As(err, &se):
		off := se.Offset
		if off > 0 {
			off-- // Offset counts the offending byte
		}
		return &FormatError{Offset: base + off, Field: field, Msg: "invalid JSON in " + what + ": " + se.Error(), Err: kind}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return &FormatError{Offset: base + int64(len(b)), Field: field, Msg: "invalid JSON in " + what + ": unexpected end of input", Err: kind}
	}
	return &FormatError{Offset: base, Field: field, Msg: "invalid JSON in " + what, Err: kind, Cause: err}
}

// jsonString decodes raw as a JSON string; ok is false if raw is not a string.
func jsonString(raw []byte) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return "", false
	}
	inner := raw[1 : len(raw)-1]
	if bytes.IndexByte(inner, '\\') < 0 && bytes.IndexByte(inner, '"') < 0 && utf8.Valid(inner) {
		for _, c := range inner {
			if c < 0x20 {
				return "", false
			}
		}
		return string(inner), true
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}

// jsonArray splits raw, a valid JSON value, into its elements; ok is false if raw is
// not an array.
func jsonArray(raw []byte) ([][]byte, bool) {
	if len(raw) == 0 || raw[0] != '[' {
		return nil, false
	}
	i := skipSpace(raw, 1)
	var elems [][]byte
	if i < len(raw) && raw[i] == ']' {
		return elems, true
	}
	for i < len(raw) {
		end, ok := valueEnd(raw, i)
		if !ok {
			return nil, false
		}
		elems = append(elems, raw[i:end])
		i = skipSpace(raw, end)
		if i >= len(raw) {
			return nil, false
		}
		if raw[i] == ']' {
			return elems, true
		}
		if raw[i] != ',' {
			return nil, false
		}
		i = skipSpace(raw, i+1)
	}
	return nil, false
}

// jsonInt parses raw as a JSON integer literal (no fraction, no exponent) in int64
// range. It reports whether raw was an integer literal at all and, if so, whether the
// value overflowed int64.
func jsonInt(raw []byte) (v int64, isInt bool, err error) {
	s := raw[skipSpace(raw, 0):]
	for len(s) > 0 && isSpace(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	neg := len(s) > 0 && s[0] == '-'
	if neg {
		s = s[1:]
	}
	if len(s) == 0 || (s[0] == '0' && len(s) > 1) {
		return 0, false, nil
	}
	var u uint64
	overflow := false
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false, nil
		}
		d := uint64(c - '0')
		if u > (math.MaxUint64-d)/10 {
			overflow = true
		} else {
			u = u*10 + d
		}
	}
	limit := uint64(math.MaxInt64)
	if neg {
		limit++
	}
	if overflow || u > limit {
		return 0, true, strconv.ErrRange
	}
	if neg {
		return int64(-u), true, nil // -u wraps to math.MinInt64 correctly for u == 1<<63
	}
	return int64(u), true, nil
}

// appendJSONString appends s as a JSON string literal. s must be valid UTF-8. Unlike
// encoding/json it does not escape <, > and &, so names are stored as written.
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c == '\n':
			dst = append(dst, '\\', 'n')
		case c == '\r':
			dst = append(dst, '\\', 'r')
		case c == '\t':
			dst = append(dst, '\\', 't')
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}
