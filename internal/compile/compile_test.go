package compile_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/reconcile"
)

const base = `
cloud: {name: t, domain: t.example}
sites:
  a: {engine: local, nodes: [n1, n2]}
zones:
  mgmt: {type: management, sub-id: 10, access-to: [internet, srv, cams]}
  srv:  {type: service, sub-id: 10, access-to: [internet], pinhole-allowed-from: [dmz, internet]}
  dmz:  {type: dmz, sub-id: 10, access-to: [internet, srv], pinhole-allowed-from: [internet]}
  cams: {type: iot, sub-id: 30, isolated: true, pinhole-allowed-from: [srv]}
  off:  {type: guest, sub-id: 10, state: inactive, access-to: [internet]}
roles:
  infra: {vmids: 1000-1999, ip: vmid}
  app:   {vmids: 2000-2009}
`

// compileYAML writes files (name -> YAML) to a spec directory and compiles it.
func compileYAML(t *testing.T, prev compile.Allocations, files map[string]string) (*compile.State, compile.Allocations, string) {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_, st, next, diags := compile.File(dir, prev)
	var errs []string
	for _, d := range diags.Errors() {
		errs = append(errs, d.String())
	}
	return st, next, strings.Join(errs, "\n")
}

func mustCompile(t *testing.T, prev compile.Allocations, instances string) (*compile.State, compile.Allocations) {
	t.Helper()
	st, next, errs := compileYAML(t, prev, map[string]string{"base.yaml": base, "instances.yaml": instances})
	if errs != "" {
		t.Fatalf("compile errors:\n%s", errs)
	}
	return st, next
}

func instance(t *testing.T, st *compile.State, name string) compile.Instance {
	t.Helper()
	for _, in := range st.Instances {
		if in.Name == name {
			return in
		}
	}
	t.Fatalf("instance %q not in compiled state", name)
	return compile.Instance{}
}

func TestVMIDsComeFromTheRoleRangeAndStayStable(t *testing.T) {
	st, alloc := mustCompile(t, compile.Allocations{}, `
instances:
  web-b: {role: app, zone: srv}
  web-c: {role: app, zone: srv}
`)
	if got := instance(t, st, "web-b").VMID; got != 2000 {
		t.Errorf("web-b vmid = %d, want 2000 (lowest of the range)", got)
	}
	if got := instance(t, st, "web-c").VMID; got != 2001 {
		t.Errorf("web-c vmid = %d, want 2001", got)
	}
	// A new instance whose name sorts first must not take an existing VMID.
	st2, _ := mustCompile(t, alloc, `
instances:
  web-a: {role: app, zone: srv}
  web-b: {role: app, zone: srv}
  web-c: {role: app, zone: srv}
`)
	if got := instance(t, st2, "web-b").VMID; got != 2000 {
		t.Errorf("after adding web-a, web-b vmid = %d, want it to stay 2000", got)
	}
	if got := instance(t, st2, "web-c").VMID; got != 2001 {
		t.Errorf("after adding web-a, web-c vmid = %d, want it to stay 2001", got)
	}
	if got := instance(t, st2, "web-a").VMID; got != 2002 {
		t.Errorf("web-a vmid = %d, want 2002 (next free)", got)
	}
	if ipB, ipB2 := instance(t, st, "web-b").IP, instance(t, st2, "web-b").IP; ipB != ipB2 {
		t.Errorf("web-b address moved from %s to %s", ipB, ipB2)
	}
}

func TestRemovedInstanceKeepsItsVMIDAndAddressReserved(t *testing.T) {
	_, alloc := mustCompile(t, compile.Allocations{}, `
instances:
  old: {role: app, zone: srv}
`)
	oldAlloc := alloc.Instances["old"]
	st, next := mustCompile(t, alloc, `
instances:
  new: {role: app, zone: srv}
`)
	n := instance(t, st, "new")
	if n.VMID == oldAlloc.VMID {
		t.Errorf("new instance reused VMID %d of a removed but still allocated instance", n.VMID)
	}
	if n.IP == oldAlloc.Addrs["srv"] {
		t.Errorf("new instance reused address %s of a removed but still allocated instance", n.IP)
	}
	if _, kept := next.Instances["old"]; !kept {
		t.Error("allocation of the removed instance was dropped before any engine destroyed it")
	}
}

