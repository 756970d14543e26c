package dbrx

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dbrx-engine/dbrx/internal/parallel"
	"github.com/dbrx-engine/dbrx/nn"
	"github.com/dbrx-engine/dbrx/tensor"
	"github.com/dbrx-engine/dbrx/weights"
)

// Tolerances from testdata/dbrx/README.md ("Suggested acceptance").
const (
	lossTol     = 1e-5 // ce / aux / total, absolute
	gradRelTol  = 1e-4 // max abs diff <= 1e-4 · max|g| per tensor
	gradNormTol = 1e-4 // relative
)

type trainingCase struct {
	Cases []struct {
		Name     string  `json:"name"`
		InputIDs [][]int `json:"input_ids"`
	} `json:"cases"`
	Training struct {
		Case               string             `json:"case"`
		CELoss             float64            `json:"ce_loss"`
		AuxLoss            float64            `json:"aux_loss"`
		TotalLoss          float64            `json:"total_loss"`
		MoELossWeight      float64            `json:"moe_loss_weight"`
		GradNormsTotalLoss map[string]float64 `json:"grad_norms_total_loss"`
	} `json:"training"`
}

func loadTrainingCase(t *testing.T, v string) (trainingCase, []int) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixtureDir(v), "cases.json"))
	if err != nil {
		t.Fatal(err)
	}
	var tc trainingCase
	if err := json.Unmarshal(b, &tc); err != nil {
		t.Fatal(err)
	}
	for _, c := range tc.Cases {
		if c.Name == tc.Training.Case {
			return tc, c.InputIDs[0]
		}
	}
	t.Fatalf("%s: training case %q not found", v, tc.Training.Case)
	return tc, nil
}

func l2(x []float32) float64 {
	var s float64
	for _, v := range x {
		s += float64(v) * float64(v)
	}
	return math.Sqrt(s)
}

// TestTrainFixtureGrads checks losses, every gradient tensor and every gradient norm
// against the Hugging Face reference (labels = input_ids of case len33, HF aux loss).
func TestTrainFixtureGrads(t *testing.T) {
	pool := parallel.New(0)
	defer pool.Close()
	for _, v := range variants {
		t.Run(v, func(t *testing.T) {
			tc, ids := loadTrainingCase(t, v)
			p, err := LoadParams(fixtureDir(v))
			if err != nil {
				t.Fatal(err)
			}
			if p.Config.FFNConfig.MoELossWeight != tc.Training.MoELossWeight {
				t.Fatalf("moe_loss_weight %v, fixture %v", p.Config.FFNConfig.MoELossWeight, tc.Training.MoELossWeight)
			}
			g, _ := NewParams(p.Config)
			st := NewTrainState(pool)
			b := Batch{B: 1, T: len(ids), IDs: ids, Targets: ShiftLabels(ids, 1, len(ids))}
			ls, err := st.LossAndGrad(p, b, TrainOptions{AuxLoss: AuxHF}, g)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				name      string
				got, want float64
			}{{"ce", ls.CE, tc.Training.CELoss}, {"aux", ls.Aux, tc.Training.AuxLoss}, {"total", ls.Total, tc.Training.TotalLoss}} {
				if d := math.Abs(c.got - c.want); d > lossTol {
					t.Errorf("%s loss %.9g, want %.9g (diff %.3g)", c.name, c.got, c.want, d)
				} else {
					t.Logf("%s loss %.9g (diff %.2g)", c.name, c.got, d)
				}
			}
			if ls.Tokens != len(ids)-1 {
				t.Errorf("counted %d targets, want %d", ls.Tokens, len(ids)-1)
			}

			// Gradient norms (all variants).
			if len(tc.Training.GradNormsTotalLoss) != len(g.Names) {
				t.Errorf("fixture has %d gradient norms, model %d parameters", len(tc.Training.GradNormsTotalLoss), len(g.Names))
			}
			var worstNorm float64
			for i, n := range g.Names {
				want, ok := tc.Training.GradNormsTotalLoss[n]
				if !ok {
					t.Errorf("%s: no gradient norm in the fixture", n)
					continue
				}
				got := l2(g.Data[i])
				rel := math.Abs(got-want) / math.Max(want, 1e-30)
				worstNorm = math.Max(worstNorm, rel)
				if rel > gradNormTol {
					t.Errorf("%s: gradient norm %.9g, want %.9g (rel %.3g)", n, got, want, rel)
				}
			}
			t.Logf("gradient norms: worst relative diff %.3g", worstNorm)

			// Full gradients where the fixture has them (A, B, D).
			path := filepath.Join(fixtureDir(v), "grads.safetensors")
			if _, err := os.Stat(path); err != nil {
				t.Logf("no grads.safetensors: norms only")
				return
			}
			ref, err := weights.OpenSafetensors(path)
			if err != nil {
				t.Fatal(err)
			}
			defer ref.Close()
			if len(ref.Names()) != len(g.Names) {
				t.Errorf("grads.safetensors has %d tensors, model %d", len(ref.Names()), len(g.Names))
			}
			var worst float64
			worstName := ""
			for i, n := range g.Names {
				rt, ok := ref.Tensor(n)
				if !ok || rt.DType != tensor.F32 || !rt.Shape.Equal(tensor.Shape(g.Shapes[i])) {
					t.Errorf("%s: missing or mis-shaped in grads.safetensors", n)
					continue
				}
				want := make([]float32, len(g.Data[i]))
				if err := tensor.ToFloat32(want, rt.DType, rt.Data); err != nil {
					t.Fatal(err)
				}
				var maxRef, maxDiff float64
				for j, w := range want {
					maxRef = math.Max(maxRef, math.Abs(float64(w)))
					maxDiff = math.Max(maxDiff, math.Abs(float64(g.Data[i][j])-float64(w)))
				}
				rel := maxDiff / math.Max(maxRef, 1e-30)
				if rel > worst {
					worst, worstName = rel, n
				}
				if maxDiff > gradRelTol*maxRef {
					t.Errorf("%s: max abs diff %.3g > %g·max|g| (max|g| %.3g)", n, maxDiff, gradRelTol, maxRef)
				}
			}
			t.Logf("gradients: worst max-abs-diff / max|g| = %.3g (%s)", worst, worstName)
		})
	}
}

