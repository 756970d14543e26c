package train

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strings"

	"github.com/dbrx-engine/dbrx/chat"
	"github.com/dbrx-engine/dbrx/model/dbrx"
	"github.com/dbrx-engine/dbrx/tokenizer"
)

// Example is one tokenized conversation for supervised fine-tuning.
type Example struct {
	IDs []int // [n] the rendered conversation's token ids
	// Labels[i] is IDs[i] where token i is part of an assistant reply (its content
	// and the closing <|im_end|>) and dbrx.IgnoreIndex elsewhere (system prompt, user
	// turns, the "<|im_start|>assistant\n" headers).
	Labels []int // [n]
}

// Conversation is one line of an SFT JSONL file.
type Conversation struct {
	Messages []chat.Message `json:"messages"`
}

// ReadConversations reads a JSONL file of {"messages": [{"role", "content"}, ...]}
// objects. Blank lines are skipped; errors name the file and line.
func ReadConversations(path string) ([]Conversation, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	defer f.Close()
	var out []Conversation
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<30)
	for line := 1; sc.Scan(); line++ {
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		var c Conversation
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil {
			return nil, fmt.Errorf("train: %s:%d: %w", path, line, err)
		}
		if len(c.Messages) == 0 {
			return nil, fmt.Errorf("train: %s:%d: no messages", path, line)
		}
		for i, m := range c.Messages {
			if m.Role == "" {
				return nil, fmt.Errorf("train: %s:%d: message %d has no role", path, line, i)
			}
		}
		out = append(out, c)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("train: %s: %w", path, err)
	}
	return out, nil
}

// EncodeConversation renders msgs with the DBRX chat template (no generation
// prompt), encodes it, and labels the tokens of every assistant reply: its content
// and its closing <|im_end|>. A token is labelled only if all of its bytes lie inside
// a reply, so the "assistant\n" header never carries loss even if the tokenizer
// merges its newline with leading newlines of the reply.
func EncodeConversation(tok *tokenizer.Tokenizer, msgs []chat.Message, defaultSystemPrompt bool) (Example, error) {
	opts := chat.Options{DefaultSystemPrompt: defaultSystemPrompt}
	ids := chat.Encode(tok, msgs, opts)
	text := chat.Render(msgs, opts)
	type span struct{ lo, hi int }
	var spans []span
	for k, m := range msgs {
		if m.Role != "assistant" {
			continue
		}
		prefix := chat.Render(msgs[:k+1], opts)
		if !strings.HasPrefix(text, prefix) {
			return Example{}, errors.New("train: chat template is not prefix-stable")
		}
		hi := len(prefix)
		lo := hi - len(tokenizer.ImEndToken) - len(m.Content)
		spans = append(spans, span{lo, hi})
	}
	labels := make([]int, len(ids))
	off, si := 0, 0
	for i, id := range ids {
		b, err := tok.TokenBytes(id)
		if err != nil {
			return Example{}, fmt.Errorf("train: encode conversation: %w", err)
		}
		end := off + len(b)
		for si < len(spans) && spans[si].hi <= off {
			si++
		}
		labels[i] = dbrx.IgnoreIndex
		if si < len(spans) && off >= spans[si].lo && end <= spans[si].hi {
			labels[i] = id
		}
		off = end
	}
	if off != len(text) {
		return Example{}, fmt.Errorf("train: encoded conversation has %d bytes, the rendered text %d", off, len(text))
	}
	return Example{IDs: ids, Labels: labels}, nil
}

// loadExamples reads and encodes every conversation of the files, dropping those
// without assistant tokens (counted in skipped).
func loadExamples(paths []string, defaultSystemPrompt bool) (ex []Example, skipped int, err error) {
	tok, err := tokenizer.New()
	if err != nil {
		return nil, 0, err
	}
	for _, p := range paths {
		convs, err := ReadConversations(p)
		if err != nil {
			return nil, 0, err
		}
		for i, c := range convs {
			e, err := EncodeConversation(tok, c.Messages, defaultSystemPrompt)
			if err != nil {
				return nil, 0, fmt.Errorf("%s: conversation %d: %w", p, i+1, err)
			}
			n := 0
			for _, l := range e.Labels {
				if l != dbrx.IgnoreIndex {
					n++
				}
			}
			if n == 0 {
				skipped++
				continue
			}
			ex = append(ex, e)
		}
	}
	if len(ex) == 0 {
		return nil, skipped, fmt.Errorf("%w: %s: no conversation has assistant tokens", ErrConfig, strings.Join(paths, ", "))
	}
	return ex, skipped, nil
}

