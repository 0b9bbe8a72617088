package server

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/api"
	"github.com/holdfast/holdfast/internal/deploy"
	"github.com/holdfast/holdfast/internal/engine/local"
	"github.com/holdfast/holdfast/internal/spec"
	"github.com/holdfast/holdfast/internal/tenant"
	"github.com/holdfast/holdfast/internal/testenv"
)

// recordNetwork records a network and its create operation directly, as
// a server without the API's name check did: the realizer must cope with
// records the API would refuse today.
func recordNetwork(t *testing.T, s *Server, tenantName, name string) api.Operation {
	t.Helper()
	var op api.Operation
	err := s.db.Do(t.Context(), func(tx *tenant.Tx) error {
		tr, err := tx.TenantRef(tenantName)
		if err != nil {
			return err
		}
		n, err := tx.CreateNetwork(tr, name, s.pool.Pool)
		if err != nil {
			return err
		}
		op, err = tx.CreateOperation("network.create", tenantName, networkPath(tenantName, name), n.Zone)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return op
}

// metric returns the value of the sample name (with its labels) on the
// metrics page.
func (e *env) metric(name string) float64 {
	e.t.Helper()
	_, _, b := e.do(cred{}, "GET", "/metrics", nil)
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				e.t.Fatalf("metric %s: %v", name, err)
			}
			return f
		}
	}
	e.t.Fatalf("metrics lack %s", name)
	return 0
}

