package session

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/sqldb/sqldbtest"
)

type limEnv struct {
	t    *testing.T
	path string
	db   *sql.DB
	clk  *clock
	cfg  LimiterConfig
	l    *Limiter
	// sqlite keeps the database an SQLite file whatever the backend the
	// tests run on: the databases of releases before PostgreSQL.
	sqlite bool
}

var testNameKey = []byte("0123456789abcdef0123456789abcdef")

func newLimEnv(t *testing.T, cfg LimiterConfig) *limEnv {
	t.Helper()
	e := &limEnv{t: t, path: filepath.Join(t.TempDir(), "state.db"), clk: newClock()}
	cfg.Now = e.clk.Now
	if cfg.NameKey == nil {
		cfg.NameKey = testNameKey
	}
	e.cfg = cfg
	e.db = openDB(t, e.path, 1)
	e.open()
	return e
}

func (e *limEnv) open() {
	e.t.Helper()
	l, err := NewLimiter(context.Background(), e.db, e.cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	e.l = l
}

// restart closes the database and opens it and a new Limiter again.
func (e *limEnv) restart() {
	e.t.Helper()
	e.db.Close()
	if e.sqlite {
		e.db = openSQLite(e.t, e.path)
	} else {
		e.db = openDB(e.t, e.path, 1)
	}
	e.open()
}

var (
	ip1 = netip.MustParseAddr("192.0.2.1")
	ip2 = netip.MustParseAddr("192.0.2.2")
)

// src returns a distinct source address per i.
func src(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)}) }

// admit expects the attempt to be admitted.
func (e *limEnv) admit(account string, ip netip.Addr) {
	e.t.Helper()
	if err := e.l.Admit(context.Background(), account, ip); err != nil {
		e.t.Fatalf("Admit(%s, %s): %v", account, ip, err)
	}
}

// refused expects a refusal for reason and returns how long it says to wait.
func (e *limEnv) refused(account string, ip netip.Addr, reason error) time.Duration {
	e.t.Helper()
	err := e.l.Admit(context.Background(), account, ip)
	var le *LimitError
	if !errors.As(err, &le) || !errors.Is(err, reason) {
		e.t.Fatalf("Admit(%s, %s): err = %v, want %v", account, ip, err, reason)
	}
	return le.RetryAfter
}

func (e *limEnv) fail(account string, ip netip.Addr, n int) {
	e.t.Helper()
	for range n {
		e.admit(account, ip)
	}
}

func (e *limEnv) succeeded(account string, ip netip.Addr) {
	e.t.Helper()
	if err := e.l.Succeeded(context.Background(), account, ip); err != nil {
		e.t.Fatal(err)
	}
}

// generous keeps the address and account-wide limits out of the way of
// the per-source tests.
var generous = LimiterConfig{IPBurst: 1000, AccountBurst: 1000}

func TestLockoutEscalation(t *testing.T) {
	e := newLimEnv(t, generous)
	for i, want := range []time.Duration{1, 2, 4, 8, 16, 32, 60, 60} {
		want *= time.Minute
		e.fail("alice", ip1, DefaultMaxFailures)
		if got := e.refused("alice", ip1, ErrLocked); got != want {
			t.Fatalf("lock %d: retry after %v, want %v", i+1, got, want)
		}
		// Attempts during a lock neither count nor extend it.
		e.clk.Advance(want - time.Millisecond)
		if got := e.refused("alice", ip1, ErrLocked); got != time.Millisecond {
			t.Fatalf("lock %d near its end: retry after %v, want 1ms", i+1, got)
		}
		e.clk.Advance(time.Millisecond)
	}
	e.admit("bob", ip1) // other accounts are not affected
}

// TestLockoutIsPerSource: failures from one source lock that source out
// of the account, not the account: another source is admitted, and a
// success there lifts nothing of the first one's lock.
func TestLockoutIsPerSource(t *testing.T) {
	e := newLimEnv(t, generous)
	e.fail("alice", ip1, DefaultMaxFailures)
	e.refused("alice", ip1, ErrLocked)
	e.admit("alice", ip2)
	e.succeeded("alice", ip2)
	e.refused("alice", ip1, ErrLocked)
	// The same holds across a restart.
	e.restart()
	e.refused("alice", ip1, ErrLocked)
	e.admit("alice", ip2)
}

