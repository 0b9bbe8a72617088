package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/holdfast/holdfast/api"
	"github.com/holdfast/holdfast/internal/audit"
	"github.com/holdfast/holdfast/internal/deploy"
	"github.com/holdfast/holdfast/internal/engine"
	"github.com/holdfast/holdfast/internal/tenant"
)

// consoleRoutes is the web console: a terminal on an instance over a
// WebSocket.
func (s *Server) consoleRoutes() []*route {
	return []*route{
		{method: http.MethodGet, path: "/v1/tenants/{tenant}/instances/{instance}/console", id: "instanceConsole",
			summary: "Open a terminal on a running instance over a WebSocket: binary messages are the terminal's bytes both ways; " +
				`a text message {"resize":{"cols":N,"rows":M}} resizes it`,
			tag: "instances", perm: permTenantWrite, status: http.StatusSwitchingProtocols,
			query: []param{{"cols", "The terminal's width, 1-1000 (default 80).", "integer"}, {"rows", "The terminal's height, 1-1000 (default 24).", "integer"}},
			h:     s.console},
	}
}

// consolePing is how often a console is pinged: proxies drop connections
// that carry nothing, and a client gone without a word is noticed.
const consolePing = 30 * time.Second

// console opens a terminal on the instance and relays it over a
// WebSocket until either side ends it, the instance stops or is deleted,
// the server stops, or the caller loses the right to it — as an event
// stream ends (events.go): the credential expires, the session is logged
// out or revoked, the key revoked, the user deleted or no longer a writer
// in the tenant. The console needs tenant:write, since whoever has it can
// change the instance.
//
// Cross-site WebSocket hijacking: a browser sends a site's cookies with
// a WebSocket from any page, and no CSRF header can be asked of it. So
// the Origin header, which browsers always send on a WebSocket and pages
// cannot forge, must name this very host (coder/websocket's default check,
// applied here first so that the refusal is a problem document). Clients
// that are not browsers send no Origin and authenticate with a bearer
// token or a signed request, which no other site's page can make.
func (s *Server) console(q *request) error {
	if err := sameOrigin(q.r); err != nil {
		return err
	}
	size, err := consoleSize(q)
	if err != nil {
		return err
	}
	name := q.r.PathValue("instance")
	in, err := s.consoleInstance(q, name)
	if err != nil {
		return err
	}
	if !isWebSocket(q.r) {
		return problem(http.StatusUpgradeRequired, "websocket-required", "the console is a WebSocket: send an upgrade request")
	}
	found, err := deploy.FindInstance(q.r.Context(), s.cfg.StateDir, s.cfg.Database, s.cloud, in.Spec)
	if err != nil {
		s.log.Error("console: finding the instance", "instance", in.Spec, "err", err)
		return problem(http.StatusConflict, "instance-not-running", fmt.Sprintf("instance %q is not running", name))
	}
	con, err := found.Console(q.r.Context(), s.real.desired.Load(), size)
	switch {
	case errors.Is(err, deploy.ErrNotOffered):
		return problem(http.StatusNotImplemented, "console-unavailable", "the engine of this instance's site offers no console")
	case errors.Is(err, engine.ErrNoConsole):
		return problem(http.StatusConflict, "instance-not-running", fmt.Sprintf("instance %q is not running", name))
	case err != nil:
		return err
	}
	defer con.Close()
	ws, err := websocket.Accept(q.w, q.r, nil) // checks the Origin again
	if err != nil {
		s.log.Info("console: WebSocket refused", "err", err)
		q.status = http.StatusBadRequest
		return nil // Accept has answered
	}
	q.status = http.StatusSwitchingProtocols
	return s.relayConsole(q, in, con, ws)
}

// consoleInstance is the instance the path names, if it is running.
func (s *Server) consoleInstance(q *request, name string) (tenant.InstanceRecord, error) {
	var in tenant.InstanceRecord
	err := q.do(s, func(tx *tenant.Tx) error {
		var err error
		in, err = tx.Instance(q.tenant.ID, name)
		return err
	})
	if errors.Is(err, tenant.ErrNotFound) {
		return in, notFound("instance", name)
	}
	if err != nil {
		return in, err
	}
	if in.Status != api.StatusRunning {
		return in, problem(http.StatusConflict, "instance-not-running", fmt.Sprintf("instance %q is %s: only a running instance has a console", name, in.Status))
	}
	return in, nil
}

