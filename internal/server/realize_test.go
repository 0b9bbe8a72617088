package server

import (
	"context"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/api"
	"github.com/holdfast/holdfast/internal/deploy"
	"github.com/holdfast/holdfast/internal/engine/local"
	"github.com/holdfast/holdfast/internal/probe"
	"github.com/holdfast/holdfast/internal/testenv"
)

// wait follows an operation to its end, which must be success.
func (e *env) wait(c cred, op api.Operation) api.Operation {
	e.t.Helper()
	op = e.end(c, op)
	if op.Status != api.OpSucceeded {
		e.t.Fatalf("operation %s (%s) failed: %+v", op.ID, op.Kind, op.Error)
	}
	return op
}

// end follows an operation to its end through the wait endpoint.
func (e *env) end(c cred, op api.Operation) api.Operation {
	e.t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for !op.Done() {
		if time.Now().After(deadline) {
			e.t.Fatalf("operation %s (%s) did not finish: %+v", op.ID, op.Kind, op)
		}
		e.must(c, http.StatusOK, "GET", "/v1/operations/"+op.ID+"/wait?timeout=30s", nil, &op)
	}
	return op
}

func nsPath(name string) string { return filepath.Join("/run/netns", name) }

// TestTenantInstancesRun is the tenant's path end to end on the local
// engine: with an API key, a network from the pool and instances in it;
// the instances really run, reach each other and nothing else, survive
// stop/start, and are removed on delete — all through the same reconciler
// as holdfast apply.
func TestTenantInstancesRun(t *testing.T) {
	testenv.NeedRoot(t, "the local engine makes namespaces, bridges, nftables rules and containers")
	state := t.TempDir()
	e := newEnv(t, Config{Realize: true, Resync: -1, StateDir: state, Now: time.Now})
	cloud := e.s.Cloud()
	t.Cleanup(func() { destroyCloud(t, e.s.cfg.SpecPath, state, cloud) })
	alice := e.apiKey(e.tenantWith("acme", nil, map[string]string{"alice": api.RoleTenantAdmin})["alice"])
	bob := e.apiKey(e.tenantWith("other", nil, map[string]string{"bob": api.RoleTenantAdmin})["bob"])

	var op api.Operation
	e.must(alice, http.StatusAccepted, "POST", "/v1/tenants/acme/networks", api.NetworkCreate{Name: "net"}, &op)
	e.wait(alice, op)
	var net api.Network
	e.must(alice, http.StatusOK, "GET", "/v1/tenants/acme/networks/net", nil, &net)
	if net.Status != "ready" || net.CIDR != "10.128.0.0/24" || net.VLAN != 3000 || net.VNI != 13000 {
		t.Fatalf("network %+v", net)
	}
	e.must(alice, http.StatusCreated, "POST", "/v1/tenants/acme/sshkeys", api.SSHKeyCreate{Name: "laptop", PublicKey: sshKey("alice laptop")}, nil)
	for _, name := range []string{"web", "db"} {
		e.must(alice, http.StatusAccepted, "POST", "/v1/tenants/acme/instances",
			api.InstanceCreate{Name: name, Flavor: "burstable", Template: "debian-12", Network: "net", SSHKeys: []string{"laptop"}}, &op)
		e.wait(alice, op)
	}
	var web, db api.Instance
	e.must(alice, http.StatusOK, "GET", "/v1/tenants/acme/instances/web", nil, &web)
	e.must(alice, http.StatusOK, "GET", "/v1/tenants/acme/instances/db", nil, &db)
	if web.Status != api.StatusRunning || web.VMID < 10000 || web.VMID > 99999 || !netip.MustParsePrefix(net.CIDR).Contains(netip.MustParseAddr(web.IP)) {
		t.Fatalf("web %+v", web)
	}
	// Another tenant's instance, in its own network.
	e.must(bob, http.StatusAccepted, "POST", "/v1/tenants/other/networks", api.NetworkCreate{Name: "net"}, &op)
	e.wait(bob, op)
	e.must(bob, http.StatusAccepted, "POST", "/v1/tenants/other/instances",
		api.InstanceCreate{Name: "spy", Flavor: "burstable", Template: "debian-12", Network: "net"}, &op)
	e.wait(bob, op)
	var spy api.Instance
	e.must(bob, http.StatusOK, "GET", "/v1/tenants/other/instances/spy", nil, &spy)

	ctx := t.Context()
	reach := func(from, to string) error {
		return probe.ICMP(ctx, nsPath(local.InstanceNS(cloud, from)), netip.MustParseAddr(to), 2*time.Second)
	}
	if err := reach(db.Spec, web.IP); err != nil {
		t.Errorf("db cannot ping web in its own network: %v", err)
	}
	if err := reach(spy.Spec, web.IP); err == nil {
		t.Errorf("another tenant's instance pings web")
	}
	if err := reach(web.Spec, spy.IP); err == nil {
		t.Errorf("web pings another tenant's instance")
	}
	// The operator's service zone does not reach tenants either.
	if err := reach("panel", web.IP); err == nil {
		t.Errorf("an operator service instance pings a tenant instance")
	}
	// The key is the instance's root's authorized_keys.
	keys, err := os.ReadFile(local.AuthorizedKeys(filepath.Join(state, cloud, "local"), web.Spec))
	if err != nil || !strings.Contains(string(keys), sshKey("alice laptop")) {
		t.Errorf("authorized_keys %q: %v", keys, err)
	}

	// Stop and start: the status follows.
	e.must(alice, http.StatusAccepted, "POST", "/v1/tenants/acme/instances/web/stop", nil, &op)
	e.wait(alice, op)
	e.must(alice, http.StatusOK, "GET", "/v1/tenants/acme/instances/web", nil, &web)
	if web.Status != api.StatusStopped || web.Power != "stopped" {
		t.Fatalf("after stop: %+v", web)
	}
	e.must(alice, http.StatusAccepted, "POST", "/v1/tenants/acme/instances/web/start", nil, &op)
	e.wait(alice, op)
	e.must(alice, http.StatusAccepted, "POST", "/v1/tenants/acme/instances/web/reboot", nil, &op)
	e.wait(alice, op)
	e.must(alice, http.StatusOK, "GET", "/v1/tenants/acme/instances/web", nil, &web)
	if web.Status != api.StatusRunning {
		t.Fatalf("after start and reboot: %+v", web)
	}
	if err := reach(db.Spec, web.IP); err != nil {
		t.Errorf("after reboot db cannot ping web: %v", err)
	}

	// A network with instances cannot go; after them it can.
	if status, _, b := e.do(alice, "DELETE", "/v1/tenants/acme/networks/net", nil); status != http.StatusConflict {
		t.Fatalf("deleting a used network: %d %s", status, b)
	}
	for _, name := range []string{"web", "db"} {
		e.must(alice, http.StatusAccepted, "DELETE", "/v1/tenants/acme/instances/"+name, nil, &op)
		e.wait(alice, op)
	}
	e.must(alice, http.StatusAccepted, "DELETE", "/v1/tenants/acme/networks/net", nil, &op)
	e.wait(alice, op)
	if _, err := os.Stat(nsPath(local.InstanceNS(cloud, web.Spec))); err == nil {
		t.Errorf("web's namespace is still there")
	}
	var left api.Page[api.Instance]
	e.must(alice, http.StatusOK, "GET", "/v1/tenants/acme/instances", nil, &left)
	var tn api.Tenant
	e.must(alice, http.StatusOK, "GET", "/v1/tenants/acme", nil, &tn)
	if len(left.Items) != 0 || tn.Usage.Instances != 0 || tn.Usage.Networks != 0 {
		t.Errorf("after deleting: %d instances, usage %+v", len(left.Items), tn.Usage)
	}
	// The operator's plan agrees: nothing to do.
	c, _, err := deploy.Open(e.s.cfg.SpecPath, deploy.Options{StateDir: state, Database: e.s.cfg.Database, Rename: cloud})
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.Plan(ctx)
	c.Close()
	if err != nil || len(p.Changes) != 0 {
		t.Errorf("operator plan after the tenants' work: %+v %v", p.Summary, err)
	}
}

