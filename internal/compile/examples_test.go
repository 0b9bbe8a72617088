package compile_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/spec"
)

// examplesDir holds one example cloud per directory, each reproducing a
// reference architecture its README names (examples/README.md).
const examplesDir = "../../examples"

// exampleDirs lists every directory under examples/ that holds a spec
// (*.yaml files), so that a new example is tested the day it is added.
func exampleDirs(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(examplesDir)
	if err != nil {
		t.Fatalf("reading %s: %v", examplesDir, err)
	}
	var dirs []string
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		yamls, err := filepath.Glob(filepath.Join(examplesDir, e.Name(), "*.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if len(yamls) > 0 {
			dirs = append(dirs, e.Name())
		}
	}
	if len(dirs) == 0 {
		t.Fatalf("no example specs under %s", examplesDir)
	}
	return dirs
}

// exampleWarnings is how many warnings each example is expected to print;
// each one is forced by the reference data and explained in the example's
// README. Examples not listed here are only required to have no errors.
var exampleWarnings = map[string]int{
	"tasmanian": 2, // VLANs 40 and 50 differ from typeId*100+subId (240, 250)
	"arvandor":  0,
	"zcloud":    0,
}

// exampleChecks asserts what each reference document promises, computed
// from the compiled state.
var exampleChecks = map[string]func(t *testing.T, s *spec.Spec, st *compile.State){
	"arvandor":  checkArvandor,
	"tasmanian": checkTasmanian,
	"zcloud":    checkZCloud,
}

func TestExamples(t *testing.T) {
	for _, name := range exampleDirs(t) {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(examplesDir, name)
			s, st, _, diags := compile.File(dir, compile.Allocations{})
			if diags.HasErrors() {
				t.Fatalf("%s does not compile:\n%s", dir, diagText(diags))
			}
			var warnings []string
			for _, d := range diags {
				if d.Severity == spec.Warning {
					warnings = append(warnings, d.String())
				}
			}
			if want, ok := exampleWarnings[name]; ok && len(warnings) != want {
				t.Errorf("%d warnings, want %d (each must be forced by the reference and explained in the README):\n%s",
					len(warnings), want, strings.Join(warnings, "\n"))
			}

			// Same input, byte-identical output.
			_, again, _, _ := compile.File(dir, compile.Allocations{})
			a, err := json.Marshal(st)
			if err != nil {
				t.Fatal(err)
			}
			b, err := json.Marshal(again)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(a, b) {
				t.Errorf("compiling %s twice gave different states", dir)
			}

			checkExampleBasics(t, s, st)
			if check, ok := exampleChecks[name]; ok {
				check(t, s, st)
			}
		})
	}
}

func diagText(ds spec.Diagnostics) string {
	lines := make([]string, len(ds))
	for i, d := range ds {
		lines[i] = d.String()
	}
	return strings.Join(lines, "\n")
}

// checkExampleBasics holds for every example: each instance is placed on a
// node of its site with an address in its zone, every address is unique,
// and resources come after what they depend on.
func checkExampleBasics(t *testing.T, s *spec.Spec, st *compile.State) {
	t.Helper()
	zones := exZones(st)
	sites := map[string]compile.Site{}
	for _, site := range st.Sites {
		sites[site.Name] = site
	}
	seen := map[string]string{}
	for _, in := range st.Instances {
		if !slices.Contains(sites[in.Site].Nodes, in.Node) {
			t.Errorf("instance %s: node %q is not a node of site %q", in.Name, in.Node, in.Site)
		}
		for _, nic := range in.NICs {
			z := zones[nic.Zone]
			if !slices.Contains(z.Sites, in.Site) {
				t.Errorf("instance %s: zone %s is not carried by its site %s", in.Name, nic.Zone, in.Site)
			}
			if !exContains(t, z.CIDR, nic.IP) {
				t.Errorf("instance %s: address %s is outside zone %s (%s)", in.Name, nic.IP, nic.Zone, z.CIDR)
			}
			if other, dup := seen[nic.IP]; dup {
				t.Errorf("address %s given to both %s and %s", nic.IP, other, in.Name)
			}
			seen[nic.IP] = in.Name
		}
	}
	pos := map[string]int{}
	for i, r := range st.Resources {
		pos[r.ID.String()] = i
	}
	for i, r := range st.Resources {
		for _, d := range r.Deps {
			if j, ok := pos[d.String()]; !ok || j >= i {
				t.Errorf("resource %s does not come after its dependency %s", r.ID, d)
			}
		}
	}
}

