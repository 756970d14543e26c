package optim

import (
	"fmt"
	"math"

	"github.com/dbrx-engine/dbrx/internal/kernel"
	"github.com/dbrx-engine/dbrx/internal/parallel"
)

// AdamWConfig holds the AdamW hyper-parameters (the learning rate is passed to each
// Step, from a Schedule).
type AdamWConfig struct {
	Beta1       float64 // first-moment decay, in [0, 1); torch default 0.9
	Beta2       float64 // second-moment decay, in [0, 1); torch default 0.999
	Eps         float64 // added to sqrt of the bias-corrected second moment, > 0; 1e-8
	WeightDecay float64 // decoupled decay p *= 1 - lr*wd for Params with Decay; >= 0; 0.01
}

// DefaultAdamWConfig returns torch.optim.AdamW's defaults.
func DefaultAdamWConfig() AdamWConfig {
	return AdamWConfig{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01}
}

// Validate reports the first out-of-range field.
func (c AdamWConfig) Validate() error {
	switch {
	case !(c.Beta1 >= 0 && c.Beta1 < 1):
		return fmt.Errorf("%w: adamw: Beta1 %v not in [0, 1)", ErrConfig, c.Beta1)
	case !(c.Beta2 >= 0 && c.Beta2 < 1):
		return fmt.Errorf("%w: adamw: Beta2 %v not in [0, 1)", ErrConfig, c.Beta2)
	case !(c.Eps > 0) || math.IsInf(c.Eps, 0):
		return fmt.Errorf("%w: adamw: Eps %v must be positive and finite", ErrConfig, c.Eps)
	case !(c.WeightDecay >= 0) || math.IsInf(c.WeightDecay, 0):
		return fmt.Errorf("%w: adamw: WeightDecay %v must be >= 0 and finite", ErrConfig, c.WeightDecay)
	}
	return nil
}

// AdamW is Adam with decoupled weight decay as torch.optim.AdamW computes it
// (single-tensor path) in float32:
//
//	step += 1
//	p  *= 1 - lr*wd                    (Params with Decay only)
//	m   = lerp(m, g, 1-β1)
//	v   = v*β2 + (1-β2)*g*g
//	p  += -(lr/(1-β1^step)) * m / (sqrt(v)*(1/sqrt(1-β2^step)) + eps)
//
// with one difference: torch divides sqrt(v) by sqrt(1-β2^step), AdamW multiplies by
// its reciprocal (within an ulp of the quotient, and one division per element fewer).
// The element update is kernel.AdamWF32 (AVX2, bit-identical to its Go twin).
// Moments are created (zero) the first time a parameter name is seen.
// An AdamW is not safe for concurrent use.
type AdamW struct {
	cfg AdamWConfig
	engine

	// coefficients of the running step, in float32 as torch applies them
	decay, w1, b2, w2, stepSize, invBc2Sqrt, eps float32
}

// NewAdamW returns an AdamW optimizer that spreads its updates over pool (nil: serial).
func NewAdamW(cfg AdamWConfig, pool *parallel.Pool) (*AdamW, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	o := &AdamW{cfg: cfg, engine: newEngine(pool, true)}
	o.kern = o.update
	return o, nil
}

// Config returns the optimizer's configuration.
func (o *AdamW) Config() AdamWConfig { return o.cfg }

// Steps returns the number of steps taken (torch's state["step"]).
func (o *AdamW) Steps() int { return o.steps }

// Step applies one update with learning rate lr to every parameter, using its
// gradient G. Parameters must have distinct non-empty names and len(G) == len(W).
func (o *AdamW) Step(params []Param, lr float64) error { return o.StepScaled(params, lr, 1) }

// StepScaled is Step with every gradient multiplied by gradScale (a float32
// product, as ScaleGrads takes it) as it is read: bit for bit ScaleGrads(params,
// gradScale) then Step, without the pass over the gradients, which stay unscaled.
// The factor of ClipScale goes here.
func (o *AdamW) StepScaled(params []Param, lr float64, gradScale float32) error {
	if err := checkLR(lr); err != nil {
		return err
	}
	if err := o.prepare(params); err != nil {
		return err
	}
	o.steps++
	c := o.cfg
	bc1 := 1 - math.Pow(c.Beta1, float64(o.steps))
	bc2 := 1 - math.Pow(c.Beta2, float64(o.steps))
	o.decay = float32(1 - lr*c.WeightDecay)
	o.w1 = float32(1 - c.Beta1)
	o.b2 = float32(c.Beta2)
	o.w2 = float32(1 - c.Beta2)
	o.stepSize = float32(-(lr / bc1))
	o.invBc2Sqrt = float32(1 / math.Sqrt(bc2))
	o.eps = float32(c.Eps)
	o.gradScale = gradScale
	o.run(params)
	return nil
}

// update applies the step to p.W[lo:hi] with kernel.AdamWF32: every product and sum
// is a separate float32 operation (no FMA), so the rounding is the same on all
// platforms and with or without the assembly.
func (o *AdamW) update(p *Param, s *slot, lo, hi int) {
	c := kernel.AdamWStep{GradScale: o.gradScale, Decay: o.decay, Lerp: o.w1, Beta2: o.b2, W2: o.w2,
		StepSize: o.stepSize, InvBc2Sqrt: o.invBc2Sqrt, Eps: o.eps, LowWeight: o.w1 < 0.5}
	if !p.Decay {
		c.Decay = 1 // x·1 is x: the same as not decaying
	}
	if !c.LowWeight {
		c.Lerp = float32(1 - o.w1) // at::lerp's (1 - weight) for weight >= 0.5
	}
	kernel.AdamWF32(p.W[lo:hi], p.G[lo:hi], s.m[lo:hi], s.v[lo:hi], c)
}
