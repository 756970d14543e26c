package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dbrx-engine/dbrx/chat"
	"github.com/dbrx-engine/dbrx/tokenizer"
)

// syncBuffer is a bytes.Buffer safe for the server's logger and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestServeCommand starts `dbrx serve` on a free port with a key file, checks
// readiness, auth and a completion, then cancels (SIGTERM) while a stream is in
// flight: the stream finishes and the command exits cleanly.
func TestServeCommand(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "keys")
	os.WriteFile(keyFile, []byte("# keys\nk1\n\nk2\n"), 0o600)
	var stderr syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- runServe(ctx, env{stdin: strings.NewReader(""), stdout: io.Discard, stderr: &stderr},
			[]string{"--model", fixture("C"), "--port", "0", "--api-key-file", keyFile, "--max-seqs", "4"})
	}()
	re := regexp.MustCompile(`addr=(http://[0-9.:]+)`)
	var base string
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m := re.FindStringSubmatch(stderr.String()); m != nil {
			base = m[1]
			if resp, err := http.Get(base + "/health"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					break
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("server not ready: %s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	post := func(key, body string) *http.Response {
		req, _ := http.NewRequest("POST", base+"/v1/completions", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	if resp := post("nope", `{}`); resp.StatusCode != 401 {
		t.Errorf("bad key: %d", resp.StatusCode)
	}
	resp := post("k2", `{"model":"C","prompt":"Hello","max_tokens":3}`)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"completion_tokens":3`) {
		t.Fatalf("completion: %d %s", resp.StatusCode, b)
	}
	// Drain: a stream in flight when the signal arrives runs to completion.
	stream := post("k1", `{"model":"C","prompt":"Hello","max_tokens":40,"stream":true,"ignore_eos":true}`)
	sc := bufio.NewScanner(stream.Body)
	if !sc.Scan() {
		t.Fatal("no first event")
	}
	cancel()
	last := ""
	for sc.Scan() {
		if l := sc.Text(); l != "" {
			last = l
		}
	}
	stream.Body.Close()
	if last != "data: [DONE]" {
		t.Errorf("stream ended with %q during drain", last)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not exit after cancellation")
	}
	logs := stderr.String()
	for _, want := range []string{"msg=ready", "msg=draining", "msg=stopped", "msg=request", "completion_tokens=3"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q", want)
		}
	}
	if strings.Contains(logs, "Hello") {
		t.Error("prompt text in the log")
	}
}

func TestServeFlagErrors(t *testing.T) {
	for _, args := range [][]string{
		{"serve", "--port", "-1"},
		{"serve", "--model", fixture("C"), "--port", "70000"},
		{"serve", "--model", fixture("C"), "--log-format", "xml"},
		{"serve", "--model", fixture("C"), "--max-seqs", "-1"},
		{"serve", "--model", fixture("C"), "extra"},
		{"bench-serve"},
		{"bench-serve", "--model", fixture("C"), "--streams", "1,x"},
		{"chat", "extra"},
		{"run", "--model", fixture("C"), "--chat", "--ids", "1"},
	} {
		if _, stderr, code := dbrxCmd(t, "", args...); code != 2 {
			t.Errorf("%v: exit %d (%s)", args, code, stderr)
		}
	}
}

func TestRunTextAndChat(t *testing.T) {
	out, stderr, code := dbrxCmd(t, "", "run", "--model", fixture("C"), "--max-new-tokens", "4", "--temperature", "0", "--format", "ids", "Hello world")
	if code != 0 || !strings.HasPrefix(out, "[") {
		t.Fatalf("run text: %d %q %s", code, out, stderr)
	}
	out, stderr, code = dbrxCmd(t, "", "run", "--model", fixture("C"), "--max-new-tokens", "4", "--temperature", "0", "--chat", "Hello world")
	if code != 0 || out == "" {
		t.Fatalf("run --chat: %d %q %s", code, out, stderr)
	}
	// Chat: two turns, a reset and exit; replies are streamed to stdout.
	out, stderr, code = dbrxCmd(t, "Hi\nAnd then?\n/reset\nAgain\n/exit\nignored\n", "chat", "--model", fixture("C"),
		"--max-new-tokens", "3", "--temperature", "0", "--system", "Be brief.")
	if code != 0 {
		t.Fatalf("chat: %d %s", code, stderr)
	}
	if n := strings.Count(out, "\n"); n != 3 {
		t.Errorf("chat printed %d replies: %q", n, out)
	}
	if !strings.Contains(stderr, "conversation cleared") {
		t.Errorf("no reset notice: %q", stderr)
	}
}

func TestFitConversation(t *testing.T) {
	tok := tokenizer.DBRX()
	sys := chat.Message{Role: "system", Content: "Be brief."}
	long := strings.Repeat("word ", 40)
	hist := []chat.Message{sys, {Role: "user", Content: long}, {Role: "assistant", Content: long}, {Role: "user", Content: "last"}}
	full := chat.Encode(tok, hist, chat.DefaultOptions())
	if ids, dropped := fitConversation(tok, hist, true, len(full)+10, 10); dropped != 0 || len(ids) != len(full) {
		t.Errorf("fits: dropped %d", dropped)
	}
	ids, dropped := fitConversation(tok, hist, true, len(full)-10, 10)
	if dropped == 0 || len(ids)+10 > len(full)-10 {
		t.Errorf("too long: dropped %d, %d ids", dropped, len(ids))
	}
	if ids, _ := fitConversation(tok, hist, true, 5, 10); ids != nil {
		t.Error("nothing fits, got a prompt")
	}
}
