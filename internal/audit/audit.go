// Package audit is the control plane's tamper-evident audit log: every
// mutating request and every login attempt appends an Entry to an
// append-only log in SQLite. Each entry carries the SHA-256 of its
// predecessor, and the log signs Ed25519 checkpoints of its newest entry's
// hash: every N entries, and at most an interval after any entry no
// checkpoint covers yet. Every checkpoint is published outside the
// database as it is made — one JSON line appended to a file that
// operators ship elsewhere, and optionally POSTed to a witness. Verify
// walks the chain and the checkpoints, stored and published, and names
// each entry that was edited, inserted, reordered or deleted.
//
// What the log can and cannot prove:
//
//   - Anyone with write access to the database can recompute SHA-256, so
//     an attacker can rewrite the chain after an edit, and delete any
//     checkpoint or entry. Forging a checkpoint needs the private key, and
//     the published copy is out of the attacker's reach: against it, a
//     rewritten chain, a log cut back or emptied, and deleted checkpoints
//     all show (Verify with AgainstPublished).
//   - From the database alone, a log cut back to exactly one of its
//     checkpoints, the newer checkpoints deleted, is a valid log; so is
//     an empty one. Verify says so in Report.Limits, refuses an empty
//     log, and refuses entries older than the checkpoint interval that no
//     checkpoint covers (the writer would have signed them).
//   - Entries younger than the interval may not be signed yet: deleting
//     them leaves no trace until the next checkpoint.
//   - Entries are not encrypted. Callers must not put secrets in any field;
//     Append refuses Detail keys that look like they hold one.
//
// A crash between committing a checkpoint and writing its line leaves the
// file without it; the next Open with the key writes every stored
// checkpoint the file lacks (matched by seq and signature, so never twice)
// and drops a line a crash left half-written. The file therefore holds
// every checkpoint ever made, in the order made, and may be shipped with
// tail -F, rsync --append or the like.
package audit

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"database/sql"
	_ "embed"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/holdfast/holdfast/internal/migrate"
	"github.com/holdfast/holdfast/internal/sqldb"
)

//go:embed schema.sql
var schema string

// auditSchema is the audit log's tables and how they got there
// (docs/upgrades.md). Version 1 is schema.sql as the releases before
// versioning wrote it; a new version is one more entry in Steps. A step
// must not change what an entry's hash covers: the chain and the
// published checkpoints would no longer verify.
var auditSchema = &migrate.Schema{
	Name:   "audit",
	SQL:    schema,
	First:  1,
	Steps:  []migrate.Step{},
	Tables: []string{"audit_entries", "audit_checkpoints", "audit_witness"},
}

// DefaultCheckpointEvery is how many entries lie between automatic
// checkpoints unless CheckpointEvery says otherwise.
const DefaultCheckpointEvery = 100

// DefaultCheckpointInterval is the longest an entry waits for a
// checkpoint unless CheckpointInterval says otherwise.
const DefaultCheckpointInterval = 5 * time.Minute

// Entry is one audited event.
type Entry struct {
	Seq    int64     // assigned by Append: 1, 2, 3, ...
	Time   time.Time // UTC, truncated to microseconds; Append fills it in when zero
	Actor  string    // who: user, token name or "anonymous"
	Tenant string    // whose: the tenant the action concerns, "" for operator-level events
	Action string    // what: "login", "zone.create", ...
	Object string    // on what: a resource id
	Source string    // from where: remote address
	Result string    // "ok", "denied", "error: ..."
	// Detail is optional context. It must never hold secrets: Append
	// rejects keys containing password, passwd, secret, token, credential
	// or key (case-insensitive).
	Detail map[string]string
	Prev   [32]byte // Hash of entry Seq-1; zero for entry 1
	Hash   [32]byte // SHA-256 of the canonical encoding of all fields above
}

// Checkpoint is a signed statement that entry Seq had hash Hash at Time.
type Checkpoint struct {
	Seq  int64
	Hash [32]byte
	Time time.Time
	Sig  []byte
}

const timeFormat = time.RFC3339Nano