// sameOrigin refuses a request whose Origin names another host than the
// one it was sent to.
func sameOrigin(r *http.Request) error {
	o := r.Header.Get("Origin")
	if o == "" {
		return nil
	}
	u, err := url.Parse(o)
	if err != nil || u.Host == "" || !strings.EqualFold(u.Host, r.Host) {
		return problem(http.StatusForbidden, "cross-origin", "a console is opened only by pages of this origin")
	}
	return nil
}

func isWebSocket(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}

// consoleSize reads the terminal's first size from the query.
func consoleSize(q *request) (engine.TermSize, error) {
	size := engine.DefaultTermSize
	for _, f := range []struct {
		name string
		to   *uint16
	}{{"cols", &size.Cols}, {"rows", &size.Rows}} {
		v := q.r.URL.Query().Get(f.name)
		if v == "" {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return size, pageProblem(f.name, "must be a whole number from 1 to 1000")
		}
		*f.to = uint16(n)
	}
	return size, nil
}

// relayConsole copies between the terminal and the WebSocket, and audits
// the session's opening and end.
func (s *Server) relayConsole(q *request, in tenant.InstanceRecord, con engine.Console, ws *websocket.Conn) error {
	start := s.now()
	object := instancePath(q.tenant.Name, in.Name)
	entry := func(action string, detail map[string]string) audit.Entry {
		e := audit.Entry{Actor: q.caller.user.Name, Tenant: q.tenant.Name, Action: action, Object: object,
			Source: source(q.r), Result: "ok", Detail: detail}
		if q.caller.keyID != "" {
			e.Detail["via"], e.Detail["api_id"] = "apikey", q.caller.keyID
		}
		return e
	}
	s.appendAudit(entry(api.ConsoleOpen, map[string]string{"instance": in.Spec}))
	s.log.Info("console opened", "actor", q.caller.user.Name, "instance", in.Spec)

	// The request's context is not used past the upgrade (the connection
	// is hijacked); the session has its own.
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	// Reads and writes on the WebSocket are not bound to ctx: a context
	// ending under them drops the connection without a close message.
	// They end when the socket is closed, with its status and reason.
	wsCtx := context.Background()
	var in_, out atomic.Int64
	go func() { // terminal -> client
		buf := make([]byte, 32<<10)
		for {
			n, err := con.Read(buf)
			if n > 0 {
				if werr := ws.Write(wsCtx, websocket.MessageBinary, buf[:n]); werr != nil {
					cancel(errClientGone)
					return
				}
				out.Add(int64(n))
			}
			if err != nil {
				cancel(errConsoleEnded)
				return
			}
		}
	}()
	go func() { // client -> terminal
		for {
			typ, b, err := ws.Read(wsCtx)
			if err != nil {
				cancel(errClientGone)
				return
			}
			if typ == websocket.MessageBinary {
				if _, err := con.Write(b); err != nil {
					cancel(errConsoleEnded)
					return
				}
				in_.Add(int64(len(b)))
				continue
			}
			var m api.ConsoleControl
			if err := json.Unmarshal(b, &m); err != nil || m.Resize == nil || len(api.Check(*m.Resize)) > 0 {
				continue // not a control message this server knows: ignored, as a terminal ignores what it cannot parse
			}
			if err := con.Resize(engine.TermSize{Cols: uint16(m.Resize.Cols), Rows: uint16(m.Resize.Rows)}); err != nil {
				s.log.Info("console: resize failed", "instance", in.Spec, "err", err)
			}
		}
	}()

	why := s.watchConsole(ctx, q, in, ws)
	cancel(why)
	why = context.Cause(ctx)
	code, reason := websocket.StatusNormalClosure, why.Error()
	if errors.Is(why, errStreamEnds) {
		code = websocket.StatusPolicyViolation
	}
	_ = ws.Close(code, reason) // the client may be gone
	_ = con.Close()
	took := s.now().Sub(start)
	s.appendAudit(entry(api.ConsoleClose, map[string]string{"instance": in.Spec, "reason": reason,
		"duration": took.Round(time.Millisecond).String(),
		"bytes_in": strconv.FormatInt(in_.Load(), 10), "bytes_out": strconv.FormatInt(out.Load(), 10)}))
	s.log.Info("console closed", "actor", q.caller.user.Name, "instance", in.Spec, "reason", reason, "took", took.Round(time.Millisecond))
	return nil
}