// The training forward must compute what the inference forward computes: the CE of
// a batch of two different sequences equals the CE from Model.Forward's logits of
// each sequence alone, which also shows the sequences of a batch do not mix.
func TestTrainForwardMatchesInference(t *testing.T) {
	pool := parallel.New(0)
	defer pool.Close()
	p, err := LoadParams(fixtureDir("A"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := p.Bind()
	if err != nil {
		t.Fatal(err)
	}
	V := p.Config.VocabSize
	r := rand.New(rand.NewPCG(5, 6))
	const B, T = 2, 19
	ids := make([]int, B*T)
	for i := range ids {
		ids[i] = r.IntN(V)
	}
	targets := ShiftLabels(ids, B, T)
	targets[4] = IgnoreIndex
	st := NewTrainState(pool)
	ls, err := st.Forward(p, Batch{B: B, T: T, IDs: ids, Targets: targets}, TrainOptions{AuxLoss: AuxNone})
	if err != nil {
		t.Fatal(err)
	}
	ws := NewWorkspace(pool)
	var sum float64
	n := 0
	for b := 0; b < B; b++ {
		cache := m.NewKVCache(T, T)
		logits, err := m.Forward(ws, []Step{{Cache: cache, IDs: ids[b*T : (b+1)*T], AllLogits: true}})
		if err != nil {
			t.Fatal(err)
		}
		for i, tg := range targets[b*T : (b+1)*T] {
			if tg == IgnoreIndex {
				continue
			}
			row := logits[i*V : (i+1)*V]
			sum += nn.LogSumExp(row) - float64(row[tg])
			n++
		}
	}
	if n != ls.Tokens {
		t.Fatalf("tokens %d, want %d", ls.Tokens, n)
	}
	if d := math.Abs(sum/float64(n) - ls.CE); d > 1e-6 {
		t.Errorf("training CE %.9g, inference CE %.9g (diff %.3g)", ls.CE, sum/float64(n), d)
	} else {
		t.Logf("CE diff vs inference: %.3g", d)
	}
	if ls.Aux != 0 || ls.Total != ls.CE {
		t.Errorf("AuxNone: aux %v total %v ce %v", ls.Aux, ls.Total, ls.CE)
	}
}

// tinyConfig is a small DBRX for the self-contained tests.
func tinyConfig() Config {
	c := DefaultConfig()
	c.DModel, c.NHeads, c.NLayers, c.VocabSize, c.MaxSeqLen = 32, 4, 2, 64, 64
	clip := 1.5
	c.AttnConfig.KVNHeads, c.AttnConfig.ClipQKV = 2, &clip
	c.FFNConfig.FFNHiddenSize, c.FFNConfig.MoENumExperts, c.FFNConfig.MoETopK = 24, 4, 2
	return c
}

// tinyParams returns scaled random parameters (like the fixtures' init: large
// enough that attention and routing are decisive).
func tinyParams(t *testing.T, c Config, seed uint64) *Params {
	t.Helper()
	p, err := NewParams(c)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(seed, 99))
	D, F := float64(c.DModel), float64(c.FFNConfig.FFNHiddenSize)
	for i, n := range p.Names {
		std := 1 / math.Sqrt(D)
		switch {
		case n == NameWte:
			std = 1
		case len(p.Shapes[i]) == 1:
			for j := range p.Data[i] {
				p.Data[i][j] = float32(1 + 0.1*r.NormFloat64())
			}
			continue
		case n == NameLMHead, strings.HasSuffix(n, "router.layer.weight"):
			std = 2 / math.Sqrt(D)
		case strings.HasSuffix(n, ".w2"):
			std = 1 / math.Sqrt(F)
		}
		for j := range p.Data[i] {
			p.Data[i][j] = float32(r.NormFloat64() * std)
		}
	}
	return p
}

func randBatch(r *rand.Rand, V, B, T int) Batch {
	ids := make([]int, B*T)
	for i := range ids {
		ids[i] = r.IntN(V)
	}
	return Batch{B: B, T: T, IDs: ids, Targets: ShiftLabels(ids, B, T)}
}

// Model-level check of the whole backward pass (including the MegaBlocks aux loss,
// the z-loss, router jitter, GQA over a batch, clipping, ignored targets and every
// renormalisation) by central differences of the float32 loss along directions u:
// (L(θ+εu) − L(θ−εu)) / 2ε ≈ g·u, for u the unit gradient of the whole model and of
// each tensor alone. ε is chosen so the loss moves by ~1e-3 (larger steps let routing
// and clipping kinks in); we require 1e-3 relative agreement plus the float32 noise
// of the loss (observed: ≤ 1e-4 relative).
func TestTrainDirectionalDerivative(t *testing.T) {
	two, one := 2.0, 1.0
	eps := 0.05
	for _, tc := range []struct {
		name  string
		norm  *float64
		aux   AuxLoss
		z     float64
		train bool
	}{
		{"megablocks/L1", &one, AuxMegaBlocks, 0, false},
		{"hf/L2+zloss", &two, AuxHF, 0.1, false},
		{"megablocks/null+zloss+jitter", nil, AuxMegaBlocks, 0.01, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tinyConfig()
			c.FFNConfig.MoENormalizeExpertWeights = tc.norm
			c.FFNConfig.MoELossWeight = 0.5 // make the aux term matter
			c.FFNConfig.MoEJitterEps = &eps
			p := tinyParams(t, c, 3)
			r := rand.New(rand.NewPCG(8, 9))
			b := randBatch(r, c.VocabSize, 2, 9)
			b.Targets[3] = IgnoreIndex
			opt := func() TrainOptions {
				return TrainOptions{AuxLoss: tc.aux, ZLossWeight: tc.z, Train: tc.train, Rand: rand.New(rand.NewPCG(1, 1))}
			}
			st := NewTrainState(nil)
			g, _ := NewParams(c)
			if _, err := st.LossAndGrad(p, b, opt(), g); err != nil {
				t.Fatal(err)
			}
			// Directions: the whole gradient, then each tensor's own gradient (so a
			// wrong tensor cannot hide behind the others).
			type dir struct {
				name string
				u    []float32
			}
			unit := func(g []float32, lo, hi int) []float32 {
				u := make([]float32, len(g))
				n := l2(g[lo:hi])
				for i := lo; i < hi; i++ {
					u[i] = float32(float64(g[i]) / n)
				}
				return u
			}
			dirs := []dir{{"all", unit(g.Flat, 0, len(g.Flat))}}
			off := 0
			for i, n := range g.Names {
				if l2(g.Data[i]) > 0 {
					dirs = append(dirs, dir{n, unit(g.Flat, off, off+len(g.Data[i]))})
				}
				off += len(g.Data[i])
			}
			orig := append([]float32(nil), p.Flat...)
			for _, d := range dirs {
				var gu float64
				for i, v := range d.u {
					gu += float64(v) * float64(g.Flat[i])
				}
				h := math.Min(1e-3/gu, 0.1)
				var l0 float64
				loss := func(sign float64) float64 {
					for i := range p.Flat {
						p.Flat[i] = orig[i] + float32(sign*h)*d.u[i]
					}
					ls, err := NewTrainState(nil).Forward(p, b, opt())
					if err != nil {
						t.Fatal(err)
					}
					l0 = ls.Total
					return ls.Total
				}
				fd := (loss(1) - loss(-1)) / (2 * h)
				copy(p.Flat, orig)
				// 1e-3 relative, plus float32 noise of the loss (~1e-7·L per evaluation).
				tol := 1e-3*gu + 2e-7*math.Abs(l0)/h
				if math.Abs(fd-gu) > tol {
					t.Errorf("%s: |g| = %.7g, finite difference %.7g (diff %.3g > %.3g)", d.name, gu, fd, math.Abs(fd-gu), tol)
				} else {
					t.Logf("%s: |g| = %.7g, fd %.7g (rel %.2g)", d.name, gu, fd, math.Abs(fd-gu)/gu)
				}
			}
		})
	}
}

