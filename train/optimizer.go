package train

import (
	"fmt"

	"github.com/dbrx-engine/dbrx/internal/parallel"
	"github.com/dbrx-engine/dbrx/model/dbrx"
	"github.com/dbrx-engine/dbrx/optim"
)

// Optimizer is what the trainer needs of optim.AdamW and optim.LionW.
type Optimizer interface {
	// StepScaled updates with every gradient multiplied by gradScale (the clipping
	// factor) as it is read.
	StepScaled(params []optim.Param, lr float64, gradScale float32) error
	State() (tensors map[string][]float32, meta map[string]string)
	LoadState(params []optim.Param, tensors map[string][]float32, meta map[string]string) error
}

// schedule is the learning-rate schedule of the run: warmup to LR, cosine to MinLR
// at DecaySteps (default MaxSteps).
func (c Config) schedule() (optim.Schedule, error) {
	o := c.Optimizer
	total := o.DecaySteps
	if total == 0 {
		total = c.MaxSteps
	}
	total = max(total, o.WarmupSteps)
	s := optim.Schedule{Peak: o.LR, Min: o.MinLR, Warmup: o.WarmupSteps, Total: total}
	return s, s.Validate()
}

// LR is the learning rate of optimizer step `step` (1-based: the first update uses
// LR(1) = lr/warmup_steps, and LR(decay_steps) = min_lr).
func (c Config) LR(step int) float64 {
	s, _ := c.schedule()
	return s.LR(step)
}

// newOptimizer builds the configured optimizer.
func (c Config) newOptimizer(pool *parallel.Pool) (Optimizer, error) {
	o := c.Optimizer
	switch o.Name {
	case "lionw":
		cfg := optim.DefaultLionWConfig()
		cfg.Beta1 = orDefault(o.Beta1, cfg.Beta1)
		cfg.Beta2 = orDefault(o.Beta2, cfg.Beta2)
		cfg.WeightDecay = orDefault(o.WeightDecay, cfg.WeightDecay)
		return optim.NewLionW(cfg, pool)
	case "adamw":
		cfg := optim.DefaultAdamWConfig()
		cfg.Beta1 = orDefault(o.Beta1, cfg.Beta1)
		cfg.Beta2 = orDefault(o.Beta2, 0.95)
		cfg.Eps = orDefault(o.Eps, cfg.Eps)
		cfg.WeightDecay = orDefault(o.WeightDecay, 0.1)
		return optim.NewAdamW(cfg, pool)
	}
	return nil, fmt.Errorf("%w: optimizer %q", ErrConfig, o.Name)
}

// optimParams pairs every parameter with its gradient. Norm weights (and any 1-D
// tensor) get no weight decay (optim.DefaultDecay).
func optimParams(p, g *dbrx.Params) []optim.Param {
	ps := make([]optim.Param, len(p.Names))
	for i, n := range p.Names {
		ps[i] = optim.Param{Name: n, W: p.Data[i], G: g.Data[i], Decay: optim.DefaultDecay(n, len(p.Shapes[i]))}
	}
	return ps
}