// sftSource makes fixed-length rows of SFT examples, epoch after epoch, each epoch
// in a seeded order.
//
// Padded (pack false): row r is one example (the r-th of the epoch order), cut to
// T+1 tokens; inputs past its end are padID with target IgnoreIndex. Packed: the
// examples of successive epochs are concatenated into one stream, and each row is
// the next T tokens of it, targets being the labels of the following tokens (rows
// are causal across the conversations they hold: there is no document mask).
type sftSource struct {
	ex      []Example
	seed    uint64
	shuffle bool
	pack    bool
	padID   int
	B, T    int

	pos int64 // next row (padded) or next stream token (packed)

	epoch int64 // epoch of perm/cum, -1 if none
	perm  []int
	cum   []int64 // [n+1] token offsets of the epoch order
	total int64   // tokens per epoch

	batch dbrx.Batch
}

type sftState struct {
	Pos int64 `json:"pos"`
}

func newSFTSource(ex []Example, seed uint64, shuffle, pack bool, padID, B, T int) *sftSource {
	s := &sftSource{ex: ex, seed: seed, shuffle: shuffle, pack: pack, padID: padID, B: B, T: T, epoch: -1}
	for _, e := range ex {
		s.total += int64(len(e.IDs))
	}
	return s
}

// order prepares the example order of epoch e: a Fisher–Yates shuffle driven by
// PCG(seed, e) (identity without shuffling).
func (s *sftSource) order(e int64) {
	if e == s.epoch {
		return
	}
	n := len(s.ex)
	if s.perm == nil {
		s.perm = make([]int, n)
		s.cum = make([]int64, n+1)
	}
	for i := range s.perm {
		s.perm[i] = i
	}
	if s.shuffle {
		rng := rand.NewPCG(s.seed, uint64(e)^0x736674)
		for i := n - 1; i > 0; i-- {
			j := int(rng.Uint64() % uint64(i+1))
			s.perm[i], s.perm[j] = s.perm[j], s.perm[i]
		}
	}
	for i, k := range s.perm {
		s.cum[i+1] = s.cum[i] + int64(len(s.ex[k].IDs))
	}
	s.epoch = e
}

// at returns the id and label of token p of the packed stream.
func (s *sftSource) at(p int64) (int, int) {
	s.order(p / s.total)
	r := p % s.total
	i := sort.Search(len(s.perm), func(i int) bool { return s.cum[i+1] > r })
	e := s.ex[s.perm[i]]
	o := r - s.cum[i]
	return e.IDs[o], e.Labels[o]
}

func (s *sftSource) Next(b *dbrx.Batch) error {
	B, T := s.B, s.T
	if len(s.batch.IDs) != B*T {
		s.batch = dbrx.Batch{B: B, T: T, IDs: make([]int, B*T), Targets: make([]int, B*T)}
	}
	for r := 0; r < B; r++ {
		ids, tg := s.batch.IDs[r*T:(r+1)*T], s.batch.Targets[r*T:(r+1)*T]
		if s.pack {
			for t := 0; t < T; t++ {
				ids[t], _ = s.at(s.pos + int64(t))
				_, tg[t] = s.at(s.pos + int64(t) + 1)
			}
			s.pos += int64(T)
			continue
		}
		n := int64(len(s.ex))
		s.order(s.pos / n)
		e := s.ex[s.perm[s.pos%n]]
		s.pos++
		for t := 0; t < T; t++ {
			ids[t], tg[t] = s.padID, dbrx.IgnoreIndex
			if t < len(e.IDs) {
				ids[t] = e.IDs[t]
			}
			if t+1 < len(e.IDs) {
				tg[t] = e.Labels[t+1]
			}
		}
	}
	*b = s.batch
	return nil
}

func (s *sftSource) State() (json.RawMessage, error) { return wrapState("sft", sftState{Pos: s.pos}) }

func (s *sftSource) Restore(raw json.RawMessage) error {
	var st sftState
	if err := unwrapState("sft", raw, &st); err != nil {
		return err
	}
	if st.Pos < 0 {
		return fmt.Errorf("train: sft data state: negative position %d", st.Pos)
	}
	s.pos = st.Pos
	return nil
}

func (s *sftSource) Close() error { return nil }

// sftPadID is the id written in padding positions: <|pad|> when the vocabulary has
// it, else 0 (padding sits after every real token and has no target, so under
// causal attention its value never matters).
func sftPadID(vocab int) int {
	if tokenizer.Pad < vocab {
		return tokenizer.Pad
	}
	return 0
}