func TestLockoutResetOnSuccess(t *testing.T) {
	e := newLimEnv(t, generous)
	e.fail("alice", ip1, DefaultMaxFailures-1)
	e.succeeded("alice", ip1)
	e.fail("alice", ip1, DefaultMaxFailures-1)
	e.admit("alice", ip1) // the 5th attempt is admitted, and locks if it fails
	e.succeeded("alice", ip1)
	e.admit("alice", ip1) // it did not: no lock

	// After a success escalation starts over.
	e.fail("alice", ip1, DefaultMaxFailures-1)
	if got := e.refused("alice", ip1, ErrLocked); got != DefaultLockFor {
		t.Errorf("first lock after a success: %v, want %v", got, DefaultLockFor)
	}
}

func TestLockoutForgottenAfterQuiet(t *testing.T) {
	e := newLimEnv(t, generous)
	ctx := context.Background()
	e.fail("alice", ip1, DefaultMaxFailures)
	e.clk.Advance(DefaultLockFor)
	e.fail("alice", ip1, DefaultMaxFailures)
	if got := e.refused("alice", ip1, ErrLocked); got != 2*DefaultLockFor {
		t.Fatalf("second lock %v, want %v", got, 2*DefaultLockFor)
	}
	e.clk.Advance(DefaultResetAfter)
	if err := e.l.Maintain(ctx); err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"session_lockouts", "session_login_accounts"} {
		var n int
		if err := e.db.QueryRow(`SELECT COUNT(*) FROM ` + table).Scan(&n); err != nil || n != 0 {
			t.Errorf("%d rows in %s after the reset window (%v), want 0", n, table, err)
		}
	}
	e.fail("alice", ip1, DefaultMaxFailures)
	if got := e.refused("alice", ip1, ErrLocked); got != DefaultLockFor {
		t.Errorf("lock after a quiet day: %v, want %v", got, DefaultLockFor)
	}
}

func TestLockoutSurvivesRestart(t *testing.T) {
	e := newLimEnv(t, generous)
	e.fail("alice", ip1, DefaultMaxFailures)
	e.clk.Advance(20 * time.Second)
	e.restart()
	if got := e.refused("alice", ip1, ErrLocked); got != DefaultLockFor-20*time.Second {
		t.Errorf("after restart: retry after %v, want %v", got, DefaultLockFor-20*time.Second)
	}
}

// TestForgive: an attempt that proved the password but lacked the code is
// uncounted — the source stays clean, and its lock, if that attempt set
// it, is lifted — while guesses of the code still count.
func TestForgive(t *testing.T) {
	e := newLimEnv(t, LimiterConfig{AccountBurst: 1, IPBurst: 1000})
	ctx := context.Background()
	// An attack spends alice's budget.
	e.admit("alice", src(0))
	e.refused("alice", src(0), ErrSlowed)
	// The owner: the password alone, then with the code. Forgiven, the
	// first step leaves the source clean, so the second is admitted.
	e.admit("alice", ip1)
	if err := e.l.Forgive(ctx, "alice", ip1); err != nil {
		t.Fatal(err)
	}
	e.admit("alice", ip1)
	e.succeeded("alice", ip1)

	// Code guesses count; forgiving the attempt that locked lifts the
	// lock, and only that attempt is forgiven.
	e = newLimEnv(t, generous)
	e.fail("bob", ip1, DefaultMaxFailures)
	e.refused("bob", ip1, ErrLocked)
	if err := e.l.Forgive(ctx, "bob", ip1); err != nil {
		t.Fatal(err)
	}
	e.admit("bob", ip1) // the fifth failure again, and it locks again
	e.refused("bob", ip1, ErrLocked)
	// Forgiving what was never counted does nothing.
	if err := e.l.Forgive(ctx, "carol", ip1); err != nil {
		t.Fatal(err)
	}
}

