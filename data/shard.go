package data

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
	"unsafe"

	"github.com/dbrx-engine/dbrx/internal/atomicfile"
	"github.com/dbrx-engine/dbrx/internal/mmap"
)

// Shard format constants (see the package documentation for the layout).
const (
	Magic         = "DBRXTOK1"
	Version       = 1
	HeaderSize    = 64
	DTypeUint32   = 1      // the only token dtype: little-endian uint32
	EndOfText     = 100257 // DBRX <|endoftext|> (tokenizer.EndOfText)
	ShardExt      = ".tok"
	maxTokenCount = (math.MaxInt64 - HeaderSize) / 4
)

// Header field offsets.
const (
	offMagic     = 0
	offVersion   = 8
	offHdrSize   = 12
	offDType     = 16
	offEOT       = 20
	offTokens    = 24
	offDocs      = 32
	offCRC       = 40
	offReserved  = 44
	offHeaderCRC = 60
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Header is the decoded header of a token shard.
type Header struct {
	Version    uint32
	DType      uint32 // DTypeUint32
	EOT        uint32 // document separator id
	Tokens     int64  // number of ids in the payload
	Documents  int64  // number of EOT ids in the payload
	PayloadCRC uint32 // CRC-32C of the payload bytes
}

// PayloadBytes is the size of the token payload.
func (h Header) PayloadBytes() int64 { return h.Tokens * 4 }

// FileSize is the size of the whole shard file.
func (h Header) FileSize() int64 { return HeaderSize + h.PayloadBytes() }

// AppendBinary appends the 64-byte encoding of h (with Magic, HeaderSize and the
// header checksum) to b.
func (h Header) AppendBinary(b []byte) ([]byte, error) {
	var buf [HeaderSize]byte
	copy(buf[offMagic:], Magic)
	le := binary.LittleEndian
	le.PutUint32(buf[offVersion:], h.Version)
	le.PutUint32(buf[offHdrSize:], HeaderSize)
	le.PutUint32(buf[offDType:], h.DType)
	le.PutUint32(buf[offEOT:], h.EOT)
	le.PutUint64(buf[offTokens:], uint64(h.Tokens))
	le.PutUint64(buf[offDocs:], uint64(h.Documents))
	le.PutUint32(buf[offCRC:], h.PayloadCRC)
	le.PutUint32(buf[offHeaderCRC:], crc32.Checksum(buf[:offHeaderCRC], castagnoli))
	return append(b, buf[:]...), nil
}

// ParseHeader decodes and checks the header at the start of b. fileSize, when >= 0,
// is the size of the whole file, which must be exactly the header plus the declared
// payload. It never panics; errors are *FormatError with the offset of the bad field.
func ParseHeader(b []byte, fileSize int64) (Header, error) {
	var h Header
	if len(b) < HeaderSize {
		if len(b) < len(Magic) && string(b) != Magic[:len(b)] {
			return h, formatErr(ErrMagic, offMagic, "magic", fmt.Sprintf("%q is not %q", b, Magic))
		}
		return h, formatErr(ErrTruncated, int64(len(b)), "header", fmt.Sprintf("%d bytes, a header needs %d", len(b), HeaderSize))
	}
	if string(b[:8]) != Magic {
		return h, formatErr(ErrMagic, offMagic, "magic", fmt.Sprintf("%q is not %q", b[:8], Magic))
	}
	le := binary.LittleEndian
	h.Version = le.Uint32(b[offVersion:])
	if h.Version != Version {
		return h, formatErr(ErrVersion, offVersion, "version", fmt.Sprintf("version %d, this reader knows %d", h.Version, Version))
	}
	if got, want := le.Uint32(b[offHeaderCRC:]), crc32.Checksum(b[:offHeaderCRC], castagnoli); got != want {
		return h, formatErr(ErrChecksum, offHeaderCRC, "header_crc", fmt.Sprintf("stored %#08x, computed %#08x", got, want))
	}
	if n := le.Uint32(b[offHdrSize:]); n != HeaderSize {
		return h, formatErr(ErrHeader, offHdrSize, "header_size", fmt.Sprintf("%d, want %d", n, HeaderSize))
	}
	h.DType = le.Uint32(b[offDType:])
	if h.DType != DTypeUint32 {
		return h, formatErr(ErrDType, offDType, "dtype", fmt.Sprintf("dtype %d, only %d (uint32) is supported", h.DType, DTypeUint32))
	}
	h.EOT = le.Uint32(b[offEOT:])
	tokens, docs := le.Uint64(b[offTokens:]), le.Uint64(b[offDocs:])
	if tokens > maxTokenCount {
		return h, formatErr(ErrHeader, offTokens, "token_count", fmt.Sprintf("%d is too large", tokens))
	}
	if docs > tokens {
		return h, formatErr(ErrHeader, offDocs, "document_count", fmt.Sprintf("%d documents in %d tokens", docs, tokens))
	}
	h.Tokens, h.Documents = int64(tokens), int64(docs)
	h.PayloadCRC = le.Uint32(b[offCRC:])
	for i := offReserved; i < offHeaderCRC; i++ {
		if b[i] != 0 {
			return h, formatErr(ErrHeader, int64(i), "reserved", fmt.Sprintf("byte %#02x, must be zero", b[i]))
		}
	}
	if fileSize >= 0 {
		switch want := h.FileSize(); {
		case fileSize < want:
			return h, formatErr(ErrTruncated, fileSize, "tokens", fmt.Sprintf("file has %d bytes, header declares %d tokens (%d bytes)", fileSize, h.Tokens, want))
		case fileSize > want:
			return h, formatErr(ErrSize, want, "tokens", fmt.Sprintf("%d bytes after the %d declared tokens", fileSize-want, h.Tokens))
		}
	}
	return h, nil
}

// ShardWriter streams token ids into a new shard. The file appears at its path only
// when Close succeeds; until then it is a temporary file in the same directory. A
// ShardWriter is not safe for concurrent use.
type ShardWriter struct {
	path string
	f    *atomicfile.File
	bw   *bufio.Writer
	hdr  Header
	crc  uint32
	buf  []byte
	err  error
	done bool
}

// CreateShard starts a shard at path whose documents are separated by eot.
func CreateShard(path string, eot uint32) (*ShardWriter, error) {
	f, err := atomicfile.Create(path)
	if err != nil {
		return nil, fmt.Errorf("data: create shard: %w", err)
	}
	w := &ShardWriter{path: path, f: f, bw: bufio.NewWriterSize(f, 1<<20),
		hdr: Header{Version: Version, DType: DTypeUint32, EOT: eot}}
	var zero [HeaderSize]byte
	if _, err := w.bw.Write(zero[:]); err != nil { // placeholder, rewritten by Close
		w.Abort()
		return nil, fmt.Errorf("data: %s: %w", path, err)
	}
	return w, nil
}

// Path returns the final path of the shard.
func (w *ShardWriter) Path() string { return w.path }

// Tokens returns the number of ids written so far.
func (w *ShardWriter) Tokens() int64 { return w.hdr.Tokens }

// Documents returns the number of end-of-text ids written so far.
func (w *ShardWriter) Documents() int64 { return w.hdr.Documents }

// WriteDocument appends ids followed by the end-of-text id. Ids must be in
// [0, 2^32).
func (w *ShardWriter) WriteDocument(ids []int) error {
	if w.err != nil {
		return w.err
	}
	buf := w.buf[:0]
	for i, id := range ids {
		if id < 0 || uint64(id) > math.MaxUint32 {
			return fmt.Errorf("data: %s: id %d at position %d of the document is not a uint32", w.path, id, i)
		}
		buf = binary.LittleEndian.AppendUint32(buf, uint32(id))
		if len(buf) >= 1<<16 {
			if err := w.write(buf); err != nil {
				return err
			}
			buf = buf[:0]
		}
	}
	buf = binary.LittleEndian.AppendUint32(buf, w.hdr.EOT)
	err := w.write(buf)
	w.buf = buf[:0]
	return err
}

// WriteTokens appends raw ids (any end-of-text ids among them count as documents).
func (w *ShardWriter) WriteTokens(ids []uint32) error {
	if w.err != nil {
		return w.err
	}
	buf := w.buf[:0]
	for len(ids) > 0 {
		n := min(len(ids), 1<<14)
		for _, id := range ids[:n] {
			buf = binary.LittleEndian.AppendUint32(buf, id)
		}
		if err := w.write(buf); err != nil {
			return err
		}
		buf, ids = buf[:0], ids[n:]
	}
	w.buf = buf
	return nil
}

// write appends encoded ids, updating counts and checksum.
func (w *ShardWriter) write(b []byte) error {
	if w.hdr.Tokens+int64(len(b)/4) > maxTokenCount {
		w.err = fmt.Errorf("data: %s: shard too large", w.path)
		return w.err
	}
	if _, err := w.bw.Write(b); err != nil {
		w.err = fmt.Errorf("data: %s: %w", w.path, err)
		return w.err
	}
	w.crc = crc32.Update(w.crc, castagnoli, b)
	for i := 0; i < len(b); i += 4 {
		if binary.LittleEndian.Uint32(b[i:]) == w.hdr.EOT {
			w.hdr.Documents++
		}
	}
	w.hdr.Tokens += int64(len(b) / 4)
	return nil
}

// Close writes the header, fsyncs the file, renames it into place and fsyncs the
// directory. On error the temporary file is removed. Calls after the first return
// the first result.
func (w *ShardWriter) Close() error {
	if w.done {
		return w.err
	}
	err := w.err
	if err == nil {
		err = w.finish()
	}
	if err != nil {
		w.Abort()
		w.err = err
		return err
	}
	w.done = true
	return nil
}

func (w *ShardWriter) finish() error {
	wrap := func(op string, err error) error { return fmt.Errorf("data: %s: %s: %w", w.path, op, err) }
	if err := w.bw.Flush(); err != nil {
		return wrap("write", err)
	}
	w.hdr.PayloadCRC = w.crc
	hdr, _ := w.hdr.AppendBinary(nil)
	if _, err := w.f.WriteAt(hdr, 0); err != nil {
		return wrap("write header", err)
	}
	if err := w.f.Commit(); err != nil {
		return fmt.Errorf("data: %w", err)
	}
	return nil
}

// Abort stops writing and removes the temporary file; a no-op after Close.
func (w *ShardWriter) Abort() {
	if w.done {
		return
	}
	w.done = true
	if w.err == nil {
		w.err = fmt.Errorf("data: %s: writer aborted", w.path)
	}
	w.f.Abort() // a no-op once Commit has run, whatever its result
}

// writeFileAtomic writes data to path through a fsynced temporary file and a rename
// (see internal/atomicfile).
func writeFileAtomic(path string, data []byte) error { return atomicfile.WriteFile(path, data) }

// Shard is an open, read-only token shard.
type Shard struct {
	path   string
	region *mmap.Region
	hdr    Header
	raw    []byte   // [4N] payload bytes
	tokens []uint32 // [N] view of the payload (or a decoded copy)
}

var littleEndianHost = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// OpenShard maps the shard at path and checks its header and size (not the payload
// checksum: see Verify).
func OpenShard(path string) (*Shard, error) {
	r, err := mmap.Open(path)
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	s, err := newShard(path, r.Data())
	if err != nil {
		r.Close()
		return nil, err
	}
	s.region = r
	return s, nil
}

// newShard checks b (a whole file) and views its payload.
func newShard(path string, b []byte) (*Shard, error) {
	h, err := ParseHeader(b, int64(len(b)))
	if err != nil {
		return nil, withFile(err, path)
	}
	p := b[HeaderSize:]
	s := &Shard{path: path, hdr: h, raw: p}
	if len(p) == 0 {
		return s, nil
	}
	if littleEndianHost && uintptr(unsafe.Pointer(&p[0]))%4 == 0 {
		s.tokens = unsafe.Slice((*uint32)(unsafe.Pointer(&p[0])), h.Tokens)
	} else {
		s.tokens = make([]uint32, h.Tokens)
		for i := range s.tokens {
			s.tokens[i] = binary.LittleEndian.Uint32(p[4*i:])
		}
	}
	return s, nil
}

// Path returns the file the shard was opened from.
func (s *Shard) Path() string { return s.path }

// Header returns the decoded header.
func (s *Shard) Header() Header { return s.hdr }

// Len returns the number of tokens.
func (s *Shard) Len() int64 { return s.hdr.Tokens }

// Tokens returns the ids ([N] uint32). The slice is read-only (writing to a mapped
// shard faults) and must not be used after Close.
func (s *Shard) Tokens() []uint32 { return s.tokens }

// Verify checks the payload checksum and that the payload holds exactly the declared
// number of end-of-text ids. It reads the whole file.
func (s *Shard) Verify() error {
	crc := crc32.Checksum(s.raw, castagnoli)
	var docs int64
	eot := s.hdr.EOT
	for _, id := range s.tokens {
		if id == eot {
			docs++
		}
	}
	if crc != s.hdr.PayloadCRC {
		return &FormatError{File: s.path, Offset: HeaderSize, Field: "payload",
			Msg: fmt.Sprintf("CRC-32C %#08x, header says %#08x", crc, s.hdr.PayloadCRC), Err: ErrChecksum}
	}
	if docs != s.hdr.Documents {
		return &FormatError{File: s.path, Offset: offDocs, Field: "document_count",
			Msg: fmt.Sprintf("header says %d, payload has %d end-of-text ids", s.hdr.Documents, docs), Err: ErrChecksum}
	}
	return nil
}

// Close unmaps the shard. It is safe to call more than once.
func (s *Shard) Close() error {
	s.tokens, s.raw = nil, nil
	return s.region.Close()
}
