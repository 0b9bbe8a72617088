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
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
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

	// The route's metric series, resolved once (a label lookup hashes
	// and locks on every request otherwise): requests by status code,
	// filled in as codes are first seen.
	duration prometheus.Observer
	codes    sync.Map // int -> prometheus.Counter
}

// requests is the route's request counter for code.
func (r *route) requests(code int) prometheus.Counter {
	if c, ok := r.codes.Load(code); ok {
		return c.(prometheus.Counter)
	}
	c, _ := r.codes.LoadOrStore(code, r.s.metrics.requests.WithLabelValues(r.cfg.Name, strconv.Itoa(code)))
	return c.(prometheus.Counter)
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

// candidates appends to out the backends to try, in order: the up
// preferred ones from the round robin's next, then the up failover ones
// likewise (reached only when every preferred one fails). out is the
// caller's, usually on its stack: nothing is allocated per request.
func (r *route) candidates(out []*backend) []*backend {
	n := r.next.Add(1)
	for _, set := range [2][]*backend{r.preferred, r.failover} {
		for i := range set {
			if b := set[(n+uint64(i))%uint64(len(set))]; b.isUp() {
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
		Transport: s.routeTransport(r),
		// 0, not -1: flushing after every write costs a system call each
		// (a fifth of the CPU under load), while 0 still flushes at once
		// what needs it: server-sent events and answers of unknown length
		// (long polls, streams).
		FlushInterval: 0,
		BufferPool:    copyBuffers,
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

func (s *Server) routeTransport(r *route) *routeTransport {
	pool, t := s.transports()
	return &routeTransport{r: r, pool: pool, t: t}
}

// copyBuffers are the reverse proxy's buffers for copying answers: without
// a pool it allocates (and clears) 32 KiB per request.
var copyBuffers = &bufferPool{}

type bufferPool struct{ p sync.Pool }

func (bp *bufferPool) Get() []byte {
	if b, ok := bp.p.Get().(*[]byte); ok {
		return *b
	}
	return make([]byte, 32<<10)
}

func (bp *bufferPool) Put(b []byte) { bp.p.Put(&b) }

// transports are the server's upstream transports (connections pooled
// per backend address, shared by its routes): the direct pool for the
// requests it may repeat, http.Transport for the rest.
func (s *Server) transports() (*connPool, *http.Transport) {
	s.transportOnce.Do(func() {
		dial := (&net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}).DialContext
		// Each client connection may hold a backend connection at once:
		// the idle ones kept per backend must cover the clients'
		// concurrency, or every burst dials anew and closes the surplus
		// after (a dial and a TIME_WAIT per request).
		const maxIdle, idleTimeout = 1024, 90 * time.Second
		s.pool = &connPool{dial: dial, maxIdle: maxIdle, idleTimeout: idleTimeout, idle: map[string][]*backendConn{}}
		s.upstream = &http.Transport{
			DialContext:         dial,
			MaxIdleConnsPerHost: maxIdle,
			IdleConnTimeout:     idleTimeout,
			// The client's Accept-Encoding and the backend's encoding pass
			// as they are: a proxy neither asks for gzip nor unpacks it.
			DisableCompression: true,
		}
		go func() {
			tick := time.NewTicker(idleTimeout / 3)
			defer tick.Stop()
			for {
				select {
				case <-s.ctx.Done():
					s.pool.close()
					s.upstream.CloseIdleConnections()
					return
				case <-tick.C:
					s.pool.closeIdle(idleTimeout)
				}
			}
		}()
	})
	return s.pool, s.upstream
}

// routeTransport sends a request to the route's backends in turn: to the
// next when a dial failed (nothing was sent), and, once, when the backend
// connection broke before any byte of an answer to a request that may be
// repeated (the backend died under it).
type routeTransport struct {
	r    *route
	pool *connPool
	t    http.RoundTripper
}

// maxStackCandidates: the candidates of most routes fit on RoundTrip's
// stack; more spill to the heap.
const maxStackCandidates = 8

func (rt *routeTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	// A request without a body whose method is idempotent (RFC 9110
	// 9.2.2) may be sent again when the backend's connection broke before
	// it answered anything: the client has seen nothing. Those go through
	// the pool, which tells that case apart.
	repeatable := direct(req)
	var body *onceBody
	if !repeatable && req.Body != nil && req.Body != http.NoBody {
		body = &onceBody{r: req.Body}
		defer req.Body.Close()
	}
	var buf [maxStackCandidates]*backend
	retried := false
	var lastErr error
	for i, b := range rt.r.candidates(buf[:0]) {
		out := req
		if i > 0 {
			// A fresh request: the last may still be the transport's.
			out = req.WithContext(req.Context())
			u := *req.URL
			out.URL = &u
		}
		out.URL.Host = b.addr
		var resp *http.Response
		var err error
		if repeatable {
			resp, err = rt.pool.roundTrip(out)
		} else {
			if body != nil {
				if body.read.Load() {
					break // bytes went to a backend: not ours to resend
				}
				out.Body = body.fresh()
			}
			resp, err = rt.t.RoundTrip(out)
		}
		if err == nil {
			return resp, nil
		}
		lastErr = err
		var noAnswer errNoAnswer
		switch {
		case isDialError(err):
			rt.r.markDown(b, err)
			continue
		case repeatable && !retried && errors.As(err, &noAnswer) && req.Context().Err() == nil:
			retried = true
			rt.r.s.log.Info("backend connection broke before an answer: trying the next backend",
				"route", rt.r.cfg.Name, "backend", b.addr, "err", err)
			continue
		}
		return nil, err
	}
	switch {
	case lastErr == nil:
		return nil, errNoBackend
	case isDialError(lastErr):
		return nil, fmt.Errorf("%w: %w", errNoBackend, lastErr)
	}
	return nil, lastErr // the last backend broke too: a bad answer, not none
}

// replayable: the methods whose requests, without a body, a front door
// repeats on another backend without the client asking.
func replayable(method string) bool {
	return method == http.MethodGet || method == http.MethodHead || method == http.MethodOptions
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
	r.requests(code).Inc()
	r.duration.Observe(time.Since(start).Seconds())
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
