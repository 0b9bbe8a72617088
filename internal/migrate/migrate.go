// Package migrate brings a database's schema to the version a binary
// expects: the version is recorded in the database, ordered steps bring it
// from one version to the next, each in its own transaction, and a
// database written by a newer binary is refused rather than damaged.
//
// Each database (state, control, audit) or each package keeping tables in
// a shared one (tenant and session in control.db) declares one Schema:
// its latest tables as SQL, and the steps from its first version. Adding
// a version is appending one Step to that list. docs/upgrades.md says
// what an operator sees.
//
// Steps are SQL and Go functions over database/sql. A schema's SQL runs
// on SQLite and, translated (sqldb.DDL), on PostgreSQL; the steps from
// versions before PostgreSQL was supported only ever meet SQLite files,
// since a PostgreSQL database starts at the version of the release that
// made it. What is SQLite's own (the file copy before an upgrade,
// foreign-key pragmas, sqlite_master) is kept to this file; on
// PostgreSQL, replicas starting together take turns (an advisory lock),
// and the copy before an upgrade is the operator's pg_dump (docs/ha.md).
package migrate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/holdfast/holdfast/internal/sqldb"
)

// Step brings a database from one version to the next.
type Step struct {
	// What the step does, for messages: "user and tenant ids are never reused".
	What string
	// SQL runs first, when set: one or more statements.
	SQL string
	// Run runs after SQL, when set.
	Run func(context.Context, *sql.Tx) error
	// Rebuild says the step drops and re-creates tables that others refer
	// to. With foreign keys on, dropping such a table would delete every
	// row that refers to it (ON DELETE CASCADE), and the setting cannot
	// change inside a transaction: it is off around the step's, and the
	// keys are checked before the commit instead.
	Rebuild bool
}

// Schema is one package's tables and how they got there.
type Schema struct {
	// Name says whose tables these are, in messages and in the name of
	// the copy made before an upgrade: "store", "tenant", "audit".
	Name string
	// SQL creates the latest tables where they are missing (CREATE ...
	// IF NOT EXISTS). It makes an empty database, and runs after the
	// steps of an upgrade too, so that a step need not create a table
	// that is only new.
	SQL string
	// First is the version of the oldest schema the steps start from. A
	// database holding some of Tables but no recorded version was
	// written before versioning: it is taken to be at First.
	First int
	// Steps[i] brings a database from version First+i to First+i+1.
	Steps []Step
	// Tables are the names of this schema's tables; any one of them in a
	// database says the schema is there.
	Tables []string
	// Adopt, when set, runs (in the transaction that records the version)
	// on a database written before versioning, to bring what older
	// layouts it may hold to version First.
	Adopt func(context.Context, *sql.Tx) error
	// Record is where the version is kept; nil keeps it in the table
	// schema_versions, one row per Name.
	Record Record
}

// Latest is the version this binary writes.
func (s *Schema) Latest() int { return s.First + len(s.Steps) }

// Querier reads one row: a *sql.Conn or a *sql.Tx.
type Querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// Record is where a database keeps a schema's version.
type Record interface {
	// Read returns the recorded version, and false when none is.
	Read(ctx context.Context, q Querier, d sqldb.Dialect, name string) (int, bool, error)
	// Write records version, in tx.
	Write(ctx context.Context, tx *sql.Tx, name string, version int) error
}

// versionTable is the default Record: a table of its own, which several
// schemas sharing one file can each keep a row of (there is one PRAGMA
// user_version per file).
type versionTable struct{}

func (versionTable) Read(ctx context.Context, q Querier, d sqldb.Dialect, name string) (int, bool, error) {
	ok, err := HasTable(ctx, q, d, "schema_versions")
	if err != nil || !ok {
		return 0, false, err
	}
	var v int
	err = q.QueryRowContext(ctx, `SELECT version FROM schema_versions WHERE name = ?`, name).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	return v, err == nil, err
}

