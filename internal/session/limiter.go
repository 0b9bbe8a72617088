package session

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/holdfast/holdfast/internal/sqldb"
)

// Defaults for the zero fields of LimiterConfig.
const (
	DefaultMaxFailures  = 5
	DefaultLockFor      = time.Minute
	DefaultMaxLockFor   = time.Hour
	DefaultResetAfter   = 24 * time.Hour
	DefaultAccountBurst = 10
	DefaultAccountEvery = time.Minute
	DefaultIPBurst      = 30
	DefaultIPEvery      = 10 * time.Second
	DefaultMaxIPs       = 10_000
)

// MinNameKeyLen is the shortest LimiterConfig.NameKey accepted.
const MinNameKeyLen = 16

var (
	// ErrLocked means this source has failed too often for this account.
	ErrLocked = errors.New("too many failed logins for this account from this address")
	// ErrSlowed means the account has seen so many failures, from
	// everywhere, that sources which have failed for it must wait their
	// turn; a source without failures is not slowed.
	ErrSlowed = errors.New("too many failed logins for this account")
	// ErrThrottled means the source address has made too many attempts.
	ErrThrottled = errors.New("too many login attempts from this address")
)

// LimitError is Admit's refusal. errors.Is(err, ErrLocked), ErrSlowed or
// ErrThrottled tells which limit was hit; RetryAfter is how long until an
// attempt may be admitted (round it up for an HTTP Retry-After header).
type LimitError struct {
	Err        error // ErrLocked, ErrSlowed or ErrThrottled
	RetryAfter time.Duration
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("%v: retry in %v", e.Err, (e.RetryAfter + time.Second - 1).Truncate(time.Second))
}

func (e *LimitError) Unwrap() error { return e.Err }

