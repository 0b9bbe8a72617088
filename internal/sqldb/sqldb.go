// Package sqldb opens Holdfast's databases — the state, control and audit
// databases — on one of two backends: an SQLite file (embedded, pure Go,
// the default for one machine) or PostgreSQL through pgx, which several
// `holdfast serve` replicas share (docs/ha.md).
//
// The packages that keep tables (store, tenant, session, audit) write
// their SQL once, in the dialect both backends share: ? placeholders,
// ON CONFLICT, RETURNING, and schema files in SQLite's words. What
// differs is kept here: placeholders become $n on the way to PostgreSQL
// (rebind.go), a schema's column types are translated (DDL), each
// database is a PostgreSQL schema of its own (holdfast_state,
// holdfast_control, holdfast_audit) so that the three keep their table
// names as in their files, and Tx runs transactions serializable on
// PostgreSQL, retrying the ones it aborts, so that the quota checks and
// read-then-write steps that SQLite's single writer made exact stay exact.
package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// Dialect is a backend's SQL.
type Dialect int

// The backends.
const (
	SQLite Dialect = iota
	Postgres
)

func (d Dialect) String() string {
	if d == Postgres {
		return "postgres"
	}
	return "sqlite"
}

// Place says where one of Holdfast's databases lives.
type Place struct {
	// URL is a PostgreSQL connection URL (postgres://user@host/db?...);
	// empty keeps the database in File.
	URL string
	// File is the SQLite file, when URL is empty.
	File string
	// Name says which database this is: "state", "control", "audit". On
	// PostgreSQL it lives in the schema holdfast_<Name>.
	Name string
}

// In is the Place of the database name, in the PostgreSQL database at
// url, or in file when url is empty.
func In(url, file, name string) Place { return Place{URL: url, File: file, Name: name} }

