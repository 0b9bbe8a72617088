package session

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/holdfast/holdfast/internal/auth"
)

// Defaults for the zero fields of Config.
const (
	DefaultAccessTTL       = 15 * time.Minute
	DefaultLeeway          = 30 * time.Second
	DefaultRefreshIdle     = 7 * 24 * time.Hour
	DefaultRefreshAbsolute = 30 * 24 * time.Hour
	DefaultKeyRotateAfter  = 30 * 24 * time.Hour
)

// Config tunes a Manager. Only Issuer is required.
type Config struct {
	// Issuer is the "iss" of every access token, e.g. the control plane's
	// URL; tokens naming another issuer are refused.
	Issuer string
	// AccessTTL is how long an access token is good for.
	AccessTTL time.Duration
	// Leeway is the clock skew forgiven when checking exp and iat.
	Leeway time.Duration
	// RefreshIdle ends a session whose refresh token goes unused this long.
	RefreshIdle time.Duration
	// RefreshAbsolute ends a session this long after its login, however
	// active: the user must authenticate again.
	RefreshAbsolute time.Duration
	// KeyRotateAfter is the age at which Maintain replaces the signing key.
	KeyRotateAfter time.Duration
	// Now is the clock; nil means time.Now. Tests advance their own.
	Now func() time.Time
}

func (c *Config) setDefaults() error {
	if c.Issuer == "" {
		return errors.New("session: Config.Issuer is required")
	}
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{
		{&c.AccessTTL, DefaultAccessTTL},
		{&c.Leeway, DefaultLeeway},
		{&c.RefreshIdle, DefaultRefreshIdle},
		{&c.RefreshAbsolute, DefaultRefreshAbsolute},
		{&c.KeyRotateAfter, DefaultKeyRotateAfter},
	} {
		if *d.v < 0 {
			return errors.New("session: Config durations must not be negative")
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Manager issues, refreshes, verifies and revokes login sessions. Safe
// for concurrent use. Several Managers may share a database (replicas of
// the control plane): Verify consults this one's memory of revocations,
// and Live the database, which knows them all; the signing keys are read
// again when a token names one this Manager does not know.
type Manager struct {
	db     *sql.DB
	box    *auth.Box
	cfg    Config
	parser *jwt.Parser

	rotateMu sync.Mutex // serializes key rotations
	reloadMu sync.Mutex // serializes reloads of the keys on an unknown kid
	reloaded time.Time  // when one was last tried

	mu     sync.RWMutex
	signer *signingKey
	keys   map[string]*signingKey // by kid; the signer and retired keys that still verify
	// revoked maps the id of each revoked family whose access tokens may
	// still be unexpired to the time after which none is.
	revoked map[string]time.Time
}

// New returns a Manager keeping its state in db, creating the tables and
// the first signing key if missing. box seals the signing keys at rest;
// it must hold the same master key on every start.
func New(ctx context.Context, db *sql.DB, box *auth.Box, cfg Config) (*Manager, error) {
	if db == nil || box == nil {
		return nil, errors.New("session: New needs a database and a Box")
	}
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if err := Migrate(ctx, db); err != nil {
		return nil, err
	}
	m := &Manager{db: db, box: box, cfg: cfg, revoked: map[string]time.Time{}}
	m.parser = jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}),
		jwt.WithIssuer(cfg.Issuer),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithTimeFunc(m.now),
		jwt.WithStrictDecoding(),
	)
	now := m.now()
	keys, signer, err := loadKeys(ctx, db, box, now)
	if err != nil {
		return nil, err
	}
	m.keys, m.signer = keys, signer
	if err := m.loadRevoked(ctx, now); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *Manager) now() time.Time { return m.cfg.Now() }

func (m *Manager) loadRevoked(ctx context.Context, now time.Time) error {
	rows, err := m.db.QueryContext(ctx, `SELECT id, access_until FROM session_families WHERE revoked IS NOT NULL AND access_until >= ?`,
		ms(now.Add(-m.cfg.Leeway)))
	if err != nil {
		return fmt.Errorf("revoked sessions: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var until int64
		if err := rows.Scan(&id, &until); err != nil {
			return fmt.Errorf("revoked sessions: %w", err)
		}
		m.revoked[id] = fromMS(until).Add(m.cfg.Leeway)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("revoked sessions: %w", err)
	}
	return nil
}

// markRevoked makes Verify refuse the family's access tokens until the
// last of them, issued no later than accessUntil, has expired.
func (m *Manager) markRevoked(family string, accessUntil time.Time) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	// Pruning here keeps the set bounded by the revocations of one
	// access-token lifetime without relying on Maintain being called.
	for id, until := range m.revoked {
		if until.Before(now) {
			delete(m.revoked, id)
		}
	}
	m.revoked[family] = accessUntil.Add(m.cfg.Leeway)
}

// Live reports whether the session family is live in the database: not
// revoked or ended by any process sharing it. Verify's in-memory check
// knows only this Manager's revocations; replicas call Live on every
// request so that a logout on one holds on all from the next request.
func (m *Manager) Live(ctx context.Context, family string) (bool, error) {
	var revoked bool
	err := m.db.QueryRowContext(ctx, `SELECT revoked IS NOT NULL FROM session_families WHERE id = ?`, family).Scan(&revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil // ended and forgotten
	}
	if err != nil {
		return false, fmt.Errorf("session: %w", err)
	}
	return !revoked, nil
}

func (m *Manager) isRevoked(family string) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	_, ok := m.revoked[family]
	return ok
}

// Maintain does the periodic upkeep; call it every few minutes (an hour
// at most). It rotates a signing key older than KeyRotateAfter, forgets
// retired keys no live token can name, and deletes sessions that have
// ended and whose last access token has expired.
func (m *Manager) Maintain(ctx context.Context) error {
	now := m.now()
	if err := m.Reload(ctx); err != nil {
		return err
	}
	m.mu.RLock()
	age := now.Sub(m.signer.created)
	m.mu.RUnlock()
	if age >= m.cfg.KeyRotateAfter {
		if _, err := m.RotateKey(ctx); err != nil {
			return err
		}
	}
	if err := m.dropExpiredKeys(ctx, now); err != nil {
		return err
	}
	// A family is dead when no refresh token of it can be exchanged any
	// more: revoked, past its absolute end, or with no unspent token
	// within the idle lifetime. It is kept until its access tokens have
	// expired, so that a revocation is still enforced after a restart.
	nowMS := ms(now)
	_, err := m.db.ExecContext(ctx, `
		DELETE FROM session_families
		WHERE access_until < ?
		AND (revoked IS NOT NULL OR expires <= ? OR NOT EXISTS (
			SELECT 1 FROM session_refresh r
			WHERE r.family = session_families.id AND r.spent IS NULL AND r.issued > ?))`,
		ms(now.Add(-m.cfg.Leeway)), nowMS, ms(now.Add(-m.cfg.RefreshIdle)))
	if err != nil {
		return fmt.Errorf("delete ended sessions: %w", err)
	}
	// Not left to ON DELETE CASCADE: the caller's database may not enable
	// foreign keys.
	if _, err := m.db.ExecContext(ctx, `DELETE FROM session_refresh WHERE family NOT IN (SELECT id FROM session_families)`); err != nil {
		return fmt.Errorf("delete ended sessions: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, until := range m.revoked {
		if until.Before(now) {
			delete(m.revoked, id)
		}
	}
	return nil
}