// TestRefusedObjectFailsAlone: one pass holds a network of tenant acme
// that the cloud's spec refuses (its zone, acme--w-, ends in a dash), an
// instance in it, and tenant other's network and instance; the tenants
// file is the one an earlier version left, with the refused network in
// it. other's
// operations succeed; acme's fail, saying why; the refused network is left
// out of the tenants file and the next pass is clean. Then a change the
// cloud refuses to a running instance (a rebuild from a template whose
// spec name is not a valid name) fails alone, and the instance keeps
// running as it was.
func TestRefusedObjectFailsAlone(t *testing.T) {
	testenv.NeedRoot(t, "the local engine makes namespaces, bridges, nftables rules and containers")
	state := t.TempDir()
	first := newEnv(t, Config{SpecPath: tenancySpec, StateDir: state})
	cloud := first.s.Cloud()
	t.Cleanup(func() { destroyCloud(t, tenancySpec, state, cloud) })
	alice := first.apiKey(first.tenantWith("acme", nil, map[string]string{"alice": api.RoleTenantAdmin})["alice"])
	bob := first.apiKey(first.tenantWith("other", nil, map[string]string{"bob": api.RoleTenantAdmin})["bob"])

	// Recorded by a server that does not realize, so that one pass of the
	// next takes all of it.
	badNet := recordNetwork(t, first.s, "acme", "w-")
	var badVM, netOp, vmOp api.Operation
	first.must(alice, http.StatusAccepted, "POST", "/v1/tenants/acme/instances",
		api.InstanceCreate{Name: "vm", Flavor: "burstable", Template: "debian-12", Network: "w-"}, &badVM)
	first.must(bob, http.StatusAccepted, "POST", "/v1/tenants/other/networks", api.NetworkCreate{Name: "net"}, &netOp)
	first.must(bob, http.StatusAccepted, "POST", "/v1/tenants/other/instances",
		api.InstanceCreate{Name: "web", Flavor: "burstable", Template: "debian-12", Network: "net"}, &vmOp)
	if err := first.s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The tenants file as a realizer without isolation left it: with the
	// refused network in it, so that every later pass failed.
	dhcp, vlan := false, 3000
	wedged := &spec.Spec{
		Zones:     map[string]*spec.Zone{"acme--w-": {Type: "guest", Tenant: "acme", VLAN: &vlan, CIDR: "10.128.0.0/24", DHCP: &dhcp, Sites: []string{"here"}}},
		Instances: map[string]*spec.Instance{"acme--vm": {Tenant: "acme", Site: "here", Role: "customer", Zone: "acme--w-"}},
	}
	if err := deploy.WriteTenants(state, cloud, wedged); err != nil {
		t.Fatal(err)
	}
	first.restart(func(c *Config) { c.SpecPath, c.Realize, c.Resync, c.Now = tenancySpec, true, -1, nil })
	e := first

	e.wait(bob, netOp)
	e.wait(bob, vmOp)
	var web api.Instance
	e.must(bob, http.StatusOK, "GET", "/v1/tenants/other/instances/web", nil, &web)
	if web.Status != api.StatusRunning || web.IP == "" {
		t.Fatalf("other's instance: %+v", web)
	}
	for _, tc := range []struct {
		op  api.Operation
		why string
	}{
		{badNet, `the cloud refused it: zone "acme--w-": not a valid name: must not end in '-'`},
		{badVM, `the cloud refused it: its network "w-" was refused: zone "acme--w-": not a valid name`},
	} {
		op := e.end(alice, tc.op)
		if op.Status != api.OpFailed || op.Error == nil || op.Error.Status != http.StatusUnprocessableEntity || !strings.HasPrefix(op.Error.Detail, tc.why) {
			t.Errorf("acme's %s: %s %+v, want failed: %s", op.Kind, op.Status, op.Error, tc.why)
		}
	}
	var n api.Network
	e.must(alice, http.StatusOK, "GET", "/v1/tenants/acme/networks/w-", nil, &n)
	var vm api.Instance
	e.must(alice, http.StatusOK, "GET", "/v1/tenants/acme/instances/vm", nil, &vm)
	if n.Status != "failed" || vm.Status != api.StatusFailed || !strings.Contains(vm.Error, "acme--w-") {
		t.Errorf("acme's refused network %+v and instance %+v", n, vm)
	}
	tenants, err := os.ReadFile(deploy.TenantsFile(state, cloud))
	if err != nil || strings.Contains(string(tenants), "acme--") || !strings.Contains(string(tenants), "other--web") {
		t.Fatalf("tenants file (%v):\n%s", err, tenants)
	}
	if got := e.metric("holdfast_realizer_refused_objects"); got != 2 {
		t.Errorf("refused objects after the pass: %v, want 2", got)
	}

	// The next pass is clean: acme's refused records are not tried again.
	var dbOp api.Operation
	e.must(bob, http.StatusAccepted, "POST", "/v1/tenants/other/instances",
		api.InstanceCreate{Name: "db", Flavor: "burstable", Template: "debian-12", Network: "net"}, &dbOp)
	e.wait(bob, dbOp)
	if got := e.metric("holdfast_realizer_refused_objects"); got != 0 {
		t.Errorf("refused objects in the next pass: %v, want 0", got)
	}
	if got := e.metric(`holdfast_reconciles_total{result="ok"}`); got < 1 {
		t.Errorf("clean passes: %v, want 1", got)
	}

	// A template the API would refuse (its spec name, catalogue--ubuntu-24.04,
	// holds a dot), published directly; other rebuilds web from it.
	if err := e.s.db.Do(t.Context(), func(tx *tenant.Tx) error {
		return tx.PutTemplate(api.Template{Name: "ubuntu-24.04", Image: "ubuntu-24.04"})
	}); err != nil {
		t.Fatal(err)
	}
	var rebuild api.Operation
	e.must(bob, http.StatusAccepted, "POST", "/v1/tenants/other/instances/web/rebuild", api.InstanceRebuild{Template: "ubuntu-24.04"}, &rebuild)
	rebuild = e.end(bob, rebuild)
	if rebuild.Status != api.OpFailed || rebuild.Error == nil ||
		!strings.HasPrefix(rebuild.Error.Detail, "the cloud refused the change, and nothing was changed: ") ||
		!strings.Contains(rebuild.Error.Detail, `template "catalogue--ubuntu-24.04": not a valid name: may hold only letters, digits and '-', not '.'`) {
		t.Fatalf("rebuild from a refused template: %s %+v", rebuild.Status, rebuild.Error)
	}
	// The instance runs as it was, and the next pass — which still holds
	// the refused change — converges everything else.
	var after api.Instance
	e.must(bob, http.StatusOK, "GET", "/v1/tenants/other/instances/web", nil, &after)
	if after.Status != api.StatusRunning || after.VMID != web.VMID || after.IP != web.IP || !strings.Contains(after.Error, "stays as it was") {
		t.Errorf("after the refused rebuild: %+v (before: %+v)", after, web)
	}
	if _, err := os.Stat(nsPath(local.InstanceNS(cloud, web.Spec))); err != nil {
		t.Errorf("web's namespace: %v", err)
	}
	e.must(bob, http.StatusAccepted, "POST", "/v1/tenants/other/instances",
		api.InstanceCreate{Name: "cache", Flavor: "burstable", Template: "debian-12", Network: "net"}, &dbOp)
	e.wait(bob, dbOp)
	tenants, err = os.ReadFile(deploy.TenantsFile(state, cloud))
	if err != nil || strings.Contains(string(tenants), "ubuntu") || !strings.Contains(string(tenants), "other--cache") {
		t.Fatalf("tenants file (%v):\n%s", err, tenants)
	}
	var h api.Health
	e.must(cred{}, http.StatusOK, "GET", "/readyz", nil, &h)
}

