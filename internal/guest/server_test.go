package guest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/compile"
	_ "github.com/holdfast/holdfast/internal/engine/engines" // the example's engine
	"github.com/holdfast/holdfast/internal/guest"
	"github.com/holdfast/holdfast/internal/overlay"
	"github.com/holdfast/holdfast/internal/spec"
)

// cloud is examples/arvandor compiled, with its members' certificates
// issued under a fresh state directory, as an apply leaves it.
type cloud struct {
	dir   string
	st    *compile.State
	creds *guest.Credentials
	srv   *guest.Server
}

func newCloud(t *testing.T) *cloud {
	t.Helper()
	s, diags := spec.Check("../../examples/arvandor")
	if diags.HasErrors() {
		t.Fatal(diags.Err())
	}
	st, _, diags := compile.Compile(s, compile.Allocations{})
	if diags.HasErrors() {
		t.Fatal(diags.Err())
	}
	dir := t.TempDir()
	m := overlay.NewMembers(dir, st.Cloud, st)
	for _, r := range st.Resources {
		if r.ID.Kind == compile.ResMember {
			if err := m.Ensure(context.Background(), r); err != nil {
				t.Fatal(err)
			}
		}
	}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	applied := filepath.Join(dir, "applied.json")
	if err := os.WriteFile(applied, b, 0o600); err != nil {
		t.Fatal(err)
	}
	creds, err := guest.OpenCredentials(dir, st.Cloud)
	if err != nil {
		t.Fatal(err)
	}
	return &cloud{dir: dir, st: st, creds: creds, srv: &guest.Server{StateDir: dir, Cloud: st.Cloud, Credentials: creds,
		State: guest.FileState(applied), Reports: guest.NewReports(dir, st.Cloud)}}
}

func (c *cloud) instance(t *testing.T, name string) compile.Instance {
	t.Helper()
	for _, in := range c.st.Instances {
		if in.Name == name {
			return in
		}
	}
	t.Fatalf("no instance %s", name)
	return compile.Instance{}
}

// get asks for the config with token, from the address from.
func (c *cloud) get(token, from, etag string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, "/v1/agent/config", nil)
	r.RemoteAddr = from
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	if etag != "" {
		r.Header.Set("If-None-Match", etag)
	}
	w := httptest.NewRecorder()
	c.srv.Handler().ServeHTTP(w, r)
	return w
}

func TestTokensAreStableDistinctAndRotate(t *testing.T) {
	c := newCloud(t)
	pg, app := compile.InstanceID("home", "postgres-01"), compile.InstanceID("home", "app")
	tok := c.creds.Token(pg)
	if !strings.HasPrefix(tok, guest.TokenPrefix) || len(tok) < 40 {
		t.Fatalf("token %q: want %s and 256 bits", tok, guest.TokenPrefix)
	}
	again, err := guest.OpenCredentials(c.dir, c.st.Cloud)
	if err != nil {
		t.Fatal(err)
	}
	if again.Token(pg) != tok {
		t.Fatal("the token changed when the credentials were opened again")
	}
	if c.creds.Token(app) == tok {
		t.Fatal("two instances have one token")
	}
	other, err := guest.OpenCredentials(t.TempDir(), c.st.Cloud)
	if err != nil {
		t.Fatal(err)
	}
	if other.Token(pg) == tok {
		t.Fatal("another master key derives the same token")
	}
	appTok := c.creds.Token(app)
	ids := []compile.ID{pg, app}
	if id, ok := c.creds.Identify(tok, ids); !ok || id != pg {
		t.Fatalf("Identify = %v, %v; want %v", id, ok, pg)
	}
	if err := c.creds.Rotate(pg); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.creds.Identify(tok, ids); ok {
		t.Fatal("a rotated token is still accepted")
	}
	if again, _ = guest.OpenCredentials(c.dir, c.st.Cloud); again.Token(pg) == tok || again.Token(pg) != c.creds.Token(pg) {
		t.Fatal("the rotation is not kept")
	}
	if c.creds.Token(app) != appTok {
		t.Fatal("rotating one instance touched another")
	}
	// Rotated by another process (holdfast agent rotate), the old token
	// is refused here at the next request.
	if err := again.Rotate(app); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.creds.Identify(appTok, ids); ok {
		t.Fatal("a token rotated by another process is still accepted")
	}
	if !c.creds.Equal(app, again.Token(app)) {
		t.Fatal("the token another process rotated to is not accepted")
	}
	if c.creds.Equal(app, "") {
		t.Fatal("an empty token is accepted")
	}
}

