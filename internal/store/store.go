// Package store keeps Holdfast's state — allocations, what was made, and
// the intent log — in SQLite (pure Go, modernc.org/sqlite), so that a crash
// or kill -9 in the middle of an apply loses nothing.
package store

import (
	"context"
	"database/sql"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/migrate"
)

//go:embed schema.sql
var schema string

// stateSchema is the state database's tables and how they got there
// (docs/upgrades.md). Version 1 is schema.sql as the releases before
// versioning wrote it; a new version is one more entry in Steps, and
// schema.sql changed to what the steps make.
var stateSchema = &migrate.Schema{
	Name:  "store",
	SQL:   schema,
	First: 1,
	Steps: []migrate.Step{
		{What: "instance and route IDs carry their site", Run: migrateIDs}, // v1 -> v2
	},
	Tables: []string{"allocations", "resources", "intents", "runs"},
}

// Store is one cloud's state database.
type Store struct {
	db *sql.DB
}

// Open opens (creating and migrating if needed) the database at path.
func Open(path string) (*Store, error) {
	db, err := OpenDB(path)
	if err != nil {
		return nil, err
	}
	if err := migrate.Run(context.Background(), db, stateSchema); err != nil {
		db.Close()
		return nil, fmt.Errorf("state %s: %w", path, err)
	}
	return &Store{db: db}, nil
}

