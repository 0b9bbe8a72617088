package server

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/holdfast/holdfast/api"
	"github.com/holdfast/holdfast/internal/session"
)

var errReuse = session.ErrReuse

// sessions adapts the session package to the server: user ids are the
// database's integers, tokens are answered as api.Tokens, and login
// throttling answers 429 with Retry-After.
type sessions struct {
	m   *session.Manager
	l   *session.Limiter
	otp *session.TOTP // the replay guard of TOTP codes, for login and enrolment alike
	now func() time.Time
}

func newSessions(s *Server) (sessions, error) {
	ctx := context.Background()
	m, err := session.New(ctx, s.db.DB(), s.box, session.Config{Issuer: "holdfast:" + s.cloud, Now: s.now})
	if err != nil {
		return sessions{}, err
	}
	l, err := session.NewLimiter(ctx, s.db.DB(), session.LimiterConfig{Now: s.now})
	if err != nil {
		return sessions{}, err
	}
	otp, err := session.NewTOTP(ctx, s.db.DB(), s.now)
	if err != nil {
		return sessions{}, err
	}
	return sessions{m: m, l: l, otp: otp, now: s.now}, nil
}

// verifyTOTP checks a TOTP code of the user and spends it.
func (x sessions) verifyTOTP(ctx context.Context, userID int64, secret []byte, code string) error {
	return x.otp.Verify(ctx, strconv.FormatInt(userID, 10), secret, code)
}

type claims struct {
	userID  int64
	family  string
	methods []string
}

func (x sessions) verify(token string) (claims, error) {
	c, err := x.m.Verify(token)
	if err != nil {
		return claims{}, err
	}
	id, err := strconv.ParseInt(c.Subject, 10, 64)
	if err != nil {
		return claims{}, errors.New("token subject is not a user id")
	}
	return claims{userID: id, family: c.Family, methods: c.Methods}, nil
}

func wireTokens(t session.Tokens, now time.Time) api.Tokens {
	return api.Tokens{
		AccessToken: string(t.Access.Expose()), RefreshToken: string(t.Refresh.Expose()), TokenType: "Bearer",
		ExpiresIn: int(t.AccessExpires.Sub(now).Round(time.Second).Seconds()), ExpiresAt: t.AccessExpires.UTC(),
	}
}

func (x sessions) issue(ctx context.Context, userID int64, methods []string) (api.Tokens, error) {
	t, err := x.m.Login(ctx, strconv.FormatInt(userID, 10), methods)
	if err != nil {
		return api.Tokens{}, err
	}
	return wireTokens(t, x.now()), nil
}

// refresh rotates a refresh token; userID is known when it worked.
func (x sessions) refresh(ctx context.Context, token string) (api.Tokens, int64, error) {
	t, err := x.m.Refresh(ctx, token)
	if err != nil {
		return api.Tokens{}, 0, err
	}
	c, err := x.verify(string(t.Access.Expose()))
	if err != nil {
		return api.Tokens{}, 0, err
	}
	return wireTokens(t, x.now()), c.userID, nil
}

func (x sessions) logout(ctx context.Context, userID int64, family string) error {
	return x.m.Revoke(ctx, strconv.FormatInt(userID, 10), family)
}

func (x sessions) revokeUser(ctx context.Context, userID int64) {
	_, _ = x.m.RevokeUser(ctx, strconv.FormatInt(userID, 10)) // best effort: the user row is what authenticate reads
}

// admit counts a login attempt before its credentials are checked; it
// counts as failed until succeeded is called.
func (x sessions) admit(ctx context.Context, account, ip string) error {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		addr = netip.IPv4Unspecified()
	}
	err = x.l.Admit(ctx, account, addr)
	var le *session.LimitError
	if errors.As(err, &le) {
		p := problem(http.StatusTooManyRequests, "throttled", "too many failed logins; try again later")
		if errors.Is(err, session.ErrLocked) {
			p = problem(http.StatusTooManyRequests, "locked", "the account is locked after failed logins; try again later")
		}
		return &retryAfter{Problem: p, after: le.RetryAfter}
	}
	return err
}

func (x sessions) succeeded(ctx context.Context, account string) error {
	return x.l.Succeeded(ctx, account)
}

// retryAfter is a problem answered with a Retry-After header.
type retryAfter struct {
	*api.Problem
	after time.Duration
}
