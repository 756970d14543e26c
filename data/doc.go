// Package data turns text corpora into token shards and streams training batches
// from them.
//
// # Shard format
//
// A token shard (extension .tok) is a 64-byte little-endian header followed by the
// token ids as little-endian uint32:
//
//	off  size  field
//	  0     8  magic "DBRXTOK1"
//	  8     4  version (1)
//	 12     4  header size (64)
//	 16     4  dtype (1 = uint32 ids)
//	 20     4  end-of-text id separating documents (100257 for DBRX)
//	 24     8  token count N
//	 32     8  document count (the number of end-of-text ids in the payload)
//	 40     4  CRC-32C (Castagnoli) of the payload
//	 44    16  reserved, zero
//	 60     4  CRC-32C of bytes [0, 60)
//	 64  4·N   ids
//
// Every document is followed by the end-of-text id. [ShardWriter] writes a shard
// atomically (temporary file, fsync, rename); [OpenShard] maps it read-only and checks
// the header against the file size; [Shard.Verify] checks the payload checksum and the
// document count. Malformed files give a *[FormatError] with the byte offset of the
// bad field.
//
// # Preparing a corpus
//
// [Prepare] tokenizes text files (one document per file) and JSONL files (one
// document per line, from its "text" field) in parallel, splits documents into train
// and held-out by a seeded hash of their text, and writes shards plus a JSON
// [Manifest]. Output does not depend on the number of workers.
//
// # Loading batches
//
// A [Loader] cuts each source's token stream (its shards concatenated) into windows
// of T+1 tokens that overlap by one (inputs are the first T, targets the last T),
// visits them in a seeded pseudo-random order per epoch, and fills each batch row from
// a source drawn with the weights of the current curriculum stage. Everything is a
// pure function of the seed and a global row counter, so the same seed gives the same
// batches, a saved [LoaderState] resumes exactly, and ranks of a data-parallel job
// take disjoint rows of the same global batch.
package data
