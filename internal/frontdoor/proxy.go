package frontdoor

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// route is a Route as served.
type route struct {
	cfg        Route
	host       string // lower case, no final dot
	s          *Server
	preferred  []*backend
	failover   []*backend
	next       atomic.Uint64 // round robin
	proxy      *httputil.ReverseProxy
	acme       bool   // its certificate comes from ACME
	certStatus string // for a given certificate
}

func (r *route) all() []*backend {
	return append(append([]*backend(nil), r.preferred...), r.failover...)
}

// failedOver: no preferred backend is up, and a failover one is.
func (r *route) failedOver() bool {
	for _, b := range r.preferred {
		if b.isUp() {
			return false
		}
	}
	for _, b := range r.failover {
		if b.isUp() {
			return true
		}
	}
	return false
}

// candidates are the backends to try, in order: the up preferred ones from
// the round robin's next, then the up failover ones likewise (reached only
// when every preferred one fails to connect).
func (r *route) candidates() []*backend {
	n := r.next.Add(1)
	var out []*backend
	for _, set := range [][]*backend{r.preferred, r.failover} {
		for i := range set {
			if b := set[(int(n)+i)%len(set)]; b.isUp() {
				out = append(out, b)
			}
		}
	}
	return out
}

// markDown is the passive check.
func (r *route) markDown(b *backend, err error) {
	if b.failed() {
		r.s.log.Warn("backend down: proxying could not connect", "route", r.cfg.Name, "backend", b.addr, "err", err)
	}
}

// problem writes an RFC 9457 problem document.
func problem(w http.ResponseWriter, status int, typ, title, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"type": typ, "title": title, "status": status, "detail": detail,
	})
}

const (
	problemNoRoute     = "https://holdfast.dev/problems/frontdoor/no-route"
	problemNoBackend   = "https://holdfast.dev/problems/frontdoor/no-backend"
	problemBadResponse = "https://holdfast.dev/problems/frontdoor/bad-backend-response"
)

// errNoBackend: every candidate failed to connect, or none was up.
var errNoBackend = errors.New("no backend up")

func (s *Server) newProxy(r *route) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetXForwarded()
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = "backend" // chosen in roundTrip
			pr.Out.Host = pr.In.Host
		},
		Transport:     &routeTransport{r: r, t: s.transport()},
		FlushInterval: -1, // stream: server-sent events and long polls pass at once
		ErrorHandler: func(w http.ResponseWriter, req *http.Request, err error) {
			if errors.Is(err, errNoBackend) {
				problem(w, http.StatusBadGateway, problemNoBackend, "No backend available",
					fmt.Sprintf("route %q: no backend of %s is up", r.cfg.Name, r.cfg.Host))
				return
			}
			if req.Context().Err() != nil {
				return // the client went away
			}
			r.s.log.Info("proxying failed", "route", r.cfg.Name, "err", err)
			problem(w, http.StatusBadGateway, problemBadResponse, "Bad answer from the backend",
				fmt.Sprintf("route %q: the backend did not answer the request", r.cfg.Name))
		},
	}
}

// transport is the server's one upstream transport (connections pooled
// per backend address).
func (s *Server) transport() http.RoundTripper {
	s.transportOnce.Do(func() {
		s.upstream = &http.Transport{
			DialContext:         (&net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     90 * time.Second,
		}
	})
	return s.upstream
}

// routeTransport sends a request to the route's backends in turn until one
// connects: a dial failure sent nothing, so the next may take it.
type routeTransport struct {
	r *route
	t http.RoundTripper
}

func (rt *routeTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	var body *onceBody
	if req.Body != nil && req.Body != http.NoBody {
		body = &onceBody{r: req.Body}
		defer req.Body.Close()
	}
	var lastErr error
	for _, b := range rt.r.candidates() {
		out := req.Clone(req.Context())
		out.URL.Host = b.addr
		if body != nil {
			if body.read.Load() {
				break // bytes went to a backend: not ours to resend
			}
			out.Body = body.fresh()
		}
		resp, err := rt.t.RoundTrip(out)
		if err == nil {
			return resp, nil
		}
		lastErr = err
		if !isDialError(err) {
			return nil, err
		}
		rt.r.markDown(b, err)
	}
	if lastErr != nil {
		return nil, fmt.Errorf("%w: %w", errNoBackend, lastErr)
	}
	return nil, errNoBackend
}

func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// onceBody lets a request body be offered to a second backend when the
// first never read from it (the transport closes a body on every error).
type onceBody struct {
	r    io.ReadCloser
	read atomic.Bool
}

func (b *onceBody) fresh() io.ReadCloser { return bodyView{b} }

type bodyView struct{ b *onceBody }

func (v bodyView) Read(p []byte) (int, error) {
	v.b.read.Store(true)
	return v.b.r.Read(p)
}
func (v bodyView) Close() error { return nil } // the caller closes the real one

// hostOf is a request's host, lower case, without port or final dot.
func hostOf(hostport string) string {
	h := hostport
	if host, _, err := net.SplitHostPort(hostport); err == nil {
		h = host
	}
	return strings.ToLower(strings.TrimSuffix(h, "."))
}

// serveRoutes is the handler of an https or plain http listener.
func (s *Server) serveRoutes(addr string, tls bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		t := s.table.Load()
		host := hostOf(req.Host)
		if !tls {
			if s.serveChallenge(w, req, t, host) {
				return
			}
		}
		if r, ok := t.byListen[addr][host]; ok {
			s.proxyRoute(w, req, r)
			return
		}
		if !tls && addr == t.httpListen {
			if port, ok := t.httpsHosts[host]; ok {
				target := "https://" + host
				if port != "443" {
					target += ":" + port
				}
				http.Redirect(w, req, target+req.URL.RequestURI(), http.StatusPermanentRedirect)
				return
			}
		}
		s.metrics.requests.WithLabelValues("", "404").Inc()
		problem(w, http.StatusNotFound, problemNoRoute, "No such route",
			fmt.Sprintf("no route for host %q here", host))
	})
}

func (s *Server) proxyRoute(w http.ResponseWriter, req *http.Request, r *route) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	r.proxy.ServeHTTP(sw, req)
	code := sw.code
	if code == 0 {
		code = http.StatusOK
	}
	s.metrics.requests.WithLabelValues(r.cfg.Name, strconv.Itoa(code)).Inc()
	s.metrics.duration.WithLabelValues(r.cfg.Name).Observe(time.Since(start).Seconds())
}

// statusWriter remembers the status for the metrics; Unwrap keeps
// http.ResponseController (flushes, deadlines) working through it.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 && code >= 200 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
