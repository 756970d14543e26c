package data

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Encoder turns text into token ids without recognising special-token strings; the
// DBRX tokenizer (tokenizer.DBRX()) implements it. It must be safe for concurrent use.
type Encoder interface {
	EncodeOrdinary(text string) []int
}

// PrepareConfig configures Prepare.
type PrepareConfig struct {
	OutDir string // output directory (created if missing)
	// Name prefixes every output: NAME-train-00000.tok, NAME-heldout-00000.tok and the
	// manifest NAME.json. Letters, digits, '.', '_' and '-'.
	Name string
	// HeldOut is the fraction of documents, in [0, 1), sent to the held-out split,
	// chosen by a seeded hash of each document's text (so duplicates land together).
	HeldOut float64
	Seed    uint64
	// JSONL reads every input as JSON lines; files ending in .jsonl are read so anyway.
	JSONL bool
	// TextField is the JSONL field holding a document ("text").
	TextField string
	// Exts keeps, when walking directories, only files with these extensions (".go");
	// empty keeps every file. Files named explicitly are always read.
	Exts []string
	// ShardTokens starts a new shard once a shard holds this many tokens; a document
	// is never split, so a shard may exceed it by one document. Default 1<<28.
	ShardTokens int64
	// Workers tokenizing in parallel; <= 0 means runtime.GOMAXPROCS(0).
	Workers int
	// EOT is the id appended after every document (EndOfText).
	EOT int
	// BatchBytes bounds the text held in memory at once (default 16 MiB).
	BatchBytes int
	// Progress, if set, is called from Prepare's goroutine with the input bytes
	// processed so far and the total.
	Progress func(done, total int64)
}

// DefaultPrepareConfig returns a configuration with the defaults; OutDir and Name
// must still be set.
func DefaultPrepareConfig() PrepareConfig {
	return PrepareConfig{TextField: "text", ShardTokens: 1 << 28, EOT: EndOfText, BatchBytes: 16 << 20}
}

var validName = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// Validate checks the configuration.
func (c PrepareConfig) Validate() error {
	switch {
	case c.OutDir == "":
		return fmt.Errorf("%w: OutDir is empty", ErrConfig)
	case !validName.MatchString(c.Name) || c.Name == "." || c.Name == "..":
		return fmt.Errorf("%w: Name %q must be letters, digits, '.', '_' or '-'", ErrConfig, c.Name)
	case !(c.HeldOut >= 0 && c.HeldOut < 1):
		return fmt.Errorf("%w: HeldOut %v not in [0, 1)", ErrConfig, c.HeldOut)
	case c.TextField == "":
		return fmt.Errorf("%w: TextField is empty", ErrConfig)
	case c.ShardTokens < 1:
		return fmt.Errorf("%w: ShardTokens %d < 1", ErrConfig, c.ShardTokens)
	case c.EOT < 0 || c.EOT > math.MaxUint32:
		return fmt.Errorf("%w: EOT %d is not a uint32", ErrConfig, c.EOT)
	case c.BatchBytes < 1:
		return fmt.Errorf("%w: BatchBytes %d < 1", ErrConfig, c.BatchBytes)
	}
	return nil
}

// Split names.
const (
	SplitTrain   = "train"
	SplitHeldOut = "heldout"
)

// SplitStats counts one split's output.
type SplitStats struct {
	Documents int64
	Tokens    int64
	Shards    []string // paths
}

// PrepareStats summarises a Prepare run.
type PrepareStats struct {
	Files      int   // input files read
	InputBytes int64 // their total size
	Documents  int64 // documents written (both splits)
	Tokens     int64 // tokens written, end-of-text ids included
	Train      SplitStats
	HeldOut    SplitStats
	Manifest   string // path of the manifest
	Duration   time.Duration
}

// Manifest lists the shards Prepare wrote (file NAME.json in the output directory).
type Manifest struct {
	Format          string      `json:"format"` // "dbrx-tokens"
	Version         int         `json:"version"`
	Name            string      `json:"name"`
	EOT             int         `json:"eot"`
	Seed            uint64      `json:"seed"`
	HeldOutFraction float64     `json:"heldout_fraction"`
	Files           int         `json:"files"`
	InputBytes      int64       `json:"input_bytes"`
	Train           []ShardInfo `json:"train"`
	HeldOut         []ShardInfo `json:"heldout"`
}

// ShardInfo describes one shard in a Manifest; File is relative to the manifest.
type ShardInfo struct {
	File      string `json:"file"`
	Tokens    int64  `json:"tokens"`
	Documents int64  `json:"documents"`
	CRC32C    uint32 `json:"crc32c"`
}

