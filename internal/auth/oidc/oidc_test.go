package oidc

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/holdfast/holdfast/internal/auth"
)

// testClock is the injected clock: flows expire without sleeping.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

type rig struct {
	idp   *testIDP
	p     *Provider
	clock *testClock
	start time.Time
}

var testFlowKey = bytes.Repeat([]byte{0x42}, FlowKeyLen)

func testConfig(idp *testIDP) Config {
	return Config{
		Issuer:       idp.issuer(),
		ClientID:     testClientID,
		ClientSecret: auth.SecretString(testClientSecret),
		RedirectURL:  testRedirectURL,
		HTTPClient:   idp.srv.Client(),
	}
}

// newRig starts a provider and a Provider for it; edit changes the Config.
func newRig(t *testing.T, edit func(c *Config)) *rig {
	t.Helper()
	idp := newTestIDP(t)
	// Whole seconds, so flow expiry (kept in seconds) falls exactly on
	// start+FlowLifetime.
	start := time.Unix(time.Now().Unix(), 0)
	clock := &testClock{t: start}
	cfg := testConfig(idp)
	cfg.Now = clock.Now
	if edit != nil {
		edit(&cfg)
	}
	p, err := New(t.Context(), cfg, testFlowKey)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return &rig{idp: idp, p: p, clock: clock, start: start}
}

// login runs Begin and drives the browser's side: it follows the
// authorization URL to the provider and returns the flow and the query of
// the redirect back to RedirectURL, which it does not follow.
func (r *rig) login(t *testing.T) (flow string, callback url.Values) {
	t.Helper()
	authURL, flow, err := r.p.Begin()
	if err != nil {
		t.Fatalf("Begin: %v", err)
	}
	browser := *r.idp.srv.Client()
	browser.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := browser.Get(authURL)
	if err != nil {
		t.Fatalf("GET authorization URL: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		var body bytes.Buffer
		_, _ = body.ReadFrom(resp.Body)
		t.Fatalf("authorization endpoint answered %s: %s", resp.Status, body.String())
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatalf("Location: %v", err)
	}
	callback = loc.Query()
	loc.RawQuery = ""
	if loc.String() != testRedirectURL {
		t.Fatalf("provider redirected to %s, want %s", loc, testRedirectURL)
	}
	return flow, callback
}

// assertNoSecrets fails if err's text holds the client secret, the PKCE
// verifier, the ID token, or any of extra (e.g. the code).
func assertNoSecrets(t *testing.T, err error, idp *testIDP, extra ...string) {
	t.Helper()
	for _, s := range append(idp.secrets(), extra...) {
		if s != "" && strings.Contains(err.Error(), s) {
			t.Errorf("error %q leaks a secret (%.12s...)", err, s)
		}
	}
}

func TestLoginHappyPath(t *testing.T) {
	r := newRig(t, nil)
	authURL, flow, err := r.p.Begin()
	if err != nil {
		t.Fatal(err)
	}
	q := mustQuery(t, authURL)
	if q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" || q.Get("nonce") == "" || q.Get("state") == "" {
		t.Fatalf("authorization URL lacks PKCE S256, nonce or state: %s", authURL)
	}
	if got := q.Get("scope"); got != "openid email profile" {
		t.Errorf("scope = %q, want %q", got, "openid email profile")
	}
	raw, _ := base64.RawURLEncoding.DecodeString(flow)
	for _, v := range []string{q.Get("state"), q.Get("nonce")} {
		if strings.Contains(flow, v) || bytes.Contains(raw, []byte(v)) {
			t.Errorf("flow shows %q in clear", v)
		}
	}

	flow, callback := r.login(t)
	id, err := r.p.Finish(t.Context(), flow, callback)
	if err != nil {
		t.Fatalf("Finish: %v", err)
	}
	want := Identity{
		Issuer: r.idp.issuer(), Subject: "user-7f3a",
		Email: "ada@example.com", EmailVerified: true,
		Name: "Ada Lovelace", Username: "ada",
		Groups: []string{"holdfast-admins", "devs"},
	}
	if fmt.Sprint(id) != fmt.Sprint(want) {
		t.Errorf("Identity = %+v\nwant       %+v", id, want)
	}
	if n, _ := r.idp.counts(); n != 1 {
		t.Errorf("token endpoint called %d times, want 1", n)
	}

	// Replaying the callback fails: the provider redeems a code once.
	_, err = r.p.Finish(t.Context(), flow, callback)
	if !errors.Is(err, ErrExchange) {
		t.Fatalf("replayed callback: err = %v, want ErrExchange", err)
	}
	assertNoSecrets(t, err, r.idp, callback.Get("code"))
}