// LimiterConfig tunes a Limiter. NameKey is required; zero fields of the
// rest take the defaults.
type LimiterConfig struct {
	// NameKey keys the HMAC under which account names are kept: the
	// database never holds a name as typed, since people type passwords
	// into the name field. At least MinNameKeyLen bytes, secret, and the
	// same across restarts (derive it from the master key).
	NameKey []byte
	// MaxFailures consecutive failures for an account from one source
	// lock that source out of that account; each further MaxFailures
	// lock it again, for twice as long as the time before.
	MaxFailures int
	// LockFor is the first lock's length; MaxLockFor caps the doubling.
	LockFor, MaxLockFor time.Duration
	// ResetAfter forgets a source's failures for an account when it has
	// made no attempt for this long, so that escalation does not last
	// forever.
	ResetAfter time.Duration
	// AccountBurst attempts on one account may come from sources that
	// have failed for it; after that, one more every AccountEvery, shared
	// by all of them. Attempts from sources without failures are never
	// refused by this limit, but spend it.
	AccountBurst int
	AccountEvery time.Duration
	// IPBurst attempts may come from one source at once; after that, one
	// more every IPEvery.
	IPBurst int
	IPEvery time.Duration
	// MaxIPs bounds how many sources are tracked in memory.
	MaxIPs int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

func (c *LimiterConfig) setDefaults() error {
	if len(c.NameKey) < MinNameKeyLen {
		return fmt.Errorf("session: LimiterConfig.NameKey must be at least %d bytes", MinNameKeyLen)
	}
	if c.MaxFailures < 0 || c.LockFor < 0 || c.MaxLockFor < 0 || c.ResetAfter < 0 || c.AccountBurst < 0 || c.AccountEvery < 0 ||
		c.IPBurst < 0 || c.IPEvery < 0 || c.MaxIPs < 0 {
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
	setInt(&c.AccountBurst, DefaultAccountBurst)
	setDur(&c.AccountEvery, DefaultAccountEvery)
	setInt(&c.IPBurst, DefaultIPBurst)
	setDur(&c.IPEvery, DefaultIPEvery)
	setInt(&c.MaxIPs, DefaultMaxIPs)
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Limiter throttles login attempts so that guessing is slow and no one
// but the guesser is locked out. Three limits apply, cheapest first:
//
//   - Per source: each address (each /64 for IPv6, since one host
//     commonly holds a whole /64) has a token bucket, kept in memory,
//     bounding guesses across accounts. On PostgreSQL, which replicas
//     share, each source also spends from a budget in the database that
//     they all see (GCRA, as the account's), so that spreading guesses
//     over the replicas gains nothing. At most MaxIPs sources are
//     tracked; a bucket that has refilled is the same as none and is
//     dropped, and when all are still in use the fullest is forgotten,
//     which gives its source back at most a burst, rather than refusing
//     every new source, which would lock everyone out.
//   - Per account and source: every admitted attempt counts as a failure
//     until Succeeded says otherwise. Counting up front means that
//     concurrent guesses cannot all pass before the first of them is
//     recorded, and that a handler which returns early on an error still
//     counts the attempt. The MaxFailures-th consecutive failure locks
//     that source out of that account for LockFor, the next MaxFailures
//     for twice that, and so on up to MaxLockFor. Other sources are not
//     locked: an attacker locks out only himself.
//   - Per account: sources that have failed for the account share a
//     budget of AccountBurst attempts, refilled one every AccountEvery,
//     which attacks from many sources spend. A source without failures
//     is never refused by it, so the owner with the right password gets
//     in at the first try from anywhere the attacker is not; an attacker
//     gets one guess per fresh source, then waits with the others.
//
// The account limits are kept in the database and survive restarts.
// Accounts are known there only by an HMAC of the name under NameKey.
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

// NewLimiter returns a Limiter keeping account limits in db, creating its
// tables if missing and upgrading those of an older version.
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
	l := &Limiter{db: db, cfg: cfg, ips: map[netip.Prefix]*bucket{}}
	if err := l.upgradeV1(ctx); err != nil {
		return nil, fmt.Errorf("upgrade the login lockouts: %w", err)
	}
	return l, nil
}

// account is how a name is known in the database: the hex HMAC-SHA256 of
// the name under NameKey.
func (l *Limiter) account(name string) string {
	m := hmac.New(sha256.New, l.cfg.NameKey)
	m.Write([]byte(name))
	return hex.EncodeToString(m.Sum(nil))
}

// Tag returns what a log or an audit entry may show of a name that is not
// an account — people type passwords there: the first 16 hex digits of
// its keyed hash, as the limiter's rows begin. The same name gives the
// same tag, so repeated attempts can be told apart from many names.
func (l *Limiter) Tag(name string) string { return l.account(name)[:16] }

// sourceKey is how a source is known in the database.
func sourceKey(ip netip.Addr) string {
	if p := ipKey(ip); p.IsValid() {
		return p.String()
	}
	return "unknown"
}

// Admit decides whether a login attempt for the account named name (as
// the user typed it; known or not, so that the answer does not reveal
// which accounts exist) from ip may proceed to checking credentials. It
// returns a *LimitError if not. An admitted attempt counts as failed until
// Succeeded is called for the same name and ip.
//
// Errors never name the account.
func (l *Limiter) Admit(ctx context.Context, name string, ip netip.Addr) error {
	if name == "" {
		return errors.New("session: Admit needs an account")
	}
	now := l.cfg.Now()
	if wait, ok := l.takeIP(ip, now); !ok {
		return &LimitError{Err: ErrThrottled, RetryAfter: wait}
	}
	acct, src := l.account(name), sourceKey(ip)
	shared := sqldb.DialectOf(l.db) == sqldb.Postgres
	var refused *LimitError
	err := sqldb.Tx(ctx, l.db, func(tx *sql.Tx) error {
		refused = nil // the transaction may run again
		if shared {
			wait, err := l.spendSource(ctx, tx, ipKey(ip).String(), now)
			if err != nil {
				return err
			}
			if wait > 0 {
				refused = &LimitError{Err: ErrThrottled, RetryAfter: wait}
				return nil
			}
		}
		// A write first, so that the transaction holds the write lock
		// before it reads: no other connection can count an attempt
		// between the reads and the updates below.
		if _, err := tx.ExecContext(ctx, `
			INSERT INTO session_lockouts (account, source, failures, last_attempt, locked_until) VALUES (?, ?, 0, ?, 0)
			ON CONFLICT (account, source) DO NOTHING`, acct, src, ms(now)); err != nil {
			return err
		}
		var failures, last, until int64
		if err := tx.QueryRowContext(ctx, `SELECT failures, last_attempt, locked_until FROM session_lockouts WHERE account = ? AND source = ?`,
			acct, src).Scan(&failures, &last, &until); err != nil {
			return err
		}
		if now.Before(fromMS(until)) {
			// Attempts during a lock are not counted: the lock is not extended.
			refused = &LimitError{Err: ErrLocked, RetryAfter: fromMS(until).Sub(now)}
			return nil
		}
		if now.Sub(fromMS(last)) >= l.cfg.ResetAfter {
			failures = 0
		}
		wait, err := l.spendAccount(ctx, tx, acct, failures > 0, now)
		if err != nil {
			return err
		}
		if wait > 0 {
			refused = &LimitError{Err: ErrSlowed, RetryAfter: wait}
			return nil
		}
		failures++
		until = 0
		if n := int64(l.cfg.MaxFailures); failures%n == 0 {
			until = ms(now.Add(l.lockFor(failures / n)))
		}
		_, err = tx.ExecContext(ctx, `UPDATE session_lockouts SET failures = ?, last_attempt = ?, locked_until = ? WHERE account = ? AND source = ?`,
			failures, ms(now), until, acct, src)
		return err
	})
	if err != nil {
		return fmt.Errorf("count login attempt: %w", err)
	}
	if refused != nil {
		return refused
	}
	return nil
}

// spendAccount takes one attempt from the account's shared budget, kept
// as the time it will be full again (a GCRA: full when that is past,
// empty when it is AccountBurst*AccountEvery ahead). A suspect source —
// one that has failed for the account — is refused when the budget is
// empty and told how long to wait; a clean one is admitted regardless,
// and spends what is left.
func (l *Limiter) spendAccount(ctx context.Context, tx *sql.Tx, acct string, suspect bool, now time.Time) (time.Duration, error) {
	var fullAt int64
	err := tx.QueryRowContext(ctx, `SELECT full_at FROM session_login_accounts WHERE account = ?`, acct).Scan(&fullAt)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, err
	}
	span := time.Duration(l.cfg.AccountBurst) * l.cfg.AccountEvery
	next := fromMS(max(fullAt, ms(now))).Add(l.cfg.AccountEvery)
	if over := next.Sub(now) - span; suspect && over > 0 {
		return over, nil
	}
	if limit := now.Add(span); next.After(limit) {
		next = limit // spending an empty budget does not push it further
	}
	_, err = tx.ExecContext(ctx, `
		INSERT INTO session_login_accounts (account, full_at) VALUES (?, ?)
		ON CONFLICT (account) DO UPDATE SET full_at = excluded.full_at`, acct, ms(next))
	return 0, err
}

// spendSource takes one attempt from the source's budget in the
// database, kept as the time it will be full again, as spendAccount
// does; it says how long to wait when it is empty.
func (l *Limiter) spendSource(ctx context.Context, tx *sql.Tx, source string, now time.Time) (time.Duration, error) {
	var fullAt int64
	err := tx.QueryRowContext(ctx, `SELECT full_at FROM session_login_sources WHERE source = ?`, source).Scan(&fullAt)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, err
	}
	span := time.Duration(l.cfg.IPBurst) * l.cfg.IPEvery
	next := fromMS(max(fullAt, ms(now))).Add(l.cfg.IPEvery)
	if over := next.Sub(now) - span; over > 0 {
		return over, nil
	}
	_, err = tx.ExecContext(ctx, `
		INSERT INTO session_login_sources (source, full_at) VALUES (?, ?)
		ON CONFLICT (source) DO UPDATE SET full_at = excluded.full_at`, source, ms(next))
	return 0, err
}

