package deploy_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/deploy"
	"github.com/holdfast/holdfast/internal/engine/local"
	"github.com/holdfast/holdfast/internal/engine/local/container"
	"github.com/holdfast/holdfast/internal/probe"
	"github.com/holdfast/holdfast/internal/spec"
)

// The operator's cloud: it publishes a tenancy pool, and has zones of its
// own, one of which (ops) has access-to all.
const tenancyCloud = `
cloud: {name: tn, domain: tn.example}
sites: {s: {engine: local, nodes: [n1, n2]}}
zones:
  ops: {type: management, access-to: [all]}
  srv: {type: service, sub-id: 1, access-to: [internet], pinhole-allowed-from: [internet]}
roles:
  infra: {vmids: 100-199}
  tenants: {vmids: 1000-1999}
tenancy: {role: tenants, cidr: 10.128.0.0/16, vlans: 3000-3099}
instances:
  admin: {role: infra, zone: ops, ports: [22]}
  web: {role: infra, zone: srv, ports: [443], ingress: [{from: internet, ports: 443}]}
templates:
  box: {image: "%s"}   # a root file system directory
`

const (
	aliceKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g alice@laptop"
	bobKey   = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj9A bob"
)

// tenants is what holdfast serve would write: acme's network with two
// instances on different nodes, and bob's network with one.
func tenants() *spec.Spec {
	vlan := func(v int) *int { return &v }
	port := func(p int) []*spec.Port { return []*spec.Port{{Port: p}} }
	return &spec.Spec{
		Zones: map[string]*spec.Zone{
			"acme--lan": {Tenant: "acme", Type: "guest", VLAN: vlan(3000), CIDR: "10.128.0.0/24", AccessTo: []string{spec.Internet}, PinholeAllowedFrom: []string{spec.Internet}},
			"bob--lan":  {Tenant: "bob", Type: "guest", VLAN: vlan(3001), CIDR: "10.128.1.0/24", AccessTo: []string{spec.Internet}},
		},
		Instances: map[string]*spec.Instance{
			"acme--web": {Tenant: "acme", Role: "tenants", Zone: "acme--lan", Node: "n1", Ports: port(80), SSHKeys: []string{aliceKey},
				Ingress: []*spec.Rule{{From: spec.Internet, Ports: spec.Ports{{Lo: 80, Hi: 80}}}}},
			"acme--db": {Tenant: "acme", Role: "tenants", Zone: "acme--lan", Node: "n2", Ports: port(5432)},
			"bob--vm":  {Tenant: "bob", Role: "tenants", Zone: "bob--lan", Node: "n1", Ports: port(22)},
			// In a root file system: its writes go to a layer of its own.
			"acme--box": {Tenant: "acme", Role: "tenants", Zone: "acme--lan", Node: "n2", Template: "box", SSHKeys: []string{bobKey}},
		},
	}
}

// tenantCloud drives a cloud whose tenants file changes between applies,
// as holdfast serve would change it.
type tenantCloud struct {
	t                      *testing.T
	path, cloud, state     string
	c                      *deploy.Cloud
	engineDir, tenantsFile string
}

// apply writes the tenants file, opens the cloud as `holdfast apply`
// would, checks that the plan is exactly want (each "action id fields"),
// applies it, and checks that nothing is left to do.
func (tc *tenantCloud) apply(ts *spec.Spec, want ...string) {
	t := tc.t
	t.Helper()
	if err := deploy.WriteTenants(tc.state, tc.cloud, ts); err != nil {
		t.Fatal(err)
	}
	tc.reopen()
	p := planOf(t, tc.c)
	var got []string
	for _, ch := range p.Changes {
		got = append(got, strings.TrimSpace(fmt.Sprintf("%s %s %s", ch.Action, ch.ID, strings.Join(ch.Fields, ","))))
	}
	if want != nil && !slices.Equal(got, want) {
		t.Errorf("plan %q, want %q", got, want)
	}
	if _, err := tc.c.Apply(context.Background(), p); err != nil {
		t.Fatalf("apply: %v", err)
	}
	tc.settled()
}