func mustQuery(t *testing.T, raw string) url.Values {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Query()
}

func TestFinishRejectsWrongState(t *testing.T) {
	r := newRig(t, nil)
	flowA, callbackA := r.login(t)
	_, callbackB := r.login(t)
	for name, edit := range map[string]func(q url.Values){
		"altered": func(q url.Values) { q.Set("state", q.Get("state")+"x") },
		"missing": func(q url.Values) { q.Del("state") },
		"empty":   func(q url.Values) { q.Set("state", "") },
		// Another login's callback, as in login CSRF: its code is valid.
		"other login": func(q url.Values) { q.Set("state", callbackB.Get("state")); q.Set("code", callbackB.Get("code")) },
	} {
		t.Run(name, func(t *testing.T) {
			q := url.Values{"state": {callbackA.Get("state")}, "code": {callbackA.Get("code")}}
			edit(q)
			_, err := r.p.Finish(t.Context(), flowA, q)
			if !errors.Is(err, ErrStateMismatch) {
				t.Fatalf("err = %v, want ErrStateMismatch", err)
			}
		})
	}
	if n, _ := r.idp.counts(); n != 0 {
		t.Errorf("token endpoint called %d times; a bad state must stop before the exchange", n)
	}
	// The untouched pair still works.
	if _, err := r.p.Finish(t.Context(), flowA, callbackA); err != nil {
		t.Fatalf("Finish with the right state: %v", err)
	}
}

func TestFinishRejectsTamperedFlow(t *testing.T) {
	r := newRig(t, nil)
	flow, callback := r.login(t)
	sealed, err := base64.RawURLEncoding.DecodeString(flow)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) string {
		b := slices.Clone(sealed)
		b[i] ^= 0x01
		return base64.RawURLEncoding.EncodeToString(b)
	}

	other, err := New(t.Context(), testConfig(r.idp), bytes.Repeat([]byte{0x17}, FlowKeyLen))
	if err != nil {
		t.Fatal(err)
	}
	otherFlowOf := func(p *Provider) string {
		_, f, err := p.Begin()
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	otherClientCfg := testConfig(r.idp)
	otherClientCfg.ClientID = "another-client"
	otherClient, err := New(t.Context(), otherClientCfg, testFlowKey)
	if err != nil {
		t.Fatal(err)
	}

	cases := map[string]string{
		"first byte flipped":             flip(0),
		"middle byte flipped":            flip(len(sealed) / 2),
		"last byte flipped":              flip(len(sealed) - 1),
		"truncated":                      base64.RawURLEncoding.EncodeToString(sealed[:len(sealed)-1]),
		"empty":                          "",
		"not base64":                     "!!" + flow,
		"sealed under another key":       otherFlowOf(other),
		"sealed for another client (AD)": otherFlowOf(otherClient),
	}
	for name, bad := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := r.p.Finish(t.Context(), bad, callback)
			if !errors.Is(err, ErrFlowInvalid) {
				t.Fatalf("err = %v, want ErrFlowInvalid", err)
			}
		})
	}
	if n, _ := r.idp.counts(); n != 0 {
		t.Errorf("token endpoint called %d times; a bad flow must stop before the exchange", n)
	}
	if _, err := r.p.Finish(t.Context(), flow, callback); err != nil {
		t.Fatalf("Finish with the untouched flow: %v", err)
	}
}

