package serve

import (
	"strconv"

	"github.com/dbrx-engine/dbrx/engine"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the server's Prometheus metrics, in their own registry.
type metrics struct {
	reg *prometheus.Registry

	requests        *prometheus.CounterVec   // endpoint, code
	errors          *prometheus.CounterVec   // endpoint, type
	promptTokens    prometheus.Counter       //
	cachedTokens    prometheus.Counter       //
	generatedTokens prometheus.Counter       //
	ttft            prometheus.Histogram     // seconds
	itl             prometheus.Histogram     // seconds
	duration        *prometheus.HistogramVec // endpoint
	batchSeqs       prometheus.Histogram     // sequences per step
	batchTokens     prometheus.Histogram     // tokens per step
	stepSeconds     prometheus.Histogram
}

func newMetrics(s *Server) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	latency := []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dbrx_requests_total",
		Help: "HTTP requests by endpoint and status code."}, []string{"endpoint", "code"})
	m.errors = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dbrx_request_errors_total",
		Help: "Failed requests by endpoint and OpenAI error type."}, []string{"endpoint", "type"})
	m.promptTokens = prometheus.NewCounter(prometheus.CounterOpts{Name: "dbrx_prompt_tokens_total",
		Help: "Prompt tokens of admitted requests."})
	m.cachedTokens = prometheus.NewCounter(prometheus.CounterOpts{Name: "dbrx_prompt_cached_tokens_total",
		Help: "Prompt tokens served from the prefix cache."})
	m.generatedTokens = prometheus.NewCounter(prometheus.CounterOpts{Name: "dbrx_generated_tokens_total",
		Help: "Tokens generated."})
	m.ttft = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "dbrx_time_to_first_token_seconds",
		Help: "Time from request arrival to the first generated token.", Buckets: latency})
	m.itl = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "dbrx_inter_token_latency_seconds",
		Help:    "Time between consecutive tokens of a sequence.",
		Buckets: []float64{.001, .0025, .005, .01, .02, .04, .08, .16, .32, .64, 1.28, 2.56}})
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "dbrx_request_duration_seconds",
		Help: "Request latency by endpoint.", Buckets: latency}, []string{"endpoint"})
	m.batchSeqs = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "dbrx_batch_size",
		Help: "Sequences per batched forward pass.", Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128}})
	m.batchTokens = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "dbrx_batch_tokens",
		Help: "Tokens per batched forward pass (decode + prefill).", Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024}})
	m.stepSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "dbrx_step_duration_seconds",
		Help: "Duration of one engine step (forward and sampling).", Buckets: latency})
	m.reg.MustRegister(m.requests, m.errors, m.promptTokens, m.cachedTokens, m.generatedTokens,
		m.ttft, m.itl, m.duration, m.batchSeqs, m.batchTokens, m.stepSeconds, &engineCollector{s: s})
	return m
}

// OnStep records an engine step; pass it as engine.Config.OnStep.
func (s *Server) OnStep(si engine.StepInfo) {
	s.m.batchSeqs.Observe(float64(si.Seqs))
	s.m.batchTokens.Observe(float64(si.DecodeTokens + si.PrefillTokens))
	s.m.stepSeconds.Observe(si.Duration.Seconds())
}

// engineCollector exports engine.Stats at scrape time.
type engineCollector struct{ s *Server }

var (
	descQueue         = prometheus.NewDesc("dbrx_queue_depth", "Requests waiting for admission.", nil, nil)
	descRunning       = prometheus.NewDesc("dbrx_running_sequences", "Sequences in the running batch.", nil, nil)
	descKVTokens      = prometheus.NewDesc("dbrx_kv_cache_tokens", "KV positions held by running sequences.", nil, nil)
	descKVBytes       = prometheus.NewDesc("dbrx_kv_cache_bytes", "KV cache bytes held by running sequences and the prefix cache.", nil, nil)
	descPrefixTokens  = prometheus.NewDesc("dbrx_prefix_cache_tokens", "KV positions held by the prefix cache.", nil, nil)
	descPrefixEntries = prometheus.NewDesc("dbrx_prefix_cache_entries", "Entries in the prefix cache.", nil, nil)
	descPrefixHits    = prometheus.NewDesc("dbrx_prefix_cache_hits_total", "Admissions that reused a cached prefix.", nil, nil)
	descPrefixMisses  = prometheus.NewDesc("dbrx_prefix_cache_misses_total", "Admissions that found no cached prefix.", nil, nil)
	descSteps         = prometheus.NewDesc("dbrx_engine_steps_total", "Batched forward passes.", nil, nil)
	descExpert        = prometheus.NewDesc("dbrx_expert_tokens_total", "Tokens routed to each expert (top-k selections) by layer.", []string{"layer", "expert"}, nil)
	descReady         = prometheus.NewDesc("dbrx_ready", "1 when the model is loaded and the server accepts requests.", nil, nil)
)

func (c *engineCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descQueue, descRunning, descKVTokens, descKVBytes, descPrefixTokens,
		descPrefixEntries, descPrefixHits, descPrefixMisses, descSteps, descExpert, descReady} {
		ch <- d
	}
}

func (c *engineCollector) Collect(ch chan<- prometheus.Metric) {
	e := c.s.engine()
	ready := 0.0
	if e != nil && !c.s.draining.Load() {
		ready = 1
	}
	ch <- prometheus.MustNewConstMetric(descReady, prometheus.GaugeValue, ready)
	if e == nil {
		return
	}
	st := e.Stats()
	g := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	cnt := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	g(descQueue, float64(st.Queued))
	g(descRunning, float64(st.Running))
	g(descKVTokens, float64(st.KVTokens))
	g(descKVBytes, float64((st.KVTokens+st.PrefixTokens)*st.KVBytesPerToken))
	g(descPrefixTokens, float64(st.PrefixTokens))
	g(descPrefixEntries, float64(st.PrefixEntries))
	cnt(descPrefixHits, float64(st.PrefixHits))
	cnt(descPrefixMisses, float64(st.PrefixMisses))
	cnt(descSteps, float64(st.Steps))
	for l, row := range st.ExpertTokens {
		ls := strconv.Itoa(l)
		for x, v := range row {
			ch <- prometheus.MustNewConstMetric(descExpert, prometheus.CounterValue, float64(v), ls, strconv.Itoa(x))
		}
	}
}
