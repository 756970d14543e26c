// Package kernel holds the numeric inner loops of the engine: matrix products over
// f32/bf16/f16 weights with float32 accumulation, and the small vector ops around them.
//
// Every fast kernel has a plain-Go twin (the *Generic functions) that is its test
// oracle and the fallback on CPUs without the needed features or under the purego tag.
//
// Dimension names: T tokens (rows of activations), K the reduced (input) dimension,
// N the output dimension.
package kernel