func TestFinishRejectsExpiredFlow(t *testing.T) {
	r := newRig(t, nil)

	flow, callback := r.login(t)
	r.clock.Set(r.start.Add(FlowLifetime - time.Second))
	if _, err := r.p.Finish(t.Context(), flow, callback); err != nil {
		t.Fatalf("Finish one second before expiry: %v", err)
	}

	r.clock.Set(r.start)
	flow, callback = r.login(t)
	r.clock.Set(r.start.Add(FlowLifetime))
	_, err := r.p.Finish(t.Context(), flow, callback)
	if !errors.Is(err, ErrFlowExpired) {
		t.Fatalf("Finish at expiry: err = %v, want ErrFlowExpired", err)
	}
}

func TestFinishRejectsNonceMismatch(t *testing.T) {
	r := newRig(t, nil)
	r.idp.configure(func(k *idpKnobs) {
		k.claims = func(c map[string]any) { c["nonce"] = "not-the-nonce-we-sent" }
	})
	flow, callback := r.login(t)
	_, err := r.p.Finish(t.Context(), flow, callback)
	if !errors.Is(err, ErrNonceMismatch) {
		t.Fatalf("err = %v, want ErrNonceMismatch", err)
	}
	assertNoSecrets(t, err, r.idp, callback.Get("code"))

	r.idp.configure(func(k *idpKnobs) { k.claims = func(c map[string]any) { delete(c, "nonce") } })
	flow, callback = r.login(t)
	if _, err := r.p.Finish(t.Context(), flow, callback); !errors.Is(err, ErrNonceMismatch) {
		t.Fatalf("no nonce: err = %v, want ErrNonceMismatch", err)
	}
}

func TestFinishRejectsBadIDTokens(t *testing.T) {
	cases := []struct {
		name  string
		knobs func(k *idpKnobs)
	}{
		{"wrong audience", func(k *idpKnobs) { k.claims = func(c map[string]any) { c["aud"] = "some-other-app" } }},
		{"wrong issuer", func(k *idpKnobs) { k.claims = func(c map[string]any) { c["iss"] = "https://evil.test" } }},
		{"expired", func(k *idpKnobs) {
			k.claims = func(c map[string]any) { c["exp"] = time.Now().Add(-time.Hour).Unix() }
		}},
		// Same kid as the published key, so only the signature can tell.
		{"signed by an unknown key", func(k *idpKnobs) { k.signKey = rogueKey() }},
		{"no subject", func(k *idpKnobs) { k.claims = func(c map[string]any) { delete(c, "sub") } }},
		{"several audiences, no azp", func(k *idpKnobs) {
			k.claims = func(c map[string]any) { c["aud"] = []string{testClientID, "other"} }
		}},
		{"azp names another client", func(k *idpKnobs) {
			k.claims = func(c map[string]any) { c["azp"] = "other" }
		}},
		{"groups not strings", func(k *idpKnobs) {
			k.claims = func(c map[string]any) { c["groups"] = []int{1, 2} }
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, nil)
			r.idp.configure(tc.knobs)
			flow, callback := r.login(t)
			_, err := r.p.Finish(t.Context(), flow, callback)
			if !errors.Is(err, ErrToken) {
				t.Fatalf("err = %v, want ErrToken", err)
			}
			assertNoSecrets(t, err, r.idp, callback.Get("code"))
		})
	}
}

func TestFinishProviderError(t *testing.T) {
	r := newRig(t, nil)
	r.idp.configure(func(k *idpKnobs) { k.deny = "The user denied access.\r\nSet-Cookie: x=1\x00" })
	flow, callback := r.login(t)
	if callback.Get("error") != "access_denied" {
		t.Fatalf("provider did not deny: %v", callback)
	}
	_, err := r.p.Finish(t.Context(), flow, callback)
	var pe *ProviderError
	if !errors.As(err, &pe) {
		t.Fatalf("err = %v, want *ProviderError", err)
	}
	if pe.Code != "access_denied" {
		t.Errorf("Code = %q, want access_denied", pe.Code)
	}
	if want := "The user denied access.Set-Cookie: x=1"; pe.Description != want {
		t.Errorf("Description = %q, want %q (control characters dropped)", pe.Description, want)
	}

	// An error for another login's state is a state mismatch, not a refusal.
	callback.Set("state", "someone-elses-state")
	if _, err := r.p.Finish(t.Context(), flow, callback); !errors.Is(err, ErrStateMismatch) {
		t.Fatalf("error with foreign state: err = %v, want ErrStateMismatch", err)
	}
	if n, _ := r.idp.counts(); n != 0 {
		t.Errorf("token endpoint called %d times after a refusal", n)
	}
}

