// Package frontdoor is the front door of a cloud's public routes: a
// reverse proxy (net/http/httputil) for http and https routes, a byte
// splicer for tcp routes, health checks that pick local backends first and
// the peer site's failover backends while no local one is up, and
// certificates from ACME (github.com/caddyserver/certmagic, HTTP-01 and
// TLS-ALPN-01) or given by the operator.
//
// A Server is configured whole (Set) and keeps running what did not change:
// listeners that stay are not reopened, so requests and tcp connections in
// flight complete, and routes and backend pools are swapped atomically.
package frontdoor

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config is what one front end serves (JSON: it travels inside guest.Config).
type Config struct {
	Routes []Route `json:"routes"`
	ACME   *ACME   `json:"acme,omitempty"` // nil: no route uses ACME
	// Metrics is the host:port where GET /metrics answers (Prometheus text); empty: none.
	Metrics string `json:"metrics,omitempty"`
}

// Route is one public route.
type Route struct {
	Name  string `json:"name"`  // the spec's route name
	Proto string `json:"proto"` // "https" (TLS terminated here), "http" (plain), "tcp" (bytes, no TLS)
	Host  string `json:"host"`  // the hostname (https/http); matched on SNI and Host, case-insensitively, port ignored
	// Listen is host:port, e.g. ":443". Several https/http routes may share a Listen (different hosts);
	// a tcp route has its Listen alone.
	Listen   string   `json:"listen"`
	Backends []string `json:"backends"`           // host:port, preferred ("local")
	Failover []string `json:"failover,omitempty"` // host:port, used only while no preferred backend is up
	// Certificate (https only): the operator's PEM chain and key; nil: from ACME.
	Certificate *Certificate `json:"certificate,omitempty"`
	// HealthPath is the path the active check GETs (http/https; default "/"); tcp routes are checked by connecting.
	HealthPath string `json:"health_path,omitempty"`
	// ChallengePeers are host:port (port 80) of the peer site's front ends serving the same host: an
	// HTTP-01 challenge request for a token this front door does not hold is proxied to them in turn
	// (the hostname resolves to both sites, and the ACME server validates at whichever it picks).
	ChallengePeers []string `json:"challenge_peers,omitempty"`
}

// Certificate is an operator's certificate for an https route.
type Certificate struct {
	Cert string `json:"cert"` // PEM, leaf first
	Key  string `json:"key"`  // PEM
}

// ACME says where https routes without a Certificate get theirs.
type ACME struct {
	Directory string `json:"directory"` // e.g. https://acme-v02.api.letsencrypt.org/directory
	Email     string `json:"email,omitempty"`
	// Roots is PEM of the CAs that sign the ACME directory's own TLS certificate (a private or test ACME
	// server such as pebble); empty: the system's roots.
	Roots string `json:"roots,omitempty"`
	// HTTPListen is where plain HTTP is answered for HTTP-01 challenges (and https routes' redirect):
	// default ":80".
	HTTPListen string `json:"http_listen,omitempty"`
}

// Options are the process's, not the cloud's.
type Options struct {
	StateDir string // certificates and the ACME account live here (0700); keys never leave it
	Log      *slog.Logger
	// Timing, zero = defaults: check every 500 ms, a check times out after 1 s, down after 2 failed checks
	// (or at once when proxying to it fails to connect), up after 2 good ones.
	CheckInterval time.Duration
}

// RouteHealth is one route's state.
type RouteHealth struct {
	Name        string          `json:"name"`
	Host        string          `json:"host,omitempty"`
	Listen      string          `json:"listen"`
	Backends    []BackendHealth `json:"backends"`              // preferred then failover, in config order
	FailedOver  bool            `json:"failed_over"`           // serving from Failover now
	Certificate string          `json:"certificate,omitempty"` // "valid until 2027-03-01", "obtaining: <err>", "" for http/tcp
}

// BackendHealth is one backend's state as a route sees it.
type BackendHealth struct {
	Address  string `json:"address"`
	Up       bool   `json:"up"`
	Failover bool   `json:"failover"`
}

