// Package serve is the OpenAI-compatible HTTP API in front of an engine.Engine:
// GET /v1/models, POST /v1/chat/completions (DBRX chat template), POST
// /v1/completions, GET /health and GET /metrics (Prometheus).
//
// Requests and responses follow OpenAI's shapes, so the official SDKs work
// unchanged: usage and finish_reason, server-sent-event streaming with
// stream_options.include_usage, logprobs, n choices, stop sequences (matched across
// token boundaries by the engine, never emitted) and OpenAI-shaped errors that name
// the offending parameter. Unknown fields are ignored. Extensions: top_k, min_p,
// repetition_penalty, ignore_eos.
//
// Operation: optional API keys on /v1/* (Bearer, constant-time comparison; /health
// and /metrics stay open for probes and scrapers, so expose them only to the
// operator's network), a maximum body
// size, per-write deadlines, 429 when the engine's queue is full, cancellation of a
// sequence when its client disconnects, 503 while loading or draining, and one
// log/slog line per request (id, tokens, latency; never prompt text).
package serve

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/dbrx-engine/dbrx/engine"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Config configures a Server. Zero fields take the defaults of DefaultConfig.
type Config struct {
	// ModelName is the id served under /v1/models and required in requests' model.
	ModelName string
	// APIKeys, if non-empty, are the accepted bearer tokens for /v1/*.
	APIKeys []string
	// MaxBodyBytes bounds a request body (413 beyond).
	MaxBodyBytes int64
	// WriteTimeout bounds each write to the client (a response body, or one
	// streamed chunk); a client that stops reading is dropped and its sequence freed.
	WriteTimeout time.Duration
	// MaxN bounds the n request field.
	MaxN int
	// DefaultCompletionMaxTokens applies to /v1/completions without max_tokens
	// (OpenAI: 16). Chat completions default to the rest of the context.
	DefaultCompletionMaxTokens int
	// Template renders chat messages to prompt ids (nil: DBRXTemplate over the
	// engine's tokenizer).
	Template TemplateFunc
	// Logger receives one line per request (nil: discarded).
	Logger *slog.Logger
	// Created is the "created" time of the model object (zero: server start).
	Created time.Time
}

// DefaultConfig returns the defaults: model name "dbrx", 4 MiB bodies, 60 s write
// timeout, n <= 16, completions default to 16 tokens.
func DefaultConfig() Config {
	return Config{ModelName: "dbrx", MaxBodyBytes: 4 << 20, WriteTimeout: 60 * time.Second, MaxN: 16,
		DefaultCompletionMaxTokens: 16}
}

// Validate reports invalid fields.
func (c Config) Validate() error {
	var errs []error
	if c.MaxBodyBytes < 0 || c.WriteTimeout < 0 || c.MaxN < 0 || c.DefaultCompletionMaxTokens < 0 {
		errs = append(errs, errors.New("serve: negative limit in Config"))
	}
	for i, k := range c.APIKeys {
		if k == "" || strings.TrimSpace(k) != k {
			errs = append(errs, fmt.Errorf("serve: API key %d is empty or has surrounding spaces", i))
		}
	}
	return errors.Join(errs...)
}

// Server is the HTTP handler. Create it with New, attach the engine with SetEngine
// once the model is loaded (until then /health and the API answer 503).
type Server struct {
	cfg      Config
	log      *slog.Logger
	keys     [][32]byte // sha256 of each API key
	eng      atomic.Pointer[engine.Engine]
	tmpl     atomic.Pointer[TemplateFunc]
	draining atomic.Bool
	m        *metrics
	mux      *http.ServeMux
}

// New returns a Server; cfg's zero fields take defaults.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	d := DefaultConfig()
	if cfg.ModelName == "" {
		cfg.ModelName = d.ModelName
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = d.MaxBodyBytes
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = d.WriteTimeout
	}
	if cfg.MaxN == 0 {
		cfg.MaxN = d.MaxN
	}
	if cfg.DefaultCompletionMaxTokens == 0 {
		cfg.DefaultCompletionMaxTokens = d.DefaultCompletionMaxTokens
	}
	if cfg.Created.IsZero() {
		cfg.Created = time.Now()
	}
	s := &Server{cfg: cfg, log: cfg.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	for _, k := range cfg.APIKeys {
		s.keys = append(s.keys, sha256.Sum256([]byte(k)))
	}
	s.m = newMetrics(s)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", s.health)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /v1/models", s.api("models", s.listModels))
	mux.HandleFunc("GET /v1/models/{id}", s.api("models", s.getModel))
	mux.HandleFunc("POST /v1/chat/completions", s.api("chat", s.chatCompletions))
	mux.HandleFunc("POST /v1/completions", s.api("completions", s.completions))
	mux.HandleFunc("/", s.api("other", func(w http.ResponseWriter, r *http.Request, rl *reqLog) *APIError {
		return &APIError{Status: http.StatusNotFound, Type: "invalid_request_error",
			Message: fmt.Sprintf("Invalid URL (%s %s)", r.Method, r.URL.Path)}
	}))
	s.mux = mux
	if cfg.Template != nil {
		t := cfg.Template
		s.tmpl.Store(&t)
	}
	return s, nil
}

// SetEngine attaches the engine: from then on /health reports ready.
func (s *Server) SetEngine(e *engine.Engine) {
	if s.tmpl.Load() == nil && e.Tokenizer() != nil {
		t := DBRXTemplate(e.Tokenizer())
		s.tmpl.Store(&t)
	}
	s.eng.Store(e)
}