// OpenDB opens an SQLite database file the way all of Holdfast's state is
// kept — for the store and for others (the audit log) that keep their own
// tables: root-only, durable, one writer.
func OpenDB(path string) (*sql.DB, error) {
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

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

func now() string { return time.Now().UTC().Format(time.RFC3339Nano) }

// Allocations returns every allocation.
func (s *Store) Allocations(ctx context.Context) (compile.Allocations, error) {
	out := compile.Allocations{Instances: map[string]compile.InstanceAlloc{}}
	rows, err := s.db.QueryContext(ctx, `SELECT instance, vmid, site, node, addrs FROM allocations`)
	if err != nil {
		return out, err
	}
	defer rows.Close()
	for rows.Next() {
		var name, addrs string
		var a compile.InstanceAlloc
		if err := rows.Scan(&name, &a.VMID, &a.Site, &a.Node, &addrs); err != nil {
			return out, err
		}
		if err := json.Unmarshal([]byte(addrs), &a.Addrs); err != nil {
			return out, fmt.Errorf("allocation of %s: %w", name, err)
		}
		out.Instances[name] = a
	}
	return out, rows.Err()
}

// SaveAllocations makes the stored allocations exactly a.
func (s *Store) SaveAllocations(ctx context.Context, a compile.Allocations) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM allocations`); err != nil {
			return err
		}
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO allocations (instance, vmid, site, node, addrs) VALUES (?, ?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for name, al := range a.Instances {
			addrs, _ := json.Marshal(al.Addrs) // a map of strings always marshals
			if _, err := stmt.ExecContext(ctx, name, al.VMID, al.Site, al.Node, string(addrs)); err != nil {
				return fmt.Errorf("allocation of %s: %w", name, err)
			}
		}
		return nil
	})
}

// Resources returns what Holdfast has made, in creation order.
func (s *Store) Resources(ctx context.Context) ([]compile.Resource, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, kind, site, deps, attrs FROM resources ORDER BY seq`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []compile.Resource
	for rows.Next() {
		var r compile.Resource
		var id, deps, attrs string
		if err := rows.Scan(&id, &r.Kind, &r.Site, &deps, &attrs); err != nil {
			return nil, err
		}
		if err := errors.Join(r.ID.UnmarshalText([]byte(id)), json.Unmarshal([]byte(deps), &r.Deps), json.Unmarshal([]byte(attrs), &r.Attrs)); err != nil {
			return nil, fmt.Errorf("resource %s: %w", id, err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// Intent is one step in the log.
type Intent struct {
	ID       int64
	Run      int64
	Resource string
	Action   string
	Started  string
}

// BeginRun records the start of an apply and returns its id.
func (s *Store) BeginRun(ctx context.Context) (int64, error) {
	res, err := s.db.ExecContext(ctx, `INSERT INTO runs (started) VALUES (?)`, now())
	if err != nil {
		return 0, err
	}
	return res.LastInsertId()
}

// EndRun records how a run ended.
func (s *Store) EndRun(ctx context.Context, run int64, outcome string) error {
	_, err := s.db.ExecContext(ctx, `UPDATE runs SET finished = ?, outcome = ? WHERE id = ?`, now(), outcome, run)
	return err
}

// Begin writes the intent to act on a resource, before acting.
func (s *Store) Begin(ctx context.Context, run int64, resource, action string) (int64, error) {
	res, err := s.db.ExecContext(ctx, `INSERT INTO intents (run, resource, action, started) VALUES (?, ?, ?, ?)`, run, resource, action, now())
	if err != nil {
		return 0, err
	}
	return res.LastInsertId()
}

// Made completes an intent whose step made r exist as desired: the
// resource row and the outcome are written in one transaction.
func (s *Store) Made(ctx context.Context, intent int64, r compile.Resource) error {
	deps, err := json.Marshal(nonNil(r.Deps))
	if err != nil {
		return fmt.Errorf("resource %s: %w", r.ID, err)
	}
	attrs, _ := json.Marshal(r.Attrs) // a map of strings always marshals
	return s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `
			INSERT INTO resources (id, kind, site, deps, attrs, seq)
			VALUES (?, ?, ?, ?, ?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM resources))
			ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, site = excluded.site, deps = excluded.deps, attrs = excluded.attrs`,
			r.ID.String(), r.Kind, r.Site, string(deps), string(attrs)); err != nil {
			return err
		}
		return finish(ctx, tx, intent, "done", "")
	})
}

// Removed completes an intent whose step deleted a resource. An instance's
// allocation is released with it: only now may its VMID and addresses be
// handed out again.
func (s *Store) Removed(ctx context.Context, intent int64, r compile.Resource) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM resources WHERE id = ?`, r.ID.String()); err != nil {
			return err
		}
		if r.ID.Kind == compile.ResInstance {
			if _, err := tx.ExecContext(ctx, `DELETE FROM allocations WHERE instance = ?`, r.ID.Name); err != nil {
				return err
			}
		}
		return finish(ctx, tx, intent, "done", "")
	})
}

// Failed completes an intent whose step failed.
func (s *Store) Failed(ctx context.Context, intent int64, stepErr error) error {
	return s.tx(ctx, func(tx *sql.Tx) error { return finish(ctx, tx, intent, "failed", stepErr.Error()) })
}

func finish(ctx context.Context, tx *sql.Tx, intent int64, outcome, msg string) error {
	_, err := tx.ExecContext(ctx, `UPDATE intents SET finished = ?, outcome = ?, error = NULLIF(?, '') WHERE id = ?`, now(), outcome, msg, intent)
	return err
}

// Unfinished returns the intents a crash left open.
func (s *Store) Unfinished(ctx context.Context) ([]Intent, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, run, resource, action, started FROM intents WHERE finished IS NULL ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Intent
	for rows.Next() {
		var in Intent
		if err := rows.Scan(&in.ID, &in.Run, &in.Resource, &in.Action, &in.Started); err != nil {
			return nil, err
		}
		out = append(out, in)
	}
	return out, rows.Err()
}

// Abandon closes intents a crash left open, once the engine has been
// observed: whatever they half-did is now part of the observed state and
// the plan repairs or removes it.
func (s *Store) Abandon(ctx context.Context, ids []int64) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		for _, id := range ids {
			if err := finish(ctx, tx, id, "abandoned", "interrupted; resolved by observing the engine"); err != nil {
				return err
			}
		}
		return nil
	})
}

// Counts reports the number of rows of each table, for tests and status.
func (s *Store) Counts(ctx context.Context) (map[string]int, error) {
	out := map[string]int{}
	for _, t := range []string{"allocations", "resources", "intents", "runs"} {
		var n int
		if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+t).Scan(&n); err != nil {
			return nil, err
		}
		out[t] = n
	}
	return out, nil
}

func (s *Store) tx(ctx context.Context, f func(*sql.Tx) error) error { return Tx(ctx, s.db, f) }

// Beginner begins transactions: a *sql.DB, or one of its connections
// (*sql.Conn) when a connection's settings must hold around it.
type Beginner interface {
	BeginTx(context.Context, *sql.TxOptions) (*sql.Tx, error)
}

// Tx runs f in a transaction on db, committing if f succeeds.
func Tx(ctx context.Context, db Beginner, f func(*sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := f(tx); err != nil {
		_ = tx.Rollback() // the error that matters is f's
		return err
	}
	return tx.Commit()
}

func nonNil(s []compile.ID) []compile.ID {
	if s == nil {
		return []compile.ID{}
	}
	return s
}