// A code obtained in one login (with its own PKCE challenge) and injected
// into another login's callback is refused by the provider, because this
// login's verifier does not match that code's challenge.
func TestFinishRejectsPKCEMismatch(t *testing.T) {
	r := newRig(t, nil)
	victimFlow, victimCallback := r.login(t)
	_, attackerCallback := r.login(t)
	injected := url.Values{"state": {victimCallback.Get("state")}, "code": {attackerCallback.Get("code")}}

	_, err := r.p.Finish(t.Context(), victimFlow, injected)
	if !errors.Is(err, ErrExchange) {
		t.Fatalf("err = %v, want ErrExchange", err)
	}
	if !strings.Contains(err.Error(), "invalid_grant") || !strings.Contains(err.Error(), "PKCE verification failed") {
		t.Errorf("err = %q, want the provider's error code and description", err)
	}
	if _, failures := r.idp.counts(); failures != 1 {
		t.Fatalf("provider saw %d PKCE failures, want 1", failures)
	}
	assertNoSecrets(t, err, r.idp, attackerCallback.Get("code"), "debug")
}

// A token endpoint that fails without RFC 6749 error JSON yields its
// status only: its body is not copied into the error, nor reachable from it.
func TestFinishExchangeErrorHidesBody(t *testing.T) {
	r := newRig(t, nil)
	r.idp.configure(func(k *idpKnobs) { k.tokenCrash = true })
	flow, callback := r.login(t)
	_, err := r.p.Finish(t.Context(), flow, callback)
	if !errors.Is(err, ErrExchange) || !strings.Contains(err.Error(), "500") {
		t.Fatalf("err = %v, want ErrExchange naming status 500", err)
	}
	assertNoSecrets(t, err, r.idp, callback.Get("code"), "panic")
	if re := (*oauth2.RetrieveError)(nil); errors.As(err, &re) {
		t.Errorf("err wraps *oauth2.RetrieveError, whose Body holds the response")
	}
}

// ID-token expiry is judged by the injected clock, like the flow's.
func TestFinishTokenExpiryUsesClock(t *testing.T) {
	r := newRig(t, nil)
	r.idp.configure(func(k *idpKnobs) {
		k.claims = func(c map[string]any) { c["exp"] = r.start.Add(5 * time.Minute).Unix() }
	})
	flow, callback := r.login(t)
	r.clock.Set(r.start.Add(6 * time.Minute)) // flow still fresh, token not
	_, err := r.p.Finish(t.Context(), flow, callback)
	if !errors.Is(err, ErrToken) {
		t.Fatalf("err = %v, want ErrToken (expired by the injected clock)", err)
	}
}

// One Provider serves many logins at once (run with -race).
func TestConcurrentLogins(t *testing.T) {
	r := newRig(t, nil)
	for i := range 8 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			flow, callback := r.login(t)
			if _, err := r.p.Finish(t.Context(), flow, callback); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestAllowedDomains(t *testing.T) {
	cases := []struct {
		name    string
		email   string
		verfied bool
		ok      bool
	}{
		{"allowed", "ada@Example.COM", true, true},
		{"other domain", "ada@evil.test", true, false},
		{"subdomain is not the domain", "ada@sub.example.com", true, false},
		{"unverified", "ada@example.com", false, false},
		{"no email", "", true, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, func(c *Config) { c.AllowedDomains = []string{" EXAMPLE.com", "example.org"} })
			r.idp.configure(func(k *idpKnobs) {
				k.claims = func(c map[string]any) { c["email"], c["email_verified"] = tc.email, tc.verfied }
			})
			flow, callback := r.login(t)
			id, err := r.p.Finish(t.Context(), flow, callback)
			if tc.ok {
				if err != nil || id.Email != tc.email {
					t.Fatalf("Finish = %+v, %v; want the identity", id, err)
				}
				return
			}
			if !errors.Is(err, ErrDomainNotAllowed) {
				t.Fatalf("err = %v, want ErrDomainNotAllowed", err)
			}
		})
	}
}

