package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/api"
	"github.com/holdfast/holdfast/internal/auth"
	"github.com/holdfast/holdfast/internal/testenv"
)

// loopback returns 127.0.0.n: Linux answers the whole of 127/8 on lo, so
// a client bound to it is a distinct source address for the server.
func loopback(n int) netip.Addr {
	return netip.AddrFrom4([4]byte{127, 0, byte(n / 250), byte(1 + n%250)})
}

// client is an HTTP client of the test server whose connections come
// from src.
type client struct {
	e *env
	c *http.Client
}

func (e *env) from(src netip.Addr) client {
	e.t.Helper()
	tr := e.ts.Client().Transport.(*http.Transport).Clone()
	tr.DialContext = (&net.Dialer{LocalAddr: &net.TCPAddr{IP: src.AsSlice()}}).DialContext
	e.t.Cleanup(tr.CloseIdleConnections)
	return client{e: e, c: &http.Client{Transport: tr}}
}

// do is env.do from the client's source.
func (c client) do(cr cred, method, path string, body any) (int, http.Header, []byte) {
	e := c.e
	e.t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		e.t.Fatal(err)
	}
	req, err := http.NewRequest(method, e.ts.URL+path, bytes.NewReader(b))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if cr.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+cr.bearer)
	}
	resp, err := c.c.Do(req)
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

// TestOwnerGetsInDuringDistributedAttack: wrong passwords for an account
// from many addresses lock out those addresses and slow the account down,
// but never lock out its owner: the right password (and code) from an
// address without failures gets in on the first try, while the attack goes
// on.
func TestOwnerGetsInDuringDistributedAttack(t *testing.T) {
	e := newEnv(t, Config{})
	alice := e.tenantWith("acme", nil, map[string]string{"alice": api.RoleMember})["alice"]
	var en api.TOTPEnrollment
	e.must(alice, http.StatusCreated, "POST", "/v1/me/totp", nil, &en)
	secret, err := auth.DecodeTOTPSecret(en.Secret)
	if err != nil {
		t.Fatal(err)
	}
	e.must(alice, http.StatusNoContent, "POST", "/v1/me/totp/confirm", api.TOTPConfirm{Code: auth.TOTPCode(secret, e.clock.now())}, nil)
	e.clock.advance(30 * time.Second) // the confirmation's code is spent

	const sources, tries = 16, 7 // more tries than a source is allowed
	attackers := make([]client, sources)
	for i := range attackers {
		attackers[i] = e.from(loopback(10 + i))
	}
	attack := func(user string) (admitted int) {
		t.Helper()
		for _, a := range attackers {
			for range tries {
				status, _, b := a.do(cred{}, "POST", "/v1/auth/login", api.LoginRequest{User: user, Password: "guess-" + rand.Text()})
				switch status {
				case http.StatusUnauthorized:
					admitted++
				case http.StatusTooManyRequests:
				default:
					t.Fatalf("attack on %s: %d %s", user, status, b)
				}
			}
		}
		return admitted
	}
	owner := e.from(loopback(240))
	for _, tc := range []struct {
		user, password string
		totp           func() string
	}{
		{e.s.Bootstrap.User, string(e.s.Bootstrap.Password.Expose()), func() string { return "" }},
		{"alice", "password-of-alice", func() string { return auth.TOTPCode(secret, e.clock.now()) }},
	} {
		admitted := attack(tc.user)
		// The account was slowed down as a whole: past each source's
		// first guess, the sources share a small budget.
		if max := sources + 10; admitted > max {
			t.Errorf("%s: %d guesses from %d sources were checked, want at most %d", tc.user, admitted, sources, max)
		}
		// Every attacking source is refused now, whatever it sends, the
		// right password included.
		for _, a := range attackers {
			status, h, b := a.do(cred{}, "POST", "/v1/auth/login", api.LoginRequest{User: tc.user, Password: tc.password, TOTP: tc.totp()})
			if status != http.StatusTooManyRequests || h.Get("Retry-After") == "" {
				t.Fatalf("%s from an attacking source: %d %v %s", tc.user, status, h, b)
			}
		}
		// The owner, from an address that has not failed, gets in at once
		// — also in two steps, the password first and then the code.
		if code := tc.totp(); code != "" {
			status, h, b := owner.do(cred{}, "POST", "/v1/auth/login", api.LoginRequest{User: tc.user, Password: tc.password})
			if status != http.StatusUnauthorized || e.problemOf(h, b).Type != problemType("totp-required") {
				t.Fatalf("%s, the owner, without the code: %d %s", tc.user, status, b)
			}
		}
		status, _, b := owner.do(cred{}, "POST", "/v1/auth/login", api.LoginRequest{User: tc.user, Password: tc.password, TOTP: tc.totp()})
		if status != http.StatusOK {
			t.Fatalf("%s, the owner, from a clean source during the attack: %d %s", tc.user, status, b)
		}
		e.clock.advance(30 * time.Second) // a fresh code for the next login
	}
	// The attack came from as many addresses as the test meant.
	var log api.Page[api.AuditEntry]
	e.must(e.admin, http.StatusOK, "GET", "/v1/audit?limit=1000", nil, &log)
	seen := map[string]bool{}
	for _, x := range log.Items {
		if x.Action == "login" && x.Result == "denied: password" {
			seen[x.Source] = true
		}
	}
	if len(seen) != sources {
		t.Errorf("failed logins came from %d addresses, want %d: %v", len(seen), sources, seen)
	}
}

