package safetensors

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Sentinel errors, matched with errors.Is. Every *FormatError matches its class (Err)
// and, when set, its Cause: data_offsets past the end of the file match ErrOffsets and
// ErrTruncated, a name in two shards ErrDuplicate and ErrIndex, a missing shard
// ErrIndex and fs.ErrNotExist. Writer errors wrap ErrDType, ErrShape, ErrSize,
// ErrDuplicate or ErrMetadata where one applies.
var (
	// ErrTruncated: the file (or buffer) ends before the header or the data it declares.
	ErrTruncated = errors.New("truncated")
	// ErrBadHeader: the header length is absurd, or the header is not a valid JSON
	// object of objects.
	ErrBadHeader = errors.New("malformed header")
	// ErrDType: a dtype is missing, unknown, or has no tensor.DType.
	ErrDType = errors.New("bad dtype")
	// ErrShape: a shape is missing, has a negative or non-integer dimension, or its
	// element count overflows.
	ErrShape = errors.New("bad shape")
	// ErrOffsets: data_offsets are not two non-negative integers, end < begin, or end
	// lies past the data section.
	ErrOffsets = errors.New("bad data offsets")
	// ErrOverlap: two tensors share bytes of the data section.
	ErrOverlap = errors.New("overlapping tensors")
	// ErrSize: a tensor's byte size is not its element count times its dtype size.
	ErrSize = errors.New("size mismatch")
	// ErrDuplicate: the same tensor name (or JSON key) appears twice.
	ErrDuplicate = errors.New("duplicate name")
	// ErrMetadata: __metadata__ is not an object of string values.
	ErrMetadata = errors.New("bad metadata")
	// ErrIndex: model.safetensors.index.json is malformed or disagrees with the shards.
	ErrIndex = errors.New("bad checkpoint index")
)

// FormatError describes malformed input. Offset is the absolute byte offset in File of
// the offending field (for a shard index, the offset in the index JSON), or -1 when no
// single position applies.
type FormatError struct {
	File   string // path of the file, "" when parsing a buffer
	Offset int64  // byte offset in File, -1 if unknown
	Field  string // offending field, e.g. `"lm_head.weight".data_offsets`, may be ""
	Msg    string // what is wrong
	Err    error  // the sentinel class (ErrTruncated, ErrBadHeader, ...)
	Cause  error  // underlying error, may be nil
}

// Error formats as "safetensors: FILE: offset N: FIELD: MSG", omitting empty parts.
func (e *FormatError) Error() string {
	var b strings.Builder
	b.WriteString("safetensors: ")
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
	if e.Cause != nil && !isSentinel(e.Cause) && !strings.Contains(e.Msg, e.Cause.Error()) {
		b.WriteString(": ")
		b.WriteString(e.Cause.Error())
	}
	return b.String()
}

// Unwrap returns the sentinel class and the cause, for errors.Is and errors.As.
func (e *FormatError) Unwrap() []error {
	switch {
	case e.Err != nil && e.Cause != nil:
		return []error{e.Err, e.Cause}
	case e.Err != nil:
		return []error{e.Err}
	case e.Cause != nil:
		return []error{e.Cause}
	}
	return nil
}

func formatErr(kind error, off int64, field, format string, args ...any) *FormatError {
	return &FormatError{Offset: off, Field: field, Msg: fmt.Sprintf(format, args...), Err: kind}
}

// withFile sets File on a *FormatError (if err is one without a file) and returns err.
func withFile(err error, file string) error {
	var fe *FormatError
	if errors.As(err, &fe) && fe.File == "" {
		fe.File = file
	}
	return err
}

// tensorField names a field of a tensor entry for error messages.
func tensorField(name, field string) string {
	q := strconv.Quote(name)
	if field == "" {
		return q
	}
	return q + "." + field
}

// isSentinel reports whether err is one of this package's sentinel errors, which are
// not repeated in messages when they only serve as a second errors.Is class.
func isSentinel(err error) bool {
	switch err {
	case ErrTruncated, ErrBadHeader, ErrDType, ErrShape, ErrOffsets, ErrOverlap, ErrSize, ErrDuplicate, ErrMetadata, ErrIndex:
		return true
	}
	return false
}