const (
	dialTimeout  = time.Second
	checkTimeout = time.Second
	// A request on a front door gives up on a backend's answer headers
	// never: long polls and slow uploads are the backend's business.
	defaultCheckInterval = 500 * time.Millisecond
)

// GCPercent is the garbage collector's setting (GOGC) for a process whose
// main work is a front door, for its owner to apply with
// debug.SetGCPercent (a library does not set a process's collector). Every
// proxied request leaves a few kilobytes of garbage while the live heap
// stays small (about 1 MB for 50 busy connections), so at the default of
// 100 the collector runs about 30 times a second under load, and the
// allocation slow paths it brings cost more than its own 3 %: at 400
// bench/frontdoor.sh measured 9 % more requests a second, 11 % less CPU
// per request and a lower p99, for a heap of up to five times the live
// one instead of twice (16 MB at that load).
const GCPercent = 400

// Server is a running front door.
type Server struct {
	opts    Options
	log     *slog.Logger
	metrics *metrics
	checks  *checker
	certs   *certs

	transportOnce sync.Once
	pool          *connPool
	upstream      *http.Transport

	ctx    context.Context // ends at Close
	cancel context.CancelFunc

	mu        sync.Mutex // serialises Set and Close
	closed    bool
	listeners map[string]*listener // by address
	table     atomic.Pointer[table]
}

// table is what the listeners serve: swapped whole by Set.
type table struct {
	cfg    Config
	routes []*route
	// byListen maps a listen address to its http/https routes by
	// lower-case host, or to its one tcp route.
	byListen map[string]map[string]*route
	tcp      map[string]*route
	// httpsHosts are the hosts with an https route, for the redirect on
	// the plain HTTP listener: host -> the https route's listen port.
	httpsHosts map[string]string
	httpListen string // ACME's plain HTTP listener, "" without ACME
}

// New returns a server serving nothing until Set.
func New(opts Options) *Server {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.CheckInterval <= 0 {
		opts.CheckInterval = defaultCheckInterval
	}
	s := &Server{opts: opts, log: opts.Log, listeners: map[string]*listener{}}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.metrics = newMetrics(s)
	s.checks = newChecker(opts.CheckInterval, s.log, s.metrics)
	s.certs = newCerts(opts.StateDir, s.log)
	s.table.Store(&table{byListen: map[string]map[string]*route{}, tcp: map[string]*route{}, httpsHosts: map[string]string{}})
	return s
}

