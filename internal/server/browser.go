package server

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/holdfast/holdfast/api"
	"github.com/holdfast/holdfast/internal/tenant"
)

// Browsers hold a session in cookies instead of an Authorization header
// (api.api.CookieAccess and the others say why each is as it is). The
// portal's pages and scripts use the same /v1 routes as every other
// client; only where the credential comes from differs.

// errCSRF refuses a cookie-authenticated change without the CSRF token.
var errCSRF = problem(http.StatusForbidden, "csrf", "the request lacks the CSRF token of this session (header X-CSRF-Token); reload the page")

func setCookie(w http.ResponseWriter, name, value string) {
	http.SetCookie(w, api.SessionCookie(name, value))
}

// checkCSRF accepts a request that changes something only with the CSRF
// header equal to the cookie. Reads need none: they change nothing, and
// SameSite=Strict keeps other sites' pages from reading the answers.
func checkCSRF(r *http.Request) error {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return nil
	}
	c, err := r.Cookie(api.CookieCSRF)
	h := r.Header.Get(api.HeaderCSRF)
	if err != nil || c.Value == "" || h == "" || subtle.ConstantTimeCompare([]byte(c.Value), []byte(h)) != 1 {
		return errCSRF
	}
	return nil
}

// grant ends every successful login — password, passkey: it starts the
// session, tells the limiter and the audit log, and hands the tokens to
// the client, or with cookie to the browser as cookies that its scripts
// cannot read.
func (s *Server) grant(q *request, u tenant.UserRecord, methods []string, cookie bool) error {
	r := q.r
	tok, err := s.sess.issue(r.Context(), u.ID, methods)
	if err != nil {
		return err
	}
	if err := s.sess.succeeded(r.Context(), u.Name, source(r)); err != nil {
		return err
	}
	s.auditLogin(r, "login", u.Name, "ok", map[string]string{"methods": strings.Join(methods, ",")})
	if !cookie {
		return q.ok(tok)
	}
	setSessionCookies(q.w, tok)
	// A new session gets a new CSRF token, so that one planted before
	// the login (session fixation) is worth nothing after it.
	setCookie(q.w, api.CookieCSRF, rand.Text())
	return q.ok(api.Me{User: u.User, Via: "session", Methods: methods})
}

func setSessionCookies(w http.ResponseWriter, tok api.Tokens) {
	setCookie(w, api.CookieAccess, tok.AccessToken)
	setCookie(w, api.CookieRefresh, tok.RefreshToken)
}

// clearSessionCookies ends a browser's session on its side.
func clearSessionCookies(w http.ResponseWriter) {
	setCookie(w, api.CookieAccess, "")
	setCookie(w, api.CookieRefresh, "")
}

// fromCookies authenticates a browser's request by its cookies: the
// access token while it is good, else the refresh token, spent for new
// cookies set on the answer. Changes need the CSRF header.
func (s *Server) fromCookies(w http.ResponseWriter, r *http.Request) (claims, error) {
	if err := checkCSRF(r); err != nil {
		s.log.Info("cookie request refused", "reason", "no or wrong CSRF token", "source", source(r))
		return claims{}, err
	}
	if c, err := r.Cookie(api.CookieAccess); err == nil && c.Value != "" {
		cl, err := s.sess.verify(c.Value)
		if err == nil {
			return cl, nil
		}
		s.log.Debug("access cookie refused", "reason", err.Error())
	}
	c, err := r.Cookie(api.CookieRefresh)
	if err != nil || c.Value == "" {
		return claims{}, errUnauthenticated
	}
	tok, _, err := s.browserRefresh.refresh(r, s, c.Value)
	if err != nil {
		s.log.Info("refresh cookie refused", "reason", err.Error(), "source", source(r))
		clearSessionCookies(w)
		return claims{}, errUnauthenticated
	}
	// The new access token is checked like any other: a session ended
	// since the refresh (logout within reuseWindow) is refused here.
	cl, err := s.sess.verify(tok.AccessToken)
	if err != nil {
		s.log.Info("refreshed cookie refused", "reason", err.Error(), "source", source(r))
		clearSessionCookies(w)
		return claims{}, errUnauthenticated
	}
	setSessionCookies(w, tok)
	return cl, nil
}

// refresher spends browsers' refresh tokens. A browser sends several
// requests at once (a page, its event stream, a form) with the same
// cookies; when the access token has expired, each would spend the same
// refresh token, and every one after the first would look like theft and
// end the session. So the refresh of one token is done once, and
// requests bearing that token within reuseWindow of it get the same new
// tokens. A thief would need the HttpOnly, Secure cookie itself; API
// clients, which hold their tokens themselves, get no such window.
type refresher struct {
	mu   sync.Mutex
	done map[[sha256.Size]byte]refreshed
}

type refreshed struct {
	tok  api.Tokens
	user int64
	at   time.Time
}

const reuseWindow = 10 * time.Second

func (f *refresher) refresh(r *http.Request, s *Server, token string) (api.Tokens, int64, error) {
	key := sha256.Sum256([]byte(token))
	// One refresh at a time: they are rare (one per access token's
	// life per browser), and holding the lock across it is what makes
	// concurrent requests wait for the first one's result.
	f.mu.Lock()
	defer f.mu.Unlock()
	now := s.now()
	for k, d := range f.done {
		if now.Sub(d.at) > reuseWindow {
			delete(f.done, k)
		}
	}
	if d, ok := f.done[key]; ok {
		return d.tok, d.user, nil
	}
	tok, user, err := s.sess.refresh(r.Context(), token)
	if err != nil {
		return api.Tokens{}, 0, err
	}
	if f.done == nil {
		f.done = map[[sha256.Size]byte]refreshed{}
	}
	f.done[key] = refreshed{tok: tok, user: user, at: now}
	return tok, user, nil
}
