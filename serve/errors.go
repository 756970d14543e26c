package serve

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/dbrx-engine/dbrx/engine"
	"github.com/dbrx-engine/dbrx/sample"
)

// APIError is an OpenAI-shaped error: the body is {"error": {...}} with this
// object, and Status is the HTTP status.
type APIError struct {
	Status  int     `json:"-"`
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

func (e *APIError) Error() string { return e.Message }

func strp(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// invalid returns a 400 invalid_request_error naming param.
func invalid(param, code, format string, args ...any) *APIError {
	return &APIError{Status: http.StatusBadRequest, Message: fmt.Sprintf(format, args...),
		Type: "invalid_request_error", Param: strp(param), Code: strp(code)}
}

func writeError(w http.ResponseWriter, e *APIError) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.Status)
	b, _ := json.Marshal(map[string]*APIError{"error": e})
	w.Write(append(b, '\n'))
}

// fromJSONError maps an encoding/json error to a 400 naming the offending field.
func fromJSONError(err error) *APIError {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		param := strings.TrimPrefix(te.Field, "params.")
		if param == "" {
			return invalid("", "invalid_type", "Invalid request body: expected a JSON object, got %s.", te.Value)
		}
		return invalid(param, "invalid_type", "Invalid type for '%s': expected %s, but got %s.", param, jsonKind(te.Type.Kind().String()), te.Value)
	}
	var fe *fieldError
	if errors.As(err, &fe) {
		return invalid(fe.param, "invalid_type", "Invalid type for '%s': %s", fe.param, fe.msg)
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return &APIError{Status: http.StatusRequestEntityTooLarge, Type: "invalid_request_error",
			Message: fmt.Sprintf("Request body too large: the limit is %d bytes.", mbe.Limit)}
	}
	return invalid("", "invalid_json", "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload.)")
}

func jsonKind(k string) string {
	switch {
	case strings.HasPrefix(k, "int"), strings.HasPrefix(k, "uint"):
		return "an integer"
	case strings.HasPrefix(k, "float"):
		return "a number"
	case k == "string":
		return "a string"
	case k == "bool":
		return "a boolean"
	case k == "slice":
		return "an array"
	case k == "struct", k == "map":
		return "an object"
	}
	return k
}

// fieldError is a polymorphic field (stop, prompt, content) of the wrong shape.
type fieldError struct {
	param, msg string
}

func (e *fieldError) Error() string { return e.param + ": " + e.msg }

// fromEngineError maps a Submit error to an OpenAI error. promptParam names the
// request field holding the prompt ("messages" or "prompt").
func fromEngineError(err error, promptParam string) *APIError {
	var cle *engine.ContextLengthError
	var ce *sample.ConfigError
	switch {
	case errors.As(err, &cle):
		if cle.MaxNewTokens > 0 {
			return invalid(promptParam, "context_length_exceeded",
				"This model's maximum context length is %d tokens. However, you requested %d tokens (%d in the %s, %d in the completion). Please reduce the length of the %s or completion.",
				cle.Context, cle.PromptTokens+cle.MaxNewTokens, cle.PromptTokens, promptParam, cle.MaxNewTokens, promptParam)
		}
		return invalid(promptParam, "context_length_exceeded",
			"This model's maximum context length is %d tokens. However, your %s resulted in %d tokens. Please reduce the length of the %s.",
			cle.Context, promptParam, cle.PromptTokens, promptParam)
	case errors.As(err, &ce):
		return invalid(ce.Field, "invalid_value", "Invalid '%s': %v, want %s.", ce.Field, ce.Value, ce.Want)
	case errors.Is(err, engine.ErrEmptyPrompt):
		return invalid(promptParam, "invalid_value", "Invalid '%s': the prompt is empty.", promptParam)
	case errors.Is(err, engine.ErrTokenRange):
		return invalid(promptParam, "invalid_value", "Invalid '%s': %v", promptParam, err)
	case errors.Is(err, engine.ErrQueueFull):
		return &APIError{Status: http.StatusTooManyRequests, Type: "requests", Code: strp("rate_limit_exceeded"),
			Message: "The server is at capacity: too many requests are queued. Please retry after a short wait."}
	case errors.Is(err, engine.ErrClosed):
		return unavailable("The server is shutting down.")
	case errors.Is(err, engine.ErrBadRequest), errors.Is(err, engine.ErrNoTokenizer):
		return invalid("", "invalid_value", "%v", err)
	}
	return &APIError{Status: http.StatusInternalServerError, Type: "server_error",
		Message: "The server had an error while processing your request."}
}

func unavailable(msg string) *APIError {
	return &APIError{Status: http.StatusServiceUnavailable, Type: "server_error", Message: msg}
}
