package gguf

import (
	"errors"
	"strconv"
)

// Sentinel errors; every error from this package wraps one (test with errors.Is).
var (
	ErrBadMagic    = errors.New("not a GGUF file (bad magic)")
	ErrVersion     = errors.New("unsupported GGUF version")
	ErrTruncated   = errors.New("unexpected end of file")
	ErrCorrupt     = errors.New("invalid data")
	ErrUnknownType = errors.New("unknown type")
	ErrMisaligned  = errors.New("misaligned tensor data")
	ErrOverlap     = errors.New("overlapping tensor data")
	ErrDuplicate   = errors.New("duplicate name")
	ErrNotFound    = errors.New("not found")
	ErrWrongType   = errors.New("wrong value type")
	ErrWriter      = errors.New("invalid writer use")
	ErrClosed      = errors.New("file is closed")
)

// Error describes a problem in a GGUF file or with the use of one: the file, the
// byte offset in it where the offending field starts (-1 when there is none), what
// was being read, and a sentinel cause.
type Error struct {
	File   string // path or name given to Open/Parse/Create
	Offset int64  // byte offset of the offending field, -1 if not applicable
	Msg    string // what was wrong, e.g. `tensor "output.weight": dims`
	Err    error  // sentinel cause, or an underlying I/O error
}

func (e *Error) Error() string {
	s := "gguf: "
	if e.File != "" {
		s += e.File + ": "
	}
	if e.Offset >= 0 {
		s += "offset " + strconv.FormatInt(e.Offset, 10) + ": "
	}
	if e.Msg != "" {
		s += e.Msg + ": "
	}
	return s + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }
