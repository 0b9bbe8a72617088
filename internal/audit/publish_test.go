package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/sqldb/sqldbtest"
)

// newPublishing is newLog with checkpoints published to a file; it
// returns that file's path too.
func newPublishing(t *testing.T, every int64, opts ...Option) (*Log, ed25519.PublicKey, string, string) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "audit-checkpoints.jsonl")
	l, pub, path := newLog(t, every, append([]Option{PublishTo(file), Name("tasmanian")}, opts...)...)
	return l, pub, path, file
}

// reopen closes l and opens its database again with the options a server
// would give it; the caller closes what it returns.
func reopen(t *testing.T, l *Log, path, file string, opts ...Option) *Log {
	t.Helper()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l2, err := Open(sqldbtest.Place(t, path, "audit"), seedKey(7), append([]Option{CheckpointEvery(100), Clock(stepClock()), manualTimers(&timers{}), PublishTo(file), Name("tasmanian")}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return l2
}

func readPublished(t *testing.T, file string) []Published {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ps, err := ReadPublished(f)
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

func seqs(ps []Published) []int64 {
	var out []int64
	for _, p := range ps {
		out = append(out, p.Seq)
	}
	return out
}

func verifyAgainst(t *testing.T, l *Log, pub ed25519.PublicKey, ps []Published) Report {
	t.Helper()
	rep, err := l.Verify(context.Background(), pub, AgainstPublished(ps))
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// TestCheckpointsArePublished: every checkpoint, whether every N entries
// or on demand, is a line of the published file as soon as it is made,
// signed, naming the log and its key.
func TestCheckpointsArePublished(t *testing.T) {
	l, pub, _, file := newPublishing(t, 100)
	fill(t, l, 250)
	if got := seqs(readPublished(t, file)); !slices.Equal(got, []int64{100, 200}) {
		t.Fatalf("published after 250 appends: %v, want [100 200]", got)
	}
	cp, err := l.Checkpoint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ps := readPublished(t, file)
	if got := seqs(ps); !slices.Equal(got, []int64{100, 200, 250}) {
		t.Fatalf("published after a checkpoint: %v", got)
	}
	last := ps[2]
	if last.Hash != cp.Hash || !last.Time.Equal(cp.Time) || !bytes.Equal(last.Sig, cp.Sig) || last.Log != "tasmanian" || !pub.Equal(last.Key) || last.Line != 3 {
		t.Errorf("published %+v, made %+v", last, cp)
	}
	if _, err := l.Checkpoint(context.Background()); err != nil { // the newest is signed already
		t.Fatal(err)
	}
	if n := len(readPublished(t, file)); n != 3 {
		t.Errorf("a checkpoint that was not made was published: %d lines", n)
	}
	if st, err := os.Stat(file); err != nil || st.Mode().Perm()&0o022 != 0 {
		t.Errorf("published file: %v %v (nothing secret, but only the server writes it)", st.Mode(), err)
	}
	if rep := verifyAgainst(t, l, pub, ps); !rep.OK() || rep.Published != 3 || rep.LastPublished != 250 || rep.Covered != 250 {
		t.Fatalf("intact log against its published checkpoints:\n%s%+v", rep, rep)
	}
}

// TestVerifyAgainstPublished: what an attacker with write access to the
// database does, and what the published copy shows of it. The first
// three are issue 10 (1.3); each verified OK before checkpoints were
// published.
func TestVerifyAgainstPublished(t *testing.T) {
	tests := []struct {
		name   string
		tamper func(t *testing.T, l *Log)
		want   []found
		msg    string // a problem's message contains it
	}{{
		name:   "emptied",
		tamper: func(t *testing.T, l *Log) { exec(t, l, `DELETE FROM audit_entries; DELETE FROM audit_checkpoints`) },
		want:   []found{{Truncated, 1}},
		msg:    "log ends at 0 but published checkpoint at 250 says 250 existed — entries 1-250 deleted (line 3 of the published checkpoints)",
	}, {
		name: "cut back past a checkpoint, which was deleted too",
		tamper: func(t *testing.T, l *Log) {
			exec(t, l, `DELETE FROM audit_entries WHERE seq > 150; DELETE FROM audit_checkpoints WHERE seq > 150`)
		},
		want: []found{{Truncated, 151}},
		msg:  "log ends at 150 but published checkpoint at 250 says 250 existed — entries 151-250 deleted",
	}, {
		name: "entry 5 edited, the chain after it recomputed, every checkpoint dropped",
		tamper: func(t *testing.T, l *Log) {
			exec(t, l, `UPDATE audit_entries SET actor = 'admin' WHERE seq = 5; DELETE FROM audit_checkpoints`)
			rehash(t, l, 5)
		},
		// The stored checkpoints at multiples of 100 are missed too.
		want: []found{{CheckpointMismatch, 100}, {CheckpointMissing, 100}, {CheckpointMismatch, 200}, {CheckpointMissing, 200}, {CheckpointMismatch, 250}},
		msg:  "published checkpoint at 100 (line 1, signed ",
	}, {
		name: "cut back exactly to a checkpoint, the newer one deleted",
		tamper: func(t *testing.T, l *Log) {
			exec(t, l, `DELETE FROM audit_entries WHERE seq > 200; DELETE FROM audit_checkpoints WHERE seq > 200`)
		},
		want: []found{{Truncated, 201}},
	}, {
		name:   "a checkpoint deleted from the database",
		tamper: func(t *testing.T, l *Log) { exec(t, l, `DELETE FROM audit_checkpoints WHERE seq = 250`) },
		want:   []found{{CheckpointMissing, 250}},
		msg:    "checkpoint at 250 missing from the database (published checkpoint at 250 (line 3",
	}, {
		// The server carried on after the attack and signed the new
		// history: the copy holds both, and the old one no longer matches.
		name: "cut back and refilled by the running server",
		tamper: func(t *testing.T, l *Log) {
			exec(t, l, `DELETE FROM audit_entries WHERE seq > 150; DELETE FROM audit_checkpoints WHERE seq > 150`)
			fill(t, l, 110)
			if _, err := l.Checkpoint(context.Background()); err != nil {
				t.Fatal(err)
			}
		},
		want: []found{{CheckpointMismatch, 200}, {CheckpointMismatch, 250}},
		msg:  "published checkpoint at 250 (line 3, signed ",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, pub, _, file := newPublishing(t, 100)
			fill(t, l, 250)
			if _, err := l.Checkpoint(context.Background()); err != nil {
				t.Fatal(err)
			}
			tt.tamper(t, l)
			// The copy is the file as shipped, lines the server added
			// after the attack included.
			rep := verifyAgainst(t, l, pub, readPublished(t, file))
			var got []found
			var msgs []string
			for _, p := range rep.Problems {
				got = append(got, found{p.Kind, p.Seq})
				msgs = append(msgs, p.Msg)
			}
			sortFound(got)
			if !slices.Equal(got, tt.want) {
				t.Errorf("problems %v, want %v\n%s", got, tt.want, rep)
			}
			if tt.msg != "" && !slices.ContainsFunc(msgs, func(m string) bool { return strings.Contains(m, tt.msg) }) {
				t.Errorf("no problem says %q:\n%s", tt.msg, rep)
			}
		})
	}
}

// TestVerifyRejectsForeignPublished: a published line must be signed by
// the log's key; one altered, or from another log, is named by its line.
func TestVerifyRejectsForeignPublished(t *testing.T) {
	l, pub, _, file := newPublishing(t, 10)
	fill(t, l, 20)
	ps := readPublished(t, file)
	ps[0].Hash[0] ^= 1
	other := seedKey(9)
	ps[1].Key = other.Public().(ed25519.PublicKey)
	ps[1].Sig = ed25519.Sign(other, signedBytes(ps[1].Seq, ps[1].Hash, ps[1].Time.Format(timeFormat)))
	rep := verifyAgainst(t, l, pub, ps)
	if len(rep.Problems) != 2 || rep.Problems[0].Kind != BadSignature || rep.Problems[0].Line != 1 ||
		rep.Problems[1].Kind != BadSignature || rep.Problems[1].Line != 2 || !strings.Contains(rep.Problems[1].Msg, "another key") {
		t.Fatalf("altered and foreign lines:\n%s", rep)
	}
}

// TestVerifyEmptyLog: an empty log verifies only against a published
// copy that is empty too; without one, nothing shows it was not emptied.
func TestVerifyEmptyLog(t *testing.T) {
	l, pub, _, file := newPublishing(t, 100)
	rep := verify(t, l, pub)
	if len(rep.Problems) != 1 || rep.Problems[0].Kind != Empty {
		t.Fatalf("empty log, no published copy:\n%s", rep)
	}
	if rep := verifyAgainst(t, l, pub, readPublished(t, file)); !rep.OK() {
		t.Fatalf("empty log, empty published copy:\n%s", rep)
	}
}

// TestVerifyUncoveredTail: the writer signs every entry within the
// checkpoint interval, so without a published copy, entries older than
// that which no checkpoint covers — or dated in the future — do not
// verify; younger ones, and an idle log whose newest entry is signed, do.
func TestVerifyUncoveredTail(t *testing.T) {
	var now atomic.Int64
	now.Store(fillBase.UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()).UTC() }
	advance := func(d time.Duration) { now.Add(int64(d)) }
	l, pub, _ := newLog(t, 100, Clock(clock), CheckpointInterval(10*time.Minute))
	fill(t, l, 30)
	advance(10 * time.Minute)
	rep := verify(t, l, pub)
	if !rep.OK() || !slices.ContainsFunc(rep.Limits, func(s string) bool {
		return strings.HasPrefix(s, "entries 1-30: younger than the checkpoint interval (10m0s)")
	}) {
		t.Fatalf("entries within the interval (and a minute's slack):\n%s", rep)
	}
	advance(time.Minute + time.Second)
	rep = verify(t, l, pub)
	if len(rep.Problems) != 1 || rep.Problems[0].Kind != Uncovered || rep.Problems[0].Seq != 1 || rep.Problems[0].Last != 30 ||
		!strings.HasPrefix(rep.Problems[0].Msg, "entries 1-30: no checkpoint covers them, yet entry 1 was written at 2025-03-01T12:00:00Z, more than 10m0s ago") {
		t.Fatalf("entries older than the interval with no checkpoint:\n%s", rep)
	}
	if _, err := l.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	advance(30 * 24 * time.Hour) // idle: nothing new to sign
	if rep := verify(t, l, pub); !rep.OK() || rep.Covered != 30 {
		t.Fatalf("an idle log, its newest entry signed:\n%s", rep)
	}
	// Entries after the checkpoint, rewritten to look recent: dated in
	// the future, they give themselves away.
	fill(t, l, 5)
	exec(t, l, `UPDATE audit_entries SET time = ? WHERE seq = 33`, clock().Add(time.Hour).Format(timeFormat))
	rehash(t, l, 33)
	rep = verify(t, l, pub)
	if len(rep.Problems) != 1 || rep.Problems[0].Kind != Uncovered || rep.Problems[0].Seq != 31 ||
		!strings.Contains(rep.Problems[0].Msg, "entry 33 is dated") || !strings.Contains(rep.Problems[0].Msg, "in the future") {
		t.Fatalf("an unsigned entry dated in the future:\n%s", rep)
	}
}

// TestCheckpointWithinInterval: an entry no checkpoint covers arms a timer
// of the checkpoint interval; when it fires the newest entry is signed
// and published, covering every entry appended meanwhile. An idle log
// arms nothing.
func TestCheckpointWithinInterval(t *testing.T) {
	ts := &timers{}
	l, pub, _, file := newPublishing(t, 100, manualTimers(ts), CheckpointInterval(7*time.Minute))
	if got := ts.fire(); got != nil {
		t.Fatalf("an empty log armed %v", got)
	}
	fill(t, l, 3)
	if got := ts.fire(); !slices.Equal(got, []time.Duration{7 * time.Minute}) {
		t.Fatalf("three appends armed %v, want one timer of the interval", got)
	}
	if got := seqs(readPublished(t, file)); !slices.Equal(got, []int64{3}) {
		t.Fatalf("after the timer: published %v, want [3]", got)
	}
	if got := ts.fire(); got != nil {
		t.Fatalf("an idle log armed %v", got)
	}
	fill(t, l, 97) // 4-100: the 100th is signed on append, but 4-99 armed the timer first
	ts.fire()
	fill(t, l, 1)
	ts.fire()
	if got := seqs(readPublished(t, file)); !slices.Equal(got, []int64{3, 100, 101}) {
		t.Fatalf("published %v, want [3 100 101]", got)
	}
	if rep := verifyAgainst(t, l, pub, readPublished(t, file)); !rep.OK() || rep.Covered != 101 {
		t.Fatalf("%s", rep)
	}
	// After Close the timer does nothing, even if it was already due.
	fill(t, l, 1)
	l.Close()
	ts.fire()
	if got := seqs(readPublished(t, file)); !slices.Equal(got, []int64{3, 100, 101}) {
		t.Fatalf("a closed log published: %v", got)
	}
}

// TestCrashBeforePublish: a crash between a checkpoint's commit and its
// line leaves the file without it, or with half of it; the next Open
// writes every stored checkpoint the file lacks, once, after cutting off
// the half line. A crash before the shutdown checkpoint is made good by
// signing the newest entry on Open.
func TestCrashBeforePublish(t *testing.T) {
	l, pub, path, file := newPublishing(t, 100)
	t.Cleanup(func() { l.Close() }) // whichever l is open at the end
	fill(t, l, 250)
	if _, err := l.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	intact, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.SplitAfter(intact, []byte("\n"))
	for _, c := range []struct {
		name  string
		state []byte // what the crash left of the file
	}{
		{"the last line never written", bytes.Join(lines[:2], nil)},
		{"the last line half written", append(bytes.Join(lines[:2], nil), lines[2][:len(lines[2])/2]...)},
		{"the file lost", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.state == nil {
				if err := os.Remove(file); err != nil {
					t.Fatal(err)
				}
			} else if err := os.WriteFile(file, c.state, 0o644); err != nil {
				t.Fatal(err)
			}
			l = reopen(t, l, path, file)
			got, err := os.ReadFile(file)
			if err != nil || !bytes.Equal(got, intact) {
				t.Fatalf("after reopening the file is\n%s\nwant\n%s", got, intact)
			}
			if rep := verifyAgainst(t, l, pub, readPublished(t, file)); !rep.OK() {
				t.Fatalf("%s", rep)
			}
		})
	}
	t.Run("no shutdown checkpoint", func(t *testing.T) {
		fill(t, l, 5) // 251-255, unsigned; Close does not sign them
		l = reopen(t, l, path, file)
		if got := seqs(readPublished(t, file)); !slices.Equal(got, []int64{100, 200, 250, 255}) {
			t.Fatalf("published after reopening: %v, want the newest entry signed", got)
		}
	})
}

// TestPublishRetriesAfterAFailedWrite: a line that could not be written
// (a full disk) does not fail the append, leaves no fragment, and is
// written with the next checkpoint.
func TestPublishRetriesAfterAFailedWrite(t *testing.T) {
	l, pub, _, file := newPublishing(t, 10)
	fill(t, l, 10)
	good := l.pub
	ro, err := os.Open(file) // writes to it fail
	if err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	l.pub = ro
	l.mu.Unlock()
	fill(t, l, 10) // seq 20 is signed; its line cannot be written
	if got := seqs(readPublished(t, file)); !slices.Equal(got, []int64{10}) {
		t.Fatalf("published %v", got)
	}
	l.mu.Lock()
	l.pub = good
	l.mu.Unlock()
	ro.Close()
	fill(t, l, 10)
	if got := seqs(readPublished(t, file)); !slices.Equal(got, []int64{10, 20, 30}) {
		t.Fatalf("published %v, want the line that failed written before the next", got)
	}
	if rep := verifyAgainst(t, l, pub, readPublished(t, file)); !rep.OK() {
		t.Fatalf("%s", rep)
	}
}

func TestReadPublished(t *testing.T) {
	l, _, _, file := newPublishing(t, 10)
	fill(t, l, 30)
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.SplitAfter(data, []byte("\n"))
	ps, err := ReadPublished(bytes.NewReader(data))
	if err != nil || len(ps) != 3 || ps[2].Line != 3 {
		t.Fatalf("%d checkpoints, %v", len(ps), err)
	}
	again, err := json.Marshal(ps[1])
	if err != nil || string(again)+"\n" != string(lines[1]) {
		t.Errorf("a line does not survive a round trip:\n%s%s\n", lines[1], again)
	}
	// A copy taken while a line was being written: the fragment is not a
	// checkpoint yet. Blank lines are skipped, and lines keep their number.
	torn := append(bytes.Join([][]byte{lines[0], []byte("\n"), lines[1]}, nil), lines[2][:40]...)
	if ps, err := ReadPublished(bytes.NewReader(torn)); err != nil || len(ps) != 2 || ps[1].Line != 3 {
		t.Errorf("torn copy: %d checkpoints, %v", len(ps), err)
	}
	for name, bad := range map[string]string{
		"not JSON":             "checkpoint 10\n",
		"short hash":           `{"seq":1,"time":"2025-03-01T12:00:00Z","hash":"00","sig":"","log":"","key":""}` + "\n",
		"time not canonical":   strings.Replace(string(lines[0]), "Z\"", "+00:00\"", 1),
		"seq not a seq number": strings.Replace(string(lines[0]), `"seq":10`, `"seq":0`, 1),
	} {
		_, err := ReadPublished(strings.NewReader(string(lines[0]) + bad + string(lines[1])))
		if err == nil || !strings.HasPrefix(err.Error(), "line 2: ") {
			t.Errorf("%s: %v, want an error naming line 2", name, err)
		}
	}
}

// TestPublishNeedsTheKey: options that publish are refused where nothing
// is signed, and a witness address is checked once, when configured.
func TestPublishNeedsTheKey(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "cps.jsonl")
	for name, c := range map[string]struct {
		key  ed25519.PrivateKey
		opts []Option
		want string
	}{
		"publish without a key":   {nil, []Option{PublishTo(file)}, "needs the signing key"},
		"witness without a file":  {seedKey(7), []Option{Witness("https://witness.example/")}, "needs the published checkpoints file"},
		"witness not http":        {seedKey(7), []Option{PublishTo(file), Witness("ftp://witness.example/")}, "want http:// or https://"},
		"witness without a host":  {seedKey(7), []Option{PublishTo(file), Witness("https:///x")}, "want http:// or https://"},
		"witness password hidden": {seedKey(7), []Option{PublishTo(file), Witness("gopher://u:hunter2@witness.example/")}, "xxxxx"},
	} {
		l, err := Open(sqldbtest.Place(t, filepath.Join(dir, "audit.db"), "audit"), c.key, c.opts...)
		if err == nil {
			l.Close()
		}
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: %v, want an error saying %q", name, err, c.want)
		}
	}
}
