package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/dbrx-engine/dbrx/engine"
	"github.com/dbrx-engine/dbrx/internal/parallel"
	"github.com/dbrx-engine/dbrx/model/dbrx"
	"github.com/dbrx-engine/dbrx/serve"
	"github.com/dbrx-engine/dbrx/tokenizer"
)

func init() {
	register(command{name: "serve", summary: "serve a model over the OpenAI-compatible HTTP API", run: runServe})
}

// engineFlags are the continuous-batching knobs shared by serve and bench-serve.
type engineFlags struct {
	maxSeqs, maxQueue, stepTokens, chunk, context, kvTokens, prefixTokens *int
}

func addEngineFlags(fs interface {
	Int(string, int, string) *int
}) engineFlags {
	d := engine.DefaultConfig()
	return engineFlags{
		maxSeqs:      fs.Int("max-seqs", d.MaxSeqs, "sequences batched together at most"),
		maxQueue:     fs.Int("max-queue", d.MaxQueue, "requests waiting for a slot at most (429 beyond)"),
		stepTokens:   fs.Int("max-step-tokens", d.MaxStepTokens, "tokens in one batched forward pass at most"),
		chunk:        fs.Int("prefill-chunk", d.PrefillChunk, "prompt tokens one sequence prefills per step at most"),
		context:      fs.Int("context", 0, "context length (0 = the model's max_seq_len)"),
		kvTokens:     fs.Int("kv-tokens", 0, "KV positions reserved by running sequences at most (0 = no limit)"),
		prefixTokens: fs.Int("prefix-cache-tokens", 0, "KV positions kept by the prefix cache (0 = up to 2 GiB of KV, -1 = off)"),
	}
}

func (f engineFlags) config() (engine.Config, error) {
	c := engine.Config{MaxSeqs: *f.maxSeqs, MaxQueue: *f.maxQueue, MaxStepTokens: *f.stepTokens,
		PrefillChunk: *f.chunk, MaxContext: *f.context, MaxKVTokens: *f.kvTokens, PrefixCacheTokens: *f.prefixTokens}
	if *f.stepTokens == engine.DefaultConfig().MaxStepTokens && c.MaxSeqs >= c.MaxStepTokens {
		c.MaxStepTokens = c.MaxSeqs + c.PrefillChunk
	}
	if err := c.Validate(); err != nil {
		return c, fmt.Errorf("%w: %v", errUsage, err)
	}
	return c, nil
}

func runServe(ctx context.Context, e env, args []string) error {
	fs := newFlags("serve", e)
	modelDir := fs.String("model", "", "model: HF checkpoint directory or .gguf file (default: $DBRX_MODEL, else the shipped dbrx-tiny)")
	host := fs.String("host", "127.0.0.1", "address to listen on")
	port := fs.Int("port", 8080, "port to listen on (0 = any free port)")
	apiKey := fs.String("api-key", "", "require this bearer token on /v1/*")
	keyFile := fs.String("api-key-file", "", "file of accepted bearer tokens, one per line")
	name := fs.String("name", "", "model id served (default: the model directory's base name)")
	threads := fs.Int("threads", 0, "worker threads (0 = all cores)")
	maxBody := fs.Int64("max-body", 4<<20, "request body bytes at most (413 beyond)")
	readTimeout := fs.Duration("read-timeout", time.Minute, "time to read a request (headers and body)")
	writeTimeout := fs.Duration("write-timeout", time.Minute, "time for each write of a response (a stalled client is dropped)")
	idleTimeout := fs.Duration("idle-timeout", 2*time.Minute, "keep-alive idle time")
	drain := fs.Duration("drain-timeout", 2*time.Minute, "on SIGTERM, time to let in-flight requests finish")
	logFormat := fs.String("log-format", "text", "request log format: text or json")
	ef := addEngineFlags(fs)
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, pos[0])
	}
	modelPath, modelName, err := resolveModel(*modelDir)
	if err != nil {
		return err
	}
	*modelDir = modelPath
	if *name == "" {
		*name = modelName
	}
	if *port < 0 || *port > 65535 {
		return fmt.Errorf("%w: --port %d out of range", errUsage, *port)
	}
	ecfg, err := ef.config()
	if err != nil {
		return err
	}
	var log *slog.Logger
	switch *logFormat {
	case "text":
		log = slog.New(slog.NewTextHandler(e.stderr, nil))
	case "json":
		log = slog.New(slog.NewJSONHandler(e.stderr, nil))
	default:
		return fmt.Errorf("%w: --log-format must be text or json, got %q", errUsage, *logFormat)
	}
	keys, err := loadKeys(*apiKey, *keyFile)
	if err != nil {
		return err
	}
	if *name == "" {
		*name = filepath.Base(filepath.Clean(*modelDir))
	}
	srv, err := serve.New(serve.Config{ModelName: *name, APIKeys: keys, MaxBodyBytes: *maxBody,
		WriteTimeout: *writeTimeout, Logger: log})
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	ecfg.OnStep = srv.OnStep
	ecfg.Logger = log

	ln, err := net.Listen("tcp", net.JoinHostPort(*host, strconv.Itoa(*port)))
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: min(*readTimeout, 10*time.Second), ReadTimeout: *readTimeout,
		IdleTimeout: *idleTimeout, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	log.Info("listening", "addr", "http://"+ln.Addr().String(), "model", *name, "auth", len(keys) > 0)

	// Load while /health answers 503.
	t0 := time.Now()
	m, err := dbrx.Load(*modelDir)
	if err != nil {
		hs.Close()
		return err
	}
	defer m.Close()
	pool := parallel.New(*threads)
	defer pool.Close()
	eng, err := engine.New(m, tokenizer.DBRX(), pool, ecfg)
	if err != nil {
		hs.Close()
		return err
	}
	srv.SetEngine(eng)
	log.Info("ready", "load_ms", time.Since(t0).Milliseconds(), "context", eng.MaxContext(), "max_seqs", ecfg.MaxSeqs)

	select {
	case err := <-served:
		eng.Close()
		return err
	case <-ctx.Done():
	}
	log.Info("draining", "timeout", drain.String())
	srv.SetDraining()
	dctx, cancel := context.WithTimeout(context.Background(), *drain)
	defer cancel()
	err = hs.Shutdown(dctx)
	eng.Close() // ends whatever did not finish in time
	if errors.Is(err, context.DeadlineExceeded) {
		hs.Close()
		log.Warn("drain timeout: remaining requests cancelled")
		err = nil
	}
	log.Info("stopped")
	return err
}

// loadKeys gathers API keys from --api-key and --api-key-file (blank lines and lines
// starting with # are skipped).
func loadKeys(key, file string) ([]string, error) {
	var keys []string
	if key != "" {
		keys = append(keys, key)
	}
	if file == "" {
		return keys, nil
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		keys = append(keys, line)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: --api-key-file %s has no keys", errUsage, file)
	}
	return keys, nil
}
