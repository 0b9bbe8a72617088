package session

import (
	"context"
	"database/sql"
	"path/filepath"
	"sync"
	"testing"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/holdfast/holdfast/internal/auth"
	"github.com/holdfast/holdfast/internal/sqldb"
	"github.com/holdfast/holdfast/internal/sqldb/sqldbtest"
)

// clock is a test clock; tests advance it instead of sleeping.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// openDB opens path the way the control plane does (on the backend the
// tests run against: sqldbtest) but with a chosen number of connections:
// conns > 1 lets transactions of different goroutines race inside the
// database rather than queue in database/sql.
func openDB(t testing.TB, path string, conns int) *sql.DB {
	t.Helper()
	db := sqldbtest.Open(t, path, "control")
	db.SetMaxOpenConns(conns)
	return db
}

// openSQLite opens path as an SQLite file whatever the backend: the
// databases of releases before PostgreSQL was supported.
func openSQLite(t testing.TB, path string) *sql.DB {
	t.Helper()
	db, err := sqldb.Open(context.Background(), sqldb.In("", path, "control"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func testBox(t testing.TB, b byte) *auth.Box {
	t.Helper()
	key := make([]byte, auth.MasterKeyLen)
	for i := range key {
		key[i] = b
	}
	box, err := auth.NewBox(key)
	if err != nil {
		t.Fatal(err)
	}
	return box
}

const issuer = "https://holdfast.test"

// env is a Manager over a database file, with what it takes to reopen it.
type env struct {
	t    testing.TB
	path string
	db   *sql.DB
	box  *auth.Box
	clk  *clock
	cfg  Config
	m    *Manager
}

func newEnv(t testing.TB) *env {
	return newEnvConns(t, 1)
}

func newEnvConns(t testing.TB, conns int) *env {
	t.Helper()
	e := &env{t: t, path: filepath.Join(t.TempDir(), "state.db"), box: testBox(t, 1), clk: newClock()}
	e.cfg = Config{Issuer: issuer, Now: e.clk.Now}
	e.db = openDB(t, e.path, conns)
	e.m = e.open(e.box)
	return e
}

func (e *env) open(box *auth.Box) *Manager {
	e.t.Helper()
	m, err := New(context.Background(), e.db, box, e.cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	return m
}

// restart closes the database and opens it and a new Manager again, as a
// restart of the control plane would.
func (e *env) restart() {
	e.t.Helper()
	e.db.Close()
	e.db = openDB(e.t, e.path, 1)
	e.m = e.open(e.box)
}

func (e *env) login(user string, methods ...string) Tokens {
	e.t.Helper()
	if len(methods) == 0 {
		methods = []string{"pwd"}
	}
	tok, err := e.m.Login(context.Background(), user, methods)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

func (e *env) refresh(tok Tokens) Tokens {
	e.t.Helper()
	next, err := e.m.Refresh(context.Background(), str(tok.Refresh))
	if err != nil {
		e.t.Fatalf("refresh: %v", err)
	}
	return next
}

func (e *env) count(table string) int {
	e.t.Helper()
	var n int
	if err := e.db.QueryRow(`SELECT COUNT(*) FROM ` + table).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

func str(s auth.Secret) string { return string(s.Expose()) }
