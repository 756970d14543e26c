package quant

import "github.com/dbrx-engine/dbrx/tensor"

// dtypeOf pairs every ggml type that has a tensor.DType with it. The engine computes
// with exactly these: the plain float types and the block types of tensor/block.go.
var dtypeOf = [...]struct {
	t Type
	d tensor.DType
}{
	{F32, tensor.F32},
	{F16, tensor.F16},
	{BF16, tensor.BF16},
	{Q4_0, tensor.Q4_0},
	{Q5_0, tensor.Q5_0},
	{Q8_0, tensor.Q8_0},
	{Q4_K, tensor.Q4_K},
	{Q5_K, tensor.Q5_K},
	{Q6_K, tensor.Q6_K},
}

// DType returns the tensor.DType that stores values of ggml type t (F32, F16,
// BF16, Q4_0, Q5_0, Q8_0, Q4_K, Q5_K, Q6_K), or false for a type the engine
// cannot hold (Q4_1, Q2_K, the IQ formats, integers, ...).
func (t Type) DType() (tensor.DType, bool) {
	for _, p := range dtypeOf {
		if p.t == t {
			return p.d, true
		}
	}
	return tensor.Invalid, false
}

// FromDType returns the ggml type of a tensor.DType, or false if ggml has no
// counterpart the engine uses (I32, U8, ...).
func FromDType(d tensor.DType) (Type, bool) {
	for _, p := range dtypeOf {
		if p.d == d {
			return p.t, true
		}
	}
	return 0, false
}