func TestConfigIsTheInstancesOwn(t *testing.T) {
	c := newCloud(t)
	pg := c.instance(t, "postgres-01")
	tok := c.creds.Token(compile.InstanceID(pg.Site, pg.Name))
	w := c.get(tok, pg.NICs[0].IP+":40000", "")
	if w.Code != http.StatusOK {
		t.Fatalf("config: %d %s", w.Code, w.Body)
	}
	var got guest.Config
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got.Instance != compile.InstanceID("home", "postgres-01") || got.Overlay == nil {
		t.Fatalf("config for %v, overlay %v", got.Instance, got.Overlay)
	}
	if got.Overlay.Address != "10.10.10.30/24" || strings.Join(got.Overlay.Groups, ",") != "infrastructure" {
		t.Fatalf("overlay %s %v, want 10.10.10.30/24 [infrastructure]", got.Overlay.Address, got.Overlay.Groups)
	}
	for _, want := range []string{"BEGIN NEBULA CERTIFICATE", "PRIVATE KEY", "inbound_action: drop"} {
		if !strings.Contains(got.Overlay.Nebula, want) {
			t.Errorf("the Nebula config has no %q", want)
		}
	}
	etag := w.Header().Get("ETag")
	if etag != `"`+got.Version()+`"` {
		t.Fatalf("ETag %s, version %s", etag, got.Version())
	}
	if w := c.get(tok, pg.NICs[0].IP+":40000", etag); w.Code != http.StatusNotModified {
		t.Fatalf("unchanged config with its ETag: %d, want 304", w.Code)
	}
}

func TestRefusedAlike(t *testing.T) {
	c := newCloud(t)
	pg, app := c.instance(t, "postgres-01"), c.instance(t, "app")
	pgTok := c.creds.Token(compile.InstanceID(pg.Site, pg.Name))
	from := pg.NICs[0].IP + ":40000"
	cases := map[string]*httptest.ResponseRecorder{
		"no token":                    c.get("", from, ""),
		"a made-up token":             c.get(guest.TokenPrefix+strings.Repeat("A", 43), from, ""),
		"its token from another's IP": c.get(pgTok, app.NICs[0].IP+":40000", ""),
		"its token from outside":      c.get(pgTok, "198.51.100.7:40000", ""),
		"another's token from its IP": c.get(c.creds.Token(compile.InstanceID(app.Site, app.Name)), from, ""),
		"not a holdfast token at all": c.get("secret", from, ""),
	}
	var body string
	for name, w := range cases {
		if w.Code != http.StatusUnauthorized {
			t.Errorf("%s: %d, want 401", name, w.Code)
		}
		if body == "" {
			body = w.Body.String()
		} else if w.Body.String() != body {
			t.Errorf("%s: the refusal differs from another's: %s", name, w.Body)
		}
	}
	if err := c.creds.Rotate(compile.InstanceID(pg.Site, pg.Name)); err != nil {
		t.Fatal(err)
	}
	if w := c.get(pgTok, from, ""); w.Code != http.StatusUnauthorized {
		t.Fatalf("a rotated token: %d, want 401", w.Code)
	}
}

