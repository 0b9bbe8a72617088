package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/holdfast/holdfast/api"
	"github.com/holdfast/holdfast/internal/audit"
	"github.com/holdfast/holdfast/internal/tenant"
)

// buildMux registers every route of the table behind the same chain:
// metrics and logs, body limit, authentication, tenant scoping and
// authorization, the handler, then the audit entry for mutations.
func (s *Server) buildMux() (*http.ServeMux, error) {
	mux := http.NewServeMux()
	seen := map[string]bool{}
	for _, rt := range s.table {
		pattern := rt.method + " " + rt.path
		if seen[pattern] || seen[rt.id] {
			return nil, fmt.Errorf("route %s (%s) declared twice", pattern, rt.id)
		}
		seen[pattern], seen[rt.id] = true, true
		mux.Handle(pattern, s.wrap(rt))
	}
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /metrics", s.met.handler())
	return mux, nil
}

// ServeHTTP routes a request; what matches no route (404, or 405 with its
// Allow header) is answered as a problem document too, not the mux's text.
// Every answer, of every route or none, carries the security headers.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.lastRequest.Store(time.Now().UnixNano())
	secure(w.Header())
	if !isAPI(r.URL.Path) {
		s.portal.ServeHTTP(w, r)
		return
	}
	s.serveAPI(w, r)
}

// isAPI tells the API's paths from the portal's pages, which are all
// the others.
func isAPI(path string) bool {
	switch path {
	case "/v1", "/healthz", "/readyz", "/metrics":
		return true
	}
	return strings.HasPrefix(path, "/v1/")
}

// serveAPI serves the API; the portal calls it in process too.
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	h, pattern := s.mux.Handler(r)
	if pattern == "" {
		h.ServeHTTP(&asProblem{ResponseWriter: w, r: r}, r)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// secure sets the headers every answer carries. HSTS: browsers reach
// this origin only over HTTPS from then on (the server speaks TLS unless
// a TLS-terminating proxy is in front, which serves the same origin); it
// names no subdomains, which may be other services. nosniff: a browser
// takes a body for what its Content-Type says, never for a script or a
// page it guesses.
func secure(h http.Header) {
	h.Set("Strict-Transport-Security", "max-age=63072000")
	h.Set("X-Content-Type-Options", "nosniff")
}

// asProblem turns the mux's own error answers into problem documents.
type asProblem struct {
	http.ResponseWriter
	r     *http.Request
	wrote bool
}

func (a *asProblem) WriteHeader(code int) {
	if a.wrote {
		return
	}
	a.wrote = true
	allow := a.Header().Get("Allow")
	clear(a.Header()) // the mux's text answer's headers
	secure(a.Header())
	if allow != "" {
		a.Header().Set("Allow", allow)
	}
	p := problem(code, "not-found", "no such endpoint")
	if code == http.StatusMethodNotAllowed {
		p = problem(code, "method-not-allowed", "the endpoint does not take this method; see Allow")
	}
	writeProblem(a.ResponseWriter, a.r, p)
}

func (a *asProblem) Write(b []byte) (int, error) {
	if !a.wrote {
		a.WriteHeader(http.StatusNotFound)
	}
	return len(b), nil // the mux's text body is replaced by the problem
}

// statusClientClosed records a request whose client left before the
// answer.
const statusClientClosed = 499

// statusWriter remembers the status a handler answered.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (s *Server) wrap(rt *route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		q := &request{w: sw, r: r, route: rt}
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler { //nolint:errorlint // a sentinel panic value, compared as net/http does
					panic(v)
				}
				s.log.Error("handler panicked", "route", rt.id, "panic", fmt.Sprint(v))
				if sw.status == 0 {
					writeProblem(sw, r, problem(http.StatusInternalServerError, "", "internal error; the server log has the details"))
				}
			}
			s.finish(q, sw.status, time.Since(start))
		}()
		if err := s.serve(q); err != nil {
			if r.Context().Err() != nil {
				// The client went away; nobody reads an answer. 499 is
				// what the logs and metrics call that, as nginx does.
				sw.status = statusClientClosed
				return
			}
			p := toProblem(err)
			if p.Status >= 500 {
				s.log.Error("request failed", "route", rt.id, "path", r.URL.Path, "err", err)
			}
			writeProblem(sw, r, p)
		}
	})
}

func (s *Server) serve(q *request) error {
	r := q.r
	body, err := io.ReadAll(http.MaxBytesReader(q.w, r.Body, maxBody))
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return problem(http.StatusRequestEntityTooLarge, "too-large", fmt.Sprintf("the body exceeds %d bytes", maxBody))
		}
		return problem(http.StatusBadRequest, "bad-body", "the body could not be read")
	}
	q.body = body
	if q.route.perm != permPublic {
		c, err := s.authenticate(q.w, r, body)
		if err != nil {
			return err
		}
		q.caller = c
	}
	if err := s.authorize(q); err != nil {
		return err
	}
	return q.route.h(q)
}

