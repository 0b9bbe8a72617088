package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/holdfast/holdfast/api"
	"github.com/holdfast/holdfast/internal/auth"
	"github.com/holdfast/holdfast/internal/engine/proxmox/pvetest"
	"github.com/holdfast/holdfast/internal/testenv"
)

// dialConsole opens the console at path as c, with the extra headers
// given; status is the handshake's answer when it was refused.
func (e *env) dialConsole(c cred, path string, hdr ...string) (ws *websocket.Conn, status int, err error) {
	e.t.Helper()
	h := http.Header{}
	for i := 0; i+1 < len(hdr); i += 2 {
		h.Set(hdr[i], hdr[i+1])
	}
	hc := e.ts.Client()
	switch {
	case c.bearer != "":
		h.Set("Authorization", "Bearer "+c.bearer)
	case c.keyID != "":
		// The handshake is signed as any request is.
		hc = &http.Client{Transport: signing{e.ts.Client().Transport, c, e.clock.now}}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, e.ts.URL+path, &websocket.DialOptions{HTTPClient: hc, HTTPHeader: h})
	if resp != nil {
		status = resp.StatusCode
		if resp.Body != nil {
			resp.Body.Close()
		}
	}
	return ws, status, err
}

type signing struct {
	rt  http.RoundTripper
	c   cred
	now func() time.Time
}

func (s signing) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	if err := auth.SignRequest(r, nil, s.c.keyID, s.c.keySecret, s.now()); err != nil {
		return nil, err
	}
	return s.rt.RoundTrip(r)
}

// term is a console seen from its client.
type term struct {
	t    *testing.T
	ws   *websocket.Conn
	seen strings.Builder
}

func (tm *term) typeIn(s string) {
	tm.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tm.ws.Write(ctx, websocket.MessageBinary, []byte(s)); err != nil {
		tm.t.Fatal(err)
	}
}

func (tm *term) resize(cols, rows int) {
	tm.t.Helper()
	b, _ := json.Marshal(api.ConsoleControl{Resize: &api.TermSize{Cols: cols, Rows: rows}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tm.ws.Write(ctx, websocket.MessageText, b); err != nil {
		tm.t.Fatal(err)
	}
}

// expect reads until re matches what the terminal showed since the last
// match, for at most 20 seconds.
func (tm *term) expect(re *regexp.Regexp) []string {
	tm.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		if m := re.FindStringSubmatch(tm.seen.String()); m != nil {
			tm.seen.Reset()
			return m
		}
		typ, b, err := tm.ws.Read(ctx)
		if err != nil {
			tm.t.Fatalf("waiting for %q: %v; the terminal showed %q", re, err, tm.seen.String())
		}
		if typ != websocket.MessageBinary {
			tm.t.Fatalf("a %v message from the server", typ)
		}
		tm.seen.Write(b)
	}
}

// ended waits, at most 20 seconds, for the server to close the console,
// and returns the close status.
func (tm *term) ended() websocket.StatusCode {
	tm.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		_, _, err := tm.ws.Read(ctx)
		if err == nil {
			continue // what the terminal still showed
		}
		if ctx.Err() != nil {
			tm.t.Fatalf("the console is still open after 20s")
		}
		return websocket.CloseStatus(err)
	}
}

func (e *env) openConsole(t *testing.T, c cred, path string, hdr ...string) *term {
	t.Helper()
	ws, status, err := e.dialConsole(c, path, hdr...)
	if err != nil {
		t.Fatalf("opening %s: %v (status %d)", path, err, status)
	}
	t.Cleanup(func() { _ = ws.CloseNow() }) // closed already, often
	return &term{t: t, ws: ws}
}

// TestConsole opens the console of an instance the local engine really
// runs: a shell in it, which knows the instance's name and follows the
// terminal's size; who may open it, from where; that it ends when the
// caller's session does, when the user goes, and when the instance
// stops; and that each is audited.
// realizedWeb makes network net and instance web in tenant acme, and
// waits until the cloud has them.
func (e *env) realizedWeb(c cred) api.Instance {
	e.t.Helper()
	var op api.Operation
	e.must(c, http.StatusAccepted, "POST", "/v1/tenants/acme/networks", api.NetworkCreate{Name: "net"}, &op)
	e.wait(c, op)
	e.must(c, http.StatusAccepted, "POST", "/v1/tenants/acme/instances",
		api.InstanceCreate{Name: "web", Flavor: "burstable", Template: "debian-12", Network: "net"}, &op)
	e.wait(c, op)
	var web api.Instance
	e.must(c, http.StatusOK, "GET", "/v1/tenants/acme/instances/web", nil, &web)
	return web
}