// IsURL says whether s names a PostgreSQL database rather than a file.
func IsURL(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

// CheckURL says what is wrong with s as a --database: empty (SQLite
// files) or a postgres:// URL that parses.
func CheckURL(s string) error {
	if s == "" {
		return nil
	}
	if !IsURL(s) {
		return fmt.Errorf("%q is not a PostgreSQL URL (postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE)", Redact(s))
	}
	if _, err := pgx.ParseConfig(s); err != nil {
		return fmt.Errorf("%s: %w", Redact(s), err)
	}
	return nil
}

// Schema is the PostgreSQL schema a database named name lives in.
func Schema(name string) string { return "holdfast_" + name }

// String names the place for messages, without a password.
func (p Place) String() string {
	if p.URL == "" {
		return p.File
	}
	return Redact(p.URL) + " (schema " + Schema(p.Name) + ")"
}

// Redact is a connection URL with its password replaced, for messages
// and logs.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "the database URL (unparsable)"
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	q := u.Query()
	if q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// Open opens (creating if needed) the database at p. An unreachable or
// refused PostgreSQL is an error naming the server and what failed.
func Open(ctx context.Context, p Place) (*sql.DB, error) {
	if p.URL == "" {
		return openSQLite(p.File)
	}
	return openPostgres(ctx, p)
}

// openSQLite opens an SQLite file the way all of Holdfast's state is
// kept: root-only, durable, one writer.
func openSQLite(path string) (*sql.DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	// WAL keeps readers (status) from blocking the writer (apply); a
	// synchronous=FULL commit is durable across power loss, which the
	// intent log and the audit log rely on.
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)             // SQLite has one writer; one connection avoids SQLITE_BUSY between our own goroutines
	if err := db.Ping(); err != nil { // creates the file, so that it can be made private
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// serverDefaults are the session settings Holdfast asks of PostgreSQL
// unless the URL says otherwise. No request may hang on the database: a
// statement waits (for a lock too) at most 30 s; and a replica stopped in
// the middle of a transaction (SIGSTOP, a paused VM) must not hold its
// locks — the audit chain's, rows others need — for longer than 15 s,
// after which PostgreSQL ends its session. Holdfast never keeps a
// transaction open across anything but its own statements.
var serverDefaults = map[string]string{
	"application_name":                    "holdfast",
	"statement_timeout":                   "30s",
	"idle_in_transaction_session_timeout": "15s",
}

// connectTimeout bounds connecting when the URL does not: a server that
// does not answer is an error at start and a 503 while serving, not a
// hang.
const connectTimeout = 5 * time.Second

func openPostgres(ctx context.Context, p Place) (*sql.DB, error) {
	if p.Name == "" {
		return nil, errors.New("sqldb: a PostgreSQL place needs a name")
	}
	cfg, err := pgx.ParseConfig(p.URL)
	if err != nil {
		return nil, fmt.Errorf("database %s: %w", Redact(p.URL), err)
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = connectTimeout
	}
	for param, value := range serverDefaults {
		if _, ok := cfg.RuntimeParams[param]; !ok {
			cfg.RuntimeParams[param] = value
		}
	}
	cfg.RuntimeParams["search_path"] = Schema(p.Name)
	where := fmt.Sprintf("PostgreSQL at %s:%d, database %q as %q", cfg.Host, cfg.Port, cfg.Database, cfg.User)
	if err := createSchema(ctx, cfg.Copy(), Schema(p.Name)); err != nil {
		return nil, fmt.Errorf("%s: %w", where, plain(err))
	}
	db := sql.OpenDB(&connector{inner: stdlib.GetConnector(*cfg)})
	// A few connections a core: PostgreSQL's backends compete for the
	// same cores as the replicas, and more of them only contend (bench/
	// ha.sh took 45 % more requests a second with 8 than with 32 on two
	// cores). Each may stay idle for a minute: under load, a pool that
	// closes what it just used reconnects on the next burst.
	conns := 4 * runtime.GOMAXPROCS(0)
	db.SetMaxOpenConns(conns)
	db.SetMaxIdleConns(conns)
	db.SetConnMaxIdleTime(time.Minute)
	return db, nil
}

// createSchema makes the database's schema when it is missing. Replicas
// starting together may race to make it: the loser's error is the
// winner's success.
func createSchema(ctx context.Context, cfg *pgx.ConnConfig, schema string) error {
	delete(cfg.RuntimeParams, "search_path")
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+pgx.Identifier{schema}.Sanitize())
	var pe *pgconn.PgError
	if errors.As(err, &pe) && (pe.Code == "23505" || pe.Code == "42P06") {
		return nil
	}
	return err
}

// plain is err without pgx's repetition of the connection settings,
// which the caller's message already names.
func plain(err error) error {
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return ce.Unwrap()
	}
	return err
}

// DialectOf is the backend db was opened on.
func DialectOf(db *sql.DB) Dialect {
	if _, ok := db.Driver().(*pgDriver); ok {
		return Postgres
	}
	return SQLite
}

// Retryable says whether err is PostgreSQL aborting a transaction that
// ran into another (a serialization failure or a deadlock): run again, it
// succeeds or fails on its own merits.
func Retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}

// Unavailable says whether err is the database being out of reach (a
// lost connection, a server shutting down or refusing connections), as
// opposed to a statement it refused.
func Unavailable(err error) bool {
	if err == nil {
		return false
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		// Class 08: connection exception; 57P01-57P03: the server is
		// shutting down or starting.
		return strings.HasPrefix(pe.Code, "08") || pe.Code == "57P01" || pe.Code == "57P02" || pe.Code == "57P03"
	}
	var ce *pgconn.ConnectError
	return errors.As(err, &ce) || pgconn.SafeToRetry(err) || errors.Is(err, driverBadConn)
}

// IsUnique says whether err is a uniqueness constraint refusing a row.
func IsUnique(err error) bool {
	if err == nil {
		return false
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "23505"
	}
	return strings.Contains(err.Error(), "UNIQUE constraint failed")
}

