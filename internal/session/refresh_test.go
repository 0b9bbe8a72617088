package session

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestRefreshRotation(t *testing.T) {
	e := newEnv(t)
	login := e.clk.Now()
	t1 := e.login("u-alice", "pwd", "otp")
	e.clk.Advance(10 * time.Minute)
	t2 := e.refresh(t1)
	e.clk.Advance(10 * time.Minute)
	t3 := e.refresh(t2)

	if t2.Family != t1.Family || t3.Family != t1.Family {
		t.Errorf("families %s, %s, %s: refresh must stay in the login's family", t1.Family, t2.Family, t3.Family)
	}
	seen := map[string]bool{}
	for _, tok := range []Tokens{t1, t2, t3} {
		for _, s := range []string{str(tok.Access), str(tok.Refresh)} {
			if seen[s] {
				t.Fatal("a token was issued twice")
			}
			seen[s] = true
		}
	}
	c := mustVerify(t, e.m, t3)
	if c.Subject != "u-alice" || c.Family != t1.Family || strings.Join(c.Methods, ",") != "pwd,otp" {
		t.Errorf("refreshed claims = %+v", c)
	}
	if !c.AuthTime.Equal(login) || !c.IssuedAt.Equal(e.clk.Now()) {
		t.Errorf("auth_time %v iat %v: want the login %v and now %v", c.AuthTime, c.IssuedAt, login, e.clk.Now())
	}
	if want := e.clk.Now().Add(DefaultRefreshIdle); !t3.RefreshExpires.Equal(want) {
		t.Errorf("RefreshExpires = %v, want %v", t3.RefreshExpires, want)
	}
	// Access tokens of a live session stay good until they expire.
	if _, err := e.m.Verify(str(t2.Access)); err != nil {
		t.Errorf("earlier access token of a live session: %v", err)
	}
}

func TestRefreshReuseRevokesFamily(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	t1 := e.login("u-alice")
	other := e.login("u-alice") // another login of the same user
	t2 := e.refresh(t1)

	// The spent t1 comes back: a thief's copy, or the owner's. Either way
	// the whole family ends.
	if _, err := e.m.Refresh(ctx, str(t1.Refresh)); !errors.Is(err, ErrReuse) {
		t.Fatalf("reused refresh token: err = %v, want ErrReuse", err)
	}
	if _, err := e.m.Refresh(ctx, str(t2.Refresh)); !errors.Is(err, ErrRevoked) {
		t.Errorf("newest refresh token of the family: err = %v, want ErrRevoked", err)
	}
	for name, tok := range map[string]Tokens{"first": t1, "newest": t2} {
		if _, err := e.m.Verify(str(tok.Access)); !errors.Is(err, ErrRevoked) {
			t.Errorf("%s access token of the family: err = %v, want ErrRevoked", name, err)
		}
	}
	if _, err := e.m.Refresh(ctx, str(t1.Refresh)); !errors.Is(err, ErrReuse) {
		t.Errorf("reused again: err = %v, want ErrReuse", err)
	}
	mustVerify(t, e.m, other)
	e.refresh(other)

	// The revocation is in the database, not only in memory.
	e.restart()
	if _, err := e.m.Verify(str(t2.Access)); !errors.Is(err, ErrRevoked) {
		t.Errorf("after restart: err = %v, want ErrRevoked", err)
	}
	var reason string
	if err := e.db.QueryRow(`SELECT reason FROM session_families WHERE id = ?`, t1.Family).Scan(&reason); err != nil || reason != "reuse" {
		t.Errorf("revocation reason %q (%v), want reuse", reason, err)
	}
}