func TestConsole(t *testing.T) {
	testenv.NeedRoot(t, "the local engine makes namespaces, bridges, nftables rules and containers")
	state := t.TempDir()
	e := newEnv(t, Config{Realize: true, Resync: -1, StateDir: state, Now: time.Now})
	cloud := e.s.Cloud()
	t.Cleanup(func() { destroyCloud(t, e.s.cfg.SpecPath, state, cloud) })
	acme := e.tenantWith("acme", nil, map[string]string{"alice": api.RoleTenantAdmin, "vic": api.RoleViewer, "mal": api.RoleMember, "max": api.RoleMember})
	bob := e.tenantWith("other", nil, map[string]string{"bob": api.RoleTenantAdmin})["bob"]
	alice := acme["alice"]

	web := e.realizedWeb(alice)
	const path = "/v1/tenants/acme/instances/web/console"
	host := strings.TrimPrefix(e.ts.URL, "https://")

	// As a browser opens it: from a page of this origin.
	tm := e.openConsole(t, alice, path+"?cols=100&rows=30", "Origin", e.ts.URL)
	// The marker is made by the shell, so that the echo of what was
	// typed cannot match it.
	tm.typeIn("echo \"HN-$(hostname)-$(stty size)-$TERM\"\n")
	tm.expect(regexp.MustCompile(`HN-` + regexp.QuoteMeta(web.Spec) + `-30 100-xterm-256color`))
	tm.resize(120, 40)
	tm.typeIn("echo \"SZ-$(stty size)\"\n")
	tm.expect(regexp.MustCompile(`SZ-40 120`))
	tm.typeIn("exit\n")
	if code := tm.ended(); code != websocket.StatusNormalClosure {
		t.Errorf("the shell exited: close status %v, want normal closure", code)
	}

	// With an API key: the handshake is signed like any request.
	key := e.apiKey(alice)
	tm = e.openConsole(t, key, path)
	tm.typeIn("hostname\n")
	tm.expect(regexp.MustCompile(regexp.QuoteMeta(web.Spec) + `\r?\n`))
	tm.ws.Close(websocket.StatusNormalClosure, "done")

	// Who may not, or not from there.
	refused := func(c cred, want int, why string, hdr ...string) {
		t.Helper()
		ws, status, err := e.dialConsole(c, path, hdr...)
		if err == nil {
			_ = ws.CloseNow()
			t.Errorf("%s: the console opened", why)
			return
		}
		if status != want {
			t.Errorf("%s: %v (status %d), want status %d", why, err, status, want)
		}
	}
	refused(bob, http.StatusNotFound, "another tenant's admin")
	refused(acme["vic"], http.StatusForbidden, "a viewer")
	refused(cred{}, http.StatusUnauthorized, "no credential")
	refused(alice, http.StatusForbidden, "a page of another site", "Origin", "https://evil.example")
	refused(alice, http.StatusForbidden, "a page of another port", "Origin", "https://"+strings.Split(host, ":")[0]+":1")
	if status, _, b := e.do(alice, "GET", path, nil); status != http.StatusUpgradeRequired {
		t.Errorf("a plain GET: %d %s, want 426", status, b)
	}
	if status, _, b := e.do(alice, "GET", "/v1/tenants/acme/instances/nope/console", nil); status != http.StatusNotFound {
		t.Errorf("no such instance: %d %s", status, b)
	}

	// Logging out ends the session's consoles at once.
	session := e.login("alice", "password-of-alice", "")
	tm = e.openConsole(t, session, path)
	tm.typeIn("echo \"UP-$((6*7))\"\n")
	tm.expect(regexp.MustCompile(`UP-42`))
	e.must(session, http.StatusNoContent, "POST", "/v1/auth/logout", nil, nil)
	if code := tm.ended(); code != websocket.StatusPolicyViolation {
		t.Errorf("after logout: close status %v, want policy violation", code)
	}
	// A browser's session, in cookies: logging out ends its console too.
	b := e.browser()
	if st, _, body := b.do(true, "POST", "/v1/auth/login", api.LoginRequest{User: "alice", Password: "password-of-alice", Cookie: true}); st != http.StatusOK {
		t.Fatalf("cookie login: %d %s", st, body)
	}
	b.csrf = b.cookie(api.CookieCSRF)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, e.ts.URL+path, &websocket.DialOptions{HTTPClient: b.c, HTTPHeader: http.Header{"Origin": {e.ts.URL}}})
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		t.Fatalf("the console with cookies: %v", err)
	}
	tm = &term{t: t, ws: ws}
	tm.typeIn("echo \"UP-$((6*7))\"\n")
	tm.expect(regexp.MustCompile(`UP-42`))
	if st, _, body := b.do(true, "POST", "/v1/auth/logout", nil); st != http.StatusNoContent {
		t.Fatalf("cookie logout: %d %s", st, body)
	}
	if code := tm.ended(); code != websocket.StatusPolicyViolation {
		t.Errorf("after the browser logged out: close status %v, want policy violation", code)
	}
	// A member made a viewer may no longer have a console.
	tm = e.openConsole(t, acme["max"], path)
	tm.typeIn("echo \"UP-$((6*7))\"\n")
	tm.expect(regexp.MustCompile(`UP-42`))
	e.must(alice, http.StatusOK, "PUT", "/v1/tenants/acme/members", api.MembershipCreate{User: "max", Role: api.RoleViewer}, nil)
	if code := tm.ended(); code != websocket.StatusPolicyViolation {
		t.Errorf("after the role was lowered: close status %v, want policy violation", code)
	}
	// Deleting the user ends theirs.
	tm = e.openConsole(t, acme["mal"], path)
	tm.typeIn("echo \"UP-$((6*7))\"\n")
	tm.expect(regexp.MustCompile(`UP-42`))
	e.must(e.admin, http.StatusNoContent, "DELETE", "/v1/users/mal", nil, nil)
	if code := tm.ended(); code != websocket.StatusPolicyViolation {
		t.Errorf("after the user was deleted: close status %v, want policy violation", code)
	}
	// Stopping the instance ends its console; a stopped one has none.
	tm = e.openConsole(t, alice, path)
	tm.typeIn("echo \"UP-$((6*7))\"\n")
	tm.expect(regexp.MustCompile(`UP-42`))
	var op api.Operation
	e.must(alice, http.StatusAccepted, "POST", "/v1/tenants/acme/instances/web/stop", nil, &op)
	tm.ended()
	e.wait(alice, op)
	refused(alice, http.StatusConflict, "a stopped instance")

	// Each console was audited when opened and when closed.
	var audit api.Page[api.AuditEntry]
	e.must(alice, http.StatusOK, "GET", "/v1/tenants/acme/audit?limit=1000", nil, &audit)
	var opened, closed int
	var first *api.AuditEntry
	for i, a := range audit.Items {
		if a.Object != "/v1/tenants/acme/instances/web" {
			continue
		}
		switch a.Action {
		case api.ConsoleOpen:
			opened++
		case api.ConsoleClose:
			closed++
			if a.Actor == "alice" && a.Detail["reason"] == errConsoleEnded.Error() && first == nil {
				first = &audit.Items[i]
			}
		}
	}
	if opened != 7 || closed != 7 {
		t.Errorf("audit: %d console.open, %d console.close entries, want 7 each", opened, closed)
	}
	if first == nil || first.Detail["bytes_in"] == "0" || first.Detail["bytes_out"] == "0" || first.Detail["duration"] == "" {
		t.Errorf("the first console's close entry: %+v", first)
	}
}

