package audit

import (
	"context"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/migrate/migratetest"
	"github.com/holdfast/holdfast/internal/sqldb"
)

// fixtureEntries are the events the fixture's log holds, in order.
var fixtureEntries = []Entry{
	{Actor: "admin", Action: "login", Object: "user/admin", Source: "192.0.2.10:51512", Result: "ok", Detail: map[string]string{"methods": "pwd,otp"}},
	{Actor: "admin", Action: "tenant.create", Object: "tenant/acme", Source: "192.0.2.10:51512", Result: "ok"},
	{Actor: "admin", Tenant: "acme", Action: "user.invite", Object: "invitation/alice", Source: "192.0.2.10:51512", Result: "ok", Detail: map[string]string{"role": "tenant-admin"}},
	{Actor: "alice", Tenant: "acme", Action: "login", Object: "user/alice", Source: "[2001:db8::7]:40022", Result: "ok", Detail: map[string]string{"methods": "oidc"}},
	{Actor: "alice", Tenant: "acme", Action: "network.create", Object: "network/acme--web", Source: "[2001:db8::7]:40022", Result: "ok", Detail: map[string]string{"cidr": "10.128.0.0/24"}},
	{Actor: "alice", Tenant: "acme", Action: "instance.create", Object: "instance/acme--web1", Source: "[2001:db8::7]:40022", Result: "ok", Detail: map[string]string{"flavor": "small", "template": "debian-12"}},
	{Actor: "mallory", Action: "login", Object: "user/mallory", Source: "203.0.113.66:6000", Result: "denied", Detail: map[string]string{"reason": "bad password"}},
	{Actor: "alice", Tenant: "acme", Action: "instance.delete", Object: "instance/acme--web1", Source: "[2001:db8::7]:40022", Result: "error: instance is protected"},
	{Actor: "admin", Action: "quota.update", Object: "tenant/acme", Source: "192.0.2.10:51600", Result: "ok", Detail: map[string]string{"instances": "20"}},
	{Actor: "anonymous", Action: "login", Object: "user/root", Source: "198.51.100.3:33333", Result: "denied"},
}

const fixtureWitness = "https://witness.example.org/holdfast"

// writeFixture writes an audit log of fixtureEntries, checkpointed every
// four entries and at the end, and publishes the checkpoints to pub.
func writeFixture(t *testing.T, path, pub string) {
	l, err := Open(sqldb.In("", path, "audit"), seedKey(9), CheckpointEvery(4), Clock(stepClock()), PublishTo(pub), manualTimers(&timers{}))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, e := range fixtureEntries {
		if _, err := l.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(pub)
	if err != nil {
		t.Fatal(err)
	}
	// A witness that has kept all but the last checkpoint.
	if _, err := l.db.Exec(`INSERT INTO audit_witness (url, sent) VALUES (?, ?)`, fixtureWitness, fi.Size()-10); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestFixture: an audit log a release before versioning wrote (testdata/
// audit-v*.sqlite, its published checkpoints beside it) opens with this
// one with nothing lost: every row, every entry's fields, a chain and
// checkpoints that still verify, against the published copy too, and a
// chain that goes on from where it was. With -update-fixtures it writes
// the fixture of the current version instead.
func TestFixture(t *testing.T) {
	if *migratetest.Update {
		dir := t.TempDir()
		src, pub := filepath.Join(dir, "audit.db"), filepath.Join(dir, "audit-checkpoints.jsonl")
		writeFixture(t, src, pub)
		// Version 1 is the schema of the releases before versioning,
		// which recorded none.
		migratetest.Save(t, src, filepath.Join("testdata", "audit-v1.sqlite"), true)
		data, err := os.ReadFile(pub)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join("testdata", "audit-v1.jsonl"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	key := seedKey(9)
	pubKey := key.Public().(ed25519.PublicKey)
	later := func() time.Time { return fillBase.Add(time.Hour) }
	for _, fixture := range migratetest.Fixtures(t, "audit") {
		t.Run(filepath.Base(fixture), func(t *testing.T) {
			ctx := context.Background()
			path := migratetest.Copy(t, fixture)
			before := migratetest.Dump(t, migratetest.Open(t, path))
			migratetest.Empty(t, before)
			f, err := os.Open(fixture[:len(fixture)-len(".sqlite")] + ".jsonl")
			if err != nil {
				t.Fatal(err)
			}
			published, err := ReadPublished(f)
			f.Close()
			if err != nil {
				t.Fatal(err)
			}

			// Read and verified, as holdfast audit verify does: no key.
			l, err := Open(sqldb.In("", path, "audit"), nil, Clock(later))
			if err != nil {
				t.Fatal(err)
			}
			migratetest.Kept(t, before, migratetest.Dump(t, l.db))
			rep, err := l.Verify(ctx, pubKey, AgainstPublished(published))
			if err != nil || !rep.OK() || rep.Entries != int64(len(fixtureEntries)) || rep.Covered != int64(len(fixtureEntries)) || rep.Published != len(published) {
				t.Errorf("verify after the upgrade: %v\n%+v", err, rep)
			}
			got, err := l.List(ctx, Filter{})
			if err != nil || len(got) != len(fixtureEntries) {
				t.Fatalf("entries after the upgrade: %d (%v), want %d", len(got), err, len(fixtureEntries))
			}
			var prev [32]byte
			for i, e := range got {
				want := fixtureEntries[i]
				want.Seq, want.Time, want.Prev, want.Hash = int64(i+1), e.Time, prev, e.ComputeHash()
				if want.Detail == nil {
					want.Detail = e.Detail // none reads back as empty or nil alike
				}
				if !reflect.DeepEqual(e, want) || e.Hash != want.Hash || e.Time.IsZero() {
					t.Errorf("entry %d after the upgrade:\n%+v\nwant\n%+v", i+1, e, want)
				}
				prev = e.Hash
			}
			l.Close()

			// Written to, as the server does: the chain goes on and the
			// whole log still verifies.
			l, err = Open(sqldb.In("", path, "audit"), key, Clock(later), CheckpointEvery(4), manualTimers(&timers{}))
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			e, err := l.Append(ctx, Entry{Actor: "admin", Action: "upgrade", Object: "audit", Source: "local", Result: "ok"})
			if err != nil || e.Seq != int64(len(fixtureEntries)+1) || e.Prev != prev {
				t.Errorf("the first entry after the upgrade: %+v (%v), want seq %d after hash %x", e, err, len(fixtureEntries)+1, prev)
			}
			if rep, err := l.Verify(ctx, pubKey); err != nil || len(rep.Problems) != 0 {
				t.Errorf("verify after writing to the upgraded log: %v\n%s", err, rep)
			}
		})
	}
}
