package server

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/api"
	"github.com/holdfast/holdfast/internal/auth"
)

// TestRefreshTokenReuse: a refresh token works once; presenting a spent
// one ends the whole session — the token it was exchanged for and the
// session's access tokens stop working too.
func TestRefreshTokenReuse(t *testing.T) {
	e := newEnv(t, Config{})
	s1 := e.login(e.s.Bootstrap.User, string(e.s.Bootstrap.Password.Expose()), "")
	var t2 api.Tokens
	e.must(cred{}, http.StatusOK, "POST", "/v1/auth/refresh", api.RefreshRequest{RefreshToken: s1.refresh}, &t2)
	if t2.RefreshToken == s1.refresh || t2.AccessToken == "" {
		t.Fatal("refresh did not rotate")
	}
	e.must(cred{bearer: t2.AccessToken}, http.StatusOK, "GET", "/v1/me", nil, nil)

	// The spent token again: refused, and the family is revoked.
	status, h, b := e.do(cred{}, "POST", "/v1/auth/refresh", api.RefreshRequest{RefreshToken: s1.refresh})
	if status != http.StatusUnauthorized || e.problemOf(h, b).Type != problemType("refresh-failed") {
		t.Fatalf("reuse: %d %s", status, b)
	}
	for name, c := range map[string]cred{"rotated access token": {bearer: t2.AccessToken}, "first access token": {bearer: s1.bearer}} {
		if status, _, b := e.do(c, "GET", "/v1/me", nil); status != http.StatusUnauthorized {
			t.Errorf("%s after reuse: %d %s", name, status, b)
		}
	}
	if status, _, _ := e.do(cred{}, "POST", "/v1/auth/refresh", api.RefreshRequest{RefreshToken: t2.RefreshToken}); status != http.StatusUnauthorized {
		t.Errorf("rotated refresh token after reuse: %d", status)
	}
	// Other sessions of the same user are not affected.
	e.must(e.admin, http.StatusOK, "GET", "/v1/me", nil, nil)
	// Both outcomes are in the audit log.
	var log api.Page[api.AuditEntry]
	e.must(e.admin, http.StatusOK, "GET", "/v1/audit?limit=1000", nil, &log)
	if !hasEntry(log.Items, "refresh", "denied: refresh token reused; session revoked") || !hasEntry(log.Items, "refresh", "ok") {
		t.Errorf("audit log lacks the refreshes: %+v", log.Items)
	}
}

func hasEntry(es []api.AuditEntry, action, result string) bool {
	for _, x := range es {
		if x.Action == action && x.Result == result {
			return true
		}
	}
	return false
}

// TestAccessTokenExpires: access tokens last 15 minutes.
func TestAccessTokenExpires(t *testing.T) {
	e := newEnv(t, Config{})
	e.clock.advance(14 * time.Minute)
	e.must(e.admin, http.StatusOK, "GET", "/v1/me", nil, nil)
	e.clock.advance(2 * time.Minute)
	if status, _, _ := e.do(e.admin, "GET", "/v1/me", nil); status != http.StatusUnauthorized {
		t.Fatalf("a 16-minute-old access token: %d", status)
	}
	var tok api.Tokens
	e.must(cred{}, http.StatusOK, "POST", "/v1/auth/refresh", api.RefreshRequest{RefreshToken: e.admin.refresh}, &tok)
	e.must(cred{bearer: tok.AccessToken}, http.StatusOK, "GET", "/v1/me", nil, nil)
}