// GradScale scales every gradient and Backward accumulates.
func TestTrainGradScaleAccumulates(t *testing.T) {
	c := tinyConfig()
	p := tinyParams(t, c, 4)
	b := randBatch(rand.New(rand.NewPCG(1, 2)), c.VocabSize, 1, 6)
	st := NewTrainState(nil)
	g1, _ := NewParams(c)
	if _, err := st.LossAndGrad(p, b, TrainOptions{}, g1); err != nil {
		t.Fatal(err)
	}
	g2, _ := NewParams(c)
	for i := 0; i < 2; i++ {
		if _, err := st.LossAndGrad(p, b, TrainOptions{GradScale: 0.25}, g2); err != nil {
			t.Fatal(err)
		}
	}
	for i, v := range g1.Flat {
		if d := math.Abs(float64(v)*0.5 - float64(g2.Flat[i])); d > 1e-6*math.Max(1, math.Abs(float64(v))) {
			t.Fatalf("element %d: 2×0.25·g = %g, 0.5·g = %g", i, g2.Flat[i], v*0.5)
		}
	}
}

// TestTrainHeadSkipsIgnored: gathering the rows with a target before the LM head
// (ignored rows inside and at the ends) gives the losses and gradients of running
// every row through it.
func TestTrainHeadSkipsIgnored(t *testing.T) {
	c := tinyConfig()
	p := tinyParams(t, c, 6)
	b := randBatch(rand.New(rand.NewPCG(3, 4)), c.VocabSize, 2, 9)
	for _, i := range []int{0, 4, 5, 11} {
		b.Targets[i] = IgnoreIndex
	}
	pool := parallel.New(2)
	defer pool.Close()
	var ls [2]Losses
	var gs [2]*Params
	for k := range gs {
		st := NewTrainState(pool)
		st.headAll = k == 1
		gs[k], _ = NewParams(c)
		var err error
		if ls[k], err = st.LossAndGrad(p, b, TrainOptions{}, gs[k]); err != nil {
			t.Fatal(err)
		}
	}
	if ls[0].Tokens != 12 || math.Abs(ls[0].CE-ls[1].CE) > 1e-6*ls[1].CE {
		t.Errorf("gathered CE %v over %d tokens, every row %v over %d", ls[0].CE, ls[0].Tokens, ls[1].CE, ls[1].Tokens)
	}
	for i, name := range gs[0].Names {
		a, w := gs[0].Data[i], gs[1].Data[i]
		var mx, d float64
		for j := range w {
			mx = math.Max(mx, math.Abs(float64(w[j])))
			d = math.Max(d, math.Abs(float64(a[j]-w[j])))
		}
		if mx == 0 || d > 1e-5*mx {
			t.Errorf("%s: max |Δg| %.3g, max |g| %.3g", name, d, mx)
		}
	}
}

