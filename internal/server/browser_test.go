package server

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast/api"
)

// browser is a client that holds its session the way a browser does: in
// a cookie jar, sending the CSRF header only when told to.
type browser struct {
	e    *env
	c    *http.Client
	csrf string
}

func (e *env) browser() *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		e.t.Fatal(err)
	}
	c := *e.ts.Client()
	c.Jar = jar
	// A page of the origin gets its CSRF token from the server (the
	// portal writes it into the page); any value works as long as the
	// header and the cookie agree, which only this origin can arrange.
	b := &browser{e: e, c: &c, csrf: "token-of-this-browser"}
	u, _ := url.Parse(e.ts.URL)
	jar.SetCookies(u, []*http.Cookie{api.SessionCookie(api.CookieCSRF, b.csrf)})
	return b
}

func (b *browser) cookie(name string) string {
	u, _ := url.Parse(b.e.ts.URL)
	for _, c := range b.c.Jar.Cookies(u) {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

// do sends a request with the jar's cookies, and the CSRF header if
// withCSRF.
func (b *browser) do(withCSRF bool, method, path string, body any) (int, http.Header, []byte) {
	b.e.t.Helper()
	var rd io.Reader
	if body != nil {
		j, err := json.Marshal(body)
		if err != nil {
			b.e.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, b.e.ts.URL+path, rd)
	if err != nil {
		b.e.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if withCSRF {
		req.Header.Set(api.HeaderCSRF, b.csrf)
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.e.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		b.e.t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, out
}

func TestBrowserSessionInCookies(t *testing.T) {
	e := newEnv(t, Config{})
	pw := string(e.s.Bootstrap.Password.Expose())
	b := e.browser()
	login := api.LoginRequest{User: e.s.Bootstrap.User, Password: pw, Cookie: true}

	// A login form another site submits carries no CSRF header: refused,
	// so nobody can log a browser into their own account.
	if st, h, body := b.do(false, "POST", "/v1/auth/login", login); st != http.StatusForbidden || e.problemOf(h, body).Type != problemType("csrf") {
		t.Fatalf("cookie login without CSRF header: %d %s", st, body)
	}
	st, h, body := b.do(true, "POST", "/v1/auth/login", login)
	if st != http.StatusOK {
		t.Fatalf("cookie login: %d %s", st, body)
	}
	var me api.Me
	if err := json.Unmarshal(body, &me); err != nil || me.User.Name != e.s.Bootstrap.User {
		t.Fatalf("cookie login answered %s (%v), want who logged in", body, err)
	}
	if bytes.Contains(body, []byte("access_token")) || bytes.Contains(body, []byte(b.cookie(api.CookieAccess))) {
		t.Fatalf("cookie login put a token where a script can read it: %s", body)
	}
	for _, c := range (&http.Response{Header: h}).Cookies() {
		if !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" {
			t.Errorf("cookie %s lacks Secure, HttpOnly, SameSite=Strict or Path=/: %s", c.Name, c.Raw)
		}
	}
	// The login replaced the CSRF token a page had before it.
	if fresh := b.cookie(api.CookieCSRF); fresh == "" || fresh == b.csrf {
		t.Fatalf("login kept the CSRF token from before it (%q)", fresh)
	}
	b.csrf = b.cookie(api.CookieCSRF)

	// Reads need only the cookies; changes need the header too.
	if st, _, body := b.do(false, "GET", "/v1/me", nil); st != http.StatusOK {
		t.Fatalf("GET /v1/me with cookies: %d %s", st, body)
	}
	if st, h, body := b.do(false, "POST", "/v1/tenants", api.TenantCreate{Name: "acme"}); st != http.StatusForbidden || e.problemOf(h, body).Type != problemType("csrf") {
		t.Fatalf("POST without CSRF header: %d %s", st, body)
	}
	if st, _, body := b.do(true, "POST", "/v1/tenants", api.TenantCreate{Name: "acme"}); st != http.StatusCreated {
		t.Fatalf("POST with CSRF header: %d %s", st, body)
	}

	// When the access token expires, the refresh cookie renews the
	// session. A browser sends several requests at once with the same
	// cookies: all of them pass, and the session survives.
	e.clock.advance(20 * time.Minute)
	old := b.cookie(api.CookieRefresh)
	var wg sync.WaitGroup
	codes := make([]int, 4)
	for i := range codes {
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodGet, e.ts.URL+"/v1/me", nil)
			req.AddCookie(&http.Cookie{Name: api.CookieRefresh, Value: old})
			resp, err := e.ts.Client().Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			codes[i] = resp.StatusCode
		})
	}
	wg.Wait()
	for i, c := range codes {
		if c != http.StatusOK {
			t.Fatalf("concurrent request %d after the access token expired: %d", i, c)
		}
	}
	if st, _, body := b.do(false, "GET", "/v1/me", nil); st != http.StatusOK {
		t.Fatalf("GET /v1/me after expiry: %d %s", st, body)
	}
	if b.cookie(api.CookieRefresh) == old {
		t.Fatal("the refresh cookie was not renewed")
	}

	// Logging out ends the session and clears the cookies.
	if st, _, body := b.do(true, "POST", "/v1/auth/logout", nil); st != http.StatusNoContent {
		t.Fatalf("logout: %d %s", st, body)
	}
	if b.cookie(api.CookieAccess) != "" || b.cookie(api.CookieRefresh) != "" {
		t.Fatal("logout left the session cookies")
	}
	req, _ := http.NewRequest(http.MethodGet, e.ts.URL+"/v1/me", nil)
	req.AddCookie(&http.Cookie{Name: api.CookieRefresh, Value: old})
	resp, err := e.ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	gone, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a refresh cookie of the ended session: %d, want 401: %s", resp.StatusCode, gone)
	}
}
