package compile_test

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/compile"
)

// overlaySpec is base with groups and an overlay whose lighthouse is lh.
const overlaySpec = `
groups:
  infra: {can-access: [infra]}
  apps: {can-access: [infra]}
overlay:
  cidr: 10.10.10.0/24
  domain: mesh
  lighthouses: [lh, {address: "203.0.113.7:4243", overlay-ip: 10.10.10.254}]
`

func member(t *testing.T, st *compile.State, name string) compile.Member {
	t.Helper()
	if st.Overlay == nil {
		t.Fatal("no overlay in the state")
	}
	for _, m := range st.Overlay.Members {
		if m.Name == name {
			return m
		}
	}
	t.Fatalf("no member %s", name)
	return compile.Member{}
}

func overlayIPs(st *compile.State) map[string]string {
	out := map[string]string{}
	for _, m := range st.Overlay.Members {
		out[m.Name] = m.OverlayIP
	}
	return out
}

// Member addresses: explicit, derived from the VMID like zone addresses
// (ip: vmid), else allocated from the cidr; kept across compiles through
// the allocations, also when an instance that came first in name order
// is added or removed.
func TestOverlayAddresses(t *testing.T) {
	instances := `
instances:
  lh:   {role: infra, vmid: 1001, zone: srv, groups: [infra]}
  db:   {role: infra, vmid: 1003, zone: srv, groups: [infra], overlay-ip: 10.10.10.100}
  web:  {role: app, zone: dmz, groups: [apps]}
  zeta: {role: app, zone: dmz, groups: [apps]}
  plain: {role: app, zone: dmz}
`
	files := map[string]string{"base.yaml": base, "overlay.yaml": overlaySpec, "instances.yaml": instances}
	st, next, errs := compileYAML(t, compile.Allocations{}, files)
	if errs != "" {
		t.Fatal(errs)
	}
	want := map[string]string{
		"lh":   "10.10.10.11/24",  // VMID 1001: 1*10+1, the rule srv's address follows too
		"db":   "10.10.10.100/24", // explicit
		"web":  "10.10.10.1/24",   // the pool, in name order
		"zeta": "10.10.10.2/24",
	}
	if got := overlayIPs(st); !reflect.DeepEqual(got, want) {
		t.Errorf("overlay addresses %v, want %v", got, want)
	}
	if lh := instance(t, st, "lh"); lh.OverlayIP != "10.10.10.11" || lh.IP != "10.2.10.11" {
		t.Errorf("lh: overlay_ip %q ip %q, want 10.10.10.11 beside 10.2.10.11", lh.OverlayIP, lh.IP)
	}
	if p := instance(t, st, "plain"); p.OverlayIP != "" || slices.ContainsFunc(st.Overlay.Members, func(m compile.Member) bool { return m.Name == "plain" }) {
		t.Errorf("plain has no groups but is a member (overlay_ip %q)", p.OverlayIP)
	}
	if got := next.Instances["web"].Addrs[compile.OverlayAddrKey]; got != "10.10.10.1" {
		t.Errorf("allocations keep web's overlay address as %q, want 10.10.10.1", got)
	}

	// An instance before web in name order arrives: web and zeta keep theirs.
	files["instances.yaml"] = instances + "  aaa: {role: app, zone: dmz, groups: [apps]}\n"
	st2, next2, errs := compileYAML(t, next, files)
	if errs != "" {
		t.Fatal(errs)
	}
	want["aaa"] = "10.10.10.3/24"
	if got := overlayIPs(st2); !reflect.DeepEqual(got, want) {
		t.Errorf("after adding aaa: %v, want %v", got, want)
	}
	// web is removed: its address stays reserved until it is destroyed.
	files["instances.yaml"] = strings.Replace(files["instances.yaml"], "  web:  {role: app, zone: dmz, groups: [apps]}\n", "", 1) + "  new: {role: app, zone: dmz, groups: [apps]}\n"
	st3, _, errs := compileYAML(t, next2, files)
	if errs != "" {
		t.Fatal(errs)
	}
	if got := member(t, st3, "new").OverlayIP; got == "10.10.10.1/24" {
		t.Errorf("new took removed web's overlay address %s before web was destroyed", got)
	}

	// The lighthouses: the member at its zone address and the overlay's
	// port, the outside one as written.
	wantLH := []compile.Lighthouse{
		{Instance: "lh", OverlayIP: "10.10.10.11", Underlay: "10.2.10.11:4242"},
		{OverlayIP: "10.10.10.254", Underlay: "203.0.113.7:4243"},
	}
	if !reflect.DeepEqual(st.Overlay.Lighthouses, wantLH) {
		t.Errorf("lighthouses %+v, want %+v", st.Overlay.Lighthouses, wantLH)
	}
	if m := member(t, st, "lh"); !m.Lighthouse || m.FQDN != "lh.mesh" || m.Site != "a" {
		t.Errorf("member lh: %+v, want a lighthouse named lh.mesh at site a", m)
	}
	if m := member(t, st, "web"); m.Lighthouse {
		t.Errorf("web is not a lighthouse: %+v", m)
	}
}

