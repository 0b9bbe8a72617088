package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/audit"
	"github.com/holdfast/holdfast/internal/server"
	"github.com/holdfast/holdfast/internal/sqldb"
)

// TestAuditVerify: `holdfast audit verify` passes an intact log and names
// the entry an attacker edited, inserted, or deleted in the database file.
func TestAuditVerify(t *testing.T) {
	state := t.TempDir()
	dir := serveLogins(t, state, 12)
	stdout, _, err := run(t, "audit", "verify", "../../examples/tasmanian", "--state-dir", state)
	if err != nil || !strings.Contains(stdout, "12 entries") || !strings.Contains(stdout, ": OK") {
		t.Fatalf("intact log: %v\n%s", err, stdout)
	}
	db := filepath.Join(dir, "audit.db")
	intact, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, sql, want string
	}{
		{"edited", `UPDATE audit_entries SET actor = 'mallory' WHERE seq = 4`, "entry 4"},
		{"deleted", `DELETE FROM audit_entries WHERE seq = 7`, "entry 7"},
		{"reordered", `UPDATE audit_entries SET seq = -5 WHERE seq = 5; UPDATE audit_entries SET seq = 5 WHERE seq = 6; UPDATE audit_entries SET seq = 6 WHERE seq = -5`, "entry 5"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := os.WriteFile(db, intact, 0o600); err != nil { // each case tampers with the intact log
				t.Fatal(err)
			}
			tamper(t, db, c.sql)
			stdout, _, err := run(t, "audit", "verify", "../../examples/tasmanian", "--state-dir", state, "-o", "json")
			if err == nil {
				t.Fatalf("a tampered log verified: %s", stdout)
			}
			var rep audit.Report
			if jerr := json.Unmarshal([]byte(stdout), &rep); jerr != nil || rep.OK() || !strings.Contains(stdout, c.want) {
				t.Fatalf("report does not name %q: %v\n%s", c.want, jerr, stdout)
			}
		})
	}
}

// TestAuditVerifyAgainstPublished: the three tamperings of issue 10
// (1.3) that the database alone cannot show — the log emptied, the log cut
// back past a checkpoint that was deleted too, entry 5 edited with every
// later hash recomputed and every checkpoint dropped — are each found and
// named by `audit verify --checkpoints` against a copy of the checkpoints
// the server published as it made them.
func TestAuditVerifyAgainstPublished(t *testing.T) {
	state := t.TempDir()
	serveLogins(t, state, 6)        // entries 1-6; the shutdown signs 6
	dir := serveLogins(t, state, 6) // entries 7-12; the shutdown signs 12
	// The operator's copy, shipped off the host as the server wrote it.
	published, err := os.ReadFile(filepath.Join(dir, "audit-checkpoints.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	cps := filepath.Join(t.TempDir(), "checkpoints.jsonl")
	if err := os.WriteFile(cps, published, 0o600); err != nil {
		t.Fatal(err)
	}
	verify := func(t *testing.T, args ...string) (audit.Report, string, error) {
		t.Helper()
		stdout, _, err := run(t, append([]string{"audit", "verify", "../../examples/tasmanian", "--state-dir", state, "--checkpoints", cps}, args...)...)
		var rep audit.Report
		if args == nil {
			return rep, stdout, err
		}
		if jerr := json.Unmarshal([]byte(stdout), &rep); jerr != nil {
			t.Fatalf("-o json: %v\n%s", jerr, stdout)
		}
		return rep, stdout, err
	}
	if _, stdout, err := verify(t); err != nil || !strings.Contains(stdout, "12 entries") || !strings.Contains(stdout, "2 published") || !strings.Contains(stdout, ": OK") {
		t.Fatalf("intact log against the published checkpoints: %v\n%s", err, stdout)
	}
	db := filepath.Join(dir, "audit.db")
	intact, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		tamper func(t *testing.T)
		kind   audit.Kind
		want   string
	}{
		{"emptied", func(t *testing.T) { tamper(t, db, `DELETE FROM audit_entries; DELETE FROM audit_checkpoints`) },
			audit.Truncated, "log ends at 0 but published checkpoint at 12 says 12 existed — entries 1-12 deleted"},
		{"cut back past a deleted checkpoint", func(t *testing.T) {
			tamper(t, db, `DELETE FROM audit_entries WHERE seq > 6; DELETE FROM audit_checkpoints WHERE seq > 6`)
		}, audit.Truncated, "log ends at 6 but published checkpoint at 12 says 12 existed — entries 7-12 deleted"},
		{"entry 5 rewritten, checkpoints dropped", func(t *testing.T) { rewriteFrom(t, db, 5) },
			audit.CheckpointMismatch, "published checkpoint at 6 (line 1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := os.WriteFile(db, intact, 0o600); err != nil { // each case tampers with the intact log
				t.Fatal(err)
			}
			// Both server files are gone or rewritten too, as an attacker
			// on the host would leave them: only the copy is trusted.
			if err := os.Remove(filepath.Join(dir, "audit-checkpoints.jsonl")); err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
			c.tamper(t)
			rep, stdout, err := verify(t, "-o", "json")
			if err == nil || rep.OK() {
				t.Fatalf("a tampered log verified: %v\n%s", err, stdout)
			}
			found := false
			for _, p := range rep.Problems {
				found = found || p.Kind == c.kind && strings.Contains(p.Msg, c.want)
			}
			if !found {
				t.Fatalf("no %s problem says %q:\n%s", c.kind, c.want, stdout)
			}
		})
	}
}