func TestRefreshConcurrent(t *testing.T) {
	for _, conns := range []int{1, 4} {
		t.Run(fmt.Sprintf("%d connections", conns), func(t *testing.T) {
			e := newEnvConns(t, conns)
			tok := e.login("u-alice")
			const n = 20
			var wg sync.WaitGroup
			start := make(chan struct{})
			results := make(chan error, n)
			won := make(chan Tokens, n)
			for range n {
				wg.Go(func() {
					<-start
					next, err := e.m.Refresh(context.Background(), str(tok.Refresh))
					if err == nil {
						won <- next
					}
					results <- err
				})
			}
			close(start)
			wg.Wait()
			close(results)
			close(won)
			var ok, reuse int
			for err := range results {
				switch {
				case err == nil:
					ok++
				case errors.Is(err, ErrReuse):
					reuse++
				default:
					t.Errorf("unexpected error: %v", err)
				}
			}
			if ok != 1 || reuse != n-1 {
				t.Fatalf("%d succeeded and %d saw reuse, want 1 and %d", ok, reuse, n-1)
			}
			// The losers' reuse revoked the family, the winner's new tokens included.
			winner := <-won
			if _, err := e.m.Refresh(context.Background(), str(winner.Refresh)); !errors.Is(err, ErrRevoked) {
				t.Errorf("winner's refresh token: err = %v, want ErrRevoked", err)
			}
			if _, err := e.m.Verify(str(winner.Access)); !errors.Is(err, ErrRevoked) {
				t.Errorf("winner's access token: err = %v, want ErrRevoked", err)
			}
		})
	}
}

func TestRefreshIdleExpiry(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	tok := e.login("u-alice")
	e.clk.Advance(DefaultRefreshIdle - time.Millisecond)
	tok = e.refresh(tok) // the idle clock restarts
	e.clk.Advance(DefaultRefreshIdle - time.Millisecond)
	tok = e.refresh(tok)
	e.clk.Advance(DefaultRefreshIdle)
	for range 2 {
		// An expired token is refused without being spent: presenting it
		// again is no reuse.
		if _, err := e.m.Refresh(ctx, str(tok.Refresh)); !errors.Is(err, ErrExpired) {
			t.Fatalf("refresh after the idle lifetime: err = %v, want ErrExpired", err)
		}
	}
}

func TestRefreshAbsoluteExpiry(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	login := e.clk.Now()
	tok := e.login("u-alice")
	for day := 6; day < 30; day += 6 {
		e.clk.Advance(6 * 24 * time.Hour)
		tok = e.refresh(tok)
	}
	if end := login.Add(DefaultRefreshAbsolute); !tok.RefreshExpires.Equal(end) {
		t.Errorf("RefreshExpires = %v, want the absolute end %v", tok.RefreshExpires, end)
	}
	e.clk.Advance(6 * 24 * time.Hour) // day 30: active, but too old
	if _, err := e.m.Refresh(ctx, str(tok.Refresh)); !errors.Is(err, ErrExpired) {
		t.Fatalf("refresh after the absolute lifetime: err = %v, want ErrExpired", err)
	}
}

func TestRefreshMalformedOrUnknown(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	real := str(e.login("u-alice").Refresh)
	unknown, _, err := newRefresh()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"", "short", strings.Repeat("!", len(real)), real + "A", real[:len(real)-1], unknown} {
		if _, err := e.m.Refresh(ctx, s); !errors.Is(err, ErrInvalid) {
			t.Errorf("Refresh(%q): err = %v, want ErrInvalid", s, err)
		}
		if err := e.m.Logout(ctx, s); !errors.Is(err, ErrInvalid) {
			t.Errorf("Logout(%q): err = %v, want ErrInvalid", s, err)
		}
	}
}