// Two VMIDs that derive one overlay address are a compile error at the
// second, as for zone addresses; so is one that derives an address the
// cidr cannot give.
func TestOverlayDerivedCollision(t *testing.T) {
	_, _, errs := compileYAML(t, compile.Allocations{}, map[string]string{"base.yaml": base, "overlay.yaml": overlaySpec, "instances.yaml": `
instances:
  lh:  {role: infra, vmid: 1001, zone: srv, groups: [infra]}
  lh2: {role: infra, vmid: 1011, networks: [{zone: srv, ip: 10.2.10.40}], groups: [infra]}
`})
	want := `instances.yaml:4:83: instance "lh2": VMID 1011 derives overlay address 10.10.10.11, which instance "lh" already has`
	if !strings.HasSuffix(errs, want) || strings.Count(errs, "\n") != 0 {
		t.Errorf("errors:\n%s\nwant:\n%s", errs, want)
	}
}

// The Arvandor groups table compiled into each member's inbound firewall:
// admin reaches all, infrastructure reaches infrastructure, projects reach
// infrastructure, games reach nothing. Outbound allows all.
func TestOverlayFirewallArvandor(t *testing.T) {
	_, st, _, diags := compile.File("../../examples/arvandor", compile.Allocations{})
	if diags.HasErrors() {
		t.Fatal(diags.Err())
	}
	from := func(groups ...string) []compile.FirewallRule {
		out := []compile.FirewallRule{}
		for _, g := range groups {
			out = append(out, compile.FirewallRule{Port: "any", Proto: "any", Group: g})
		}
		return out
	}
	want := map[string][]compile.FirewallRule{
		"postgres-01": from("admin", "infrastructure", "projects"), // infrastructure
		"dns":         from("admin", "infrastructure", "projects"),
		"app":         from("admin"), // projects: only admin reaches them
		"game-01":     from("admin"), // games: only admin
	}
	for name, rules := range want {
		m := member(t, st, name)
		if !reflect.DeepEqual(m.Inbound, rules) {
			t.Errorf("%s (groups %v): inbound %+v, want %+v", name, m.Groups, m.Inbound, rules)
		}
		if wantOut := []compile.FirewallRule{{Port: "any", Proto: "any", Host: "any"}}; !reflect.DeepEqual(m.Outbound, wantOut) {
			t.Errorf("%s: outbound %+v, want %+v", name, m.Outbound, wantOut)
		}
	}
	// games reach nothing: no member lets the games group in.
	for _, m := range st.Overlay.Members {
		for _, r := range m.Inbound {
			if r.Group == "games" {
				t.Errorf("%s lets games in: %+v", m.Name, r)
			}
		}
	}
}

// Admits reads a member's inbound rules as Nebula applies them.
func TestMemberAdmits(t *testing.T) {
	_, st, _, diags := compile.File("../../examples/arvandor", compile.Allocations{})
	if diags.HasErrors() {
		t.Fatal(diags.Err())
	}
	pg, app, game := member(t, st, "postgres-01"), member(t, st, "app"), member(t, st, "game-01")
	admin := compile.Member{Name: "ws", Groups: []string{"admin"}}
	for _, c := range []struct {
		to, from compile.Member
		proto    string
		port     int
		want     bool
	}{
		{pg, app, "tcp", 5432, true},      // projects reach infrastructure
		{app, pg, "tcp", 8080, false},     // not the reverse
		{pg, game, "tcp", 5432, false},    // games reach nothing
		{game, admin, "tcp", 25565, true}, // admin reaches everything
		{game, admin, "udp", 53, true},
		{app, game, "tcp", 8080, false},
	} {
		if got := c.to.Admits(c.from, c.proto, c.port); got != c.want {
			t.Errorf("%s admits %s %v on %s/%d: %v, want %v", c.to.Name, c.from.Name, c.from.Groups, c.proto, c.port, got, c.want)
		}
	}
}

// A spec without an overlay compiles to none, and no instance has an
// overlay address.
func TestNoOverlay(t *testing.T) {
	st, next := mustCompile(t, compile.Allocations{}, `
groups: {infra: {}}
instances:
  a: {role: infra, zone: srv, groups: [infra]}
`)
	if st.Overlay != nil || instance(t, st, "a").OverlayIP != "" {
		t.Errorf("overlay %+v, overlay_ip %q without an overlay section", st.Overlay, instance(t, st, "a").OverlayIP)
	}
	if _, ok := next.Instances["a"].Addrs[compile.OverlayAddrKey]; ok {
		t.Errorf("allocations hold an overlay address without an overlay")
	}
}

// Flows say what enforces them: group flows the overlay, the rest the
// zone firewall.
func TestFlowsEnforcedBy(t *testing.T) {
	_, st, _, diags := compile.File("../../examples/arvandor", compile.Allocations{})
	if diags.HasErrors() {
		t.Fatal(diags.Err())
	}
	kinds := map[string]bool{}
	for _, f := range st.Flows {
		want := compile.EnforcedByZoneFirewall
		if f.Kind == compile.KindOverlay {
			want = compile.EnforcedByOverlay
		}
		if f.EnforcedBy != want {
			t.Errorf("flow %s -> %s (%s): enforced by %q, want %q", f.From, f.To, f.Kind, f.EnforcedBy, want)
		}
		kinds[f.EnforcedBy] = true
	}
	if !kinds[compile.EnforcedByOverlay] || !kinds[compile.EnforcedByZoneFirewall] {
		t.Errorf("arvandor's flows are enforced by %v, want both the overlay and the zone firewall", kinds)
	}
}