func TestTrainBadInput(t *testing.T) {
	c := tinyConfig()
	p := tinyParams(t, c, 5)
	st := NewTrainState(nil)
	g, _ := NewParams(c)
	if err := st.Backward(g); err == nil {
		t.Error("Backward before Forward: no error")
	}
	good := randBatch(rand.New(rand.NewPCG(1, 3)), c.VocabSize, 1, 4)
	bad := []Batch{
		{B: 1, T: 4, IDs: []int{1, 2, 64, 3}, Targets: []int{1, 2, 3, 4}},
		{B: 1, T: 4, IDs: []int{1, 2, -1, 3}, Targets: []int{1, 2, 3, 4}},
		{B: 1, T: 4, IDs: []int{1, 2, 3, 3}, Targets: []int{1, 2, 64, IgnoreIndex}},
		{B: 1, T: 4, IDs: []int{1, 2, 3}, Targets: []int{1, 2, 3, 4}},
		{B: 0, T: 4},
	}
	for i, b := range bad {
		if _, err := st.Forward(p, b, TrainOptions{}); err == nil {
			t.Errorf("bad batch %d: no error", i)
		}
	}
	if _, err := st.Forward(p, good, TrainOptions{AuxLoss: AuxLoss(9)}); err == nil {
		t.Error("unknown aux loss: no error")
	}
	eps := 0.1
	c2 := c
	c2.FFNConfig.MoEJitterEps = &eps
	p2 := tinyParams(t, c2, 5)
	if _, err := st.Forward(p2, good, TrainOptions{Train: true}); err == nil {
		t.Error("jitter without Rand: no error")
	}
	c3 := tinyConfig()
	c3.DModel = 48
	g3, _ := NewParams(c3)
	if _, err := st.LossAndGrad(p, good, TrainOptions{}, g3); err == nil {
		t.Error("gradient of another shape: no error")
	}
	// All targets ignored: zero CE, gradients only from the aux loss.
	ign := good
	ign.Targets = []int{IgnoreIndex, IgnoreIndex, IgnoreIndex, IgnoreIndex}
	g.Zero()
	ls, err := st.LossAndGrad(p, ign, TrainOptions{}, g)
	if err != nil || ls.CE != 0 || ls.Tokens != 0 {
		t.Errorf("all ignored: %+v, %v", ls, err)
	}
	if lm, _ := g.Tensor(NameLMHead); l2(lm) != 0 {
		t.Error("all ignored: lm_head has a gradient")
	}
}

