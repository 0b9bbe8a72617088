package server

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/holdfast/holdfast/api"
	"github.com/holdfast/holdfast/internal/audit"
	"github.com/holdfast/holdfast/internal/auth"
	"github.com/holdfast/holdfast/internal/session"
	"github.com/holdfast/holdfast/internal/sqldb"
	"github.com/holdfast/holdfast/internal/tenant"
)

// caller is an authenticated request's principal.
type caller struct {
	user    tenant.UserRecord
	via     string // session or apikey
	cookie  bool   // a browser's session, held in cookies
	keyID   string
	family  string // the session, for logout
	methods []string
	// until is when the credential stops working: the access token's
	// expiry, or the API key's (zero: never). A stream ends then.
	until time.Time
}

var errUnauthenticated = problem(http.StatusUnauthorized, "unauthenticated", "log in: send a bearer access token or sign the request with an API key")

// authenticate accepts a bearer access token, an HMAC-signed request, or
// a browser's session cookies (browser.go). Every failure answers the
// same 401, so a caller learns nothing about which part was wrong; the
// log says.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request, body []byte) (*caller, error) {
	var c caller
	var userID int64
	var signed auth.Signed
	switch scheme, token := credentials(r); {
	case strings.EqualFold(scheme, "Bearer"):
		cl, err := s.sess.verify(token)
		if err != nil {
			s.log.Info("bearer token refused", "reason", err.Error(), "source", source(r))
			return nil, errUnauthenticated
		}
		userID = cl.userID
		c = caller{via: "session", family: cl.family, methods: cl.methods, until: cl.expires}
	case scheme == auth.SignatureScheme:
		var keyID string
		var err error
		if s.spendWithKey {
			// The nonce is spent as the key is read (load).
			signed, err = s.hmac.Check(r, body, s.now())
			keyID = signed.KeyID
		} else {
			keyID, err = s.hmac.Verify(r, body, s.now())
		}
		if sqldb.Unavailable(err) {
			return nil, err // not the caller's fault: 503, and the nonce is not spent
		}
		if err != nil {
			s.log.Info("signed request refused", "reason", err.Error(), "source", source(r))
			return nil, errUnauthenticated
		}
		c = caller{via: "apikey", keyID: keyID}
	case scheme == "":
		cl, err := s.fromCookies(w, r)
		if err != nil {
			return nil, err
		}
		userID = cl.userID
		c = caller{via: "session", cookie: true, family: cl.family, methods: cl.methods, until: cl.expires}
	default:
		return nil, errUnauthenticated
	}
	if err := s.load(r.Context(), &c, userID, signed); err != nil {
		return nil, err
	}
	return &c, nil
}

// credentials splits the Authorization header into its scheme and the
// rest.
func credentials(r *http.Request) (scheme, rest string) {
	h := r.Header.Get("Authorization")
	scheme, rest, _ = strings.Cut(h, " ")
	return scheme, strings.TrimSpace(rest)
}

