package session

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/auth"
	"github.com/holdfast/holdfast/internal/migrate/migratetest"
)

// fixtureTokens are what the clients of the fixture's sessions hold,
// kept beside it (testdata/session-v*.json). The keys that signed them
// are sealed under testBox(1): test keys, no one's credentials.
type fixtureTokens struct {
	// Alice logged in before the signing key was rotated: her access
	// token is signed by the retired key.
	AliceAccess, AliceRefresh string
	// Bob refreshed once: his first refresh token is spent.
	BobAccess, BobSpent, BobRefresh string
	// Carol logged out.
	CarolRefresh string
	// The TOTP code user 7 used.
	TOTPCode string
}

var (
	fixtureNameKey = []byte("fixture name key, 32 bytes long!")
	fixtureAttack  = netip.MustParseAddr("203.0.113.66")
)

// writeFixture makes sessions in every state through the package's API:
// live ones across a key rotation, a refreshed one, a logged-out one, a
// source locked out of an account, a TOTP code used.
func writeFixture(t *testing.T, path string) fixtureTokens {
	ctx := context.Background()
	clk := newClock()
	db := openDB(t, path, 1)
	m, err := New(ctx, db, testBox(t, 1), Config{Issuer: issuer, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	check := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	var f fixtureTokens
	alice, err := m.Login(ctx, "7", []string{"pwd", "otp"})
	check(err)
	f.AliceAccess, f.AliceRefresh = str(alice.Access), str(alice.Refresh)
	clk.Advance(time.Second)
	_, err = m.RotateKey(ctx)
	check(err)
	bob, err := m.Login(ctx, "8", []string{"oidc"})
	check(err)
	clk.Advance(time.Second)
	bob2, err := m.Refresh(ctx, str(bob.Refresh))
	check(err)
	f.BobSpent, f.BobAccess, f.BobRefresh = str(bob.Refresh), str(bob2.Access), str(bob2.Refresh)
	carol, err := m.Login(ctx, "9", []string{"pwd"})
	check(err)
	check(m.Logout(ctx, str(carol.Refresh)))
	f.CarolRefresh = str(carol.Refresh)

	lim, err := NewLimiter(ctx, db, LimiterConfig{NameKey: fixtureNameKey, Now: clk.Now})
	check(err)
	for range DefaultMaxFailures {
		check(lim.Admit(ctx, "mallory", fixtureAttack))
	}
	check(lim.Admit(ctx, "alice", netip.MustParseAddr("2001:db8::7")))
	check(lim.Succeeded(ctx, "alice", netip.MustParseAddr("2001:db8::7")))

	otp, err := NewTOTP(ctx, db, clk.Now)
	check(err)
	f.TOTPCode = auth.TOTPCode(totpSecret, clk.Now())
	check(otp.Verify(ctx, "7", totpSecret, f.TOTPCode))
	check(db.Close())
	return f
}

// TestFixture: the sessions a release before versioning kept (testdata/
// session-v*.sqlite) open with this one with nothing lost: every row of
// every table; access tokens still verify, by the retired key too; a live
// refresh token still works, a spent one still revokes its session, a
// logged-out one is still refused; a source locked out is still locked
// out; a TOTP code used is still refused. With -update-fixtures it writes
// the fixture of the current version instead.
func TestFixture(t *testing.T) {
	if *migratetest.Update {
		src := filepath.Join(t.TempDir(), "control.db")
		tokens := writeFixture(t, src)
		// Version 1 is the schema of the releases before versioning,
		// which recorded none.
		migratetest.Save(t, src, filepath.Join("testdata", "session-v1.sqlite"), true)
		data, err := json.MarshalIndent(tokens, "", "\t")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join("testdata", "session-v1.json"), append(data, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	for _, fixture := range migratetest.Fixtures(t, "session") {
		t.Run(filepath.Base(fixture), func(t *testing.T) {
			ctx := context.Background()
			var f fixtureTokens
			data, err := os.ReadFile(fixture[:len(fixture)-len(".sqlite")] + ".json")
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(data, &f); err != nil {
				t.Fatal(err)
			}
			path := migratetest.Copy(t, fixture)
			before := migratetest.Dump(t, migratetest.Open(t, path))
			migratetest.Empty(t, before)
			db := openSQLite(t, path)
			if err := Migrate(ctx, db); err != nil {
				t.Fatal(err)
			}
			migratetest.Kept(t, before, migratetest.Dump(t, db))

			clk := newClock()
			clk.Advance(10 * time.Second) // the TOTP code and the lock out are still current
			m, err := New(ctx, db, testBox(t, 1), Config{Issuer: issuer, Now: clk.Now})
			if err != nil {
				t.Fatal(err)
			}
			for token, user := range map[string]string{f.AliceAccess: "7", f.BobAccess: "8"} {
				if c, err := m.Verify(token); err != nil || c.Subject != user {
					t.Errorf("user %s's access token after the upgrade: %+v %v", user, c, err)
				}
			}
			if _, err := m.Refresh(ctx, f.AliceRefresh); err != nil {
				t.Errorf("alice's refresh token after the upgrade: %v", err)
			}
			if _, err := m.Refresh(ctx, f.CarolRefresh); err == nil {
				t.Error("carol's refresh token works after the upgrade; she had logged out")
			}
			if _, err := m.Refresh(ctx, f.BobSpent); err == nil {
				t.Error("bob's spent refresh token works after the upgrade")
			}
			if _, err := m.Refresh(ctx, f.BobRefresh); err == nil {
				t.Error("bob's session survived the reuse of a spent token after the upgrade")
			}

			lim, err := NewLimiter(ctx, db, LimiterConfig{NameKey: fixtureNameKey, Now: clk.Now})
			if err != nil {
				t.Fatal(err)
			}
			var le *LimitError
			if err := lim.Admit(ctx, "mallory", fixtureAttack); !errors.As(err, &le) {
				t.Errorf("the source locked out of mallory's account before the upgrade: %v, want a LimitError", err)
			}
			otp, err := NewTOTP(ctx, db, clk.Now)
			if err != nil {
				t.Fatal(err)
			}
			if err := otp.Verify(ctx, "7", totpSecret, f.TOTPCode); !errors.Is(err, auth.ErrReplayed) {
				t.Errorf("a TOTP code used before the upgrade, again: %v, want ErrReplayed", err)
			}
		})
	}
}
