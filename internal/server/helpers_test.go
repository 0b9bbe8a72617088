package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/holdfast/holdfast/api"
	"github.com/holdfast/holdfast/internal/auth"
	"github.com/holdfast/holdfast/internal/sqldb/sqldbtest"
)

// env is a real server on a loopback TLS listener, with its operator
// logged in.
type env struct {
	t     testing.TB
	s     *Server
	ts    *httptest.Server
	admin cred
	clock *clock
}

// clock is a settable clock; tests move it instead of sleeping.
type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// cred authenticates a request: a bearer token or an API key.
type cred struct {
	bearer    string
	keyID     string
	keySecret []byte
	refresh   string
	user      string
}

var testClouds atomic.Int64

func newEnv(t testing.TB, cfg Config) *env {
	t.Helper()
	c := &clock{}
	c.ns.Store(time.Now().UnixNano())
	if cfg.SpecPath == "" {
		cfg.SpecPath = "../../examples/tasmanian"
	}
	if cfg.StateDir == "" {
		cfg.StateDir = t.TempDir()
	}
	if cfg.Rename == "" {
		cfg.Rename = fmt.Sprintf("srv%d", testClouds.Add(1))
	}
	if cfg.Now == nil {
		cfg.Now = c.now
	}
	if cfg.Database == "" {
		cfg.Database = sqldbtest.URL(t, cfg.StateDir)
	}
	if os.Getenv("HOLDFAST_TEST_LOG") != "" { // the servers' logs on stderr, to see why a test failed
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	ts := httptest.NewTLSServer(s.Handler())
	e := &env{t: t, s: s, ts: ts, clock: c}
	t.Cleanup(func() {
		ts.Close()
		if err := s.Shutdown(context.Background()); err != nil { // t.Context is done by now
			t.Error(err)
		}
	})
	if s.Bootstrap.User == "" {
		t.Fatal("first start made no operator")
	}
	e.admin = e.login(s.Bootstrap.User, string(s.Bootstrap.Password.Expose()), "")
	return e
}

// do sends a request and returns the status, headers and body.
func (e *env) do(c cred, method, path string, body any, hdr ...string) (int, http.Header, []byte) {
	e.t.Helper()
	var b []byte
	switch v := body.(type) {
	case nil:
	case []byte:
		b = v
	case string:
		b = []byte(v)
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			e.t.Fatal(err)
		}
	}
	req, err := http.NewRequest(method, e.ts.URL+path, bytes.NewReader(b))
	if err != nil {
		e.t.Fatal(err)
	}
	if b != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	switch {
	case c.bearer != "":
		req.Header.Set("Authorization", "Bearer "+c.bearer)
	case c.keyID != "":
		if err := auth.SignRequest(req, b, c.keyID, c.keySecret, e.clock.now()); err != nil {
			e.t.Fatal(err)
		}
	}
	resp, err := e.ts.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, out
}

// must sends a request that must answer want, and decodes the answer.
func (e *env) must(c cred, want int, method, path string, body, out any, hdr ...string) http.Header {
	e.t.Helper()
	status, h, b := e.do(c, method, path, body, hdr...)
	if status != want {
		e.t.Fatalf("%s %s: status %d, want %d: %s", method, path, status, want, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			e.t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
	return h
}

// problemOf decodes a problem answer, checking its media type.
func (e *env) problemOf(h http.Header, b []byte) api.Problem {
	e.t.Helper()
	if ct := h.Get("Content-Type"); ct != "application/problem+json" {
		e.t.Fatalf("content type %q, want application/problem+json: %s", ct, b)
	}
	var p api.Problem
	if err := json.Unmarshal(b, &p); err != nil {
		e.t.Fatal(err)
	}
	return p
}

func (e *env) login(user, password, totp string) cred {
	e.t.Helper()
	var tok api.Tokens
	e.must(cred{}, http.StatusOK, "POST", "/v1/auth/login", api.LoginRequest{User: user, Password: password, TOTP: totp}, &tok)
	return cred{bearer: tok.AccessToken, refresh: tok.RefreshToken, user: user}
}

// tenantWith creates a tenant with a user of the given role and returns
// that user's credentials.
func (e *env) tenantWith(name string, q *api.Quota, users map[string]string) map[string]cred {
	e.t.Helper()
	e.must(e.admin, http.StatusCreated, "POST", "/v1/tenants", api.TenantCreate{Name: name, Quota: q}, nil)
	out := map[string]cred{}
	for user, role := range users {
		pw := "password-of-" + user
		e.must(e.admin, http.StatusCreated, "POST", "/v1/tenants/"+name+"/users?role="+role, api.UserCreate{Name: user, Password: pw}, nil)
		out[user] = e.login(user, pw, "")
	}
	return out
}

// apiKey creates an API key for c.
func (e *env) apiKey(c cred) cred {
	e.t.Helper()
	var k api.APIKeySecret
	e.must(c, http.StatusCreated, "POST", "/v1/me/apikeys", api.APIKeyCreate{Name: "test"}, &k)
	secret, err := base64.RawURLEncoding.DecodeString(k.Secret)
	if err != nil {
		e.t.Fatal(err)
	}
	return cred{keyID: k.ID, keySecret: secret, user: c.user}
}

func sshKey(seed string) string {
	// A syntactically valid ed25519 key: 32 bytes derived from seed.
	sum := sha256.Sum256([]byte(seed))
	var b bytes.Buffer
	for _, part := range [][]byte{[]byte("ssh-ed25519"), sum[:]} {
		b.Write([]byte{0, 0, 0, byte(len(part))})
		b.Write(part)
	}
	return "ssh-ed25519 " + base64.StdEncoding.EncodeToString(b.Bytes()) + " " + strings.ReplaceAll(seed, " ", "-")
}

func b64(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }

// restart stops the server (if it still runs) and starts a new one on
// the same state directory, as a restart of `holdfast serve` would;
// change, when not nil, alters the configuration it starts with.
func (e *env) restart(change func(*Config)) {
	e.t.Helper()
	e.ts.Close()
	if err := e.s.Shutdown(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	cfg := e.s.cfg
	if change != nil {
		change(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	if s.Bootstrap.User != "" {
		e.t.Fatal("a restart made another operator")
	}
	s.Start()
	e.t.Cleanup(func() {
		if err := s.Shutdown(context.Background()); err != nil {
			e.t.Error(err)
		}
	})
	e.s, e.ts = s, httptestTLS(e.t, s)
}

func httptestTLS(t testing.TB, s *Server) *httptest.Server {
	ts := httptest.NewTLSServer(s.Handler())
	t.Cleanup(ts.Close)
	return ts
}
