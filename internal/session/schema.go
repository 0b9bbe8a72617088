package session

import (
	"context"
	"crypto/rand"
	"database/sql"
	_ "embed"
	"encoding/base64"
	"fmt"
	"time"

	"github.com/holdfast/holdfast/internal/migrate"
)

//go:embed schema.sql
var schema string

// sessionSchema is the package's tables and how they got there
// (docs/upgrades.md). Version 1 is schema.sql as the releases before
// versioning wrote it; a new version is one more entry in Steps.
var sessionSchema = &migrate.Schema{
	Name:   "session",
	SQL:    schema,
	First:  1,
	Steps:  []migrate.Step{},
	Tables: []string{"session_keys", "session_families", "session_refresh", "session_lockouts", "session_login_accounts", "session_totp"},
	// Releases before versioning may hold the lockouts of the first
	// layout, which version 1 keeps aside.
	Adopt: renameLockoutsV1,
}

// Migrate creates the package's tables (all prefixed session_) in db if
// they are missing, and upgrades those of an older version. It is
// idempotent; New, NewLimiter and NewTOTP call it, so a caller needs it
// only to prepare a database ahead of time.
func Migrate(ctx context.Context, db *sql.DB) error {
	return migrate.Run(ctx, db, sessionSchema)
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