// ComputeHash returns the SHA-256 of e's canonical encoding: a domain
// label, then seq, time, every string field and the Detail pairs (sorted by
// key) each length-prefixed, then Prev. Length prefixes make the encoding
// unambiguous: no two different entries encode to the same bytes.
func (e Entry) ComputeHash() [32]byte {
	h := sha256.New()
	h.Write([]byte("holdfast-audit-entry-v1\x00"))
	var n [8]byte
	num := func(v uint64) { binary.BigEndian.PutUint64(n[:], v); h.Write(n[:]) }
	str := func(s string) { num(uint64(len(s))); h.Write([]byte(s)) }
	num(uint64(e.Seq))
	str(e.Time.UTC().Format(timeFormat))
	for _, s := range []string{e.Actor, e.Tenant, e.Action, e.Object, e.Source, e.Result} {
		str(s)
	}
	keys := make([]string, 0, len(e.Detail))
	for k := range e.Detail {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	num(uint64(len(keys)))
	for _, k := range keys {
		str(k)
		str(e.Detail[k])
	}
	h.Write(e.Prev[:])
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// signedBytes is what a checkpoint's signature covers.
func signedBytes(seq int64, hash [32]byte, t string) []byte {
	b := []byte("holdfast-audit-checkpoint-v1\x00")
	b = binary.BigEndian.AppendUint64(b, uint64(seq))
	b = append(b, hash[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(len(t)))
	return append(b, t...)
}

// Log is an audit log in a SQLite database.
type Log struct {
	db       *sql.DB
	owned    bool // Open made db, Close closes it
	key      ed25519.PrivateKey
	every    int64
	interval time.Duration
	now      func() time.Time
	log      *slog.Logger

	name       string // labels published checkpoints
	pubPath    string // the published checkpoints file; "" when not publishing
	witnessURL string
	witTimeout time.Duration // per POST
	witRetry   time.Duration // the first wait after a failed POST

	// schedule runs f after d; time.AfterFunc except in tests, which fire
	// it themselves.
	schedule func(d time.Duration, f func()) stopper

	mu      sync.Mutex  // serializes appends, checkpoints and writes to pub
	pub     *os.File    // the published checkpoints file, opened for appending
	pubSize int64       // its length: a failed write is cut back to it
	unfiled []Published // checkpoints made whose line is not written yet
	timer   stopper     // armed while an entry waits for its checkpoint
	closed  bool
	wit     *witness // nil without a witness
}

// stopper is what Log needs of a *time.Timer.
type stopper interface{ Stop() bool }

// Option configures a Log.
type Option func(*Log)

// CheckpointEvery makes Append write a checkpoint after every n-th entry
// (n > 0). Verify expects a checkpoint at every multiple of n, so keep n
// fixed for the life of a log and give the verifier the writer's n.
func CheckpointEvery(n int64) Option {
	return func(l *Log) {
		if n > 0 {
			l.every = n
		}
	}
}

// CheckpointInterval bounds how long an entry stays unsigned (d > 0): a
// log with a key checkpoints its newest entry at most d after an entry
// that no checkpoint covers was appended, and when opened. Verify refuses
// entries older than d that no checkpoint covers, so give the verifier
// the writer's d.
func CheckpointInterval(d time.Duration) Option {
	return func(l *Log) {
		if d > 0 {
			l.interval = d
		}
	}
}

// PublishTo appends every checkpoint the log makes, as it makes it, as one
// JSON line (see Published) to the file at path, synced before the
// checkpoint's maker returns. The file is the copy of the checkpoints kept
// outside the database: ship it elsewhere and verify against that copy.
func PublishTo(path string) Option { return func(l *Log) { l.pubPath = path } }

// Name labels published checkpoints with the log's name (the cloud's),
// for whoever collects several logs' checkpoints; the public key, not the
// name, is what identifies the log.
func Name(name string) Option { return func(l *Log) { l.name = name } }

// Witness POSTs every line of the published checkpoints file to rawURL
// (http or https), in order, in the background: a witness that is slow or
// down never holds up an append, and what it missed is sent again, from
// where it stopped, until it answers 2xx — across restarts too. Needs
// PublishTo.
func Witness(rawURL string) Option { return func(l *Log) { l.witnessURL = rawURL } }

// Logger receives what the log's background work could not do (a
// checkpoint on the timer, publishing, the witness).
func Logger(log *slog.Logger) Option {
	return func(l *Log) {
		if log != nil {
			l.log = log
		}
	}
}

// Clock is the time entries and checkpoints are stamped with, and the
// "now" Verify judges unsigned entries' age by.
func Clock(now func() time.Time) Option {
	return func(l *Log) {
		if now != nil {
			l.now = now
		}
	}
}

// Open opens (creating if needed) the audit log in the database at p,
// with the same durability settings as the state store. key signs
// checkpoints; it may be nil for a log that is only read and verified.
func Open(p sqldb.Place, key ed25519.PrivateKey, opts ...Option) (*Log, error) {
	// Durable commits: an acknowledged request's audit entry survives
	// power loss.
	db, err := sqldb.Open(context.Background(), p)
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	l, err := New(db, key, opts...)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("audit log %s: %w", p, err)
	}
	l.owned = true
	return l, nil
}

// New uses db (which may also hold other tables) for the audit log,
// creating its tables if missing. The caller keeps ownership of db.
//
// With a key, New also brings the log up to date after a crash: it writes
// to the published file every stored checkpoint the file lacks, signs the
// newest entry if no checkpoint covers it, and starts the witness.
func New(db *sql.DB, key ed25519.PrivateKey, opts ...Option) (*Log, error) {
	if key != nil && len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("checkpoint key: %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	if err := migrate.Run(context.Background(), db, auditSchema); err != nil {
		return nil, err
	}
	l := &Log{db: db, key: key, every: DefaultCheckpointEvery, interval: DefaultCheckpointInterval, now: time.Now,
		log: slog.New(slog.DiscardHandler), schedule: afterFunc, witTimeout: 10 * time.Second, witRetry: time.Second}
	for _, o := range opts {
		o(l)
	}
	var wit *url.URL
	if l.witnessURL != "" {
		var err error
		if wit, err = witnessURL(l.witnessURL); err != nil {
			return nil, err
		}
	}
	if key == nil {
		if l.pubPath != "" || wit != nil {
			return nil, errors.New("publishing checkpoints needs the signing key")
		}
		return l, nil
	}
	if wit != nil && l.pubPath == "" {
		return nil, errors.New("a witness needs the published checkpoints file (PublishTo)")
	}
	ok := false
	defer func() {
		if !ok {
			l.Close()
		}
	}()
	ctx := context.Background()
	if l.pubPath != "" {
		if err := l.openPublished(ctx); err != nil {
			return nil, err
		}
	}
	// Entries a crash (or a Close without a checkpoint) left unsigned are
	// signed now rather than an interval from now. A log that cannot be
	// signed (its newest entry damaged) still opens: verify says why.
	l.mu.Lock()
	if _, _, err := l.checkpointNewest(ctx); err != nil {
		l.log.Error("audit: could not sign the newest entry on open; run audit verify", "err", err)
	}
	l.mu.Unlock()
	if wit != nil {
		l.wit = startWitness(l, wit)
	}
	ok = true
	return l, nil
}

func afterFunc(d time.Duration, f func()) stopper { return time.AfterFunc(d, f) }

// Close stops the log's background work and closes the published file,
// and the database if Open opened it. A witness that has not received
// every checkpoint gets the rest after the next Open.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	if l.timer != nil {
		l.timer.Stop()
		l.timer = nil
	}
	l.mu.Unlock()
	if l.wit != nil {
		l.wit.stop()
	}
	var errs []error
	if l.pub != nil {
		errs = append(errs, l.pub.Close())
	}
	if l.owned {
		errs = append(errs, l.db.Close())
	}
	return errors.Join(errs...)
}

