package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast/api"
	"github.com/holdfast/holdfast/internal/auth"
	"github.com/holdfast/holdfast/internal/sqldb/sqldbtest"
	"github.com/holdfast/holdfast/internal/testenv"
)

// replica starts another server on e's database, as a second `holdfast
// serve` on another machine would: its own state directory, the same
// master key (copied, as docs/ha.md says), the same clock; change, when
// not nil, alters that. Unless changed it does not reconcile.
func (e *env) replica(change func(*Config)) *env {
	t := e.t
	t.Helper()
	cfg := e.s.cfg
	cfg.StateDir = t.TempDir()
	cfg.Realize = false
	if change != nil {
		change(&cfg)
	}
	if dir := Dir(cfg.StateDir, e.s.cloud); dir != e.s.dir {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		key, err := os.ReadFile(filepath.Join(e.s.dir, "master.key"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "master.key"), key, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if s.Bootstrap.User != "" {
		t.Fatal("a replica made another operator")
	}
	s.Start()
	ts := httptest.NewTLSServer(s.Handler())
	t.Cleanup(func() {
		ts.Close()
		if err := s.Shutdown(context.Background()); err != nil { // t.Context is done by now
			t.Error(err)
		}
	})
	return &env{t: t, s: s, ts: ts, admin: e.admin, clock: e.clock}
}

// TestReplicasShareEverything: two replicas on one PostgreSQL database
// answer for each other — what is made through one is seen through the
// other, a revocation through one holds on the other at the next request,
// a signed request is accepted once whichever replica it is sent to, and
// an event caused through one reaches a stream open on the other.
func TestReplicasShareEverything(t *testing.T) {
	if !sqldbtest.Postgres() {
		t.Skip("replicas share a PostgreSQL database: set " + sqldbtest.Env + " (CI does)")
	}
	a := newEnv(t, Config{})
	b := a.replica(nil)

	// An event stream on B hears of a tenant made through A.
	events := b.stream(t, b.admin, "")
	a.must(a.admin, http.StatusCreated, "POST", "/v1/tenants", api.TenantCreate{Name: "acme"}, nil)
	if ev := events.next(); ev.Type != "tenant.created" || ev.Tenant != "acme" {
		t.Errorf("B's stream got %+v, want acme's tenant.created", ev)
	}
	var list api.Page[api.Tenant]
	b.must(b.admin, http.StatusOK, "GET", "/v1/tenants", nil, &list)
	if len(list.Items) != 1 || list.Items[0].Name != "acme" {
		t.Fatalf("tenants through B: %+v, want acme", list.Items)
	}

	// A session logged out through B is refused by A.
	users := a.tenantWith("acme2", nil, map[string]string{"alice": "member"})
	alice := users["alice"]
	a.must(alice, http.StatusOK, "GET", "/v1/me", nil, nil)
	b.must(alice, http.StatusNoContent, "POST", "/v1/auth/logout", nil, nil)
	if status, _, _ := a.do(alice, "GET", "/v1/me", nil); status != http.StatusUnauthorized {
		t.Errorf("A answered a session logged out through B: %d, want 401", status)
	}

	// An API key revoked through A is refused by B.
	key := a.apiKey(a.admin)
	b.must(key, http.StatusOK, "GET", "/v1/me", nil, nil)
	a.must(a.admin, http.StatusNoContent, "DELETE", "/v1/me/apikeys/"+key.keyID, nil, nil)
	if status, _, _ := b.do(key, "GET", "/v1/me", nil); status != http.StatusUnauthorized {
		t.Errorf("B answered a key revoked through A: %d, want 401", status)
	}

	// A signed request accepted by A is refused when replayed to B.
	key = a.apiKey(a.admin)
	body := []byte(`{"name":"replayed"}`)
	req, _ := http.NewRequest(http.MethodPost, a.ts.URL+"/v1/tenants", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if err := auth.SignRequest(req, body, key.keyID, key.keySecret, a.clock.now()); err != nil {
		t.Fatal(err)
	}
	replay, _ := http.NewRequest(http.MethodPost, b.ts.URL+"/v1/tenants", bytes.NewReader(body))
	replay.Header = req.Header.Clone()
	for _, c := range []struct {
		e    *env
		req  *http.Request
		want int
	}{{a, req, http.StatusCreated}, {b, replay, http.StatusUnauthorized}} {
		resp, err := c.e.ts.Client().Do(c.req)
		if err != nil {
			t.Fatal(err)
		}
		msg, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s %s: %d, want %d: %s", c.req.Method, c.req.URL, resp.StatusCode, c.want, msg)
		}
	}

	// Both append to one audit chain, at once, and it verifies.
	var wg sync.WaitGroup
	for i := range 10 {
		for j, e := range []*env{a, b} {
			wg.Go(func() {
				name := fmt.Sprintf("t%d-%d", i, j)
				if status, _, msg := e.do(e.admin, "POST", "/v1/tenants", api.TenantCreate{Name: name}); status != http.StatusCreated {
					t.Errorf("create %s through a replica: %d %s", name, status, msg)
				}
			})
		}
	}
	wg.Wait()
	var v api.AuditVerification
	b.must(b.admin, http.StatusOK, "GET", "/v1/audit/verify", nil, &v)
	if !v.OK || v.Entries < 20 {
		t.Errorf("the audit chain both replicas appended to: %+v", v)
	}
}

// role is what /readyz says the replica is.
func (e *env) role() string {
	e.t.Helper()
	_, _, b := e.do(cred{}, "GET", "/readyz", nil)
	var h api.Health
	if err := json.Unmarshal(b, &h); err != nil {
		e.t.Fatalf("/readyz: %v: %s", err, b)
	}
	return h.Role
}

// TestLeaderHandsOver: of two replicas that may reconcile, one leads and
// carries out what is asked through either; when it stops, the other
// leads and carries out what is asked next.
func TestLeaderHandsOver(t *testing.T) {
	if !sqldbtest.Postgres() {
		t.Skip("replicas share a PostgreSQL database: set " + sqldbtest.Env + " (CI does)")
	}
	testenv.NeedRoot(t, "the local engine makes namespaces, bridges, nftables rules and containers")
	state := t.TempDir()
	a := newEnv(t, Config{Realize: true, Resync: -1, StateDir: state, Now: time.Now, LeaseTTL: 3 * time.Second})
	t.Cleanup(func() { destroyCloud(t, a.s.cfg.SpecPath, state, a.s.Cloud()) })
	// The local engine's instances live on this host and under its state
	// directory: replicas on one host share it (docs/ha.md).
	b := a.replica(func(c *Config) { c.StateDir, c.Realize = state, true })
	if ra, rb := a.role(), b.role(); ra != "leader" || rb != "follower" {
		t.Fatalf("roles %q and %q, want leader and follower", ra, rb)
	}
	alice := a.apiKey(a.tenantWith("acme", nil, map[string]string{"alice": api.RoleTenantAdmin})["alice"])
	var op api.Operation
	b.must(alice, http.StatusAccepted, "POST", "/v1/tenants/acme/networks", api.NetworkCreate{Name: "net"}, &op)
	b.wait(alice, op) // asked of the follower, carried out by the leader

	a.ts.Close()
	if err := a.s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	b.must(alice, http.StatusAccepted, "POST", "/v1/tenants/acme/instances",
		api.InstanceCreate{Name: "web", Flavor: "burstable", Template: "debian-12", Network: "net"}, &op)
	b.wait(alice, op)
	if r := b.role(); r != "leader" {
		t.Errorf("the replica left is %q, want leader", r)
	}
	var web api.Instance
	b.must(alice, http.StatusOK, "GET", "/v1/tenants/acme/instances/web", nil, &web)
	if web.Status != "running" {
		t.Errorf("web is %q after the hand-over, want running", web.Status)
	}
}