func (versionTable) Write(ctx context.Context, tx *sql.Tx, name string, version int) error {
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_versions (
	name    TEXT PRIMARY KEY, -- whose tables: store, session, audit
	version INTEGER NOT NULL
)`); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO schema_versions (name, version) VALUES (?, ?)
		ON CONFLICT (name) DO UPDATE SET version = excluded.version`, name, version)
	return err
}

// ErrNewer is what a database written by a newer binary is refused with
// (as a *NewerError).
var ErrNewer = errors.New("schema newer than this binary")

// NewerError says a database was written by a newer Holdfast.
type NewerError struct {
	File    string // "" for a database without a file
	Schema  string
	Version int // the database's
	Latest  int // this binary's
}

func (e *NewerError) Error() string {
	file := e.File
	if file == "" {
		file = "the database"
	}
	return fmt.Sprintf("%s has %s schema version %d, newer than this Holdfast's %d: run the newer release, or restore the copy made before the upgrade (docs/upgrades.md)",
		file, e.Schema, e.Version, e.Latest)
}

func (e *NewerError) Unwrap() error { return ErrNewer }

// Run brings db to s's latest version: it creates the tables in an empty
// database, adopts one written before versioning, runs the missing steps
// in order, each in its own transaction with the version it reaches (a
// failure or a crash leaves the last version reached, never half a
// step), and refuses a database newer than s. Before the first step it
// copies the file to BackupPath(file, s.Name, s.Latest()).
func Run(ctx context.Context, db *sql.DB, s *Schema) error {
	rec := s.Record
	if rec == nil {
		rec = versionTable{}
	}
	// One connection throughout: foreign_keys is a setting of the
	// connection, which a rebuild turns off and on around its transaction.
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	d := sqldb.DialectOf(db)
	if d == sqldb.Postgres {
		// Replicas starting together would each find the tables missing
		// and make them, or upgrade them, at once: they take turns.
		if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock(?)`, migrateLock); err != nil {
			return fmt.Errorf("wait for other replicas' upgrades: %w", err)
		}
		defer func() {
			_, _ = conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(?)`, migrateLock)
		}()
	}

	version, recorded, err := rec.Read(ctx, conn, d, s.Name)
	if err != nil {
		return fmt.Errorf("read the %s schema version: %w", s.Name, err)
	}
	adopt := false
	if !recorded {
		present, err := anyTable(ctx, conn, d, s.Tables)
		if err != nil {
			return fmt.Errorf("read the %s schema: %w", s.Name, err)
		}
		// Tables without a version were written before versioning; no
		// tables is a new database, made at the latest version.
		version, adopt = s.Latest(), present
		if present {
			version = s.First
		}
	}
	if version > s.Latest() {
		file, _ := fileOf(ctx, conn)
		return &NewerError{File: file, Schema: s.Name, Version: version, Latest: s.Latest()}
	}
	if version < s.First {
		return fmt.Errorf("the %s schema version %d is older than any this Holdfast can upgrade (%d)", s.Name, version, s.First)
	}
	if adopt && s.Adopt != nil {
		err := tx(ctx, conn, func(tx *sql.Tx) error {
			if err := s.Adopt(ctx, tx); err != nil {
				return err
			}
			return rec.Write(ctx, tx, s.Name, version)
		})
		if err != nil {
			return fmt.Errorf("adopt the %s tables of a release before versioning: %w", s.Name, err)
		}
	}
	if version < s.Latest() && d == sqldb.SQLite {
		if err := backup(ctx, conn, s); err != nil {
			return err
		}
	}
	for v := version; v < s.Latest(); v++ {
		st := s.Steps[v-s.First]
		if err := st.apply(ctx, conn, d, rec, s.Name, v+1); err != nil {
			return fmt.Errorf("upgrade the %s schema to version %d (%s): %w", s.Name, v+1, st.What, err)
		}
	}
	return tx(ctx, conn, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, d.DDL(s.SQL)); err != nil {
			return fmt.Errorf("create the %s tables: %w", s.Name, err)
		}
		return rec.Write(ctx, tx, s.Name, s.Latest())
	})
}

