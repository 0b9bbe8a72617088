package server

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/api"
	"github.com/holdfast/holdfast/internal/sqldb"
)

// TestVerifyAuditRoute: operators see the audit log verified by the
// server, and an entry edited in the database behind its back shows as
// a problem naming that entry; tenant users may not ask.
func TestVerifyAuditRoute(t *testing.T) {
	e := newEnv(t, Config{})
	users := e.tenantWith("acme", nil, map[string]string{"alice": api.RoleTenantAdmin})
	var v api.AuditVerification
	e.must(e.admin, http.StatusOK, "GET", "/v1/audit/verify", nil, &v)
	if !v.OK || v.Entries < 3 || v.LastSeq != v.Entries {
		t.Fatalf("a fresh log: %+v, want OK with the entries so far", v)
	}
	e.must(users["alice"], http.StatusForbidden, "GET", "/v1/audit/verify", nil, nil)

	db, err := sqldb.Open(t.Context(), sqldb.In(e.s.cfg.Database, filepath.Join(e.s.Dir(), "audit.db"), "audit"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`UPDATE audit_entries SET actor = 'mallory' WHERE seq = 2`); err != nil {
		t.Fatal(err)
	}
	e.must(e.admin, http.StatusOK, "GET", "/v1/audit/verify", nil, &v)
	if v.OK || len(v.Problems) == 0 || !strings.HasPrefix(v.Problems[0], "entry 2:") {
		t.Fatalf("after an edit: %+v, want a problem with entry 2", v)
	}
}