// ErrClosed is returned by a Log's methods after Close.
var ErrClosed = errors.New("audit log is closed")

// ErrSecretInDetail is returned by Append for a Detail key that looks like
// it names a secret.
var ErrSecretInDetail = errors.New("audit detail must not hold secrets")

var secretWords = []string{"password", "passwd", "secret", "token", "credential", "key"}

func checkDetail(d map[string]string) error {
	for k := range d {
		lk := strings.ToLower(k)
		for _, w := range secretWords {
			if strings.Contains(lk, w) {
				return fmt.Errorf("detail key %q: %w (rename it if it holds none)", k, ErrSecretInDetail)
			}
		}
	}
	return nil
}

// Append adds e to the log and returns it with Seq, Time, Prev and Hash
// filled in. Seq and Prev are assigned in the same transaction as the
// insert, so concurrent appends form one unbroken chain. When the new
// entry's Seq is a multiple of CheckpointEvery, a checkpoint is written in
// that transaction too and published once it commits; otherwise the
// entry is signed by a checkpoint within CheckpointInterval.
func (l *Log) Append(ctx context.Context, e Entry) (Entry, error) {
	if err := checkDetail(e.Detail); err != nil {
		return Entry{}, err
	}
	if e.Time.IsZero() {
		e.Time = l.now()
	}
	e.Time = e.Time.UTC().Truncate(time.Microsecond)
	if len(e.Detail) == 0 {
		e.Detail = nil
	}
	detail := ""
	if e.Detail != nil {
		b, _ := json.Marshal(e.Detail) // a map of strings always marshals
		detail = string(b)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return Entry{}, ErrClosed
	}
	var cp Checkpoint
	made := false
	err := l.tx(ctx, func(tx *sql.Tx) error {
		var last sql.NullInt64
		var prev []byte
		err := tx.QueryRowContext(ctx, `SELECT seq, hash FROM audit_entries ORDER BY seq DESC LIMIT 1`).Scan(&last, &prev)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			e.Seq, e.Prev = 1, [32]byte{}
		case err != nil:
			return err
		default:
			if len(prev) != 32 {
				return fmt.Errorf("entry %d: stored hash is %d bytes; run audit verify", last.Int64, len(prev))
			}
			e.Seq = last.Int64 + 1
			copy(e.Prev[:], prev)
		}
		e.Hash = e.ComputeHash()
		if _, err := tx.ExecContext(ctx, `INSERT INTO audit_entries (seq, time, actor, tenant, action, object, source, result, detail, prev, hash)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			e.Seq, e.Time.Format(timeFormat), e.Actor, e.Tenant, e.Action, e.Object, e.Source, e.Result, detail, e.Prev[:], e.Hash[:]); err != nil {
			return err
		}
		if e.Seq%l.every == 0 && l.key != nil {
			cp, made, err = l.checkpoint(ctx, tx, e.Seq, e.Hash)
			return err
		}
		return nil
	})
	if err != nil {
		return Entry{}, fmt.Errorf("audit append %s %s: %w", e.Action, e.Object, err)
	}
	switch {
	case made:
		l.publish(cp)
	case l.key != nil:
		l.arm()
	}
	return e, nil
}

// Checkpoint signs the newest entry's hash now (for example at shutdown, to
// bound what a truncation could hide) and returns the checkpoint. If that
// entry already has a checkpoint, it returns the existing one.
func (l *Log) Checkpoint(ctx context.Context) (Checkpoint, error) {
	if l.key == nil {
		return Checkpoint{}, errors.New("audit checkpoint: log opened without a signing key")
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return Checkpoint{}, ErrClosed
	}
	cp, ok, err := l.checkpointNewest(ctx)
	switch {
	case err != nil:
		return Checkpoint{}, fmt.Errorf("audit checkpoint: %w", err)
	case !ok:
		return Checkpoint{}, errors.New("audit checkpoint: log is empty")
	}
	return cp, nil
}

// checkpointNewest signs the newest entry unless a checkpoint covers it
// and publishes what it signed; ok is false for an empty log. The caller
// holds l.mu.
func (l *Log) checkpointNewest(ctx context.Context) (cp Checkpoint, ok bool, err error) {
	made := false
	err = l.tx(ctx, func(tx *sql.Tx) error {
		var seq int64
		var hash []byte
		err := tx.QueryRowContext(ctx, `SELECT seq, hash FROM audit_entries ORDER BY seq DESC LIMIT 1`).Scan(&seq, &hash)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		if len(hash) != 32 {
			return fmt.Errorf("entry %d: stored hash is %d bytes; run audit verify", seq, len(hash))
		}
		ok = true
		cp, made, err = l.checkpoint(ctx, tx, seq, [32]byte(hash))
		return err
	})
	if err != nil {
		return Checkpoint{}, false, err
	}
	if made {
		l.publish(cp)
	}
	return cp, ok, nil
}

// checkpoint signs entry seq's hash in tx, unless it has a checkpoint
// already, which it returns with made false. The caller publishes what it
// made once tx has committed: a line for a checkpoint rolled back would
// vouch for an entry that never was.
func (l *Log) checkpoint(ctx context.Context, tx *sql.Tx, seq int64, hash [32]byte) (cp Checkpoint, made bool, err error) {
	cps, err := scanCheckpoints(tx.QueryContext(ctx, `SELECT seq, hash, time, sig FROM audit_checkpoints WHERE seq = ?`, seq))
	if err != nil {
		return Checkpoint{}, false, err
	}
	if len(cps) == 1 {
		return cps[0].Checkpoint, false, nil
	}
	t := l.now().UTC().Truncate(time.Microsecond).Format(timeFormat)
	sig := ed25519.Sign(l.key, signedBytes(seq, hash, t))
	if _, err := tx.ExecContext(ctx, `INSERT INTO audit_checkpoints (seq, hash, time, sig) VALUES (?, ?, ?, ?)`, seq, hash[:], t, sig); err != nil {
		return Checkpoint{}, false, err
	}
	parsed, _ := time.Parse(timeFormat, t)
	return Checkpoint{Seq: seq, Hash: hash, Time: parsed, Sig: sig}, true, nil
}

// arm makes sure a checkpoint follows within the interval: the newest
// entry has none. The caller holds l.mu.
func (l *Log) arm() {
	if l.timer == nil && !l.closed {
		l.timer = l.schedule(l.interval, l.tick)
	}
}

// tick is the timer's checkpoint: it signs the newest entry, which covers
// every entry appended since the timer was armed.
func (l *Log) tick() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.timer = nil
	if l.closed {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, _, err := l.checkpointNewest(ctx); err != nil {
		l.log.Error("audit checkpoint failed; trying again", "err", err)
		l.timer = l.schedule(min(l.interval, time.Minute), l.tick)
	}
}

// tx runs f with the log to itself: replicas sharing a database append
// to one chain, one entry after the other.
func (l *Log) tx(ctx context.Context, f func(*sql.Tx) error) error {
	return sqldb.Serialized(ctx, l.db, chainLock, f)
}

// chainLock is the lock appends hold (sqldb.Serialized): any number, the
// same in every Holdfast ("hfaudit").
const chainLock int64 = 0x6866617564697400

// Filter selects entries for List.
type Filter struct {
	// Tenant restricts the result to one tenant's entries. Empty means
	// every entry, which only operators may see: the API layer must set
	// Tenant for a tenant's request.
	Tenant string
	After  int64 // only entries with Seq > After (for paging)
	Limit  int   // at most this many; 0 or less means no limit
}

// List returns the entries f selects, oldest first.
func (l *Log) List(ctx context.Context, f Filter) ([]Entry, error) {
	q := `SELECT seq, time, actor, tenant, action, object, source, result, detail, prev, hash FROM audit_entries WHERE seq > ?`
	args := []any{f.After}
	if f.Tenant != "" {
		q += ` AND tenant = ?`
		args = append(args, f.Tenant)
	}
	q += ` ORDER BY seq`
	if f.Limit > 0 {
		q += ` LIMIT ?`
		args = append(args, f.Limit)
	}
	var out []Entry
	err := scanEntries(l.db.QueryContext(ctx, q, args...))(func(r row) error {
		if r.bad != "" {
			return fmt.Errorf("entry %d: %s; run audit verify", r.Seq, r.bad)
		}
		out = append(out, r.Entry)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("audit list: %w", err)
	}
	return out, nil
}

// row is a stored entry as read back; bad says why its stored form could
// not be decoded (which Verify reports as an edit).
type row struct {
	Entry
	timeText string
	bad      string
}

// scanEntries returns a function that calls f for each row, streaming, so
// that Verify does not hold the whole log in memory.
func scanEntries(rows *sql.Rows, err error) func(f func(row) error) error {
	return func(f func(row) error) error {
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var r row
			var detail string
			var prev, hash []byte
			if err := rows.Scan(&r.Seq, &r.timeText, &r.Actor, &r.Tenant, &r.Action, &r.Object, &r.Source, &r.Result, &detail, &prev, &hash); err != nil {
				return err
			}
			copy(r.Prev[:], prev)
			copy(r.Hash[:], hash)
			t, err := time.Parse(timeFormat, r.timeText)
			switch {
			case err != nil:
				r.bad = "time is not RFC 3339"
			case t.Format(timeFormat) != r.timeText:
				r.bad = "time is not in canonical form"
			case len(prev) != 32 || len(hash) != 32:
				r.bad = "prev or hash is not 32 bytes"
			}
			r.Time = t
			if detail != "" {
				if err := json.Unmarshal([]byte(detail), &r.Detail); err != nil {
					r.bad = "detail is not a JSON object of strings"
				}
			}
			if err := f(r); err != nil {
				return err
			}
		}
		return rows.Err()
	}
}

type storedCheckpoint struct {
	Checkpoint
	timeText string
	badHash  bool
}

func scanCheckpoints(rows *sql.Rows, err error) ([]storedCheckpoint, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []storedCheckpoint
	for rows.Next() {
		var c storedCheckpoint
		var hash []byte
		if err := rows.Scan(&c.Seq, &hash, &c.timeText, &c.Sig); err != nil {
			return nil, err
		}
		c.badHash = len(hash) != 32
		copy(c.Hash[:], hash)
		c.Time, _ = time.Parse(timeFormat, c.timeText)
		out = append(out, c)
	}
	return out, rows.Err()
}
