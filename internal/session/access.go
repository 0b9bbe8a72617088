package session

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Errors of Verify, Refresh, Logout and Revoke. They never carry token
// material. A server may map ErrExpired to 401 with a hint to refresh,
// ErrReuse, ErrRevoked and ErrInvalid to 401 with a hint to log in again.
var (
	// ErrInvalid means a token is malformed, forged, of the wrong kind or
	// unknown. The wrapped reason says which, for logs; do not show it to
	// the caller.
	ErrInvalid = errors.New("invalid token")
	// ErrExpired means an authentic token has expired (access token), or
	// its session has ended by idle or absolute lifetime (refresh token).
	ErrExpired = errors.New("token expired")
	// ErrRevoked means the token's session was logged out or revoked.
	ErrRevoked = errors.New("session revoked")
	// ErrReuse means a refresh token was presented a second time. One of
	// the two presenters holds a stolen copy, and which is unknown, so the
	// whole session has been revoked. Worth an audit entry.
	ErrReuse = errors.New("refresh token reused; session revoked")
)

// Reasons wrapped in ErrInvalid.
var (
	errMalformed      = errors.New("malformed token")
	errBadAlg         = errors.New("signing algorithm not accepted")
	errBadType        = errors.New("not an access token")
	errBadSignature   = errors.New("bad signature")
	errBadIssuer      = errors.New("wrong issuer")
	errBadClaims      = errors.New("claims missing or out of range")
	errUnknownToken   = errors.New("unknown refresh token")
	errUnknownSession = errors.New("unknown session")
)

func invalid(reason error) error { return fmt.Errorf("%w: %w", ErrInvalid, reason) }

// accessType is the JWT "typ" of access tokens (RFC 9068), so that no other
// JWT — an OIDC ID token, say — is ever taken for one.
const accessType = "at+jwt"

// maxAccessLen bounds the work an unauthenticated caller can cause: our
// tokens are about 500 bytes.
const maxAccessLen = 4096

// Claims is what a verified access token says.
type Claims struct {
	Subject  string    // the user id
	Family   string    // the session: one login and its refreshes; Revoke takes it
	Methods  []string  // how the user authenticated: "pwd", "otp", "oidc"
	AuthTime time.Time // when the user logged in
	IssuedAt time.Time
	Expires  time.Time
	ID       string // unique per token, for audit
	KeyID    string // the signing key
}

// accessClaims is the wire form: registered claims plus "sid" (the family,
// as in OIDC back-channel logout), "amr" (RFC 8176) and "auth_time".
type accessClaims struct {
	jwt.RegisteredClaims
	SID      string           `json:"sid"`
	AMR      []string         `json:"amr"`
	AuthTime *jwt.NumericDate `json:"auth_time"`
}

// Validate is called by the jwt parser after the signature checks out.
func (c *accessClaims) Validate() error {
	if c.Subject == "" || c.SID == "" || c.ID == "" || len(c.AMR) == 0 || c.AuthTime == nil || c.IssuedAt == nil {
		return errBadClaims
	}
	return nil
}

var _ jwt.ClaimsValidator = (*accessClaims)(nil)

// signAccess returns a signed access token and its expiry.
func (m *Manager) signAccess(sub, family string, methods []string, authTime, now time.Time) (string, time.Time, error) {
	jti, err := randomID(12)
	if err != nil {
		return "", time.Time{}, err
	}
	// Whole seconds, as the token carries them: the expiry reported to the
	// caller and the one stored for revocation are then exact.
	iat := now.Truncate(time.Second)
	exp := iat.Add(m.cfg.AccessTTL)
	m.mu.RLock()
	k := m.signer
	m.mu.RUnlock()
	t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, &accessClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    m.cfg.Issuer,
			Subject:   sub,
			ID:        jti,
			IssuedAt:  jwt.NewNumericDate(iat),
			ExpiresAt: jwt.NewNumericDate(exp),
		},
		SID:      family,
		AMR:      methods,
		AuthTime: jwt.NewNumericDate(authTime),
	})
	t.Header["kid"] = k.kid
	t.Header["typ"] = accessType
	s, err := t.SignedString(k.priv)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("sign access token: %w", err)
	}
	return s, exp, nil
}

// Verify checks an access token — signature, algorithm, key, type,
// issuer, expiry — and that its session has not been revoked, and returns
// its claims. Call it on every request; it touches no database.
//
// Revocation is checked against an in-memory set of revoked families,
// loaded by New and updated by every revocation this Manager makes. That
// keeps Verify cheap, but a revocation made by another process on the
// same database (another replica) is not in it: where others share the
// database, call Live too, which reads it.
func (m *Manager) Verify(token string) (Claims, error) {
	if len(token) > maxAccessLen {
		return Claims{}, invalid(errMalformed)
	}
	var c accessClaims
	var kid string
	_, err := m.parser.ParseWithClaims(token, &c, func(t *jwt.Token) (any, error) {
		// The parser has already refused other algorithms; this guards
		// against that option being lost in a refactoring.
		if t.Method != jwt.SigningMethodEdDSA {
			return nil, errBadAlg
		}
		if typ, _ := t.Header["typ"].(string); typ != accessType {
			return nil, errBadType
		}
		kid, _ = t.Header["kid"].(string)
		return m.verifyKey(kid, m.now())
	})
	if err != nil {
		return Claims{}, classify(err)
	}
	if m.isRevoked(c.SID) {
		return Claims{}, ErrRevoked
	}
	return Claims{
		Subject:  c.Subject,
		Family:   c.SID,
		Methods:  slices.Clone(c.AMR),
		AuthTime: c.AuthTime.UTC(),
		IssuedAt: c.IssuedAt.UTC(),
		Expires:  c.ExpiresAt.UTC(),
		ID:       c.ID,
		KeyID:    kid,
	}, nil
}

// classify maps the jwt package's errors to ours. It never wraps them:
// their text is not ours to vouch for.
func classify(err error) error {
	switch {
	case errors.Is(err, errUnknownKey):
		return invalid(errUnknownKey)
	case errors.Is(err, errBadType):
		return invalid(errBadType)
	case errors.Is(err, errBadAlg):
		return invalid(errBadAlg)
	case errors.Is(err, jwt.ErrTokenMalformed):
		return invalid(errMalformed)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		// The parser reports a refused algorithm as an invalid signature
		// too; only a failed Ed25519 check is really one.
		if errors.Is(err, jwt.ErrEd25519Verification) {
			return invalid(errBadSignature)
		}
		return invalid(errBadAlg)
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return invalid(errBadAlg) // alg missing or not implemented
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return invalid(errBadIssuer)
	case errors.Is(err, jwt.ErrTokenInvalidClaims) && errors.Is(err, jwt.ErrTokenExpired) && !errors.Is(err, errBadClaims) &&
		!errors.Is(err, jwt.ErrTokenUsedBeforeIssued) && !errors.Is(err, jwt.ErrTokenNotValidYet):
		return ErrExpired
	default:
		return invalid(errBadClaims)
	}
}
