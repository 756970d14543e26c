package engine

import "bytes"

// stopText applies stop sequences to streamed text. Text is released only once it
// can no longer be the start of a stop sequence, so a stop sequence split across
// tokens is matched and never emitted.
type stopText struct {
	stops   [][]byte
	pending []byte // decoded text held back
}

func newStopText(stops []string) stopText {
	var st stopText
	for _, s := range stops {
		if s != "" {
			st.stops = append(st.stops, []byte(s))
		}
	}
	return st
}

// push appends b and returns the text that can be released; stopped reports that a
// stop sequence matched (out is then the text before it, and the rest is dropped).
func (st *stopText) push(b []byte) (out string, stopped bool) {
	st.pending = append(st.pending, b...)
	if len(st.stops) == 0 {
		out = string(st.pending)
		st.pending = st.pending[:0]
		return out, false
	}
	first := -1
	for _, s := range st.stops {
		if i := bytes.Index(st.pending, s); i >= 0 && (first < 0 || i < first) {
			first = i
		}
	}
	if first >= 0 {
		out = string(st.pending[:first])
		st.pending = st.pending[:0]
		return out, true
	}
	hold := 0
	for _, s := range st.stops {
		for k := min(len(s)-1, len(st.pending)); k > hold; k-- {
			if bytes.HasSuffix(st.pending, s[:k]) {
				hold = k
				break
			}
		}
	}
	n := len(st.pending) - hold
	out = string(st.pending[:n])
	st.pending = st.pending[:copy(st.pending, st.pending[n:])]
	return out, false
}

// flush releases the held text (the sequence ended without a match).
func (st *stopText) flush() string {
	out := string(st.pending)
	st.pending = st.pending[:0]
	return out
}