// TestOwnerNotLockedOut: however many sources guess at an account, each
// is locked out or slowed, the guesses checked stay few, and the owner
// from a source without failures is admitted at the first try.
func TestOwnerNotLockedOut(t *testing.T) {
	e := newLimEnv(t, LimiterConfig{})
	const sources, tries = 200, 10
	admitted := 0
	for i := range sources {
		for range tries {
			err := e.l.Admit(context.Background(), "admin", src(i))
			var le *LimitError
			switch {
			case err == nil:
				admitted++
			case errors.As(err, &le) && (errors.Is(err, ErrLocked) || errors.Is(err, ErrSlowed)):
				if le.RetryAfter <= 0 {
					t.Fatalf("refusal without a wait: %v", err)
				}
			default:
				t.Fatalf("source %d: %v", i, err)
			}
		}
	}
	// One guess per fresh source, and the account's burst besides.
	if max := sources + DefaultAccountBurst; admitted > max {
		t.Errorf("%d guesses admitted from %d sources, want at most %d", admitted, sources, max)
	}
	e.admit("admin", ip1) // the owner
	e.succeeded("admin", ip1)
	// While the attack goes on, a source that failed waits for the shared
	// budget — at most one interval, however long the attack.
	if got := e.refused("admin", src(sources-1), ErrSlowed); got <= 0 || got > DefaultAccountEvery {
		t.Errorf("a failed source waits %v, want (0, %v]", got, DefaultAccountEvery)
	}
	e.restart()
	e.refused("admin", src(sources-2), ErrSlowed)
	e.refused("admin", src(0), ErrLocked) // the first sources guessed until locked
	e.admit("admin", ip2)
}

// TestAccountBudget: sources that have failed share the account's budget
// of AccountBurst attempts, refilled one every AccountEvery; sources that
// have not spend it but are never refused by it.
func TestAccountBudget(t *testing.T) {
	e := newLimEnv(t, LimiterConfig{AccountBurst: 3, AccountEvery: time.Minute, IPBurst: 1000})
	// Three sources fail once each: clean, admitted, and they spend the
	// whole budget.
	for i := range 3 {
		e.admit("alice", src(i))
	}
	// Their second attempts wait for the budget.
	if got := e.refused("alice", src(0), ErrSlowed); got != time.Minute {
		t.Errorf("retry after %v, want 1m", got)
	}
	e.clk.Advance(time.Minute)
	e.admit("alice", src(1))
	e.refused("alice", src(2), ErrSlowed)
	// A clean source is admitted on an empty budget, and however many do
	// so, the budget never drains beyond empty: a source that failed
	// waits at most one interval.
	for i := range 50 {
		e.admit("alice", src(100+i))
	}
	if got := e.refused("alice", src(2), ErrSlowed); got != time.Minute {
		t.Errorf("after a flood of clean sources: retry after %v, want 1m", got)
	}
	e.admit("bob", src(2)) // other accounts have their own budget
	// A slowed attempt is not counted: it neither locks nor escalates.
	for range 10 {
		e.refused("alice", src(2), ErrSlowed)
	}
	e.clk.Advance(3 * time.Minute)
	e.admit("alice", src(2))
	e.admit("alice", src(2))
	e.admit("alice", src(2))
	e.refused("alice", src(2), ErrSlowed)
}

// TestNamesNotStored: the name as typed is nowhere in the database; rows
// carry its keyed hash, whose first digits Tag shows.
func TestNamesNotStored(t *testing.T) {
	e := newLimEnv(t, generous)
	typed := "correct horse battery staple 42" // a password in the name field
	e.fail(typed, ip1, DefaultMaxFailures)
	e.refused(typed, ip1, ErrLocked)
	var acct string
	if err := e.db.QueryRow(`SELECT account FROM session_lockouts`).Scan(&acct); err != nil {
		t.Fatal(err)
	}
	tag := e.l.Tag(typed)
	if len(acct) != 64 || !strings.HasPrefix(acct, tag) || len(tag) != 16 || strings.Contains(acct, typed) {
		t.Errorf("row account %q, tag %q", acct, tag)
	}
	// Another key knows the name by another hash.
	other, err := NewLimiter(context.Background(), e.db, LimiterConfig{NameKey: []byte("another key, 16+ bytes"), Now: e.clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	if other.Tag(typed) == tag {
		t.Error("two keys give the same tag")
	}
	if sqldbtest.Postgres() {
		assertNotInRows(t, e.db, typed)
		return
	}
	e.db.Close()
	assertNotInFiles(t, filepath.Dir(e.path), typed)
}

// assertNotInRows fails if any row of any table of a PostgreSQL
// database contains s.
func assertNotInRows(t *testing.T, db *sql.DB, s string) {
	t.Helper()
	rows, err := db.Query(`SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()`)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, name)
	}
	rows.Close()
	if len(tables) == 0 {
		t.Fatal("no tables")
	}
	for _, table := range tables {
		var n int
		if err := db.QueryRow(`SELECT count(*) FROM `+table+` t WHERE position(? IN CAST(t AS TEXT)) > 0`, s).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			t.Errorf("%d rows of %s contain %q", n, table, s)
		}
	}
}

