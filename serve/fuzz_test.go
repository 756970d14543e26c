package serve

import (
	"testing"

	"github.com/dbrx-engine/dbrx/tokenizer"
)

// FuzzRequestDecoder: arbitrary bodies never panic; every rejection is a 4xx with a
// message, and every accepted request is within the documented ranges.
func FuzzRequestDecoder(f *testing.F) {
	for _, s := range []string{
		`{"model":"m","messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a"}]}],"stop":["x","y"],"n":2,"logprobs":true,"top_logprobs":3}`,
		`{"model":"m","messages":[{"role":"system","content":null}],"temperature":2,"top_p":0,"seed":-5,"stream":true,"stream_options":{"include_usage":true}}`,
		`{"model":"m","prompt":[[1,2],[3]],"max_tokens":4,"logprobs":5,"echo":true,"top_k":-1,"min_p":0.5,"repetition_penalty":1.1}`,
		`{"model":"m","prompt":"<|im_start|>x","stop":"\n"}`,
		`{"model":"m","prompt":["a",""],"max_completion_tokens":1e400}`,
		`{"model":1}`, `[]`, `{`, `null`, `{"model":"m","messages":[{"role":"user","content":[{"type":"image_url"}]}]}`,
	} {
		f.Add([]byte(s))
	}
	srv, err := New(Config{ModelName: "m"})
	if err != nil {
		f.Fatal(err)
	}
	tok := tokenizer.DBRX()
	tmpl := DBRXTemplate(tok)
	srv.tmpl.Store(&tmpl)
	check := func(t *testing.T, g gen, prompts []prompt, aerr *APIError) {
		if aerr != nil {
			if aerr.Status < 400 || aerr.Status >= 500 || aerr.Message == "" || aerr.Type == "" {
				t.Fatalf("bad error %+v", aerr)
			}
			return
		}
		if g.n < 1 || g.n > srv.cfg.MaxN || g.maxTokens < 0 || len(g.stop) > maxStops || len(prompts) == 0 {
			t.Fatalf("accepted out of range: %+v (%d prompts)", g, len(prompts))
		}
		if err := g.sampling.Validate(); err != nil {
			t.Fatalf("accepted invalid sampling: %v", err)
		}
		for _, p := range prompts {
			if len(p.ids) == 0 {
				t.Fatal("accepted an empty prompt")
			}
		}
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		g, prompts, aerr := srv.parseChat(body)
		check(t, g, prompts, aerr)
		g, prompts, aerr = srv.parseCompletion(body, tok)
		check(t, g, prompts, aerr)
	})
}