// TestChangePasswordCountsFailures: a wrong current password counts as a
// failed login for the account and the source, so a stolen access token
// cannot be used to guess the password.
func TestChangePasswordCountsFailures(t *testing.T) {
	e := newEnv(t, Config{})
	user, pw := e.s.Bootstrap.User, string(e.s.Bootstrap.Password.Expose())
	thief := e.from(loopback(20))
	for i := range 5 {
		status, _, b := thief.do(e.admin, "PUT", "/v1/me/password", api.PasswordChange{Current: "guess-" + strconv.Itoa(i) + "-xxxxxxxx", New: "new-password-123456"})
		if status != http.StatusUnprocessableEntity {
			t.Fatalf("wrong current password %d: %d %s", i, status, b)
		}
	}
	status, h, b := thief.do(e.admin, "PUT", "/v1/me/password", api.PasswordChange{Current: pw, New: "new-password-123456"})
	// Locked for a minute; the clock has not moved since.
	if status != http.StatusTooManyRequests || h.Get("Retry-After") != "60" || e.problemOf(h, b).Type != problemType("locked") {
		t.Fatalf("sixth guess: %d %v %s", status, h, b)
	}
	// The same limit as a login: that source cannot log in either ...
	status, h, b = thief.do(cred{}, "POST", "/v1/auth/login", api.LoginRequest{User: user, Password: pw})
	if status != http.StatusTooManyRequests || e.problemOf(h, b).Type != problemType("locked") {
		t.Fatalf("login from the locked source: %d %s", status, b)
	}
	// ... while the owner elsewhere still can, and can change the password.
	owner := e.login(user, pw, "")
	e.must(owner, http.StatusNoContent, "PUT", "/v1/me/password", api.PasswordChange{Current: pw, New: "new-password-123456"}, nil)
	e.login(user, "new-password-123456", "")
}

// TestUnknownUserNameNotStored: people type passwords into the user field;
// a failed login as a name that does not exist leaves that name nowhere —
// not in the databases, not in the audit log, not in the log — while the
// audit log still shows the failure and its source.
func TestUnknownUserNameNotStored(t *testing.T) {
	var logs testenv.Buffer
	e := newEnv(t, Config{Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	typed := "Tr0ub4dor&3-" + rand.Text() // a password, typed in the wrong field
	for range 6 {                         // past the lockout, too
		status, _, b := e.do(cred{}, "POST", "/v1/auth/login", api.LoginRequest{User: typed, Password: "whatever-123"})
		if status != http.StatusUnauthorized && status != http.StatusTooManyRequests {
			t.Fatalf("login as %q: %d %s", typed, status, b)
		}
	}
	var log api.Page[api.AuditEntry]
	e.must(e.admin, http.StatusOK, "GET", "/v1/audit?limit=1000", nil, &log)
	var failed, locked bool
	for _, x := range log.Items {
		if x.Action == "login" && strings.HasPrefix(x.Actor, "unknown user ") && x.Source == "127.0.0.1" {
			failed = failed || x.Result == "denied: password"
			locked = locked || x.Result == "denied: locked"
		}
	}
	if !failed || !locked {
		t.Errorf("audit log lacks the failed and the locked login of an unknown user: %+v", log.Items)
	}
	if err := e.s.Shutdown(context.Background()); err != nil { // flushes the databases
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(e.s.Dir(), "*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("state files: %v %v", files, err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(typed)) {
			t.Errorf("%s holds the typed name", filepath.Base(f))
		}
	}
	if out := logs.String(); strings.Contains(out, typed) || !strings.Contains(out, "/v1/auth/login") {
		t.Errorf("the log shows the typed name, or no login at all:\n%s", out)
	}
}
