package optim

import (
	"fmt"
	"math"

	"github.com/dbrx-engine/dbrx/internal/parallel"
)

// LionWConfig holds the Lion hyper-parameters (the learning rate is passed to Step).
type LionWConfig struct {
	Beta1       float64 // interpolation for the update direction, in [0, 1); 0.9
	Beta2       float64 // momentum decay, in [0, 1); 0.99
	WeightDecay float64 // decoupled decay p *= 1 - lr*wd for Params with Decay; >= 0; 0
}

// DefaultLionWConfig returns lion-pytorch's defaults.
func DefaultLionWConfig() LionWConfig {
	return LionWConfig{Beta1: 0.9, Beta2: 0.99, WeightDecay: 0}
}

// Validate reports the first out-of-range field.
func (c LionWConfig) Validate() error {
	switch {
	case !(c.Beta1 >= 0 && c.Beta1 < 1):
		return fmt.Errorf("%w: lionw: Beta1 %v not in [0, 1)", ErrConfig, c.Beta1)
	case !(c.Beta2 >= 0 && c.Beta2 < 1):
		return fmt.Errorf("%w: lionw: Beta2 %v not in [0, 1)", ErrConfig, c.Beta2)
	case !(c.WeightDecay >= 0) || math.IsInf(c.WeightDecay, 0):
		return fmt.Errorf("%w: lionw: WeightDecay %v must be >= 0 and finite", ErrConfig, c.WeightDecay)
	}
	return nil
}

// LionW is the Lion optimizer with decoupled weight decay, as lion-pytorch computes it
// in float32:
//
//	p *= 1 - lr*wd                      (Params with Decay only)
//	u  = sign(m*β1 + (1-β1)*g)          (sign(0) = 0)
//	p += -lr * u
//	m  = m*β2 + (1-β2)*g
//
// A LionW is not safe for concurrent use.
type LionW struct {
	cfg LionWConfig
	engine

	decay, b1, w1, b2, w2, negLR float32
}

// NewLionW returns a LionW optimizer that spreads its updates over pool (nil: serial).
func NewLionW(cfg LionWConfig, pool *parallel.Pool) (*LionW, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	o := &LionW{cfg: cfg, engine: newEngine(pool, false)}
	o.kern = o.update
	return o, nil
}

// Config returns the optimizer's configuration.
func (o *LionW) Config() LionWConfig { return o.cfg }

// Steps returns the number of steps taken.
func (o *LionW) Steps() int { return o.steps }

// Step applies one update with learning rate lr to every parameter.
func (o *LionW) Step(params []Param, lr float64) error { return o.StepScaled(params, lr, 1) }

// StepScaled is Step with every gradient multiplied by gradScale as it is read, bit
// for bit ScaleGrads(params, gradScale) then Step (see AdamW.StepScaled).
func (o *LionW) StepScaled(params []Param, lr float64, gradScale float32) error {
	if err := checkLR(lr); err != nil {
		return err
	}
	if err := o.prepare(params); err != nil {
		return err
	}
	o.steps++
	c := o.cfg
	o.decay = float32(1 - lr*c.WeightDecay)
	o.b1, o.w1 = float32(c.Beta1), float32(1-c.Beta1)
	o.b2, o.w2 = float32(c.Beta2), float32(1-c.Beta2)
	o.negLR = float32(-lr)
	o.gradScale = gradScale
	o.run(params)
	return nil
}

func (o *LionW) update(p *Param, s *slot, lo, hi int) {
	w, g, m := p.W[lo:hi], p.G[lo:hi], s.m[lo:hi]
	g, m = g[:len(w)], m[:len(w)]
	decay, b1, w1, b2, w2, negLR, gs := o.decay, o.b1, o.w1, o.b2, o.w2, o.negLR, o.gradScale
	if !p.Decay {
		decay = 1 // x·1 is x: the same as not decaying
	}
	for i := range w {
		gi, wi, mi := float32(g[i]*gs), float32(w[i]*decay), m[i]
		c := float32(mi*b1) + float32(w1*gi)
		var u float32
		switch {
		case c > 0:
			u = 1
		case c < 0:
			u = -1
		case c != c: // NaN propagates, as torch.sign does
			u = c
		}
		wi = wi + float32(negLR*u)
		w[i] = wi
		m[i] = float32(mi*b2) + float32(w2*gi)
	}
}
