package safetensors

import (
	"bufio"
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/dbrx-engine/dbrx/internal/atomicfile"
	"github.com/dbrx-engine/dbrx/tensor"
)

// WriterTensor declares one tensor to be written by a Writer.
type WriterTensor struct {
	Name  string
	DType tensor.DType
	Shape tensor.Shape
}

// errClosed is returned by a Writer used after Close or Abort.
var errClosed = errors.New("safetensors: writer is closed")

// Writer streams a safetensors file: the header is written by Create, then each
// tensor's bytes by WriteTensor in the declared order, so a large model never has to
// be held in memory at once. The file is built under a temporary name in the
// destination directory and only appears under its final name, complete and fsynced,
// when Close succeeds. A Writer is not safe for concurrent use.
type Writer struct {
	path  string
	f     *atomicfile.File
	bw    *bufio.Writer
	infos []TensorInfo
	next  int   // index of the next tensor to write
	err   error // sticky: an I/O error, or the result of Close/Abort
	done  bool
}

// tensorBytes returns the byte size of a tensor of dtype dt and shape s, validating
// both. Errors match ErrDType or ErrShape.
func tensorBytes(name string, dt tensor.DType, s tensor.Shape) (int64, error) {
	if dt.Size() == 0 {
		return 0, formatErr(ErrDType, -1, tensorField(name, "dtype"), "invalid dtype %s", dt)
	}
	n := s.NumElements()
	if n < 0 {
		return 0, formatErr(ErrShape, -1, tensorField(name, "shape"), "shape %v has a negative dimension or overflows", s)
	}
	if n > math.MaxInt64/int64(dt.Size()) {
		return 0, formatErr(ErrShape, -1, tensorField(name, "shape"), "byte size of %v %s overflows int64", s, dt)
	}
	return n * int64(dt.Size()), nil
}

// layout validates the declared tensors and assigns contiguous offsets in order.
func layout(tensors []WriterTensor) ([]TensorInfo, error) {
	infos := make([]TensorInfo, len(tensors))
	seen := make(map[string]bool, len(tensors))
	var off int64
	for i, t := range tensors {
		if t.Name == metadataKey {
			return nil, formatErr(ErrBadHeader, -1, tensorField(t.Name, ""), "tensor name is reserved")
		}
		if seen[t.Name] {
			return nil, formatErr(ErrDuplicate, -1, tensorField(t.Name, ""), "tensor declared twice")
		}
		seen[t.Name] = true
		n, err := tensorBytes(t.Name, t.DType, t.Shape)
		if err != nil {
			return nil, err
		}
		if off > math.MaxInt64-n {
			return nil, formatErr(ErrOffsets, -1, tensorField(t.Name, ""), "total data size overflows int64")
		}
		infos[i] = TensorInfo{Name: t.Name, DType: t.DType, Shape: slices.Clone(t.Shape), Begin: off, End: off + n}
		off += n
	}
	return infos, nil
}

// withFormat returns metadata with "format": "pt" added when absent (Hugging Face's
// loader requires it). A nil map becomes {"format": "pt"}.
func withFormat(metadata map[string]string) map[string]string {
	m := maps.Clone(metadata)
	if m == nil {
		m = make(map[string]string, 1)
	}
	if _, ok := m["format"]; !ok {
		m["format"] = "pt"
	}
	return m
}

