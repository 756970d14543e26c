package serve

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/dbrx-engine/dbrx/engine"
	"github.com/dbrx-engine/dbrx/tokenizer"
)

const fingerprint = "fp_dbrx_go"

func (s *Server) chatCompletions(w http.ResponseWriter, r *http.Request, rl *reqLog) *APIError {
	body, aerr := readBody(r)
	if aerr != nil {
		return aerr
	}
	g, prompts, aerr := s.parseChat(body)
	if aerr != nil {
		return aerr
	}
	return s.generate(w, r, rl, true, g, prompts, "messages")
}

// parseChat decodes and validates a chat completion request and renders its prompt.
func (s *Server) parseChat(body []byte) (gen, []prompt, *APIError) {
	g, msgs, aerr := s.parseChatRequest(body)
	if aerr != nil {
		return g, nil, aerr
	}
	tmpl := s.tmpl.Load()
	if tmpl == nil {
		return g, nil, &APIError{Status: http.StatusInternalServerError, Type: "server_error", Message: "The server has no chat template (no tokenizer)."}
	}
	ids, err := (*tmpl)(msgs)
	if err != nil {
		return g, nil, invalid("messages", "invalid_value", "Invalid 'messages': %v", err)
	}
	if len(ids) == 0 { // only a system message: the template renders nothing
		return g, nil, invalid("messages", "invalid_value", "Invalid 'messages': the conversation needs a message besides the system message.")
	}
	return g, []prompt{{ids: ids}}, nil
}

// parseChatRequest decodes and validates the fields of a chat completion request.
func (s *Server) parseChatRequest(body []byte) (gen, []Message, *APIError) {
	var req chatRequest
	if aerr := decodeJSON(body, &req); aerr != nil {
		return gen{}, nil, aerr
	}
	maxTok, maxParam := req.MaxTokens, "max_tokens"
	if req.MaxCompletionTokens != nil {
		maxTok, maxParam = req.MaxCompletionTokens, "max_completion_tokens"
	}
	g, aerr := req.parse(s.cfg.MaxN, maxTok, maxParam, 0)
	if aerr != nil {
		return g, nil, aerr
	}
	if g.model != s.cfg.ModelName {
		return g, nil, modelNotFound(g.model)
	}
	g.logprobs = req.Logprobs != nil && *req.Logprobs
	if req.TopLogprobs != nil {
		top := *req.TopLogprobs
		if top < 0 || top > 20 {
			return g, nil, invalid("top_logprobs", "invalid_value", "Invalid 'top_logprobs': %d, want an integer in [0, 20].", top)
		}
		if top > 0 && !g.logprobs {
			return g, nil, invalid("top_logprobs", "invalid_value", "Invalid 'top_logprobs': 'logprobs' must be set to true if 'top_logprobs' is used.")
		}
		g.sampling.LogProbs = int(top)
	}
	if aerr := validateSampling(g.sampling); aerr != nil {
		return g, nil, aerr
	}
	if len(req.Messages) == 0 {
		return g, nil, invalid("messages", "empty_array", "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.")
	}
	msgs := make([]Message, len(req.Messages))
	for i, m := range req.Messages {
		if m.Role == nil {
			return g, nil, invalid(fmt.Sprintf("messages[%d].role", i), "missing_required_parameter", "Missing required parameter: 'messages[%d].role'.", i)
		}
		role := *m.Role
		switch role {
		case "system", "user", "assistant":
		case "developer":
			role = "system"
		default:
			return g, nil, invalid(fmt.Sprintf("messages[%d].role", i), "invalid_value", "Invalid value: '%s'. Supported values are: 'system', 'developer', 'user' and 'assistant'.", role)
		}
		content, aerr := chatContent(m.Content, i)
		if aerr != nil {
			return g, nil, aerr
		}
		msgs[i] = Message{Role: role, Content: content}
	}
	return g, msgs, nil
}

func (s *Server) completions(w http.ResponseWriter, r *http.Request, rl *reqLog) *APIError {
	body, aerr := readBody(r)
	if aerr != nil {
		return aerr
	}
	g, prompts, aerr := s.parseCompletion(body, s.engine().Tokenizer())
	if aerr != nil {
		return aerr
	}
	return s.generate(w, r, rl, false, g, prompts, "prompt")
}

