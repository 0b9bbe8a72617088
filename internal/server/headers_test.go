package server

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/api"
)

// TestSecurityHeaders: every answer carries HSTS and nosniff — of routes
// and of no route, successes, problems, the event stream, health and
// metrics.
func TestSecurityHeaders(t *testing.T) {
	e := newEnv(t, Config{})
	for _, c := range []struct {
		method, path string
		who          cred
		body         any
		want         int
	}{
		{"GET", "/v1/me", e.admin, nil, http.StatusOK},
		{"GET", "/v1/me", cred{}, nil, http.StatusUnauthorized},
		{"POST", "/v1/auth/login", cred{}, api.LoginRequest{User: "nobody", Password: "wrong-password-1"}, http.StatusUnauthorized},
		{"POST", "/v1/tenants", e.admin, `{"name": 1}`, http.StatusUnprocessableEntity},
		{"POST", "/v1/tenants", e.admin, api.TenantCreate{Name: "acme"}, http.StatusCreated},
		{"GET", "/v1/tenants/nosuch", e.admin, nil, http.StatusNotFound},
		{"DELETE", "/v1/tenants/acme", e.admin, nil, http.StatusNoContent},
		{"GET", "/v1/nosuch", cred{}, nil, http.StatusNotFound},
		{"PATCH", "/v1/me", e.admin, nil, http.StatusMethodNotAllowed},
		{"GET", "/v1/openapi.json", cred{}, nil, http.StatusOK},
		{"GET", "/healthz", cred{}, nil, http.StatusOK},
		{"GET", "/readyz", cred{}, nil, http.StatusOK},
		{"GET", "/metrics", cred{}, nil, http.StatusOK},
	} {
		status, h, b := e.do(c.who, c.method, c.path, c.body)
		if status != c.want {
			t.Errorf("%s %s: %d, want %d: %s", c.method, c.path, status, c.want, b)
		}
		checkSecurityHeaders(t, c.method+" "+c.path, h)
	}
	// The event stream, whose headers are sent before anything streams.
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, e.ts.URL+"/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+e.admin.bearer)
	resp, err := e.ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	checkSecurityHeaders(t, "GET /v1/events", resp.Header)
}

func checkSecurityHeaders(t *testing.T, what string, h http.Header) {
	t.Helper()
	if hsts := h.Get("Strict-Transport-Security"); !strings.HasPrefix(hsts, "max-age=") || hsts == "max-age=0" {
		t.Errorf("%s: Strict-Transport-Security %q", what, hsts)
	}
	if v := h.Get("X-Content-Type-Options"); v != "nosniff" {
		t.Errorf("%s: X-Content-Type-Options %q", what, v)
	}
}

// TestAnswersCarryLength: a JSON answer larger than net/http buffers
// before it starts chunking (2 KiB) still says its length, so that a
// client can tell a cut answer from a whole one.
func TestAnswersCarryLength(t *testing.T) {
	e := newEnv(t, Config{})
	for i := range 16 {
		name := fmt.Sprintf("tenant-%02d", i)
		if status, _, b := e.do(e.admin, "POST", "/v1/tenants", api.TenantCreate{Name: name, DisplayName: strings.Repeat("x", 100)}); status != http.StatusCreated {
			t.Fatalf("create %s: %d %s", name, status, b)
		}
	}
	status, h, b := e.do(e.admin, "GET", "/v1/tenants?limit=100", nil)
	if status != http.StatusOK {
		t.Fatalf("list: %d %s", status, b)
	}
	if len(b) <= 2048 {
		t.Fatalf("the page is %d bytes: too small to be chunked", len(b))
	}
	if got := h.Get("Content-Length"); got != strconv.Itoa(len(b)) {
		t.Errorf("Content-Length %q for a body of %d bytes", got, len(b))
	}
}
