package train

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/dbrx-engine/dbrx/model/dbrx"
)

// PeakFLOPsPerCore is the peak the MFU figure is measured against: 115 GFLOP/s per
// thread (an AVX2 core with two 8-wide FMA units at ~3.6 GHz), times Config.Threads.
const PeakFLOPsPerCore = 115e9

// StepMetrics is one line of metrics.jsonl.
type StepMetrics struct {
	Step int     `json:"step"`
	LR   float64 `json:"lr"`
	// Loss is the mean over the step's micro-batches of ce + moe_loss_weight·aux +
	// z_loss_weight·z (what the gradient is of); CE, Aux and Z are its parts, unweighted.
	Loss     float64 `json:"loss"`
	CE       float64 `json:"ce"`
	Aux      float64 `json:"aux"`
	Z        float64 `json:"z"`
	GradNorm float64 `json:"grad_norm"` // global L2 norm before clipping
	// Tokens is the number of input tokens trained on so far (all steps).
	Tokens int64 `json:"tokens"`
	// TokensPerSec and MFU are measured over the steps since the previous line.
	TokensPerSec float64 `json:"tokens_per_s"`
	MFU          float64 `json:"mfu"`
	Elapsed      float64 `json:"elapsed"` // seconds of training so far
	// Skipped marks a step whose gradient was not finite: no update was applied.
	Skipped bool `json:"skipped,omitempty"`
}

// EvalMetrics is one line of eval.jsonl: the mean cross-entropy per held-out target.
type EvalMetrics struct {
	Step    int     `json:"step"`
	Loss    float64 `json:"eval_loss"`
	Tokens  int     `json:"eval_tokens"`
	Elapsed float64 `json:"elapsed"`
}

// ExpertStats is one line of experts.jsonl: for each layer and expert, the fraction
// of tokens routed to the expert since the previous line (each token goes to top_k
// experts, so a layer's fractions sum to top_k; perfect balance is top_k/E each).
type ExpertStats struct {
	Step   int         `json:"step"`
	Tokens int64       `json:"tokens"`
	Load   [][]float64 `json:"load"` // [L][E]
	// MaxOverMean is, per layer, the busiest expert's load over the mean load (1 is
	// perfect balance, E means one expert gets every assignment).
	MaxOverMean []float64 `json:"max_over_mean"`
}

// ActiveParams is the number of parameters used per token in matrix products:
// attention (Wqkv, out_proj), the router, top_k experts (w1, v1, w2) per layer, and
// the LM head. The embedding lookup and the norms are not counted.
func ActiveParams(c dbrx.Config) int64 {
	D, F := int64(c.DModel), int64(c.FFNConfig.FFNHiddenSize)
	E, K := int64(c.FFNConfig.MoENumExperts), int64(c.FFNConfig.MoETopK)
	layer := int64(c.QKVDim())*D + D*D + E*D + K*3*F*D
	return int64(c.NLayers)*layer + int64(c.VocabSize)*D
}

// FLOPsPerToken is the training cost of one token at sequence length T: 6 FLOPs per
// active parameter (forward 2, backward 4) plus causal attention, whose scores and
// weighted sum take 2·2·d_model·(T+1)/2 FLOPs per layer forward on average, times 3
// for training: 6·n_layers·d_model·(T+1).
func FLOPsPerToken(c dbrx.Config, T int) float64 {
	return 6*float64(ActiveParams(c)) + 6*float64(c.NLayers)*float64(c.DModel)*float64(T+1)
}

// jsonl appends JSON lines to a file.
type jsonl struct {
	f *os.File
}

func openJSONL(path string) (*jsonl, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	return &jsonl{f: f}, nil
}

func (j *jsonl) write(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if _, err := j.f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	return nil
}

func (j *jsonl) Close() error {
	if j == nil || j.f == nil {
		return nil
	}
	err := j.f.Close()
	j.f = nil
	return err
}

// truncateJSONL keeps the lines of path whose "step" is at most maxStep (dropping
// lines written after the checkpoint a run resumes from), rewrites the file
// atomically and returns the kept lines. A missing file is empty.
func truncateJSONL(path string, maxStep int) ([][]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	var kept [][]byte
	var out bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<28)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var s struct {
			Step *int `json:"step"`
		}
		if json.Unmarshal(line, &s) != nil || s.Step == nil || *s.Step > maxStep {
			continue // a torn last line, or after the checkpoint
		}
		kept = append(kept, append([]byte(nil), line...))
		out.Write(line)
		out.WriteByte('\n')
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("train: %s: %w", path, err)
	}
	return kept, writeAtomic(path, out.Bytes())
}

// ReadMetrics reads a metrics.jsonl file.
func ReadMetrics(path string) ([]StepMetrics, error) {
	return readJSONL[StepMetrics](path)
}

// ReadEvals reads an eval.jsonl file.
func ReadEvals(path string) ([]EvalMetrics, error) {
	return readJSONL[EvalMetrics](path)
}

func readJSONL[T any](path string) ([]T, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	var out []T
	for i, line := range bytes.Split(b, []byte{'\n'}) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var v T
		if err := json.Unmarshal(line, &v); err != nil {
			return nil, fmt.Errorf("train: %s:%d: %w", path, i+1, err)
		}
		out = append(out, v)
	}
	return out, nil
}
