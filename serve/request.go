package serve

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"

	"github.com/dbrx-engine/dbrx/sample"
)

// params are the request fields shared by /v1/chat/completions and /v1/completions.
// Pointers distinguish "absent or null" (the default) from a value. Unknown fields
// are ignored.
type params struct {
	Model             *string         `json:"model"`
	MaxTokens         *int64          `json:"max_tokens"`
	Temperature       *float64        `json:"temperature"`
	TopP              *float64        `json:"top_p"`
	Seed              *int64          `json:"seed"`
	Stop              json.RawMessage `json:"stop"` // string or array of strings
	N                 *int64          `json:"n"`
	PresencePenalty   *float64        `json:"presence_penalty"`
	FrequencyPenalty  *float64        `json:"frequency_penalty"`
	Stream            *bool           `json:"stream"`
	StreamOptions     *streamOptions  `json:"stream_options"`
	User              *string         `json:"user"`
	TopK              *int64          `json:"top_k"`              // extension
	MinP              *float64        `json:"min_p"`              // extension
	RepetitionPenalty *float64        `json:"repetition_penalty"` // extension
	IgnoreEOS         *bool           `json:"ignore_eos"`         // extension (benchmarks)
}

type streamOptions struct {
	IncludeUsage *bool `json:"include_usage"`
}

// chatRequest is the body of POST /v1/chat/completions.
type chatRequest struct {
	params
	Messages            []rawMessage `json:"messages"`
	MaxCompletionTokens *int64       `json:"max_completion_tokens"`
	Logprobs            *bool        `json:"logprobs"`
	TopLogprobs         *int64       `json:"top_logprobs"`
}

type rawMessage struct {
	Role    *string         `json:"role"`
	Content json.RawMessage `json:"content"`
}

// completionRequest is the body of POST /v1/completions.
type completionRequest struct {
	params
	Prompt   json.RawMessage `json:"prompt"` // string, [string], [int] or [[int]]
	Logprobs *int64          `json:"logprobs"`
	Echo     *bool           `json:"echo"`
}

// gen is a validated generation request (everything but the prompt).
type gen struct {
	model        string
	maxTokens    int // 0: up to the context
	sampling     sample.Config
	seedSet      bool
	stop         []string
	n            int
	stream       bool
	includeUsage bool
	logprobs     bool // report logprobs
	ignoreEOS    bool
}

// decodeJSON decodes a request body into dst, mapping failures to 400s.
func decodeJSON(body []byte, dst any) *APIError {
	body = bytes.TrimSpace(body)
	if len(body) == 0 || body[0] != '{' {
		return invalid("", "invalid_json", "We could not parse the JSON body of your request: expected a JSON object.")
	}
	if err := json.Unmarshal(body, dst); err != nil {
		return fromJSONError(err)
	}
	return nil
}

// maxStops is OpenAI's limit on stop sequences.
const maxStops = 4