func TestHealthIsKeptAndSummarized(t *testing.T) {
	c := newCloud(t)
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	c.srv.Now = func() time.Time { return now }
	app := c.instance(t, "app")
	id := compile.InstanceID(app.Site, app.Name)
	h := guest.Health{Version: "test", Config: "v1", Services: map[string]guest.Service{"overlay": {OK: true, Detail: "3 tunnels"}}}
	b, _ := json.Marshal(h)
	r := httptest.NewRequest(http.MethodPost, "/v1/agent/health", bytes.NewReader(b))
	r.RemoteAddr = app.NICs[0].IP + ":1"
	r.Header.Set("Authorization", "Bearer "+c.creds.Token(id))
	w := httptest.NewRecorder()
	c.srv.Handler().ServeHTTP(w, r)
	if w.Code != http.StatusNoContent {
		t.Fatalf("health: %d %s", w.Code, w.Body)
	}
	rep, ok, err := c.srv.Reports.Get(id)
	if err != nil || !ok {
		t.Fatalf("report kept: %v %v", ok, err)
	}
	if state, detail := guest.Summary(rep, ok, now.Add(time.Second)); state != "ok" || detail != "overlay: 3 tunnels" {
		t.Fatalf("summary %q %q", state, detail)
	}
	if state, _ := guest.Summary(rep, ok, now.Add(guest.StaleAfter+time.Second)); state != "silent" {
		t.Fatalf("an old report is %q, want silent", state)
	}
	if state, _ := guest.Summary(guest.Report{}, false, now); state != "unknown" {
		t.Fatalf("no report is %q, want unknown", state)
	}
	h.Services["overlay"] = guest.Service{Detail: "Nebula is not running"}
	if state, _ := guest.Summary(guest.Report{Health: h, Received: now}, true, now); state != "unhealthy" {
		t.Fatalf("a failing service is %q, want unhealthy", state)
	}
}

// Through the local socket the token alone identifies the instance: the
// local engine's instances all reach the one socket.
func TestLocalSocketNeedsOnlyTheToken(t *testing.T) {
	c := newCloud(t)
	sockDir, err := os.MkdirTemp("", "hfguest") // short: a socket path has 107 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	ln, err := guest.ListenSocket(sockDir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", ln.Addr().String())
	}}}
	get := func(token string) int {
		req, _ := http.NewRequest(http.MethodGet, "http://guest/v1/agent/config", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode
	}
	if code := get(c.creds.Token(compile.InstanceID("home", "dns"))); code != http.StatusOK {
		t.Fatalf("over the socket: %d, want 200", code)
	}
	if code := get(guest.TokenPrefix + "nope"); code != http.StatusUnauthorized {
		t.Fatalf("a wrong token over the socket: %d, want 401", code)
	}
}

// A request holding the current version waits for the next one: a
// revocation (the blocklist every member gets) answers it at once; with
// nothing changing it ends in 304 when its wait is over.
func TestConfigWaitsForAChange(t *testing.T) {
	c := newCloud(t)
	pg := c.instance(t, "postgres-01")
	tok := c.creds.Token(compile.InstanceID(pg.Site, pg.Name))
	from := pg.NICs[0].IP + ":40000"
	first := c.get(tok, from, "")
	etag := first.Header().Get("ETag")

	get := func(wait string) (*httptest.ResponseRecorder, time.Duration) {
		r := httptest.NewRequest(http.MethodGet, "/v1/agent/config?wait="+wait, nil)
		r.RemoteAddr = from
		r.Header.Set("Authorization", "Bearer "+tok)
		r.Header.Set("If-None-Match", etag)
		w := httptest.NewRecorder()
		start := time.Now()
		c.srv.Handler().ServeHTTP(w, r)
		return w, time.Since(start)
	}
	if w, took := get("300ms"); w.Code != http.StatusNotModified || took < 300*time.Millisecond {
		t.Fatalf("nothing changed: %d after %s, want 304 after the wait", w.Code, took)
	}

	done := make(chan struct{})
	go func() {
		defer close(done)
		// app leaves the overlay: its certificate is revoked, and every
		// member's blocklist grows.
		for _, r := range c.st.Resources {
			if r.ID == compile.MemberID("home", "app") {
				if err := overlay.NewMembers(c.dir, c.st.Cloud, c.st).Delete(context.Background(), r); err != nil {
					t.Error(err)
				}
			}
		}
	}()
	w, took := get("10s")
	<-done
	if w.Code != http.StatusOK || w.Header().Get("ETag") == etag {
		t.Fatalf("after a revocation: %d, ETag %s (was %s)", w.Code, w.Header().Get("ETag"), etag)
	}
	if took > 5*time.Second {
		t.Fatalf("the change took %s to arrive", took)
	}
	if w, _ := get("nonsense"); w.Code != http.StatusBadRequest {
		t.Fatalf("?wait=nonsense: %d, want 400", w.Code)
	}
}