func TestVMIDRangeExhaustedIsAnError(t *testing.T) {
	var b strings.Builder
	b.WriteString("instances:\n")
	for _, n := range []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"} {
		b.WriteString("  " + n + ": {role: app, zone: srv}\n")
	}
	_, _, errs := compileYAML(t, compile.Allocations{}, map[string]string{"base.yaml": base, "i.yaml": b.String()})
	if !strings.Contains(errs, `instance "k": role "app" has no free VMID left in 2000-2009`) {
		t.Errorf("want an exhausted-range error for the 11th instance, got:\n%s", errs)
	}
	if !strings.Contains(errs, "i.yaml:12:") {
		t.Errorf("error should point at instance k in i.yaml line 12, got:\n%s", errs)
	}
}

func TestVMIDAddressRule(t *testing.T) {
	for vmid, off := range map[int]int{1001: 11, 3000: 30, 1999: 19, 2005: 25, 100: 10, 123456: 16} {
		if got := compile.VMIDAddrOffset(vmid); got != off {
			t.Errorf("VMIDAddrOffset(%d) = %d, want %d", vmid, got, off)
		}
	}
	st, _ := mustCompile(t, compile.Allocations{}, `
instances:
  dns: {role: infra, zone: mgmt, vmid: 1001}
  db:  {role: infra, zone: mgmt, vmid: 1500}
`)
	if got := instance(t, st, "dns").IP; got != "10.0.10.11" {
		t.Errorf("dns (vmid 1001) ip = %s, want 10.0.10.11", got)
	}
	if got := instance(t, st, "db").IP; got != "10.0.10.10" {
		t.Errorf("db (vmid 1500) ip = %s, want 10.0.10.10", got)
	}
}

func TestVMIDAddressCollisionIsAnError(t *testing.T) {
	_, _, errs := compileYAML(t, compile.Allocations{}, map[string]string{"base.yaml": base, "i.yaml": `
instances:
  a: {role: infra, zone: mgmt, vmid: 1001}
  b: {role: infra, zone: mgmt, vmid: 1011}
`})
	if !strings.Contains(errs, `instance "b": VMID 1011 derives address 10.0.10.11 in zone "mgmt", which instance "a" already has`) {
		t.Errorf("want a derived-address collision, got:\n%s", errs)
	}
}

func TestPoolSkipsGatewayAndDHCPRange(t *testing.T) {
	var b strings.Builder
	b.WriteString("instances:\n")
	names := []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"}
	for _, n := range names {
		b.WriteString("  " + n + ": {role: app, zone: srv}\n")
	}
	st, _ := mustCompile(t, compile.Allocations{}, b.String())
	for _, in := range st.Instances {
		last := in.IP[strings.LastIndex(in.IP, ".")+1:]
		if in.IP == "10.2.10.1" || !strings.HasPrefix(in.IP, "10.2.10.") {
			t.Errorf("%s got %s: the gateway or outside the zone", in.Name, in.IP)
		}
		if n := atoi(last); n >= 50 && n <= 250 {
			t.Errorf("%s got %s inside the DHCP range .50-.250", in.Name, in.IP)
		}
	}
	if got := instance(t, st, "a").IP; got != "10.2.10.2" {
		t.Errorf("first pool address = %s, want 10.2.10.2", got)
	}
}

func TestPoolExhaustedIsAnError(t *testing.T) {
	_, _, errs := compileYAML(t, compile.Allocations{}, map[string]string{"base.yaml": `
cloud: {name: t, domain: t.example}
sites: {a: {engine: local, nodes: [n1]}}
zones: {tiny: {type: service, cidr: 10.9.0.0/30}}
roles: {app: {vmids: 2000-2009}}
`, "i.yaml": `
instances:
  a: {role: app, zone: tiny}
  b: {role: app, zone: tiny}
`})
	if !strings.Contains(errs, `instance "b": zone "tiny" has no free address left in 10.9.0.0/30`) {
		t.Errorf("want pool exhaustion for b, got:\n%s", errs)
	}
}

