package server

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the server's Prometheus metrics, in a registry of its own
// so that several servers (tests) never collide.
type metrics struct {
	reg           *prometheus.Registry
	requests      *prometheus.CounterVec
	latency       *prometheus.HistogramVec
	logins        *prometheus.CounterVec
	auditFailures prometheus.Counter
	reconciles    *prometheus.CounterVec
	reconcileTime prometheus.Histogram
	openOps       prometheus.Gauge
	lastSuccess   prometheus.Gauge
	failures      prometheus.Gauge
	refused       prometheus.Gauge
}

func newMetrics() *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "holdfast_http_requests_total", Help: "API requests by route and status.",
	}, []string{"route", "method", "code"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "holdfast_http_request_duration_seconds", Help: "API request latency by route.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"route"})
	m.logins = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "holdfast_logins_total", Help: "Login attempts by outcome.",
	}, []string{"result"})
	m.auditFailures = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "holdfast_audit_append_failures_total", Help: "Audit entries that could not be written.",
	})
	m.reconciles = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "holdfast_reconciles_total",
		Help: "Reconciler passes by outcome: ok; partial (ran through, but objects failed or were refused); error (failed as a whole).",
	}, []string{"result"})
	m.reconcileTime = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "holdfast_reconcile_duration_seconds", Help: "Duration of reconciler passes.",
		Buckets: prometheus.ExponentialBuckets(0.05, 2, 12),
	})
	m.openOps = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "holdfast_operations_open", Help: "Operations pending or running.",
	})
	m.lastSuccess = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "holdfast_realizer_last_success_timestamp_seconds",
		Help: "When the last reconciler pass that ran through ended (Unix time); 0 until one has. Alert when it is old.",
	})
	m.failures = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "holdfast_realizer_consecutive_failures",
		Help: "Reconciler passes in a row that failed as a whole; /readyz reports not ready from 3.",
	})
	m.refused = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "holdfast_realizer_refused_objects",
		Help: "Tenants' networks and instances the cloud's spec refused in the last pass: left out, or kept as they were.",
	})
	m.reg.MustRegister(m.requests, m.latency, m.logins, m.auditFailures, m.reconciles, m.reconcileTime, m.openOps,
		m.lastSuccess, m.failures, m.refused,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) observe(route, method string, status int, took time.Duration) {
	m.requests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
	m.latency.WithLabelValues(route).Observe(took.Seconds())
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}