// apply runs the step and records version to, in one transaction.
func (st Step) apply(ctx context.Context, conn *sql.Conn, d sqldb.Dialect, rec Record, name string, to int) (err error) {
	if st.Rebuild && d == sqldb.SQLite {
		if _, err := conn.ExecContext(ctx, `PRAGMA foreign_keys = OFF`); err != nil {
			return err
		}
		defer func() {
			if _, e := conn.ExecContext(context.WithoutCancel(ctx), `PRAGMA foreign_keys = ON`); e != nil && err == nil {
				err = fmt.Errorf("turn foreign keys back on: %w", e)
			}
		}()
	}
	return tx(ctx, conn, func(tx *sql.Tx) error {
		if st.SQL != "" {
			if _, err := tx.ExecContext(ctx, d.DDL(st.SQL)); err != nil {
				return err
			}
		}
		if st.Run != nil {
			if err := st.Run(ctx, tx); err != nil {
				return err
			}
		}
		if d == sqldb.SQLite { // PostgreSQL checks every statement's
			if err := checkForeignKeys(ctx, tx); err != nil {
				return err
			}
		}
		return rec.Write(ctx, tx, name, to)
	})
}

// migrateLock is the PostgreSQL advisory lock migrations hold: any
// number, the same in every Holdfast ("hfmigrat").
const migrateLock int64 = 0x68666d6967726174

// BackupPath is where the copy of file made before upgrading schema to
// version is kept.
func BackupPath(file, schema string, version int) string {
	return fmt.Sprintf("%s.pre-%s-v%d", file, schema, version)
}

// backup copies the database's file before an upgrade, so that an
// operator can go back to the release before it (docs/upgrades.md). A
// copy already there is kept: it is from before an earlier attempt at the
// same upgrade, the state that release last wrote.
func backup(ctx context.Context, conn *sql.Conn, s *Schema) error {
	file, err := fileOf(ctx, conn)
	if err != nil || file == "" {
		return err // an in-memory database has nothing to keep
	}
	dst := BackupPath(file, s.Name, s.Latest())
	// Created here, private like the database, because VACUUM INTO would
	// make it with the process's umask; it fills an empty file.
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("copy %s before upgrading it: %w", file, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	// VACUUM INTO writes a consistent copy through the connection, the
	// write-ahead log's committed pages included.
	if _, err := conn.ExecContext(ctx, `VACUUM INTO ?`, dst); err != nil {
		_ = os.Remove(dst) // a half-written copy would pass for a good one
		return fmt.Errorf("copy %s to %s before upgrading it: %w", file, dst, err)
	}
	return nil
}

// fileOf is the file of the connection's main database, "" for one in memory.
func fileOf(ctx context.Context, q Querier) (string, error) {
	var file string
	err := q.QueryRowContext(ctx, `SELECT file FROM pragma_database_list WHERE name = 'main'`).Scan(&file)
	return file, err
}

// HasTable says whether the database has the table name.
func HasTable(ctx context.Context, q Querier, d sqldb.Dialect, name string) (bool, error) {
	return anyTable(ctx, q, d, []string{name})
}

func anyTable(ctx context.Context, q Querier, d sqldb.Dialect, names []string) (bool, error) {
	if len(names) == 0 {
		return false, nil
	}
	args := make([]any, len(names))
	for i, n := range names {
		args[i] = n
	}
	var n int
	list := "(?" + strings.Repeat(", ?", len(names)-1) + ")"
	query := `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ` + list
	if d == sqldb.Postgres {
		query = `SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name IN ` + list
	}
	err := q.QueryRowContext(ctx, query, args...).Scan(&n)
	return n > 0, err
}

// checkForeignKeys fails when any row refers to one that does not exist:
// a step must leave the references as it found them.
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

// tx runs f in a transaction on conn, committing if f succeeds.
func tx(ctx context.Context, conn *sql.Conn, f func(*sql.Tx) error) error {
	return sqldb.InTx(ctx, conn, f)
}