func TestMACAndFQDN(t *testing.T) {
	st, _ := mustCompile(t, compile.Allocations{}, `
instances:
  web: {role: app, vmid: 2003, networks: [{zone: srv}, {zone: dmz}]}
`)
	in := instance(t, st, "web")
	if in.MAC != "02:00:00:00:07:d3" || in.NICs[1].MAC != "02:01:00:00:07:d3" {
		t.Errorf("MACs = %s, %s; want 02:00:00:00:07:d3 and 02:01:00:00:07:d3", in.MAC, in.NICs[1].MAC)
	}
	if in.FQDN != "web.srv.t.example" {
		t.Errorf("fqdn = %s, want web.srv.t.example", in.FQDN)
	}
}

func TestPlacementSpreadsAndStaysPut(t *testing.T) {
	st, alloc := mustCompile(t, compile.Allocations{}, `
instances:
  a: {role: app, zone: srv}
  b: {role: app, zone: srv}
  c: {role: app, zone: srv, node: n1}
  d: {role: app, zone: srv}
`)
	count := map[string]int{}
	for _, in := range st.Instances {
		count[in.Node]++
	}
	if count["n1"] != 2 || count["n2"] != 2 {
		t.Errorf("placement %v, want 2 per node", count)
	}
	before := instance(t, st, "d").Node
	st2, _ := mustCompile(t, alloc, `
instances:
  a: {role: app, zone: srv}
  b: {role: app, zone: srv}
  c: {role: app, zone: srv, node: n1}
  d: {role: app, zone: srv}
  aa: {role: app, zone: srv}
`)
	if after := instance(t, st2, "d").Node; after != before {
		t.Errorf("d moved from %s to %s when another instance was added", before, after)
	}
}

func flowSet(st *compile.State) []string {
	var out []string
	for _, f := range st.Flows {
		out = append(out, f.From+">"+f.To+" "+f.Proto+" "+strings.Join(f.Ports, ",")+" "+f.Kind)
	}
	return out
}

func TestFlows(t *testing.T) {
	st, _ := mustCompile(t, compile.Allocations{}, `
instances:
  web: {role: app, zone: srv, ingress: [{from: dmz, ports: [443, "8000-8100"]}]}
  nvr: {role: app, zone: srv, egress: [{to: cams, ports: 554}]}
  pub: {role: app, zone: dmz, ingress: [{from: internet, ports: [80, 443]}]}
`)
	want := []string{
		"dmz>internet any  internet",
		"dmz>srv any  access",
		"dmz>web tcp 443,8000-8100 pinhole",
		"internet>pub tcp 80,443 pinhole",
		"mgmt>cams any  access",
		"mgmt>internet any  internet",
		"mgmt>srv any  access",
		"nvr>cams tcp 554 egress",
		"srv>internet any  internet",
	}
	if got := flowSet(st); !slices.Equal(got, want) {
		t.Errorf("flows:\n got %q\nwant %q", got, want)
	}
	// The inactive zone "off" has access-to internet but does not exist.
	for _, f := range st.Flows {
		if f.From == "off" || f.To == "off" {
			t.Errorf("flow %v involves an inactive zone", f)
		}
	}
}

func TestAccessToAllSkipsIsolatedZonesAndInactiveOnes(t *testing.T) {
	st, _, errs := compileYAML(t, compile.Allocations{}, map[string]string{"s.yaml": `
cloud: {name: t, domain: t.example}
sites: {a: {engine: local, nodes: [n1]}}
zones:
  ops: {type: management, access-to: [all]}
  a: {type: service, sub-id: 1}
  iso: {type: iot, sub-id: 2, isolated: true}
  gone: {type: guest, state: disabled}
`})
	if errs != "" {
		t.Fatal(errs)
	}
	want := []string{"ops>a any  access", "ops>internet any  internet", "ops>iso any  access"}
	if got := flowSet(st); !slices.Equal(got, want) {
		t.Errorf("flows of a management zone with access-to all:\n got %q\nwant %q", got, want)
	}
}

