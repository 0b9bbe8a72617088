package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/holdfast/holdfast/api"
)

// Session is a logged-in session as a client keeps it.
type Session struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	// ExpiresAt is when the access token expires, by this machine's
	// clock (the server's expires_in counted from when it answered, so
	// that a skewed clock does not matter).
	ExpiresAt time.Time `json:"expires_at"`
}

// refreshBefore is how long before its expiry an access token is
// replaced: a token that expires on the way is refused.
const refreshBefore = 30 * time.Second

// refreshTimeout bounds a refresh, which runs even when the request that
// wanted it is canceled: a refresh the server made but whose answer was
// dropped would leave the client holding a spent refresh token.
const refreshTimeout = 30 * time.Second

func sessionOf(t api.Tokens, now time.Time) Session {
	s := Session{AccessToken: t.AccessToken, RefreshToken: t.RefreshToken, ExpiresAt: t.ExpiresAt}
	if t.ExpiresIn > 0 {
		s.ExpiresAt = now.Add(time.Duration(t.ExpiresIn) * time.Second)
	}
	return s
}

// WithSession uses a session kept from an earlier Login, e.g. read from a
// file. A session with only a refresh token is refreshed before the first
// request.
func WithSession(s Session) Option {
	return func(c *Client) error {
		c.sess = s
		return nil
	}
}

// WithSessionHook calls save with every session the client gets: from
// Login and from each refresh. A refresh token is good once, so a program
// that keeps the session must keep the newest one. When save fails, the
// request that caused the refresh fails with its error before it is sent
// (the new session stays in use by this client). save runs while the
// client holds its session lock: it must not call the client.
func WithSessionHook(save func(Session) error) Option {
	return func(c *Client) error {
		c.hook = save
		return nil
	}
}

// Session returns the client's current session (zero without one).
func (c *Client) Session() Session {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sess
}

// Login logs in with a password (and a TOTP code once the user has
// enrolled one), and uses the session for the requests that follow.
// A user with TOTP who sends no code is answered a problem of type
// .../totp-required (status 401); a user with a passkey one of type
// .../second-factor-required, whose Errors name the fields that would do
// (passkey, and totp when enrolled). A passkey's answer needs a browser's
// authenticator: in.Passkey is for programs that hold one.
func (c *Client) Login(ctx context.Context, in api.LoginRequest) (Session, error) {
	if c.keyID != "" {
		return Session{}, errors.New("this client signs its requests with an API key: make another client to log in")
	}
	var t api.Tokens
	if err := c.do(ctx, call{method: http.MethodPost, path: "/v1/auth/login", in: in, out: &t, public: true}); err != nil {
		return Session{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.setSessionLocked(t); err != nil {
		return Session{}, err
	}
	return c.sess, nil
}

// UseTokens uses a session obtained elsewhere — from the OpenID Connect
// callback a browser was sent to (OIDCLoginURL) — for the requests that
// follow, and hands it to the session hook.
func (c *Client) UseTokens(t api.Tokens) (Session, error) {
	if c.keyID != "" {
		return Session{}, errors.New("this client signs its requests with an API key: make another client for a session")
	}
	if t.AccessToken == "" && t.RefreshToken == "" {
		return Session{}, errors.New("the tokens are empty")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.setSessionLocked(t); err != nil {
		return Session{}, err
	}
	return c.sess, nil
}

// Refresh exchanges the session's refresh token for new tokens now. The
// client does this by itself when needed; call it to extend a session
// that is kept but not used.
func (c *Client) Refresh(ctx context.Context) (Session, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.refreshLocked(ctx); err != nil {
		return Session{}, err
	}
	return c.sess, nil
}

// Logout ends the session on the server (its refresh token stops
// working at once, its access tokens within their lifetime) and forgets
// it here.
func (c *Client) Logout(ctx context.Context) error {
	if c.keyID != "" {
		return errors.New("API keys have no session: revoke the key instead")
	}
	if err := c.do(ctx, call{method: http.MethodPost, path: "/v1/auth/logout"}); err != nil {
		return err
	}
	c.mu.Lock()
	c.sess = Session{}
	c.mu.Unlock()
	return nil
}

// accessToken returns a current access token, refreshing first when the
// one held is about to expire; "" when the client has no session.
func (c *Client) accessToken(ctx context.Context) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.sess
	stale := s.AccessToken == "" || (!s.ExpiresAt.IsZero() && !c.now().Add(refreshBefore).Before(s.ExpiresAt))
	if stale && s.RefreshToken != "" {
		if err := c.refreshLocked(ctx); err != nil {
			return "", err
		}
	}
	return c.sess.AccessToken, nil
}

func (c *Client) canRefresh() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sess.RefreshToken != ""
}

// refreshAfter refreshes after a request with token was refused, unless
// another request has refreshed since it was sent.
func (c *Client) refreshAfter(ctx context.Context, token string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sess.AccessToken != token {
		return nil
	}
	return c.refreshLocked(ctx)
}

func (c *Client) refreshLocked(ctx context.Context) error {
	if c.sess.RefreshToken == "" {
		return errors.New("the session cannot be refreshed (no refresh token): log in again")
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), refreshTimeout)
	defer cancel()
	var t api.Tokens
	err := c.do(ctx, call{method: http.MethodPost, path: "/v1/auth/refresh", in: api.RefreshRequest{RefreshToken: c.sess.RefreshToken}, out: &t, public: true})
	if err != nil {
		return fmt.Errorf("refreshing the session: %w", err)
	}
	return c.setSessionLocked(t)
}

func (c *Client) setSessionLocked(t api.Tokens) error {
	c.sess = sessionOf(t, c.now())
	if c.hook != nil {
		if err := c.hook(c.sess); err != nil {
			return fmt.Errorf("saving the new session: %w", err)
		}
	}
	return nil
}
