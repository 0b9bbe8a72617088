package session

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"testing"
	"time"
)

type limEnv struct {
	t    *testing.T
	path string
	db   *sql.DB
	clk  *clock
	cfg  LimiterConfig
	l    *Limiter
}

func newLimEnv(t *testing.T, cfg LimiterConfig) *limEnv {
	t.Helper()
	e := &limEnv{t: t, path: filepath.Join(t.TempDir(), "state.db"), clk: newClock()}
	cfg.Now = e.clk.Now
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

var ip1 = netip.MustParseAddr("192.0.2.1")

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

func (e *limEnv) fail(account string, n int) {
	e.t.Helper()
	for range n {
		e.admit(account, ip1)
	}
}

// generousIPs keeps the address limit out of the way of account tests.
var generousIPs = LimiterConfig{IPBurst: 1000}

func TestLockoutEscalation(t *testing.T) {
	e := newLimEnv(t, generousIPs)
	for i, want := range []time.Duration{1, 2, 4, 8, 16, 32, 60, 60} {
		want *= time.Minute
		e.fail("alice", DefaultMaxFailures)
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

func TestLockoutResetOnSuccess(t *testing.T) {
	e := newLimEnv(t, generousIPs)
	ctx := context.Background()
	e.fail("alice", DefaultMaxFailures-1)
	if err := e.l.Succeeded(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	e.fail("alice", DefaultMaxFailures-1)
	e.admit("alice", ip1) // the 5th attempt is admitted, and locks if it fails
	if err := e.l.Succeeded(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	e.admit("alice", ip1) // it did not: no lock

	// After a success escalation starts over.
	e.fail("alice", DefaultMaxFailures-1)
	if got := e.refused("alice", ip1, ErrLocked); got != DefaultLockFor {
		t.Errorf("first lock after a success: %v, want %v", got, DefaultLockFor)
	}
}

func TestLockoutForgottenAfterQuiet(t *testing.T) {
	e := newLimEnv(t, generousIPs)
	ctx := context.Background()
	e.fail("alice", DefaultMaxFailures)
	e.clk.Advance(DefaultLockFor)
	e.fail("alice", DefaultMaxFailures)
	if got := e.refused("alice", ip1, ErrLocked); got != 2*DefaultLockFor {
		t.Fatalf("second lock %v, want %v", got, 2*DefaultLockFor)
	}
	e.clk.Advance(DefaultResetAfter)
	if err := e.l.Maintain(ctx); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := e.db.QueryRow(`SELECT COUNT(*) FROM session_lockouts`).Scan(&n); err != nil || n != 0 {
		t.Errorf("%d lockout rows after the reset window (%v), want 0", n, err)
	}
	e.fail("alice", DefaultMaxFailures)
	if got := e.refused("alice", ip1, ErrLocked); got != DefaultLockFor {
		t.Errorf("lock after a quiet day: %v, want %v", got, DefaultLockFor)
	}
}

func TestLockoutSurvivesRestart(t *testing.T) {
	e := newLimEnv(t, generousIPs)
	e.fail("alice", DefaultMaxFailures)
	e.clk.Advance(20 * time.Second)
	e.db.Close()
	e.db = openDB(t, e.path, 1)
	e.open()
	if got := e.refused("alice", ip1, ErrLocked); got != DefaultLockFor-20*time.Second {
		t.Errorf("after restart: retry after %v, want %v", got, DefaultLockFor-20*time.Second)
	}
}

func TestIPBucket(t *testing.T) {
	e := newLimEnv(t, LimiterConfig{IPBurst: 3, IPEvery: 10 * time.Second})
	for i := range 3 {
		e.admit(fmt.Sprintf("user%d", i), ip1) // guesses across accounts
	}
	if got := e.refused("user9", ip1, ErrThrottled); got != 10*time.Second {
		t.Errorf("retry after %v, want 10s", got)
	}
	e.admit("user9", netip.MustParseAddr("192.0.2.2"))
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

func TestIPLimiterBound(t *testing.T) {
	const max = 4
	e := newLimEnv(t, LimiterConfig{IPBurst: 1, IPEvery: time.Minute, MaxIPs: max, MaxFailures: 1000})
	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}) }
	for i := range max {
		e.admit("alice", addr(i))
	}
	// Every tracked source is still within its limit: a new one is refused
	// rather than one of them forgotten.
	if got := e.refused("alice", addr(max), ErrThrottled); got != time.Minute {
		t.Errorf("retry after %v, want 1m", got)
	}
	e.refused("alice", addr(0), ErrThrottled)
	if len(e.l.ips) != max {
		t.Fatalf("%d sources tracked, want %d", len(e.l.ips), max)
	}
	e.clk.Advance(time.Minute)
	// Refilled buckets are dropped to make room.
	for i := range max {
		e.admit("alice", addr(max+i))
		if len(e.l.ips) > max {
			t.Fatalf("%d sources tracked, bound is %d", len(e.l.ips), max)
		}
	}
	e.refused("alice", addr(2*max), ErrThrottled)
	e.clk.Advance(time.Minute)
	if err := e.l.Maintain(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(e.l.ips) != 0 {
		t.Errorf("%d refilled sources still tracked after Maintain", len(e.l.ips))
	}
}

func TestLimiterConfig(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "state.db"), 1)
	if _, err := NewLimiter(context.Background(), db, LimiterConfig{MaxFailures: -1}); err == nil {
		t.Error("negative MaxFailures accepted")
	}
	l, err := NewLimiter(context.Background(), db, LimiterConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Admit(context.Background(), "", ip1); err == nil {
		t.Error("empty account admitted")
	}
}