// destroyCloud removes everything a test cloud made.
func destroyCloud(t *testing.T, specPath, state, cloud string) {
	c, _, err := deploy.Open(specPath, deploy.Options{StateDir: state, Rename: cloud, LockWait: time.Minute})
	if err != nil {
		t.Errorf("destroy: %v", err)
		return
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p, err := c.DestroyPlan(ctx)
	if err == nil {
		_, err = c.Apply(ctx, p)
	}
	if err != nil {
		t.Errorf("destroy: %v", err)
	}
}

// TestPendingWorkSurvivesRestart: operations recorded by a server that
// stopped before realizing them are carried out by the next start.
func TestPendingWorkSurvivesRestart(t *testing.T) {
	testenv.NeedRoot(t, "the local engine makes namespaces, bridges, nftables rules and containers")
	state := t.TempDir()
	first := newEnv(t, Config{StateDir: state})
	cloud := first.s.Cloud()
	t.Cleanup(func() { destroyCloud(t, first.s.cfg.SpecPath, state, cloud) })
	alice := first.apiKey(first.tenantWith("acme", nil, map[string]string{"alice": api.RoleTenantAdmin})["alice"])
	var netOp, vmOp api.Operation
	first.must(alice, http.StatusAccepted, "POST", "/v1/tenants/acme/networks", api.NetworkCreate{Name: "net"}, &netOp)
	first.must(alice, http.StatusAccepted, "POST", "/v1/tenants/acme/instances",
		api.InstanceCreate{Name: "vm", Flavor: "burstable", Template: "debian-12", Network: "net"}, &vmOp)
	if err := first.s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}

	// The restarted server realizes, on the wall clock.
	first.restart(func(c *Config) { c.Realize, c.Resync, c.Now = true, -1, nil })
	second := first
	second.wait(alice, netOp)
	second.wait(alice, vmOp)
	var vm api.Instance
	second.must(alice, http.StatusOK, "GET", "/v1/tenants/acme/instances/vm", nil, &vm)
	if vm.Status != api.StatusRunning || vm.IP == "" {
		t.Fatalf("after restart: %+v", vm)
	}
}