// ---- Arvandor (its docs/architecture.md) ---------------------------------

func checkArvandor(t *testing.T, s *spec.Spec, st *compile.State) {
	// The VMID table.
	want := map[string]spec.Range{
		"management": {Lo: 1000, Hi: 1999}, "services": {Lo: 2000, Hi: 2999}, "data": {Lo: 3000, Hi: 3999},
		"workloads": {Lo: 4000, Hi: 4999}, "monitoring": {Lo: 5000, Hi: 5999},
	}
	for role, r := range want {
		got, ok := s.Roles[role]
		if !ok {
			t.Errorf("role %s missing", role)
			continue
		}
		if got.VMIDs != r || got.IP != "vmid" {
			t.Errorf("role %s: vmids %s ip %q, want %s ip vmid", role, got.VMIDs, got.IP, r)
		}
	}

	// "The last digits determine the IP address", on every interface.
	for _, in := range st.Instances {
		role := s.Roles[in.Role]
		if role == nil || role.IP != "vmid" {
			t.Errorf("instance %s: role %q does not derive addresses from the VMID", in.Name, in.Role)
			continue
		}
		if !role.VMIDs.Contains(in.VMID) {
			t.Errorf("instance %s: VMID %d outside role %s's range %s", in.Name, in.VMID, in.Role, role.VMIDs)
		}
		for _, nic := range in.NICs {
			if got, want := exLastOctet(t, nic.IP), compile.VMIDAddrOffset(in.VMID); got != want {
				t.Errorf("instance %s (VMID %d): %s address %s, want last octet %d", in.Name, in.VMID, nic.Zone, nic.IP, want)
			}
		}
	}

	// "VMs query 10.10.10.11 (DNS server) via Nebula."
	dns := exInstance(t, st, "dns")
	if dns.VMID != 1001 || dns.OverlayIP != "10.10.10.11" || !slices.Contains(dns.Ports, compile.Port{Port: 53, Proto: "udp"}) {
		t.Errorf("dns: VMID %d overlay address %s ports %v, want 1001, 10.10.10.11 serving 53/udp", dns.VMID, dns.OverlayIP, dns.Ports)
	}
	zones := exZones(st)
	if z := zones["nebula"]; z.CIDR != "10.10.10.0/24" || z.Type != "overlay" {
		t.Errorf("nebula zone is %s %s, want the overlay 10.10.10.0/24", z.Type, z.CIDR)
	}
	// The overlay: 10.10.10.0/24, <hostname>.nebula, every VM a member at
	// its VMID-derived address, and all application traffic on it: no VM
	// has an interface but the bridge.
	if o := st.Overlay; o == nil || o.CIDR != "10.10.10.0/24" || o.Domain != "nebula" || o.Zone != "nebula" || len(o.Members) != len(st.Instances) {
		t.Errorf("overlay %+v, want 10.10.10.0/24, domain nebula, zone nebula, every instance a member", o)
	} else {
		for _, m := range o.Members {
			in := exInstance(t, st, m.Name)
			if want := fmt.Sprintf("10.10.10.%d/24", compile.VMIDAddrOffset(in.VMID)); m.OverlayIP != want || m.FQDN != m.Name+".nebula" {
				t.Errorf("member %s: %s %s, want %s %s.nebula", m.Name, m.OverlayIP, m.FQDN, want, m.Name)
			}
		}
	}
	for _, in := range st.Instances {
		if len(in.NICs) != 1 || in.Zone != "provisioning" {
			t.Errorf("instance %s: interfaces %+v, want only the bridge", in.Name, in.NICs)
		}
	}
	if z := zones["provisioning"]; z.CIDR != "192.168.100.0/24" {
		t.Errorf("provisioning zone (vmbr1) is %s, want 192.168.100.0/24", z.CIDR)
	}

	// All data services run as 3-node clusters.
	for _, prefix := range []string{"postgres-", "valkey-", "vault-"} {
		if n := exCount(st, func(in compile.Instance) bool { return strings.HasPrefix(in.Name, prefix) }); n != 3 {
			t.Errorf("%s*: %d instances, want a 3-node cluster", prefix, n)
		}
	}

	// The Nebula groups table.
	groups := slices.Sorted(maps.Keys(s.Groups))
	if !slices.Equal(groups, []string{"admin", "games", "infrastructure", "projects"}) {
		t.Errorf("groups %v, want admin, games, infrastructure, projects", groups)
	}
	// The groups each group reaches, exactly as the document's table:
	// admin everything, infrastructure itself, projects infrastructure,
	// games nothing — not even each other.
	wantAccess := map[string][]string{
		"admin":          groups,
		"infrastructure": {"infrastructure"},
		"projects":       {"infrastructure"},
	}
	if got := exOverlayAccess(st); !maps.EqualFunc(got, wantAccess, slices.Equal) {
		t.Errorf("overlay access %v, want %v", got, wantAccess)
	}

	// Provisioning flow: DNS first for every VM that may reach it (games
	// reach nothing, DNS included), data services before the apps.
	for _, in := range st.Instances {
		if in.Name != "dns" && !slices.Equal(in.Groups, []string{"games"}) && !exDependsOn(st, in.Name, "dns") {
			t.Errorf("instance %s does not come after dns", in.Name)
		}
	}
	for _, dep := range []string{"postgres-01", "valkey-01", "vault-01"} {
		if !exDependsOn(st, "app", dep) {
			t.Errorf("app does not come after %s", dep)
		}
	}
}