// Set makes the server serve cfg: listeners for new addresses are opened, gone ones closed, routes and
// pools swapped atomically, so connections in flight on unchanged listeners are not dropped. Returns an
// error naming the route for a config it cannot serve (a listener it cannot open, a certificate that does
// not parse or does not match its key, ...); what could be served is served.
func (s *Server) Set(ctx context.Context, cfg Config) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("front door closed")
	}
	var errs []error
	t := &table{cfg: cfg, byListen: map[string]map[string]*route{}, tcp: map[string]*route{}, httpsHosts: map[string]string{}}
	kinds := map[string]string{} // listen address -> "tls", "plain", "tcp"
	given := map[string]*tls.Certificate{}
	var acmeHosts []string
	if cfg.ACME != nil {
		t.httpListen = cmp.Or(cfg.ACME.HTTPListen, ":80")
		kinds[t.httpListen] = "plain"
	}
	for i := range cfg.Routes {
		rc := cfg.Routes[i]
		r, err := s.checkRoute(rc, kinds, t)
		if err != nil {
			errs = append(errs, fmt.Errorf("route %q: %w", rc.Name, err))
			continue
		}
		if rc.Proto == "https" {
			if rc.Certificate != nil {
				c, err := parseCertificate(rc.Certificate)
				if err != nil {
					errs = append(errs, fmt.Errorf("route %q: certificate: %w", rc.Name, err))
					continue
				}
				given[r.host] = c
				r.certStatus = "valid until " + c.Leaf.NotAfter.UTC().Format(time.DateOnly)
			} else if cfg.ACME == nil {
				errs = append(errs, fmt.Errorf("route %q: https without a certificate needs ACME in the front door's config", rc.Name))
				continue
			} else {
				r.acme = true
				acmeHosts = append(acmeHosts, r.host)
			}
			_, port, _ := net.SplitHostPort(rc.Listen)
			t.httpsHosts[r.host] = port
		}
		if rc.Proto == "tcp" {
			t.tcp[rc.Listen] = r
		} else {
			if t.byListen[rc.Listen] == nil {
				t.byListen[rc.Listen] = map[string]*route{}
			}
			t.byListen[rc.Listen][r.host] = r
		}
		t.routes = append(t.routes, r)
	}
	if cfg.Metrics != "" {
		if k, ok := kinds[cfg.Metrics]; ok {
			errs = append(errs, fmt.Errorf("metrics listen %s: already a %s listener", cfg.Metrics, k))
		} else {
			kinds[cfg.Metrics] = "metrics"
		}
	}
	slices.SortFunc(t.routes, func(a, b *route) int { return strings.Compare(a.cfg.Name, b.cfg.Name) })

	// Health first, so a route is ready (its backends' state known) before
	// its listener takes a request.
	s.checks.set(ctx, t.routes)
	if err := s.certs.set(ctx, cfg.ACME, given, t); err != nil {
		errs = append(errs, err)
	}

	// Listeners: open new ones, keep unchanged ones, close gone ones;
	// a listener that cannot open costs only its routes.
	failed := map[string]error{}
	for addr, kind := range kinds {
		if l, ok := s.listeners[addr]; ok && l.kind == kind {
			continue
		}
		if l, ok := s.listeners[addr]; ok {
			l.close()
			delete(s.listeners, addr)
		}
		l, err := s.listen(addr, kind)
		if err != nil {
			failed[addr] = err
			continue
		}
		s.listeners[addr] = l
	}
	for addr, l := range s.listeners {
		if _, ok := kinds[addr]; !ok {
			l.close()
			delete(s.listeners, addr)
		}
	}
	for addr, err := range failed {
		var names []string
		for _, r := range t.routes {
			if r.cfg.Listen == addr {
				names = append(names, fmt.Sprintf("%q", r.cfg.Name))
			}
		}
		switch {
		case len(names) > 0:
			errs = append(errs, fmt.Errorf("route %s: listen %s: %w", strings.Join(names, ", "), addr, err))
		case addr == cfg.Metrics:
			errs = append(errs, fmt.Errorf("metrics: listen %s: %w", addr, err))
		default:
			errs = append(errs, fmt.Errorf("ACME HTTP: listen %s: %w", addr, err))
		}
	}
	s.metrics.forget(s.table.Swap(t), t)

	// Certificates from ACME after the listeners are up: HTTP-01 and
	// TLS-ALPN-01 are answered by them.
	if len(acmeHosts) > 0 {
		if err := s.certs.obtain(ctx, acmeHosts, t); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// checkRoute validates one route against the others of its config and
// makes its runtime form.
func (s *Server) checkRoute(rc Route, kinds map[string]string, t *table) (*route, error) {
	if rc.Name == "" {
		return nil, errors.New("no name")
	}
	if _, _, err := net.SplitHostPort(rc.Listen); err != nil {
		return nil, fmt.Errorf("listen %q: %w", rc.Listen, err)
	}
	for _, b := range slices.Concat(rc.Backends, rc.Failover) {
		if _, _, err := net.SplitHostPort(b); err != nil {
			return nil, fmt.Errorf("backend %q: %w", b, err)
		}
	}
	if len(rc.Backends)+len(rc.Failover) == 0 {
		return nil, errors.New("no backends")
	}
	var kind string
	switch rc.Proto {
	case "https":
		kind = "tls"
	case "http":
		kind = "plain"
	case "tcp":
		kind = "tcp"
	default:
		return nil, fmt.Errorf("proto %q: want https, http or tcp", rc.Proto)
	}
	if k, ok := kinds[rc.Listen]; ok && (k != kind || kind == "tcp") {
		return nil, fmt.Errorf("listen %s: already taken by another route (%s)", rc.Listen, k)
	}
	host := strings.ToLower(strings.TrimSuffix(rc.Host, "."))
	if kind != "tcp" {
		if host == "" {
			return nil, fmt.Errorf("%s route without a host", rc.Proto)
		}
		if other, ok := t.byListen[rc.Listen][host]; ok {
			return nil, fmt.Errorf("host %s on %s: already route %q's", host, rc.Listen, other.cfg.Name)
		}
	}
	if rc.Proto == "https" {
		if other, ok := t.httpsHosts[host]; ok {
			return nil, fmt.Errorf("host %s: already an https route on port %s", host, other)
		}
	}
	kinds[rc.Listen] = kind
	r := &route{cfg: rc, host: host, s: s}
	path := cmp.Or(rc.HealthPath, "/")
	for _, a := range rc.Backends {
		r.preferred = append(r.preferred, s.checks.backend(rc.Proto == "tcp", a, path))
	}
	for _, a := range rc.Failover {
		r.failover = append(r.failover, s.checks.backend(rc.Proto == "tcp", a, path))
	}
	if kind != "tcp" {
		r.proxy = s.newProxy(r)
		r.duration = s.metrics.duration.WithLabelValues(rc.Name)
	}
	return r, nil
}

// Health reports every route's backends and certificate, sorted by route name.
func (s *Server) Health() []RouteHealth {
	t := s.table.Load()
	out := make([]RouteHealth, 0, len(t.routes))
	for _, r := range t.routes {
		h := RouteHealth{Name: r.cfg.Name, Host: r.cfg.Host, Listen: r.cfg.Listen}
		for _, b := range r.preferred {
			h.Backends = append(h.Backends, BackendHealth{Address: b.addr, Up: b.isUp()})
		}
		for _, b := range r.failover {
			h.Backends = append(h.Backends, BackendHealth{Address: b.addr, Up: b.isUp(), Failover: true})
		}
		h.FailedOver = r.failedOver()
		if r.cfg.Proto == "https" {
			h.Certificate = r.certStatus
			if r.acme {
				h.Certificate = s.certs.status(r.host)
			}
		}
		out = append(out, h)
	}
	return out
}

// Close closes listeners, stops checks and ACME.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.cancel()
	for addr, l := range s.listeners {
		l.closeNow()
		delete(s.listeners, addr)
	}
	s.checks.stop()
	s.certs.stop()
	return nil
}