// authorize applies the route's permission. Paths under a tenant are
// resolved here, once: a caller who is not a member of the tenant (and not
// an operator) is told it does not exist, exactly as for a tenant that does
// not, so nothing leaks about other tenants.
func (s *Server) authorize(q *request) error {
	p := q.route.perm
	if p == permPublic || p == permAuthenticated {
		return nil
	}
	c := q.caller
	name := q.r.PathValue("tenant")
	if name != "" {
		// A member's role and tenant were read with them, in this
		// request (authenticate); not a member, they learn nothing more
		// than of a tenant that does not exist.
		if !c.user.Operator {
			i := slices.IndexFunc(c.user.Memberships, func(m api.Membership) bool { return m.Tenant == name })
			if i < 0 {
				return notFound("tenant", name)
			}
			t := c.user.Tenants[i]
			q.tenant, q.role = &t, c.user.Memberships[i].Role
		} else {
			var t tenant.TenantRecord
			err := q.read(s, func(tx *tenant.Tx) error {
				var err error
				t, err = tx.TenantRef(name) // usage is summed only where it is shown (getTenant)
				return err
			})
			if errors.Is(err, tenant.ErrNotFound) {
				return notFound("tenant", name)
			}
			if err != nil {
				return err
			}
			q.tenant, q.role = &t, "operator"
		}
	}
	if c.user.Operator {
		return nil
	}
	if p == permOperator || q.tenant == nil || !slices.Contains(rolePerms[q.role], p) {
		return problem(http.StatusForbidden, "forbidden", fmt.Sprintf("this needs the %s permission", p))
	}
	return nil
}

// finish records metrics, the access log and, for mutations, the audit
// entry: who, what, on what, from where, and the outcome.
func (s *Server) finish(q *request, status int, took time.Duration) {
	s.met.observe(q.route.id, q.r.Method, status, took)
	actor := "anonymous"
	if q.caller != nil {
		actor = q.caller.user.Name
	}
	s.log.Info("request", "method", q.r.Method, "path", q.r.URL.Path, "route", q.route.id, "status", status,
		"took", took.Round(time.Microsecond), "actor", actor, "source", source(q.r))
	if q.r.Method == http.MethodGet || q.route.id == "login" || q.route.id == "refresh" || q.route.id == "oidcCallback" ||
		q.route.id == "passkeyLogin" || q.route.id == "passkeyChallenge" {
		// Reads are not audited; logins audit themselves, with their
		// reason. A challenge grants nothing: the login that answers it
		// is audited.
		return
	}
	e := audit.Entry{Actor: actor, Action: q.route.id, Object: q.r.URL.Path, Source: source(q.r), Result: result(status)}
	if q.tenant != nil {
		e.Tenant = q.tenant.Name
	}
	e.Detail = q.audit
	if q.caller != nil && q.caller.keyID != "" {
		if e.Detail == nil {
			e.Detail = map[string]string{}
		}
		e.Detail["via"], e.Detail["api_id"] = "apikey", q.caller.keyID
	}
	s.appendAudit(e)
}

func (s *Server) appendAudit(e audit.Entry) {
	// A request's audit entry is written even when the client has gone.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.audit.Append(ctx, e); err != nil {
		s.log.Error("audit append failed", "action", e.Action, "err", err)
		s.met.auditFailures.Inc()
	}
}

func result(status int) string {
	switch {
	case status < 400:
		return "ok"
	case status == http.StatusUnauthorized || status == http.StatusForbidden || status == http.StatusNotFound:
		return "denied: " + strconv.Itoa(status)
	default:
		return "error: " + strconv.Itoa(status)
	}
}

// source is the client's address. X-Forwarded-For is not trusted: a
// proxy in front must be configured to be seen, not assumed.
func source(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, api.Health{Status: "ok"})
}

// readyz is ready once the realizer has finished its first pass (the
// state it serves matches what exists), while it converges — not after
// unreadyAfter passes in a row failed as a whole — and while the database
// answers. Each check says why it fails.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	h := api.Health{Status: "ok", Checks: map[string]string{"database": "ok", "reconciler": "ok"}, Role: "follower"}
	if s.leading() {
		h.Role = "leader"
	}
	if err := s.db.DB().PingContext(r.Context()); err != nil {
		h.Status, h.Checks["database"] = "unavailable", "unreachable"
	}
	select {
	case <-s.ready:
		if why := s.real.unready(); why != "" {
			h.Status, h.Checks["reconciler"] = "unavailable", why
		}
	default:
		if s.cfg.Realize {
			h.Status, h.Checks["reconciler"] = "unavailable", "first pass not finished"
		}
	}
	status := http.StatusOK
	if h.Status != "ok" {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, h)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = jsonEncoder(w).Encode(v) // the client went away
}