const manifestFormat = "dbrx-tokens"

// doc is one document awaiting tokenization.
type doc struct {
	text    string
	heldOut bool
	ids     []int
}

// splitWriter rolls shards of one split.
type splitWriter struct {
	cfg   *PrepareConfig
	split string
	w     *ShardWriter
	done  []ShardInfo
	paths []string
	stats *SplitStats
}

func (s *splitWriter) write(ids []int) error {
	if s.w != nil && s.w.Tokens() > 0 && s.w.Tokens()+int64(len(ids))+1 > s.cfg.ShardTokens {
		if err := s.close(); err != nil {
			return err
		}
	}
	if s.w == nil {
		name := fmt.Sprintf("%s-%s-%05d%s", s.cfg.Name, s.split, len(s.done), ShardExt)
		w, err := CreateShard(filepath.Join(s.cfg.OutDir, name), uint32(s.cfg.EOT))
		if err != nil {
			return err
		}
		s.w = w
	}
	if err := s.w.WriteDocument(ids); err != nil {
		return err
	}
	s.stats.Documents++
	s.stats.Tokens += int64(len(ids)) + 1
	return nil
}

func (s *splitWriter) close() error {
	if s.w == nil {
		return nil
	}
	w := s.w
	s.w = nil
	if err := w.Close(); err != nil {
		return err
	}
	s.done = append(s.done, ShardInfo{File: filepath.Base(w.Path()), Tokens: w.Tokens(), Documents: w.Documents(), CRC32C: w.hdr.PayloadCRC})
	s.paths = append(s.paths, w.Path())
	return nil
}

// abort drops the open shard and removes the shards this run completed.
func (s *splitWriter) abort() {
	if s.w != nil {
		s.w.Abort()
		s.w = nil
	}
	for _, p := range s.paths {
		os.Remove(p)
	}
}

// input is one file to read.
type input struct {
	path  string
	size  int64
	jsonl bool
}