// ---- Tasmanian Cloud (its architecture and security pages) --------------

func checkTasmanian(t *testing.T, s *spec.Spec, st *compile.State) {
	// The mesh: Netbird's range, the Netbird server as its lighthouse, and
	// the three groups: customers are reached by management only, and
	// reach nothing.
	if o := st.Overlay; o == nil || o.CIDR != "100.64.0.0/10" || o.Zone != "netbird" || len(o.Lighthouses) != 1 || o.Lighthouses[0].Instance != "netbird" {
		t.Errorf("overlay %+v, want 100.64.0.0/10 (zone netbird) with the lighthouse netbird", o)
	} else {
		for _, m := range o.Members {
			var from []string
			for _, r := range m.Inbound {
				from = append(from, r.Group)
			}
			want := []string{"infrastructure", "management"}
			if !slices.Contains(m.Groups, "infrastructure") {
				want = []string{"management"}
			}
			if !slices.Equal(from, want) {
				t.Errorf("member %s (groups %v) is reached by %v, want %v", m.Name, m.Groups, from, want)
			}
		}
	}
	// The "Network Segmentation" table.
	type vlanCIDR struct {
		vlan int // -1: overlay, no VLAN
		cidr string
	}
	table := map[string]vlanCIDR{
		"management": {10, "10.0.10.0/24"},
		"cluster":    {20, "10.0.20.0/24"},
		"storage":    {30, "10.0.30.0/24"},
		"customer":   {40, "10.0.40.0/22"},
		"services":   {50, "10.0.50.0/24"},
		"netbird":    {-1, "100.64.0.0/10"},
	}
	zones := exZones(st)
	for name, want := range table {
		z, ok := zones[name]
		if !ok {
			t.Errorf("zone %s missing", name)
			continue
		}
		vlan := -1
		if z.VLAN != nil {
			vlan = *z.VLAN
		}
		if vlan != want.vlan || z.CIDR != want.cidr {
			t.Errorf("zone %s: VLAN %d %s, want VLAN %d %s", name, vlan, z.CIDR, want.vlan, want.cidr)
		}
	}
	if zones["netbird"].Type != "overlay" {
		t.Errorf("netbird zone has type %s, want overlay", zones["netbird"].Type)
	}

	// One site, three Proxmox nodes, all of them used.
	if len(st.Sites) != 1 || !slices.Equal(st.Sites[0].Nodes, []string{"pve1", "pve2", "pve3"}) {
		t.Fatalf("sites %+v, want one site with pve1, pve2, pve3", st.Sites)
	}
	used := map[string]bool{}
	for _, in := range st.Instances {
		used[in.Node] = true
	}
	if len(used) != 3 {
		t.Errorf("instances use nodes %v, want all three", slices.Sorted(maps.Keys(used)))
	}
	// One Ceph OSD host per node, in the storage VLAN.
	osdNodes := map[string]bool{}
	for _, in := range st.Instances {
		if strings.HasPrefix(in.Name, "ceph-osd-") {
			osdNodes[in.Node] = true
			if in.Zone != "storage" {
				t.Errorf("%s is in zone %s, want storage", in.Name, in.Zone)
			}
		}
	}
	if len(osdNodes) != 3 {
		t.Errorf("Ceph OSDs on nodes %v, want one per node", slices.Sorted(maps.Keys(osdNodes)))
	}

	// Default deny: only management zones reach other zones wholesale; the
	// customer zone is reached by management only, and reaches only the
	// internet.
	for _, f := range st.Flows {
		if f.Kind != compile.KindAccess {
			continue
		}
		if zones[f.From].Type != "management" {
			t.Errorf("zone %s reaches zone %s wholesale; only management may", f.From, f.To)
		}
		if f.From == "customer" {
			t.Errorf("customer zone reaches %s", f.To)
		}
	}
	for _, z := range []string{"customer", "management", "storage"} {
		if !zones[z].Isolated {
			t.Errorf("zone %s is not isolated", z)
		}
	}

	// The HAProxy edge: two instances open to the internet on 80 and 443.
	edges := 0
	for _, in := range st.Instances {
		if in.Role != "edge" || !strings.HasPrefix(in.Name, "edge-") {
			continue
		}
		edges++
		for _, port := range []string{"80", "443"} {
			if !exFlowTo(st, "internet", in.Name, port) {
				t.Errorf("%s is not reachable from the internet on %s", in.Name, port)
			}
		}
	}
	if edges != 2 {
		t.Errorf("%d HAProxy instances, want 2", edges)
	}

	// panel.tasmanian.cloud -> panel via the edge.
	r := exRoute(t, st, "panel.tasmanian.cloud")
	if !slices.Equal(r.Backends, []string{"panel"}) || len(r.Frontends) != 2 {
		t.Errorf("route panel.tasmanian.cloud: %v -> %v", r.Frontends, r.Backends)
	}
	for _, fe := range r.Frontends {
		if exInstance(t, st, fe).Zone != "edge" {
			t.Errorf("route panel.tasmanian.cloud: front end %s is not in the edge zone", fe)
		}
	}

	// Netbird groups: management reaches all, infrastructure only itself,
	// customers nothing.
	groups := slices.Sorted(maps.Keys(s.Groups))
	got := exOverlayAccess(st)
	want := map[string][]string{
		"infrastructure": {"infrastructure"},
		"management":     groups,
	}
	if !maps.EqualFunc(got, want, slices.Equal) {
		t.Errorf("overlay access %v, want %v", got, want)
	}
	for _, g := range groups {
		if exCount(st, func(in compile.Instance) bool { return slices.Contains(in.Groups, g) }) == 0 {
			t.Errorf("Netbird group %s has no instance", g)
		}
	}

	// Tenants (holdfast serve) get /24s of 10.128.0.0/16 with VLANs from
	// 3000 at Launceston, and VMIDs of the customer role: the first network
	// handed out is free.
	if s.Tenancy == nil {
		t.Fatal("no tenancy block: holdfast up could not serve tenants")
	}
	if n := s.Tenancy.Net; n.Site != "launceston" || s.Tenancy.Role != "customer" || n.Pool.String() != "10.128.0.0/16" || n.Bits != 24 {
		t.Errorf("tenancy %+v role %s", n, s.Tenancy.Role)
	}
	if p, vlan, ok := s.FreeTenantNetwork(); !ok || p.String() != "10.128.0.0/24" || vlan != 3000 {
		t.Errorf("first tenant network %s VLAN %d (%v), want 10.128.0.0/24 VLAN 3000", p, vlan, ok)
	}
}

