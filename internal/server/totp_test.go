package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/holdfast/holdfast/api"
	"github.com/holdfast/holdfast/internal/auth"
)

// restart stops the server and starts a new one on the same state
// directory, as a restart of `holdfast serve` would.
func (e *env) restart() {
	e.t.Helper()
	e.ts.Close()
	if err := e.s.Shutdown(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	s, err := New(e.s.cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	s.Start()
	ts := httptest.NewTLSServer(s.Handler())
	e.t.Cleanup(func() {
		ts.Close()
		if err := s.Shutdown(context.Background()); err != nil {
			e.t.Error(err)
		}
	})
	e.s, e.ts = s, ts
}

// TestTOTPReplayAcrossRestart: a TOTP code once accepted is refused again,
// also after a restart, whether it was accepted by a login or by the
// confirmation of the enrolment.
func TestTOTPReplayAcrossRestart(t *testing.T) {
	e := newEnv(t, Config{})
	alice := e.tenantWith("acme", nil, map[string]string{"alice": api.RoleMember})["alice"]
	var en api.TOTPEnrollment
	e.must(alice, http.StatusCreated, "POST", "/v1/me/totp", nil, &en)
	secret, err := auth.DecodeTOTPSecret(en.Secret)
	if err != nil {
		t.Fatal(err)
	}
	confirmed := auth.TOTPCode(secret, e.clock.now())
	e.must(alice, http.StatusNoContent, "POST", "/v1/me/totp/confirm", api.TOTPConfirm{Code: confirmed}, nil)

	e.restart()
	status, _, b := e.do(cred{}, "POST", "/v1/auth/login", api.LoginRequest{User: "alice", Password: "password-of-alice", TOTP: confirmed})
	if status != http.StatusUnauthorized {
		t.Fatalf("the confirmation's code, after a restart: %d %s", status, b)
	}

	e.clock.advance(30 * time.Second)
	code := auth.TOTPCode(secret, e.clock.now())
	e.login("alice", "password-of-alice", code)
	e.restart()
	status, _, b = e.do(cred{}, "POST", "/v1/auth/login", api.LoginRequest{User: "alice", Password: "password-of-alice", TOTP: code})
	if status != http.StatusUnauthorized {
		t.Fatalf("a login's code, after a restart: %d %s", status, b)
	}
	var log api.Page[api.AuditEntry]
	e.must(e.admin, http.StatusOK, "GET", "/v1/audit?limit=1000", nil, &log)
	if !hasEntry(log.Items, "login", "denied: totp replayed") {
		t.Errorf("audit log lacks the replays: %+v", log.Items)
	}
	e.clock.advance(30 * time.Second)
	e.login("alice", "password-of-alice", auth.TOTPCode(secret, e.clock.now())) // the next code is fine
}
