package server

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/holdfast/holdfast/api"
)

// TestQuotaRace: 100 parallel creates against a quota of 10 instances
// succeed exactly 10 times; the others are refused with the limit named.
// Then a vCPU quota binds the same way on resize.
func TestQuotaRace(t *testing.T) {
	e := newEnv(t, Config{})
	q := api.Quota{Instances: 10, VCPUs: 1000, MemoryMiB: 1 << 30, DiskGiB: 1 << 20, Networks: 1}
	users := e.tenantWith("acme", &q, map[string]string{"alice": api.RoleTenantAdmin})
	alice := e.apiKey(users["alice"])
	e.must(alice, http.StatusAccepted, "POST", "/v1/tenants/acme/networks", api.NetworkCreate{Name: "net"}, nil)

	const n = 100
	statuses := make([]int, n)
	bodies := make([][]byte, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			statuses[i], _, bodies[i] = e.do(alice, "POST", "/v1/tenants/acme/instances",
				api.InstanceCreate{Name: fmt.Sprintf("vm%d", i), Flavor: "standard", Template: "debian-12", Network: "net"})
		})
	}
	wg.Wait()
	ok, refused := 0, 0
	for i, st := range statuses {
		switch st {
		case http.StatusAccepted:
			ok++
		case http.StatusConflict:
			var p api.Problem
			if err := json.Unmarshal(bodies[i], &p); err != nil || p.Type != problemType("quota-exceeded") || p.Errors[0].Field != "quota.instances" {
				t.Errorf("refusal %d: %s", i, bodies[i])
			}
			refused++
		default:
			t.Errorf("create %d: %d %s", i, st, bodies[i])
		}
	}
	var tn api.Tenant
	e.must(e.admin, http.StatusOK, "GET", "/v1/tenants/acme", nil, &tn)
	var list api.Page[api.Instance]
	e.must(alice, http.StatusOK, "GET", "/v1/tenants/acme/instances?limit=1000", nil, &list)
	if ok != 10 || refused != 90 || tn.Usage.Instances != 10 || len(list.Items) != 10 {
		t.Fatalf("accepted %d, refused %d, usage %d, listed %d; want 10, 90, 10, 10", ok, refused, tn.Usage.Instances, len(list.Items))
	}
	// A second network is over the network quota.
	status, _, b := e.do(alice, "POST", "/v1/tenants/acme/networks", api.NetworkCreate{Name: "net2"})
	if status != http.StatusConflict || !strings.Contains(string(b), "quota.networks") {
		t.Errorf("second network: %d %s", status, b)
	}
	// vCPUs: standard has 1 vCPU; with a limit of 12, parallel resizes to
	// high-memory (2 vCPUs) can take only 2 more.
	lim := api.Quota{Instances: 10, VCPUs: 12, MemoryMiB: 1 << 30, DiskGiB: 1 << 20, Networks: 1}
	e.must(e.admin, http.StatusOK, "PATCH", "/v1/tenants/acme", api.TenantUpdate{Quota: &lim}, nil)
	var mu sync.Mutex
	grown := 0
	for _, in := range list.Items {
		wg.Go(func() {
			st, _, _ := e.do(alice, "POST", "/v1/tenants/acme/instances/"+in.Name+"/resize", api.InstanceResize{Flavor: "high-memory"})
			if st == http.StatusAccepted {
				mu.Lock()
				grown++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	e.must(e.admin, http.StatusOK, "GET", "/v1/tenants/acme", nil, &tn)
	if grown != 2 || tn.Usage.VCPUs != 12 {
		t.Fatalf("resized %d, vCPUs in use %d; want 2, 12", grown, tn.Usage.VCPUs)
	}
}

// TestProblems: client mistakes answer precise problem documents, never a
// 500.
func TestProblems(t *testing.T) {
	e := newEnv(t, Config{})
	e.tenantWith("acme", nil, nil)
	for _, c := range []struct {
		name, method, path, body string
		status                   int
		typ, field               string
	}{
		{"malformed JSON", "POST", "/v1/tenants", `{"name":`, 400, "bad-json", ""},
		{"syntax error", "POST", "/v1/tenants", `{"name" "x"}`, 400, "bad-json", ""},
		{"two values", "POST", "/v1/tenants", `{"name":"x"} {}`, 400, "bad-json", ""},
		{"empty body", "POST", "/v1/tenants", ``, 400, "bad-json", ""},
		{"unknown field", "POST", "/v1/tenants", `{"name":"x","colour":"red"}`, 422, "invalid", "colour"},
		{"wrong type", "POST", "/v1/tenants", `{"name":42}`, 422, "invalid", "name"},
		{"nested wrong type", "POST", "/v1/tenants", `{"name":"x","quota":{"instances":"many"}}`, 422, "invalid", "quota.instances"},
		{"negative quota", "POST", "/v1/tenants", `{"name":"x","quota":{"instances":-1}}`, 422, "invalid", "quota.instances"},
		{"bad name", "POST", "/v1/tenants", `{"name":"Not OK"}`, 422, "invalid", "name"},
		{"missing name", "POST", "/v1/tenants", `{}`, 422, "invalid", "name"},
		{"double dash", "POST", "/v1/tenants", `{"name":"a--b"}`, 422, "invalid", "name"},
		{"duplicate", "POST", "/v1/tenants", `{"name":"acme"}`, 409, "exists", ""},
		{"unknown flavor", "POST", "/v1/tenants/acme/instances", `{"name":"vm","flavor":"huge","template":"debian-12","network":"none"}`, 422, "invalid", "flavor"},
		{"bad ssh key", "POST", "/v1/tenants/acme/sshkeys", `{"name":"k","public_key":"ssh-rsa notbase64!"}`, 422, "invalid", "public_key"},
		{"bad limit", "GET", "/v1/tenants?limit=0", ``, 400, "invalid", "limit"},
		{"bad cursor", "GET", "/v1/tenants?cursor=***", ``, 400, "invalid", "cursor"},
		{"bad If-Match", "PATCH", "/v1/tenants/acme", `{}`, 400, "invalid", "If-Match"},
		{"unknown route", "GET", "/v1/nothing", ``, 404, "not-found", ""},
		{"wrong method", "DELETE", "/v1/me", ``, 405, "method-not-allowed", ""},
		{"bad timeout", "GET", "/v1/operations/op-x/wait?timeout=1h", ``, 400, "invalid", "timeout"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var hdr []string
			if c.field == "If-Match" {
				hdr = []string{"If-Match", "yesterday"}
			}
			status, h, b := e.do(e.admin, c.method, c.path, []byte(c.body), hdr...)
			if status != c.status {
				t.Fatalf("%d, want %d: %s", status, c.status, b)
			}
			p := e.problemOf(h, b)
			if p.Type != problemType(c.typ) {
				t.Errorf("type %q, want %q", p.Type, problemType(c.typ))
			}
			if p.Status != status || p.Title == "" || p.Instance == "" {
				t.Errorf("incomplete problem %+v", p)
			}
			if c.field != "" && (len(p.Errors) == 0 || p.Errors[0].Field != c.field) {
				t.Errorf("errors %+v, want field %q", p.Errors, c.field)
			}
		})
	}
	big := `{"name":"x","display_name":"` + strings.Repeat("a", maxBody) + `"}`
	if status, _, _ := e.do(e.admin, "POST", "/v1/tenants", big); status != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized body: %d", status)
	}
	status, h, _ := e.do(cred{}, "GET", "/v1/me", nil)
	if status != http.StatusUnauthorized || !strings.Contains(h.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("no credentials: %d %v", status, h)
	}
	if status, _, _ := e.do(cred{bearer: "garbage"}, "GET", "/v1/me", nil); status != http.StatusUnauthorized {
		t.Errorf("garbage token: %d", status)
	}
}

// TestPaginationAndETags walks 250 tenants in pages and updates a tenant
// under If-Match.
func TestPaginationAndETags(t *testing.T) {
	e := newEnv(t, Config{})
	for i := range 250 {
		e.must(e.admin, http.StatusCreated, "POST", "/v1/tenants", api.TenantCreate{Name: fmt.Sprintf("t%03d", i)}, nil)
	}
	var names []string
	cursor, pages := "", 0
	for {
		var p api.Page[api.Tenant]
		e.must(e.admin, http.StatusOK, "GET", "/v1/tenants?limit=100&cursor="+cursor, nil, &p)
		pages++
		for _, x := range p.Items {
			names = append(names, x.Name)
		}
		if p.Next == "" {
			break
		}
		cursor = p.Next
	}
	if len(names) != 250 || pages != 3 || names[0] != "t000" || names[249] != "t249" {
		t.Fatalf("%d names in %d pages", len(names), pages)
	}
	for i := 1; i < len(names); i++ {
		if names[i] <= names[i-1] {
			t.Fatalf("out of order at %d: %s %s", i, names[i-1], names[i])
		}
	}
	h := e.must(e.admin, http.StatusOK, "GET", "/v1/tenants/t001", nil, nil)
	tag := h.Get("ETag")
	if tag != `"1"` {
		t.Fatalf("ETag %q", tag)
	}
	name := "One"
	h = e.must(e.admin, http.StatusOK, "PATCH", "/v1/tenants/t001", api.TenantUpdate{DisplayName: &name}, nil, "If-Match", tag)
	if h.Get("ETag") != `"2"` {
		t.Errorf("new ETag %q", h.Get("ETag"))
	}
	status, hh, b := e.do(e.admin, "PATCH", "/v1/tenants/t001", api.TenantUpdate{DisplayName: &name}, "If-Match", tag)
	if status != http.StatusPreconditionFailed || e.problemOf(hh, b).Type != problemType("version-mismatch") {
		t.Errorf("stale If-Match: %d %s", status, b)
	}
}

// TestOpenAPIInSync: the served document is generated from the route
// table, covers every route with its permission, and docs/api/openapi.json
// is the same document (run with HOLDFAST_UPDATE_OPENAPI=1 to refresh it).
func TestOpenAPIInSync(t *testing.T) {
	e := newEnv(t, Config{})
	_, _, served := e.do(cred{}, "GET", "/v1/openapi.json", nil)
	doc, err := OpenAPI()
	if err != nil {
		t.Fatal(err)
	}
	if string(served) != string(doc) {
		t.Fatal("served document differs from OpenAPI()")
	}
	var d struct {
		OpenAPI string                               `json:"openapi"`
		Paths   map[string]map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		t.Fatal(err)
	}
	if d.OpenAPI != "3.1.0" {
		t.Errorf("openapi %q", d.OpenAPI)
	}
	for _, rt := range e.s.table {
		op := d.Paths[rt.path][strings.ToLower(rt.method)]
		if op == nil {
			t.Errorf("route %s %s missing from the document", rt.method, rt.path)
			continue
		}
		if perm, _ := op["x-holdfast-permission"].(string); op["operationId"] != rt.id || (rt.perm != permPublic && perm != rt.perm.String()) {
			t.Errorf("%s: operationId %v permission %v", rt.id, op["operationId"], op["x-holdfast-permission"])
		}
	}
	for file, want := range map[string][]byte{"../../docs/api/openapi.json": doc, "../../docs/api/routes.md": []byte(RoutesMarkdown())} {
		if os.Getenv("HOLDFAST_UPDATE_OPENAPI") == "1" {
			if err := os.WriteFile(file, want, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		have, err := os.ReadFile(file)
		if err != nil || string(have) != string(want) {
			t.Errorf("%s is out of date (%v): run HOLDFAST_UPDATE_OPENAPI=1 go test ./internal/server -run TestOpenAPIInSync", file, err)
		}
	}
}

// TestAuditTrail: mutations and logins are in the audit log with actor,
// object, source and result; tenants read only their own entries; the
// chain verifies.
func TestAuditTrail(t *testing.T) {
	e := newEnv(t, Config{})
	users := e.tenantWith("acme", nil, map[string]string{"alice": api.RoleTenantAdmin})
	e.tenantWith("other", nil, nil)
	e.do(cred{}, "POST", "/v1/auth/login", api.LoginRequest{User: "alice", Password: "wrong-password-x"})
	e.must(users["alice"], http.StatusCreated, "POST", "/v1/tenants/acme/sshkeys", api.SSHKeyCreate{Name: "k", PublicKey: sshKey("k")}, nil)
	e.do(users["alice"], "POST", "/v1/tenants", api.TenantCreate{Name: "sneaky"}) // refused: also audited

	var all api.Page[api.AuditEntry]
	e.must(e.admin, http.StatusOK, "GET", "/v1/audit?limit=1000", nil, &all)
	want := map[string]bool{}
	for _, x := range all.Items {
		want[x.Actor+" "+x.Action+" "+x.Result] = true
		if x.Source != "127.0.0.1" || len(x.Hash) != 64 {
			t.Errorf("entry %+v", x)
		}
	}
	for _, w := range []string{"admin login ok", "admin createTenant ok", "alice login denied: password", "alice login ok",
		"alice createSSHKey ok", "alice createTenant denied: 403"} {
		if !want[w] {
			t.Errorf("audit log lacks %q; has %v", w, want)
		}
	}
	var mine api.Page[api.AuditEntry]
	e.must(users["alice"], http.StatusOK, "GET", "/v1/tenants/acme/audit", nil, &mine)
	if len(mine.Items) == 0 {
		t.Fatal("the tenant sees no entries")
	}
	for _, x := range mine.Items {
		if x.Tenant != "acme" {
			t.Errorf("tenant sees another's entry %+v", x)
		}
	}
	rep, err := e.s.audit.Verify(t.Context(), e.s.AuditKey())
	if err != nil || !rep.OK() {
		t.Fatalf("verify: %v %v", rep, err)
	}
}

// TestEventsAreScoped: a member of one tenant sees that tenant's events
// only.
func TestEventsAreScoped(t *testing.T) {
	e := newEnv(t, Config{})
	a := e.tenantWith("a", nil, map[string]string{"a-admin": api.RoleTenantAdmin})["a-admin"]
	b := e.tenantWith("b", nil, map[string]string{"b-admin": api.RoleTenantAdmin})["b-admin"]
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, e.ts.URL+"/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+a.bearer)
	resp, err := e.ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("content type %q", resp.Header.Get("Content-Type"))
	}
	rd := bufio.NewReader(resp.Body)
	if line, _ := rd.ReadString('\n'); !strings.HasPrefix(line, ":") {
		t.Fatalf("stream starts with %q", line)
	}
	e.must(b, http.StatusAccepted, "POST", "/v1/tenants/b/networks", api.NetworkCreate{Name: "secret-net"}, nil)
	e.must(a, http.StatusAccepted, "POST", "/v1/tenants/a/networks", api.NetworkCreate{Name: "net"}, nil)
	for {
		line, err := rd.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(line, "data: ") {
			continue
		}
		var ev api.Event
		if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Tenant != "a" {
			t.Fatalf("a's admin got an event of %q: %+v", ev.Tenant, ev)
		}
		if ev.Type == "network.creating" && strings.HasSuffix(ev.Object, "/networks/net") {
			return // b's event came first and was filtered out
		}
	}
}

// TestMetricsAndHealth: Prometheus metrics count requests per route, and
// the health endpoints answer.
func TestMetricsAndHealth(t *testing.T) {
	e := newEnv(t, Config{})
	e.must(e.admin, http.StatusOK, "GET", "/v1/me", nil, nil)
	e.do(cred{}, "POST", "/v1/auth/login", api.LoginRequest{User: "nobody", Password: "wrong-password-x"})
	var h api.Health
	e.must(cred{}, http.StatusOK, "GET", "/healthz", nil, &h)
	e.must(cred{}, http.StatusOK, "GET", "/readyz", nil, &h)
	if h.Status != "ok" || h.Checks["database"] != "ok" {
		t.Errorf("readyz %+v", h)
	}
	_, _, b := e.do(cred{}, "GET", "/metrics", nil)
	for _, want := range []string{
		`holdfast_http_requests_total{code="200",method="GET",route="me"} 1`,
		`holdfast_logins_total{result="denied"} 1`,
		`holdfast_http_request_duration_seconds_bucket{route="me"`,
		`go_goroutines`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// TestDeletedTenantNameNotGivenAgain: the audit log, the operations and
// the event history know a tenant by its name. A new tenant given a
// deleted one's name would show its members the old tenant's audit
// trail and replay its events; the name is refused instead, saying why.
func TestDeletedTenantNameNotGivenAgain(t *testing.T) {
	e := newEnv(t, Config{})
	users := e.tenantWith("acme", nil, map[string]string{"alice": api.RoleTenantAdmin})
	e.must(users["alice"], http.StatusOK, "GET", "/v1/tenants/acme", nil, nil) // something in acme's audit trail
	e.must(e.admin, http.StatusNoContent, "DELETE", "/v1/tenants/acme", nil, nil)

	status, h, b := e.do(e.admin, "POST", "/v1/tenants", api.TenantCreate{Name: "acme"})
	if status != http.StatusConflict {
		t.Fatalf("a tenant made with a deleted tenant's name: status %d, want 409: %s", status, b)
	}
	if p := e.problemOf(h, b); !strings.HasSuffix(p.Type, "/name-retired") || !strings.Contains(p.Detail, "never given again") {
		t.Errorf("problem %+v, want name-retired saying why", p)
	}
	e.must(e.admin, http.StatusCreated, "POST", "/v1/tenants", api.TenantCreate{Name: "acme-two"}, nil)
}