func TestOverlayGroupFlows(t *testing.T) {
	st, _, errs := compileYAML(t, compile.Allocations{}, map[string]string{"s.yaml": `
cloud: {name: t, domain: t.example}
sites: {a: {engine: local, nodes: [n1]}}
groups:
  admin: {can-access: [all]}
  infra: {can-access: [infra]}
  projects: {can-access: [infra]}
  games: {}
`})
	if errs != "" {
		t.Fatal(errs)
	}
	want := []string{
		"group:admin>group:admin any  overlay", "group:admin>group:games any  overlay",
		"group:admin>group:infra any  overlay", "group:admin>group:projects any  overlay",
		"group:infra>group:infra any  overlay",
		"group:projects>group:infra any  overlay",
	}
	if got := flowSet(st); !slices.Equal(got, want) {
		t.Errorf("group flows:\n got %q\nwant %q", got, want)
	}
}

func TestResourcesFollowTheirDependencies(t *testing.T) {
	st, _ := mustCompile(t, compile.Allocations{}, `
instances:
  app: {role: app, zone: srv, depends-on: [db]}
  db: {role: app, zone: srv, depends-on: [dns]}
  dns: {role: infra, zone: mgmt, vmid: 1001}
`)
	pos := map[string]int{}
	for i, r := range st.Resources {
		pos[r.ID.String()] = i
	}
	for _, r := range st.Resources {
		for _, d := range r.Deps {
			if pos[d.String()] >= pos[r.ID.String()] {
				t.Errorf("%s (at %d) comes before its dependency %s (at %d)", r.ID, pos[r.ID.String()], d, pos[d.String()])
			}
		}
	}
	if _, ok := pos["network/a/off"]; ok {
		t.Error("an inactive zone became a network resource")
	}
	if pos["instance/a/dns"] > pos["instance/a/db"] || pos["instance/a/db"] > pos["instance/a/app"] {
		t.Errorf("depends-on order wrong: %v", pos)
	}
}