// parseCompletion decodes and validates a completion request and encodes its prompts.
func (s *Server) parseCompletion(body []byte, tok *tokenizer.Tokenizer) (gen, []prompt, *APIError) {
	var req completionRequest
	if aerr := decodeJSON(body, &req); aerr != nil {
		return gen{}, nil, aerr
	}
	g, aerr := req.parse(s.cfg.MaxN, req.MaxTokens, "max_tokens", s.cfg.DefaultCompletionMaxTokens)
	if aerr != nil {
		return g, nil, aerr
	}
	if g.model != s.cfg.ModelName {
		return g, nil, modelNotFound(g.model)
	}
	if req.Logprobs != nil {
		if *req.Logprobs < 0 || *req.Logprobs > 5 {
			return g, nil, invalid("logprobs", "invalid_value", "Invalid 'logprobs': %d, want an integer in [0, 5].", *req.Logprobs)
		}
		g.logprobs = true
		g.sampling.LogProbs = int(*req.Logprobs)
	}
	if aerr := validateSampling(g.sampling); aerr != nil {
		return g, nil, aerr
	}
	prompts, aerr := parsePrompt(req.Prompt, tok)
	if aerr != nil {
		return g, nil, aerr
	}
	if req.Echo != nil && *req.Echo {
		for i := range prompts {
			prompts[i].echo = true
		}
	}
	return g, prompts, nil
}

// prompt is one prompt of a request.
type prompt struct {
	ids  []int
	text string // for echo
	echo bool
}

// parsePrompt accepts a string, an array of strings, an array of token ids or an
// array of arrays of ids. Text is encoded with the special tokens recognised, as
// the DBRX tokenizer does; an empty text is <|endoftext|>.
func parsePrompt(raw json.RawMessage, tok *tokenizer.Tokenizer) ([]prompt, *APIError) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, invalid("prompt", "missing_required_parameter", "Missing required parameter: 'prompt'.")
	}
	text := func(s string) (prompt, *APIError) {
		if tok == nil {
			return prompt{}, invalid("prompt", "invalid_value", "This server has no tokenizer: send the prompt as token ids.")
		}
		ids := tok.Encode(s, tokenizer.AllowAll)
		if len(ids) == 0 {
			ids = []int{tokenizer.EndOfText}
		}
		return prompt{ids: ids, text: s}, nil
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		p, aerr := text(one)
		return []prompt{p}, aerr
	}
	var strs []string
	if json.Unmarshal(raw, &strs) == nil && len(strs) > 0 {
		out := make([]prompt, len(strs))
		for i, s := range strs {
			var aerr *APIError
			if out[i], aerr = text(s); aerr != nil {
				return nil, aerr
			}
		}
		return out, nil
	}
	var ids []int
	if json.Unmarshal(raw, &ids) == nil && len(ids) > 0 {
		return []prompt{{ids: ids}}, nil
	}
	var idss [][]int
	if json.Unmarshal(raw, &idss) == nil && len(idss) > 0 {
		out := make([]prompt, len(idss))
		for i, p := range idss {
			if len(p) == 0 {
				return nil, invalid("prompt", "invalid_value", "Invalid 'prompt': prompt %d is empty.", i)
			}
			out[i] = prompt{ids: p}
		}
		return out, nil
	}
	return nil, invalid("prompt", "invalid_type", "Invalid type for 'prompt': expected a non-empty string, array of strings, array of token ids or array of arrays of token ids.")
}

// Response shapes.

type usage struct {
	PromptTokens        int           `json:"prompt_tokens"`
	CompletionTokens    int           `json:"completion_tokens"`
	TotalTokens         int           `json:"total_tokens"`
	PromptTokensDetails *promptDetail `json:"prompt_tokens_details,omitempty"`
}

type promptDetail struct {
	CachedTokens int `json:"cached_tokens"`
}

type topLogprob struct {
	Token   string  `json:"token"`
	Logprob float32 `json:"logprob"`
	Bytes   []int   `json:"bytes"`
}

type tokenLogprob struct {
	topLogprob
	TopLogprobs []topLogprob `json:"top_logprobs"`
}