// TestAuditVerifyStaleTail: without a copy of the published checkpoints,
// a log whose entries are older than the checkpoint interval but covered
// by no checkpoint, or an empty log, does not verify — the three
// tamperings say OK today. What the database alone cannot show (a log cut
// back exactly to a checkpoint) is stated in the report.
func TestAuditVerifyStaleTail(t *testing.T) {
	state := t.TempDir()
	anHourAgo := func() time.Time { return time.Now().Add(-time.Hour) }
	serveWith(t, server.Config{StateDir: state, Now: anHourAgo}, 6)
	dir := serveWith(t, server.Config{StateDir: state, Now: anHourAgo}, 6)
	db := filepath.Join(dir, "audit.db")
	intact, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		tamper func(t *testing.T)
		kind   audit.Kind
		want   string
	}{
		{"emptied", func(t *testing.T) { tamper(t, db, `DELETE FROM audit_entries; DELETE FROM audit_checkpoints`) },
			audit.Empty, "the log is empty"},
		{"cut back past a deleted checkpoint", func(t *testing.T) {
			tamper(t, db, `DELETE FROM audit_entries WHERE seq > 9; DELETE FROM audit_checkpoints WHERE seq > 6`)
		}, audit.Uncovered, "entries 7-9: no checkpoint covers them"},
		{"entry 5 rewritten, checkpoints dropped", func(t *testing.T) { rewriteFrom(t, db, 5) },
			audit.Uncovered, "entries 1-12: no checkpoint covers them"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := os.WriteFile(db, intact, 0o600); err != nil {
				t.Fatal(err)
			}
			c.tamper(t)
			stdout, _, err := run(t, "audit", "verify", "../../examples/tasmanian", "--state-dir", state, "-o", "json")
			var rep audit.Report
			if jerr := json.Unmarshal([]byte(stdout), &rep); err == nil || jerr != nil || rep.OK() {
				t.Fatalf("a tampered log verified: %v %v\n%s", err, jerr, stdout)
			}
			found := false
			for _, p := range rep.Problems {
				found = found || p.Kind == c.kind && strings.Contains(p.Msg, c.want)
			}
			if !found {
				t.Fatalf("no %s problem says %q:\n%s", c.kind, c.want, stdout)
			}
		})
	}
	t.Run("cut back to a checkpoint", func(t *testing.T) {
		if err := os.WriteFile(db, intact, 0o600); err != nil {
			t.Fatal(err)
		}
		tamper(t, db, `DELETE FROM audit_entries WHERE seq > 6; DELETE FROM audit_checkpoints WHERE seq > 6`)
		stdout, _, err := run(t, "audit", "verify", "../../examples/tasmanian", "--state-dir", state)
		if err != nil || !strings.Contains(stdout, "not compared with published checkpoints") {
			t.Fatalf("the report does not say what it could not check: %v\n%s", err, stdout)
		}
	})
}