// TestHMACReplay: a signed request is good once, inside its window, for
// the exact method, path, query and body, with a live key.
func TestHMACReplay(t *testing.T) {
	e := newEnv(t, Config{})
	key := e.apiKey(e.admin)
	var me api.Me
	e.must(key, http.StatusOK, "GET", "/v1/me", nil, &me)
	if me.Via != "apikey" || me.APIKey != key.keyID || me.User.Name != e.s.Bootstrap.User {
		t.Fatalf("me %+v", me)
	}

	send := func(req *http.Request) int {
		resp, err := e.ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	body := []byte(`{"name":"replayed"}`)
	signed := func(method, path string, b []byte, at time.Time) *http.Request {
		req, _ := http.NewRequest(method, e.ts.URL+path, bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/json")
		if err := auth.SignRequest(req, b, key.keyID, key.keySecret, at); err != nil {
			t.Fatal(err)
		}
		return req
	}
	clone := func(req *http.Request, b []byte) *http.Request {
		r2, _ := http.NewRequest(req.Method, req.URL.String(), bytes.NewReader(b))
		r2.Header = req.Header.Clone()
		return r2
	}
	first := signed("POST", "/v1/tenants", body, e.clock.now())
	replay := clone(first, body)
	if got := send(first); got != http.StatusCreated {
		t.Fatalf("signed create: %d", got)
	}
	if got := send(replay); got != http.StatusUnauthorized {
		t.Fatalf("replayed request: %d, want 401", got)
	}
	// Tampering with anything signed fails.
	orig := signed("POST", "/v1/tenants", []byte(`{"name":"other"}`), e.clock.now())
	if got := send(clone(orig, []byte(`{"name":"evil"}`))); got != http.StatusUnauthorized {
		t.Errorf("changed body: %d", got)
	}
	q := signed("GET", "/v1/tenants?limit=5", nil, e.clock.now())
	q.URL.RawQuery = "limit=6"
	if got := send(q); got != http.StatusUnauthorized {
		t.Errorf("changed query: %d", got)
	}
	// Outside the ±5 minute window.
	if got := send(signed("GET", "/v1/me", nil, e.clock.now().Add(-6*time.Minute))); got != http.StatusUnauthorized {
		t.Errorf("old timestamp: %d", got)
	}
	if got := send(signed("GET", "/v1/me", nil, e.clock.now().Add(6*time.Minute))); got != http.StatusUnauthorized {
		t.Errorf("future timestamp: %d", got)
	}
	// Rotation: the old key stops, the new one works; revocation stops it.
	var rotated api.APIKeySecret
	e.must(e.admin, http.StatusCreated, "POST", "/v1/me/apikeys/"+key.keyID+"/rotate", nil, &rotated)
	if got := send(signed("GET", "/v1/me", nil, e.clock.now())); got != http.StatusUnauthorized {
		t.Errorf("rotated-out key: %d", got)
	}
	nk := cred{keyID: rotated.ID, keySecret: mustB64(t, rotated.Secret)}
	e.must(nk, http.StatusOK, "GET", "/v1/me", nil, nil)
	e.must(e.admin, http.StatusNoContent, "DELETE", "/v1/me/apikeys/"+rotated.ID, nil, nil)
	if status, _, _ := e.do(nk, "GET", "/v1/me", nil); status != http.StatusUnauthorized {
		t.Errorf("revoked key: %d", status)
	}
	// The secret is never shown again.
	var keys api.Page[api.APIKey]
	_, _, raw := e.do(e.admin, "GET", "/v1/me/apikeys", nil)
	e.must(e.admin, http.StatusOK, "GET", "/v1/me/apikeys", nil, &keys)
	if strings.Contains(string(raw), rotated.Secret) || strings.Contains(string(raw), "secret") {
		t.Errorf("key list shows secrets: %s", raw)
	}
}

// TestTOTP: enrolment, a login that needs the code, and no replay of a
// code once used.
func TestTOTP(t *testing.T) {
	e := newEnv(t, Config{})
	users := e.tenantWith("acme", nil, map[string]string{"alice": api.RoleMember})
	alice := users["alice"]
	var en api.TOTPEnrollment
	e.must(alice, http.StatusCreated, "POST", "/v1/me/totp", nil, &en)
	secret, err := auth.DecodeTOTPSecret(en.Secret)
	if err != nil || !strings.HasPrefix(en.URI, "otpauth://totp/") {
		t.Fatalf("enrollment %+v: %v", en, err)
	}
	// A wrong code does not confirm.
	status, h, b := e.do(alice, "POST", "/v1/me/totp/confirm", api.TOTPConfirm{Code: "000000"})
	if status != http.StatusUnprocessableEntity || e.problemOf(h, b).Errors[0].Field != "code" {
		t.Fatalf("wrong code: %d %s", status, b)
	}
	e.must(alice, http.StatusNoContent, "POST", "/v1/me/totp/confirm", api.TOTPConfirm{Code: auth.TOTPCode(secret, e.clock.now())}, nil)

	e.clock.advance(30 * time.Second) // the next step: the confirmation code is spent
	status, h, b = e.do(cred{}, "POST", "/v1/auth/login", api.LoginRequest{User: "alice", Password: "password-of-alice"})
	if status != http.StatusUnauthorized || e.problemOf(h, b).Type != problemType("totp-required") {
		t.Fatalf("login without code: %d %s", status, b)
	}
	code := auth.TOTPCode(secret, e.clock.now())
	tok := e.login("alice", "password-of-alice", code)
	var me api.Me
	e.must(tok, http.StatusOK, "GET", "/v1/me", nil, &me)
	if !me.User.TOTP || strings.Join(me.Methods, ",") != "pwd,otp" {
		t.Errorf("me %+v", me)
	}
	// The same code again is a replay.
	if status, _, b := e.do(cred{}, "POST", "/v1/auth/login", api.LoginRequest{User: "alice", Password: "password-of-alice", TOTP: code}); status != http.StatusUnauthorized {
		t.Fatalf("replayed code: %d %s", status, b)
	}
}

// TestLoginLockout: repeated failures lock the account, even for the right
// password, until the lock ends; unknown users look the same.
func TestLoginLockout(t *testing.T) {
	e := newEnv(t, Config{})
	user, pw := e.s.Bootstrap.User, string(e.s.Bootstrap.Password.Expose())
	for i := range 5 {
		status, _, b := e.do(cred{}, "POST", "/v1/auth/login", api.LoginRequest{User: user, Password: "wrong-password-123"})
		if status != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d %s", i, status, b)
		}
	}
	status, h, b := e.do(cred{}, "POST", "/v1/auth/login", api.LoginRequest{User: user, Password: pw})
	if status != http.StatusTooManyRequests || h.Get("Retry-After") == "" || e.problemOf(h, b).Type != problemType("locked") {
		t.Fatalf("locked account with the right password: %d %v %s", status, h, b)
	}
	e.clock.advance(2 * time.Minute)
	e.login(user, pw, "")
	// An unknown user gets the same answer as a wrong password.
	_, _, b1 := e.do(cred{}, "POST", "/v1/auth/login", api.LoginRequest{User: "nobody", Password: "wrong-password-123"})
	_, _, b2 := e.do(cred{}, "POST", "/v1/auth/login", api.LoginRequest{User: user, Password: "wrong-password-123"})
	if string(b1) != string(b2) {
		t.Errorf("unknown user and wrong password differ:\n%s\n%s", b1, b2)
	}
}

func mustB64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := b64(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