// ---- zCloud, the two-provider VM map --------------------------------------

func checkZCloud(t *testing.T, s *spec.Spec, st *compile.State) {
	if len(st.Sites) != 2 {
		t.Fatalf("%d sites, want two providers", len(st.Sites))
	}
	peer := map[string]string{}
	for _, site := range st.Sites {
		peer[site.Name] = site.Peer
		if len(site.Nodes) != 1 {
			t.Errorf("site %s has nodes %v, want one: the zCloud hypervisor", site.Name, site.Nodes)
		}
	}
	for a, b := range peer {
		if b == "" || peer[b] != a {
			t.Errorf("sites %s and %s are not each other's peer", a, b)
		}
	}

	// Every role of the map exists exactly once at each provider.
	for _, role := range []string{"znet", "zfront", "zstore", "zpod", "zcluster"} {
		if _, ok := s.Roles[role]; !ok {
			t.Errorf("role %s missing", role)
		}
	}
	for role := range s.Roles {
		for site := range peer {
			if n := exCount(st, func(in compile.Instance) bool { return in.Role == role && in.Site == site }); n != 1 {
				t.Errorf("role %s has %d instances at %s, want 1", role, n, site)
			}
		}
	}
	byRole := func(role, site string) compile.Instance {
		for _, in := range st.Instances {
			if in.Role == role && in.Site == site {
				return in
			}
		}
		t.Fatalf("no %s at %s", role, site)
		return compile.Instance{}
	}

	zones := exZones(st)
	for site := range peer {
		// zPod depends on zStore and zFront at runtime.
		pod := byRole("zpod", site)
		for _, dep := range []string{byRole("zstore", site).Name, byRole("zfront", site).Name} {
			if !slices.Contains(pod.DependsOn, dep) {
				t.Errorf("%s does not depend on %s", pod.Name, dep)
			}
		}
		// zStore is replicated to its peer; zCluster replicates itself.
		if !byRole("zstore", site).Replicate {
			t.Errorf("zstore at %s is not replicated", site)
		}
		// zStore and zCluster: "no services exposed outside the local and
		// peer networks"; zNet and zFront do not connect to zStore.
		for _, role := range []string{"zstore", "zcluster"} {
			in := byRole(role, site)
			for _, f := range st.Flows {
				if f.To != in.Name {
					continue
				}
				var from string // the source's provider
				if z, ok := zones[f.From]; ok {
					from = exOnlySite(t, z)
				} else if f.From != "internet" {
					from = exInstance(t, st, f.From).Site
				}
				if !slices.Contains([]string{site, peer[site]}, from) {
					t.Errorf("%s is reachable from %s, outside the local and peer networks", in.Name, f.From)
				}
			}
		}
		store := byRole("zstore", site)
		for _, role := range []string{"znet", "zfront"} {
			from := byRole(role, site).Zone
			for _, f := range st.Flows {
				if f.To == store.Name && (f.From == from || f.From == byRole(role, site).Name) {
					t.Errorf("%s connects to %s", role, store.Name)
				}
			}
		}
	}
	// Only zFront is reachable from the internet.
	for _, f := range st.Flows {
		if f.From == "internet" && exInstance(t, st, f.To).Role != "zfront" {
			t.Errorf("%s is reachable from the internet", f.To)
		}
	}

	// Each provider's zFront prefers its local zPod and fails over to the
	// peer's.
	if len(st.Routes) == 0 {
		t.Fatal("no routes")
	}
	fronted := map[string]bool{}
	for _, r := range st.Routes {
		if len(r.Frontends) == 0 || len(r.Backends) == 0 || len(r.Failover) == 0 {
			t.Errorf("route %s: front ends %v, backends %v, failover %v", r.Name, r.Frontends, r.Backends, r.Failover)
			continue
		}
		site := exInstance(t, st, r.Frontends[0]).Site
		fronted[site] = true
		for _, fe := range r.Frontends {
			if in := exInstance(t, st, fe); in.Site != site || in.Role != "zfront" {
				t.Errorf("route %s: front end %s is a %s at %s", r.Name, fe, in.Role, in.Site)
			}
		}
		for _, be := range r.Backends {
			if in := exInstance(t, st, be); in.Site != site {
				t.Errorf("route %s: backend %s is at %s, not local to the front end at %s", r.Name, be, in.Site, site)
			}
		}
		for _, be := range r.Failover {
			if in := exInstance(t, st, be); in.Site != peer[site] {
				t.Errorf("route %s: failover %s is at %s, not at the peer %s", r.Name, be, in.Site, peer[site])
			}
		}
	}
	if len(fronted) != 2 {
		t.Errorf("routes are served at %v, want both providers", slices.Sorted(maps.Keys(fronted)))
	}
}

