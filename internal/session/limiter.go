package session

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/holdfast/holdfast/internal/store"
)

// Defaults for the zero fields of LimiterConfig.
const (
	DefaultMaxFailures = 5
	DefaultLockFor     = time.Minute
	DefaultMaxLockFor  = time.Hour
	DefaultResetAfter  = 24 * time.Hour
	DefaultIPBurst     = 30
	DefaultIPEvery     = 10 * time.Second
	DefaultMaxIPs      = 10_000
)

var (
	// ErrLocked means the account is locked after repeated failures.
	ErrLocked = errors.New("account temporarily locked after failed logins")
	// ErrThrottled means the source address has made too many attempts.
	ErrThrottled = errors.New("too many login attempts from this address")
)

// LimitError is Admit's refusal. errors.Is(err, ErrLocked) or
// errors.Is(err, ErrThrottled) tells which limit was hit; RetryAfter is
// how long until an attempt may be admitted (round it up for an HTTP
// Retry-After header).
type LimitError struct {
	Err        error // ErrLocked or ErrThrottled
	RetryAfter time.Duration
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("%v: retry in %v", e.Err, (e.RetryAfter + time.Second - 1).Truncate(time.Second))
}

func (e *LimitError) Unwrap() error { return e.Err }

// LimiterConfig tunes a Limiter; zero fields take the defaults.
type LimiterConfig struct {
	// MaxFailures consecutive failures lock an account; each further
	// MaxFailures lock it again, for twice as long as the time before.
	MaxFailures int
	// LockFor is the first lock's length; MaxLockFor caps the doubling.
	LockFor, MaxLockFor time.Duration
	// ResetAfter forgets an account's failures when it has seen no
	// attempt for this long, so that escalation does not last forever.
	ResetAfter time.Duration
	// IPBurst attempts may come from one source at once; after that, one
	// more every IPEvery.
	IPBurst int
	IPEvery time.Duration
	// MaxIPs bounds how many sources are tracked.
	MaxIPs int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

func (c *LimiterConfig) setDefaults() error {
	if c.MaxFailures < 0 || c.LockFor < 0 || c.MaxLockFor < 0 || c.ResetAfter < 0 || c.IPBurst < 0 || c.IPEvery < 0 || c.MaxIPs < 0 {
		return errors.New("session: LimiterConfig fields must not be negative")
	}
	setInt := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	setDur := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	setInt(&c.MaxFailures, DefaultMaxFailures)
	setDur(&c.LockFor, DefaultLockFor)
	setDur(&c.MaxLockFor, DefaultMaxLockFor)
	setDur(&c.ResetAfter, DefaultResetAfter)
	setInt(&c.IPBurst, DefaultIPBurst)
	setDur(&c.IPEvery, DefaultIPEvery)
	setInt(&c.MaxIPs, DefaultMaxIPs)
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Limiter throttles login attempts by account and by source address.
//
// Accounts: every admitted attempt counts as a failure until Succeeded
// says otherwise. Counting up front means that concurrent guesses cannot
// all pass before the first of them is recorded, and that a handler which
// returns early on an error still counts the attempt. The MaxFailures-th
// consecutive failure locks the account for LockFor, the next
// MaxFailures for twice that, and so on up to MaxLockFor. Lockouts are
// kept in the database and survive restarts. An attacker can lock a
// victim out this way; the cap bounds that, and the per-address limit
// slows it.
//
// Sources: each address (each /64 for IPv6, since one host commonly holds
// a whole /64) has a token bucket, kept in memory, bounding guesses across
// accounts. At most MaxIPs are tracked. A bucket that has refilled is the
// same as none and is dropped; when MaxIPs buckets are all still in use,
// attempts from new sources are refused rather than an old bucket
// forgotten, since forgetting would hand its owner fresh guesses.
//
// Safe for concurrent use.
type Limiter struct {
	db  *sql.DB
	cfg LimiterConfig

	mu  sync.Mutex
	ips map[netip.Prefix]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time // when tokens was computed
}

// NewLimiter returns a Limiter keeping account lockouts in db, creating
// its table if missing.
func NewLimiter(ctx context.Context, db *sql.DB, cfg LimiterConfig) (*Limiter, error) {
	if db == nil {
		return nil, errors.New("session: NewLimiter needs a database")
	}
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if err := Migrate(ctx, db); err != nil {
		return nil, err
	}
	return &Limiter{db: db, cfg: cfg, ips: map[netip.Prefix]*bucket{}}, nil
}

// Admit decides whether a login attempt for account (as the user typed
// it, canonicalized; known or not, so that the answer does not reveal
// which accounts exist) from ip may proceed to checking credentials. It
// returns a *LimitError if not. An admitted attempt counts as failed until
// Succeeded is called for the account.
//
// Errors never name the account: users type passwords into the name
// field often enough that names from failed logins are not safe to log.
func (l *Limiter) Admit(ctx context.Context, account string, ip netip.Addr) error {
	if account == "" {
		return errors.New("session: Admit needs an account")
	}
	now := l.cfg.Now()
	if wait, ok := l.takeIP(ip, now); !ok {
		return &LimitError{Err: ErrThrottled, RetryAfter: wait}
	}
	var lockedUntil time.Time
	err := store.Tx(ctx, l.db, func(tx *sql.Tx) error {
		// A write first, so that the transaction holds the write lock
		// before it reads: no other connection can count an attempt
		// between the read and the update below.
		if _, err := tx.ExecContext(ctx, `
			INSERT INTO session_lockouts (account, failures, last_attempt, locked_until) VALUES (?, 0, ?, 0)
			ON CONFLICT (account) DO NOTHING`, account, ms(now)); err != nil {
			return err
		}
		var failures, last, until int64
		if err := tx.QueryRowContext(ctx, `SELECT failures, last_attempt, locked_until FROM session_lockouts WHERE account = ?`,
			account).Scan(&failures, &last, &until); err != nil {
			return err
		}
		if now.Before(fromMS(until)) {
			lockedUntil = fromMS(until) // attempts during a lock are not counted: the lock is not extended
			return nil
		}
		if now.Sub(fromMS(last)) >= l.cfg.ResetAfter {
			failures = 0
		}
		failures++
		until = 0
		if n := int64(l.cfg.MaxFailures); failures%n == 0 {
			until = ms(now.Add(l.lockFor(failures / n)))
		}
		_, err := tx.ExecContext(ctx, `UPDATE session_lockouts SET failures = ?, last_attempt = ?, locked_until = ? WHERE account = ?`,
			failures, ms(now), until, account)
		return err
	})
	if err != nil {
		return fmt.Errorf("count login attempt: %w", err)
	}
	if !lockedUntil.IsZero() {
		return &LimitError{Err: ErrLocked, RetryAfter: lockedUntil.Sub(now)}
	}
	return nil
}

// lockFor is the length of the n-th lock (n >= 1).
func (l *Limiter) lockFor(n int64) time.Duration {
	d := min(l.cfg.LockFor, l.cfg.MaxLockFor)
	for i := int64(1); i < n && d < l.cfg.MaxLockFor; i++ {
		d = min(2*d, l.cfg.MaxLockFor)
	}
	return d
}

// Succeeded records that the credentials of the account's last admitted
// attempt were right: its failures are forgotten and any lock lifted.
func (l *Limiter) Succeeded(ctx context.Context, account string) error {
	if _, err := l.db.ExecContext(ctx, `DELETE FROM session_lockouts WHERE account = ?`, account); err != nil {
		return fmt.Errorf("record login success: %w", err)
	}
	return nil
}

// Maintain forgets accounts whose failures have reset and sources whose
// buckets have refilled. Call it every few minutes; nothing depends on it
// but the size of the table.
func (l *Limiter) Maintain(ctx context.Context) error {
	now := l.cfg.Now()
	if _, err := l.db.ExecContext(ctx, `DELETE FROM session_lockouts WHERE locked_until <= ? AND last_attempt <= ?`,
		ms(now), ms(now.Add(-l.cfg.ResetAfter))); err != nil {
		return fmt.Errorf("forget old login failures: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.dropFull(now)
	return nil
}

// ipKey groups addresses one client is likely to hold.
func ipKey(ip netip.Addr) netip.Prefix {
	ip = ip.Unmap()
	switch {
	case ip.Is4():
		return netip.PrefixFrom(ip, 32)
	case ip.Is6():
		p, _ := ip.WithZone("").Prefix(64) // cannot fail for /64 of an IPv6 address
		return p
	default:
		return netip.Prefix{} // no address: such attempts share one bucket
	}
}

// takeIP takes a token from ip's bucket, or says how long until one is
// there.
func (l *Limiter) takeIP(ip netip.Addr, now time.Time) (time.Duration, bool) {
	key := ipKey(ip)
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.ips[key]
	if !ok {
		if len(l.ips) >= l.cfg.MaxIPs {
			if soonest := l.dropFull(now); len(l.ips) >= l.cfg.MaxIPs {
				return soonest, false
			}
		}
		b = &bucket{tokens: float64(l.cfg.IPBurst), at: now}
		l.ips[key] = b
	}
	l.refill(b, now)
	if b.tokens < 1 {
		return time.Duration((1 - b.tokens) * float64(l.cfg.IPEvery)), false
	}
	b.tokens--
	return 0, true
}

func (l *Limiter) refill(b *bucket, now time.Time) {
	if el := now.Sub(b.at); el > 0 {
		b.tokens = min(float64(l.cfg.IPBurst), b.tokens+float64(el)/float64(l.cfg.IPEvery))
		b.at = now
	}
}

// dropFull drops refilled buckets and returns how long until the next one
// refills.
func (l *Limiter) dropFull(now time.Time) time.Duration {
	soonest := time.Duration(l.cfg.IPBurst) * l.cfg.IPEvery
	for k, b := range l.ips {
		l.refill(b, now)
		missing := float64(l.cfg.IPBurst) - b.tokens
		if missing <= 0 {
			delete(l.ips, k)
			continue
		}
		soonest = min(soonest, time.Duration(missing*float64(l.cfg.IPEvery)))
	}
	return soonest
}
