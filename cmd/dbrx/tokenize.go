package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"sync"

	"github.com/dbrx-engine/dbrx/tokenizer"
)

func init() {
	register(command{
		name:    "tokenize",
		summary: "encode stdin to token ids (JSON array, or JSONL with --jsonl)",
		run:     runTokenize,
	})
	register(command{
		name:    "detokenize",
		summary: "decode a JSON array of token ids on stdin to bytes",
		run:     runDetokenize,
	})
}

// runTokenize implements
//
//	dbrx tokenize [--special none|all|LIST] < text            -> [id,...]
//	dbrx tokenize --jsonl [--special none|all|LIST] < jsonl   -> {"ids":[...]} per line
func runTokenize(ctx context.Context, e env, args []string) error {
	fs := newFlags("tokenize", e)
	special := fs.String("special", "none", `special-token strings to recognise: "none", "all", or a comma-separated list`)
	jsonl := fs.Bool("jsonl", false, `read one JSON object with a "text" field per line; write {"ids":[...]} per line`)
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: unexpected arguments %q (input is read from stdin)", errUsage, pos)
	}
	allowed, err := tokenizer.ParseAllowedSpecial(*special)
	if err != nil {
		return fmt.Errorf("%w: --special: %v", errUsage, err)
	}
	tok, err := tokenizer.New()
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(e.stdout, 1<<16)
	if *jsonl {
		err = tokJSONL(ctx, tok, allowed, e.stdin, w)
	} else {
		var data []byte
		if data, err = io.ReadAll(e.stdin); err == nil {
			buf := tokAppendIDs(nil, tok.Encode(string(data), allowed))
			_, err = w.Write(append(buf, '\n'))
		}
	}
	if err != nil {
		return err
	}
	return w.Flush()
}

// tokJSONL encodes stdin lines in batches, each batch across all cores, writing results
// in input order.
func tokJSONL(ctx context.Context, tok *tokenizer.Tokenizer, allowed tokenizer.AllowedSpecial, in io.Reader, w *bufio.Writer) error {
	const batchLines, batchBytes = 1024, 8 << 20
	r := bufio.NewReaderSize(in, 1<<16)
	line := 0
	for eof := false; !eof; {
		if err := ctx.Err(); err != nil {
			return err
		}
		var texts []string
		size := 0
		first := line + 1
		for len(texts) < batchLines && size < batchBytes {
			b, err := r.ReadBytes('\n')
			if errors.Is(err, io.EOF) {
				eof = true
				if len(b) == 0 {
					break
				}
			} else if err != nil {
				return err
			}
			line++
			var obj struct {
				Text *string `json:"text"`
			}
			if err := json.Unmarshal(b, &obj); err != nil {
				return fmt.Errorf("stdin line %d: %v", line, err)
			}
			if obj.Text == nil {
				return fmt.Errorf("stdin line %d: no \"text\" field", line)
			}
			texts = append(texts, *obj.Text)
			size += len(*obj.Text)
			if eof {
				break
			}
		}
		out := make([][]byte, len(texts))
		var wg sync.WaitGroup
		var next sync.Mutex
		k := 0
		for range min(runtime.GOMAXPROCS(0), len(texts)) {
			wg.Go(func() {
				for {
					next.Lock()
					i := k
					k++
					next.Unlock()
					if i >= len(texts) {
						return
					}
					b := append([]byte(`{"ids":`), tokAppendIDs(nil, tok.Encode(texts[i], allowed))...)
					out[i] = append(b, "}\n"...)
				}
			})
		}
		wg.Wait()
		for i, b := range out {
			if _, err := w.Write(b); err != nil {
				return fmt.Errorf("writing result of line %d: %w", first+i, err)
			}
		}
	}
	return nil
}

// tokAppendIDs appends ids as a compact JSON array.
func tokAppendIDs(b []byte, ids []int) []byte {
	b = append(b, '[')
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, int64(id), 10)
	}
	return append(b, ']')
}

// runDetokenize implements dbrx detokenize < ids.json: the decoded bytes, unchanged.
func runDetokenize(ctx context.Context, e env, args []string) error {
	fs := newFlags("detokenize", e)
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: unexpected arguments %q (ids are read from stdin)", errUsage, pos)
	}
	data, err := io.ReadAll(e.stdin)
	if err != nil {
		return err
	}
	var ids []int
	if err := json.Unmarshal(data, &ids); err != nil {
		return fmt.Errorf("stdin: want a JSON array of token ids: %v", err)
	}
	tok, err := tokenizer.New()
	if err != nil {
		return err
	}
	out, err := tok.Decode(ids)
	if err != nil {
		return err
	}
	_, err = e.stdout.Write(out)
	return err
}
