package session

import (
	"context"
	"crypto/rand"
	"database/sql"
	_ "embed"
	"encoding/base64"
	"fmt"
	"time"
)

//go:embed schema.sql
var schema string

// Migrate creates the package's tables (all prefixed session_) in db if
// they are missing. It is idempotent; New and NewLimiter call it, so a
// caller needs it only to prepare a database ahead of time.
func Migrate(ctx context.Context, db *sql.DB) error {
	if _, err := db.ExecContext(ctx, schema); err != nil {
		return fmt.Errorf("create session tables: %w", err)
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
