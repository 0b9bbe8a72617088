package session

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/holdfast/holdfast/internal/auth"
)

// Nonces is an auth.NonceStore in the database: every replica sharing it
// sees every nonce, so that a signed request is accepted once whichever
// replica it is sent to. A nonce costs one insert; Maintain forgets those
// out of the window.
type Nonces struct {
	db *sql.DB
}

// NewNonces keeps nonces in db, creating the package's tables if missing.
func NewNonces(ctx context.Context, db *sql.DB) (*Nonces, error) {
	if err := Migrate(ctx, db); err != nil {
		return nil, err
	}
	return &Nonces{db: db}, nil
}

// Add implements auth.NonceStore. The insert itself decides: two
// replicas adding the same nonce at once are told apart by the primary
// key, and one of them hears ErrReplayed.
func (n *Nonces) Add(keyID, nonce string, expires, _ time.Time) error {
	res, err := n.db.ExecContext(context.Background(), SpendNonce, auth.NonceKey(keyID, nonce), ms(expires))
	if err != nil {
		return fmt.Errorf("session: record nonce: %w", err)
	}
	if added, err := res.RowsAffected(); err != nil || added == 0 {
		return auth.ErrReplayed
	}
	return nil
}

// SpendNonce is the statement that records a nonce, its arguments
// SpendArgs: one row inserted, or none for a replay. A caller may run it
// with its own reads in one statement (a WITH clause on PostgreSQL)
// rather than through Add.
const SpendNonce = `INSERT INTO session_nonces (key, expires) VALUES (?, ?) ON CONFLICT (key) DO NOTHING`

// SpendArgs are SpendNonce's arguments for a signed request.
func SpendArgs(s auth.Signed) []any { return []any{s.NonceKey(), ms(s.Expires)} }

// Maintain forgets the nonces whose requests are out of the window.
func (n *Nonces) Maintain(ctx context.Context, now time.Time) error {
	if _, err := n.db.ExecContext(ctx, `DELETE FROM session_nonces WHERE expires < ?`, ms(now)); err != nil {
		return fmt.Errorf("forget old nonces: %w", err)
	}
	return nil
}