// parse validates the shared fields. maxTokens is the resolved token limit field
// (max_completion_tokens or max_tokens) and its name; defMax applies when absent.
func (p *params) parse(maxN int, maxTokens *int64, maxParam string, defMax int) (gen, *APIError) {
	var g gen
	if p.Model == nil || *p.Model == "" {
		return g, invalid("model", "missing_required_parameter", "You must provide a model parameter.")
	}
	g.model = *p.Model
	g.maxTokens = defMax
	if maxTokens != nil {
		if *maxTokens < 1 {
			return g, invalid(maxParam, "integer_below_min_value", "Invalid '%s': integer below minimum value. Expected a value >= 1, but got %d instead.", maxParam, *maxTokens)
		}
		g.maxTokens = int(min(*maxTokens, 1<<30))
	}
	g.n = 1
	if p.N != nil {
		if *p.N < 1 || *p.N > int64(maxN) {
			return g, invalid("n", "invalid_value", "Invalid 'n': %d, want an integer in [1, %d].", *p.N, maxN)
		}
		g.n = int(*p.N)
	}
	stops, err := parseStop(p.Stop)
	if err != nil {
		return g, err
	}
	g.stop = stops
	g.stream = p.Stream != nil && *p.Stream
	if p.StreamOptions != nil {
		if !g.stream {
			return g, invalid("stream_options", "invalid_value", "The 'stream_options' parameter is only allowed when 'stream' is enabled.")
		}
		g.includeUsage = p.StreamOptions.IncludeUsage != nil && *p.StreamOptions.IncludeUsage
	}
	g.ignoreEOS = p.IgnoreEOS != nil && *p.IgnoreEOS

	c := sample.DefaultConfig()
	f32 := func(v *float64, dst *float32) {
		if v != nil {
			*dst = float32(*v)
		}
	}
	f32(p.Temperature, &c.Temperature)
	f32(p.TopP, &c.TopP)
	f32(p.PresencePenalty, &c.PresencePenalty)
	f32(p.FrequencyPenalty, &c.FrequencyPenalty)
	f32(p.MinP, &c.MinP)
	f32(p.RepetitionPenalty, &c.RepetitionPenalty)
	if p.RepetitionPenalty != nil && *p.RepetitionPenalty <= 0 {
		return g, invalid("repetition_penalty", "invalid_value", "Invalid 'repetition_penalty': %v, want > 0.", *p.RepetitionPenalty)
	}
	if p.TopK != nil {
		switch {
		case *p.TopK == -1: // vLLM's "off"
		case *p.TopK < 0 || *p.TopK > 1<<30:
			return g, invalid("top_k", "invalid_value", "Invalid 'top_k': %d, want >= 0 (0 or -1 = off).", *p.TopK)
		default:
			c.TopK = int(*p.TopK)
		}
	}
	if p.Seed != nil {
		c.Seed = uint64(*p.Seed)
		g.seedSet = true
	} else {
		c.Seed = rand.Uint64()
	}
	g.sampling = c
	return g, nil
}

// validateSampling runs sample.Config.Validate and maps its first error.
func validateSampling(c sample.Config) *APIError {
	if err := c.Validate(); err != nil {
		var ce *sample.ConfigError
		if errors.As(err, &ce) {
			return invalid(ce.Field, "invalid_value", "Invalid '%s': %v, want %s.", ce.Field, ce.Value, ce.Want)
		}
		return invalid("", "invalid_value", "%v", err)
	}
	return nil
}

func parseStop(raw json.RawMessage) ([]string, *APIError) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		if one == "" {
			return nil, nil
		}
		return []string{one}, nil
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err != nil {
		return nil, invalid("stop", "invalid_type", "Invalid type for 'stop': expected a string or an array of strings.")
	}
	if len(many) > maxStops {
		return nil, invalid("stop", "array_above_max_length", "Invalid 'stop': array too long. Expected an array with maximum length %d, but got an array with length %d instead.", maxStops, len(many))
	}
	out := many[:0]
	for _, s := range many {
		if s != "" {
			out = append(out, s)
		}
	}
	return out, nil
}

// chatContent extracts the text of a message's content: a string, null, or an
// array of {"type": "text", "text": ...} parts.
func chatContent(raw json.RawMessage, i int) (string, *APIError) {
	raw = bytes.TrimSpace(raw)
	param := fmt.Sprintf("messages[%d].content", i)
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var parts []struct {
		Type *string `json:"type"`
		Text *string `json:"text"`
	}
	if err := json.Unmarshal(raw, &parts); err != nil {
		return "", invalid(param, "invalid_type", "Invalid type for '%s': expected a string or an array of content parts.", param)
	}
	var out []byte
	for j, p := range parts {
		if p.Type == nil || *p.Type != "text" || p.Text == nil {
			t := "null"
			if p.Type != nil {
				t = *p.Type
			}
			return "", invalid(fmt.Sprintf("%s[%d].type", param, j), "invalid_value", "Invalid content part type %q in '%s[%d]': only text parts are supported.", t, param, j)
		}
		out = append(out, *p.Text...)
	}
	return string(out), nil
}