func TestGroupsClaim(t *testing.T) {
	cases := []struct {
		name   string
		claim  string
		value  any
		groups []string
	}{
		{"custom claim, list", "roles", []string{"ops"}, []string{"ops"}},
		{"single string", "roles", "ops", []string{"ops"}},
		{"absent", "roles", nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, func(c *Config) { c.GroupsClaim = tc.claim })
			r.idp.configure(func(k *idpKnobs) {
				k.claims = func(c map[string]any) {
					if tc.value != nil {
						c[tc.claim] = tc.value
					}
				}
			})
			flow, callback := r.login(t)
			id, err := r.p.Finish(t.Context(), flow, callback)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(id.Groups, tc.groups) {
				t.Errorf("Groups = %q, want %q (the default claim %q must be ignored)", id.Groups, tc.groups, "groups")
			}
		})
	}
}

// A provider that accepts only client_secret_post gets the credentials in
// the form (the test provider refuses Basic auth then).
func TestClientSecretPost(t *testing.T) {
	idp := newTestIDP(t)
	idp.configure(func(k *idpKnobs) { k.authMethods = []string{"client_secret_post"} })
	p, err := New(t.Context(), testConfig(idp), testFlowKey)
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{idp: idp, p: p}
	flow, callback := r.login(t)
	if _, err := p.Finish(t.Context(), flow, callback); err != nil {
		t.Fatalf("Finish: %v", err)
	}
	if n, _ := idp.counts(); n != 1 {
		t.Errorf("token endpoint called %d times, want 1 (no guessing of the auth style)", n)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	good := Config{
		Issuer:       "https://idp.example.com/realms/main",
		ClientID:     testClientID,
		ClientSecret: auth.SecretString(testClientSecret),
		RedirectURL:  testRedirectURL,
	}
	cases := []struct {
		field string
		edit  func(c *Config)
	}{
		{"Issuer", func(c *Config) { c.Issuer = "" }},
		{"Issuer", func(c *Config) { c.Issuer = "idp.example.com" }},
		{"Issuer", func(c *Config) { c.Issuer = "http://idp.example.com" }},
		{"Issuer", func(c *Config) { c.Issuer = "https://user:pw@idp.example.com" }},
		{"ClientID", func(c *Config) { c.ClientID = " " }},
		{"ClientSecret", func(c *Config) { c.ClientSecret = auth.Secret{} }},
		{"RedirectURL", func(c *Config) { c.RedirectURL = "" }},
		{"RedirectURL", func(c *Config) { c.RedirectURL = "http://holdfast.example.com/cb" }},
		{"RedirectURL", func(c *Config) { c.RedirectURL = "https://holdfast.example.com/cb#x" }},
		{"Scopes[1]", func(c *Config) { c.Scopes = []string{"email", "two words"} }},
		{"AllowedDomains[0]", func(c *Config) { c.AllowedDomains = []string{"ada@example.com"} }},
	}
	for _, tc := range cases {
		cfg := good
		tc.edit(&cfg)
		_, err := New(t.Context(), cfg, testFlowKey)
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Field != tc.field {
			t.Errorf("%+v: err = %v, want a ConfigError for %s", cfg, err, tc.field)
			continue
		}
		if !strings.Contains(err.Error(), tc.field) {
			t.Errorf("error %q does not name %s", err, tc.field)
		}
	}

	if _, err := New(t.Context(), good, make([]byte, 16)); err == nil || !strings.Contains(err.Error(), "flow key is 16 bytes") {
		t.Errorf("16-byte flow key: err = %v", err)
	}
	if s := fmt.Sprintf("%v %+v %#v", good, good, good); strings.Contains(s, testClientSecret) {
		t.Errorf("Config prints its client secret: %s", s)
	}
}

func TestNewAllowsLoopbackHTTP(t *testing.T) {
	cfg := Config{Issuer: "http://127.0.0.1:1/x", ClientID: "c", ClientSecret: auth.SecretString("s"), RedirectURL: "http://localhost:8080/cb"}
	if _, err := cfg.normalize(); err != nil {
		t.Fatalf("loopback http refused: %v", err)
	}
}

func TestNewDiscovery(t *testing.T) {
	t.Run("issuer mismatch names the field", func(t *testing.T) {
		idp := newTestIDP(t)
		cfg := testConfig(idp)
		cfg.Issuer += "/"
		_, err := New(t.Context(), cfg, testFlowKey)
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Field != "Issuer" || !strings.Contains(err.Error(), idp.issuer()) {
			t.Fatalf("err = %v, want a ConfigError for Issuer quoting the discovered issuer", err)
		}
	})
	t.Run("provider without S256", func(t *testing.T) {
		idp := newTestIDP(t)
		idp.configure(func(k *idpKnobs) { k.pkceMethods = []string{"plain"} })
		_, err := New(t.Context(), testConfig(idp), testFlowKey)
		if err == nil || !strings.Contains(err.Error(), "S256") {
			t.Fatalf("err = %v, want a refusal naming S256", err)
		}
	})
	t.Run("no usable client auth method", func(t *testing.T) {
		idp := newTestIDP(t)
		idp.configure(func(k *idpKnobs) { k.authMethods = []string{"private_key_jwt"} })
		_, err := New(t.Context(), testConfig(idp), testFlowKey)
		if err == nil || !strings.Contains(err.Error(), "client_secret_basic") {
			t.Fatalf("err = %v, want a refusal naming the methods", err)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		release := make(chan struct{})
		srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// Hang until the test ends. Returning when the client gives up
			// would race it: an empty answer could arrive before the
			// client's own deadline is noticed.
			<-release
		}))
		t.Cleanup(srv.Close)
		t.Cleanup(func() { close(release) }) // runs before srv.Close
		cfg := Config{
			Issuer: srv.URL, ClientID: testClientID, ClientSecret: auth.SecretString(testClientSecret),
			RedirectURL: testRedirectURL, HTTPClient: srv.Client(),
		}
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		_, err := New(ctx, cfg, testFlowKey)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want context.DeadlineExceeded", err)
		}
	})
}