// A tiny model must fit one batch: Adam on the MegaBlocks total loss drives the
// cross-entropy below 0.1.
func TestTrainOverfitOneBatch(t *testing.T) {
	c := tinyConfig()
	p := tinyParams(t, c, 6)
	b := randBatch(rand.New(rand.NewPCG(4, 4)), c.VocabSize, 2, 16)
	pool := parallel.New(0)
	defer pool.Close()
	st := NewTrainState(pool)
	g, _ := NewParams(c)
	m := make([]float32, len(p.Flat))
	v := make([]float32, len(p.Flat))
	const lr, b1, b2 = 1e-2, 0.9, 0.999
	var ls Losses
	var err error
	first := 0.0
	for step := 1; step <= 300; step++ {
		g.Zero()
		if ls, err = st.LossAndGrad(p, b, TrainOptions{}, g); err != nil {
			t.Fatal(err)
		}
		if step == 1 {
			first = ls.CE
		}
		if ls.CE < 0.1 {
			t.Logf("step %d: ce %.4f (from %.3f), aux %.4f", step, ls.CE, first, ls.Aux)
			return
		}
		c1 := 1 - math.Pow(b1, float64(step))
		c2 := 1 - math.Pow(b2, float64(step))
		for i, gi := range g.Flat {
			m[i] = b1*m[i] + (1-b1)*gi
			v[i] = b2*v[i] + (1-b2)*gi*gi
			p.Flat[i] -= float32(lr * float64(m[i]) / c1 / (math.Sqrt(float64(v[i])/c2) + 1e-8))
		}
	}
	t.Errorf("after 300 steps ce = %.4f (from %.3f), want < 0.1", ls.CE, first)
}

// BenchmarkTrainStep measures one forward+backward of a small model (numbers are
// only comparable on an otherwise idle machine; compare with benchstat).
func BenchmarkTrainStep(b *testing.B) {
	c := DefaultConfig()
	c.DModel, c.NHeads, c.NLayers, c.VocabSize = 256, 8, 2, 1024
	clip := 8.0
	c.AttnConfig.KVNHeads, c.AttnConfig.ClipQKV = 2, &clip
	c.FFNConfig.FFNHiddenSize, c.FFNConfig.MoENumExperts, c.FFNConfig.MoETopK = 512, 8, 2
	p, err := NewParams(c)
	if err != nil {
		b.Fatal(err)
	}
	p.Init(1)
	g, _ := NewParams(c)
	pool := parallel.New(0)
	defer pool.Close()
	for _, bt := range [][2]int{{1, 128}, {4, 256}} {
		batch := randBatch(rand.New(rand.NewPCG(1, 1)), c.VocabSize, bt[0], bt[1])
		b.Run(fmt.Sprintf("B=%d,T=%d", bt[0], bt[1]), func(b *testing.B) {
			st := NewTrainState(pool)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := st.LossAndGrad(p, batch, TrainOptions{}, g); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(bt[0]*bt[1])*float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}
