package optim

import (
	"fmt"
	"math"
)

// Schedule is a learning-rate schedule: linear warmup from 0 to Peak over Warmup
// steps, then cosine decay from Peak to Min, reached at step Total, and Min after.
//
//	LR(s) = Peak * s/Warmup                                           s < Warmup
//	LR(s) = Min + (Peak-Min) * (1 + cos(π (s-Warmup)/(Total-Warmup)))/2   Warmup <= s < Total
//	LR(s) = Min                                                        s >= Total
//
// s counts optimizer steps already taken, so the first update uses LR(0), which is 0
// when Warmup > 0 (as transformers' get_cosine_schedule_with_warmup); pass s+1 for a
// warmup that starts at Peak/Warmup. Warmup == Total means no decay phase: the rate
// stays at Peak after warmup (a constant schedule; Min is unused).
type Schedule struct {
	Peak   float64 // learning rate at the end of warmup, > 0
	Min    float64 // floor reached at Total, in [0, Peak]
	Warmup int     // warmup steps, >= 0
	Total  int     // step at which the decay reaches Min, >= Warmup
}

// DefaultSchedule returns a schedule with peak 3e-4, floor 3e-5, 100 warmup steps and
// 10000 steps in total.
func DefaultSchedule() Schedule {
	return Schedule{Peak: 3e-4, Min: 3e-5, Warmup: 100, Total: 10000}
}

// Validate reports the first out-of-range field.
func (s Schedule) Validate() error {
	switch {
	case !(s.Peak > 0) || math.IsInf(s.Peak, 0):
		return fmt.Errorf("%w: schedule: Peak %v must be positive and finite", ErrConfig, s.Peak)
	case !(s.Min >= 0 && s.Min <= s.Peak):
		return fmt.Errorf("%w: schedule: Min %v not in [0, Peak=%v]", ErrConfig, s.Min, s.Peak)
	case s.Warmup < 0:
		return fmt.Errorf("%w: schedule: Warmup %d < 0", ErrConfig, s.Warmup)
	case s.Total < s.Warmup:
		return fmt.Errorf("%w: schedule: Total %d < Warmup %d", ErrConfig, s.Total, s.Warmup)
	}
	return nil
}

// LR returns the learning rate for step (negative steps count as 0).
func (s Schedule) LR(step int) float64 {
	step = max(step, 0)
	switch {
	case step < s.Warmup:
		return s.Peak * float64(step) / float64(s.Warmup)
	case step >= s.Total:
		if s.Total == s.Warmup {
			return s.Peak
		}
		return s.Min
	}
	p := float64(step-s.Warmup) / float64(s.Total-s.Warmup)
	return s.Min + (s.Peak-s.Min)*0.5*(1+math.Cos(math.Pi*p))
}
