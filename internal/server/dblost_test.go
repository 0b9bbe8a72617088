package server

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/holdfast/holdfast/api"
	"github.com/holdfast/holdfast/internal/sqldb/sqldbtest"
)

// TestDatabaseLostAndBack: with its PostgreSQL stopped, the server
// answers every request at once with a 503 problem (never a hang) and
// /readyz says the database is unreachable; started again, the server
// serves by itself, with nothing it had accepted lost.
func TestDatabaseLostAndBack(t *testing.T) {
	pg := sqldbtest.StartServer(t)
	e := newEnv(t, Config{Database: pg.URL})
	e.must(e.admin, http.StatusCreated, "POST", "/v1/tenants", api.TenantCreate{Name: "acme"}, nil)

	pg.Stop()
	for _, req := range []struct{ method, path string }{{"GET", "/v1/tenants"}, {"POST", "/v1/tenants"}} {
		status, h, b := e.do(e.admin, req.method, req.path, api.TenantCreate{Name: "lost"})
		if status != http.StatusServiceUnavailable {
			t.Fatalf("%s %s with the database stopped: %d, want 503: %s", req.method, req.path, status, b)
		}
		if p := e.problemOf(h, b); p.Type != problemType("database-unavailable") {
			t.Errorf("%s %s: problem %+v, want database-unavailable", req.method, req.path, p)
		}
	}
	status, _, b := e.do(cred{}, "GET", "/readyz", nil)
	var h api.Health
	if err := json.Unmarshal(b, &h); err != nil || status != http.StatusServiceUnavailable || h.Checks["database"] != "unreachable" {
		t.Errorf("/readyz with the database stopped: %d %s", status, b)
	}

	pg.Start()
	var list api.Page[api.Tenant]
	e.must(e.admin, http.StatusOK, "GET", "/v1/tenants", nil, &list)
	if len(list.Items) != 1 || list.Items[0].Name != "acme" {
		t.Errorf("tenants once the database is back: %+v, want acme alone", list.Items)
	}
	e.must(e.admin, http.StatusCreated, "POST", "/v1/tenants", api.TenantCreate{Name: "back"}, nil)
	e.must(cred{}, http.StatusOK, "GET", "/readyz", nil, nil)
}