// ---- helpers ---------------------------------------------------------------

func exZones(st *compile.State) map[string]compile.Zone {
	m := make(map[string]compile.Zone, len(st.Zones))
	for _, z := range st.Zones {
		m[z.Name] = z
	}
	return m
}

func exInstance(t *testing.T, st *compile.State, name string) compile.Instance {
	t.Helper()
	for _, in := range st.Instances {
		if in.Name == name {
			return in
		}
	}
	t.Fatalf("no instance %q", name)
	return compile.Instance{}
}

func exRoute(t *testing.T, st *compile.State, host string) compile.Route {
	t.Helper()
	for _, r := range st.Routes {
		if r.Host == host {
			return r
		}
	}
	t.Fatalf("no route for %s", host)
	return compile.Route{}
}

func exCount(st *compile.State, match func(compile.Instance) bool) int {
	n := 0
	for _, in := range st.Instances {
		if match(in) {
			n++
		}
	}
	return n
}

// exOverlayAccess maps each group to the other groups it may reach, sorted;
// groups that reach nothing are absent.
func exOverlayAccess(st *compile.State) map[string][]string {
	m := map[string][]string{}
	for _, f := range st.Flows {
		if f.Kind == compile.KindOverlay {
			from, to := strings.TrimPrefix(f.From, "group:"), strings.TrimPrefix(f.To, "group:")
			m[from] = append(m[from], to)
		}
	}
	for g := range m {
		slices.Sort(m[g])
	}
	return m
}

