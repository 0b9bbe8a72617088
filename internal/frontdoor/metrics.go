package frontdoor

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the server's own registry (a process may run several front
// doors, and the global registry carries what Holdfast did not ask for).
type metrics struct {
	reg       *prometheus.Registry
	requests  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	tcpConns  *prometheus.CounterVec
	tcpFailed *prometheus.CounterVec
	tcpActive *prometheus.GaugeVec
}

func newMetrics(s *Server) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "holdfast_frontdoor_requests_total",
			Help: "HTTP requests answered, by route (empty: no route for the host) and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "holdfast_frontdoor_request_duration_seconds",
			Help:    "Time from a request's arrival to the end of its answer, by route.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route"}),
		tcpConns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "holdfast_frontdoor_tcp_connections_total",
			Help: "TCP connections accepted, by route.",
		}, []string{"route"}),
		tcpFailed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "holdfast_frontdoor_tcp_connections_failed_total",
			Help: "TCP connections closed because no backend connected, by route.",
		}, []string{"route"}),
		tcpActive: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "holdfast_frontdoor_tcp_connections_active",
			Help: "TCP connections being spliced now, by route.",
		}, []string{"route"}),
	}
	m.reg.MustRegister(m.requests, m.duration, m.tcpConns, m.tcpFailed, m.tcpActive, upCollector{s})
	return m
}

// forget drops the series of the routes of prev that t does not have.
func (m *metrics) forget(prev, t *table) {
	keep := map[string]bool{}
	for _, r := range t.routes {
		keep[r.cfg.Name] = true
	}
	for _, r := range prev.routes {
		if keep[r.cfg.Name] {
			continue
		}
		l := prometheus.Labels{"route": r.cfg.Name}
		m.requests.DeletePartialMatch(l)
		m.duration.DeletePartialMatch(l)
		m.tcpConns.DeletePartialMatch(l)
		m.tcpFailed.DeletePartialMatch(l)
		m.tcpActive.DeletePartialMatch(l)
	}
}

var upDesc = prometheus.NewDesc("holdfast_frontdoor_backend_up",
	"1 when the backend passes its health checks, by route and backend.",
	[]string{"route", "backend", "failover"}, nil)

// upCollector reads backend health when scraped, so it never disagrees
// with Health.
type upCollector struct{ s *Server }

func (c upCollector) Describe(ch chan<- *prometheus.Desc) { ch <- upDesc }

func (c upCollector) Collect(ch chan<- prometheus.Metric) {
	for _, r := range c.s.table.Load().routes {
		for i, b := range r.all() {
			v := 0.0
			if b.isUp() {
				v = 1
			}
			failover := "false"
			if i >= len(r.preferred) {
				failover = "true"
			}
			ch <- prometheus.MustNewConstMetric(upDesc, prometheus.GaugeValue, v, r.cfg.Name, b.addr, failover)
		}
	}
}
