package train

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dbrx-engine/dbrx/chat"
	"github.com/dbrx-engine/dbrx/model/dbrx"
	"github.com/dbrx-engine/dbrx/tokenizer"
)

var testConvs = []Conversation{
	{Messages: []chat.Message{
		{Role: "system", Content: "You are terse."},
		{Role: "user", Content: "What is 2+2?"},
		{Role: "assistant", Content: "4"},
		{Role: "user", Content: "And 3+3?"},
		{Role: "assistant", Content: "\n\n6, of course."},
	}},
	{Messages: []chat.Message{
		{Role: "user", Content: "Say <|im_end|> literally."},
		{Role: "assistant", Content: "Here: <|im_end|> done."},
	}},
	{Messages: []chat.Message{{Role: "user", Content: "no reply here"}}},
}

// labelledText decodes the labelled tokens of e, one string per contiguous run.
func labelledText(t *testing.T, tok *tokenizer.Tokenizer, e Example) []string {
	t.Helper()
	var runs []string
	var cur []int
	flush := func() {
		if len(cur) > 0 {
			s, err := tok.DecodeString(cur)
			if err != nil {
				t.Fatal(err)
			}
			runs = append(runs, s)
			cur = nil
		}
	}
	for i, l := range e.Labels {
		if l == dbrx.IgnoreIndex {
			flush()
			continue
		}
		if l != e.IDs[i] {
			t.Fatalf("label %d is %d, token %d", i, l, e.IDs[i])
		}
		cur = append(cur, l)
	}
	flush()
	return runs
}