// load reads who the caller is now, in one query: for an API key,
// whether it is still live and whose it is, with the user (userID for a
// session) and their memberships. None of it is cached, so that any
// change — a key revoked or rotated, a user deleted, a membership removed
// or a role changed, by this process, another, or in the database itself
// — holds from the next request on. A key or user gone since answers the
// same 401 as a bad credential. A signed request whose nonce is not yet
// spent (signed.KeyID set: on PostgreSQL, spendWithKey) spends it in the
// same statement: one round trip fewer on every signed request.
func (s *Server) load(ctx context.Context, c *caller, userID int64, signed auth.Signed) error {
	if c.via == "session" {
		// Another replica may have ended the session: the database says.
		live, err := s.sess.m.Live(ctx, c.family)
		if err != nil {
			return err
		}
		if !live {
			s.log.Info("credential refused", "reason", "the session was ended", "via", c.via)
			return errUnauthenticated
		}
	}
	// Reads (and at most once a minute a key's last use, alone).
	replayed := false
	err := s.db.Read(ctx, func(tx *tenant.Tx) error {
		if c.via != "apikey" {
			var err error
			c.user, err = tx.UserByID(userID)
			return err
		}
		var k tenant.APIKeyRecord
		var user tenant.UserRecord
		var err error
		if signed.KeyID != "" {
			var spent bool
			k, user, spent, err = tx.APIKeyHolderWith(c.keyID, session.SpendNonce, session.SpendArgs(signed))
			replayed = err == nil && !spent
		} else {
			k, user, err = tx.APIKeyHolder(c.keyID)
		}
		if err != nil || replayed {
			return err
		}
		if err := s.liveKey(tx, k); err != nil {
			return err
		}
		c.user = user
		if k.ExpiresAt != nil {
			c.until = *k.ExpiresAt
		}
		return nil
	})
	if replayed {
		s.log.Info("signed request refused", "reason", auth.ErrReplayed.Error(), "key", c.keyID)
		return errUnauthenticated
	}
	if errors.Is(err, tenant.ErrNotFound) {
		s.log.Info("credential refused", "reason", "the key or its user is gone, revoked or expired", "via", c.via, "key", c.keyID)
		return errUnauthenticated
	}
	return err
}

// auditLogin records a login attempt, successful or not, with why. user
// is the account's name, or for a name that is no account what
// sessions.unknownUser makes of it, which names no object.
func (s *Server) auditLogin(r *http.Request, action, user, result string, detail map[string]string) {
	s.met.logins.WithLabelValues(strings.TrimSuffix(strings.Fields(result)[0], ":")).Inc()
	object := "/v1/users/" + user
	if strings.HasPrefix(user, unknownUserPrefix) {
		object = ""
	}
	s.appendAudit(audit.Entry{Actor: user, Action: action, Object: object, Source: source(r), Result: result, Detail: detail})
}

// dummyHash is verified against when the user does not exist, so that the
// answer takes as long as for a wrong password. Made on first need: an
// argon2id hash costs 64 MiB, which an idle server should not hold.
var dummyHash = sync.OnceValue(func() string {
	h, err := auth.HashPassword("holdfast-no-such-user-" + rand.Text())
	if err != nil {
		panic(err) // only for a broken random source
	}
	return h
})