// Create starts writing a safetensors file at path holding tensors, in the given
// order, with metadata as __metadata__ ("format": "pt" is added when absent, as Hugging
// Face requires it). The header is written immediately; the tensors' bytes follow with
// WriteTensor. Call Close to finish or Abort to give up.
func Create(path string, tensors []WriterTensor, metadata map[string]string) (*Writer, error) {
	infos, err := layout(tensors)
	if err != nil {
		return nil, fmt.Errorf("safetensors: create %s: %w", path, err)
	}
	hdr, err := encodeHeader(infos, withFormat(metadata))
	if err != nil {
		return nil, fmt.Errorf("safetensors: create %s: %w", path, err)
	}
	f, err := atomicfile.Create(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	w := &Writer{path: path, f: f, bw: bufio.NewWriterSize(f, 1<<20), infos: infos}
	if _, err := w.bw.Write(hdr); err != nil {
		w.Abort()
		return nil, fmt.Errorf("safetensors: create %s: write header: %w", path, err)
	}
	return w, nil
}

// Path returns the final path of the file being written.
func (w *Writer) Path() string { return w.path }

// WriteTensor writes the bytes of the next declared tensor. name must be that tensor's
// name and len(data) its exact byte size; a call that fails either check writes nothing
// and may be retried. An I/O error is final: Close will report it.
func (w *Writer) WriteTensor(name string, data []byte) error {
	if w.done {
		return errClosed
	}
	if w.err != nil {
		return w.err
	}
	if w.next >= len(w.infos) {
		return fmt.Errorf("safetensors: %s: write %q: all %d declared tensors are already written", w.path, name, len(w.infos))
	}
	t := w.infos[w.next]
	if name != t.Name {
		return fmt.Errorf("safetensors: %s: write %q: tensors must be written in declared order, next is %q", w.path, name, t.Name)
	}
	if int64(len(data)) != t.Size() {
		return fmt.Errorf("safetensors: %s: write %q: got %d bytes, shape %v of %s needs %d: %w",
			w.path, name, len(data), t.Shape, t.DType, t.Size(), ErrSize)
	}
	if _, err := w.bw.Write(data); err != nil {
		w.err = fmt.Errorf("safetensors: %s: write %q: %w", w.path, name, err)
		return w.err
	}
	w.next++
	return nil
}

// Close checks that every declared tensor was written, flushes and fsyncs the file and
// renames it into place (then fsyncs the directory). If it fails before the rename,
// the temporary file is removed and the final path is untouched. Calling Close again
// returns the first result.
func (w *Writer) Close() error {
	if w.done {
		if errors.Is(w.err, errClosed) {
			return nil
		}
		return w.err
	}
	err := w.err
	if err == nil && w.next < len(w.infos) {
		err = fmt.Errorf("safetensors: %s: only %d of %d tensors written, next missing is %q",
			w.path, w.next, len(w.infos), w.infos[w.next].Name)
	}
	if err == nil {
		err = w.finish()
	}
	if err != nil {
		w.Abort()
		w.err = err
		return err
	}
	w.done, w.err = true, errClosed
	return nil
}

func (w *Writer) finish() error {
	wrap := func(op string, err error) error { return fmt.Errorf("safetensors: %s: %s: %w", w.path, op, err) }
	if err := w.bw.Flush(); err != nil {
		return wrap("write", err)
	}
	if err := w.f.Commit(); err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	return nil
}

// Abort stops writing and removes the temporary file. It is a no-op after Close or a
// previous Abort.
func (w *Writer) Abort() {
	if w.done {
		return
	}
	w.done, w.err = true, errClosed
	w.f.Abort() // a no-op once Commit has run, whatever its result
}

// WriteFile writes tensors, in order, to a safetensors file at path (atomically, with
// metadata completed as in Create). Each tensor's Data must be exactly its shape's
// byte size.
func WriteFile(path string, tensors []Tensor, metadata map[string]string) error {
	decl := make([]WriterTensor, len(tensors))
	for i, t := range tensors {
		decl[i] = WriterTensor{Name: t.Name, DType: t.DType, Shape: t.Shape}
	}
	w, err := Create(path, decl, metadata)
	if err != nil {
		return err
	}
	for _, t := range tensors {
		if err := w.WriteTensor(t.Name, t.Data); err != nil {
			w.Abort()
			return err
		}
	}
	return w.Close()
}

// shardName is the Hugging Face name of shard i (1-based) of n.
func shardName(i, n int) string {
	return fmt.Sprintf("model-%05d-of-%05d.safetensors", i, n)
}

// isShardName reports whether name looks like model-NNNNN-of-NNNNN.safetensors.
func isShardName(name string) bool {
	var i, n int
	if len(name) != len("model-00001-of-00001.safetensors") {
		return false
	}
	if _, err := fmt.Sscanf(name, "model-%05d-of-%05d.safetensors", &i, &n); err != nil {
		return false
	}
	return shardName(i, n) == name
}

// Index is the JSON form of model.safetensors.index.json.
type Index struct {
	Metadata  IndexMetadata     `json:"metadata"`
	WeightMap map[string]string `json:"weight_map"`
}

// IndexMetadata is the metadata object of a shard index.
type IndexMetadata struct {
	TotalSize int64 `json:"total_size"` // summed tensor bytes, without headers
}

// WriteDir writes tensors as a Hugging Face checkpoint in dir (created if needed).
// Tensors are split, in order, into shards of at most maxShardBytes tensor bytes (a
// larger tensor gets a shard to itself; maxShardBytes <= 0 means no limit). One shard
// is written as model.safetensors; several as model-0000i-of-0000n.safetensors plus
// model.safetensors.index.json ({"metadata":{"total_size":N},"weight_map":{...}},
// indented and sorted like transformers' save_pretrained). Every file is written
// atomically, the index last; then checkpoint files of an earlier layout in dir
// (model.safetensors, the index, model-*-of-*.safetensors not just written) are
// removed so that OpenDir sees only the new checkpoint.
func WriteDir(dir string, tensors []Tensor, metadata map[string]string, maxShardBytes int64) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("safetensors: write checkpoint: %w", err)
	}
	// Validate everything before writing anything.
	sizes := make([]int64, len(tensors))
	seen := make(map[string]bool, len(tensors))
	var total int64
	for i, t := range tensors {
		if seen[t.Name] {
			return fmt.Errorf("safetensors: write checkpoint %s: %w", dir, formatErr(ErrDuplicate, -1, tensorField(t.Name, ""), "tensor given twice"))
		}
		seen[t.Name] = true
		n, err := tensorBytes(t.Name, t.DType, t.Shape)
		if err != nil {
			return fmt.Errorf("safetensors: write checkpoint %s: %w", dir, err)
		}
		if int64(len(t.Data)) != n {
			return fmt.Errorf("safetensors: write checkpoint %s: tensor %q: got %d bytes, shape %v of %s needs %d: %w",
				dir, t.Name, len(t.Data), t.Shape, t.DType, n, ErrSize)
		}
		sizes[i] = n
		total += n
	}
	var shards [][]Tensor
	var cur int64
	for i, t := range tensors {
		if len(shards) == 0 || (maxShardBytes > 0 && cur > 0 && cur+sizes[i] > maxShardBytes) {
			shards = append(shards, nil)
			cur = 0
		}
		shards[len(shards)-1] = append(shards[len(shards)-1], t)
		cur += sizes[i]
	}

	keep := make(map[string]bool)
	if len(shards) <= 1 {
		if err := WriteFile(filepath.Join(dir, SingleFileName), tensors, metadata); err != nil {
			return err
		}
		keep[SingleFileName] = true
	} else {
		idx := Index{Metadata: IndexMetadata{TotalSize: total}, WeightMap: make(map[string]string, len(tensors))}
		for i, sh := range shards {
			name := shardName(i+1, len(shards))
			if err := WriteFile(filepath.Join(dir, name), sh, metadata); err != nil {
				return err
			}
			keep[name] = true
			for _, t := range sh {
				idx.WeightMap[t.Name] = name
			}
		}
		b, err := marshalIndex(idx)
		if err != nil {
			return fmt.Errorf("safetensors: write checkpoint %s: %w", dir, err)
		}
		if err := atomicfile.WriteFile(filepath.Join(dir, IndexFileName), b); err != nil {
			return fmt.Errorf("safetensors: write checkpoint %s: %w", dir, err)
		}
		keep[IndexFileName] = true
	}
	return removeStale(dir, keep)
}

