package leader_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/leader"
	"github.com/holdfast/holdfast/internal/sqldb/sqldbtest"
)

const ttl = 3 * time.Second

// replica is an Elector with its changes on a channel.
type replica struct {
	*leader.Elector
	changes chan bool
}

func newReplica(t *testing.T, dir, self string) *replica {
	t.Helper()
	db := sqldbtest.Open(t, filepath.Join(dir, "control.db"), "control")
	r := &replica{changes: make(chan bool, 16)}
	var err error
	r.Elector, err = leader.New(context.Background(), db, leader.Config{Name: "realizer", Self: self, TTL: ttl,
		OnChange: func(leading bool) { r.changes <- leading }})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// run keeps r's lease until the returned function is called, which
// gives it up.
func (r *replica) run() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	return func() { cancel(); <-done }
}

// becomes waits for r to lead (or follow), at most a lease and a look.
func (r *replica) becomes(t *testing.T, leading bool) {
	t.Helper()
	deadline := time.After(ttl + ttl/6 + 2*time.Second)
	for {
		select {
		case got := <-r.changes:
			if got == leading {
				return
			}
		case <-deadline:
			t.Fatalf("still not leading=%v", leading)
		}
	}
}

func needPostgres(t *testing.T) {
	if !sqldbtest.Postgres() {
		t.Skip("leases are PostgreSQL's: set " + sqldbtest.Env + " (CI does)")
	}
}

// TestOneLeaderAndTakeover: of two replicas one leads and only it passes
// the fence; when it gives the lease up (a graceful stop), the other
// leads at once, with a higher epoch.
func TestOneLeaderAndTakeover(t *testing.T) {
	needPostgres(t)
	dir := t.TempDir()
	a := newReplica(t, dir, "a")
	a.becomes(t, true)
	b := newReplica(t, dir, "b")
	ctx := context.Background()
	if err := a.Fence(ctx); err != nil {
		t.Errorf("the leader is fenced out: %v", err)
	}
	if err := b.Fence(ctx); !errors.Is(err, leader.ErrNotLeader) {
		t.Errorf("a follower passes the fence: %v", err)
	}
	epochA, _ := a.Leading()
	stopA, stopB := a.run(), b.run()
	defer stopB()
	stopA()
	b.becomes(t, true)
	epochB, ok := b.Leading()
	if !ok || epochB <= epochA {
		t.Errorf("the new leader's epoch %d (leading %v), the old one's %d: want higher", epochB, ok, epochA)
	}
	if _, ok := a.Leading(); ok {
		t.Error("the replica that gave the lease up still leads")
	}
}

// TestStaleLeaderIsFenced: a leader that stops renewing — a process
// stopped (SIGSTOP) or cut off — counts itself out before the database
// lets another replica in, and once another leads, it fails the fence
// even if it thought it still led.
func TestStaleLeaderIsFenced(t *testing.T) {
	needPostgres(t)
	dir := t.TempDir()
	a := newReplica(t, dir, "a") // leads, and never renews: it is "stopped"
	a.becomes(t, true)
	b := newReplica(t, dir, "b")
	defer b.run()()
	b.becomes(t, true)
	// a's own clock ended its lease before b could take it.
	select {
	case leading := <-a.changes:
		t.Errorf("a changed to leading=%v without running", leading)
	default:
	}
	if _, ok := a.Leading(); ok {
		t.Error("a stale leader still counts itself the leader")
	}
	if err := a.Fence(context.Background()); !errors.Is(err, leader.ErrNotLeader) {
		t.Errorf("a stale leader passes the fence: %v", err)
	}
	if err := b.Fence(context.Background()); err != nil {
		t.Errorf("the new leader is fenced out: %v", err)
	}
}

// TestSQLiteAlwaysLeads: one process per SQLite file, which leads.
func TestSQLiteAlwaysLeads(t *testing.T) {
	if sqldbtest.Postgres() {
		t.Skip("SQLite's case")
	}
	r := newReplica(t, t.TempDir(), "only")
	if _, ok := r.Leading(); !ok {
		t.Error("the only process does not lead")
	}
	if err := r.Fence(context.Background()); err != nil {
		t.Error(err)
	}
}
