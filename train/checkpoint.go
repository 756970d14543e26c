package train

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/dbrx-engine/dbrx/internal/atomicfile"
	"github.com/dbrx-engine/dbrx/model/dbrx"
	"github.com/dbrx-engine/dbrx/optim"
	"github.com/dbrx-engine/dbrx/safetensors"
	"github.com/dbrx-engine/dbrx/tensor"
)

// Checkpoint layout. A checkpoint is a Hugging Face model directory (config.json and
// model.safetensors, float32, loadable by dbrx.Load, `dbrx run` and transformers'
// DbrxForCausalLM.from_pretrained) plus the files that make a resumed run continue
// bit for bit: the optimizer moments and step count, and the trainer state (step,
// tokens seen, schedule, data-loader position, RNG state).
const (
	CheckpointsDir   = "checkpoints"            // under Config.RunDir
	ModelFile        = "model.safetensors"      // F32 weights under their HF names
	OptimizerFile    = "optimizer.safetensors"  // optim State(): moments + JSON metadata
	StateFile        = "trainer_state.json"     // State
	GenerationConfig = "generation_config.json" // copied from init_from when present
	checkpointPrefix = "step-"
	stateFormat      = "dbrx-train-state"
	stateVersion     = 1
)

// State is trainer_state.json: everything besides weights and optimizer moments that
// a resumed run needs to continue exactly.
type State struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
	// Step is the number of optimizer steps taken.
	Step int `json:"step"`
	// TokensSeen counts input tokens trained on (rows × seq_len, all micro-batches).
	TokensSeen int64 `json:"tokens_seen"`
	// ElapsedSeconds is the wall time spent training so far.
	ElapsedSeconds float64 `json:"elapsed_seconds"`
	// LR is the learning rate of step Step; Schedule is the schedule it came from.
	LR       float64        `json:"lr"`
	Schedule optim.Schedule `json:"schedule"`
	// Optimizer is "adamw" or "lionw".
	Optimizer string `json:"optimizer"`
	// Data is the data source's position.
	Data json.RawMessage `json:"data"`
	// RNG is the router-jitter generator (math/rand/v2 PCG, MarshalBinary).
	RNG []byte `json:"rng"`
	// ExpertCounts [L·E] and ExpertTokens accumulate routing since the last
	// expert-statistics line.
	ExpertCounts []int64 `json:"expert_counts,omitempty"`
	ExpertTokens int64   `json:"expert_tokens"`
	// The settings the data position depends on, checked on resume.
	Seed      uint64 `json:"seed"`
	SeqLen    int    `json:"seq_len"`
	BatchSize int    `json:"batch_size"`
	GradAccum int    `json:"grad_accum"`
}

// CheckpointName is the directory name of the checkpoint after step.
func CheckpointName(step int) string { return fmt.Sprintf("%s%08d", checkpointPrefix, step) }

// checkpointStep parses a CheckpointName.
func checkpointStep(name string) (int, bool) {
	s, ok := strings.CutPrefix(name, checkpointPrefix)
	if !ok || len(s) < 8 {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	return n, err == nil && n >= 0
}

// ListCheckpoints returns the complete checkpoints of a run directory, oldest first.
func ListCheckpoints(runDir string) ([]string, error) {
	root := filepath.Join(runDir, CheckpointsDir)
	ents, err := os.ReadDir(root)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	type ck struct {
		step int
		path string
	}
	var cks []ck
	for _, e := range ents {
		n, ok := checkpointStep(e.Name())
		if !ok || !e.IsDir() {
			continue
		}
		p := filepath.Join(root, e.Name())
		if _, err := os.Stat(filepath.Join(p, StateFile)); err != nil {
			continue
		}
		cks = append(cks, ck{n, p})
	}
	sort.Slice(cks, func(i, j int) bool { return cks[i].step < cks[j].step })
	out := make([]string, len(cks))
	for i, c := range cks {
		out[i] = c.path
	}
	return out, nil
}

// LatestCheckpoint returns the newest complete checkpoint of a run directory.
func LatestCheckpoint(runDir string) (string, error) {
	cks, err := ListCheckpoints(runDir)
	if err != nil {
		return "", err
	}
	if len(cks) == 0 {
		return "", fmt.Errorf("train: no checkpoint in %s", filepath.Join(runDir, CheckpointsDir))
	}
	return cks[len(cks)-1], nil
}

// saveCheckpoint writes a checkpoint atomically: every file is written and fsynced in
// a temporary directory beside the final one, which is then renamed into place, so a
// crash leaves either the whole checkpoint or none. keep > 0 then deletes all but the
// keep newest checkpoints.
func saveCheckpoint(runDir string, p *dbrx.Params, opt Optimizer, st State, genConfig []byte, keep int) (string, error) {
	root := filepath.Join(runDir, CheckpointsDir)
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", fmt.Errorf("train: checkpoint: %w", err)
	}
	name := CheckpointName(st.Step)
	tmp, err := os.MkdirTemp(root, ".tmp-"+name+"-")
	if err != nil {
		return "", fmt.Errorf("train: checkpoint: %w", err)
	}
	final := filepath.Join(root, name)
	fail := func(err error) (string, error) {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("train: checkpoint %s: %w", final, err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return fail(err)
	}
	cfg := p.Config
	cfg.TorchDtype = "float32"
	cj, err := cfg.Marshal()
	if err != nil {
		return fail(err)
	}
	if err := writeSynced(filepath.Join(tmp, "config.json"), cj); err != nil {
		return fail(err)
	}
	if len(genConfig) > 0 {
		if err := writeSynced(filepath.Join(tmp, GenerationConfig), genConfig); err != nil {
			return fail(err)
		}
	}
	if err := writeModel(filepath.Join(tmp, ModelFile), p); err != nil {
		return fail(err)
	}
	if err := writeOptimizer(filepath.Join(tmp, OptimizerFile), opt); err != nil {
		return fail(err)
	}
	st.Format, st.Version = stateFormat, stateVersion
	sj, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fail(err)
	}
	if err := writeSynced(filepath.Join(tmp, StateFile), append(sj, '\n')); err != nil {
		return fail(err)
	}
	if err := atomicfile.SyncDir(tmp); err != nil {
		return fail(err)
	}
	if _, err := os.Stat(final); err == nil { // the same step saved again: replace it
		old := final + ".old"
		os.RemoveAll(old)
		if err := os.Rename(final, old); err != nil {
			return fail(err)
		}
		defer os.RemoveAll(old)
	}
	if err := os.Rename(tmp, final); err != nil {
		return fail(err)
	}
	if err := atomicfile.SyncDir(root); err != nil {
		return "", fmt.Errorf("train: checkpoint %s: %w", final, err)
	}
	if keep > 0 {
		cks, err := ListCheckpoints(runDir)
		if err != nil {
			return final, err
		}
		for len(cks) > keep {
			if err := os.RemoveAll(cks[0]); err != nil {
				return final, fmt.Errorf("train: remove old checkpoint: %w", err)
			}
			cks = cks[1:]
		}
	}
	return final, nil
}