type chatLogprobs struct {
	Content []tokenLogprob `json:"content"`
	Refusal []tokenLogprob `json:"refusal"`
}

type completionLogprobs struct {
	Tokens        []string             `json:"tokens"`
	TokenLogprobs []float32            `json:"token_logprobs"`
	TopLogprobs   []map[string]float32 `json:"top_logprobs"`
	TextOffset    []int                `json:"text_offset"`
}

type chatMessage struct {
	Role    string  `json:"role"`
	Content string  `json:"content"`
	Refusal *string `json:"refusal"`
}

type chatChoice struct {
	Index        int           `json:"index"`
	Message      chatMessage   `json:"message"`
	Logprobs     *chatLogprobs `json:"logprobs"`
	FinishReason string        `json:"finish_reason"`
}

type completionChoice struct {
	Index        int                 `json:"index"`
	Text         string              `json:"text"`
	Logprobs     *completionLogprobs `json:"logprobs"`
	FinishReason *string             `json:"finish_reason"`
}

type delta struct {
	Role    string  `json:"role,omitempty"`
	Content *string `json:"content,omitempty"`
}

type chunkChoice struct {
	Index        int           `json:"index"`
	Delta        delta         `json:"delta"`
	Logprobs     *chatLogprobs `json:"logprobs"`
	FinishReason *string       `json:"finish_reason"`
}

type response struct {
	ID                string `json:"id"`
	Object            string `json:"object"`
	Created           int64  `json:"created"`
	Model             string `json:"model"`
	SystemFingerprint string `json:"system_fingerprint"`
	Choices           any    `json:"choices"`
	Usage             any    `json:"usage,omitempty"`
}

// choice is the state of one generated choice.
type choice struct {
	prompt     int // index into prompts
	text       strings.Builder
	chatLP     []tokenLogprob
	compLP     *completionLogprobs
	finish     string
	info       engine.Info
	count      int
	last       time.Time
	ended      bool
	textOffset int
}

type event struct {
	idx  int
	tok  engine.Token
	err  error // io.EOF at the end
	info engine.Info
}

