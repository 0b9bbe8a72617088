package audit

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/sqldb/sqldbtest"
)

// seedKey makes tests deterministic without a source of randomness.
func seedKey(b byte) ed25519.PrivateKey {
	seed := make([]byte, ed25519.SeedSize)
	for i := range seed {
		seed[i] = b
	}
	return ed25519.NewKeyFromSeed(seed)
}

// fillBase is when test logs begin.
var fillBase = time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.UTC)

// stepClock is a clock that moves a second each time it is read, from
// fillBase: entries get distinct, increasing times, and Verify's "now" is
// just after the newest.
func stepClock() func() time.Time {
	var n atomic.Int64
	return func() time.Time { return fillBase.Add(time.Duration(n.Add(1)) * time.Second) }
}

// timers stands in for time.AfterFunc: it records what the log schedules
// and runs it when the test says.
type timers struct {
	mu    sync.Mutex
	armed []timer
}

type timer struct {
	d time.Duration
	f func()
}

func (ts *timers) schedule(d time.Duration, f func()) stopper {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.armed = append(ts.armed, timer{d, f})
	return stopFunc(func() bool { return true })
}

type stopFunc func() bool

func (f stopFunc) Stop() bool { return f() }

// fire runs every armed timer and says how many there were.
func (ts *timers) fire() []time.Duration {
	ts.mu.Lock()
	armed := ts.armed
	ts.armed = nil
	ts.mu.Unlock()
	var ds []time.Duration
	for _, t := range armed {
		t.f()
		ds = append(ds, t.d)
	}
	return ds
}

// manualTimers makes l's timers fire only when the test fires them.
func manualTimers(ts *timers) Option { return func(l *Log) { l.schedule = ts.schedule } }

