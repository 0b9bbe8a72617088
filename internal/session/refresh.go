package session

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/holdfast/holdfast/internal/auth"
	"github.com/holdfast/holdfast/internal/sqldb"
)

// Tokens is what a login or a refresh hands to the client. The tokens are
// auth.Secrets so that logging a Tokens by mistake prints no credential.
type Tokens struct {
	Access        auth.Secret // the signed access token (JWT), for "Authorization: Bearer"
	AccessExpires time.Time
	// Refresh is the opaque refresh token: exchange it with Refresh for
	// new tokens. It works once.
	Refresh auth.Secret
	// RefreshExpires is when Refresh stops working if unused: the idle
	// lifetime from now, capped by the session's absolute end.
	RefreshExpires time.Time
	Family         string // the session id, as in Claims.Family
}

const refreshLen = 32 // random bytes in a refresh token

// refreshTokenLen is the length of a refresh token's text.
var refreshTokenLen = b64.EncodedLen(refreshLen)

func newRefresh() (string, [sha256.Size]byte, error) {
	b := make([]byte, refreshLen)
	if _, err := rand.Read(b); err != nil {
		return "", [sha256.Size]byte{}, fmt.Errorf("refresh token: %w", err)
	}
	defer clear(b)
	return b64.EncodeToString(b), sha256.Sum256(b), nil
}

// refreshHash returns the stored form of a presented refresh token. Only
// its SHA-256 is stored and looked up, so the timing of the lookup tells
// an attacker about hashes, not about tokens; no comparison of the token
// itself ever happens.
func refreshHash(token string) ([]byte, error) {
	if len(token) != refreshTokenLen {
		return nil, invalid(errMalformed)
	}
	b, err := b64.DecodeString(token)
	if err != nil || len(b) != refreshLen {
		return nil, invalid(errMalformed)
	}
	defer clear(b)
	h := sha256.Sum256(b)
	return h[:], nil
}

