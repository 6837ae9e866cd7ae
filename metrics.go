package nixery

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/nixery-go/nixery/images"
	"github.com/nixery-go/nixery/layers"
	"github.com/nixery-go/nixery/registry"
)

// metrics are a Server's Prometheus metrics, in a registry of its own (not
// the global default), so that a process may run several Servers.
type metrics struct {
	reg *prometheus.Registry

	requests     *prometheus.CounterVec
	requestTime  *prometheus.HistogramVec
	servedBytes  *prometheus.CounterVec
	buildsStart  prometheus.Counter
	buildsDone   prometheus.Counter
	buildsFailed *prometheus.CounterVec
	buildTime    *prometheus.HistogramVec
	nixRuns      *prometheus.CounterVec
	nixTime      *prometheus.HistogramVec
}

// newMetrics registers the metrics of a server whose parts are ib and
// asm (nil if the layer builder is another).
func newMetrics(ib *images.Builder, asm *layers.Assembler) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "nixery", Subsystem: "http", Name: "requests_total",
		Help: "Registry API requests by route (base, manifests, blobs, tags, other), method and status.",
	}, []string{"route", "method", "status"})
	m.requestTime = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "nixery", Subsystem: "http", Name: "request_duration_seconds",
		Help:    "Time to answer registry API requests, by route.",
		Buckets: []float64{.0005, .001, .005, .01, .05, .1, .5, 1, 5, 10, 30, 60},
	}, []string{"route"})
	m.servedBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "nixery", Name: "served_bytes_total",
		Help: "Bytes of response bodies the registry API sent, by route.",
	}, []string{"route"})
	m.buildsStart = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "nixery", Subsystem: "builds", Name: "started_total",
		Help: "Builds started (one Nix run for a request, queued or not).",
	})
	m.buildsDone = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "nixery", Subsystem: "builds", Name: "completed_total",
		Help: "Builds that gave an image.",
	})
	m.buildsFailed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "nixery", Subsystem: "builds", Name: "failed_total",
		Help: "Builds that failed, by cause (unknown_packages, invalid_name, unsupported_system, timeout, busy, cancelled, nix, nix_missing, other).",
	}, []string{"cause"})
	m.buildTime = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "nixery", Subsystem: "build", Name: "duration_seconds",
		Help:    "Time from a build's start (its queueing included) to its end, by result (done, failed).",
		Buckets: []float64{.1, .25, .5, 1, 2.5, 5, 10, 25, 60, 120, 300, 600},
	}, []string{"result"})
	m.nixRuns = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "nixery", Subsystem: "nix", Name: "runs_total",
		Help: "Nix processes run, by operation (evaluate, build, query) and result (ok, error).",
	}, []string{"op", "result"})
	m.nixTime = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "nixery", Subsystem: "nix", Name: "run_duration_seconds",
		Help:    "Time Nix processes ran, by operation.",
		Buckets: []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
	}, []string{"op"})
	m.reg.MustRegister(m.requests, m.requestTime, m.servedBytes, m.buildsStart, m.buildsDone,
		m.buildsFailed, m.buildTime, m.nixRuns, m.nixTime)
	for _, c := range []string{"unknown_packages", "timeout", "busy", "nix", "other"} {
		m.buildsFailed.WithLabelValues(c) // present at 0, so that rate() works from the start
	}

	counter := func(name, help string, labels prometheus.Labels, f func() float64) {
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "nixery", Name: name, Help: help, ConstLabels: labels,
		}, f))
	}
	gauge := func(name, help string, f func() float64) {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "nixery", Name: name, Help: help}, f))
	}
	const hitHelp = "Cache hits: manifests answered from an image built before, layers found in the layer cache, store paths whose compressed members were cached."
	const missHelp = "Cache misses: images assembled, layers built, store paths compressed."
	counter("cache_hits_total", hitHelp, prometheus.Labels{"cache": "manifests"}, func() float64 { return float64(ib.Stats().ManifestHits) })
	counter("cache_misses_total", missHelp, prometheus.Labels{"cache": "manifests"}, func() float64 { return float64(ib.Stats().ManifestMisses) })
	if asm != nil {
		counter("cache_hits_total", hitHelp, prometheus.Labels{"cache": "layers"}, func() float64 { return float64(asm.Stats().LayerHits) })
		counter("cache_misses_total", missHelp, prometheus.Labels{"cache": "layers"}, func() float64 { return float64(asm.Stats().LayerMisses) })
		counter("cache_hits_total", hitHelp, prometheus.Labels{"cache": "members"}, func() float64 { return float64(asm.Stats().MemberHits) })
		counter("cache_misses_total", missHelp, prometheus.Labels{"cache": "members"}, func() float64 { return float64(asm.Stats().MemberMisses) })
		counter("compressed_bytes_total", "Compressed bytes of the layers built.", nil, func() float64 { return float64(asm.Stats().BlobBytes) })
		counter("compressed_input_bytes_total", "Uncompressed tar bytes of the layers built.", nil, func() float64 { return float64(asm.Stats().TarBytes) })
	}
	gauge("stored_bytes", "Bytes of the blobs (layers, configs, manifests) of the images in the index.", func() float64 { return float64(ib.Stats().StoredBytes) })
	gauge("builds_queued", "Builds waiting for a Nix slot.", func() float64 {
		n, _ := activeCounts(ib)
		return float64(n)
	})
	gauge("builds_in_progress", "Builds past the queue, not finished.", func() float64 {
		_, n := activeCounts(ib)
		return float64(n)
	})
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	ib.Listen(func(e images.Event) {
		switch {
		case e.Repeat:
		case e.Phase == images.PhaseQueued:
			m.buildsStart.Inc()
		case e.Phase == images.PhaseDone:
			m.buildsDone.Inc()
			m.buildTime.WithLabelValues("done").Observe(e.Seconds)
		case e.Phase == images.PhaseFailed:
			m.buildsFailed.WithLabelValues(e.Cause).Inc()
			m.buildTime.WithLabelValues("failed").Observe(e.Seconds)
		}
	})
	return m
}

func activeCounts(ib *images.Builder) (queued, running int) {
	for _, e := range ib.Active() {
		if e.Phase == images.PhaseQueued {
			queued++
		} else {
			running++
		}
	}
	return queued, running
}

// observeRequest is the registry's observer.
func (m *metrics) observeRequest(r registry.RequestInfo) {
	m.requests.WithLabelValues(r.Route, r.Method, strconv.Itoa(r.Status)).Inc()
	m.requestTime.WithLabelValues(r.Route).Observe(r.Duration.Seconds())
	if r.Bytes > 0 {
		m.servedBytes.WithLabelValues(r.Route).Add(float64(r.Bytes))
	}
}

// observeNix is the Nix builder's OnCommand.
func (m *metrics) observeNix(op string, d time.Duration, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.nixRuns.WithLabelValues(op, result).Inc()
	m.nixTime.WithLabelValues(op).Observe(d.Seconds())
}

// handler serves the metrics uncompressed: a scrape is some 14 kB, and
// gzip doubled its time (3.7 ms against 1.9 ms in BenchmarkMetricsScrape).
func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{DisableCompression: true})
}
