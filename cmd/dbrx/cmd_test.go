package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dbrx-engine/dbrx/internal/numtest"
)

func fixture(v string) string { return filepath.Join("..", "..", "testdata", "dbrx", v) }

// dbrxCmd runs the command in-process and returns stdout, stderr and the exit code.
func dbrxCmd(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, env{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb})
	return out.String(), errb.String(), code
}

type genCase struct {
	PromptIDs []int `json:"prompt_ids"`
	NewIDs    []int `json:"new_ids"`
}

func readCases(t *testing.T, v string) (cases []struct {
	Name     string                 `json:"name"`
	InputIDs [][]int                `json:"input_ids"`
	Logits   *struct{ File string } `json:"logits"`
}, gen []genCase) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixture(v), "cases.json"))
	if err != nil {
		t.Fatal(err)
	}
	var fc struct {
		Cases []struct {
			Name     string                 `json:"name"`
			InputIDs [][]int                `json:"input_ids"`
			Logits   *struct{ File string } `json:"logits"`
		} `json:"cases"`
		Generation []genCase `json:"generation"`
	}
	if err := json.Unmarshal(b, &fc); err != nil {
		t.Fatal(err)
	}
	return fc.Cases, fc.Generation
}

func joinIDs(ids []int) string {
	b, _ := json.Marshal(ids)
	return strings.Trim(string(b), "[]")
}

// TestLogitsCommand checks the exact file contract: raw little-endian float32 [T, V].
func TestLogitsCommand(t *testing.T) {
	for _, v := range []string{"A", "B"} {
		cases, _ := readCases(t, v)
		cs := cases[2] // len33
		out := filepath.Join(t.TempDir(), "logits.bin")
		if _, stderr, code := dbrxCmd(t, "", "logits", "--model", fixture(v), "--ids", joinIDs(cs.InputIDs[0]), "--out", out); code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		got, err := numtest.ReadF32(out)
		if err != nil {
			t.Fatal(err)
		}
		want, err := numtest.ReadF32(filepath.Join(fixture(v), cs.Logits.File))
		if err != nil {
			t.Fatal(err)
		}
		if d := numtest.Compare(got, want, 1e-4); d.Bad > 0 {
			t.Errorf("%s: %d logits off by > 1e-4 (max %.3g):%s", v, d.Bad, d.MaxAbs, d.Report)
		}
	}
}

// TestRunCommandIDs checks `dbrx run --format ids` prints the reference's greedy ids.
func TestRunCommandIDs(t *testing.T) {
	for _, v := range []string{"A", "D"} {
		_, gen := readCases(t, v)
		g := gen[1]
		stdout, stderr, code := dbrxCmd(t, "", "run", "--model", fixture(v), "--ids", joinIDs(g.PromptIDs),
			"--max-new-tokens", "16", "--temperature", "0", "--format", "ids")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		var got []int
		if err := json.Unmarshal([]byte(stdout), &got); err != nil {
			t.Fatalf("stdout %q is not a JSON array: %v", stdout, err)
		}
		if joinIDs(got) != joinIDs(g.NewIDs) {
			t.Errorf("%s: got %v, want %v", v, got, g.NewIDs)
		}
	}
}

func TestCommandErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"nope"}, 2, "unknown command"},
		{[]string{"logits", "--model", fixture("A"), "--ids", "1,x", "--out", "/dev/null"}, 2, "not an integer"},
		{[]string{"logits", "--model", fixture("A"), "--ids", "1,999", "--out", os.DevNull}, 1, "outside the vocabulary"},
		{[]string{"logits", "--model", "/nonexistent", "--ids", "1", "--out", os.DevNull}, 1, "nonexistent"},
		{[]string{"run", "--model", fixture("A"), "--ids", "1", "--temperature", "-1"}, 2, "temperature"},
		{[]string{"init", "--config", "/nonexistent.json", "--out", "x"}, 1, "nonexistent"},
	} {
		_, stderr, code := dbrxCmd(t, "", tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d containing %q", tc.args, code, stderr, tc.code, tc.want)
		}
	}
}

// TestInitLoads makes a random sharded-size-agnostic checkpoint and runs it.
func TestInitLoads(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "cfg.json")
	if err := os.WriteFile(cfg, []byte(`{"d_model": 32, "n_heads": 4, "n_layers": 2, "vocab_size": 100,
		"attn_config": {"kv_n_heads": 2, "clip_qkv": 8}, "ffn_config": {"ffn_hidden_size": 16, "moe_num_experts": 4, "moe_top_k": 2}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, dt := range []string{"bf16", "f32"} {
		out := filepath.Join(dir, dt)
		if _, stderr, code := dbrxCmd(t, "", "init", "--config", cfg, "--seed", "7", "--dtype", dt, "--out", out); code != 0 {
			t.Fatalf("init %s: exit %d: %s", dt, code, stderr)
		}
		stdout, stderr, code := dbrxCmd(t, "", "run", "--model", out, "--ids", "1,2,3", "--max-new-tokens", "4", "--temperature", "0", "--format", "ids")
		if code != 0 {
			t.Fatalf("run %s: exit %d: %s", dt, code, stderr)
		}
		var ids []int
		if err := json.Unmarshal([]byte(stdout), &ids); err != nil || len(ids) != 4 {
			t.Errorf("%s: run printed %q", dt, stdout)
		}
	}
}

// TestConvertToHF rewrites fixture B (bf16) as f32 and back to bf16: the bf16 round
// trip must reproduce the original tensors bit for bit, and the f32 copy the same logits.
func TestConvertToHF(t *testing.T) {
	dir := t.TempDir()
	f32Dir, bf16Dir := filepath.Join(dir, "f32"), filepath.Join(dir, "bf16")
	for _, c := range [][]string{
		{"convert", "--from", fixture("B"), "--to", f32Dir, "--type", "f32"},
		{"convert", "--from", f32Dir, "--to", bf16Dir, "--type", "bf16"},
	} {
		if _, stderr, code := dbrxCmd(t, "", c...); code != 0 {
			t.Fatalf("%v: exit %d: %s", c, code, stderr)
		}
	}
	orig, err := os.ReadFile(filepath.Join(fixture("B"), "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	again, err := os.ReadFile(filepath.Join(bf16Dir, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(orig, again) {
		t.Errorf("bf16 -> f32 -> bf16 changed model.safetensors (%d vs %d bytes)", len(orig), len(again))
	}
	if _, stderr, code := dbrxCmd(t, "", "convert", "--from", fixture("B"), "--to", filepath.Join(dir, "q"), "--type", "q8_0"); code != 2 || !strings.Contains(stderr, "gguf") {
		t.Errorf("quantized HF output: exit %d, %s", code, stderr)
	}
}
