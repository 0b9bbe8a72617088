package tenant

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"

	"github.com/holdfast/holdfast/internal/store"
)

// schemaVersion is the version of schema.sql. A fresh database is made
// with schema.sql and recorded at this version; a database written by an
// earlier version is brought to it by the migrations, in order, each in
// one transaction, before schema.sql adds the tables that are new.
// Version 0 is the schema of the first release, which recorded none
// (testdata/schema-v0.sql).
const schemaVersion = 2

// versionKey is where a database records its schema version: in the
// settings table rather than PRAGMA user_version, because control.db also
// holds package session's tables and there is one user_version per file.
const versionKey = "tenant.schema_version"

// migration brings a database from one version to the next.
type migration struct {
	what string
	// rebuild says the migration drops and re-creates tables that others
	// refer to, which needs foreign keys off while it runs.
	rebuild bool
	run     func(context.Context, *sql.Tx) error
}

// migrations[v] brings a database from version v to v+1.
var migrations = [schemaVersion]migration{
	{what: "user and tenant ids are never reused", rebuild: true, run: neverReuseIDs},
	{what: "names of deleted tenants are never given again", run: retireTenantNames},
}

// migrate brings db to schemaVersion, creating it if it is empty.
func migrate(ctx context.Context, db *sql.DB) error {
	// One connection throughout: foreign_keys is a setting of the
	// connection, and a rebuild turns it off and on again around its
	// transaction.
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	var existing bool
	if err := conn.QueryRowContext(ctx, `SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'users'`).Scan(&existing); err != nil {
		return fmt.Errorf("read the control database's schema: %w", err)
	}
	version := schemaVersion
	if existing {
		if version, err = readVersion(ctx, conn); err != nil {
			return err
		}
	}
	if version > schemaVersion {
		return fmt.Errorf("the control database has schema version %d, newer than this Holdfast's %d: run the newer release", version, schemaVersion)
	}
	for v := version; v < schemaVersion; v++ {
		if err := migrations[v].apply(ctx, conn, v+1); err != nil {
			return fmt.Errorf("upgrade the control database to schema version %d (%s): %w", v+1, migrations[v].what, err)
		}
	}
	return store.Tx(ctx, conn, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, schema); err != nil {
			return fmt.Errorf("create control plane tables: %w", err)
		}
		return putVersion(ctx, tx, schemaVersion)
	})
}

func readVersion(ctx context.Context, conn *sql.Conn) (int, error) {
	var v string
	err := conn.QueryRowContext(ctx, `SELECT value FROM settings WHERE key = ?`, versionKey).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil // the first release recorded no version
	}
	if err != nil {
		return 0, fmt.Errorf("read the control database's schema version: %w", err)
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("the control database's schema version %q is not a version", v)
	}
	return n, nil
}

func putVersion(ctx context.Context, tx *sql.Tx, v int) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO settings(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`,
		versionKey, []byte(strconv.Itoa(v)))
	return err
}

// apply runs the migration and records version to, in one transaction.
func (m migration) apply(ctx context.Context, conn *sql.Conn, to int) (err error) {
	if m.rebuild {
		// Dropping a table that others refer to would, with foreign keys
		// on, delete every row that refers to it (ON DELETE CASCADE).
		// The setting cannot change inside a transaction, so it is off
		// around it, and the keys are checked before the commit instead.
		if _, err := conn.ExecContext(ctx, `PRAGMA foreign_keys = OFF`); err != nil {
			return err
		}
		defer func() {
			if _, e := conn.ExecContext(context.WithoutCancel(ctx), `PRAGMA foreign_keys = ON`); e != nil && err == nil {
				err = fmt.Errorf("turn foreign keys back on: %w", e)
			}
		}()
	}
	return store.Tx(ctx, conn, func(tx *sql.Tx) error {
		if err := m.run(ctx, tx); err != nil {
			return err
		}
		if err := checkForeignKeys(ctx, tx); err != nil {
			return err
		}
		return putVersion(ctx, tx, to)
	})
}

// checkForeignKeys fails when any row refers to one that does not exist.
func checkForeignKeys(ctx context.Context, tx *sql.Tx) error {
	rows, err := tx.QueryContext(ctx, `PRAGMA foreign_key_check`)
	if err != nil {
		return err
	}
	defer rows.Close()
	if rows.Next() {
		var table, parent string
		var rowid sql.NullInt64
		var fk int
		if err := rows.Scan(&table, &rowid, &parent, &fk); err != nil {
			return err
		}
		return fmt.Errorf("row %d of %s refers to a missing row of %s", rowid.Int64, table, parent)
	}
	return rows.Err()
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
