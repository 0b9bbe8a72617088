package tenant

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"

	"github.com/holdfast/holdfast/internal/migrate"
	"github.com/holdfast/holdfast/internal/sqldb"
)

// controlSchema is the control plane's tables and how they got there. A
// fresh database is made with schema.sql and recorded at the latest
// version; a database written by an earlier version is brought to it by
// the steps, in order, each in one transaction, before schema.sql adds the
// tables that are new. Version 0 is the schema of the first release,
// which recorded none (testdata/schema-v0.sql).
var controlSchema = &migrate.Schema{
	Name:  "tenant",
	SQL:   schema,
	First: 0,
	Steps: []migrate.Step{
		{What: "user and tenant ids are never reused", Rebuild: true, Run: neverReuseIDs},
		{What: "names of deleted tenants are never given again", Run: retireTenantNames},
		// The tables are new, so schema.sql makes them after the steps;
		// the version is what counts: a binary from before passkeys
		// refuses this database (migrate.ErrNewer) rather than let a
		// user whose second factor is a passkey in on a password alone.
		{What: "passkeys (WebAuthn credentials) and their ceremonies"},
	},
	Tables: []string{"users"},
	Record: settingsRecord{},
}

// schemaVersion is the version this Holdfast writes.
var schemaVersion = controlSchema.Latest()

// versionKey is where a database records its schema version: in the
// settings table, where the first versioned release put it (package
// session, whose tables share the file, keeps its own in schema_versions).
const versionKey = "tenant.schema_version"

// settingsRecord keeps the version under versionKey in settings.
type settingsRecord struct{}

func (settingsRecord) Read(ctx context.Context, q migrate.Querier, d sqldb.Dialect, _ string) (int, bool, error) {
	if ok, err := migrate.HasTable(ctx, q, d, "settings"); err != nil || !ok {
		return 0, false, err // a new database
	}
	var v string
	err := q.QueryRowContext(ctx, `SELECT value FROM settings WHERE key = ?`, versionKey).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil // the first release recorded no version
	}
	if err != nil {
		return 0, false, fmt.Errorf("read the control database's schema version: %w", err)
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, false, fmt.Errorf("the control database's schema version %q is not a version", v)
	}
	return n, true, nil
}

func (settingsRecord) Write(ctx context.Context, tx *sql.Tx, _ string, v int) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO settings(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`,
		versionKey, []byte(strconv.Itoa(v)))
	return err
}

// neverReuseIDs gives users and tenants AUTOINCREMENT ids. Without it
// SQLite hands the id of the newest row, once deleted, to the next insert:
// an access token or API key of a deleted user could then act as the next
// user made. SQLite cannot add AUTOINCREMENT to a table, so each is
// rebuilt the way SQLite documents for schema changes ALTER TABLE cannot
// make (create the new table, copy, drop the old, rename), with foreign
// keys off; the tables that refer to them keep their rows and references.
//
// Each sequence starts above every id known to have been used. The first
// release kept no record of deleted ids: the highest id left is what a
// table tells, and package session's sessions, which name their user by
// id, tell of users deleted since. A user or tenant deleted before the
// upgrade that was the newest and left no session behind may have its id
// given once more; nothing that could name it (keys, memberships) is left.
func neverReuseIDs(ctx context.Context, tx *sql.Tx) error {
	steps := []string{
		`CREATE TABLE tenants_v1 (
			id            INTEGER PRIMARY KEY AUTOINCREMENT,
			name          TEXT NOT NULL UNIQUE,
			display_name  TEXT NOT NULL DEFAULT '',
			q_instances   INTEGER NOT NULL,
			q_vcpus       INTEGER NOT NULL,
			q_memory_mib  INTEGER NOT NULL,
			q_disk_gib    INTEGER NOT NULL,
			q_networks    INTEGER NOT NULL,
			created_at    TEXT NOT NULL,
			version       INTEGER NOT NULL DEFAULT 1
		)`,
		`INSERT INTO tenants_v1 (id, name, display_name, q_instances, q_vcpus, q_memory_mib, q_disk_gib, q_networks, created_at, version)
			SELECT id, name, display_name, q_instances, q_vcpus, q_memory_mib, q_disk_gib, q_networks, created_at, version FROM tenants`,
		`DROP TABLE tenants`,
		`ALTER TABLE tenants_v1 RENAME TO tenants`,
		`CREATE TABLE users_v1 (
			id            INTEGER PRIMARY KEY AUTOINCREMENT,
			name          TEXT NOT NULL UNIQUE,
			email         TEXT NOT NULL DEFAULT '',
			password_hash TEXT NOT NULL DEFAULT '',
			operator      INTEGER NOT NULL DEFAULT 0,
			totp_sealed   BLOB,
			totp_pending  BLOB,
			oidc_issuer   TEXT,
			oidc_subject  TEXT,
			created_at    TEXT NOT NULL,
			version       INTEGER NOT NULL DEFAULT 1,
			UNIQUE (oidc_issuer, oidc_subject)
		)`,
		`INSERT INTO users_v1 (id, name, email, password_hash, operator, totp_sealed, totp_pending, oidc_issuer, oidc_subject, created_at, version)
			SELECT id, name, email, password_hash, operator, totp_sealed, totp_pending, oidc_issuer, oidc_subject, created_at, version FROM users`,
		`DROP TABLE users`,
		`ALTER TABLE users_v1 RENAME TO users`,
	}
	for _, q := range steps {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	var sessions bool
	if err := tx.QueryRowContext(ctx, `SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'session_families'`).Scan(&sessions); err != nil {
		return err
	}
	usersUsed := `SELECT coalesce(max(id), 0) FROM users`
	if sessions {
		usersUsed = `SELECT max((SELECT coalesce(max(id), 0) FROM users), (SELECT coalesce(max(CAST(user_id AS INTEGER)), 0) FROM session_families))`
	}
	for table, used := range map[string]string{"users": usersUsed, "tenants": `SELECT coalesce(max(id), 0) FROM tenants`} {
		var floor int64
		if err := tx.QueryRowContext(ctx, used).Scan(&floor); err != nil {
			return fmt.Errorf("highest %s id: %w", table, err)
		}
		if err := startSequenceAbove(ctx, tx, table, floor); err != nil {
			return err
		}
	}
	return nil
}

// retireTenantNames records the names of tenants deleted before names
// were retired, as far as the database remembers them: the operations of
// a tenant outlive it.
func retireTenantNames(ctx context.Context, tx *sql.Tx) error {
	for _, q := range []string{
		// As schema.sql has it, so that both make the same table.
		`CREATE TABLE IF NOT EXISTS retired_tenants (
	name       TEXT PRIMARY KEY,
	deleted_at TEXT NOT NULL
)`,
		`INSERT OR IGNORE INTO retired_tenants(name, deleted_at)
			SELECT tenant, max(updated_at) FROM operations
			WHERE tenant != '' AND tenant NOT IN (SELECT name FROM tenants) GROUP BY tenant`,
	} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

// startSequenceAbove makes the next AUTOINCREMENT id of table greater than
// floor (and than any it has given).
func startSequenceAbove(ctx context.Context, tx *sql.Tx, table string, floor int64) error {
	res, err := tx.ExecContext(ctx, `UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = ?`, floor, table)
	if err != nil {
		return fmt.Errorf("%s id sequence: %w", table, err)
	}
	if n, err := res.RowsAffected(); err != nil || n > 0 {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO sqlite_sequence(name, seq) VALUES(?, ?)`, table, floor); err != nil {
		return fmt.Errorf("%s id sequence: %w", table, err)
	}
	return nil
}