// Login starts a session for a user who has just authenticated by methods
// (e.g. "pwd", "otp"; at least one). Check the credentials, and report
// success to the Limiter, before calling it.
func (m *Manager) Login(ctx context.Context, userID string, methods []string) (Tokens, error) {
	if userID == "" || len(methods) == 0 || slices.Contains(methods, "") {
		return Tokens{}, errors.New("session: Login needs a user id and at least one authentication method")
	}
	now := m.now()
	family, err := randomID(16)
	if err != nil {
		return Tokens{}, err
	}
	refresh, hash, err := newRefresh()
	if err != nil {
		return Tokens{}, err
	}
	access, accessExp, err := m.signAccess(userID, family, methods, now, now)
	if err != nil {
		return Tokens{}, err
	}
	methodsJSON, err := json.Marshal(methods)
	if err != nil {
		return Tokens{}, fmt.Errorf("session methods: %w", err)
	}
	end := now.Add(m.cfg.RefreshAbsolute)
	err = sqldb.Tx(ctx, m.db, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `
			INSERT INTO session_families (id, user_id, methods, created, expires, access_until)
			VALUES (?, ?, ?, ?, ?, ?)`,
			family, userID, string(methodsJSON), ms(now), ms(end), ms(accessExp)); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO session_refresh (hash, family, issued) VALUES (?, ?, ?)`, hash[:], family, ms(now))
		return err
	})
	if err != nil {
		return Tokens{}, fmt.Errorf("start session for user %q: %w", userID, err)
	}
	return m.tokens(access, accessExp, refresh, now, end, family), nil
}

func (m *Manager) tokens(access string, accessExp time.Time, refresh string, now, end time.Time, family string) Tokens {
	refreshExp := now.Add(m.cfg.RefreshIdle)
	if end.Before(refreshExp) {
		refreshExp = end
	}
	return Tokens{
		Access:         auth.SecretString(access),
		AccessExpires:  accessExp,
		Refresh:        auth.SecretString(refresh),
		RefreshExpires: refreshExp,
		Family:         family,
	}
}

// Refresh exchanges a refresh token for new tokens of the same session.
// The presented token is spent by this call, whatever happens next:
// presenting it again is taken as theft (ErrReuse) and ends the session,
// together with every token issued for it. Of concurrent calls with the
// same token exactly one succeeds; the others see it spent.
//
// A client that lost the response (a network error) therefore loses its
// session and must log in again: a grace period for retries would also
// be a grace period for a thief.
func (m *Manager) Refresh(ctx context.Context, token string) (Tokens, error) {
	hash, err := refreshHash(token)
	if err != nil {
		return Tokens{}, err
	}
	now := m.now()
	next, nextHash, err := newRefresh()
	if err != nil {
		return Tokens{}, err
	}
	var out Tokens
	var reused string // family revoked for reuse; its outcome must be committed
	var reusedUntil time.Time
	err = sqldb.Tx(ctx, m.db, func(tx *sql.Tx) error {
		// Spending comes first and is conditional, so that the check
		// "unspent" and the write "spent" are one statement: two
		// concurrent refreshes cannot both see the token unspent. Being a
		// write, it also takes SQLite's write lock for the whole
		// transaction.
		var family string
		var issued int64
		err := tx.QueryRowContext(ctx, `
			UPDATE session_refresh SET spent = ? WHERE hash = ? AND spent IS NULL
			RETURNING family, issued`, ms(now), hash).Scan(&family, &issued)
		if errors.Is(err, sql.ErrNoRows) {
			err := tx.QueryRowContext(ctx, `SELECT family FROM session_refresh WHERE hash = ?`, hash).Scan(&family)
			if errors.Is(err, sql.ErrNoRows) {
				return invalid(errUnknownToken)
			}
			if err != nil {
				return err
			}
			reused = family
			reusedUntil, err = revokeTx(ctx, tx, family, now, "reuse")
			return err
		}
		if err != nil {
			return err
		}
		var f struct {
			user, methods        string
			created, end, accTil int64
			revoked              sql.NullInt64
		}
		if err := tx.QueryRowContext(ctx, `
			SELECT user_id, methods, created, expires, access_until, revoked
			FROM session_families WHERE id = ?`, family).
			Scan(&f.user, &f.methods, &f.created, &f.end, &f.accTil, &f.revoked); err != nil {
			return fmt.Errorf("session of refresh token: %w", err)
		}
		// Returning an error rolls the spending back: a token refused for
		// these reasons was not exchanged, and presenting it again is no
		// sign of theft.
		if f.revoked.Valid {
			return ErrRevoked
		}
		end := fromMS(f.end)
		if !now.Before(end) || !now.Before(fromMS(issued).Add(m.cfg.RefreshIdle)) {
			return ErrExpired
		}
		var methods []string
		if err := json.Unmarshal([]byte(f.methods), &methods); err != nil {
			return fmt.Errorf("session methods: %w", err)
		}
		access, accessExp, err := m.signAccess(f.user, family, methods, fromMS(f.created), now)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO session_refresh (hash, family, issued) VALUES (?, ?, ?)`,
			nextHash[:], family, ms(now)); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE session_families SET access_until = CASE WHEN access_until > ? THEN access_until ELSE ? END WHERE id = ?`,
			ms(accessExp), ms(accessExp), family); err != nil {
			return err
		}
		out = m.tokens(access, accessExp, next, now, end, family)
		return nil
	})
	if err != nil {
		return Tokens{}, wrapStoreErr("refresh session", err)
	}
	if reused != "" {
		m.markRevoked(reused, reusedUntil)
		return Tokens{}, ErrReuse
	}
	return out, nil
}

// wrapStoreErr adds context to database errors and leaves ours, which
// callers test with errors.Is and which already say what happened, alone.
func wrapStoreErr(what string, err error) error {
	for _, e := range []error{ErrInvalid, ErrExpired, ErrRevoked, ErrReuse} {
		if errors.Is(err, e) {
			return err
		}
	}
	return fmt.Errorf("%s: %w", what, err)
}

// revokeTx revokes a family (a no-op if it already is) and returns the
// expiry of its newest access token.
func revokeTx(ctx context.Context, tx *sql.Tx, family string, now time.Time, reason string) (time.Time, error) {
	if _, err := tx.ExecContext(ctx, `UPDATE session_families SET revoked = ?, reason = ? WHERE id = ? AND revoked IS NULL`,
		ms(now), reason, family); err != nil {
		return time.Time{}, err
	}
	var until int64
	if err := tx.QueryRowContext(ctx, `SELECT access_until FROM session_families WHERE id = ?`, family).Scan(&until); err != nil {
		return time.Time{}, err
	}
	return fromMS(until), nil
}

// Logout ends the session a refresh token belongs to, spent or not, so
// that a client can log out with the one credential it keeps. Access
// tokens of the session stop verifying at once.
func (m *Manager) Logout(ctx context.Context, refreshToken string) error {
	hash, err := refreshHash(refreshToken)
	if err != nil {
		return err
	}
	var family string
	var until time.Time
	err = sqldb.Tx(ctx, m.db, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `SELECT family FROM session_refresh WHERE hash = ?`, hash).Scan(&family)
		if errors.Is(err, sql.ErrNoRows) {
			return invalid(errUnknownToken)
		}
		if err != nil {
			return err
		}
		until, err = revokeTx(ctx, tx, family, m.now(), "logout")
		return err
	})
	if err != nil {
		return wrapStoreErr("log out", err)
	}
	m.markRevoked(family, until)
	return nil
}

// Revoke ends session family of user userID: a logout with an access
// token (pass Claims.Subject and Claims.Family), or a user ending one of
// their other sessions. A family of another user is treated as unknown
// (ErrInvalid), so that a handler passing the caller's own id cannot end
// someone else's session. Revoking a revoked session is not an error.
func (m *Manager) Revoke(ctx context.Context, userID, family string) error {
	var until time.Time
	err := sqldb.Tx(ctx, m.db, func(tx *sql.Tx) error {
		var owner string
		err := tx.QueryRowContext(ctx, `SELECT user_id FROM session_families WHERE id = ?`, family).Scan(&owner)
		if errors.Is(err, sql.ErrNoRows) || (err == nil && owner != userID) {
			return invalid(errUnknownSession)
		}
		if err != nil {
			return err
		}
		until, err = revokeTx(ctx, tx, family, m.now(), "logout")
		return err
	})
	if err != nil {
		return wrapStoreErr(fmt.Sprintf("revoke session %q", family), err)
	}
	m.markRevoked(family, until)
	return nil
}

// RevokeUser ends every session of a user — on a password change, a lost
// device, or an account being disabled — and returns how many were live.
func (m *Manager) RevokeUser(ctx context.Context, userID string) (int, error) {
	type ended struct {
		id    string
		until int64
	}
	var all []ended
	err := sqldb.Tx(ctx, m.db, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `
			UPDATE session_families SET revoked = ?, reason = 'user' WHERE user_id = ? AND revoked IS NULL
			RETURNING id, access_until`, ms(m.now()), userID)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var e ended
			if err := rows.Scan(&e.id, &e.until); err != nil {
				return err
			}
			all = append(all, e)
		}
		return rows.Err()
	})
	if err != nil {
		return 0, fmt.Errorf("revoke sessions of user %q: %w", userID, err)
	}
	for _, e := range all {
		m.markRevoked(e.id, fromMS(e.until))
	}
	return len(all), nil
}