// collectInputs expands directories (recursively, lexical order, skipping names that
// start with '.') and returns the files to read.
func collectInputs(cfg *PrepareConfig, paths []string) ([]input, error) {
	var out []input
	add := func(p string, size int64) {
		out = append(out, input{path: p, size: size, jsonl: cfg.JSONL || strings.EqualFold(filepath.Ext(p), ".jsonl")})
	}
	keep := func(p string) bool {
		if len(cfg.Exts) == 0 {
			return true
		}
		ext := filepath.Ext(p)
		for _, e := range cfg.Exts {
			if strings.EqualFold(ext, e) || strings.EqualFold(ext, "."+strings.TrimPrefix(e, ".")) {
				return true
			}
		}
		return false
	}
	for _, root := range paths {
		fi, err := os.Stat(root)
		if err != nil {
			return nil, fmt.Errorf("data: %w", err)
		}
		if !fi.IsDir() {
			add(root, fi.Size())
			continue
		}
		err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if p != root && strings.HasPrefix(d.Name(), ".") {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			if !d.Type().IsRegular() || !keep(p) {
				return nil
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			add(p, info.Size())
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("data: %w", err)
		}
	}
	return out, nil
}

// Prepare tokenizes the inputs (files or directories) with enc and writes train and
// held-out shards and a manifest into cfg.OutDir. Plain-text files are one document
// each; JSONL files one document per non-blank line (the TextField string). Empty
// documents are skipped. Every document is followed by cfg.EOT. Shards are written
// atomically; on error or cancellation the shards of this run are removed and stale
// shards of an earlier run with the same name are left alone (the old manifest
// detects the mix through its counts and checksums). On success, shards of an earlier
// run with the same name that this run did not rewrite are removed.
func Prepare(ctx context.Context, cfg PrepareConfig, enc Encoder, inputs []string) (st PrepareStats, err error) {
	start := time.Now()
	if err := cfg.Validate(); err != nil {
		return st, err
	}
	if enc == nil {
		return st, fmt.Errorf("%w: nil Encoder", ErrConfig)
	}
	if len(inputs) == 0 {
		return st, fmt.Errorf("%w: no inputs", ErrConfig)
	}
	workers := cfg.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	files, err := collectInputs(&cfg, inputs)
	if err != nil {
		return st, err
	}
	for _, f := range files {
		st.InputBytes += f.size
	}
	st.Files = len(files)
	if err := os.MkdirAll(cfg.OutDir, 0o755); err != nil {
		return st, fmt.Errorf("data: %w", err)
	}
	train := &splitWriter{cfg: &cfg, split: SplitTrain, stats: &st.Train}
	held := &splitWriter{cfg: &cfg, split: SplitHeldOut, stats: &st.HeldOut}
	defer func() {
		if err != nil {
			train.abort()
			held.abort()
		}
	}()

	var batch []doc
	var batchBytes int
	var done int64
	report := func() {
		if cfg.Progress != nil {
			cfg.Progress(done, st.InputBytes)
		}
	}
	flush := func() error {
		if err := ctx.Err(); err != nil {
			return err
		}
		tokenize(enc, batch, workers)
		for i := range batch {
			w := train
			if batch[i].heldOut {
				w = held
			}
			if err := w.write(batch[i].ids); err != nil {
				return err
			}
			batch[i] = doc{}
		}
		batch, batchBytes = batch[:0], 0
		report()
		return nil
	}
	emit := func(text string) error {
		if text == "" {
			return nil
		}
		batch = append(batch, doc{text: text, heldOut: heldOut(cfg.Seed, cfg.HeldOut, text)})
		batchBytes += len(text)
		if batchBytes >= cfg.BatchBytes || len(batch) >= 1<<16 {
			return flush()
		}
		return nil
	}
	report()
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		if f.jsonl {
			err = readJSONL(f.path, cfg.TextField, emit, func(n int64) { done += n })
		} else {
			var b []byte
			if b, err = os.ReadFile(f.path); err == nil {
				done += int64(len(b))
				err = emit(string(b))
			}
		}
		if err != nil {
			return st, err
		}
	}
	if err := flush(); err != nil {
		return st, err
	}
	if err := train.close(); err != nil {
		return st, err
	}
	if err := held.close(); err != nil {
		return st, err
	}
	st.Train.Shards, st.HeldOut.Shards = train.paths, held.paths
	st.Documents = st.Train.Documents + st.HeldOut.Documents
	st.Tokens = st.Train.Tokens + st.HeldOut.Tokens
	m := Manifest{Format: manifestFormat, Version: 1, Name: cfg.Name, EOT: cfg.EOT, Seed: cfg.Seed,
		HeldOutFraction: cfg.HeldOut, Files: st.Files, InputBytes: st.InputBytes,
		Train: nonNil(train.done), HeldOut: nonNil(held.done)}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return st, err
	}
	st.Manifest = filepath.Join(cfg.OutDir, cfg.Name+".json")
	if err := writeFileAtomic(st.Manifest, append(b, '\n')); err != nil {
		return st, fmt.Errorf("data: write manifest: %w", err)
	}
	removeStale(&cfg, slices.Concat(train.paths, held.paths))
	st.Duration = time.Since(start)
	return st, nil
}

func nonNil(s []ShardInfo) []ShardInfo {
	if s == nil {
		return []ShardInfo{}
	}
	return s
}

// removeStale deletes NAME-{train,heldout}-NNNNN.tok files not in keep.
func removeStale(cfg *PrepareConfig, keep []string) {
	for _, split := range []string{SplitTrain, SplitHeldOut} {
		matches, _ := filepath.Glob(filepath.Join(cfg.OutDir, cfg.Name+"-"+split+"-[0-9][0-9][0-9][0-9][0-9]"+ShardExt))
		for _, m := range matches {
			if !slices.Contains(keep, m) {
				os.Remove(m)
			}
		}
	}
}

// heldOut decides a document's split from a seeded hash of its text.
func heldOut(seed uint64, frac float64, text string) bool {
	if frac <= 0 {
		return false
	}
	h := fnv.New64a()
	io.WriteString(h, text)
	return unitFloat(hash3(seed, streamHeldOut, h.Sum64())) < frac
}

// tokenize encodes every document of batch on up to workers goroutines.
func tokenize(enc Encoder, batch []doc, workers int) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(workers, len(batch)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(batch) {
					return
				}
				batch[i].ids = enc.EncodeOrdinary(batch[i].text)
				batch[i].text = ""
			}
		}()
	}
	wg.Wait()
}

