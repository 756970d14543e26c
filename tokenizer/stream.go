package tokenizer

import "unicode/utf8"

// StreamDecoder turns a stream of generated ids into valid UTF-8 text. Bytes of a
// character split across tokens are held until the character is complete; invalid
// sequences become U+FFFD as soon as they are known to be invalid. The concatenated
// output of Add calls and the final Flush equals the WHATWG (or Python errors="replace")
// decoding of all the tokens' bytes. A StreamDecoder is not safe for concurrent use.
type StreamDecoder struct {
	t    *Tokenizer
	pend [4]byte // an incomplete character (at most 3 bytes)
	np   int
	buf  []byte
	out  []byte
}

// NewStreamDecoder returns a decoder for one generated sequence.
func (t *Tokenizer) NewStreamDecoder() *StreamDecoder {
	return &StreamDecoder{t: t}
}

// Add decodes one id and returns the text that is now complete (possibly empty). The
// slice is reused: it is valid until the next call. An invalid id is an *IDError and
// leaves the decoder unchanged.
func (d *StreamDecoder) Add(id int) ([]byte, error) {
	tb, ok := d.t.tokenBytes(id)
	if !ok {
		return nil, &IDError{ID: id}
	}
	src := tb
	if d.np > 0 {
		d.buf = append(append(d.buf[:0], d.pend[:d.np]...), tb...)
		src = d.buf
		d.np = 0
	}
	out := d.out[:0]
	for i := 0; i < len(src); {
		if src[i] < utf8.RuneSelf {
			out = append(out, src[i])
			i++
			continue
		}
		n, st := scanSeq(src, i)
		switch st {
		case seqComplete:
			out = append(out, src[i:i+n]...)
		case seqInvalid:
			out = append(out, "\uFFFD"...)
		case seqTruncated:
			d.np = copy(d.pend[:], src[i:])
		}
		i += n
	}
	d.out = out
	return out, nil
}

// Flush ends the stream: it returns U+FFFD if an incomplete character is pending (and
// nothing otherwise) and resets the decoder for reuse. The slice is valid until the next
// call.
func (d *StreamDecoder) Flush() []byte {
	if d.np == 0 {
		return nil
	}
	d.np = 0
	d.out = append(d.out[:0], "\uFFFD"...)
	return d.out
}

// Pending reports how many bytes of an incomplete character are held.
func (d *StreamDecoder) Pending() int { return d.np }
