package tokenizer

import "unicode/utf8"

// seqState is the result of scanning one UTF-8 sequence.
type seqState uint8

const (
	seqComplete  seqState = iota // a whole valid character
	seqInvalid                   // a maximal invalid subsequence: one U+FFFD
	seqTruncated                 // a valid prefix cut off by the end of the input
)

// scanSeq scans the sequence at s[i] (a byte >= 0x80) the way the WHATWG UTF-8 decoder
// does and returns its length: a whole character, a maximal subpart that cannot start a
// valid character (which becomes one U+FFFD), or a valid prefix that reaches the end of s.
func scanSeq[T ~string | ~[]byte](s T, i int) (int, seqState) {
	b := s[i]
	need := 0
	lo, hi := byte(0x80), byte(0xBF)
	switch {
	case b >= 0xC2 && b <= 0xDF:
		need = 1
	case b == 0xE0:
		need, lo = 2, 0xA0
	case b == 0xED:
		need, hi = 2, 0x9F
	case b >= 0xE1 && b <= 0xEF:
		need = 2
	case b == 0xF0:
		need, lo = 3, 0x90
	case b == 0xF4:
		need, hi = 3, 0x8F
	case b >= 0xF1 && b <= 0xF3:
		need = 3
	default:
		return 1, seqInvalid
	}
	n := 1
	for range need {
		if i+n >= len(s) {
			return n, seqTruncated
		}
		if c := s[i+n]; c < lo || c > hi {
			return n, seqInvalid
		}
		lo, hi = 0x80, 0xBF
		n++
	}
	return n, seqComplete
}

// appendValidUTF8 appends s to dst with each maximal invalid subsequence (including a
// truncated one at the end) replaced by U+FFFD.
func appendValidUTF8[T ~string | ~[]byte](dst []byte, s T) []byte {
	for i := 0; i < len(s); {
		if s[i] < utf8.RuneSelf {
			j := i + 1
			for j < len(s) && s[j] < utf8.RuneSelf {
				j++
			}
			dst = append(dst, s[i:j]...)
			i = j
			continue
		}
		n, st := scanSeq(s, i)
		if st == seqComplete {
			dst = append(dst, s[i:i+n]...)
		} else {
			dst = append(dst, "\uFFFD"...)
		}
		i += n
	}
	return dst
}

// validString returns s, or a copy with invalid UTF-8 replaced as appendValidUTF8 does.
func validString(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return string(appendValidUTF8(make([]byte, 0, len(s)+8), s))
}