// settled checks that a second plan is empty and every resource is ok.
func (tc *tenantCloud) settled() {
	t := tc.t
	t.Helper()
	if p := planOf(t, tc.c); len(p.Changes) != 0 {
		t.Errorf("a second plan is not empty: %+v", p.Changes)
	}
	status, err := tc.c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range status {
		if s.State != "ok" {
			t.Errorf("status: %s is %s %v", s.ID, s.State, s.Drift)
		}
	}
}

func (tc *tenantCloud) reopen() {
	tc.t.Helper()
	if tc.c != nil {
		tc.c.Close()
	}
	tc.c = openCloud(tc.t, tc.path, tc.cloud, tc.state)
}

func (tc *tenantCloud) inspect(name string) container.Status {
	tc.t.Helper()
	st, err := container.Inspect(local.InstanceDir(tc.engineDir, name))
	if err != nil {
		tc.t.Fatal(err)
	}
	return st
}

func (tc *tenantCloud) exec(name string, argv ...string) (int, string) {
	tc.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var out bytes.Buffer
	code, err := container.Exec(ctx, local.InstanceDir(tc.engineDir, name), argv, nil, &out, &out)
	if err != nil {
		tc.t.Fatalf("exec %v in %s: %v", argv, name, err)
	}
	return code, out.String()
}

// endpoints are the cloud's instances and the internet, for probing.
func (tc *tenantCloud) endpoints() map[string]endpoint {
	by := map[string]endpoint{}
	for _, pc := range matrix(tc.c.Desired, tc.cloud) {
		by[pc.from.name], by[pc.to.name] = pc.from, pc.to
	}
	return by
}

