package engine

import (
	"context"
	"io"
	"iter"
	"sync"
	"time"
)

// Info describes a finished (or running) sequence.
type Info struct {
	PromptTokens     int           // prompt length
	CachedTokens     int           // prompt tokens whose KV came from the prefix cache
	CompletionTokens int           // tokens generated (a final stop id included)
	Finish           FinishReason  // empty while running or after an error
	QueueTime        time.Duration // submission to admission
	TimeToFirstToken time.Duration // submission to the first generated token
}

// Stream delivers the tokens of one submitted request. The engine never blocks on
// a slow reader: tokens are buffered. A Stream is safe for use by one reader while
// the engine writes.
type Stream struct {
	ctx context.Context

	mu   sync.Mutex
	buf  []Token
	head int
	err  error // set once the sequence ended: io.EOF or the failure
	info Info
	sig  chan struct{} // capacity 1: something was pushed
}

func newStream(ctx context.Context, promptLen int) *Stream {
	return &Stream{ctx: ctx, sig: make(chan struct{}, 1), info: Info{PromptTokens: promptLen}}
}

func (s *Stream) notify() {
	select {
	case s.sig <- struct{}{}:
	default:
	}
}

func (s *Stream) push(t Token) {
	s.mu.Lock()
	s.buf = append(s.buf, t)
	s.mu.Unlock()
	s.notify()
}

// end closes the stream with err (io.EOF for a normal end). Only the first call counts.
func (s *Stream) end(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
	s.notify()
}

func (s *Stream) update(f func(*Info)) {
	s.mu.Lock()
	f(&s.info)
	s.mu.Unlock()
}

// Info returns what is known about the sequence so far; it is complete once Next
// has returned io.EOF.
func (s *Stream) Info() Info {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.info
}

// Next returns the next token. At the end of the sequence it returns io.EOF; if the
// sequence failed, or the context given to Submit was cancelled, that error.
func (s *Stream) Next() (Token, error) {
	for {
		s.mu.Lock()
		if s.head < len(s.buf) {
			t := s.buf[s.head]
			s.buf[s.head] = Token{}
			s.head++
			if s.head == len(s.buf) {
				s.buf, s.head = s.buf[:0], 0
			}
			s.mu.Unlock()
			return t, nil
		}
		err := s.err
		s.mu.Unlock()
		if err != nil {
			return Token{}, err
		}
		select {
		case <-s.sig:
		case <-s.ctx.Done():
			// Deliver what the engine already produced before reporting cancellation.
			s.mu.Lock()
			more := s.head < len(s.buf) || s.err != nil
			s.mu.Unlock()
			if !more {
				return Token{}, s.ctx.Err()
			}
		}
	}
}

// Tokens iterates over the remaining tokens; a failure is yielded once as the error
// (io.EOF is not an error and ends the iteration silently).
func (s *Stream) Tokens() iter.Seq2[Token, error] {
	return func(yield func(Token, error) bool) {
		for {
			t, err := s.Next()
			if err == io.EOF {
				return
			}
			if err != nil {
				yield(Token{}, err)
				return
			}
			if !yield(t, nil) {
				return
			}
		}
	}
}