// lockFor is the length of the n-th lock (n >= 1).
func (l *Limiter) lockFor(n int64) time.Duration {
	d := min(l.cfg.LockFor, l.cfg.MaxLockFor)
	for i := int64(1); i < n && d < l.cfg.MaxLockFor; i++ {
		d = min(2*d, l.cfg.MaxLockFor)
	}
	return d
}

// Succeeded records that the credentials of the last attempt admitted for
// name from ip were right: that source's failures for the account are
// forgotten and any lock of it lifted. Other sources keep theirs, and the
// account's shared budget stays spent: an attack elsewhere goes on.
func (l *Limiter) Succeeded(ctx context.Context, name string, ip netip.Addr) error {
	if _, err := l.db.ExecContext(ctx, `DELETE FROM session_lockouts WHERE account = ? AND source = ?`,
		l.account(name), sourceKey(ip)); err != nil {
		return fmt.Errorf("record login success: %w", err)
	}
	return nil
}

// Forgive uncounts the last attempt admitted for name from ip, for an
// attempt that proved the password but lacked the second factor. It was
// no guess, and counting it would mark the owner's source as failing, so
// that in a two-step login (password, then code) the second step would
// wait behind an attack on the account. Unlike Succeeded it forgets no
// other failure: guesses of the code still count. If the attempt was the
// one that locked the source, the lock is lifted.
func (l *Limiter) Forgive(ctx context.Context, name string, ip netip.Addr) error {
	acct, src := l.account(name), sourceKey(ip)
	err := sqldb.Tx(ctx, l.db, func(tx *sql.Tx) error {
		var failures int64
		err := tx.QueryRowContext(ctx, `SELECT failures FROM session_lockouts WHERE account = ? AND source = ?`, acct, src).Scan(&failures)
		if errors.Is(err, sql.ErrNoRows) || (err == nil && failures == 0) {
			return nil
		}
		if err != nil {
			return err
		}
		if failures%int64(l.cfg.MaxFailures) == 0 {
			_, err = tx.ExecContext(ctx, `UPDATE session_lockouts SET failures = failures - 1, locked_until = 0 WHERE account = ? AND source = ?`, acct, src)
		} else {
			_, err = tx.ExecContext(ctx, `UPDATE session_lockouts SET failures = failures - 1 WHERE account = ? AND source = ?`, acct, src)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("uncount login attempt: %w", err)
	}
	return nil
}

// Maintain forgets failures that have reset, budgets that have refilled
// and sources whose buckets have refilled. Call it every few minutes;
// nothing depends on it but the size of the tables.
func (l *Limiter) Maintain(ctx context.Context) error {
	now := l.cfg.Now()
	err := sqldb.Tx(ctx, l.db, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM session_lockouts WHERE locked_until <= ? AND last_attempt <= ?`,
			ms(now), ms(now.Add(-l.cfg.ResetAfter))); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM session_login_accounts WHERE full_at <= ?`, ms(now)); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM session_login_sources WHERE full_at <= ?`, ms(now))
		return err
	})
	if err != nil {
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
			l.dropFull(now)
		}
		if len(l.ips) >= l.cfg.MaxIPs {
			l.dropFullest()
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

// dropFull drops refilled buckets.
func (l *Limiter) dropFull(now time.Time) {
	for k, b := range l.ips {
		l.refill(b, now)
		if b.tokens >= float64(l.cfg.IPBurst) {
			delete(l.ips, k)
		}
	}
}

// dropFullest forgets the bucket with the most tokens (refilled by
// dropFull's call just before): forgetting it gives its source the least.
func (l *Limiter) dropFullest() {
	var key netip.Prefix
	most := -1.0
	for k, b := range l.ips {
		if b.tokens > most {
			key, most = k, b.tokens
		}
	}
	delete(l.ips, key)
}

// upgradeV1 carries over and drops the lockouts of the first version,
// which Migrate moved to session_lockouts_v1. Their failures cannot be
// pinned on a source; each recent one is taken from its account's shared
// budget instead, so that an account under attack before the upgrade is
// still slowed after it. The old rows hold names as typed — passwords,
// sometimes — so the table is dropped with secure_delete on: its pages
// are overwritten, not merely freed.
func (l *Limiter) upgradeV1(ctx context.Context) (err error) {
	if sqldb.DialectOf(l.db) != sqldb.SQLite {
		return nil // the first version only ever kept an SQLite file
	}
	conn, err := l.db.Conn(ctx) // the pragma is per connection
	if err != nil {
		return err
	}
	defer conn.Close()
	var n int
	if err := conn.QueryRowContext(ctx, `SELECT COUNT(*) FROM sqlite_schema WHERE type = 'table' AND name = 'session_lockouts_v1'`).Scan(&n); err != nil || n == 0 {
		return err
	}
	var secure int
	if err := conn.QueryRowContext(ctx, `PRAGMA secure_delete`).Scan(&secure); err != nil {
		return err
	}
	if _, err := conn.ExecContext(ctx, `PRAGMA secure_delete = ON`); err != nil {
		return err
	}
	defer func() {
		if _, rerr := conn.ExecContext(context.WithoutCancel(ctx), fmt.Sprintf(`PRAGMA secure_delete = %d`, secure)); rerr != nil && err == nil {
			err = rerr
		}
	}()
	now := l.cfg.Now()
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }() // after Commit it does nothing; before it, the error that matters is returned
	rows, err := tx.QueryContext(ctx, `SELECT account, failures, last_attempt FROM session_lockouts_v1`)
	if err != nil {
		return fmt.Errorf("read old lockouts: %w", err)
	}
	spent := map[string]int64{}
	for rows.Next() {
		var name string
		var failures, last int64
		if err := rows.Scan(&name, &failures, &last); err != nil {
			rows.Close()
			return fmt.Errorf("read old lockouts: %w", err)
		}
		if failures > 0 && now.Sub(fromMS(last)) < l.cfg.ResetAfter {
			spent[l.account(name)] += failures
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read old lockouts: %w", err)
	}
	for acct, f := range spent {
		fullAt := now.Add(time.Duration(min(f, int64(l.cfg.AccountBurst))) * l.cfg.AccountEvery)
		if _, err := tx.ExecContext(ctx, `
			INSERT INTO session_login_accounts (account, full_at) VALUES (?, ?)
			ON CONFLICT (account) DO UPDATE SET full_at = max(full_at, excluded.full_at)`, acct, ms(fullAt)); err != nil {
			return fmt.Errorf("carry over old lockouts: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, `DROP TABLE session_lockouts_v1`); err != nil {
		return fmt.Errorf("drop old lockouts: %w", err)
	}
	return tx.Commit()
}
