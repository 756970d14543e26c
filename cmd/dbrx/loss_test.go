package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/dbrx-engine/dbrx/internal/numtest"
	"github.com/dbrx-engine/dbrx/safetensors"
	"github.com/dbrx-engine/dbrx/tensor"
)

// lossFixture returns the training case of a fixture variant: its input ids and the
// reference losses.
func lossFixture(t *testing.T, v string) (ids []int, ce, aux, total float64) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixture(v), "cases.json"))
	if err != nil {
		t.Fatal(err)
	}
	var fc struct {
		Cases []struct {
			Name     string  `json:"name"`
			InputIDs [][]int `json:"input_ids"`
		} `json:"cases"`
		Training struct {
			Case      string  `json:"case"`
			CELoss    float64 `json:"ce_loss"`
			AuxLoss   float64 `json:"aux_loss"`
			TotalLoss float64 `json:"total_loss"`
		} `json:"training"`
	}
	if err := json.Unmarshal(b, &fc); err != nil {
		t.Fatal(err)
	}
	for _, c := range fc.Cases {
		if c.Name == fc.Training.Case {
			return c.InputIDs[0], fc.Training.CELoss, fc.Training.AuxLoss, fc.Training.TotalLoss
		}
	}
	t.Fatalf("%s: training case %q not found", v, fc.Training.Case)
	return
}

// TestLossCommand runs `dbrx loss` on fixture A's training case: the printed losses
// match the Hugging Face reference within 1e-5 and --grads writes every gradient
// within 1e-4·max|g| of testdata/dbrx/A/grads.safetensors.
func TestLossCommand(t *testing.T) {
	ids, ce, aux, total := lossFixture(t, "A")
	grads := filepath.Join(t.TempDir(), "grads.safetensors")
	stdout, stderr, code := dbrxCmd(t, "", "loss", "--model", fixture("A"), "--ids", joinIDs(ids), "--grads", grads, "--threads", "2")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var got lossReport
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("output %q: %v", stdout, err)
	}
	for _, c := range []struct {
		name      string
		got, want float64
	}{{"ce_loss", got.CELoss, ce}, {"aux_loss", got.AuxLoss, aux}, {"total_loss", got.TotalLoss, total}} {
		if d := math.Abs(c.got - c.want); !(d <= 1e-5) {
			t.Errorf("%s %.9g, reference %.9g (diff %.3g)", c.name, c.got, c.want, d)
		}
	}

	gf, err := safetensors.Open(grads)
	if err != nil {
		t.Fatal(err)
	}
	defer gf.Close()
	rf, err := safetensors.Open(filepath.Join(fixture("A"), "grads.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer rf.Close()
	if len(gf.Tensors()) != len(rf.Tensors()) {
		t.Errorf("%d gradient tensors, reference %d", len(gf.Tensors()), len(rf.Tensors()))
	}
	if m := gf.Metadata(); m["format"] != "pt" || m["loss"] != "total_loss" {
		t.Errorf("metadata %v", m)
	}
	for _, info := range rf.Tensors() {
		want, _ := rf.Tensor(info.Name)
		gotT, ok := gf.Tensor(info.Name)
		if !ok {
			t.Errorf("%s: missing", info.Name)
			continue
		}
		if gotT.DType != tensor.F32 || !gotT.Shape.Equal(want.Shape) {
			t.Errorf("%s: %s %v, reference %s %v", info.Name, gotT.DType, gotT.Shape, want.DType, want.Shape)
			continue
		}
		w := make([]float32, want.Shape.NumElements())
		if err := tensor.ToFloat32(w, want.DType, want.Data); err != nil {
			t.Fatal(err)
		}
		g := tensor.Float32s(gotT.Data)
		var maxAbs float64
		for _, v := range w {
			maxAbs = math.Max(maxAbs, math.Abs(float64(v)))
		}
		if d := numtest.Compare(g, w, 1e-4*maxAbs); d.Bad > 0 {
			t.Errorf("%s: %d values off by > 1e-4·max|g| = %.3g (max diff %.3g):%s", info.Name, d.Bad, 1e-4*maxAbs, d.MaxAbs, d.Report)
		}
	}
}

// TestLossCommandUsage checks the flag errors (exit code 2).
func TestLossCommandUsage(t *testing.T) {
	for _, args := range [][]string{
		{"loss"},
		{"loss", "--model", fixture("A")},
		{"loss", "--model", fixture("A"), "--ids", "5"},
		{"loss", "--model", fixture("A"), "--ids", "5,6", "--aux", "bogus"},
	} {
		if _, stderr, code := dbrxCmd(t, "", args...); code != 2 {
			t.Errorf("%v: exit %d, want 2 (%s)", args, code, stderr)
		}
	}
}
