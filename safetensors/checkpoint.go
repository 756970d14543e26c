package safetensors

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"unicode/utf8"
)

// File names of the Hugging Face checkpoint layout.
const (
	SingleFileName = "model.safetensors"
	IndexFileName  = "model.safetensors.index.json"
)

// Checkpoint is a set of safetensors files read as one tensor namespace: a single
// file, or the shards of a Hugging Face sharded checkpoint. Its methods are safe for
// concurrent use, except that Close must not run concurrently with the others.
type Checkpoint struct {
	files []*File
	where map[string]*File
	names []string // sorted
}

// OpenDir opens a checkpoint. path may be a directory holding model.safetensors or,
// failing that, model.safetensors.index.json and its shards (the order in which
// Hugging Face transformers looks for them), a path to a single .safetensors file, or
// a path to a model.safetensors.index.json.
//
// For a sharded checkpoint the index and the shards must agree exactly: every tensor in
// the weight_map must be in the shard it names, every tensor in a shard must be mapped
// to that shard, and no name may be in two shards. Violations are *FormatError matching
// ErrIndex (and ErrDuplicate for a name in two shards); a missing shard also matches
// fs.ErrNotExist.
func OpenDir(path string) (*Checkpoint, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: open checkpoint: %w", err)
	}
	if !fi.IsDir() {
		if filepath.Base(path) == IndexFileName {
			return openSharded(filepath.Dir(path), path)
		}
		return openSingle(path)
	}
	single := filepath.Join(path, SingleFileName)
	if _, err := os.Stat(single); err == nil {
		return openSingle(single)
	}
	index := filepath.Join(path, IndexFileName)
	if _, err := os.Stat(index); err == nil {
		return openSharded(path, index)
	}
	return nil, fmt.Errorf("safetensors: open checkpoint: %s holds neither %s nor %s: %w",
		path, SingleFileName, IndexFileName, fs.ErrNotExist)
}

func openSingle(path string) (*Checkpoint, error) {
	f, err := Open(path)
	if err != nil {
		return nil, err
	}
	c := &Checkpoint{files: []*File{f}, where: make(map[string]*File, len(f.header.Tensors))}
	for _, t := range f.header.Tensors {
		c.where[t.Name] = f
		c.names = append(c.names, t.Name)
	}
	slices.Sort(c.names)
	return c, nil
}

// indexEntry is one weight_map entry of a shard index.
type indexEntry struct {
	name, file string // tensor name, shard file name as written in the index
	off        int64  // offset of the entry in the index file
}

// parseIndex parses model.safetensors.index.json. Errors are *FormatError (File unset).
func parseIndex(b []byte) ([]indexEntry, error) {
	if !utf8.Valid(b) {
		return nil, formatErr(ErrIndex, -1, "", "index is not valid UTF-8")
	}
	top, err := readObject(b, 0, ErrIndex, "", "index")
	if err != nil {
		return nil, err
	}
	var wm *member
	for i := range top {
		switch top[i].Key {
		case "weight_map":
			wm = &top[i]
		case "metadata":
			if v := top[i].Val; v[0] != '{' && string(v) != "null" {
				return nil, formatErr(ErrIndex, top[i].ValOff, "metadata", "must be an object, found %s", jsonKind(v))
			}
		}
	}
	if wm == nil {
		return nil, formatErr(ErrIndex, 0, "weight_map", "missing")
	}
	if wm.Val[0] != '{' {
		return nil, formatErr(ErrIndex, wm.ValOff, "weight_map", "must be an object, found %s", jsonKind(wm.Val))
	}
	ms, err := readMembers(wm.Val, wm.ValOff, ErrIndex, "weight_map", "weight_map")
	if err != nil {
		var fe *FormatError
		if errors.As(err, &fe) && errors.Is(fe.Err, ErrDuplicate) {
			fe.Cause = ErrIndex
		}
		return nil, err
	}
	if len(ms) == 0 {
		return nil, formatErr(ErrIndex, wm.ValOff, "weight_map", "is empty")
	}
	entries := make([]indexEntry, len(ms))
	for i, m := range ms {
		field := "weight_map." + strconv.Quote(m.Key)
		s, ok := jsonString(m.Val)
		if !ok {
			return nil, formatErr(ErrIndex, m.ValOff, field, "shard must be a file name string, found %s", jsonKind(m.Val))
		}
		if s == "" || !filepath.IsLocal(filepath.FromSlash(s)) {
			return nil, formatErr(ErrIndex, m.ValOff, field, "shard %q is not a file name inside the checkpoint directory", s)
		}
		entries[i] = indexEntry{name: m.Key, file: s, off: m.KeyOff}
	}
	return entries, nil
}

