package server

import (
	"net/http"
	"testing"
	"time"

	"github.com/holdfast/holdfast/api"
	"github.com/holdfast/holdfast/internal/auth"
)

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

	e.restart(nil)
	status, _, b := e.do(cred{}, "POST", "/v1/auth/login", api.LoginRequest{User: "alice", Password: "password-of-alice", TOTP: confirmed})
	if status != http.StatusUnauthorized {
		t.Fatalf("the confirmation's code, after a restart: %d %s", status, b)
	}

	e.clock.advance(30 * time.Second)
	code := auth.TOTPCode(secret, e.clock.now())
	e.login("alice", "password-of-alice", code)
	e.restart(nil)
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
