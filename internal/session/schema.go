package session

import (
	"context"
	"crypto/rand"
	"database/sql"
	_ "embed"
	"encoding/base64"
	"fmt"
	"time"

	"github.com/holdfast/holdfast/internal/store"
)

//go:embed schema.sql
var schema string

// Migrate creates the package's tables (all prefixed session_) in db if
// they are missing, and moves those of an older version out of the way.
// It is idempotent; New, NewLimiter and NewTOTP call it, so a caller needs
// it only to prepare a database ahead of time.
func Migrate(ctx context.Context, db *sql.DB) error {
	err := store.Tx(ctx, db, func(tx *sql.Tx) error {
		if err := renameLockoutsV1(ctx, tx); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, schema)
		return err
	})
	if err != nil {
		return fmt.Errorf("create session tables: %w", err)
	}
	return nil
}

// renameLockoutsV1 renames a session_lockouts table of the first version
// (one row per name as typed, no source) to session_lockouts_v1, so that
// the current one can be created. Carrying its state over needs the key
// names are now known by, which NewLimiter has: it does so, then drops
// the old table.
func renameLockoutsV1(ctx context.Context, tx *sql.Tx) error {
	var cols, sources int
	if err := tx.QueryRowContext(ctx, `
		SELECT COUNT(*), COUNT(CASE WHEN name = 'source' THEN 1 END) FROM pragma_table_info('session_lockouts')`).Scan(&cols, &sources); err != nil {
		return fmt.Errorf("inspect session_lockouts: %w", err)
	}
	if cols == 0 || sources > 0 {
		return nil // none yet, or the current one
	}
	if _, err := tx.ExecContext(ctx, `ALTER TABLE session_lockouts RENAME TO session_lockouts_v1`); err != nil {
		return fmt.Errorf("move the old session_lockouts aside: %w", err)
	}
	return nil
}

var b64 = base64.RawURLEncoding.Strict()

// randomID returns n random bytes, base64url-encoded.
func randomID(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random: %w", err)
	}
	return b64.EncodeToString(b), nil
}

func ms(t time.Time) int64 { return t.UnixMilli() }

func fromMS(v int64) time.Time { return time.UnixMilli(v).UTC() }
