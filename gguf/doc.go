// Package gguf reads and writes GGUF files, the container llama.cpp and ollama use
// for (quantized) models, so that files move both ways between this engine and
// them.
//
// # Format (GGUF v3, little-endian)
//
//	magic "GGUF" | u32 version | u64 tensor_count | u64 kv_count
//	kv_count × { string key | u32 value_type | value }
//	tensor_count × { string name | u32 n_dims | n_dims × u64 ne | u32 ggml_type | u64 offset }
//	zero padding to the alignment | data section
//
// A string is a u64 byte length and the bytes (no terminator). A value is a
// scalar (u8 i8 u16 i16 u32 i32 f32 bool(1 byte, 0 or 1) u64 i64 f64), a string, or
// an array: u32 element type, u64 count, elements (arrays of arrays allowed). ne
// lists dimensions fastest-varying first (ggml order: a PyTorch [rows, cols] matrix
// has ne = {cols, rows}). offset is relative to the data section and a multiple of
// the alignment, general.alignment (u32, a power of two) or 32.
//
// # Reading
//
// Open maps the file (internal/mmap) and Parse validates the whole header: every
// length and count is checked against the bytes left before anything is
// allocated, and every tensor's data must lie inside the file, be aligned, and not
// overlap another's. Errors are *Error values naming the file and the byte offset
// of the offending field and wrapping a sentinel (ErrTruncated, ErrCorrupt, ...).
// Versions 2 and 3 are read; big-endian files and version 1 are rejected. Tensor
// data is handed out as zero-copy views (File.TensorData).
//
// # Writing
//
// Create/WriteTensor/Close stream a file in llama.cpp's exact layout (tensors in
// info order, each padded to the alignment) through a temp file that is fsynced
// and renamed into place, so a crash never leaves a partial file at the path.
//
// # DBRX
//
// dbrx.go maps DBRX's Hugging Face tensor names, shapes and config to llama.cpp's
// LLM_ARCH_DBRX names, ggml dims and metadata keys.
package gguf