// Tenants' networks and instances, written to the tenants file the way
// holdfast serve writes them, go through the same compile, plan and apply
// as the operator's spec: they are isolated from every other zone and
// tenant, reach the internet, are stopped, started, rebooted, resized and
// rebuilt in place, get their SSH keys, and are destroyed with the cloud.
func TestTenants(t *testing.T) {
	needRoot(t)
	dir, state, rootfs := t.TempDir(), t.TempDir(), t.TempDir()
	path := filepath.Join(dir, "cloud.yaml")
	if err := os.WriteFile(path, fmt.Appendf(nil, tenancyCloud, rootfs), 0o644); err != nil {
		t.Fatal(err)
	}
	cloud := testCloud("tn")
	before := snapshot(t, cloud)
	cleanupAfter(t, path, cloud, state)
	tc := &tenantCloud{t: t, path: path, cloud: cloud, state: state, engineDir: filepath.Join(state, cloud, local.Name), tenantsFile: deploy.TenantsFile(state, cloud)}
	defer func() {
		if tc.c != nil {
			tc.c.Close()
		}
	}()
	ts := tenants()
	tc.apply(ts)
	if _, err := os.Stat(tc.tenantsFile); err != nil {
		t.Fatalf("the tenants file is not where TenantsFile says: %v", err)
	}
	internet := serveInternet(t, cloud)

	// Reachability: every pair, checked against the compiled flows, and
	// the verdicts that matter here spelled out, so that a matrix that
	// proves nothing cannot pass.
	cases := matrix(tc.c.Desired, cloud)
	for _, w := range run(t, cases) {
		t.Error(w)
	}
	verdict := map[string]bool{}
	for _, pc := range cases {
		key := pc.from.name + ">" + pc.to.name + ">" + pc.proto
		verdict[key] = verdict[key] || pc.want
	}
	for key, want := range map[string]bool{
		"acme--web>internet>tcp":  true,  // tenant networks reach the internet
		"internet>acme--web>tcp":  true,  // and the pinholes they allow
		"acme--web>acme--db>tcp":  true,  // within the network, across nodes
		"acme--db>acme--web>icmp": true,  //
		"admin>acme--web>tcp":     false, // ops has access-to all, which is not the tenants'
		"admin>acme--db>icmp":     false,
		"acme--web>admin>icmp":    false, // nor do tenants reach the operator's zones
		"acme--db>web>tcp":        false,
		"web>bob--vm>tcp":         false,
		"bob--vm>acme--db>tcp":    false, // nor each other
		"acme--web>bob--vm>tcp":   false,
		"bob--vm>internet>tcp":    true,
		"internet>bob--vm>tcp":    false, // bob allows no pinholes
	} {
		if got, ok := verdict[key]; !ok || got != want {
			t.Errorf("%s: the flows say %v (probed: %v), want %v", key, got, ok, want)
		}
	}
	for _, src := range internet.sources() {
		if !strings.HasPrefix(src, "198.51.100.") {
			t.Errorf("the internet saw source %s, not an edge's uplink address", src)
		}
	}

	// The operator's own plan (holdfast plan, in another process) sees the
	// tenants and leaves them be.
	tc.c.Close()
	c, _, err := deploy.Open(path, deploy.Options{StateDir: state, Rename: cloud})
	if err != nil {
		t.Fatal(err)
	}
	if p := planOf(t, c); len(p.Changes) != 0 || p.Summary.Unchanged != len(c.Desired.Resources) {
		t.Errorf("the operator's plan: %+v", p.Summary)
	}
	c.Close()
	tc.c = nil

	// SSH keys: root's authorized_keys inside, 0700 and 0600.
	keys := local.AuthorizedKeys(tc.engineDir, "acme--web")
	if b, err := os.ReadFile(keys); err != nil || string(b) != aliceKey+"\n" {
		t.Errorf("%s = %q (%v)", keys, b, err)
	}
	tc.reopen()
	if _, out := tc.exec("acme--web", "stat", "-c", "%a %U %n", "/root/.ssh", "/root/.ssh/authorized_keys"); out != "700 root /root/.ssh\n600 root /root/.ssh/authorized_keys\n" {
		t.Errorf("inside: %q", out)
	}
	if _, out := tc.exec("acme--web", "cat", "/root/.ssh/authorized_keys"); out != aliceKey+"\n" {
		t.Errorf("authorized_keys inside: %q", out)
	}
	if _, err := os.Stat(local.AuthorizedKeys(tc.engineDir, "acme--db")); !os.IsNotExist(err) {
		t.Errorf("an instance without keys has an authorized_keys (%v)", err)
	}
	// In a root file system too, seen through the container's own root.
	box := tc.inspect("acme--box")
	boxRoot := fmt.Sprintf("/proc/%d/root", box.PID)
	if b, err := os.ReadFile(boxRoot + "/root/.ssh/authorized_keys"); err != nil || string(b) != bobKey+"\n" {
		t.Errorf("authorized_keys in the rootfs instance: %q (%v)", b, err)
	}
	if err := os.WriteFile(boxRoot+"/marker", []byte("state\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(rootfs); len(entries) != 0 {
		t.Errorf("the instance wrote into its template: %v", entries)
	}

	eps := tc.endpoints()
	inet, web := eps[spec.Internet], eps["acme--web"]
	reach := func() error {
		first, err := probe.TCP(inet.ns, netip.AddrPortFrom(web.ip, 80), 700*time.Millisecond)
		if err == nil && first != "holdfast acme--web 80\n" {
			err = fmt.Errorf("answered %q", first)
		}
		return err
	}
	webNS := "/run/netns/" + local.InstanceNS(cloud, "acme--web")

	// Power off: the processes go, the namespace and interface stay.
	running := tc.inspect("acme--web")
	ts.Instances["acme--web"].Power = compile.PowerStopped
	tc.apply(ts, "update instance/s/acme--web power")
	waitGone(t, running.PID)
	if st := tc.inspect("acme--web"); st.Running {
		t.Errorf("a stopped instance runs: %+v", st)
	}
	if _, err := os.Stat(webNS); err != nil {
		t.Errorf("the stopped instance's namespace is gone: %v", err)
	}
	if addr := nsAddr(t, webNS, "eth0"); addr != web.ip {
		t.Errorf("the stopped instance's eth0 has %v, want %s", addr, web.ip)
	}
	if err := reach(); err == nil {
		t.Error("a stopped instance answers")
	}
	if _, err := os.Stat(keys); err != nil {
		t.Errorf("a stopped instance lost its keys: %v", err)
	}

	// Power on: it answers again.
	ts.Instances["acme--web"].Power = compile.PowerRunning
	tc.apply(ts, "update instance/s/acme--web power")
	if err := reach(); err != nil {
		t.Errorf("after power on: %v", err)
	}

	// Stopped behind Holdfast's back: status names it, apply starts it.
	running = tc.inspect("acme--web")
	if err := syscall.Kill(running.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, running.PID)
	status, err := tc.c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var drift []string
	for _, s := range status {
		if s.State != "ok" {
			drift = append(drift, s.ID.String()+": "+strings.Join(s.Drift, "; "))
		}
	}
	if len(drift) != 1 || !strings.HasPrefix(drift[0], "instance/s/acme--web: power: stopped, want running") {
		t.Errorf("status after killing acme--web: %q", drift)
	}
	tc.apply(ts, "update instance/s/acme--web")

	// Reboot: new processes, the same address.
	running = tc.inspect("acme--web")
	ts.Instances["acme--web"].Reboot = 1
	tc.apply(ts, "update instance/s/acme--web reboot")
	rebooted := tc.inspect("acme--web")
	if !rebooted.Running || rebooted.PID == running.PID {
		t.Errorf("reboot: init %d, was %d (running %v)", rebooted.PID, running.PID, rebooted.Running)
	}
	if addr := nsAddr(t, webNS, "eth0"); addr != web.ip {
		t.Errorf("after reboot eth0 has %v, want %s", addr, web.ip)
	}
	if err := reach(); err != nil {
		t.Errorf("after reboot: %v", err)
	}

	// Resize: the limits change, the processes stay.
	cpus, mem := 2, spec.Size{MiB: 512}
	ts.Instances["acme--web"].CPUs, ts.Instances["acme--web"].Memory = &cpus, &mem
	tc.apply(ts, "update instance/s/acme--web cpus,memory_mib")
	resized := tc.inspect("acme--web")
	if resized.PID != rebooted.PID || resized.CPUs != 2 || resized.MemoryMiB != 512 {
		t.Errorf("resize: init %d (was %d), %d CPUs, %d MiB", resized.PID, rebooted.PID, resized.CPUs, resized.MemoryMiB)
	}
	cg := filepath.Join("/sys/fs/cgroup/memory/holdfast", cloud, "acme--web", "memory.limit_in_bytes")
	if b, err := os.ReadFile(cg); err == nil && strings.TrimSpace(string(b)) != fmt.Sprint(512<<20) {
		t.Errorf("%s = %s, want %d", cg, b, 512<<20)
	}

	// New keys: written in place, nothing restarts.
	ts.Instances["acme--web"].SSHKeys = []string{aliceKey, bobKey}
	tc.apply(ts, "update instance/s/acme--web ssh_keys")
	if _, out := tc.exec("acme--web", "cat", "/root/.ssh/authorized_keys"); out != aliceKey+"\n"+bobKey+"\n" {
		t.Errorf("authorized_keys inside after the change: %q", out)
	}
	if st := tc.inspect("acme--web"); st.PID != resized.PID {
		t.Errorf("a key change restarted the instance (%d, was %d)", st.PID, resized.PID)
	}

	// Rebuild: what the instance wrote is gone, its keys are not.
	if code, out := tc.exec("acme--web", "sh", "-c", "echo state > /root/marker && cat /root/marker"); code != 0 || out != "state\n" {
		t.Fatalf("writing state: %d %q", code, out)
	}
	ts.Instances["acme--web"].Rebuild = 1
	ts.Instances["acme--box"].Rebuild = 1
	tc.apply(ts, "update instance/s/acme--box rebuild", "update instance/s/acme--web rebuild")
	rebuilt := tc.inspect("acme--box")
	if _, err := os.Stat(fmt.Sprintf("/proc/%d/root/marker", rebuilt.PID)); !os.IsNotExist(err) || rebuilt.PID == box.PID {
		t.Errorf("the rootfs instance's state survived the rebuild (init %d, was %d; stat %v)", rebuilt.PID, box.PID, err)
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/root/root/.ssh/authorized_keys", rebuilt.PID)); err != nil || string(b) != bobKey+"\n" {
		t.Errorf("authorized_keys in the rebuilt rootfs instance: %q (%v)", b, err)
	}
	if code, _ := tc.exec("acme--web", "cat", "/root/marker"); code == 0 {
		t.Error("the instance's state survived the rebuild")
	}
	if _, out := tc.exec("acme--web", "cat", "/root/.ssh/authorized_keys"); out != aliceKey+"\n"+bobKey+"\n" {
		t.Errorf("authorized_keys after the rebuild: %q", out)
	}
	if st := tc.inspect("acme--web"); st.PID == resized.PID || st.CPUs != 2 {
		t.Errorf("rebuild: init %d (was %d), %d CPUs", st.PID, resized.PID, st.CPUs)
	}
	if err := reach(); err != nil {
		t.Errorf("after rebuild: %v", err)
	}

	// A tenant's instance and network removed from the file are deleted;
	// nothing else is touched.
	delete(ts.Instances, "bob--vm")
	delete(ts.Zones, "bob--lan")
	tc.apply(ts, "update firewall/s digest,flows", "delete instance/s/bob--vm", "delete network/s/bob--lan")

	destroy(t, tc.c)
	if d := before.diff(snapshot(t, cloud)); len(d) > 0 {
		t.Errorf("destroy left the host changed:\n%s", strings.Join(d, "\n"))
	}
	if _, err := os.Stat(local.InstanceDir(tc.engineDir, "acme--web")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("destroy left the instance's directory (%v)", err)
	}
}

// An error in the tenants file stops the open, and names the file.
func TestTenantsFileErrorsStopTheOpen(t *testing.T) {
	dir, state := t.TempDir(), t.TempDir()
	path := filepath.Join(dir, "cloud.yaml")
	if err := os.WriteFile(path, fmt.Appendf(nil, tenancyCloud, t.TempDir()), 0o644); err != nil {
		t.Fatal(err)
	}
	file := deploy.TenantsFile(state, "renamed")
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		t.Fatal(err)
	}
	// The tenant's instance sits in the operator's zone.
	if err := os.WriteFile(file, []byte("instances:\n  x--vm: {tenant: x, role: tenants, zone: srv}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, diags, err := deploy.Open(path, deploy.Options{StateDir: state, Rename: "renamed"})
	if !errors.Is(err, deploy.ErrSpec) || len(diags.Errors()) != 1 || diags.Errors()[0].Pos.File != file ||
		!strings.Contains(diags.Errors()[0].Message, `zone "srv" is not a zone of tenant "x"`) {
		t.Errorf("Open = %v, %v; want the tenants file's error", err, diags)
	}
	// Without a rename, the file of the spec's own cloud is not that one.
	if _, _, err := deploy.Compile(path, state); err != nil {
		t.Errorf("Compile of cloud tn read another cloud's tenants file: %v", err)
	}
}

// nsAddr is the first IPv4 address of a link in a namespace (invalid when
// there is none).
func nsAddr(t *testing.T, nsPath, link string) netip.Addr {
	t.Helper()
	fd, err := netns.GetFromPath(nsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	h, err := netlink.NewHandleAt(fd)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	l, err := h.LinkByName(link)
	if err != nil {
		return netip.Addr{}
	}
	addrs, err := h.AddrList(l, netlink.FAMILY_V4)
	if err != nil || len(addrs) == 0 {
		return netip.Addr{}
	}
	a, _ := netip.AddrFromSlice(addrs[0].IP.To4())
	return a
}
