// Package store keeps Holdfast's state — allocations, what was made, and
// the intent log — in a database (an SQLite file, or PostgreSQL: package
// sqldb), so that a crash or kill -9 in the middle of an apply loses
// nothing.
package store

import (
	"context"
	"database/sql"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/migrate"
	"github.com/holdfast/holdfast/internal/sqldb"
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

// Open opens (creating and migrating if needed) the state database at p.
func Open(p sqldb.Place) (*Store, error) {
	ctx := context.Background()
	db, err := sqldb.Open(ctx, p)
	if err != nil {
		return nil, err
	}
	if err := migrate.Run(ctx, db, stateSchema); err != nil {
		db.Close()
		return nil, fmt.Errorf("state %s: %w", p, err)
	}
	return &Store{db: db}, nil
}

// At is the place of a cloud's state database: in the PostgreSQL
// database at url, or the file state.db in dir when url is empty.
func At(url, dir string) sqldb.Place { return sqldb.In(url, filepath.Join(dir, "state.db"), "state") }

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
	var id int64
	err := s.db.QueryRowContext(ctx, `INSERT INTO runs (started) VALUES (?) RETURNING id`, now()).Scan(&id)
	return id, err
}

// EndRun records how a run ended.
func (s *Store) EndRun(ctx context.Context, run int64, outcome string) error {
	_, err := s.db.ExecContext(ctx, `UPDATE runs SET finished = ?, outcome = ? WHERE id = ?`, now(), outcome, run)
	return err
}

// Begin writes the intent to act on a resource, before acting.
func (s *Store) Begin(ctx context.Context, run int64, resource, action string) (int64, error) {
	var id int64
	err := s.db.QueryRowContext(ctx, `INSERT INTO intents (run, resource, action, started) VALUES (?, ?, ?, ?) RETURNING id`, run, resource, action, now()).Scan(&id)
	return id, err
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

func (s *Store) tx(ctx context.Context, f func(*sql.Tx) error) error { return sqldb.Tx(ctx, s.db, f) }

func nonNil(s []compile.ID) []compile.ID {
	if s == nil {
		return []compile.ID{}
	}
	return s
}
