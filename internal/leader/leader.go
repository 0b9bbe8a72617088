// Package leader elects the one replica that reconciles among the
// `holdfast serve` processes sharing a PostgreSQL database, through a
// lease row in it, and fences what the leader does with the lease.
//
// The lease is a row (name, holder, epoch, expires) whose times are the
// database's clock, so that replicas' clocks need not agree. A replica
// takes the lease when it has expired, which raises its epoch; the holder
// renews it every TTL/3. The holder counts its lease valid until TTL less
// a margin after it sent the renewal that the database granted, by its
// own monotonic clock: that ends before the database lets anyone else
// take the lease, whatever happened in between — a process stopped
// (SIGSTOP) past its lease finds on waking that it is no longer the
// leader before it can act. Fence checks that, and the row itself, before
// every step that changes the infrastructure.
//
// On SQLite there is one process per database: it is always the leader.
package leader

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/holdfast/holdfast/internal/sqldb"
)

// ErrNotLeader refuses a step to a replica that does not hold the lease.
var ErrNotLeader = errors.New("this replica is not the leader: another holds the lease, or this one lost it")

// Defaults of Config.
const (
	DefaultTTL = 6 * time.Second
	// margin is how much sooner than the database the holder counts its
	// lease ended: more than the time a renewal takes to reach it.
	margin = time.Second
)

// Config tunes an Elector.
type Config struct {
	// Name is the lease's: what it guards ("realizer").
	Name string
	// Self names this replica in the row, for operators reading it.
	Self string
	// TTL is how long a lease lasts unrenewed; another replica takes
	// over at most TTL + TTL/6 after the leader died (default 6s).
	TTL time.Duration
	// OnChange, if set, is called (from Run's goroutine) when this
	// replica becomes the leader or stops being it.
	OnChange func(leading bool)
	Logger   *slog.Logger
}

// Elector takes, renews and gives up one lease.
type Elector struct {
	db     *sql.DB
	cfg    Config
	always bool // SQLite: the only process

	mu         sync.Mutex
	epoch      int64
	validUntil time.Time // by the monotonic clock; zero when not leading
}

const schema = `CREATE TABLE IF NOT EXISTS leases (
	name    TEXT PRIMARY KEY,          -- what the lease guards
	holder  TEXT NOT NULL,             -- the replica holding it
	epoch   BIGINT NOT NULL,           -- raised whenever it changes hands: the fencing token
	expires TIMESTAMPTZ NOT NULL       -- by the database's clock
)`

