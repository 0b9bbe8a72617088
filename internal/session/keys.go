package session

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/holdfast/holdfast/internal/auth"
	"github.com/holdfast/holdfast/internal/sqldb"
)

// signingKey is one Ed25519 key of the access-token key set.
type signingKey struct {
	kid     string
	priv    ed25519.PrivateKey
	pub     ed25519.PublicKey
	created time.Time
	// verifyUntil is zero for the signing key. A retired key verifies
	// until then: the last token it signed has expired, leeway included.
	verifyUntil time.Time
}

// kidOf derives a key id from the public key, so that a row's id cannot
// name a different key than the one sealed in it (loadKeys checks).
func kidOf(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return b64.EncodeToString(sum[:12])
}

// keyAD binds a sealed seed to its key id.
func keyAD(kid string) []byte { return []byte("holdfast/session/key/" + kid) }

func generateKey(box *auth.Box, now time.Time) (*signingKey, []byte, error) {
	seed := make([]byte, ed25519.SeedSize)
	if _, err := rand.Read(seed); err != nil {
		return nil, nil, fmt.Errorf("signing key: %w", err)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	pub := priv.Public().(ed25519.PublicKey)
	kid := kidOf(pub)
	sealed, err := box.Seal(seed, keyAD(kid))
	clear(seed)
	if err != nil {
		return nil, nil, fmt.Errorf("signing key %s: %w", kid, err)
	}
	return &signingKey{kid: kid, priv: priv, pub: pub, created: now}, sealed, nil
}

// loadKeys opens every key that may still verify a token and returns them
// by id, with the key that signs. It creates the first key when there is
// none.
func loadKeys(ctx context.Context, db *sql.DB, box *auth.Box, now time.Time) (map[string]*signingKey, *signingKey, error) {
	keys := map[string]*signingKey{}
	var signer *signingKey
	rows, err := db.QueryContext(ctx, `SELECT kid, sealed_seed, created, retired, verify_until FROM session_keys`)
	if err != nil {
		return nil, nil, fmt.Errorf("signing keys: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var kid string
		var sealed []byte
		var created int64
		var retired, verifyUntil sql.NullInt64
		if err := rows.Scan(&kid, &sealed, &created, &retired, &verifyUntil); err != nil {
			return nil, nil, fmt.Errorf("signing keys: %w", err)
		}
		if retired.Valid && fromMS(verifyUntil.Int64).Before(now) {
			continue // Maintain deletes it
		}
		k, err := openKey(box, kid, sealed)
		if err != nil {
			return nil, nil, err
		}
		k.created = fromMS(created)
		if retired.Valid {
			k.verifyUntil = fromMS(verifyUntil.Int64)
		} else if signer == nil || k.created.After(signer.created) {
			signer = k
		}
		keys[kid] = k
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("signing keys: %w", err)
	}
	if signer == nil {
		k, err := insertKey(ctx, db, box, now, 0)
		if err != nil {
			return nil, nil, err
		}
		keys[k.kid], signer = k, k
	}
	return keys, signer, nil
}

func openKey(box *auth.Box, kid string, sealed []byte) (*signingKey, error) {
	seed, err := box.Open(sealed, keyAD(kid))
	if err != nil {
		// ErrOpen names no secret; the likely cause is a different master key.
		return nil, fmt.Errorf("signing key %s: %w (is this the master key the database was made with?)", kid, err)
	}
	defer clear(seed)
	if len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("signing key %s: sealed seed has the wrong size", kid)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	pub := priv.Public().(ed25519.PublicKey)
	if kidOf(pub) != kid {
		return nil, fmt.Errorf("signing key %s: sealed key does not match its id", kid)
	}
	return &signingKey{kid: kid, priv: priv, pub: pub}, nil
}

// insertKey makes a new signing key and, in the same transaction, retires
// the current one so that it verifies for retireFor more; retireFor is 0
// when there is no current key.
func insertKey(ctx context.Context, db *sql.DB, box *auth.Box, now time.Time, retireFor time.Duration) (*signingKey, error) {
	k, sealed, err := generateKey(box, now)
	if err != nil {
		return nil, err
	}
	err = sqldb.Tx(ctx, db, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE session_keys SET retired = ?, verify_until = ? WHERE retired IS NULL`,
			ms(now), ms(now.Add(retireFor))); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO session_keys (kid, sealed_seed, created) VALUES (?, ?, ?)`, k.kid, sealed, ms(now))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store signing key %s: %w", k.kid, err)
	}
	return k, nil
}

// RotateKey makes a new key sign access tokens from now on. The previous
// key still verifies the tokens it signed until they expire, so nobody is
// logged out. Maintain rotates on its own once the signing key is older
// than Config.KeyRotateAfter. It returns the new key's id.
func (m *Manager) RotateKey(ctx context.Context) (string, error) {
	return m.rotate(ctx, m.cfg.AccessTTL+m.cfg.Leeway)
}

// ReplaceKey is RotateKey for a key that may have leaked: the previous key
// stops verifying at once, so every access token in circulation fails and
// clients must refresh (refresh tokens are not signed and keep working).
func (m *Manager) ReplaceKey(ctx context.Context) (string, error) {
	return m.rotate(ctx, -time.Millisecond)
}

func (m *Manager) rotate(ctx context.Context, retireFor time.Duration) (string, error) {
	m.rotateMu.Lock()
	defer m.rotateMu.Unlock()
	now := m.now()
	k, err := insertKey(ctx, m.db, m.box, now, retireFor)
	if err != nil {
		return "", err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, old := range m.keys {
		if old.verifyUntil.IsZero() {
			old.verifyUntil = now.Add(retireFor)
		}
	}
	m.keys[k.kid], m.signer = k, k
	return k.kid, nil
}

// dropExpiredKeys forgets retired keys that no unexpired token can name.
func (m *Manager) dropExpiredKeys(ctx context.Context, now time.Time) error {
	if _, err := m.db.ExecContext(ctx, `DELETE FROM session_keys WHERE retired IS NOT NULL AND verify_until < ?`, ms(now)); err != nil {
		return fmt.Errorf("drop expired signing keys: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for kid, k := range m.keys {
		if !k.verifyUntil.IsZero() && k.verifyUntil.Before(now) {
			delete(m.keys, kid)
		}
	}
	return nil
}

// verifyKey returns the key named kid if it may verify a token at now.
func (m *Manager) verifyKey(kid string, now time.Time) (ed25519.PublicKey, error) {
	pub, ok := m.lookupKey(kid, now)
	if !ok && m.reloadSoon() {
		// Another replica sharing the database may have rotated the key:
		// read them again, at most once a second whatever a client sends.
		pub, ok = m.lookupKey(kid, now)
	}
	if !ok {
		return nil, errUnknownKey
	}
	return pub, nil
}

func (m *Manager) lookupKey(kid string, now time.Time) (ed25519.PublicKey, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	k, ok := m.keys[kid]
	if !ok || (!k.verifyUntil.IsZero() && k.verifyUntil.Before(now)) {
		return nil, false
	}
	return k.pub, true
}

// reloadSoon reloads the keys unless that was tried less than a second
// ago, and reports whether it did.
func (m *Manager) reloadSoon() bool {
	m.reloadMu.Lock()
	defer m.reloadMu.Unlock()
	if time.Since(m.reloaded) < time.Second {
		return false
	}
	m.reloaded = time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return m.Reload(ctx) == nil
}

// Reload reads the signing keys again from the database: replicas sharing
// it see each other's rotations. Maintain calls it before deciding to
// rotate, so that replicas do not each rotate.
func (m *Manager) Reload(ctx context.Context) error {
	keys, signer, err := loadKeys(ctx, m.db, m.box, m.now())
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.keys, m.signer = keys, signer
	m.mu.Unlock()
	return nil
}

var errUnknownKey = errors.New("unknown signing key")
