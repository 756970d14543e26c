// Package optim holds the optimizers, gradient clipping, gradient-accumulation helpers
// and learning-rate schedules used for training, all over float32 parameters.
//
// A [Param] is a named weight slice with its gradient (same length, flat; shapes do not
// matter to element-wise optimizers). Optimizers keep their per-parameter state
// (moments) by parameter name, so the slice of Params passed to Step may be rebuilt
// between steps as long as names and lengths stay the same.
//
// The update rules reproduce the reference implementations operation by operation in
// float32, with the scalar coefficients computed in float64 as Python does:
//
//   - [AdamW]: torch.optim.AdamW (single-tensor path, amsgrad=False, maximize=False).
//   - [LionW]: lion-pytorch's Lion (decoupled weight decay p *= 1 - lr*wd).
//
// Every update is element-wise over disjoint ranges, so results do not depend on the
// number of workers of the [parallel.Pool] (nil runs serially). [AdamW.State] and
// [LionW.State] export the state as named float32 tensors plus string metadata (the
// shape of a safetensors file); LoadState restores it so that a resumed run continues
// bit for bit.
//
// Sentinel errors: [ErrParam] (bad Param list), [ErrLR] (bad learning rate),
// [ErrState] (missing, mis-shaped or foreign optimizer state), [ErrConfig] (invalid
// configuration).
package optim
