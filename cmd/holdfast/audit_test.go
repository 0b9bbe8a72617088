package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/audit"
	"github.com/holdfast/holdfast/internal/server"
	"github.com/holdfast/holdfast/internal/store"
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

// serveLogins runs a server and makes n failed logins against it, each
// an audit entry, then shuts it down (which signs the last entry).
func serveLogins(t *testing.T, state string, n int) string {
	t.Helper()
	s, err := server.New(server.Config{SpecPath: "../../examples/tasmanian", StateDir: state})
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
	db, err := store.OpenDB(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(q); err != nil {
		t.Fatal(err)
	}
}