func openSharded(dir, index string) (_ *Checkpoint, err error) {
	b, err := os.ReadFile(index)
	if err != nil {
		return nil, fmt.Errorf("safetensors: open checkpoint: %w", err)
	}
	entries, err := parseIndex(b)
	if err != nil {
		return nil, withFile(err, index)
	}
	c := &Checkpoint{where: make(map[string]*File)}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()

	// Open each shard once, in file-name order.
	firstRef := make(map[string]indexEntry)
	var shardNames []string
	for _, e := range entries {
		if _, ok := firstRef[e.file]; !ok {
			firstRef[e.file] = e
			shardNames = append(shardNames, e.file)
		}
	}
	slices.Sort(shardNames)
	byShard := make(map[string]*File, len(shardNames))
	for _, s := range shardNames {
		p := filepath.Join(dir, filepath.FromSlash(s))
		f, err := Open(p)
		if err != nil {
			var fe *FormatError
			if errors.As(err, &fe) {
				return nil, err // names the shard and the offset in it
			}
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe // drop the wrapping prefixes: the message names the shard already
			}
			e := firstRef[s]
			return nil, &FormatError{File: index, Offset: e.off, Field: "weight_map." + strconv.Quote(e.name),
				Msg: fmt.Sprintf("shard %q cannot be opened", s), Err: ErrIndex, Cause: err}
		}
		c.files = append(c.files, f)
		byShard[s] = f
	}

	mapped := make(map[string]indexEntry, len(entries))
	for _, e := range entries {
		mapped[e.name] = e
	}
	for _, s := range shardNames {
		f := byShard[s]
		for _, t := range f.header.Tensors {
			if other, dup := c.where[t.Name]; dup {
				return nil, &FormatError{File: f.path, Offset: -1, Field: strconv.Quote(t.Name),
					Msg: fmt.Sprintf("tensor is also stored in shard %s", other.path), Err: ErrDuplicate, Cause: ErrIndex}
			}
			c.where[t.Name] = f
			e, ok := mapped[t.Name]
			switch {
			case !ok:
				fe := formatErr(ErrIndex, -1, "weight_map", "tensor %q stored in shard %s is not listed", t.Name, f.path)
				fe.File = index
				return nil, fe
			case e.file != s:
				e := formatErr(ErrIndex, e.off, "weight_map."+strconv.Quote(t.Name), "index maps the tensor to %q but it is stored in shard %s", e.file, f.path)
				e.File = index
				return nil, e
			}
		}
	}
	for _, e := range entries {
		if f := c.where[e.name]; f == nil {
			fe := formatErr(ErrIndex, e.off, "weight_map."+strconv.Quote(e.name), "tensor is absent from its shard %s", byShard[e.file].path)
			fe.File = index
			return nil, fe
		}
		c.names = append(c.names, e.name)
	}
	slices.Sort(c.names)
	return c, nil
}

// Names returns the names of all tensors, sorted.
func (c *Checkpoint) Names() []string { return slices.Clone(c.names) }

// Tensor returns a zero-copy view of the named tensor.
func (c *Checkpoint) Tensor(name string) (Tensor, bool) {
	f, ok := c.where[name]
	if !ok {
		return Tensor{}, false
	}
	return f.Tensor(name)
}

// Info returns the description of the named tensor; Begin and End are relative to the
// data section of the file that holds it (see FileOf).
func (c *Checkpoint) Info(name string) (TensorInfo, bool) {
	f, ok := c.where[name]
	if !ok {
		return TensorInfo{}, false
	}
	return f.Info(name)
}

// FileOf returns the path of the file holding the named tensor.
func (c *Checkpoint) FileOf(name string) (string, bool) {
	f, ok := c.where[name]
	if !ok {
		return "", false
	}
	return f.path, true
}

// Files returns the paths of the checkpoint's files, shards in file-name order.
func (c *Checkpoint) Files() []string {
	ps := make([]string, len(c.files))
	for i, f := range c.files {
		ps[i] = f.path
	}
	return ps
}

// Shards returns the open files of the checkpoint, in the order of Files.
func (c *Checkpoint) Shards() []*File { return slices.Clone(c.files) }

// TotalSize returns the summed byte size of all tensors (what a Hugging Face index
// records as metadata.total_size).
func (c *Checkpoint) TotalSize() int64 {
	var n int64
	for _, f := range c.files {
		for _, t := range f.header.Tensors {
			n += t.Size()
		}
	}
	return n
}

// Close unmaps every file. Tensor data obtained from the checkpoint must not be used
// afterwards. Close is idempotent.
func (c *Checkpoint) Close() error {
	var errs []error
	for _, f := range c.files {
		errs = append(errs, f.Close())
	}
	return errors.Join(errs...)
}
