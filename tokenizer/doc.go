// Package tokenizer is the DBRX tokenizer: OpenAI's cl100k_base byte-level BPE plus the
// DBRX added tokens, with no dependencies beyond the standard library.
//
// The cl100k_base rank table (the official cl100k_base.tiktoken file, sha256
// 223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7) is embedded in the
// binary and parsed once, on first use, into a flat id->bytes table and an
// open-addressing hash from bytes to rank.
//
// Encoding follows tiktoken 0.4.0 exactly:
//
//  1. The text is split at the allowed special-token strings (leftmost match); each one
//     becomes its id. With [AllowNone] special strings are ordinary text.
//
//  2. Each remaining segment is cut into pre-tokens by a hand-written matcher equivalent to
//     the cl100k pattern (leftmost-first alternation, with backtracking and the lookahead
//     of \s+(?!\S), and Unicode case folding in the contractions)
//
//     (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//
//  3. A pre-token that is itself a token is emitted as is; otherwise its bytes are merged
//     pairwise, always the adjacent pair whose concatenation has the lowest rank, the
//     leftmost one on ties, until no adjacent pair is a token.
//
// Invalid UTF-8: tiktoken's core works on Unicode strings, so invalid byte sequences
// cannot reach it (the npm package receives JavaScript strings, whose lone surrogates
// become U+FFFD). This package does the same thing at the byte level. Before encoding,
// each maximal invalid subsequence of the input is replaced with U+FFFD, as the WHATWG
// UTF-8 decoder does. Encoding never fails and never panics. For valid UTF-8 input,
// Decode(Encode(s)) == s.
//
// Decoding returns raw bytes. Token bytes are not always whole UTF-8 characters, so
// [StreamDecoder] is for generation: it holds an incomplete trailing sequence until the
// next token completes it, and replaces invalid sequences with U+FFFD.
//
// Large inputs are encoded in parallel. The text is cut only after an ASCII letter
// followed by a space or newline, or after a newline followed by a non-space ASCII
// character. A pre-token can never span such a point, so the ids are the same as a
// serial encode.
//
// A *Tokenizer is immutable and safe for concurrent use.
package tokenizer
