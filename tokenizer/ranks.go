package tokenizer

import (
	_ "embed"
	"encoding/base64"
	"fmt"
	"math/bits"
	"slices"
)

// cl100kData is the official cl100k_base.tiktoken rank file (sha256 223921b7…65b2a7).
//
//go:embed cl100k_base.tiktoken
var cl100kData []byte

// noRank marks "not a token" in rank lookups.
const noRank = ^uint32(0)

// ParseError reports a malformed line of a .tiktoken rank file.
type ParseError struct {
	Name   string // file name given to NewFromRanks
	Line   int    // 1-based line number
	Offset int    // byte offset of the start of the line
	Msg    string
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("tokenizer: %s:%d (byte %d): %s", e.Name, e.Line, e.Offset, e.Msg)
}

// ranks is the mergeable-token table: id -> bytes and bytes -> id.
type ranks struct {
	arena []byte   // all token bytes, by id
	off   []uint32 // [n+1] token id's bytes are arena[off[id]:off[id+1]]; empty = hole
	slots []slot   // open addressing, linear probing; load factor below 1/2
	mask  uint64
	// filter has bit hash>>fshift set for every token: a cache-resident test (256 KiB
	// for cl100k, 16 bits per token) that rejects most strings that are no token (the
	// common case while merging) without touching the large slot table.
	filter []uint64
	fshift uint

	byteRank [256]uint32 // rank of each single byte
	pairRank []uint32    // [65536] rank+1 of each two-byte string, 0 if none (see pair)
	n        int         // number of ids (max rank + 1)
	count    int         // number of tokens (ids minus holes)
}

// slot is one hash table entry. Comparing key and length settles tokens of up to 8
// bytes without touching the arena.
type slot struct {
	key uint64 // the first 8 bytes of the token, little-endian, zero-padded
	val uint64 // id+1 (0: empty) | length<<32 | arena offset<<40
}

// Limits of the slot encoding.
const (
	maxTokenLen  = 255
	maxArenaSize = 1 << 24
)

// parseRanks parses a .tiktoken file: one "<base64 bytes> <rank>" entry per non-empty
// line. Ranks must be distinct and below maxID; every single byte must be a token.
func parseRanks(name string, data []byte, maxID int) (*ranks, error) {
	type entry struct {
		lo, hi int // decoded bytes in tmp
		rank   int
		line   int
		offset int
	}
	var (
		entries []entry
		tmp     = make([]byte, 0, len(data)*3/4)
		maxRank = -1
		total   = 0
	)
	line := 0
	for pos := 0; pos < len(data); {
		line++
		start := pos
		end := pos
		for end < len(data) && data[end] != '\n' {
			end++
		}
		pos = end + 1
		l := data[start:end]
		if len(l) > 0 && l[len(l)-1] == '\r' {
			l = l[:len(l)-1]
		}
		if len(l) == 0 {
			continue
		}
		perr := func(msg string, args ...any) error {
			return &ParseError{Name: name, Line: line, Offset: start, Msg: fmt.Sprintf(msg, args...)}
		}
		sp := -1
		for i, c := range l {
			if c == ' ' {
				sp = i
				break
			}
		}
		if sp < 0 {
			return nil, perr("want \"<base64> <rank>\"")
		}
		b64, num := l[:sp], l[sp+1:]
		if len(num) == 0 || len(num) > 9 {
			return nil, perr("bad rank %q", num)
		}
		rank := 0
		for _, c := range num {
			if c < '0' || c > '9' {
				return nil, perr("bad rank %q", num)
			}
			rank = rank*10 + int(c-'0')
		}
		if rank >= maxID {
			return nil, perr("rank %d is not below %d", rank, maxID)
		}
		lo := len(tmp)
		dec := base64.StdEncoding
		need := dec.DecodedLen(len(b64))
		tmp = slices.Grow(tmp, need)[:lo+need]
		n, err := dec.Decode(tmp[lo:], b64)
		if err != nil {
			return nil, perr("bad base64: %v", err)
		}
		if n == 0 {
			return nil, perr("empty token")
		}
		if n > maxTokenLen {
			return nil, perr("token longer than %d bytes", maxTokenLen)
		}
		if total+n > maxArenaSize {
			return nil, perr("more than %d bytes of tokens", maxArenaSize)
		}
		tmp = tmp[:lo+n]
		entries = append(entries, entry{lo, lo + n, rank, line, start})
		total += n
		maxRank = max(maxRank, rank)
	}
	if len(entries) == 0 {
		return nil, &ParseError{Name: name, Line: line, Offset: len(data), Msg: "no tokens"}
	}
	r := &ranks{n: maxRank + 1, count: len(entries)}
	r.off = make([]uint32, r.n+1)
	seen := make([]int, r.n) // rank -> index into entries + 1
	for k, e := range entries {
		if seen[e.rank] != 0 {
			return nil, &ParseError{Name: name, Line: e.line, Offset: e.offset, Msg: fmt.Sprintf("rank %d appears twice", e.rank)}
		}
		seen[e.rank] = k + 1
	}
	r.arena = make([]byte, 0, total)
	for id := 0; id < r.n; id++ {
		r.off[id] = uint32(len(r.arena))
		if k := seen[id]; k != 0 {
			e := entries[k-1]
			r.arena = append(r.arena, tmp[e.lo:e.hi]...)
		}
	}
	r.off[r.n] = uint32(len(r.arena))

	size := 1 << bits.Len(uint(2*len(entries)))
	r.slots = make([]slot, size)
	filterBits := max(bits.Len(uint(16*len(entries)-1)), 6)
	r.filter = make([]uint64, 1<<filterBits/64)
	r.fshift = uint(64 - filterBits)
	r.mask = uint64(size - 1)
	for i := range r.byteRank {
		r.byteRank[i] = noRank
	}
	r.pairRank = make([]uint32, 1<<16)
	for id := 0; id < r.n; id++ {
		tok := r.token(uint32(id))
		if len(tok) == 0 {
			continue
		}
		if _, dup := r.find(string(tok)); dup {
			e := entries[seen[id]-1]
			return nil, &ParseError{Name: name, Line: e.line, Offset: e.offset, Msg: fmt.Sprintf("token %q appears twice", tok)}
		}
		k := key8(string(tok))
		h := hashKey(k, string(tok))
		r.filter[h>>r.fshift/64] |= 1 << (h >> r.fshift % 64)
		i := h & r.mask
		for r.slots[i].val != 0 {
			i = (i + 1) & r.mask
		}
		r.slots[i] = slot{k, uint64(id+1) | uint64(len(tok))<<32 | uint64(r.off[id])<<40}
		switch len(tok) {
		case 1:
			r.byteRank[tok[0]] = uint32(id)
		case 2:
			r.pairRank[int(tok[0])<<8|int(tok[1])] = uint32(id) + 1
		}
	}
	for b, rk := range r.byteRank {
		if rk == noRank {
			return nil, &ParseError{Name: name, Line: line, Offset: len(data), Msg: fmt.Sprintf("byte 0x%02x is not a token", b)}
		}
	}
	return r, nil
}

