package data

import (
	"errors"
	"strconv"
	"strings"
)

// Sentinel errors. A *FormatError matches exactly one of the first eight with
// errors.Is.
var (
	// ErrTruncated: the file ends before the header or the tokens it declares.
	ErrTruncated = errors.New("truncated")
	// ErrMagic: the file does not start with "DBRXTOK1".
	ErrMagic = errors.New("bad magic")
	// ErrVersion: the format version is not one this package reads.
	ErrVersion = errors.New("unsupported version")
	// ErrDType: the token dtype is not uint32.
	ErrDType = errors.New("unsupported dtype")
	// ErrHeader: a header field is inconsistent (header size, reserved bytes, counts).
	ErrHeader = errors.New("malformed header")
	// ErrChecksum: the header or payload CRC, or the document count, does not match.
	ErrChecksum = errors.New("checksum mismatch")
	// ErrSize: the file is longer than its header declares.
	ErrSize = errors.New("size mismatch")
	// ErrInput: a corpus input (JSONL line, manifest) is malformed.
	ErrInput = errors.New("malformed input")

	// ErrConfig: a configuration is invalid.
	ErrConfig = errors.New("data: invalid config")
	// ErrState: a loader state does not fit the loader it is restored into.
	ErrState = errors.New("data: loader state mismatch")
)

// FormatError describes a malformed shard or input file.
type FormatError struct {
	File   string // path, "" when parsing a buffer
	Offset int64  // byte offset of the offending field in File, -1 if none applies
	Field  string // e.g. "token_count", "line 12"; may be ""
	Msg    string
	Err    error // sentinel class
}

// Error formats as "data: FILE: offset N: FIELD: MSG", omitting empty parts.
func (e *FormatError) Error() string {
	var b strings.Builder
	b.WriteString("data: ")
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(": ")
	}
	if e.Offset >= 0 {
		b.WriteString("offset ")
		b.WriteString(strconv.FormatInt(e.Offset, 10))
		b.WriteString(": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap returns the sentinel class.
func (e *FormatError) Unwrap() error { return e.Err }

func formatErr(kind error, off int64, field, msg string) *FormatError {
	return &FormatError{Offset: off, Field: field, Msg: msg, Err: kind}
}

func withFile(err error, file string) error {
	var fe *FormatError
	if errors.As(err, &fe) && fe.File == "" {
		fe.File = file
	}
	return err
}