// removeStale deletes checkpoint files of another layout from dir.
func removeStale(dir string, keep map[string]bool) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("safetensors: write checkpoint %s: %w", dir, err)
	}
	var errs []error
	for _, e := range ents {
		n := e.Name()
		if keep[n] || e.IsDir() || !(n == SingleFileName || n == IndexFileName || isShardName(n)) {
			continue
		}
		if err := os.Remove(filepath.Join(dir, n)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("safetensors: write checkpoint %s: remove stale files: %w", dir, err)
	}
	return nil
}

// marshalIndex formats an index like Python's json.dumps(index, indent=2,
// sort_keys=True) + "\n" for ASCII names.
func marshalIndex(idx Index) ([]byte, error) {
	names := make([]string, 0, len(idx.WeightMap))
	for n := range idx.WeightMap {
		names = append(names, n)
	}
	slices.Sort(names)
	b := []byte("{\n  \"metadata\": {\n    \"total_size\": ")
	b = strconv.AppendInt(b, idx.Metadata.TotalSize, 10)
	b = append(b, "\n  },\n  \"weight_map\": {"...)
	for i, n := range names {
		v := idx.WeightMap[n]
		if !utf8.ValidString(n) || !utf8.ValidString(v) {
			return nil, fmt.Errorf("tensor name %q is not valid UTF-8", n)
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, "\n    "...)
		b = appendJSONString(b, n)
		b = append(b, ": "...)
		b = appendJSONString(b, v)
	}
	if len(names) > 0 {
		b = append(b, "\n  "...)
	}
	b = append(b, "}\n}\n"...)
	return b, nil
}