// removeStaleTemps deletes temporary checkpoint directories left by a crash.
func removeStaleTemps(runDir string) {
	root := filepath.Join(runDir, CheckpointsDir)
	ents, _ := os.ReadDir(root)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".tmp-"+checkpointPrefix) || strings.HasSuffix(e.Name(), ".old") {
			os.RemoveAll(filepath.Join(root, e.Name()))
		}
	}
}

// writeModel streams every parameter as F32 under its HF name, in state_dict order.
func writeModel(path string, p *dbrx.Params) error {
	decl := make([]safetensors.WriterTensor, len(p.Names))
	for i, n := range p.Names {
		decl[i] = safetensors.WriterTensor{Name: n, DType: tensor.F32, Shape: tensor.Shape(p.Shapes[i])}
	}
	w, err := safetensors.Create(path, decl, map[string]string{"format": "pt"})
	if err != nil {
		return err
	}
	for i, n := range p.Names {
		if err := w.WriteTensor(n, tensor.Float32Bytes(p.Data[i])); err != nil {
			w.Abort()
			return err
		}
	}
	return w.Close()
}

// writeOptimizer writes the optimizer state: one F32 [n] tensor per moment, sorted
// by name, and the optimizer's JSON metadata.
func writeOptimizer(path string, opt Optimizer) error {
	ts, meta := opt.State()
	names := make([]string, 0, len(ts))
	for n := range ts {
		names = append(names, n)
	}
	sort.Strings(names)
	decl := make([]safetensors.WriterTensor, len(names))
	for i, n := range names {
		decl[i] = safetensors.WriterTensor{Name: n, DType: tensor.F32, Shape: tensor.Shape{len(ts[n])}}
	}
	w, err := safetensors.Create(path, decl, meta)
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := w.WriteTensor(n, tensor.Float32Bytes(ts[n])); err != nil {
			w.Abort()
			return err
		}
	}
	return w.Close()
}

// loadOptimizer restores opt from a checkpoint's optimizer file.
func loadOptimizer(path string, opt Optimizer, params []optim.Param) error {
	f, err := safetensors.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	ts := make(map[string][]float32)
	for _, info := range f.Tensors() {
		t, _ := f.Tensor(info.Name)
		if t.DType != tensor.F32 {
			return fmt.Errorf("train: %s: %s is %s, want F32", path, info.Name, t.DType)
		}
		v := make([]float32, len(t.Data)/4)
		if err := tensor.ToFloat32(v, t.DType, t.Data); err != nil {
			return fmt.Errorf("train: %s: %s: %w", path, info.Name, err)
		}
		ts[info.Name] = v
	}
	if err := opt.LoadState(params, ts, f.Metadata()); err != nil {
		return fmt.Errorf("train: %s: %w", path, err)
	}
	return nil
}

// readState reads and checks a checkpoint's trainer_state.json.
func readState(dir string) (State, error) {
	path := filepath.Join(dir, StateFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return State{}, fmt.Errorf("train: %w", err)
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return State{}, fmt.Errorf("train: %s: %w", path, err)
	}
	if st.Format != stateFormat || st.Version != stateVersion {
		return State{}, fmt.Errorf("train: %s: format %q version %d, want %q version %d", path, st.Format, st.Version, stateFormat, stateVersion)
	}
	if st.Step < 0 || st.TokensSeen < 0 {
		return State{}, fmt.Errorf("train: %s: negative step or token count", path)
	}
	return st, nil
}

// writeSynced writes data to path and fsyncs it (inside a checkpoint's temporary
// directory, so no rename of its own is needed).
func writeSynced(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// writeAtomic writes data to path through internal/atomicfile (temporary file,
// fsync, rename, directory fsync).
func writeAtomic(path string, data []byte) error {
	if err := atomicfile.WriteFile(path, data); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	return nil
}