// checkPassword verifies a password, at most one per CPU at a time: each
// argon2id verification takes 64 MiB, and a burst of logins must not be
// able to take the server's memory.
func (s *Server) checkPassword(ctx context.Context, hash, pw string) (bool, error) {
	select {
	case s.hashing <- struct{}{}:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	defer func() { <-s.hashing }()
	return auth.VerifyPassword(hash, pw)
}

// hashPassword hashes a new password under the same bound.
func (s *Server) hashPassword(ctx context.Context, pw string) (string, error) {
	select {
	case s.hashing <- struct{}{}:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	defer func() { <-s.hashing }()
	return auth.HashPassword(pw)
}

func (s *Server) login(q *request) error {
	var in api.LoginRequest
	if err := q.decode(&in); err != nil {
		return err
	}
	r := q.r
	ip := source(r)
	if in.Cookie {
		// A login form on another site must not be able to log a
		// browser into an account of the attacker's (login CSRF).
		if err := checkCSRF(r); err != nil {
			return err
		}
	}
	// The user is read first, so that the audit log names only accounts
	// that exist (people type passwords into the name field). Every
	// answer below is the same for a name that is no account.
	var u tenant.UserRecord
	err := q.do(s, func(tx *tenant.Tx) error {
		var err error
		u, err = tx.User(in.User)
		return err
	})
	if err != nil && !errors.Is(err, tenant.ErrNotFound) {
		return err
	}
	actor := in.User
	if err != nil {
		actor = s.sess.unknownUser(in.User)
	}
	fail := func(reason string) error {
		s.auditLogin(r, "login", actor, "denied: "+reason, nil)
		return problem(http.StatusUnauthorized, "login-failed", "wrong user, password or code")
	}
	if err := s.sess.admit(r.Context(), in.User, ip); err != nil {
		var ra *retryAfter
		if errors.As(err, &ra) {
			s.auditLogin(r, "login", actor, "denied: "+ra.reason, nil)
			return ra.answer(q.w)
		}
		return err
	}
	hash := u.PasswordHash
	if hash == "" {
		hash = dummyHash()
	}
	good, err := s.checkPassword(r.Context(), hash, in.Password)
	if err != nil || !good || u.PasswordHash == "" {
		return fail("password")
	}
	methods := []string{"pwd"}
	// A user with a second factor — TOTP, passkeys or both — gives one
	// of them: a passkey's answer, or a TOTP code if enrolled.
	passkeys := 0
	if err := q.do(s, func(tx *tenant.Tx) error {
		var err error
		passkeys, err = tx.CountPasskeys(u.ID)
		return err
	}); err != nil {
		return err
	}
	switch {
	case in.Passkey != nil:
		reason, err := s.passkeyFactor(q, u, in.Passkey)
		if err != nil {
			return err
		}
		if reason != "" {
			return fail(reason)
		}
		methods = append(methods, "passkey")
	case u.TOTP && in.TOTP != "":
		secret, err := s.box.Open(u.TOTPSealed, totpAD(u.ID))
		if err != nil {
			return err
		}
		if err := s.sess.verifyTOTP(r.Context(), u.ID, secret, in.TOTP); err != nil {
			switch {
			case errors.Is(err, auth.ErrReplayed):
				return fail("totp replayed")
			case errors.Is(err, auth.ErrInvalidCode):
				return fail("totp")
			}
			return err
		}
		methods = append(methods, "otp")
	case u.TOTP || passkeys > 0:
		// The password was right; say what is missing. The attempt
		// was no guess: uncounted, it leaves the source clean for
		// the second step of a two-step login, even while the
		// account is under attack. (A wrong password was counted
		// above, so passwords cannot be tested without limit.)
		if err := s.sess.forgive(r.Context(), in.User, ip); err != nil {
			return err
		}
		return s.secondFactorRequired(r, actor, u.TOTP, passkeys > 0)
	}
	return s.grant(q, u, methods, in.Cookie)
}

// secondFactorRequired answers a right password of a user with a second
// factor that was not given. A user with TOTP alone is answered
// totp-required, as before passkeys; a user with passkeys
// second-factor-required, whose errors name the fields that would do
// (passkey, and totp when enrolled), so that a client can ask for one.
func (s *Server) secondFactorRequired(r *http.Request, actor string, totp, passkeys bool) error {
	if !passkeys {
		s.auditLogin(r, "login", actor, "denied: totp required", nil)
		return problem(http.StatusUnauthorized, "totp-required", "this account needs a TOTP code (field totp)")
	}
	s.auditLogin(r, "login", actor, "denied: second factor required", nil)
	p := problem(http.StatusUnauthorized, "second-factor-required", "this account needs a second factor: a passkey (field passkey, answering /v1/auth/passkey/challenge)")
	p.Errors = []api.FieldError{{Field: "passkey", Message: "a passkey's answer to a challenge from /v1/auth/passkey/challenge"}}
	if totp {
		p.Detail = "this account needs a second factor: a passkey (field passkey, answering /v1/auth/passkey/challenge) or a TOTP code (field totp)"
		p.Errors = append(p.Errors, api.FieldError{Field: "totp", Message: "a six-digit code"})
	}
	return p
}

func (s *Server) refresh(q *request) error {
	var in api.RefreshRequest
	if err := q.decode(&in); err != nil {
		return err
	}
	tok, userID, err := s.sess.refresh(q.r.Context(), in.RefreshToken)
	if err != nil {
		reason := "invalid or expired"
		if errors.Is(err, errReuse) {
			reason = "refresh token reused; session revoked"
		}
		s.auditLogin(q.r, "refresh", "unknown", "denied: "+reason, nil)
		return problem(http.StatusUnauthorized, "refresh-failed", "the refresh token is not valid; log in again")
	}
	name := "unknown"
	_ = q.do(s, func(tx *tenant.Tx) error { // the name is for the audit entry only
		u, err := tx.UserByID(userID)
		name = u.Name
		return err
	})
	s.auditLogin(q.r, "refresh", name, "ok", nil)
	return q.ok(tok)
}

func (s *Server) logout(q *request) error {
	if q.caller.via != "session" {
		return problem(http.StatusConflict, "not-a-session", "API keys have no session; revoke the key instead")
	}
	if err := s.sess.logout(q.r.Context(), q.caller.user.ID, q.caller.family); err != nil {
		return err
	}
	if q.caller.cookie {
		clearSessionCookies(q.w)
	}
	return q.reply(http.StatusNoContent, nil)
}

func (s *Server) me(q *request) error {
	return q.ok(api.Me{User: q.caller.user.User, Via: q.caller.via, APIKey: q.caller.keyID, Methods: q.caller.methods})
}

func (s *Server) changePassword(q *request) error {
	var in api.PasswordChange
	if err := q.decode(&in); err != nil {
		return err
	}
	// A wrong current password is a failed login for the account from
	// this source, under the same limits: a stolen access token or API
	// key must not be a way to guess the password.
	u, ip := q.caller.user, source(q.r)
	if err := s.sess.admit(q.r.Context(), u.Name, ip); err != nil {
		var ra *retryAfter
		if errors.As(err, &ra) {
			return ra.answer(q.w)
		}
		return err
	}
	good, err := s.checkPassword(q.r.Context(), u.PasswordHash, in.Current)
	if u.PasswordHash == "" || err != nil || !good {
		return badField("current", "is not the current password")
	}
	if err := s.sess.succeeded(q.r.Context(), u.Name, ip); err != nil {
		return err
	}
	hash, err := s.hashPassword(q.r.Context(), in.New)
	if err != nil {
		return badField("new", err.Error())
	}
	if err := q.do(s, func(tx *tenant.Tx) error { return tx.SetPassword(q.caller.user.ID, hash) }); err != nil {
		return err
	}
	// Every session was opened with the old password, this one included:
	// end them all; the client logs in again with the new one.
	s.sess.revokeUser(q.r.Context(), q.caller.user.ID)
	return q.reply(http.StatusNoContent, nil)
}

// totpAD binds a sealed TOTP secret to its user: a sealed secret copied to
// another user's row does not open.
func totpAD(userID int64) []byte { return []byte("totp:" + itoa(userID)) }

func (s *Server) enrollTOTP(q *request) error {
	if q.caller.user.TOTP {
		return problem(http.StatusConflict, "totp-enrolled", "a TOTP factor is already enrolled")
	}
	key, err := auth.NewTOTPKey("Holdfast "+s.cloud, q.caller.user.Name)
	if err != nil {
		return err
	}
	sealed, err := s.box.Seal(key.Secret, totpAD(q.caller.user.ID))
	if err != nil {
		return err
	}
	if err := q.do(s, func(tx *tenant.Tx) error { return tx.SetTOTPPending(q.caller.user.ID, sealed) }); err != nil {
		return err
	}
	return q.reply(http.StatusCreated, api.TOTPEnrollment{Secret: key.Encoded, URI: key.URI})
}

func (s *Server) confirmTOTP(q *request) error {
	var in api.TOTPConfirm
	if err := q.decode(&in); err != nil {
		return err
	}
	u := q.caller.user
	if len(u.TOTPPending) == 0 {
		return problem(http.StatusConflict, "no-enrollment", "start an enrollment first (POST /v1/me/totp)")
	}
	secret, err := s.box.Open(u.TOTPPending, totpAD(u.ID))
	if err != nil {
		return err
	}
	// The same guard as logins: the code that confirms is spent, and
	// cannot log in too.
	if err := s.sess.verifyTOTP(q.r.Context(), u.ID, secret, in.Code); err != nil {
		if errors.Is(err, auth.ErrInvalidCode) || errors.Is(err, auth.ErrReplayed) {
			return badField("code", "is not the current code")
		}
		return err
	}
	if err := q.do(s, func(tx *tenant.Tx) error { return tx.ConfirmTOTP(u.ID, u.TOTPPending) }); err != nil {
		return err
	}
	return q.reply(http.StatusNoContent, nil)
}

// API keys.

func keyAD(id string) []byte { return []byte("apikey:" + id) }

func (s *Server) listAPIKeys(q *request) error {
	var items []api.APIKey
	err := q.do(s, func(tx *tenant.Tx) error {
		ks, err := tx.APIKeys(q.caller.user.ID)
		for _, k := range ks {
			items = append(items, k.APIKey)
		}
		return err
	})
	if err != nil {
		return err
	}
	if items == nil {
		items = []api.APIKey{}
	}
	return q.ok(api.Page[api.APIKey]{Items: items})
}

// newKey makes and stores a key for the caller; tx is the request's.
func (s *Server) newKey(tx *tenant.Tx, u tenant.UserRecord, name string, expires *time.Time) (api.APIKeySecret, error) {
	id, secret, err := auth.NewAPIKey()
	if err != nil {
		return api.APIKeySecret{}, err
	}
	sealed, err := s.box.Seal(secret, keyAD(id))
	if err != nil {
		return api.APIKeySecret{}, err
	}
	var exp *string
	if expires != nil {
		e := expires.UTC().Format(time.RFC3339Nano)
		exp = &e
	}
	if err := tx.CreateAPIKey(id, u.ID, name, sealed, exp); err != nil {
		return api.APIKeySecret{}, err
	}
	k, err := tx.APIKey(id)
	if err != nil {
		return api.APIKeySecret{}, err
	}
	return api.APIKeySecret{APIKey: k.APIKey, Secret: base64.RawURLEncoding.EncodeToString(secret)}, nil
}

func (s *Server) createAPIKey(q *request) error {
	var in api.APIKeyCreate
	if err := q.decode(&in); err != nil {
		return err
	}
	var expires *time.Time
	if in.ExpiresIn != "" {
		d, err := time.ParseDuration(in.ExpiresIn)
		if err != nil || d < time.Minute || d > 5*365*24*time.Hour {
			return badField("expires_in", "must be a duration from 1m to 43800h, e.g. 720h")
		}
		t := s.now().Add(d)
		expires = &t
	}
	var out api.APIKeySecret
	err := q.do(s, func(tx *tenant.Tx) error {
		var err error
		out, err = s.newKey(tx, q.caller.user, in.Name, expires)
		return err
	})
	if err != nil {
		return err
	}
	return q.reply(http.StatusCreated, out)
}

func (s *Server) rotateAPIKey(q *request) error {
	id := q.r.PathValue("key")
	var out api.APIKeySecret
	err := q.do(s, func(tx *tenant.Tx) error {
		old, err := tx.APIKey(id)
		if err != nil || old.UserID != q.caller.user.ID || old.Revoked {
			return tenant.ErrNotFound
		}
		if err := tx.RevokeAPIKey(q.caller.user.ID, id); err != nil {
			return err
		}
		out, err = s.newKey(tx, q.caller.user, old.Name, old.ExpiresAt)
		return err
	})
	if errors.Is(err, tenant.ErrNotFound) {
		return notFound("API key", id)
	}
	if err != nil {
		return err
	}
	s.keys.forget(id)
	return q.reply(http.StatusCreated, out)
}

func (s *Server) revokeAPIKey(q *request) error {
	id := q.r.PathValue("key")
	err := q.do(s, func(tx *tenant.Tx) error { return tx.RevokeAPIKey(q.caller.user.ID, id) })
	if errors.Is(err, tenant.ErrNotFound) {
		return notFound("API key", id)
	}
	if err != nil {
		return err
	}
	s.keys.forget(id)
	return q.reply(http.StatusNoContent, nil)
}
