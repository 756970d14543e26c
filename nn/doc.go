// Package nn holds the layers of a DBRX-class transformer as plain float32 functions:
// bias-free LayerNorm, NeoX rotary embeddings, causal grouped-query attention over a KV
// cache, the softmax top-k router and SwiGLU. Inference and training share them.
//
// Dimension glossary used in shape comments throughout the project:
//
//	B   batch (sequences)            T   tokens in this call
//	D   d_model                      H   query heads
//	KVH key/value heads              Dh  head dim (D/H)
//	F   expert hidden size           E   experts
//	K   active experts (top-k)       V   vocabulary size
//	L   layers                       P   tokens already in the KV cache
package nn
