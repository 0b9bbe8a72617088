// Package audit is the control plane's tamper-evident audit log: every
// mutating request and every login attempt appends an Entry to an
// append-only log in SQLite. Each entry carries the SHA-256 of its
// predecessor, and every N entries (and on demand) the log writes an
// Ed25519-signed checkpoint of the latest entry's hash. Verify walks the
// chain and the checkpoints and names each entry that was edited, inserted,
// reordered or deleted.
//
// What the log can and cannot prove:
//
//   - Anyone with write access to the database can recompute SHA-256, so
//     an attacker can rewrite the chain after an edit; the signed
//     checkpoints are what catch that, because forging one needs the
//     private key.
//   - Deleting the newest entries after the last checkpoint cannot be
//     detected from the log alone: the truncated log is a valid chain.
//     Checkpoints bound the loss to fewer than the checkpoint interval
//     (plus the entries since an on-demand Checkpoint); publishing each
//     checkpoint outside the database (a remote log, an operator's inbox)
//     removes it. The same holds for deleting the newest checkpoints
//     together with the entries they cover.
//   - Entries are not encrypted. Callers must not put secrets in any field;
//     Append refuses Detail keys that look like they hold one.
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
	"sort"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/holdfast/holdfast/internal/store"
)

//go:embed schema.sql
var schema string

// DefaultCheckpointEvery is how many entries lie between automatic
// checkpoints unless CheckpointEvery says otherwise.
const DefaultCheckpointEvery = 1000

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
	db    *sql.DB
	owned bool // Open made db, Close closes it
	key   ed25519.PrivateKey
	every int64
	mu    sync.Mutex // serializes appends even if db has several connections
	now   func() time.Time
}

// Option configures a Log.
type Option func(*Log)

// CheckpointEvery makes Append write a checkpoint after every n-th entry
// (n > 0). Verify expects a checkpoint at every multiple of n, so keep n
// fixed for the life of a log.
func CheckpointEvery(n int64) Option {
	return func(l *Log) {
		if n > 0 {
			l.every = n
		}
	}
}

// Open opens (creating if needed) the audit log in the SQLite database at
// path, with the same durability settings as the state store. key signs
// checkpoints; it may be nil for a log that is only read and verified.
func Open(path string, key ed25519.PrivateKey, opts ...Option) (*Log, error) {
	// Durable commits: an acknowledged request's audit entry survives
	// power loss.
	db, err := store.OpenDB(path)
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	l, err := New(db, key, opts...)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("audit log %s: %w", path, err)
	}
	l.owned = true
	return l, nil
}

// New uses db (which may also hold other tables) for the audit log,
// creating its tables if missing. The caller keeps ownership of db.
func New(db *sql.DB, key ed25519.PrivateKey, opts ...Option) (*Log, error) {
	if key != nil && len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("checkpoint key: %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	if _, err := db.Exec(schema); err != nil {
		return nil, fmt.Errorf("create audit tables: %w", err)
	}
	l := &Log{db: db, key: key, every: DefaultCheckpointEvery, now: time.Now}
	for _, o := range opts {
		o(l)
	}
	return l, nil
}

// Close closes the database if Open opened it.
func (l *Log) Close() error {
	if l.owned {
		return l.db.Close()
	}
	return nil
}

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
// entry's Seq is a multiple of the checkpoint interval, a checkpoint is
// written in that transaction too.
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
			_, err := l.checkpoint(ctx, tx, e.Seq, e.Hash)
			return err
		}
		return nil
	})
	if err != nil {
		return Entry{}, fmt.Errorf("audit append %s %s: %w", e.Action, e.Object, err)
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
	var cp Checkpoint
	err := l.tx(ctx, func(tx *sql.Tx) error {
		var seq int64
		var hash []byte
		err := tx.QueryRowContext(ctx, `SELECT seq, hash FROM audit_entries ORDER BY seq DESC LIMIT 1`).Scan(&seq, &hash)
		if errors.Is(err, sql.ErrNoRows) {
			return errors.New("log is empty")
		}
		if err != nil {
			return err
		}
		var h [32]byte
		copy(h[:], hash)
		cp, err = l.checkpoint(ctx, tx, seq, h)
		return err
	})
	if err != nil {
		return Checkpoint{}, fmt.Errorf("audit checkpoint: %w", err)
	}
	return cp, nil
}

func (l *Log) checkpoint(ctx context.Context, tx *sql.Tx, seq int64, hash [32]byte) (Checkpoint, error) {
	cps, err := scanCheckpoints(tx.QueryContext(ctx, `SELECT seq, hash, time, sig FROM audit_checkpoints WHERE seq = ?`, seq))
	if err != nil {
		return Checkpoint{}, err
	}
	if len(cps) == 1 {
		return cps[0].Checkpoint, nil
	}
	t := l.now().UTC().Truncate(time.Microsecond).Format(timeFormat)
	sig := ed25519.Sign(l.key, signedBytes(seq, hash, t))
	if _, err := tx.ExecContext(ctx, `INSERT INTO audit_checkpoints (seq, hash, time, sig) VALUES (?, ?, ?, ?)`, seq, hash[:], t, sig); err != nil {
		return Checkpoint{}, err
	}
	parsed, _ := time.Parse(timeFormat, t)
	return Checkpoint{Seq: seq, Hash: hash, Time: parsed, Sig: sig}, nil
}

func (l *Log) tx(ctx context.Context, f func(*sql.Tx) error) error { return store.Tx(ctx, l.db, f) }

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
	limit := int64(f.Limit)
	if limit <= 0 {
		limit = -1 // SQLite: no limit
	}
	q := `SELECT seq, time, actor, tenant, action, object, source, result, detail, prev, hash FROM audit_entries WHERE seq > ?`
	args := []any{f.After}
	if f.Tenant != "" {
		q += ` AND tenant = ?`
		args = append(args, f.Tenant)
	}
	q += ` ORDER BY seq LIMIT ?`
	args = append(args, limit)
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