// assertNotInFiles fails if any file in dir (the database, its WAL)
// contains s.
func assertNotInFiles(t *testing.T, dir, s string) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("files in %s: %v %v", dir, files, err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(s)) {
			t.Errorf("%s contains %q", filepath.Base(f), s)
		}
	}
}

// lockoutsV1 is the DDL of session_lockouts before it was kept per source.
const lockoutsV1 = `CREATE TABLE IF NOT EXISTS session_lockouts (
	account      TEXT PRIMARY KEY,
	failures     INTEGER NOT NULL,
	last_attempt INTEGER NOT NULL,
	locked_until INTEGER NOT NULL   -- 0 when not locked
);`

// TestMigrateLockoutsV1: a database whose session_lockouts is keyed by
// the name as typed is upgraded on open: the old rows are gone — from the
// file too, since they hold names in clear — and an account that was
// under attack stays slowed, while clean sources get in.
func TestMigrateLockoutsV1(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.db")
	clk := newClock()
	now := clk.Now()
	db := openSQLite(t, path)
	if _, err := db.Exec(lockoutsV1); err != nil {
		t.Fatal(err)
	}
	typed := "Tr0ub4dor&3-typed-as-a-name"
	for _, r := range []struct {
		account         string
		failures        int
		last, lockedTil time.Time
	}{
		{"admin", 10, now.Add(-time.Minute), now.Add(time.Minute)}, // locked
		{typed, 3, now.Add(-time.Hour), time.Time{}},
		{"bob", 4, now.Add(-2 * DefaultResetAfter), time.Time{}}, // long forgotten
	} {
		until := int64(0)
		if !r.lockedTil.IsZero() {
			until = ms(r.lockedTil)
		}
		if _, err := db.Exec(`INSERT INTO session_lockouts (account, failures, last_attempt, locked_until) VALUES (?, ?, ?, ?)`,
			r.account, r.failures, ms(r.last), until); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()

	e := &limEnv{t: t, path: path, clk: clk, sqlite: true, cfg: LimiterConfig{NameKey: testNameKey, AccountBurst: 10, AccountEvery: time.Minute, Now: clk.Now}}
	e.db = openSQLite(t, path)
	e.open()
	var n int
	if err := e.db.QueryRow(`SELECT COUNT(*) FROM sqlite_schema WHERE name = 'session_lockouts_v1'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("old table left (%d, %v)", n, err)
	}
	// Each recent failure spent one of the account's budget (of ten);
	// bob's were long forgotten.
	spent := map[string]time.Duration{}
	rows, err := e.db.Query(`SELECT account, full_at FROM session_login_accounts`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var acct string
		var fullAt int64
		if err := rows.Scan(&acct, &fullAt); err != nil {
			t.Fatal(err)
		}
		spent[acct] = fromMS(fullAt).Sub(now)
	}
	rows.Close()
	want := map[string]time.Duration{e.l.account("admin"): 10 * time.Minute, e.l.account(typed): 3 * time.Minute}
	if fmt.Sprint(spent) != fmt.Sprint(want) {
		t.Errorf("budgets spent %v, want %v", spent, want)
	}
	// So admin is slowed for a source once it fails; clean sources are
	// admitted.
	e.admit("admin", ip1)
	e.refused("admin", ip1, ErrSlowed)
	e.admit("admin", ip2)

	e.restart() // idempotent
	e.refused("admin", ip1, ErrSlowed)
	e.db.Close()
	assertNotInFiles(t, dir, typed)
}

func TestIPBucket(t *testing.T) {
	e := newLimEnv(t, LimiterConfig{IPBurst: 3, IPEvery: 10 * time.Second})
	for i := range 3 {
		e.admit(fmt.Sprintf("user%d", i), ip1) // guesses across accounts
	}
	if got := e.refused("user9", ip1, ErrThrottled); got != 10*time.Second {
		t.Errorf("retry after %v, want 10s", got)
	}
	e.admit("user9", ip2)
	e.clk.Advance(10 * time.Second)
	e.admit("user9", ip1)
	e.refused("user10", ip1, ErrThrottled)
}

func TestIPv6SharesPrefix(t *testing.T) {
	e := newLimEnv(t, LimiterConfig{IPBurst: 1})
	e.admit("a", netip.MustParseAddr("2001:db8::1"))
	e.refused("b", netip.MustParseAddr("2001:db8::ffff:2"), ErrThrottled) // same /64
	e.admit("c", netip.MustParseAddr("2001:db8:0:1::1"))                  // next /64
	e.admit("d", ip1)
	e.refused("e", netip.MustParseAddr("::ffff:192.0.2.1"), ErrThrottled) // ip1, IPv4-mapped
	e.admit("f", netip.Addr{})
	e.refused("g", netip.Addr{}, ErrThrottled)
}

// TestIPLimiterBound: at most MaxIPs sources are tracked. When all are in
// use, a new source is still admitted — refusing it would let anyone with
// enough addresses lock every user out — and the fullest bucket is
// forgotten to make room.
func TestIPLimiterBound(t *testing.T) {
	const max = 4
	e := newLimEnv(t, LimiterConfig{IPBurst: 2, IPEvery: time.Minute, MaxIPs: max, MaxFailures: 1000, AccountBurst: 1000})
	for i := range max {
		e.admit(fmt.Sprintf("user%d", i), src(i))
	}
	e.admit("user3", src(3))
	e.refused("alice", src(3), ErrThrottled)
	// Every tracked source is still within its limit: src(0..2) hold a
	// token, src(3) none. A new one is admitted all the same.
	e.admit("alice", src(max))
	if len(e.l.ips) != max {
		t.Fatalf("%d sources tracked, bound is %d", len(e.l.ips), max)
	}
	if _, ok := e.l.ips[ipKey(src(3))]; !ok {
		t.Error("the emptiest bucket was forgotten rather than a fuller one")
	}
	e.refused("alice", src(3), ErrThrottled)
	for i := range 3 * max {
		e.admit("alice", src(100+i))
		if len(e.l.ips) > max {
			t.Fatalf("%d sources tracked, bound is %d", len(e.l.ips), max)
		}
	}
	e.clk.Advance(2 * time.Minute)
	if err := e.l.Maintain(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(e.l.ips) != 0 {
		t.Errorf("%d refilled sources still tracked after Maintain", len(e.l.ips))
	}
}

func TestLimiterConfig(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "state.db"), 1)
	ctx := context.Background()
	for name, cfg := range map[string]LimiterConfig{
		"no name key":       {},
		"short name key":    {NameKey: []byte("short")},
		"negative failures": {NameKey: testNameKey, MaxFailures: -1},
		"negative budget":   {NameKey: testNameKey, AccountEvery: -1},
	} {
		if _, err := NewLimiter(ctx, db, cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	l, err := NewLimiter(ctx, db, LimiterConfig{NameKey: testNameKey})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Admit(ctx, "", ip1); err == nil {
		t.Error("empty account admitted")
	}
}

// TestSourceBudgetShared: replicas on one PostgreSQL database share each
// source's budget: guesses spread over two Limiters get no more than one
// would give.
func TestSourceBudgetShared(t *testing.T) {
	if !sqldbtest.Postgres() {
		t.Skip("one process per SQLite file keeps the budget in memory: set " + sqldbtest.Env + " (CI does)")
	}
	e := newLimEnv(t, LimiterConfig{IPBurst: 3, IPEvery: 10 * time.Second})
	other := &limEnv{t: t, path: e.path, clk: e.clk, cfg: e.cfg, db: openDB(t, e.path, 1)}
	other.open()
	e.admit("user0", ip1)
	other.admit("user1", ip1)
	e.admit("user2", ip1)
	if got := other.refused("user3", ip1, ErrThrottled); got != 10*time.Second {
		t.Errorf("the other replica says retry after %v, want 10s", got)
	}
	other.admit("user3", ip2)
}
