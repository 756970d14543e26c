// Package safetensors reads and writes the Hugging Face safetensors format, single
// files and sharded checkpoint directories, without third-party code.
//
// A safetensors file is an 8-byte little-endian header length N, N bytes of UTF-8 JSON
// and then the raw little-endian tensor data:
//
//	{"__metadata__": {"format": "pt"},
//	 "name": {"dtype": "BF16", "shape": [4, 8], "data_offsets": [begin, end]}, ...}
//
// with data_offsets relative to the start of the data section (byte 8+N).
//
// Reading: Open maps a file read-only (package internal/mmap) and validates the whole
// header before returning; every Tensor is then a zero-copy view into the mapping, in
// its stored dtype (a BF16 checkpoint stays BF16 in memory). OpenDir opens a checkpoint
// directory, either model.safetensors or shards listed in model.safetensors.index.json,
// and cross-checks the index against the shards. ParseHeader is the pure parser under
// Open, suitable for fuzzing.
//
// Every malformed input is reported as a *FormatError naming the file, the byte offset
// and the field, and matching one of the sentinel errors (ErrTruncated, ErrBadHeader,
// ErrDType, ErrShape, ErrOffsets, ErrOverlap, ErrSize, ErrDuplicate, ErrMetadata,
// ErrIndex) with errors.Is. No input makes the reader panic.
//
// Accepted deviations from the strictest reading of the format: gaps between tensors
// and unused bytes after the last tensor are allowed (overlap is not); unknown keys in a
// tensor entry are ignored; the JSON may be padded with any JSON whitespace. Dtype BOOL
// is read as tensor.U8. Standard dtypes without a tensor.DType (F8_E4M3, I16, U16,
// U64, ...) are rejected with ErrDType naming the dtype.
//
// Writing: Create streams a file tensor by tensor (header first, so a large model never
// has to sit in memory), WriteFile writes one in a call, and WriteDir writes the Hugging
// Face sharded layout. All writes go to a temporary file in the destination directory
// that is fsynced and renamed into place, so a crash never leaves a partial file under
// the final name. Headers are padded with spaces so the data section starts 8-byte
// aligned and tensors are stored contiguously in the order given.
package safetensors