// TestReadyzReportsARealizerThatCannotConverge: when the operator's spec
// changes so that the cloud refuses a tenant's network it already has,
// the realizer neither deletes the network nor goes on without it: every
// pass fails as a whole, and after three /readyz answers 503 saying why,
// with the metrics to match. Once the spec is fixed the next pass
// converges and /readyz is ready again.
func TestReadyzReportsARealizerThatCannotConverge(t *testing.T) {
	testenv.NeedRoot(t, "the local engine makes namespaces, bridges, nftables rules and containers")
	state := t.TempDir()
	dir := copySpec(t, tenancySpec, map[string]string{})
	e := newEnv(t, Config{SpecPath: dir, StateDir: state, Realize: true, Resync: -1})
	cloud := e.s.Cloud()
	t.Cleanup(func() { destroyCloud(t, dir, state, cloud) })
	alice := e.apiKey(e.tenantWith("acme", nil, map[string]string{"alice": api.RoleTenantAdmin})["alice"])
	create := func(kind string, body any) api.Operation {
		var op api.Operation
		e.must(alice, http.StatusAccepted, "POST", "/v1/tenants/acme/"+kind, body, &op)
		return e.end(alice, op)
	}
	if op := create("networks", api.NetworkCreate{Name: "net"}); op.Status != api.OpSucceeded {
		t.Fatalf("network: %+v", op.Error)
	}
	if op := create("instances", api.InstanceCreate{Name: "vm", Flavor: "burstable", Template: "debian-12", Network: "net"}); op.Status != api.OpSucceeded {
		t.Fatalf("instance: %+v", op.Error)
	}
	var vm api.Instance
	e.must(alice, http.StatusOK, "GET", "/v1/tenants/acme/instances/vm", nil, &vm)

	// The operator narrows the pool's VLANs: acme--net's VLAN 3000 is no
	// longer in it.
	file := filepath.Join(dir, "cloud.yaml")
	good, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // before destroyCloud, which needs the spec as it was
		if err := os.WriteFile(file, good, 0o644); err != nil {
			t.Error(err)
		}
	})
	if err := os.WriteFile(file, []byte(strings.Replace(string(good), "vlans: 3000-3099", "vlans: 3050-3099", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	const why = `zone "acme--net": VLAN 3000 is outside the tenancy's vlans 3050-3099`
	for i := range unreadyAfter {
		op := create("instances", api.InstanceCreate{Name: "more" + itoa(int64(i)), Flavor: "burstable", Template: "debian-12", Network: "net"})
		if op.Status != api.OpFailed || op.Error == nil || !strings.Contains(op.Error.Detail, why) {
			t.Fatalf("a pass with the refused network: %s %+v", op.Status, op.Error)
		}
	}
	status, _, b := e.do(cred{}, "GET", "/readyz", nil)
	var h api.Health
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatal(err)
	}
	if status != http.StatusServiceUnavailable || h.Status != "unavailable" ||
		!strings.HasPrefix(h.Checks["reconciler"], "cannot converge: the last ") || !strings.Contains(h.Checks["reconciler"], why) {
		t.Fatalf("readyz while every pass fails: %d %s", status, b)
	}
	if got := e.metric("holdfast_realizer_consecutive_failures"); got < unreadyAfter {
		t.Errorf("consecutive failures while every pass fails: %v", got)
	}
	// Nothing of acme's was deleted, and the tenants file is the one the
	// cloud accepted.
	if _, err := os.Stat(nsPath(local.InstanceNS(cloud, vm.Spec))); err != nil {
		t.Errorf("acme's instance: %v", err)
	}
	tenants, err := os.ReadFile(deploy.TenantsFile(state, cloud))
	if err != nil || !strings.Contains(string(tenants), "acme--net") || strings.Contains(string(tenants), "acme--more") {
		t.Errorf("tenants file (%v):\n%s", err, tenants)
	}

	// Fixed: the next pass converges, with what was asked meanwhile.
	e.clock.advance(time.Hour)
	fixed := e.s.now()
	if err := os.WriteFile(file, good, 0o644); err != nil {
		t.Fatal(err)
	}
	if op := create("instances", api.InstanceCreate{Name: "last", Flavor: "burstable", Template: "debian-12", Network: "net"}); op.Status != api.OpSucceeded {
		t.Fatalf("after the fix: %+v", op.Error)
	}
	e.must(cred{}, http.StatusOK, "GET", "/readyz", nil, &h)
	if h.Checks["reconciler"] != "ok" {
		t.Errorf("readyz after the fix: %+v", h)
	}
	if got := e.metric("holdfast_realizer_consecutive_failures"); got != 0 {
		t.Errorf("consecutive failures after the fix: %v", got)
	}
	if got := e.metric("holdfast_realizer_last_success_timestamp_seconds"); got < float64(fixed.Unix()) {
		t.Errorf("last success after the fix: %v, want after %v", got, fixed.Unix())
	}
	var more api.Instance
	e.must(alice, http.StatusOK, "GET", "/v1/tenants/acme/instances/more0", nil, &more)
	if more.Status != api.StatusRunning {
		t.Errorf("an instance asked for while the realizer failed: %+v", more)
	}
}

// TestPassAgainAfter: a failed pass is tried again after 1s, doubling, at
// most the resync interval or 5 minutes.
func TestPassAgainAfter(t *testing.T) {
	for _, tc := range []struct {
		failures int
		every    time.Duration
		want     time.Duration
	}{
		{1, 5 * time.Minute, time.Second},
		{3, 5 * time.Minute, 4 * time.Second},
		{9, 5 * time.Minute, 256 * time.Second},
		{10, 5 * time.Minute, 5 * time.Minute},
		{1000, -1, 5 * time.Minute},
		{5, 3 * time.Second, 3 * time.Second},
	} {
		if got := passAgainAfter(tc.failures, tc.every); got != tc.want {
			t.Errorf("passAgainAfter(%d, %v) = %v, want %v", tc.failures, tc.every, got, tc.want)
		}
	}
}