func newLog(t *testing.T, every int64, opts ...Option) (*Log, ed25519.PublicKey, string) {
	t.Helper()
	key := seedKey(7)
	path := filepath.Join(t.TempDir(), "audit.db")
	l, err := Open(sqldbtest.Place(t, path, "audit"), key, append([]Option{CheckpointEvery(every), Clock(stepClock()), manualTimers(&timers{})}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l, key.Public().(ed25519.PublicKey), path
}

var tenants = []string{"acme", "globex", ""}

// fill appends n entries.
func fill(t *testing.T, l *Log, n int) {
	t.Helper()
	var last int64
	if err := l.db.QueryRow(`SELECT COALESCE(MAX(seq), 0) FROM audit_entries`).Scan(&last); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= n; i++ {
		e := Entry{
			Actor:  fmt.Sprintf("user%d", i%7),
			Tenant: tenants[i%3],
			Action: "zone.update",
			Object: fmt.Sprintf("zone/z%d", i),
			Source: "192.0.2.10:5555",
			Result: "ok",
		}
		if i%2 == 0 {
			e.Detail = map[string]string{"field": "ttl", "to": fmt.Sprint(i)}
		}
		got, err := l.Append(context.Background(), e)
		if err != nil {
			t.Fatal(err)
		}
		if got.Seq != last+int64(i) {
			t.Fatalf("append %d: seq %d, want %d", i, got.Seq, last+int64(i))
		}
	}
}

func verify(t *testing.T, l *Log, pub ed25519.PublicKey) Report {
	t.Helper()
	rep, err := l.Verify(context.Background(), pub)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func exec(t *testing.T, l *Log, q string, args ...any) {
	t.Helper()
	if _, err := l.db.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func TestCleanLogVerifies(t *testing.T) {
	l, pub, path := newLog(t, 100)
	fill(t, l, 250)
	rep := verify(t, l, pub)
	if !rep.OK() || rep.Entries != 250 || rep.LastSeq != 250 || rep.Checkpoints != 2 || rep.LastCheckpoint != 200 {
		t.Fatalf("clean log:\n%s%+v", rep, rep)
	}
	if want := "entries 201-250: younger than the checkpoint interval (5m0s) and not signed yet"; !slices.Contains(rep.Limits, want+"; deleting them would leave no trace") || !strings.Contains(rep.String(), want) {
		t.Errorf("report does not state the limit %q:\n%s", want, rep)
	}

	cp, err := l.Checkpoint(context.Background())
	if err != nil || cp.Seq != 250 {
		t.Fatalf("checkpoint: %+v %v", cp, err)
	}
	again, err := l.Checkpoint(context.Background())
	if err != nil || !slices.Equal(again.Sig, cp.Sig) {
		t.Fatalf("second checkpoint of the same entry should return the first: %v", err)
	}
	rep = verify(t, l, pub)
	if !rep.OK() || rep.Checkpoints != 3 || rep.Covered != 250 || slices.ContainsFunc(rep.Limits, func(s string) bool { return strings.Contains(s, "not signed yet") }) {
		t.Fatalf("after checkpoint:\n%s", rep)
	}

	// The log survives a reopen, and appending continues the chain.
	l.Close()
	l2, err := Open(sqldbtest.Place(t, path, "audit"), seedKey(7), CheckpointEvery(100))
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	e, err := l2.Append(context.Background(), Entry{Actor: "root", Action: "login", Result: "ok"})
	if err != nil || e.Seq != 251 {
		t.Fatalf("append after reopen: %+v %v", e, err)
	}
	if rep := verify(t, l2, pub); !rep.OK() || rep.Entries != 251 {
		t.Fatalf("after reopen:\n%s", rep)
	}
}

func TestAppendFillsAndTruncatesTime(t *testing.T) {
	l, _, _ := newLog(t, 100)
	in := time.Date(2025, 1, 2, 3, 4, 5, 999999999, time.FixedZone("x", 3600))
	e, err := l.Append(context.Background(), Entry{Time: in, Actor: "a", Action: "login"})
	if err != nil {
		t.Fatal(err)
	}
	if want := in.UTC().Truncate(time.Microsecond); !e.Time.Equal(want) || e.Time.Location() != time.UTC {
		t.Errorf("time %v, want %v", e.Time, want)
	}
	if e.Prev != [32]byte{} || e.Hash != e.ComputeHash() {
		t.Errorf("first entry: prev %x hash %x", e.Prev, e.Hash)
	}
	e2, err := l.Append(context.Background(), Entry{Actor: "a", Action: "logout"})
	if err != nil {
		t.Fatal(err)
	}
	if e2.Time.IsZero() || e2.Prev != e.Hash {
		t.Errorf("second entry: time %v prev %x, want prev %x", e2.Time, e2.Prev, e.Hash)
	}
}

// forge writes a well-formed entry at seq following prev, as an attacker
// with write access to the database could.
func forge(t *testing.T, l *Log, seq int64, prev [32]byte) {
	t.Helper()
	e := Entry{Seq: seq, Time: fillBase.Add(time.Duration(seq) * time.Second), Actor: "mallory", Action: "user.grant", Object: "user/mallory", Result: "ok", Prev: prev}
	e.Hash = e.ComputeHash()
	exec(t, l, `INSERT INTO audit_entries (seq, time, actor, tenant, action, object, source, result, detail, prev, hash) VALUES (?, ?, ?, '', ?, ?, '', ?, '', ?, ?)`,
		e.Seq, e.Time.Format(timeFormat), e.Actor, e.Action, e.Object, e.Result, e.Prev[:], e.Hash[:])
}

func hashOf(t *testing.T, l *Log, seq int64) [32]byte {
	t.Helper()
	var b []byte
	if err := l.db.QueryRow(`SELECT hash FROM audit_entries WHERE seq = ?`, seq).Scan(&b); err != nil {
		t.Fatal(err)
	}
	return [32]byte(b)
}

// rehash recomputes the hash and prev of every entry from seq on, as an
// attacker who rewrites the chain after an edit would.
func rehash(t *testing.T, l *Log, from int64) {
	t.Helper()
	es, err := l.List(context.Background(), Filter{})
	if err != nil {
		t.Fatal(err)
	}
	var prev [32]byte
	for _, e := range es {
		if e.Seq >= from {
			e.Prev = prev
			e.Hash = e.ComputeHash()
			exec(t, l, `UPDATE audit_entries SET prev = ?, hash = ? WHERE seq = ?`, e.Prev[:], e.Hash[:], e.Seq)
		}
		prev = e.Hash
	}
}

type found struct {
	Kind Kind
	Seq  int64
}

func run(k Kind, from, to int64) []found {
	var out []found
	for s := from; s <= to; s++ {
		out = append(out, found{k, s})
	}
	return out
}

func TestVerifyDetectsTampering(t *testing.T) {
	tests := []struct {
		name   string
		tamper func(t *testing.T, l *Log)
		want   []found
		msg    string // one problem's exact message
	}{{
		name:   "edit one field",
		tamper: func(t *testing.T, l *Log) { exec(t, l, `UPDATE audit_entries SET result = 'denied' WHERE seq = 17`) },
		want:   []found{{Edited, 17}},
		msg:    "entry 17: content edited (hash does not match its fields)",
	}, {
		name: "edit time into a non-canonical form",
		tamper: func(t *testing.T, l *Log) {
			exec(t, l, `UPDATE audit_entries SET time = '2025-03-01 12:00:17' WHERE seq = 17`)
		},
		want: []found{{Edited, 17}},
	}, {
		name: "edit one entry and its own hash",
		tamper: func(t *testing.T, l *Log) {
			exec(t, l, `UPDATE audit_entries SET actor = 'someone-else' WHERE seq = 17`)
			var e Entry
			es, _ := l.List(context.Background(), Filter{After: 16, Limit: 1})
			e = es[0]
			h := e.ComputeHash()
			exec(t, l, `UPDATE audit_entries SET hash = ? WHERE seq = 17`, h[:])
		},
		want: []found{{Unlinked, 18}},
		msg:  "entry 18: does not follow entry 17 (prev hash mismatch) — inserted, reordered or a predecessor edited",
	}, {
		name: "insert between 30 and 31, renumbering the rest",
		tamper: func(t *testing.T, l *Log) {
			exec(t, l, `UPDATE audit_entries SET seq = -seq WHERE seq > 30`)
			exec(t, l, `UPDATE audit_entries SET seq = -seq + 1 WHERE seq < 0`)
			forge(t, l, 31, hashOf(t, l, 30))
		},
		// The forged entry itself is well formed; the entry after it does
		// not follow it, and every renumbered entry's hash covers its old seq.
		want: append(append([]found{{Unlinked, 32}}, run(Edited, 32, 251)...), found{CheckpointMismatch, 100}, found{CheckpointMismatch, 200}),
		msg:  "entry 32: does not follow entry 31 (prev hash mismatch) — inserted, reordered or a predecessor edited",
	}, {
		name: "swap two entries",
		tamper: func(t *testing.T, l *Log) {
			exec(t, l, `UPDATE audit_entries SET seq = -1 WHERE seq = 50`)
			exec(t, l, `UPDATE audit_entries SET seq = 50 WHERE seq = 60`)
			exec(t, l, `UPDATE audit_entries SET seq = 60 WHERE seq = -1`)
		},
		want: []found{{Edited, 50}, {Unlinked, 50}, {Unlinked, 51}, {Edited, 60}, {Unlinked, 60}, {Unlinked, 61}},
	}, {
		name:   "delete one entry",
		tamper: func(t *testing.T, l *Log) { exec(t, l, `DELETE FROM audit_entries WHERE seq = 40`) },
		want:   []found{{Missing, 40}},
		msg:    "entry 40 missing (seq gap)",
	}, {
		name:   "delete a range",
		tamper: func(t *testing.T, l *Log) { exec(t, l, `DELETE FROM audit_entries WHERE seq BETWEEN 40 AND 42`) },
		want:   []found{{Missing, 40}},
		msg:    "entries 40-42 missing (seq gap)",
	}, {
		name:   "delete the first entry",
		tamper: func(t *testing.T, l *Log) { exec(t, l, `DELETE FROM audit_entries WHERE seq = 1`) },
		want:   []found{{Missing, 1}},
	}, {
		name:   "delete the tail past a checkpoint",
		tamper: func(t *testing.T, l *Log) { exec(t, l, `DELETE FROM audit_entries WHERE seq > 95`) },
		want:   []found{{Truncated, 96}},
		msg:    "log ends at 95 but checkpoint at 200 says 200 existed — entries 96-200 deleted",
	}, {
		name:   "delete a checkpoint",
		tamper: func(t *testing.T, l *Log) { exec(t, l, `DELETE FROM audit_checkpoints WHERE seq = 200`) },
		want:   []found{{CheckpointMissing, 200}},
	}, {
		name: "forge a checkpoint signature",
		tamper: func(t *testing.T, l *Log) {
			exec(t, l, `UPDATE audit_checkpoints SET sig = ? WHERE seq = 100`, make([]byte, 64))
		},
		want: []found{{BadSignature, 100}},
		msg:  "checkpoint at 100: bad signature (forged, altered, or signed with another key)",
	}, {
		name: "re-sign a checkpoint with another key",
		tamper: func(t *testing.T, l *Log) {
			var h []byte
			var tm string
			if err := l.db.QueryRow(`SELECT hash, time FROM audit_checkpoints WHERE seq = 100`).Scan(&h, &tm); err != nil {
				t.Fatal(err)
			}
			exec(t, l, `UPDATE audit_checkpoints SET sig = ? WHERE seq = 100`, ed25519.Sign(seedKey(9), signedBytes(100, [32]byte(h), tm)))
		},
		want: []found{{BadSignature, 100}},
	}, {
		name: "edit and rewrite the whole chain after it",
		tamper: func(t *testing.T, l *Log) {
			exec(t, l, `UPDATE audit_entries SET result = 'ok' , actor = 'admin' WHERE seq = 17`)
			rehash(t, l, 17)
		},
		want: []found{{CheckpointMismatch, 100}, {CheckpointMismatch, 200}},
		msg:  "checkpoint at 100: hash differs from entry 100 — an entry at or before 100 was changed and the chain rewritten",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, pub, _ := newLog(t, 100)
			fill(t, l, 250)
			tt.tamper(t, l)
			rep := verify(t, l, pub)
			var got []found
			var msgs []string
			for _, p := range rep.Problems {
				got = append(got, found{p.Kind, p.Seq})
				msgs = append(msgs, p.Msg)
			}
			sortFound(got)
			want := slices.Clone(tt.want)
			sortFound(want)
			if !slices.Equal(got, want) {
				t.Errorf("problems %v, want %v\n%s", got, want, rep)
			}
			if tt.msg != "" && !slices.Contains(msgs, tt.msg) {
				t.Errorf("no problem says %q:\n%s", tt.msg, rep)
			}
		})
	}
}

func sortFound(f []found) {
	slices.SortFunc(f, func(a, b found) int {
		if a.Seq != b.Seq {
			return int(a.Seq - b.Seq)
		}
		return strings.Compare(string(a.Kind), string(b.Kind))
	})
}

func TestReportMergesRuns(t *testing.T) {
	l, pub, _ := newLog(t, 100)
	fill(t, l, 120)
	exec(t, l, `UPDATE audit_entries SET result = 'x' WHERE seq BETWEEN 10 AND 19`)
	s := verify(t, l, pub).String()
	if !strings.Contains(s, "entries 10-19: content edited (hash does not match its fields)") || strings.Contains(s, "entry 12:") {
		t.Errorf("report does not merge the run:\n%s", s)
	}
}

// TestRandomEditsDetected is a property test: whatever single column of
// whatever entry an attacker changes, Verify names that entry (or, for a
// stored hash, it or its successor).
func TestRandomEditsDetected(t *testing.T) {
	const n = 60
	l, pub, _ := newLog(t, 25)
	fill(t, l, n)
	rng := rand.New(rand.NewPCG(1, 2))
	cols := []string{"time", "actor", "tenant", "action", "object", "source", "result", "detail", "prev", "hash"}
	for i := range 300 {
		seq := rng.Int64N(n) + 1
		col := cols[rng.IntN(len(cols))]
		var orig any
		if err := l.db.QueryRow(`SELECT `+col+` FROM audit_entries WHERE seq = ?`, seq).Scan(&orig); err != nil {
			t.Fatal(err)
		}
		var changed any
		switch v := orig.(type) {
		case []byte:
			b := slices.Clone(v)
			b[rng.IntN(len(b))] ^= 1 << rng.IntN(8)
			changed = b
		case string:
			switch col {
			case "time":
				tm, _ := time.Parse(timeFormat, v)
				changed = tm.Add(time.Duration(rng.IntN(1e6)+1) * time.Microsecond).Format(timeFormat)
			case "detail":
				changed = fmt.Sprintf(`{"note":"%d"}`, rng.IntN(1000))
			default:
				changed = v + string(rune('a'+rng.IntN(26)))
			}
		default:
			t.Fatalf("column %s: unexpected %T", col, orig)
		}
		exec(t, l, `UPDATE audit_entries SET `+col+` = ? WHERE seq = ?`, changed, seq)
		rep := verify(t, l, pub)
		named := slices.ContainsFunc(rep.Problems, func(p Problem) bool {
			return p.Seq == seq || (col == "hash" && p.Seq == seq+1)
		})
		if !named {
			t.Fatalf("iteration %d: %s of entry %d changed to %v; not reported:\n%s", i, col, seq, changed, rep)
		}
		exec(t, l, `UPDATE audit_entries SET `+col+` = ? WHERE seq = ?`, orig, seq)
	}
	if rep := verify(t, l, pub); !rep.OK() {
		t.Fatalf("after restoring every edit:\n%s", rep)
	}
}

func TestConcurrentAppends(t *testing.T) {
	l, pub, _ := newLog(t, 100)
	var wg sync.WaitGroup
	errs := make(chan error, 50*20)
	for g := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				_, err := l.Append(context.Background(), Entry{Actor: fmt.Sprintf("g%d", g), Tenant: tenants[g%3], Action: "vm.start", Object: fmt.Sprint(i), Result: "ok"})
				if err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	rep := verify(t, l, pub)
	if !rep.OK() || rep.Entries != 1000 || rep.LastSeq != 1000 || rep.Checkpoints != 10 {
		t.Fatalf("after concurrent appends:\n%s%+v", rep, rep)
	}
}

func TestListFilters(t *testing.T) {
	l, _, _ := newLog(t, 100)
	fill(t, l, 30) // tenants cycle globex, "", acme by seq%3 = 1, 2, 0
	ctx := context.Background()

	all, err := l.List(ctx, Filter{})
	if err != nil || len(all) != 30 {
		t.Fatalf("operator list: %d entries, %v", len(all), err)
	}
	acme, err := l.List(ctx, Filter{Tenant: "acme"})
	if err != nil || len(acme) != 10 {
		t.Fatalf("acme: %d entries, %v", len(acme), err)
	}
	for _, e := range acme {
		if e.Tenant != "acme" {
			t.Errorf("acme sees entry %d of tenant %q", e.Seq, e.Tenant)
		}
		if e.Hash != e.ComputeHash() {
			t.Errorf("entry %d read back differs from what was hashed", e.Seq)
		}
	}
	page, err := l.List(ctx, Filter{Tenant: "acme", After: acme[3].Seq, Limit: 2})
	if err != nil || len(page) != 2 || page[0].Seq != acme[4].Seq || page[1].Seq != acme[5].Seq {
		t.Fatalf("paged: %+v %v", page, err)
	}
	if e := all[1]; e.Detail["field"] != "ttl" || e.Detail["to"] != "2" {
		t.Errorf("detail not read back: %v", e.Detail)
	}
	none, err := l.List(ctx, Filter{Tenant: "initech"})
	if err != nil || len(none) != 0 {
		t.Fatalf("unknown tenant: %v %v", none, err)
	}
}

func TestDetailRejectsSecrets(t *testing.T) {
	l, _, _ := newLog(t, 100)
	for _, tt := range []struct {
		key string
		bad bool
	}{
		{"password", true}, {"NewPassword", true}, {"client_secret", true}, {"Token", true},
		{"api-key", true}, {"SSHKey", true}, {"credentials", true},
		{"field", false}, {"ttl", false}, {"zone", false},
	} {
		_, err := l.Append(context.Background(), Entry{Actor: "a", Action: "x", Detail: map[string]string{tt.key: "v"}})
		if got := errors.Is(err, ErrSecretInDetail); got != tt.bad {
			t.Errorf("detail key %q: err %v, want rejected=%v", tt.key, err, tt.bad)
		}
	}
}

func TestVerifyWithWrongKey(t *testing.T) {
	l, _, _ := newLog(t, 10)
	fill(t, l, 20)
	rep := verify(t, l, seedKey(9).Public().(ed25519.PublicKey))
	if len(rep.Problems) != 2 || rep.Problems[0].Kind != BadSignature || rep.Problems[1].Kind != BadSignature {
		t.Fatalf("verifying with another key:\n%s", rep)
	}
}
