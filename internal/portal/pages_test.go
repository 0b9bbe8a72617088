package portal_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/api"
	_ "github.com/holdfast/holdfast/internal/engine/engines" // sites name engines
	"github.com/holdfast/holdfast/internal/server"
)

// pageEnv is a control plane (recording, not realizing) serving the
// portal over TLS, and browsers without JavaScript: they read pages and
// send the requests the pages' script would.
type pageEnv struct {
	t  *testing.T
	s  *server.Server
	ts *httptest.Server
}

func newPageEnv(t *testing.T) *pageEnv {
	t.Helper()
	s, err := server.New(server.Config{SpecPath: "../../examples/tasmanian", StateDir: t.TempDir(), Rename: "portal"})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	ts := httptest.NewTLSServer(s.Handler())
	t.Cleanup(func() {
		ts.Close()
		if err := s.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return &pageEnv{t: t, s: s, ts: ts}
}

type pageBrowser struct {
	e    *pageEnv
	c    *http.Client
	csrf string
}

var csrfMeta = regexp.MustCompile(`<meta name="csrf-token" content="([^"]+)">`)

// browser opens the sign-in page, as a person would first, which gives
// it its CSRF token.
func (e *pageEnv) browser() *pageBrowser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		e.t.Fatal(err)
	}
	c := *e.ts.Client()
	c.Jar = jar
	b := &pageBrowser{e: e, c: &c}
	body := b.page("/login").body
	m := csrfMeta.FindSubmatch(body)
	if m == nil {
		e.t.Fatalf("the sign-in page has no CSRF token: %s", body)
	}
	b.csrf = string(m[1])
	return b
}

// shown is a page as a browser got it.
type shown struct {
	status int
	url    *url.URL // where the redirects ended
	header http.Header
	body   []byte
}

// page GETs a page, following redirects.
func (b *pageBrowser) page(path string) shown {
	b.e.t.Helper()
	resp, err := b.c.Get(b.e.ts.URL + path)
	if err != nil {
		b.e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.e.t.Fatal(err)
	}
	return shown{status: resp.StatusCode, url: resp.Request.URL, header: resp.Header, body: body}
}

// api sends what a page's form sends: JSON with the CSRF header.
func (b *pageBrowser) api(method, path string, in, out any) {
	b.e.t.Helper()
	var rd io.Reader
	if in != nil {
		j, _ := json.Marshal(in)
		rd = bytes.NewReader(j)
	}
	req, _ := http.NewRequest(method, b.e.ts.URL+path, rd)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(api.HeaderCSRF, b.csrf)
	resp, err := b.c.Do(req)
	if err != nil {
		b.e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		b.e.t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, body)
	}
	if out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			b.e.t.Fatal(err)
		}
	}
}

func (b *pageBrowser) login(user, password string) {
	b.e.t.Helper()
	b.api("POST", "/v1/auth/login", api.LoginRequest{User: user, Password: password, Cookie: true}, nil)
	// The login gave a new CSRF token; pages carry it from now on.
	body := b.page("/account").body
	m := csrfMeta.FindSubmatch(body)
	if m == nil {
		b.e.t.Fatalf("no CSRF token after login: %s", body)
	}
	b.csrf = string(m[1])
}