var (
	errClientGone     = errors.New("the client closed the console")
	errConsoleEnded   = errors.New("the terminal ended")
	errInstanceGone   = errors.New("the instance stopped or was deleted")
	errServerStopping = errors.New("the server is stopping")
)

// watchConsole waits until the console must end and says why: the relay
// ended it (ctx), or the caller, the instance or the server did.
func (s *Server) watchConsole(ctx context.Context, q *request, in tenant.InstanceRecord, ws *websocket.Conn) error {
	changed, unwatch := s.hub.watch(watcher{user: q.caller.user.ID, key: q.caller.keyID})
	defer unwatch()
	events, stop := s.hub.subscribe(0)
	defer func() { stop() }()
	object := instancePath(q.tenant.Name, in.Name)
	again := time.NewTicker(recheckEvery)
	defer again.Stop()
	ping := time.NewTicker(consolePing)
	defer ping.Stop()
	var expiry <-chan time.Time
	if !q.caller.until.IsZero() {
		t := time.NewTimer(q.caller.until.Sub(s.now()))
		defer t.Stop()
		expiry = t.C
	}
	// recheck: the rights again, as a new request would find them; a
	// console needs tenant:write there, still.
	recheck := func() error {
		if err := s.recheck(q); err != nil {
			return err
		}
		return s.stillWriter(ctx, q)
	}
	for {
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-s.real.stopping():
			return errServerStopping
		case <-expiry:
			return errStreamEnds
		case <-changed:
			if err := recheck(); err != nil {
				return err
			}
		case <-again.C:
			if err := recheck(); err != nil {
				return err
			}
		case e, ok := <-events:
			if !ok { // cut off as too slow: subscribe again
				events, stop = s.hub.subscribe(0)
				continue
			}
			if e.Object != object {
				continue
			}
			if err := s.instanceStillRunning(ctx, q, in.Name); err != nil {
				return err
			}
		case <-ping.C:
			// A client that does not answer a ping within one more
			// interval is gone; the console's relay notices its
			// context ending.
			pctx, cancel := context.WithTimeout(context.Background(), consolePing)
			err := ws.Ping(pctx)
			cancel()
			if err != nil && ctx.Err() == nil {
				return errClientGone
			}
		}
	}
}

// stillWriter checks that the caller may still open a console in the
// tenant (a role lowered to viewer ends it).
func (s *Server) stillWriter(ctx context.Context, q *request) error {
	if q.caller.user.Operator {
		return nil
	}
	var role string
	err := s.db.Do(ctx, func(tx *tenant.Tx) error {
		var err error
		role, err = tx.Role(q.tenant.ID, q.caller.user.ID)
		return err
	})
	if errors.Is(err, tenant.ErrNotFound) {
		return errStreamEnds
	}
	if err != nil {
		return err
	}
	for _, p := range rolePerms[role] {
		if p == permTenantWrite {
			return nil
		}
	}
	return errStreamEnds
}

// instanceStillRunning reads the instance again: gone, or no longer
// running, ends its console.
func (s *Server) instanceStillRunning(ctx context.Context, q *request, name string) error {
	var in tenant.InstanceRecord
	err := s.db.Do(ctx, func(tx *tenant.Tx) error {
		var err error
		in, err = tx.Instance(q.tenant.ID, name)
		return err
	})
	if errors.Is(err, tenant.ErrNotFound) || (err == nil && in.Status != api.StatusRunning) {
		return errInstanceGone
	}
	return err
}

// sessionToken is the access token a long request's session caller
// authenticated with: the bearer token, or a browser's access cookie.
// (A browser whose access cookie had expired when the request began was
// let in by its refresh cookie: its stream then ends at the first
// re-check, and the client reconnects with the new cookies.)
func sessionToken(q *request) string {
	if q.caller != nil && q.caller.cookie {
		if c, err := q.r.Cookie(api.CookieAccess); err == nil {
			return c.Value
		}
		return ""
	}
	_, token := credentials(q.r)
	return token
}