// generate runs every (prompt, n) choice on the engine and writes the response,
// streamed or whole.
func (s *Server) generate(w http.ResponseWriter, r *http.Request, rl *reqLog, chat bool, g gen, prompts []prompt, promptParam string) *APIError {
	start := time.Now()
	e := s.engine()
	tok := e.Tokenizer()
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel() // ends every sequence still running when the handler returns
	rl.stream, rl.n = g.stream, len(prompts)*g.n

	streams := make([]*engine.Stream, 0, len(prompts)*g.n)
	choices := make([]*choice, 0, cap(streams))
	promptTokens := 0
	for pi, p := range prompts {
		promptTokens += len(p.ids)
		for j := 0; j < g.n; j++ {
			sc := g.sampling
			if g.seedSet {
				sc.Seed += uint64(j)
			} else if j > 0 {
				sc.Seed = sc.Seed*6364136223846793005 + 1442695040888963407
			}
			st, err := e.Submit(ctx, engine.Request{Prompt: p.ids, MaxNewTokens: g.maxTokens, Sampling: sc,
				Stop: g.stop, IgnoreEOS: g.ignoreEOS, NoLogProb: !g.logprobs})
			if err != nil {
				return fromEngineError(err, promptParam)
			}
			streams = append(streams, st)
			c := &choice{prompt: pi}
			if !chat && g.logprobs {
				c.compLP = &completionLogprobs{Tokens: []string{}, TokenLogprobs: []float32{}, TopLogprobs: []map[string]float32{}, TextOffset: []int{}}
			}
			choices = append(choices, c)
		}
	}
	rl.promptTokens = promptTokens
	s.m.promptTokens.Add(float64(promptTokens))

	events := make(chan event, 64)
	var wg sync.WaitGroup
	for i, st := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				t, err := st.Next()
				ev := event{idx: i, tok: t, err: err}
				if err != nil {
					ev.info = st.Info()
				}
				select {
				case events <- ev:
				case <-ctx.Done():
					return
				}
				if err != nil {
					return
				}
			}
		}()
	}
	go func() { wg.Wait(); close(events) }()

	id := "chatcmpl-" + rl.id // the X-Request-Id and log id, prefixed as OpenAI does
	object := "chat.completion"
	if !chat {
		id, object = "cmpl-"+rl.id, "text_completion"
	}
	created := time.Now().Unix()
	rc := http.NewResponseController(w)
	sse := func(v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		rc.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
		if _, err := fmt.Fprintf(w, "data: %s\n\n", b); err != nil {
			return err
		}
		return rc.Flush()
	}
	var nullUsage any
	if g.includeUsage {
		nullUsage = json.RawMessage("null")
	}
	chunk := func(choicesJSON any) response {
		obj := object
		if chat {
			obj = "chat.completion.chunk"
		}
		return response{ID: id, Object: obj, Created: created, Model: s.cfg.ModelName, SystemFingerprint: fingerprint,
			Choices: choicesJSON, Usage: nullUsage}
	}
	if g.stream {
		h := w.Header()
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-cache")
		h.Set("Connection", "keep-alive")
		h.Set("X-Accel-Buffering", "no")
		w.WriteHeader(http.StatusOK)
		for i, c := range choices {
			var err error
			if chat {
				empty := ""
				err = sse(chunk([]chunkChoice{{Index: i, Delta: delta{Role: "assistant", Content: &empty}}}))
			} else if p := prompts[c.prompt]; p.echo {
				err = sse(chunk([]completionChoice{{Index: i, Text: s.promptText(p, tok)}}))
			}
			if err != nil {
				return nil
			}
		}
	}

	remaining := len(choices)
	for ev := range events {
		c := choices[ev.idx]
		if ev.err != nil {
			c.info = ev.info
			if ev.err != io.EOF {
				if errors.Is(ev.err, context.Canceled) || errors.Is(ev.err, context.DeadlineExceeded) {
					rl.status = 499 // client closed the request
					return nil
				}
				return fromEngineError(ev.err, promptParam)
			}
			c.ended = true
			remaining--
			continue
		}
		now := time.Now()
		t := ev.tok
		c.count++
		s.m.generatedTokens.Inc()
		if c.count == 1 {
			ttft := now.Sub(start)
			s.m.ttft.Observe(ttft.Seconds())
			if rl.ttft == 0 {
				rl.ttft = ttft
			}
		} else {
			s.m.itl.Observe(now.Sub(c.last).Seconds())
		}
		c.last = now
		if t.Finish != "" {
			c.finish = string(t.Finish)
		}
		var lp *tokenLogprob
		if g.logprobs && t.Finish != engine.FinishStop {
			lp = s.logprob(t, tok)
			if chat {
				c.chatLP = append(c.chatLP, *lp)
			} else {
				c.compLP.Tokens = append(c.compLP.Tokens, lp.Token)
				c.compLP.TokenLogprobs = append(c.compLP.TokenLogprobs, lp.Logprob)
				top := make(map[string]float32, len(lp.TopLogprobs))
				for _, x := range lp.TopLogprobs {
					top[x.Token] = x.Logprob
				}
				c.compLP.TopLogprobs = append(c.compLP.TopLogprobs, top)
				c.compLP.TextOffset = append(c.compLP.TextOffset, c.textOffset)
				c.textOffset += len(lp.Token)
			}
		}
		if !g.stream {
			c.text.WriteString(t.Text)
			continue
		}
		if t.Text == "" && lp == nil && t.Finish == "" {
			continue
		}
		var err error
		var fin *string
		if t.Finish != "" {
			f := string(t.Finish)
			fin = &f
		}
		if chat {
			var d delta
			if t.Text != "" || lp != nil {
				text := t.Text
				d.Content = &text
			}
			cc := chunkChoice{Index: ev.idx, Delta: d}
			if lp != nil {
				cc.Logprobs = &chatLogprobs{Content: []tokenLogprob{*lp}, Refusal: nil}
			}
			if fin != nil && (d.Content != nil) {
				// Content and the finish go in separate chunks, as OpenAI sends them.
				if err = sse(chunk([]chunkChoice{cc})); err != nil {
					return nil
				}
				cc = chunkChoice{Index: ev.idx}
			}
			cc.FinishReason = fin
			err = sse(chunk([]chunkChoice{cc}))
		} else {
			cc := completionChoice{Index: ev.idx, Text: t.Text, FinishReason: fin}
			if lp != nil {
				cc.Logprobs = &completionLogprobs{Tokens: []string{lp.Token}, TokenLogprobs: []float32{lp.Logprob},
					TopLogprobs: []map[string]float32{c.compLP.TopLogprobs[len(c.compLP.TopLogprobs)-1]},
					TextOffset:  []int{c.compLP.TextOffset[len(c.compLP.TextOffset)-1]}}
			}
			err = sse(chunk([]completionChoice{cc}))
		}
		if err != nil {
			rl.status = 499
			return nil
		}
	}
	if remaining > 0 { // the request context ended first
		rl.status = 499
		return nil
	}

	u := usage{PromptTokens: promptTokens}
	cached := 0
	for _, c := range choices {
		u.CompletionTokens += c.info.CompletionTokens
		cached = max(cached, c.info.CachedTokens)
	}
	u.TotalTokens = u.PromptTokens + u.CompletionTokens
	u.PromptTokensDetails = &promptDetail{CachedTokens: cached}
	rl.completionTokens, rl.cachedTokens = u.CompletionTokens, cached
	s.m.cachedTokens.Add(float64(cached))
	if len(choices) > 0 {
		rl.finish = choices[0].finish
	}

	if g.stream {
		if g.includeUsage {
			r := chunk([]struct{}{})
			r.Usage = u
			if sse(r) != nil {
				return nil
			}
		}
		rc.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
		io.WriteString(w, "data: [DONE]\n\n")
		rc.Flush()
		return nil
	}
	resp := response{ID: id, Object: object, Created: created, Model: s.cfg.ModelName, SystemFingerprint: fingerprint, Usage: u}
	if chat {
		out := make([]chatChoice, len(choices))
		for i, c := range choices {
			out[i] = chatChoice{Index: i, Message: chatMessage{Role: "assistant", Content: c.text.String()}, FinishReason: c.finish}
			if g.logprobs {
				out[i].Logprobs = &chatLogprobs{Content: c.chatLP}
				if out[i].Logprobs.Content == nil {
					out[i].Logprobs.Content = []tokenLogprob{}
				}
			}
		}
		resp.Choices = out
	} else {
		out := make([]completionChoice, len(choices))
		for i, c := range choices {
			text := c.text.String()
			if p := prompts[c.prompt]; p.echo {
				text = s.promptText(p, tok) + text
			}
			fin := c.finish
			out[i] = completionChoice{Index: i, Text: text, Logprobs: c.compLP, FinishReason: &fin}
		}
		resp.Choices = out
	}
	return s.writeJSON(w, resp)
}