// On Proxmox the console is PVE's serial console of the instance's VM,
// relayed through termproxy: proven against emulated clusters, whose
// stand-in shell answers hostname with the VM's name.
func TestConsoleOnProxmox(t *testing.T) {
	path, _ := pvetest.Emulated(t, "../../examples/tasmanian", 30)
	e := newEnv(t, Config{SpecPath: path, Realize: true, Resync: -1, Now: time.Now})
	alice := e.tenantWith("acme", nil, map[string]string{"alice": api.RoleTenantAdmin})["alice"]
	web := e.realizedWeb(alice)

	tm := e.openConsole(t, alice, "/v1/tenants/acme/instances/web/console?cols=100&rows=30")
	tm.typeIn("hostname\r")
	tm.expect(regexp.MustCompile(`hostname\r\n` + regexp.QuoteMeta(web.Spec) + `\r\n`))
	tm.resize(120, 40)
	tm.typeIn("stty size\r")
	tm.expect(regexp.MustCompile(`\r\n40 120\r\n`))
	tm.typeIn("exit\r")
	if code := tm.ended(); code != websocket.StatusNormalClosure {
		t.Errorf("after exit: close status %v, want normal closure", code)
	}
}

// A long request's caller is read again from the credential it came
// with: for a browser, the access cookie (consoles and event streams of
// cookie sessions would end at the first re-check otherwise); after
// logout, the same cookie no longer reads.
func TestCurrentReadsTheCookieSession(t *testing.T) {
	e := newEnv(t, Config{})
	e.tenantWith("acme", nil, map[string]string{"alice": api.RoleMember})
	b := e.browser()
	if st, _, body := b.do(true, "POST", "/v1/auth/login", api.LoginRequest{User: "alice", Password: "password-of-alice", Cookie: true}); st != http.StatusOK {
		t.Fatalf("cookie login: %d %s", st, body)
	}
	b.csrf = b.cookie(api.CookieCSRF)
	r := httptest.NewRequest(http.MethodGet, "/v1/events", nil)
	r.AddCookie(&http.Cookie{Name: api.CookieAccess, Value: b.cookie(api.CookieAccess)})
	c, err := e.s.authenticate(httptest.NewRecorder(), r, nil)
	if err != nil || !c.cookie {
		t.Fatalf("authenticate by cookie: %+v, %v", c, err)
	}
	q := &request{r: r, caller: c}
	if again, err := e.s.current(q); err != nil || again.user.Name != "alice" {
		t.Fatalf("current: %+v, %v", again, err)
	}
	if st, _, body := b.do(true, "POST", "/v1/auth/logout", nil); st != http.StatusNoContent {
		t.Fatalf("cookie logout: %d %s", st, body)
	}
	if _, err := e.s.current(q); err == nil {
		t.Error("current after logout: still authenticated")
	}
}
