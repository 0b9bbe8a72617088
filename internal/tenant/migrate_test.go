package tenant

import (
	"context"
	"database/sql"
	_ "embed"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/api"
	"github.com/holdfast/holdfast/internal/sqldb"
)

//go:embed testdata/schema-v0.sql
var schemaV0 string

func openStore(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(sqldb.In("", path, "control"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func do(t *testing.T, s *Store, f func(*Tx) error) {
	t.Helper()
	if err := s.Do(context.Background(), f); err != nil {
		t.Fatal(err)
	}
}

func createUser(t *testing.T, s *Store, name string) UserRecord {
	t.Helper()
	var u UserRecord
	do(t, s, func(tx *Tx) error {
		var err error
		u, err = tx.CreateUser(api.UserCreate{Name: name}, "hash-of-"+name)
		return err
	})
	return u
}

func createTenant(t *testing.T, s *Store, name string) TenantRecord {
	t.Helper()
	var r TenantRecord
	do(t, s, func(tx *Tx) error {
		var err error
		r, err = tx.CreateTenant(name, "", api.Quota{Networks: 1})
		return err
	})
	return r
}

// TestIDsNeverReused: the id of a deleted user or tenant — the newest
// one too, which SQLite hands to the next insert unless the key is
// AUTOINCREMENT — is never given to another. Whatever still names the old
// id (an access token's subject, an API key being checked) must never
// come to mean someone else.
func TestIDsNeverReused(t *testing.T) {
	s := openStore(t, filepath.Join(t.TempDir(), "c.db"))
	createUser(t, s, "alice")
	bob := createUser(t, s, "bob")
	do(t, s, func(tx *Tx) error { return tx.DeleteUser(bob.ID) })
	if carol := createUser(t, s, "carol"); carol.ID <= bob.ID {
		t.Errorf("carol got id %d after bob's %d was deleted: user ids are reused", carol.ID, bob.ID)
	}

	createTenant(t, s, "acme")
	old := createTenant(t, s, "old")
	do(t, s, func(tx *Tx) error { return tx.DeleteTenant("old") })
	if next := createTenant(t, s, "next"); next.ID <= old.ID {
		t.Errorf("tenant next got id %d after old's %d was deleted: tenant ids are reused", next.ID, old.ID)
	}

}

// v0DB makes a database the way the first release did, with rows in it,
// and returns its path and the id of the user deleted last.
func v0DB(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "control.db")
	db, err := sqldb.Open(context.Background(), sqldb.In("", path, "control"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{
		schemaV0,
		`INSERT INTO tenants (id, name, q_instances, q_vcpus, q_memory_mib, q_disk_gib, q_networks, created_at) VALUES
			(1, 'acme', 10, 20, 4096, 100, 2, '2025-01-01T00:00:00Z'),
			(2, 'globex', 10, 20, 4096, 100, 2, '2025-01-01T00:00:00Z'),
			(3, 'gone', 1, 1, 1, 1, 1, '2025-01-01T00:00:00Z')`,
		`INSERT INTO users (id, name, email, password_hash, operator, totp_sealed, oidc_issuer, oidc_subject, created_at, version) VALUES
			(1, 'admin', '', 'h1', 1, NULL, NULL, NULL, '2025-01-01T00:00:00Z', 3),
			(2, 'alice', 'a@example.org', 'h2', 0, x'0102', 'https://idp', 'sub-a', '2025-01-02T00:00:00Z', 1),
			(3, 'bob', '', 'h3', 0, NULL, NULL, NULL, '2025-01-03T00:00:00Z', 1),
			(4, 'mallory', '', 'h4', 0, NULL, NULL, NULL, '2025-01-04T00:00:00Z', 1)`,
		`INSERT INTO memberships (tenant_id, user_id, role) VALUES (1, 2, 'tenant-admin'), (2, 3, 'viewer'), (1, 4, 'member')`,
		`INSERT INTO projects (tenant_id, name, created_at) VALUES (1, 'default', '2025-01-01T00:00:00Z')`,
		`INSERT INTO networks (tenant_id, name, slot, zone, cidr, gateway, vlan, status, created_at) VALUES
			(2, 'net', 0, 'globex--net', '10.128.0.0/24', '10.128.0.1', 3000, 'ready', '2025-01-01T00:00:00Z')`,
		`INSERT INTO apikeys (id, user_id, name, secret_sealed, created_at) VALUES
			('hk_alice', 2, 'laptop', x'00', '2025-01-02T00:00:00Z'), ('hk_mallory', 4, 'x', x'00', '2025-01-04T00:00:00Z')`,
		`INSERT INTO settings (key, value) VALUES ('audit.key', x'aa')`,
		// Tenant "gone" made a network before it was deleted; its
		// operations outlive it.
		`INSERT INTO operations (id, kind, tenant, target, status, created_at, updated_at) VALUES
			('op-1', 'network.create', 'gone', '/v1/tenants/gone/networks/n', 'succeeded', '2025-01-01T00:00:00Z', '2025-01-01T00:00:01Z')`,
		// The newest user and tenant go: the first release would give
		// their ids to the next ones made.
		`DELETE FROM users WHERE id = 4`,
		`DELETE FROM tenants WHERE id = 3`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%v\n%s", err, q)
		}
	}
	return path
}

// TestUpgradeFromV0: a database written by the first release is upgraded
// on open: every row and reference is kept, foreign keys still hold and
// cascade, the ids in it are never handed out again, and a fresh database
// and an upgraded one have the same schema.
func TestUpgradeFromV0(t *testing.T) {
	path := v0DB(t)
	s := openStore(t, path)
	db := s.DB()

	// Rows and references are kept.
	do(t, s, func(tx *Tx) error {
		alice, err := tx.User("alice")
		if err != nil {
			return err
		}
		if alice.ID != 2 || alice.PasswordHash != "h2" || alice.Email != "a@example.org" || !alice.TOTP || alice.OIDCSubject != "sub-a" ||
			len(alice.Memberships) != 1 || alice.Memberships[0] != (api.Membership{Tenant: "acme", User: "alice", Role: api.RoleTenantAdmin}) {
			t.Errorf("alice after the upgrade: %+v", alice)
		}
		if admin, err := tx.User("admin"); err != nil || admin.ID != 1 || !admin.Operator || admin.Version != 3 {
			t.Errorf("admin after the upgrade: %+v %v", admin, err)
		}
		if k, err := tx.APIKey("hk_alice"); err != nil || k.UserID != 2 || k.User != "alice" {
			t.Errorf("alice's key after the upgrade: %+v %v", k, err)
		}
		if _, err := tx.APIKey("hk_mallory"); err == nil {
			t.Error("the key of a user deleted before the upgrade is back")
		}
		g, err := tx.Tenant("globex")
		if err != nil || g.ID != 2 || g.Usage.Networks != 1 {
			t.Errorf("globex after the upgrade: %+v %v", g, err)
		}
		if v, err := tx.Setting("audit.key"); err != nil || string(v) != "\xaa" {
			t.Errorf("settings after the upgrade: %x %v", v, err)
		}
		return nil
	})
	fkCheck(t, db)

	// Ids: never one that a row still holds or held while the table was
	// rebuilt. Users 4 and tenant 3 were deleted before the upgrade,
	// leaving nothing that names them: the first release kept no record
	// of deleted ids, so the sequence can only start above the highest
	// id left (documented in docs/control-plane.md).
	if u := createUser(t, s, "newcomer"); u.ID <= 3 {
		t.Errorf("first user after the upgrade got id %d, want above 3", u.ID)
	}
	// From now on, no id is reused, the newest one's included.
	last := createUser(t, s, "last")
	do(t, s, func(tx *Tx) error { return tx.DeleteUser(last.ID) })
	if u := createUser(t, s, "after"); u.ID <= last.ID {
		t.Errorf("user id %d reused after the upgrade", u.ID)
	}
	// A name the first release's operations remember a deleted tenant by
	// is not given to another.
	do(t, s, func(tx *Tx) error {
		if _, err := tx.CreateTenant("gone", "", api.Quota{}); !errors.Is(err, ErrRetired) {
			t.Errorf("tenant gone, deleted before the upgrade, made again: %v, want ErrRetired", err)
		}
		return nil
	})
	tl := createTenant(t, s, "newest")
	do(t, s, func(tx *Tx) error { return tx.DeleteTenant("newest") })
	if tn := createTenant(t, s, "later"); tn.ID <= tl.ID {
		t.Errorf("tenant id %d reused after the upgrade", tn.ID)
	}

	// Foreign keys are enforced and cascade to the rebuilt tables.
	var on int
	if err := db.QueryRow(`PRAGMA foreign_keys`).Scan(&on); err != nil || on != 1 {
		t.Fatalf("foreign_keys = %d (%v) after the upgrade", on, err)
	}
	if _, err := db.Exec(`INSERT INTO memberships (tenant_id, user_id, role) VALUES (1, 999, 'member')`); err == nil {
		t.Error("a membership of a user that does not exist was accepted")
	}
	do(t, s, func(tx *Tx) error { return tx.DeleteUser(2) })
	var n int
	if err := db.QueryRow(`SELECT (SELECT count(*) FROM memberships WHERE user_id = 2) + (SELECT count(*) FROM apikeys WHERE user_id = 2)`).Scan(&n); err != nil || n != 0 {
		t.Errorf("deleting alice left %d memberships and keys (%v)", n, err)
	}

	// Same schema as a fresh database.
	fresh := openStore(t, filepath.Join(t.TempDir(), "fresh.db"))
	if got, want := schemaOf(t, db), schemaOf(t, fresh.DB()); got != want {
		t.Errorf("upgraded schema differs from a fresh one:\nupgraded:\n%s\nfresh:\n%s", got, want)
	}

	// Opening again changes nothing.
	s.Close()
	s2 := openStore(t, path)
	if got, want := schemaOf(t, s2.DB()), schemaOf(t, fresh.DB()); got != want {
		t.Errorf("a second open changed the schema:\n%s", got)
	}
}

// TestUpgradeKeepsIDsSessionsName: a user deleted before the upgrade
// whose session is still on record keeps their id out of use: that
// session's tokens name it.
func TestUpgradeKeepsIDsSessionsName(t *testing.T) {
	path := v0DB(t)
	db, err := sqldb.Open(context.Background(), sqldb.In("", path, "control"))
	if err != nil {
		t.Fatal(err)
	}
	// Package session's table, as it names users: by id, as text.
	for _, q := range []string{
		`CREATE TABLE session_families (id TEXT PRIMARY KEY, user_id TEXT NOT NULL, methods TEXT NOT NULL, created INTEGER NOT NULL,
			expires INTEGER NOT NULL, access_until INTEGER NOT NULL, revoked INTEGER, reason TEXT)`,
		`INSERT INTO session_families VALUES ('f1', '4', '["pwd"]', 0, 0, 0, 1, 'user'), ('f2', '1', '["pwd"]', 0, 0, 0, NULL, NULL)`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	s := openStore(t, path)
	if u := createUser(t, s, "newcomer"); u.ID <= 4 {
		t.Errorf("first user after the upgrade got id %d: user 4, deleted, still has a session on record", u.ID)
	}
}

// TestNewerSchemaRefused: a database written by a newer Holdfast is not
// opened (and so not damaged) by an older one.
func TestNewerSchemaRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.db")
	s := openStore(t, path)
	do(t, s, func(tx *Tx) error { return tx.PutSetting(versionKey, []byte(fmt.Sprint(schemaVersion+1))) })
	s.Close()
	if _, err := Open(sqldb.In("", path, "control")); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("opening a database of a newer schema: %v", err)
	}
}

func fkCheck(t *testing.T, db *sql.DB) {
	t.Helper()
	rows, err := db.Query(`PRAGMA foreign_key_check`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		t.Error("foreign key violation after the upgrade")
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
}

// schemaOf describes a database's tables — columns, keys, foreign keys,
// indexes and whether ids are AUTOINCREMENT — in a form that does not
// depend on how each table was created (comments, quoting).
func schemaOf(t *testing.T, db *sql.DB) string {
	t.Helper()
	lines := func(q string, args ...any) []string {
		rows, err := db.Query(q, args...)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		defer rows.Close()
		cols, _ := rows.Columns()
		var out []string
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			cells := make([]string, len(vals))
			for i, v := range vals {
				cells[i] = fmt.Sprint(v)
			}
			out = append(out, strings.Join(cells, " "))
		}
		return out
	}
	var b strings.Builder
	for _, tbl := range lines(`SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name`) {
		var ddl string
		if err := db.QueryRow(`SELECT sql FROM sqlite_master WHERE name = ?`, tbl).Scan(&ddl); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "table %s autoincrement=%v\n", tbl, strings.Contains(strings.ToUpper(ddl), "AUTOINCREMENT"))
		for _, q := range []string{`SELECT * FROM pragma_table_info(?)`, `SELECT "table", "from", "to", on_update, on_delete FROM pragma_foreign_key_list(?)`} {
			for _, l := range lines(q, tbl) {
				fmt.Fprintf(&b, "  %s\n", l)
			}
		}
		idx := lines(`SELECT name, "unique", origin, partial FROM pragma_index_list(?)`, tbl)
		for i, l := range idx {
			name := strings.Fields(l)[0]
			cols := lines(`SELECT name FROM pragma_index_info(?)`, name)
			// Automatic indexes are named after their table's creation
			// order, which a rebuild changes; their columns are what counts.
			if strings.HasPrefix(name, "sqlite_autoindex_") {
				l = "autoindex" + strings.TrimPrefix(l, name)
			}
			idx[i] = l + " " + strings.Join(cols, ",")
		}
		slices.Sort(idx)
		for _, l := range idx {
			fmt.Fprintf(&b, "  index %s\n", l)
		}
	}
	return b.String()
}

// TestTenantNamesNeverReused: a tenant's name is how its audit trail, its
// operations, its events and its infrastructure (acme--web) know it; a
// new tenant given a deleted one's name would inherit all of that.
func TestTenantNamesNeverReused(t *testing.T) {
	s := openStore(t, filepath.Join(t.TempDir(), "c.db"))
	createTenant(t, s, "acme")
	do(t, s, func(tx *Tx) error { return tx.DeleteTenant("acme") })
	do(t, s, func(tx *Tx) error {
		if _, err := tx.CreateTenant("acme", "", api.Quota{}); !errors.Is(err, ErrRetired) {
			t.Errorf("a deleted tenant's name given again: %v, want ErrRetired", err)
		}
		if _, err := tx.CreateTenant("acme2", "", api.Quota{}); err != nil {
			t.Errorf("another name: %v", err)
		}
		return nil
	})
}