// readJSONL calls emit with the text field of every non-blank line of path and
// advance with the bytes consumed.
func readJSONL(path, field string, emit func(string) error, advance func(int64)) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("data: %w", err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	var off int64
	for line := 1; ; line++ {
		b, rerr := r.ReadBytes('\n')
		if rerr != nil && rerr != io.EOF {
			return fmt.Errorf("data: %s: %w", path, rerr)
		}
		if len(bytes.TrimSpace(b)) > 0 {
			text, err := jsonlText(b, field)
			if err != nil {
				var fe *FormatError
				if !errors.As(err, &fe) {
					return err
				}
				fe.File, fe.Field = path, fmt.Sprintf("line %d", line)
				if fe.Offset >= 0 {
					fe.Offset += off
				} else {
					fe.Offset = off
				}
				return fe
			}
			if err := emit(text); err != nil {
				return err
			}
		}
		off += int64(len(b))
		advance(int64(len(b)))
		if rerr == io.EOF {
			return nil
		}
	}
}

// jsonlText extracts the string field from one JSON object line. Error offsets are
// relative to the line.
func jsonlText(line []byte, field string) (string, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(line, &obj); err != nil {
		off := int64(-1)
		var se *json.SyntaxError
		if errors.As(err, &se) {
			off = se.Offset
		}
		return "", formatErr(ErrInput, off, "", "not a JSON object: "+err.Error())
	}
	raw, ok := obj[field]
	if !ok {
		return "", formatErr(ErrInput, -1, "", fmt.Sprintf("no %q field", field))
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", formatErr(ErrInput, -1, "", fmt.Sprintf("%q is not a string", field))
	}
	return s, nil
}

// ReadManifest reads a manifest written by Prepare.
func ReadManifest(path string) (*Manifest, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		off := int64(-1)
		var se *json.SyntaxError
		if errors.As(err, &se) {
			off = se.Offset
		}
		return nil, &FormatError{File: path, Offset: off, Field: "manifest", Msg: err.Error(), Err: ErrInput}
	}
	if m.Format != manifestFormat || m.Version != 1 {
		return nil, &FormatError{File: path, Offset: -1, Field: "format", Msg: fmt.Sprintf("%q version %d, want %q version 1", m.Format, m.Version, manifestFormat), Err: ErrInput}
	}
	for _, s := range slices.Concat(m.Train, m.HeldOut) {
		if s.File == "" || filepath.Base(s.File) != s.File {
			return nil, &FormatError{File: path, Offset: -1, Field: "file", Msg: fmt.Sprintf("shard name %q is not a plain file name", s.File), Err: ErrInput}
		}
	}
	return &m, nil
}

// ManifestSource returns a loader Source named name over one split (SplitTrain or
// SplitHeldOut) of the manifest at path, after checking that every shard's header
// matches the manifest (token and document counts, payload checksum). It reads only
// the headers.
func ManifestSource(path, split, name string) (Source, error) {
	m, err := ReadManifest(path)
	if err != nil {
		return Source{}, err
	}
	var list []ShardInfo
	switch split {
	case SplitTrain:
		list = m.Train
	case SplitHeldOut:
		list = m.HeldOut
	default:
		return Source{}, fmt.Errorf("%w: split %q, want %q or %q", ErrConfig, split, SplitTrain, SplitHeldOut)
	}
	if len(list) == 0 {
		return Source{}, fmt.Errorf("%w: %s: no %s shards", ErrConfig, path, split)
	}
	src := Source{Name: name}
	dir := filepath.Dir(path)
	for _, si := range list {
		p := filepath.Join(dir, si.File)
		h, err := ReadShardHeader(p)
		if err != nil {
			return Source{}, err
		}
		if h.Tokens != si.Tokens || h.Documents != si.Documents || h.PayloadCRC != si.CRC32C {
			return Source{}, &FormatError{File: p, Offset: 0, Field: "header",
				Msg: fmt.Sprintf("does not match manifest %s (%d tokens, %d documents, crc %#08x; manifest %d, %d, %#08x)",
					path, h.Tokens, h.Documents, h.PayloadCRC, si.Tokens, si.Documents, si.CRC32C), Err: ErrChecksum}
		}
		src.Paths = append(src.Paths, p)
	}
	return src, nil
}

// ReadShardHeader reads and checks the header of the shard at path (and its size
// against the file's), without reading the tokens.
func ReadShardHeader(path string) (Header, error) {
	f, err := os.Open(path)
	if err != nil {
		return Header{}, fmt.Errorf("data: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Header{}, fmt.Errorf("data: %w", err)
	}
	var b [HeaderSize]byte
	n, err := io.ReadFull(f, b[:])
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return Header{}, fmt.Errorf("data: %s: %w", path, err)
	}
	h, err := ParseHeader(b[:n], fi.Size())
	return h, withFile(err, path)
}