// Summary is a one-line text for holdfast status, e.g.
// "2 routes; app.example: 1/1 up; api.example: failed over (0/2 up, 1/1 failover up)".
// ok is false when a route has no backend up or its certificate is not
// yet obtained.
func Summary(h []RouteHealth) (ok bool, detail string) {
	ok = true
	parts := []string{fmt.Sprintf("%d route%s", len(h), plural(len(h)))}
	for _, r := range h {
		var up, n, fup, fn int
		for _, b := range r.Backends {
			if b.Failover {
				fn++
				if b.Up {
					fup++
				}
			} else {
				n++
				if b.Up {
					up++
				}
			}
		}
		var d string
		switch {
		case r.FailedOver:
			d = fmt.Sprintf("failed over (%d/%d up, %d/%d failover up)", up, n, fup, fn)
		case up == 0 && fup == 0:
			ok = false
			d = fmt.Sprintf("down (0/%d up", n)
			if fn > 0 {
				d += fmt.Sprintf(", 0/%d failover up", fn)
			}
			d += ")"
		default:
			d = fmt.Sprintf("%d/%d up", up, n)
		}
		if strings.HasPrefix(r.Certificate, "obtaining") {
			ok = false
			d += ", certificate " + r.Certificate
		}
		parts = append(parts, cmp.Or(r.Host, r.Name)+": "+d)
	}
	return ok, strings.Join(parts, "; ")
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