func TestDeterministicAcrossRunsAndFileSplits(t *testing.T) {
	inst := `
instances:
  web: {role: app, zone: srv, ingress: [{from: dmz, ports: [443]}]}
  db: {role: app, zone: srv}
  dns: {role: infra, zone: mgmt, vmid: 1001}
  cam: {role: app, zone: cams}
`
	var outs [][]byte
	for range 5 {
		st, _ := mustCompile(t, compile.Allocations{}, inst)
		b, _ := json.Marshal(st)
		outs = append(outs, b)
	}
	// The same spec as one file must compile to the same bytes.
	st, _, errs := compileYAML(t, compile.Allocations{}, map[string]string{"all.yaml": base + inst})
	if errs != "" {
		t.Fatal(errs)
	}
	b, _ := json.Marshal(st)
	outs = append(outs, b)
	for i := 1; i < len(outs); i++ {
		if !bytes.Equal(outs[0], outs[i]) {
			t.Fatalf("compile %d differs from compile 0", i)
		}
	}
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

const tenantBase = `
cloud: {name: t, domain: t.example}
sites: {a: {engine: local, nodes: [n1]}}
zones:
  ops: {type: management, access-to: [all]}
  srv: {type: service, sub-id: 10, pinhole-allowed-from: [internet, acme--lan]}
roles:
  app: {vmids: 2000-2009}
  tenants: {vmids: 10000-10099}
tenancy: {role: tenants, cidr: 10.128.0.0/16, vlans: 3000-3099}
`

const aliceKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g alice@laptop"

func tenantInstances(web string) string {
	return `
zones:
  acme--lan: {tenant: acme, type: guest, vlan: 3000, cidr: 10.128.0.0/24, access-to: [internet]}
instances:
  ops-vm: {role: app, zone: ops}
  acme--web: {tenant: acme, role: tenants, zone: acme--lan` + web + `}
`
}

func TestTenantInstanceAttrs(t *testing.T) {
	st, _, errs := compileYAML(t, compile.Allocations{}, map[string]string{"base.yaml": tenantBase,
		"tenants.yaml": tenantInstances(`, power: stopped, reboot: 2, rebuild: 1, ssh-keys: ["  ` + aliceKey + `  "]`)})
	if errs != "" {
		t.Fatal(errs)
	}
	in := instance(t, st, "acme--web")
	if in.Tenant != "acme" || in.Power != "stopped" || in.Reboot != 2 || in.Rebuild != 1 || !slices.Equal(in.SSHKeys, []string{aliceKey}) {
		t.Errorf("compiled %+v", in)
	}
	if ops := instance(t, st, "ops-vm"); ops.Power != "running" || ops.Tenant != "" || ops.SSHKeys == nil {
		t.Errorf("defaults: power %q tenant %q keys %v (want running, none, an empty list)", ops.Power, ops.Tenant, ops.SSHKeys)
	}
	var attrs map[string]string
	var network bool
	for _, r := range st.Resources {
		switch r.ID.String() {
		case "instance/a/acme--web":
			attrs = r.Attrs
		case "network/a/acme--lan":
			network = r.Attrs["vlan"] == "3000" && r.Attrs["cidr"] == "10.128.0.0/24"
		}
	}
	want := map[string]string{"tenant": "acme", "power": "stopped", "reboot": "2", "rebuild": "1", "ssh_keys": compile.SSHKeysDigest([]string{aliceKey})}
	for k, v := range want {
		if attrs[k] != v {
			t.Errorf("attr %s = %q, want %q", k, attrs[k], v)
		}
	}
	if len(attrs["ssh_keys"]) != 16 {
		t.Errorf("ssh_keys attr %q is not a short digest", attrs["ssh_keys"])
	}
	if !network {
		t.Error("the tenant zone is not a network resource with its VLAN and subnet")
	}
	for _, z := range st.Zones {
		if z.Name == "acme--lan" && z.Tenant != "acme" {
			t.Errorf("zone acme--lan: tenant %q", z.Tenant)
		}
	}
	// The operator's access-to all reaches every operator zone, but not
	// the tenant's: only the internet and the pinholes it allows reach it.
	want2 := []string{"acme--lan>internet any  internet", "ops>internet any  internet", "ops>srv any  access"}
	if got := flowSet(st); !slices.Equal(got, want2) {
		t.Errorf("flows:\n got %q\nwant %q", got, want2)
	}
}

// Power, generations, keys and size are changed in place: each shows in a
// plan as an update of the instance alone, naming the attribute.
func TestLifecycleChangesAreUpdates(t *testing.T) {
	compileWeb := func(web string) *compile.State {
		t.Helper()
		st, _, errs := compileYAML(t, compile.Allocations{}, map[string]string{"base.yaml": tenantBase, "tenants.yaml": tenantInstances(web)})
		if errs != "" {
			t.Fatal(errs)
		}
		return st
	}
	before := compileWeb("")
	for _, tc := range []struct{ web, field string }{
		{", power: stopped", "power"},
		{", power: running", ""},
		{", reboot: 1", "reboot"},
		{", rebuild: 1", "rebuild"},
		{`, ssh-keys: ["` + aliceKey + `"]`, "ssh_keys"},
		{", cpus: 2", "cpus"},
		{", memory: 2G", "memory_mib"},
	} {
		p := reconcile.Diff(compileWeb(tc.web).Resources, reconcile.Observed(before.Resources))
		var got []string
		for _, c := range p.Changes {
			got = append(got, string(c.Action)+" "+c.ID.String()+" "+strings.Join(c.Fields, ","))
		}
		var want []string
		if tc.field != "" {
			want = []string{"update instance/a/acme--web " + tc.field}
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: plan %q, want %q", tc.web, got, want)
		}
	}
}