// exFlowTo reports whether some flow lets from reach instance to on port.
func exFlowTo(st *compile.State, from, to, port string) bool {
	for _, f := range st.Flows {
		if f.From == from && f.To == to && (len(f.Ports) == 0 || slices.Contains(f.Ports, port)) {
			return true
		}
	}
	return false
}

// exDependsOn reports whether a depends on b, directly or not.
func exDependsOn(st *compile.State, a, b string) bool {
	deps := map[string][]string{}
	for _, in := range st.Instances {
		deps[in.Name] = in.DependsOn
	}
	seen := map[string]bool{}
	stack := []string{a}
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, d := range deps[n] {
			if d == b {
				return true
			}
			if !seen[d] {
				seen[d] = true
				stack = append(stack, d)
			}
		}
	}
	return false
}

func exOnlySite(t *testing.T, z compile.Zone) string {
	t.Helper()
	if len(z.Sites) != 1 {
		t.Errorf("zone %s is carried by %v, want one provider", z.Name, z.Sites)
		return ""
	}
	return z.Sites[0]
}

func exContains(t *testing.T, cidr, ip string) bool {
	t.Helper()
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		t.Errorf("cidr %q: %v", cidr, err)
		return false
	}
	a, err := netip.ParseAddr(ip)
	if err != nil {
		t.Errorf("address %q: %v", ip, err)
		return false
	}
	return p.Contains(a)
}

func exLastOctet(t *testing.T, ip string) int {
	t.Helper()
	a, err := netip.ParseAddr(ip)
	if err != nil || !a.Is4() {
		t.Errorf("address %q is not IPv4", ip)
		return -1
	}
	return int(a.As4()[3])
}
