// Package tenant keeps the control plane's records in SQLite: tenants and
// their quotas, users and memberships, SSH keys, published flavors and
// templates, tenant networks and instances, API keys and operations.
//
// Every read and write goes through a Tx, and every tenant-owned object is
// addressed by its tenant's id: there is no method that finds an object of
// some tenant without saying which, so scoping cannot be forgotten by a
// caller. Quotas are checked in the same transaction that takes them; with
// SQLite's single writer that makes them exact under any concurrency.
package tenant

import (
	"context"
	"database/sql"
	_ "embed"
	"errors"
	"fmt"
	"time"

	"github.com/holdfast/holdfast/internal/migrate"
	"github.com/holdfast/holdfast/internal/sqldb"
)

//go:embed schema.sql
var schema string

// Errors a caller maps to responses.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
	ErrRetired  = errors.New("the name belonged to a deleted tenant")
	ErrQuota    = errors.New("quota exceeded")
	ErrConflict = errors.New("version does not match")
	ErrInUse    = errors.New("still in use")
	ErrPoolFull = errors.New("no free network left in the pool")
)

// QuotaError says which limit a request would cross.
type QuotaError struct {
	Resource   string
	Used, Want int64
	Limit      int64
}

func (e *QuotaError) Error() string {
	return fmt.Sprintf("%s quota exceeded: %d in use + %d requested > limit %d", e.Resource, e.Used, e.Want, e.Limit)
}

func (e *QuotaError) Unwrap() error { return ErrQuota }

// Store is the control plane's database.
type Store struct {
	db  *sql.DB
	now func() time.Time
}

// Open opens (creating if needed) the database at p.
func Open(p sqldb.Place) (*Store, error) {
	db, err := sqldb.Open(context.Background(), p)
	if err != nil {
		return nil, err
	}
	s, err := New(db)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return s, nil
}

// New uses db, creating the tables if missing and upgrading a database
// an earlier release wrote (migrate.go).
func New(db *sql.DB) (*Store, error) {
	if err := migrate.Run(context.Background(), db, controlSchema); err != nil {
		return nil, err
	}
	return &Store{db: db, now: time.Now}, nil
}

// DB is the underlying database, for packages that keep their own tables
// in it (sessions).
func (s *Store) DB() *sql.DB { return s.db }

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Tx is one transaction (or, from Read, statements on their own); its
// methods are the only way to the records.
type Tx struct {
	tx  querier
	ctx context.Context
	now time.Time
}

// querier runs statements: a *sql.Tx, or the *sql.DB itself (Read).
type querier interface {
	ExecContext(context.Context, string, ...any) (sql.Result, error)
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
	QueryRowContext(context.Context, string, ...any) *sql.Row
}

// Do runs f in a transaction, committing when it returns nil.
func (s *Store) Do(ctx context.Context, f func(*Tx) error) error {
	now := s.now().UTC()
	return sqldb.Tx(ctx, s.db, func(tx *sql.Tx) error {
		return f(&Tx{tx: tx, ctx: ctx, now: now})
	})
}

// DoLocked is Do for a transaction that must take turns with the others
// holding lock (sqldb.TxLocked): those of one tenant that check its quota.
func (s *Store) DoLocked(ctx context.Context, lock int64, f func(*Tx) error) error {
	now := s.now().UTC()
	return sqldb.TxLocked(ctx, s.db, lock, func(tx *sql.Tx) error {
		return f(&Tx{tx: tx, ctx: ctx, now: now})
	})
}

// TenantLock is the lock (DoLocked) of the tenant with id: its
// changes take turns, so that those checking its quota do not keep
// aborting each other.
func TenantLock(id int64) int64 { return 0x68660000<<32 | id }

// Read runs f for reads that need no transaction: on PostgreSQL each
// statement runs on its own and sees what is committed when it runs,
// which saves a transaction's two round trips on every request that only
// looks (who is asking, which tenant, a page). f must not rely on two
// statements seeing the same moment, nor make changes that must go
// together. On SQLite, whose one connection a statement holds while its
// rows are read, it is Do.
func (s *Store) Read(ctx context.Context, f func(*Tx) error) error {
	if sqldb.DialectOf(s.db) != sqldb.Postgres {
		return s.Do(ctx, f)
	}
	return f(&Tx{tx: s.db, ctx: ctx, now: s.now().UTC()})
}

// Now is the transaction's time, the same for everything it writes.
func (t *Tx) Now() time.Time { return t.now }

func (t *Tx) exec(q string, args ...any) (sql.Result, error) {
	return t.tx.ExecContext(t.ctx, q, args...)
}

func (t *Tx) query(q string, args ...any) (*sql.Rows, error) {
	return t.tx.QueryContext(t.ctx, q, args...)
}

func (t *Tx) row(q string, args ...any) *sql.Row {
	return t.tx.QueryRowContext(t.ctx, q, args...)
}

// scanner is a row being read: *sql.Row or *sql.Rows.
type scanner interface{ Scan(...any) error }

// collect reads every row of a query with scan.
func collect[T any](rows *sql.Rows, err error, scan func(scanner) (T, error)) ([]T, error) {
	return collectInto(nil, rows, err, scan)
}

// collectInto is collect appending to out (made with the capacity the
// rows will need: a page of a list is read often).
func collectInto[T any](out []T, rows *sql.Rows, err error, scan func(scanner) (T, error)) ([]T, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// affected turns "no row matched" into ErrNotFound.
func affected(res sql.Result, err error) error {
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

func notFound(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	return err
}

// isUnique reports a UNIQUE or PRIMARY KEY violation; modernc's errors
// carry the SQLite message.
func isUnique(err error) bool { return sqldb.IsUnique(err) }

const timeFormat = time.RFC3339Nano

func fmtTime(t time.Time) string { return t.UTC().Format(timeFormat) }

func parseTime(s string) time.Time {
	t, _ := time.Parse(timeFormat, s)
	return t
}

func nullTime(s sql.NullString) *time.Time {
	if !s.Valid || s.String == "" {
		return nil
	}
	t := parseTime(s.String)
	return &t
}

// Setting reads a value kept in the settings table (keys, markers).
func (t *Tx) Setting(key string) ([]byte, error) {
	var v []byte
	err := t.row(`SELECT value FROM settings WHERE key = ?`, key).Scan(&v)
	return v, notFound(err)
}

// PutSetting stores a value in the settings table.
func (t *Tx) PutSetting(key string, value []byte) error {
	_, err := t.exec(`INSERT INTO settings(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`, key, value)
	return err
}