func TestFlowCookie(t *testing.T) {
	r := newRig(t, nil)
	_, flow, err := r.p.Begin()
	if err != nil {
		t.Fatal(err)
	}
	c := r.p.FlowCookie(flow)
	if c.Name != FlowCookieName || c.Value != flow || c.Path != "/v1/auth/oidc/callback" ||
		!c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.MaxAge != int(FlowLifetime.Seconds()) {
		t.Errorf("FlowCookie = %+v", c)
	}
	if err := c.Valid(); err != nil {
		t.Errorf("FlowCookie not valid: %v", err)
	}
	if del := r.p.FlowCookie(""); del.MaxAge >= 0 || del.Path != c.Path {
		t.Errorf("FlowCookie(\"\") = %+v, want a deleting cookie on the same path", del)
	}
}

// The challenge sent in Begin is derived from the verifier sent at the
// token endpoint, so the provider can bind the code to this login.
func TestBeginChallengeMatchesExchangeVerifier(t *testing.T) {
	r := newRig(t, nil)
	authURL, flow, err := r.p.Begin()
	if err != nil {
		t.Fatal(err)
	}
	f, err := r.p.openFlow(flow)
	if err != nil {
		t.Fatal(err)
	}
	q := mustQuery(t, authURL)
	if q.Get("code_challenge") != oauth2.S256ChallengeFromVerifier(f.Verifier) || q.Get("state") != f.State || q.Get("nonce") != f.Nonce {
		t.Errorf("authorization URL %s does not match the sealed flow", authURL)
	}
}