// New returns an Elector of the lease cfg.Name in db, and tries once to
// take it, so that a lone replica leads from its start.
func New(ctx context.Context, db *sql.DB, cfg Config) (*Elector, error) {
	if cfg.Name == "" || cfg.Self == "" {
		return nil, errors.New("leader: Config needs Name and Self")
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.TTL < 3*margin {
		return nil, fmt.Errorf("leader: TTL %s is shorter than %s", cfg.TTL, 3*margin)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	e := &Elector{db: db, cfg: cfg, always: sqldb.DialectOf(db) != sqldb.Postgres}
	if e.always {
		return e, nil
	}
	// Replicas starting together may race to make the table: the
	// loser's error is the winner's success.
	if _, err := db.ExecContext(ctx, schema); err != nil && !sqldb.IsUnique(err) {
		return nil, fmt.Errorf("leader: %w", err)
	}
	e.try(ctx)
	return e, nil
}

// Leading reports whether this replica holds the lease now, and its epoch.
func (e *Elector) Leading() (epoch int64, ok bool) {
	if e.always {
		return 0, true
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.validUntil.IsZero() || !time.Now().Before(e.validUntil) {
		return 0, false
	}
	return e.epoch, true
}

// Fence returns nil only while this replica holds the lease, by its own
// clock and by the database's row: call it before every step that
// changes what the lease guards.
func (e *Elector) Fence(ctx context.Context) error {
	if e.always {
		return nil
	}
	epoch, ok := e.Leading()
	if !ok {
		return ErrNotLeader
	}
	var held bool
	err := e.db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM leases WHERE name = ? AND holder = ? AND epoch = ? AND expires > clock_timestamp())`,
		e.cfg.Name, e.cfg.Self, epoch).Scan(&held)
	if err != nil {
		return fmt.Errorf("leader: check the lease: %w", err)
	}
	if !held {
		return ErrNotLeader
	}
	return nil
}

// Run keeps the lease — renewing it while held, taking it when it is
// free — until ctx ends; then it gives it up, so that another replica
// takes over at once.
func (e *Elector) Run(ctx context.Context) {
	if e.always {
		return
	}
	for {
		wait := e.cfg.TTL / 6 // a follower's look at the lease
		if _, ok := e.Leading(); ok {
			wait = e.cfg.TTL / 3
		}
		select {
		case <-ctx.Done():
			e.release(context.WithoutCancel(ctx))
			return
		case <-time.After(wait):
		}
		e.try(ctx)
	}
}

// try renews the lease when held, takes it when free.
func (e *Elector) try(ctx context.Context) {
	e.mu.Lock()
	epoch, was := e.epoch, !e.validUntil.IsZero()
	e.mu.Unlock()
	sent := time.Now()
	secs := e.cfg.TTL.Seconds()
	var got int64
	var err error
	if was {
		err = e.db.QueryRowContext(ctx, `UPDATE leases SET expires = clock_timestamp() + make_interval(secs => ?)
			WHERE name = ? AND holder = ? AND epoch = ? AND expires > clock_timestamp() RETURNING epoch`,
			secs, e.cfg.Name, e.cfg.Self, epoch).Scan(&got)
	} else {
		err = e.db.QueryRowContext(ctx, `INSERT INTO leases (name, holder, epoch, expires) VALUES (?, ?, 1, clock_timestamp() + make_interval(secs => ?))
			ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, epoch = leases.epoch + 1, expires = excluded.expires
			WHERE leases.expires <= clock_timestamp() RETURNING epoch`,
			e.cfg.Name, e.cfg.Self, secs).Scan(&got)
	}
	switch {
	case err == nil:
		e.set(got, sent.Add(e.cfg.TTL-margin))
	case errors.Is(err, sql.ErrNoRows):
		e.set(0, time.Time{}) // held by another, or lost
	default:
		// The database is out of reach: a held lease stays valid until
		// its time is up, and Leading says when it is.
		e.cfg.Logger.Warn("leader: cannot reach the lease", "lease", e.cfg.Name, "err", err)
		if _, ok := e.Leading(); !ok {
			e.set(0, time.Time{})
		}
	}
}

func (e *Elector) set(epoch int64, validUntil time.Time) {
	e.mu.Lock()
	was := !e.validUntil.IsZero()
	e.epoch, e.validUntil = epoch, validUntil
	now := !validUntil.IsZero()
	e.mu.Unlock()
	if was != now {
		if now {
			e.cfg.Logger.Info("leader: this replica leads", "lease", e.cfg.Name, "epoch", epoch)
		} else {
			e.cfg.Logger.Info("leader: this replica follows", "lease", e.cfg.Name)
		}
		if e.cfg.OnChange != nil {
			e.cfg.OnChange(now)
		}
	}
}

// release gives the lease up, if held: its expiry is now.
func (e *Elector) release(ctx context.Context) {
	e.mu.Lock()
	epoch, held := e.epoch, !e.validUntil.IsZero()
	e.mu.Unlock()
	if !held {
		return
	}
	e.set(0, time.Time{})
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := e.db.ExecContext(ctx, `UPDATE leases SET expires = clock_timestamp() WHERE name = ? AND holder = ? AND epoch = ?`,
		e.cfg.Name, e.cfg.Self, epoch); err != nil {
		e.cfg.Logger.Warn("leader: give up the lease", "lease", e.cfg.Name, "err", err)
	}
}
