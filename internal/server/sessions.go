package server

import (
	"context"
	"crypto/hkdf"
	"crypto/sha256"
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
	// ended is told of every user whose sessions were revoked, so that
	// their event streams end at once (events.go).
	ended func(userID int64)
}

func newSessions(s *Server) (sessions, error) {
	ctx := context.Background()
	m, err := session.New(ctx, s.db.DB(), s.box, session.Config{Issuer: "holdfast:" + s.cloud, Now: s.now})
	if err != nil {
		return sessions{}, err
	}
	// Login names are kept only as an HMAC under this key: people type
	// passwords into the name field.
	nameKey, err := hkdf.Key(sha256.New, s.masterKey, nil, "holdfast login names v1", 32)
	if err != nil {
		return sessions{}, err
	}
	l, err := session.NewLimiter(ctx, s.db.DB(), session.LimiterConfig{NameKey: nameKey, Now: s.now})
	if err != nil {
		return sessions{}, err
	}
	otp, err := session.NewTOTP(ctx, s.db.DB(), s.now)
	if err != nil {
		return sessions{}, err
	}
	return sessions{m: m, l: l, otp: otp, now: s.now, ended: func(id int64) { s.hub.authChanged(id) }}, nil
}

// verifyTOTP checks a TOTP code of the user and spends it.
func (x sessions) verifyTOTP(ctx context.Context, userID int64, secret []byte, code string) error {
	return x.otp.Verify(ctx, strconv.FormatInt(userID, 10), secret, code)
}

type claims struct {
	userID  int64
	family  string
	methods []string
	expires time.Time
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
	return claims{userID: id, family: c.Family, methods: c.Methods, expires: c.Expires}, nil
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
	defer x.ended(userID)
	return x.m.Revoke(ctx, strconv.FormatInt(userID, 10), family)
}

func (x sessions) revokeUser(ctx context.Context, userID int64) {
	defer x.ended(userID)
	_, _ = x.m.RevokeUser(ctx, strconv.FormatInt(userID, 10)) // best effort: the user row is what authenticate reads
}

// admit counts an attempt to prove the account's password — a login, or
// a password change, under the same limits — from the source ip before
// the credentials are checked; it counts as failed until succeeded is
// called. A refusal is a *retryAfter.
func (x sessions) admit(ctx context.Context, account, ip string) error {
	err := x.l.Admit(ctx, account, addrOf(ip))
	var le *session.LimitError
	if !errors.As(err, &le) {
		return err
	}
	ra := &retryAfter{after: le.RetryAfter}
	switch {
	case errors.Is(err, session.ErrLocked):
		ra.reason, ra.Problem = "locked", problem(http.StatusTooManyRequests, "locked", "too many failed logins for this account from your address; try again later")
	case errors.Is(err, session.ErrSlowed):
		ra.reason, ra.Problem = "slowed", problem(http.StatusTooManyRequests, "slowed", "this account has seen many failed logins; try again later")
	default:
		ra.reason, ra.Problem = "throttled", problem(http.StatusTooManyRequests, "throttled", "too many login attempts from your address; try again later")
	}
	return ra
}

// succeeded records that the credentials of the last attempt admitted for
// account from ip were right.
func (x sessions) succeeded(ctx context.Context, account, ip string) error {
	return x.l.Succeeded(ctx, account, addrOf(ip))
}

// forgive uncounts the last attempt admitted for account from ip: it
// proved the password and lacked only the second factor.
func (x sessions) forgive(ctx context.Context, account, ip string) error {
	return x.l.Forgive(ctx, account, addrOf(ip))
}

// unknownUser is how the audit log names a login as a name that is no
// account: people type passwords there, so it shows only a keyed hash —
// the same for the same name, so that attempts can be told apart.
func (x sessions) unknownUser(name string) string { return unknownUserPrefix + x.l.Tag(name) }

// unknownUserPrefix begins what unknownUser returns; no user name can
// (names have no spaces).
const unknownUserPrefix = "unknown user "

func addrOf(ip string) netip.Addr {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return netip.IPv4Unspecified()
	}
	return addr
}

// retryAfter is a throttled attempt's problem, answered with a
// Retry-After header.
type retryAfter struct {
	*api.Problem
	reason string // for the audit entry: locked, slowed or throttled
	after  time.Duration
}

// answer sets Retry-After (whole seconds, rounded up) and returns the
// problem to answer.
func (ra *retryAfter) answer(w http.ResponseWriter) *api.Problem {
	w.Header().Set("Retry-After", strconv.Itoa(int(max(time.Second, ra.after+time.Second-1)/time.Second)))
	return ra.Problem
}