// token returns the bytes of id (empty for a hole); id must be < r.n.
func (r *ranks) token(id uint32) []byte {
	return r.arena[r.off[id]:r.off[id+1]:r.off[id+1]]
}

// find returns the rank of s.
func (r *ranks) find(s string) (uint32, bool) {
	k := key8(s)
	return r.findHashed(s, k, hashKey(k, s))
}

// findHashed is find given k = key8(s) and h = hashKey(k, s).
func (r *ranks) findHashed(s string, k, h uint64) (uint32, bool) {
	n := len(s)
	if n > maxTokenLen || r.filter[h>>r.fshift/64]&(1<<(h>>r.fshift%64)) == 0 {
		return 0, false
	}
	for i := h & r.mask; ; i = (i + 1) & r.mask {
		e := &r.slots[i]
		if e.val == 0 {
			return 0, false
		}
		if e.key == k && uint8(e.val>>32) == uint8(n) {
			if n <= 8 {
				return uint32(e.val) - 1, true
			}
			off := int(e.val >> 40)
			if string(r.arena[off+8:off+n]) == s[8:] {
				return uint32(e.val) - 1, true
			}
		}
	}
}

// pair returns the rank of the two-byte string ab, or noRank (0 - 1 wraps to noRank).
func (r *ranks) pair(a, b byte) uint32 {
	return r.pairRank[int(a)<<8|int(b)] - 1
}

// rank returns the rank of s, or noRank.
func (r *ranks) rank(s string) uint32 {
	switch len(s) {
	case 1:
		return r.byteRank[s[0]]
	case 2:
		return r.pair(s[0], s[1])
	}
	if id, ok := r.find(s); ok {
		return id
	}
	return noRank
}

// key8 returns the first 8 bytes of s (little-endian, zero-padded).
func key8(s string) uint64 {
	n := len(s)
	switch {
	case n >= 8:
		return le64(s)
	case n >= 4: // two overlapping loads; the overlap holds the same bytes
		return uint64(le32(s)) | uint64(le32(s[n-4:]))<<(8*(n-4))
	case n > 0:
		return uint64(s[0]) | uint64(s[n>>1])<<(8*(n>>1)) | uint64(s[n-1])<<(8*(n-1))
	}
	return 0
}

// hashKey is a small wyhash-style hash of s, given k = key8(s).
func hashKey(k uint64, s string) uint64 {
	const (
		k0 = 0xa0761d6478bd642f
		k1 = 0xe7037ed1a0b428db
		k2 = 0x8ebc6af09c88c6e3
	)
	n := len(s)
	var b uint64
	if n > 8 {
		b = le64(s[n-8:])
		for i := 8; i+8 < n; i += 8 {
			b = mix(le64(s[i:])^k0, b^k1)
		}
	}
	return mix(k^k1, b^k2^uint64(n))
}

func mix(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

func le64(s string) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

func le32(s string) uint32 {
	_ = s[3]
	return uint32(s[0]) | uint32(s[1])<<8 | uint32(s[2])<<16 | uint32(s[3])<<24
}