func (s *Server) promptText(p prompt, tok *tokenizer.Tokenizer) string {
	if p.text != "" || tok == nil {
		return p.text
	}
	t, _ := tok.DecodeString(p.ids)
	return t
}

// logprob renders a token's log-probability entry in OpenAI's shape.
func (s *Server) logprob(t engine.Token, tok *tokenizer.Tokenizer) *tokenLogprob {
	lp := &tokenLogprob{topLogprob: tokenEntry(t.ID, t.LogProb, tok), TopLogprobs: make([]topLogprob, 0, len(t.Top))}
	for _, x := range t.Top {
		lp.TopLogprobs = append(lp.TopLogprobs, tokenEntry(x.ID, x.LogProb, tok))
	}
	return lp
}

func tokenEntry(id int, logprob float32, tok *tokenizer.Tokenizer) topLogprob {
	e := topLogprob{Logprob: logprob, Bytes: []int{}}
	if tok == nil {
		e.Token = fmt.Sprintf("<%d>", id)
		return e
	}
	b, err := tok.TokenBytes(id)
	if err != nil {
		e.Token = fmt.Sprintf("<|id_%d|>", id)
		return e
	}
	e.Token = strings.ToValidUTF8(string(b), "\uFFFD")
	for _, c := range b {
		e.Bytes = append(e.Bytes, int(c))
	}
	return e
}

// writeSSEError reports an error inside an event stream that has already started.
func writeSSEError(w http.ResponseWriter, e *APIError) {
	b, _ := json.Marshal(map[string]*APIError{"error": e})
	fmt.Fprintf(w, "data: %s\n\n", b)
	http.NewResponseController(w).Flush()
}
