package session

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/auth"
)

var totpSecret = []byte("12345678901234567890")

type totpEnv struct {
	t    *testing.T
	path string
	clk  *clock
	g    *TOTP
}

func newTOTPEnv(t *testing.T, conns int) *totpEnv {
	t.Helper()
	e := &totpEnv{t: t, path: filepath.Join(t.TempDir(), "state.db"), clk: newClock()}
	e.open(conns)
	return e
}

// open opens the database and a guard on it, as a (re)start does.
func (e *totpEnv) open(conns int) {
	e.t.Helper()
	g, err := NewTOTP(context.Background(), openDB(e.t, e.path, conns), e.clk.Now)
	if err != nil {
		e.t.Fatal(err)
	}
	e.g = g
}

func (e *totpEnv) verify(user string, at time.Time) error {
	return e.g.Verify(context.Background(), user, totpSecret, auth.TOTPCode(totpSecret, at))
}

func TestTOTPReplay(t *testing.T) {
	e := newTOTPEnv(t, 1)
	t0 := e.clk.Now()
	if err := e.verify("u1", t0); err != nil {
		t.Fatal(err)
	}
	// The same code, at once and later within its window: refused.
	for _, d := range []time.Duration{0, 5 * time.Second, 20 * time.Second} {
		e.clk.Advance(d)
		if err := e.verify("u1", t0); !errors.Is(err, auth.ErrReplayed) {
			t.Fatalf("replay %v later: %v", e.clk.Now().Sub(t0), err)
		}
	}
	// Another user with the same code is unaffected.
	if err := e.verify("u2", t0); err != nil {
		t.Fatalf("other user: %v", err)
	}
	// The next step's code is fine; after it, the previous step's code,
	// still inside the window, is refused.
	e.clk.Advance(30 * time.Second)
	if err := e.verify("u2", e.clk.Now()); err != nil {
		t.Fatalf("next step: %v", err)
	}
	if _, err := auth.MatchTOTP(totpSecret, auth.TOTPCode(totpSecret, t0), e.clk.Now()); err != nil {
		t.Fatalf("the previous step's code should still match: %v", err)
	}
	if err := e.verify("u2", t0); !errors.Is(err, auth.ErrReplayed) {
		t.Fatalf("earlier step after a later one: %v", err)
	}
	// A wrong code is refused as such and records nothing.
	other := auth.TOTPCode([]byte("another secret 1234"), e.clk.Now())
	if err := e.g.Verify(context.Background(), "u3", totpSecret, other); !errors.Is(err, auth.ErrInvalidCode) {
		t.Fatalf("wrong code: %v", err)
	}
	if err := e.verify("u3", e.clk.Now()); err != nil {
		t.Fatalf("u3's first right code: %v", err)
	}
}

// TestTOTPReplaySurvivesRestart: the guard is in the database, so a new
// process refuses what an old one accepted.
func TestTOTPReplaySurvivesRestart(t *testing.T) {
	e := newTOTPEnv(t, 1)
	t0 := e.clk.Now()
	if err := e.verify("u1", t0); err != nil {
		t.Fatal(err)
	}
	e.g.db.Close()
	e.open(1)
	if err := e.verify("u1", t0); !errors.Is(err, auth.ErrReplayed) {
		t.Fatalf("after restart: %v, want ErrReplayed", err)
	}
}

func TestTOTPConcurrentReplay(t *testing.T) {
	e := newTOTPEnv(t, 4) // transactions race inside SQLite, not in database/sql
	code := auth.TOTPCode(totpSecret, e.clk.Now())
	var wg sync.WaitGroup
	var mu sync.Mutex
	accepted := 0
	for range 32 {
		wg.Go(func() {
			err := e.g.Verify(context.Background(), "u1", totpSecret, code)
			if err != nil && !errors.Is(err, auth.ErrReplayed) {
				t.Error(err)
			}
			if err == nil {
				mu.Lock()
				accepted++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if accepted != 1 {
		t.Fatalf("code accepted %d times concurrently, want 1", accepted)
	}
}

func TestTOTPMaintain(t *testing.T) {
	e := newTOTPEnv(t, 1)
	ctx := context.Background()
	t0 := e.clk.Now()
	if err := e.verify("old", t0); err != nil {
		t.Fatal(err)
	}
	e.clk.Advance(30 * time.Second)
	if err := e.verify("new", e.clk.Now()); err != nil {
		t.Fatal(err)
	}
	// One step on, old's code could still match (skew): kept.
	if err := e.g.Maintain(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.verify("old", t0); !errors.Is(err, auth.ErrReplayed) {
		t.Fatalf("old's code one step later: %v", err)
	}
	e.clk.Advance(30 * time.Second)
	if err := e.g.Maintain(ctx); err != nil {
		t.Fatal(err)
	}
	var users []string
	rows, err := e.g.db.Query(`SELECT user_id FROM session_totp`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var u string
		if err := rows.Scan(&u); err != nil {
			t.Fatal(err)
		}
		users = append(users, u)
	}
	if len(users) != 1 || users[0] != "new" {
		t.Errorf("rows left %v, want only new's", users)
	}
}
