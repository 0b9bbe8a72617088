package session

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/holdfast/holdfast/internal/auth"
)

// TOTP checks second-factor codes and refuses a code once accepted: the
// step of the last code accepted for a user is kept in the database
// (session_totp), so that neither a restart nor another path (enrolment
// and login use the same guard) accepts it again. Safe for concurrent
// use, also by several processes on one database: the check and the
// record are one statement.
type TOTP struct {
	db  *sql.DB
	now func() time.Time
}

// NewTOTP returns a TOTP guard keeping its steps in db, creating its table
// if missing; now is the clock (nil means time.Now).
func NewTOTP(ctx context.Context, db *sql.DB, now func() time.Time) (*TOTP, error) {
	if db == nil {
		return nil, errors.New("session: NewTOTP needs a database")
	}
	if now == nil {
		now = time.Now
	}
	if err := Migrate(ctx, db); err != nil {
		return nil, err
	}
	return &TOTP{db: db, now: now}, nil
}

// Verify checks code for user against secret and, if it matches, records
// its step. Errors: auth.ErrInvalidCode; auth.ErrReplayed for a code of a
// step not after the last one accepted for the user.
func (g *TOTP) Verify(ctx context.Context, user string, secret []byte, code string) error {
	step, err := auth.MatchTOTP(secret, code, g.now())
	if err != nil {
		return err
	}
	res, err := g.db.ExecContext(ctx, `
		INSERT INTO session_totp (user_id, step) VALUES (?, ?)
		ON CONFLICT (user_id) DO UPDATE SET step = excluded.step WHERE excluded.step > session_totp.step`,
		user, int64(step))
	if err != nil {
		return fmt.Errorf("record totp step: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("record totp step: %w", err)
	}
	if n == 0 {
		return auth.ErrReplayed
	}
	return nil
}

// Maintain forgets steps older than any code Verify can still match: a
// new code's step is after them anyway.
func (g *TOTP) Maintain(ctx context.Context) error {
	oldest := auth.TOTPStep(g.now()) - auth.TOTPSkew
	if _, err := g.db.ExecContext(ctx, `DELETE FROM session_totp WHERE step < ?`, int64(oldest)); err != nil {
		return fmt.Errorf("forget old totp steps: %w", err)
	}
	return nil
}
