package main

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/dbrx-engine/dbrx/internal/parallel"
	"github.com/dbrx-engine/dbrx/model/dbrx"
	"github.com/dbrx-engine/dbrx/safetensors"
	"github.com/dbrx-engine/dbrx/tensor"
)

func init() {
	register(command{name: "loss", summary: "training loss of one sequence (labels = ids) and optionally every gradient", run: runLoss})
}

// lossReport is the JSON line dbrx loss prints (keys in this order).
type lossReport struct {
	CELoss    float64 `json:"ce_loss"`
	AuxLoss   float64 `json:"aux_loss"`
	TotalLoss float64 `json:"total_loss"`
}

func runLoss(ctx context.Context, e env, args []string) error {
	fs := newFlags("loss", e)
	modelDir := fs.String("model", "", "model directory (HF checkpoint)")
	idsFlag := fs.String("ids", "", "comma-separated token ids; the labels are the ids, shifted inside as the reference does")
	gradsOut := fs.String("grads", "", "write d(total_loss)/d(param) for every parameter, under its HF name, as F32 safetensors")
	auxFlag := fs.String("aux", "hf", "load-balancing loss: hf (the Hugging Face reference's), megablocks or none")
	threads := fs.Int("threads", 0, "worker threads (0 = all cores)")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, pos[0])
	}
	if *modelDir == "" || *idsFlag == "" {
		return fmt.Errorf("%w: --model and --ids are required", errUsage)
	}
	ids, err := parseIDs(*idsFlag)
	if err != nil {
		return err
	}
	if len(ids) < 2 {
		return fmt.Errorf("%w: --ids needs at least 2 tokens (the last position has no label)", errUsage)
	}
	aux, err := dbrx.ParseAuxLoss(*auxFlag)
	if err != nil {
		return fmt.Errorf("%w: --aux: %v", errUsage, err)
	}
	p, err := dbrx.LoadParams(*modelDir)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	pool := parallel.New(*threads)
	defer pool.Close()
	st := dbrx.NewTrainState(pool)
	T := len(ids)
	ls, err := st.Forward(p, dbrx.Batch{B: 1, T: T, IDs: ids, Targets: dbrx.ShiftLabels(ids, 1, T)}, dbrx.TrainOptions{AuxLoss: aux})
	if err != nil {
		return err
	}
	if *gradsOut != "" {
		if err := ctx.Err(); err != nil {
			return err
		}
		g, err := dbrx.NewParams(p.Config)
		if err != nil {
			return err
		}
		if err := st.Backward(g); err != nil {
			return err
		}
		if err := writeGrads(*gradsOut, g); err != nil {
			return err
		}
	}
	b, err := json.Marshal(lossReport{CELoss: ls.CE, AuxLoss: ls.Aux, TotalLoss: ls.Total})
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(e.stdout, "%s\n", b)
	return err
}

// writeGrads streams every gradient tensor, in state_dict order, to an F32
// safetensors file (atomically: temp file, fsync, rename).
func writeGrads(path string, g *dbrx.Params) error {
	decl := make([]safetensors.WriterTensor, len(g.Names))
	for i, n := range g.Names {
		decl[i] = safetensors.WriterTensor{Name: n, DType: tensor.F32, Shape: tensor.Shape(g.Shapes[i])}
	}
	w, err := safetensors.Create(path, decl, map[string]string{"format": "pt", "loss": "total_loss"})
	if err != nil {
		return err
	}
	for i, n := range g.Names {
		if err := w.WriteTensor(n, tensor.Float32Bytes(g.Data[i])); err != nil {
			w.Abort()
			return fmt.Errorf("write %s: %w", path, err)
		}
	}
	return w.Close()
}