// TestSFTMasking: only assistant replies and their <|im_end|> carry labels; the
// system prompt, user turns and "<|im_start|>assistant\n" headers do not.
func TestSFTMasking(t *testing.T) {
	tok := tokenizer.DBRX()
	e, err := EncodeConversation(tok, testConvs[0].Messages, false)
	if err != nil {
		t.Fatal(err)
	}
	if want := chat.Encode(tok, testConvs[0].Messages, chat.Options{}); !equalInts(e.IDs, want) {
		t.Fatal("ids differ from chat.Encode")
	}
	runs := labelledText(t, tok, e)
	// The reply "\n\n6, ..." starts with newlines that the tokenizer may merge with
	// the header's "\n"; such a straddling token is not labelled.
	if len(runs) != 2 || runs[0] != "4<|im_end|>" || !strings.HasSuffix(runs[1], "6, of course.<|im_end|>") || strings.Contains(runs[1], "assistant") {
		t.Fatalf("labelled runs %q", runs)
	}
	e2, err := EncodeConversation(tok, testConvs[1].Messages, true)
	if err != nil {
		t.Fatal(err)
	}
	runs = labelledText(t, tok, e2)
	if len(runs) != 1 || runs[0] != "Here: <|im_end|> done.<|im_end|>" {
		t.Fatalf("labelled runs %q", runs)
	}
	// The typed "<|im_end|>" is ordinary text; only the template's is the special id.
	ends := 0
	for _, l := range e2.Labels {
		if l == tokenizer.ImEnd {
			ends++
		}
	}
	if ends != 1 {
		t.Errorf("%d special <|im_end|> labels, want 1", ends)
	}
	e3, _ := EncodeConversation(tok, testConvs[2].Messages, false)
	if len(labelledText(t, tok, e3)) != 0 {
		t.Error("a conversation without assistant turns has labels")
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func writeConvs(t *testing.T, path string, convs []Conversation) string {
	t.Helper()
	var sb strings.Builder
	for _, c := range convs {
		b, _ := json.Marshal(c)
		sb.Write(b)
		sb.WriteByte('\n')
	}
	if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestSFTRows checks the targets of padded and packed rows against the examples'
// labels: a target is the label of the next token, IgnoreIndex on padding.
func TestSFTRows(t *testing.T) {
	path := writeConvs(t, filepath.Join(t.TempDir(), "c.jsonl"), testConvs)
	ex, skipped, err := loadExamples([]string{path}, false)
	if err != nil || skipped != 1 || len(ex) != 2 {
		t.Fatalf("loaded %d, skipped %d, %v", len(ex), skipped, err)
	}
	const T = 24
	// Padded, in order: row r is example r mod 2.
	s := newSFTSource(ex, 1, false, false, tokenizer.Pad, 2, T)
	var b dbrx.Batch
	for k := 0; k < 2; k++ {
		if err := s.Next(&b); err != nil {
			t.Fatal(err)
		}
		for r := 0; r < 2; r++ {
			e := ex[r]
			for i := 0; i < T; i++ {
				id, tg := b.IDs[r*T+i], b.Targets[r*T+i]
				wantID, wantTg := tokenizer.Pad, dbrx.IgnoreIndex
				if i < len(e.IDs) {
					wantID = e.IDs[i]
				}
				if i+1 < len(e.IDs) {
					wantTg = e.Labels[i+1]
				}
				if id != wantID || tg != wantTg {
					t.Fatalf("padded row %d pos %d: (%d, %d), want (%d, %d)", r, i, id, tg, wantID, wantTg)
				}
			}
		}
	}
	// Packed, in order: the rows tile the concatenated stream across epochs.
	var ids, labels []int
	for len(ids) < 5*2*T+1 {
		for _, e := range ex {
			ids = append(ids, e.IDs...)
			labels = append(labels, e.Labels...)
		}
	}
	p := newSFTSource(ex, 1, false, true, tokenizer.Pad, 2, T)
	for k := 0; k < 5; k++ {
		if err := p.Next(&b); err != nil {
			t.Fatal(err)
		}
		for i := range b.IDs {
			pos := k*2*T + i
			if b.IDs[i] != ids[pos] || b.Targets[i] != labels[pos+1] {
				t.Fatalf("packed batch %d index %d: (%d, %d), want (%d, %d)", k, i, b.IDs[i], b.Targets[i], ids[pos], labels[pos+1])
			}
		}
	}
	// Shuffled epochs are permutations, and state/restore resumes exactly.
	sh := newSFTSource(ex, 9, true, false, tokenizer.Pad, 1, T)
	for i := 0; i < 3; i++ {
		sh.Next(&b)
	}
	st, _ := sh.State()
	var want [][]int
	for i := 0; i < 4; i++ {
		sh.Next(&b)
		want = append(want, append([]int(nil), b.IDs...))
	}
	re := newSFTSource(ex, 9, true, false, tokenizer.Pad, 1, T)
	if err := re.Restore(st); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 4; i++ {
		re.Next(&b)
		if !equalInts(b.IDs, want[i]) {
			t.Fatalf("restored row %d differs", i)
		}
	}
}

// TestSFTTrain fine-tunes a tiny model with the real vocabulary on conversations
// through the trainer (padded and packed), with held-out conversations.
func TestSFTTrain(t *testing.T) {
	dir := t.TempDir()
	train := writeConvs(t, filepath.Join(dir, "train.jsonl"), testConvs)
	eval := writeConvs(t, filepath.Join(dir, "eval.jsonl"), testConvs[:2])
	for _, pack := range []bool{false, true} {
		c := DefaultConfig()
		c.RunDir = filepath.Join(dir, "run", map[bool]string{false: "padded", true: "packed"}[pack])
		c.Seed, c.Threads, c.MaxSteps = 1, 2, 3
		c.Model.Config = json.RawMessage(`{"d_model": 16, "n_heads": 2, "n_layers": 1, "vocab_size": 100352,
			"attn_config": {"kv_n_heads": 1}, "ffn_config": {"ffn_hidden_size": 16, "moe_num_experts": 2, "moe_top_k": 1}}`)
		c.Data = DataConfig{SeqLen: 48, BatchSize: 2, GradAccum: 1, Shuffle: true,
			SFT: &SFTConfig{Train: []string{train}, Eval: []string{eval}, Pack: pack}}
		c.EvalEvery = 3
		if err := runTrainer(t, context.Background(), c, Options{}); err != nil {
			t.Fatal(err)
		}
		m := readLines[StepMetrics](t, filepath.Join(c.RunDir, MetricsFile))
		ev := readLines[EvalMetrics](t, filepath.Join(c.RunDir, EvalFile))
		if len(m) != 3 || len(ev) != 1 || !(ev[0].Loss > 0) {
			t.Fatalf("pack=%v: metrics %+v eval %+v", pack, m, ev)
		}
		// Held-out targets: exactly the labelled tokens (the padded rows hold whole
		// conversations here).
		if !pack {
			ex, _, _ := loadExamples([]string{eval}, false)
			n := 0
			for _, e := range ex {
				for _, l := range e.Labels[1:] {
					if l != dbrx.IgnoreIndex {
						n++
					}
				}
			}
			if ev[0].Tokens != n {
				t.Errorf("eval counted %d targets, the conversations have %d assistant tokens", ev[0].Tokens, n)
			}
		}
	}
}