// SetDraining makes /health report 503 and new API requests fail with 503 while
// in-flight requests finish (graceful shutdown).
func (s *Server) SetDraining() { s.draining.Store(true) }

func (s *Server) engine() *engine.Engine { return s.eng.Load() }

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	switch {
	case s.draining.Load():
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, `{"status":"draining"}`+"\n")
	case s.engine() == nil:
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, `{"status":"loading"}`+"\n")
	default:
		io.WriteString(w, `{"status":"ok"}`+"\n")
	}
}

// reqLog collects what the per-request log line reports.
type reqLog struct {
	id                             string
	promptTokens, completionTokens int
	cachedTokens, n                int
	stream                         bool
	ttft                           time.Duration
	finish                         string
	status                         int
	wroteHeader                    bool
}

type statusWriter struct {
	http.ResponseWriter
	rl *reqLog
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.rl.wroteHeader {
		w.rl.status, w.rl.wroteHeader = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if !w.rl.wroteHeader {
		w.rl.status, w.rl.wroteHeader = http.StatusOK, true
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// api wraps an API handler with authentication, readiness, the body limit, request
// ids, metrics and the request log line.
func (s *Server) api(endpoint string, h func(http.ResponseWriter, *http.Request, *reqLog) *APIError) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rl := &reqLog{id: newID(""), n: 1}
		sw := &statusWriter{ResponseWriter: w, rl: rl}
		w.Header().Set("X-Request-Id", rl.id)
		r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
		var apiErr *APIError
		switch {
		case !s.authorized(r):
			apiErr = &APIError{Status: http.StatusUnauthorized, Type: "invalid_request_error", Code: strp("invalid_api_key"),
				Message: "Incorrect API key provided. You can pass it as 'Authorization: Bearer KEY'."}
		case s.draining.Load():
			apiErr = unavailable("The server is shutting down.")
		case s.engine() == nil:
			apiErr = unavailable("The model is still loading. Please retry shortly.")
		default:
			apiErr = h(sw, r, rl)
		}
		if apiErr != nil {
			if rl.wroteHeader { // mid-stream: report in-band
				writeSSEError(sw, apiErr)
			} else {
				writeError(sw, apiErr)
			}
			s.m.errors.WithLabelValues(endpoint, apiErr.Type).Inc()
		}
		lat := time.Since(start)
		s.m.requests.WithLabelValues(endpoint, fmt.Sprint(rl.status)).Inc()
		s.m.duration.WithLabelValues(endpoint).Observe(lat.Seconds())
		attrs := []any{"id", rl.id, "method", r.Method, "path", r.URL.Path, "status", rl.status,
			"latency_ms", lat.Milliseconds()}
		if endpoint == "chat" || endpoint == "completions" {
			attrs = append(attrs, "prompt_tokens", rl.promptTokens, "completion_tokens", rl.completionTokens,
				"cached_tokens", rl.cachedTokens, "n", rl.n, "stream", rl.stream, "ttft_ms", rl.ttft.Milliseconds())
			if rl.finish != "" {
				attrs = append(attrs, "finish", rl.finish)
			}
		}
		if apiErr != nil {
			attrs = append(attrs, "error", apiErr.Message)
		}
		s.log.Info("request", attrs...)
	}
}

// authorized checks the bearer token against every key in constant time.
func (s *Server) authorized(r *http.Request) bool {
	if len(s.keys) == 0 {
		return true
	}
	h := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok {
		return false
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	match := 0
	for i := range s.keys {
		match |= subtle.ConstantTimeCompare(sum[:], s.keys[i][:])
	}
	return match == 1
}

type modelObject struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

func (s *Server) model() modelObject {
	return modelObject{ID: s.cfg.ModelName, Object: "model", Created: s.cfg.Created.Unix(), OwnedBy: "dbrx"}
}

func (s *Server) listModels(w http.ResponseWriter, r *http.Request, rl *reqLog) *APIError {
	return s.writeJSON(w, map[string]any{"object": "list", "data": []modelObject{s.model()}})
}

func (s *Server) getModel(w http.ResponseWriter, r *http.Request, rl *reqLog) *APIError {
	if id := r.PathValue("id"); id != s.cfg.ModelName {
		return modelNotFound(id)
	}
	return s.writeJSON(w, s.model())
}

func modelNotFound(id string) *APIError {
	return &APIError{Status: http.StatusNotFound, Type: "invalid_request_error", Param: strp("model"), Code: strp("model_not_found"),
		Message: fmt.Sprintf("The model `%s` does not exist or you do not have access to it.", id)}
}

// writeJSON writes v as the 200 response under the write deadline.
func (s *Server) writeJSON(w http.ResponseWriter, v any) *APIError {
	b, err := json.Marshal(v)
	if err != nil {
		return &APIError{Status: http.StatusInternalServerError, Type: "server_error", Message: "response encoding failed"}
	}
	http.NewResponseController(w).SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
	w.Header().Set("Content-Type", "application/json")
	w.Write(append(b, '\n'))
	return nil
}

// readBody reads the (size-limited) request body.
func readBody(r *http.Request) ([]byte, *APIError) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, fromJSONError(err)
		}
		return nil, invalid("", "", "Could not read the request body: %v", err)
	}
	return b, nil
}

// newID returns prefix + 24 random hex digits.
func newID(prefix string) string {
	var b [12]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}
