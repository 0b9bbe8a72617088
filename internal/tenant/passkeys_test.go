package tenant

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/holdfast/holdfast/api"
)

// TestPasskeysStore: a credential id is one user's only; a user's
// passkeys go with the user; a ceremony is taken once, only before it
// expires and as its own kind, and no more are made beyond the limits.
func TestPasskeysStore(t *testing.T) {
	s := openStore(t, filepath.Join(t.TempDir(), "c.db"))
	alice, bob := createUser(t, s, "alice"), createUser(t, s, "bob")
	key := func(id string, user int64, name, cred string) PasskeyRecord {
		return PasskeyRecord{UserID: user, CredentialID: []byte(cred), PublicKey: []byte("k"), Passkey: api.Passkey{ID: id, Name: name}}
	}
	do(t, s, func(tx *Tx) error {
		if _, err := tx.CreatePasskey(key("pk-1", alice.ID, "laptop", "c1")); err != nil {
			return err
		}
		if _, err := tx.CreatePasskey(key("pk-2", bob.ID, "phone", "c1")); !errors.Is(err, ErrExists) {
			t.Errorf("bob registered alice's credential id: %v, want ErrExists", err)
		}
		if _, err := tx.CreatePasskey(key("pk-3", alice.ID, "laptop", "c3")); !errors.Is(err, ErrExists) {
			t.Errorf("a second passkey named laptop: %v, want ErrExists", err)
		}
		k, err := tx.PasskeyByCredential([]byte("c1"))
		if err != nil || k.ID != "pk-1" || k.UserID != alice.ID {
			t.Errorf("passkey by credential: %+v %v", k, err)
		}
		return tx.DeleteUser(alice.ID)
	})
	do(t, s, func(tx *Tx) error {
		if _, err := tx.PasskeyByCredential([]byte("c1")); !errors.Is(err, ErrNotFound) {
			t.Errorf("the passkey of a deleted user: %v, want ErrNotFound", err)
		}
		return nil
	})

	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	lim := CeremonyLimits{Total: 3, PerSource: 2}
	mk := func(id, src string, at time.Time) error {
		return s.Do(t.Context(), func(tx *Tx) error {
			return tx.CreateCeremony(Ceremony{ID: id, Kind: CeremonyLogin, Source: src, Data: []byte("{}"), Expires: at.Add(5 * time.Minute)}, at, lim)
		})
	}
	take := func(id, kind string, at time.Time) bool {
		var ok bool
		do(t, s, func(tx *Tx) error {
			var err error
			_, ok, err = tx.TakeCeremony(id, kind, at)
			return err
		})
		return ok
	}
	for _, c := range []struct{ id, src string }{{"a", "1"}, {"b", "1"}, {"c", "2"}} {
		if err := mk(c.id, c.src, now); err != nil {
			t.Fatal(err)
		}
	}
	if err := mk("d", "1", now); !errors.Is(err, ErrTooMany) {
		t.Errorf("a third ceremony from one source: %v, want ErrTooMany", err)
	}
	if err := mk("e", "3", now); !errors.Is(err, ErrTooMany) {
		t.Errorf("a fourth ceremony in all: %v, want ErrTooMany", err)
	}
	if take("a", CeremonyRegistration, now) {
		t.Error("a login ceremony was taken as a registration")
	}
	if take("a", CeremonyLogin, now) {
		t.Error("a ceremony was taken twice")
	}
	if !take("b", CeremonyLogin, now.Add(time.Minute)) {
		t.Error("a live ceremony was not taken")
	}
	if take("c", CeremonyLogin, now.Add(5*time.Minute)) {
		t.Error("an expired ceremony was taken")
	}
	// Expired ones make room.
	for _, id := range []string{"f", "g", "h"} {
		if err := mk(id, id, now.Add(10*time.Minute)); err != nil {
			t.Errorf("ceremony %s after the others expired: %v", id, err)
		}
	}
}
