package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
)

// runTok runs the dbrx command line with stdin and returns exit code, stdout, stderr.
func runTok(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, env{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb})
	return code, out.String(), errb.String()
}

func TestTokenizeCommand(t *testing.T) {
	for _, c := range []struct {
		stdin string
		args  []string
		want  string
	}{
		{"hello world", []string{"tokenize"}, "[15339,1917]\n"},
		{"", []string{"tokenize"}, "[]\n"},
		{"hello <|endoftext|>", []string{"tokenize", "--special", "all"}, "[15339,220,100257]\n"},
		{"hello <|endoftext|>", []string{"tokenize", "--special=none"}, "[15339,83739,8862,728,428,91,29]\n"},
		{"<|im_start|>x<|endoftext|>", []string{"tokenize", "--special", "<|im_start|>"}, "[100278,87,27,91,8862,728,428,91,29]\n"},
		{"today\n \n", []string{"tokenize"}, "[31213,27907]\n"},
	} {
		code, out, errs := runTok(t, c.stdin, c.args...)
		if code != 0 || out != c.want {
			t.Errorf("%v < %q: exit %d, out %q, err %q; want %q", c.args, c.stdin, code, out, errs, c.want)
		}
	}
	if code, _, errs := runTok(t, "x", "tokenize", "--special", "some"); code != 2 {
		t.Errorf("bad --special: exit %d (%s)", code, errs)
	}
	if code, _, _ := runTok(t, "x", "tokenize", "extra"); code != 2 {
		t.Errorf("positional argument: exit %d", code)
	}
}

// TestTokenizeJSONL runs the public encode fixture through --jsonl.
func TestTokenizeJSONL(t *testing.T) {
	f, err := os.Open("../../testdata/tokenizer/cl100k_cases.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var in, want strings.Builder
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 16<<20)
	n := 0
	for sc.Scan() {
		var c struct {
			Text string `json:"text"`
			IDs  []int  `json:"ids"`
		}
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			t.Fatal(err)
		}
		text, _ := json.Marshal(map[string]any{"text": c.Text, "other": 1})
		in.Write(append(text, '\n'))
		ids, _ := json.Marshal(c.IDs)
		if c.IDs == nil {
			ids = []byte("[]")
		}
		fmt.Fprintf(&want, "{\"ids\":%s}\n", ids)
		n++
	}
	// Many batches: repeat the cases.
	input := strings.Repeat(in.String(), 5)
	expect := strings.Repeat(want.String(), 5)
	code, out, errs := runTok(t, input, "tokenize", "--jsonl")
	if code != 0 || out != expect {
		gl, wl := strings.Split(out, "\n"), strings.Split(expect, "\n")
		for i := range min(len(gl), len(wl)) {
			if gl[i] != wl[i] {
				t.Fatalf("exit %d (%s); line %d: got %s want %s", code, errs, i+1, gl[i], wl[i])
			}
		}
		t.Fatalf("exit %d (%s): %d lines, want %d", code, errs, len(gl), len(wl))
	}
	// No trailing newline on the last line; --special all.
	code, out, _ = runTok(t, `{"text":"a<|endoftext|>"}`+"\n"+`{"text":""}`, "tokenize", "--jsonl", "--special", "all")
	if code != 0 || out != "{\"ids\":[64,100257]}\n{\"ids\":[]}\n" {
		t.Errorf("exit %d, out %q", code, out)
	}
	for _, bad := range []string{"{\"text\":\"a\"}\nnot json\n", "{\"text\":\"a\"}\n{\"txt\":\"b\"}\n", "{\"text\":1}\n", "\n"} {
		code, _, errs := runTok(t, bad, "tokenize", "--jsonl")
		if code != 1 || !strings.Contains(errs, "line") {
			t.Errorf("%q: exit %d, stderr %q", bad, code, errs)
		}
	}
}

func TestDetokenizeCommand(t *testing.T) {
	code, out, errs := runTok(t, "[15339, 220, 100257]\n", "detokenize")
	if code != 0 || out != "hello <|endoftext|>" {
		t.Errorf("exit %d, out %q, err %q", code, out, errs)
	}
	// Raw bytes are written as they are, even when not UTF-8.
	if code, out, _ := runTok(t, "[62085]", "detokenize"); code != 0 || out != " \xec\x8b\xa4\xed" {
		t.Errorf("exit %d, out %q", code, out)
	}
	for _, bad := range []string{"[100256]", "[-1]", "[1.5]", "{}", "[1,", "[100352]"} {
		if code, out, _ := runTok(t, bad, "detokenize"); code != 1 || out != "" {
			t.Errorf("%s: exit %d, out %q", bad, code, out)
		}
	}
	// Round trip through both commands, including invalid UTF-8 (replaced by U+FFFD).
	for _, text := range []string{"héllo\n\tworld 👍 <|im_end|>", "a\xffb"} {
		_, ids, _ := runTok(t, text, "tokenize", "--special", "all")
		_, back, _ := runTok(t, ids, "detokenize")
		if want := strings.ToValidUTF8(text, "\uFFFD"); back != want {
			t.Errorf("round trip %q -> %s -> %q", text, ids, back)
		}
	}
}