func TestLogout(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	t1 := e.login("u-alice")
	t2 := e.login("u-alice")
	if err := e.m.Logout(ctx, str(t1.Refresh)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Verify(str(t1.Access)); !errors.Is(err, ErrRevoked) {
		t.Errorf("access token after logout: err = %v, want ErrRevoked", err)
	}
	if _, err := e.m.Refresh(ctx, str(t1.Refresh)); !errors.Is(err, ErrRevoked) {
		t.Errorf("refresh token after logout: err = %v, want ErrRevoked", err)
	}
	mustVerify(t, e.m, t2)
	e.refresh(t2)
}

func TestRevoke(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alice := e.login("u-alice")
	if err := e.m.Revoke(ctx, "u-bob", alice.Family); !errors.Is(err, ErrInvalid) {
		t.Fatalf("revoking another user's session: err = %v, want ErrInvalid", err)
	}
	mustVerify(t, e.m, alice)
	c := mustVerify(t, e.m, alice)
	for range 2 {
		if err := e.m.Revoke(ctx, c.Subject, c.Family); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.m.Verify(str(alice.Access)); !errors.Is(err, ErrRevoked) {
		t.Errorf("after Revoke: err = %v, want ErrRevoked", err)
	}
	if err := e.m.Revoke(ctx, "u-alice", "no-such-family"); !errors.Is(err, ErrInvalid) {
		t.Errorf("unknown session: err = %v, want ErrInvalid", err)
	}
}

func TestRevokeUser(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a1, a2 := e.login("u-alice"), e.login("u-alice")
	bob := e.login("u-bob")
	if n, err := e.m.RevokeUser(ctx, "u-alice"); err != nil || n != 2 {
		t.Fatalf("RevokeUser = %d, %v; want 2 sessions", n, err)
	}
	for _, tok := range []Tokens{a1, a2} {
		if _, err := e.m.Verify(str(tok.Access)); !errors.Is(err, ErrRevoked) {
			t.Errorf("access: err = %v, want ErrRevoked", err)
		}
		if _, err := e.m.Refresh(ctx, str(tok.Refresh)); !errors.Is(err, ErrRevoked) {
			t.Errorf("refresh: err = %v, want ErrRevoked", err)
		}
	}
	mustVerify(t, e.m, bob)
	e.refresh(bob)
	if n, err := e.m.RevokeUser(ctx, "u-alice"); err != nil || n != 0 {
		t.Errorf("second RevokeUser = %d, %v; want 0", n, err)
	}
}

func TestMaintainDeletesEndedSessions(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	revoked := e.login("u-alice")
	idle := e.login("u-bob")
	live := e.login("u-carol")
	if err := e.m.Logout(ctx, str(revoked.Refresh)); err != nil {
		t.Fatal(err)
	}

	// While the revoked session's access token could still be presented,
	// its row stays, so that a restart keeps refusing it.
	e.clk.Advance(DefaultAccessTTL)
	if err := e.m.Maintain(ctx); err != nil {
		t.Fatal(err)
	}
	e.restart()
	if _, err := e.m.Verify(str(revoked.Access)); !errors.Is(err, ErrRevoked) {
		t.Fatalf("revoked session after Maintain and restart: err = %v, want ErrRevoked", err)
	}

	e.clk.Advance(DefaultRefreshIdle - DefaultAccessTTL - 5*time.Minute)
	live = e.refresh(live)
	e.clk.Advance(10 * time.Minute) // idle's refresh token is now past its idle lifetime
	if err := e.m.Maintain(ctx); err != nil {
		t.Fatal(err)
	}
	var ids []string
	rows, err := e.db.Query(`SELECT id FROM session_families`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if len(ids) != 1 || ids[0] != live.Family {
		t.Errorf("families left %v, want only the live one %s (revoked %s, idle %s)", ids, live.Family, revoked.Family, idle.Family)
	}
	var orphans int
	if err := e.db.QueryRow(`SELECT COUNT(*) FROM session_refresh WHERE family <> ?`, live.Family).Scan(&orphans); err != nil || orphans != 0 {
		t.Errorf("%d refresh tokens of deleted sessions left (%v)", orphans, err)
	}
	e.refresh(live)
	if len(e.m.revoked) != 0 {
		t.Errorf("revoked set still holds %d expired entries", len(e.m.revoked))
	}
}

// TestNoSecretsInErrors checks that neither errors nor a printed Tokens
// show a token.
func TestNoSecretsInErrors(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	t1 := e.login("u-alice")
	t2 := e.refresh(t1)
	secrets := []string{str(t1.Access), str(t1.Refresh), str(t2.Access), str(t2.Refresh)}
	var errs []error
	_, err := e.m.Refresh(ctx, str(t1.Refresh)) // reuse
	errs = append(errs, err)
	_, err = e.m.Refresh(ctx, str(t2.Refresh)) // revoked
	errs = append(errs, err)
	_, err = e.m.Verify(str(t2.Access)) // revoked
	errs = append(errs, err)
	_, err = e.m.Verify(str(t2.Access) + "x") // malformed
	errs = append(errs, err)
	errs = append(errs, e.m.Logout(ctx, str(t1.Refresh)+"x"))
	printed := []string{fmt.Sprint(t2), fmt.Sprintf("%+v", t2), fmt.Sprintf("%#v", t2)}
	for _, err := range errs {
		if err == nil {
			t.Fatal("expected an error")
		}
		printed = append(printed, err.Error())
	}
	for _, p := range printed {
		for _, s := range secrets {
			if strings.Contains(p, s) || strings.Contains(p, s[len(s)-20:]) {
				t.Errorf("%q shows a token", p)
			}
		}
	}
}