// rewriteFrom edits entry seq, recomputes the hash and prev of it and of
// every later entry and drops every checkpoint, as an attacker with write
// access to the database (and without the signing key) would.
func rewriteFrom(t *testing.T, path string, seq int64) {
	t.Helper()
	db, err := sqldb.Open(context.Background(), sqldb.In("", path, "audit"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`UPDATE audit_entries SET actor = 'admin', result = 'ok' WHERE seq = ?; DELETE FROM audit_checkpoints`, seq); err != nil {
		t.Fatal(err)
	}
	rows, err := db.Query(`SELECT seq, time, actor, tenant, action, object, source, result, detail, prev FROM audit_entries ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	var es []audit.Entry
	for rows.Next() {
		var e audit.Entry
		var tm, detail string
		var prev []byte
		if err := rows.Scan(&e.Seq, &tm, &e.Actor, &e.Tenant, &e.Action, &e.Object, &e.Source, &e.Result, &detail, &prev); err != nil {
			t.Fatal(err)
		}
		if e.Time, err = time.Parse(time.RFC3339Nano, tm); err != nil {
			t.Fatal(err)
		}
		if detail != "" {
			if err := json.Unmarshal([]byte(detail), &e.Detail); err != nil {
				t.Fatal(err)
			}
		}
		e.Prev = [32]byte(prev)
		es = append(es, e)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	var prev [32]byte
	for _, e := range es {
		if e.Seq >= seq {
			e.Prev = prev
			e.Hash = e.ComputeHash()
			if _, err := db.Exec(`UPDATE audit_entries SET prev = ?, hash = ? WHERE seq = ?`, e.Prev[:], e.Hash[:], e.Seq); err != nil {
				t.Fatal(err)
			}
		}
		var h []byte
		if err := db.QueryRow(`SELECT hash FROM audit_entries WHERE seq = ?`, e.Seq).Scan(&h); err != nil {
			t.Fatal(err)
		}
		prev = [32]byte(h)
	}
}

// serveLogins runs a server and makes n failed logins against it, each
// an audit entry, then shuts it down (which signs the last entry).
func serveLogins(t *testing.T, state string, n int) string {
	t.Helper()
	return serveWith(t, server.Config{StateDir: state}, n)
}

// serveWith is serveLogins with more of the server's configuration.
func serveWith(t *testing.T, cfg server.Config, n int) string {
	t.Helper()
	cfg.SpecPath = "../../examples/tasmanian"
	s, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	for range n {
		req := httptest.NewRequest(http.MethodPost, "https://localhost/v1/auth/login", strings.NewReader(`{"user":"nobody","password":"not-the-password"}`))
		w := httptest.NewRecorder()
		s.Handler().ServeHTTP(w, req)
		if w.Code != http.StatusUnauthorized && w.Code != http.StatusTooManyRequests {
			t.Fatalf("login: %d %s", w.Code, w.Body)
		}
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s.Dir()
}

func tamper(t *testing.T, path, q string) {
	t.Helper()
	db, err := sqldb.Open(context.Background(), sqldb.In("", path, "audit"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(q); err != nil {
		t.Fatal(err)
	}
}

// TestServeAuditWitness: `serve --audit-witness` sends the published
// checkpoints to a witness (a real HTTP server on loopback), the lines a
// stop left unsent after the next start; the witness's copy is what
// `audit verify --checkpoints` checks the log against.
func TestServeAuditWitness(t *testing.T) {
	var mu sync.Mutex
	var kept []byte
	got := make(chan struct{}, 1024)
	witness := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil || r.Header.Get("Content-Type") != "application/jsonl" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		mu.Lock()
		for _, line := range bytes.SplitAfter(body, []byte("\n")) {
			if !bytes.Contains(kept, line) { // a line may come twice; keep the first
				kept = append(kept, line...)
			}
		}
		mu.Unlock()
		got <- struct{}{}
	}))
	defer witness.Close()
	state := t.TempDir()
	if _, _, err := run(t, "serve", "../../examples/tasmanian", "--state-dir", state, "--audit-witness", "ftp://witness.example/"); err == nil ||
		!strings.Contains(err.Error(), "witness URL") {
		t.Fatalf("serve with a witness that is not http(s): %v", err)
	}
	cfg := server.Config{StateDir: state, AuditWitness: witness.URL}
	serveWith(t, cfg, 6) // its shutdown signs entry 6
	cfg.SpecPath = "../../examples/tasmanian"
	s, err := server.New(cfg) // the next start sends what the witness lacks
	if err != nil {
		t.Fatal(err)
	}
	published, err := os.ReadFile(filepath.Join(s.Dir(), server.AuditCheckpointsFile))
	if err != nil || len(published) == 0 {
		t.Fatalf("published: %q %v", published, err)
	}
	deadline := time.After(30 * time.Second)
	for {
		mu.Lock()
		done := bytes.Equal(kept, published)
		mu.Unlock()
		if done {
			break
		}
		select {
		case <-got:
		case <-deadline:
			mu.Lock()
			defer mu.Unlock()
			t.Fatalf("the witness holds %q, want %q", kept, published)
		}
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	cps := filepath.Join(t.TempDir(), "witness.jsonl")
	if err := os.WriteFile(cps, kept, 0o600); err != nil {
		t.Fatal(err)
	}
	stdout, _, err := run(t, "audit", "verify", "../../examples/tasmanian", "--state-dir", state, "--checkpoints", cps)
	if err != nil || !strings.Contains(stdout, "6 entries") || !strings.Contains(stdout, "1 published (last at 6): OK") {
		t.Fatalf("verify against the witness's copy: %v\n%s", err, stdout)
	}
}