// TestEveryPageRenders signs in as an operator and as tenant users and
// opens every page: each answers 200 with the security headers, shows
// what the API holds, and links only within the caller's reach.
func TestEveryPageRenders(t *testing.T) {
	e := newPageEnv(t)
	op := e.browser()

	// Without a session, a page sends the browser to sign in, and back.
	if u := op.page("/t/acme/instances?x=1").url; u.Path != "/login" || u.Query().Get("next") != "/t/acme/instances?x=1" {
		t.Fatalf("a page without a session ended at %s, want /login?next=/t/acme/instances?x=1", u)
	}

	op.login(e.s.Bootstrap.User, string(e.s.Bootstrap.Password.Expose()))
	op.api("POST", "/v1/tenants", api.TenantCreate{Name: "acme"}, nil)
	op.api("POST", "/v1/tenants", api.TenantCreate{Name: "other"}, nil)
	op.api("POST", "/v1/tenants/acme/users?role=tenant-admin", api.UserCreate{Name: "alice", Password: "alice-password-1"}, nil)
	op.api("POST", "/v1/tenants/other/users?role=tenant-admin", api.UserCreate{Name: "bob", Password: "bob-password-12"}, nil)

	for _, path := range []string{"/operator/tenants", "/operator/tenants/acme", "/operator/users", "/operator/catalogue", "/operator/audit", "/operator/status", "/account"} {
		checkPage(t, path, op.page(path), http.StatusOK)
	}
	// The operator's views show what holdfast status and holdfast audit
	// verify do: nothing of the example cloud runs (this server records
	// and does not realize), and the log verifies.
	if b := op.page("/operator/status").body; !bytes.Contains(b, []byte(`data-status="missing"`)) || !bytes.Contains(b, []byte(`data-name="instance/`)) {
		t.Errorf("the status page does not show the cloud's resources as missing: %s", b)
	}
	if b := op.page("/operator/audit").body; !bytes.Contains(b, []byte(`data-ok="true"`)) || !bytes.Contains(b, []byte("createTenant")) {
		t.Errorf("the audit page shows no verified log with its entries: %s", b)
	}
	if u := op.page("/").url; u.Path != "/operator/tenants" {
		t.Errorf("an operator's start page is %s, want /operator/tenants", u.Path)
	}

	alice := e.browser()
	alice.login("alice", "alice-password-1")
	alice.api("POST", "/v1/tenants/acme/networks", api.NetworkCreate{Name: "net"}, nil)
	alice.api("POST", "/v1/tenants/acme/sshkeys", api.SSHKeyCreate{Name: "laptop", PublicKey: testSSHKey}, nil)
	alice.api("POST", "/v1/tenants/acme/instances", api.InstanceCreate{Name: "web", Flavor: "standard", Template: "debian-12", Network: "net", SSHKeys: []string{"laptop"}}, nil)
	if u := alice.page("/").url; u.Path != "/t/acme/instances" {
		t.Errorf("alice's start page is %s, want /t/acme/instances", u.Path)
	}
	wants := map[string][]string{
		"/t/acme/instances":             {`data-instance="web"`, `data-field="status"`},
		"/t/acme/instances/new":         {`value="net"`, `value="laptop"`, `value="standard"`},
		"/t/acme/instances/web":         {`data-action="stop"`, `dialog id="confirm"`, "instance.create"},
		"/t/acme/instances/web/console": {`id="terminal"`, `data-socket="/v1/tenants/acme/instances/web/console"`, "/static/vendor/xterm/xterm.js"},
		"/t/acme/networks":              {`data-name="net"`},
		"/t/acme/sshkeys":               {`data-name="laptop"`},
		"/t/acme/members":               {`data-name="alice"`},
		"/t/acme/usage":                 {`data-name="instances"`},
		"/t/acme/audit":                 {"createInstance"},
		"/account":                      {`id="totp-enroll"`, `id="apikey-create"`},
	}
	for path, want := range wants {
		p := alice.page(path)
		checkPage(t, path, p, http.StatusOK)
		body := p.body
		for _, w := range want {
			if !bytes.Contains(body, []byte(w)) {
				t.Errorf("%s lacks %s", path, w)
			}
		}
		if bytes.Contains(body, []byte("/operator/")) {
			t.Errorf("%s links operator pages for a tenant admin", path)
		}
	}
	for _, path := range []string{"/operator/tenants", "/operator/users"} {
		checkPage(t, path, alice.page(path), http.StatusForbidden)
	}

	// Another tenant's admin finds none of it: the not-found page, as
	// for what does not exist.
	bob := e.browser()
	bob.login("bob", "bob-password-12")
	for _, path := range []string{"/t/acme/instances", "/t/acme/instances/web", "/t/acme/networks", "/t/acme/audit", "/t/acme/members", "/t/nosuch/instances", "/t/other/instances/web", "/nowhere"} {
		p := bob.page(path)
		checkPage(t, path, p, http.StatusNotFound)
		body := p.body
		if !bytes.Contains(body, []byte("<h1>Not found</h1>")) || bytes.Contains(body, []byte("web")) && !strings.HasSuffix(path, "web") {
			t.Errorf("%s: not the not-found page: %s", path, body)
		}
	}
}

// checkPage checks a page's status and the headers every page carries.
func checkPage(t *testing.T, path string, p shown, want int) {
	t.Helper()
	body := p.body
	if p.status != want {
		t.Errorf("%s: status %d, want %d: %s", path, p.status, want, body)
		return
	}
	csp := p.header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
		t.Errorf("%s: Content-Security-Policy %q", path, csp)
	}
	for h, v := range map[string]string{"X-Frame-Options": "DENY", "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"} {
		if p.header.Get(h) != v {
			t.Errorf("%s: %s %q, want %q", path, h, p.header.Get(h), v)
		}
	}
	if bytes.Contains(body, []byte("<script>")) || bytes.Contains(body, []byte(" style=")) || bytes.Contains(body, []byte(" on")) && regexp.MustCompile(` on[a-z]+=`).Match(body) {
		t.Errorf("%s has inline script or style", path)
	}
	if u := p.url; u.Path != path && u.Path != pathOnly(path) {
		t.Errorf("%s: ended at %s", path, u)
	}
}

func pathOnly(p string) string {
	u, err := url.Parse(p)
	if err != nil {
		return p
	}
	return u.Path
}

var testSSHKey = fmt.Sprintf("ssh-ed25519 %s portal@test", "AAAAC3NzaC1lZDI1NTE5AAAAIGkqE9rjwjXn1o3y1pQXqX0jFJ3G0tX2wM8k7Zr8wX1H")