// maxAttempts bounds the runs of a transaction PostgreSQL aborts, and
// maxBackoff the wait before one: a burst of transactions that all read
// and write the same rows (creations in one tenant, checking its quota)
// goes through one after the other within a few seconds.
const (
	maxAttempts = 50
	maxBackoff  = 100 * time.Millisecond
)

// Tx runs f in a transaction on db, committing if f succeeds. On
// PostgreSQL the transaction is serializable, and run again when
// PostgreSQL aborts it for running into another: f must do nothing but
// its database work, or do it again harmlessly.
func Tx(ctx context.Context, db *sql.DB, f func(*sql.Tx) error) error {
	if DialectOf(db) != Postgres {
		return tx(ctx, db, nil, f)
	}
	return retried(ctx, db, f)
}

// TxLocked is Tx for transactions that would otherwise keep aborting
// each other — those that read and write the same rows, such as one
// tenant's creations checking its quota: on PostgreSQL they take turns
// on lock, held on the connection from before the transaction begins
// (so that each one's snapshot has the last one's commit) until it
// ends. Others are not held up.
func TxLocked(ctx context.Context, db *sql.DB, lock int64, f func(*sql.Tx) error) error {
	if DialectOf(db) != Postgres {
		return tx(ctx, db, nil, f)
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock(?)`, lock); err != nil {
		return err
	}
	// Let go before the connection goes back to the pool; if that fails
	// the connection is broken, and its session's locks went with it.
	defer func() { _, _ = conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(?)`, lock) }()
	return retried(ctx, conn, f)
}

// retried runs f in serializable transactions on b until one is not
// aborted for running into another.
func retried(ctx context.Context, b Beginner, f func(*sql.Tx) error) error {
	opts := &sql.TxOptions{Isolation: sql.LevelSerializable}
	var err error
	for attempt := range maxAttempts {
		if err = tx(ctx, b, opts, f); !Retryable(err) {
			return err
		}
		// A random wait, up to twice as long each time: transactions
		// that collided must not collide again in step.
		ceiling := min(maxBackoff, time.Millisecond<<min(attempt, 10))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(rand.N(ceiling) + time.Millisecond):
		}
	}
	return err
}

// Serialized runs f in a transaction that holds lock, which no other
// transaction holding it overlaps, in any process sharing the database:
// for work that must happen one at a time everywhere, such as appending
// to a hash chain. On PostgreSQL it is a transaction-level advisory lock
// taken first, at read-committed isolation, so that f's reads see what
// the last holder committed; SQLite has one writer anyway.
func Serialized(ctx context.Context, db *sql.DB, lock int64, f func(*sql.Tx) error) error {
	if DialectOf(db) != Postgres {
		return tx(ctx, db, nil, f)
	}
	opts := &sql.TxOptions{Isolation: sql.LevelReadCommitted}
	return tx(ctx, db, opts, func(t *sql.Tx) error {
		if _, err := t.ExecContext(ctx, `SELECT pg_advisory_xact_lock(?)`, lock); err != nil {
			return err
		}
		return f(t)
	})
}

// Beginner begins transactions: a *sql.DB, or one of its connections
// (*sql.Conn) when a connection's settings must hold around them.
type Beginner interface {
	BeginTx(context.Context, *sql.TxOptions) (*sql.Tx, error)
}

// InTx runs f in a transaction of b's default isolation, committing if f
// succeeds, once: for work that holds its own locks (migrations).
func InTx(ctx context.Context, b Beginner, f func(*sql.Tx) error) error {
	return tx(ctx, b, nil, f)
}

func tx(ctx context.Context, db Beginner, opts *sql.TxOptions, f func(*sql.Tx) error) error {
	t, err := db.BeginTx(ctx, opts)
	if err != nil {
		return err
	}
	if err := f(t); err != nil {
		_ = t.Rollback() // the error that matters is f's
		return err
	}
	return t.Commit()
}
