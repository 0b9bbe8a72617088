package firewall

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/compile"
)

// These tests need no privileges: they check what Apply would write.

func compileDir(t *testing.T, files map[string]string) *compile.State {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_, st, _, diags := compile.File(dir, compile.Allocations{})
	if st == nil {
		t.Fatalf("compile:\n%v", diags)
	}
	return st
}

func elements(t *testing.T, rs *ruleset, name string) []string {
	t.Helper()
	for _, s := range rs.sets {
		if s.name == name {
			out := []string{}
			for _, e := range s.elems {
				out = append(out, s.format(e))
			}
			return out
		}
	}
	t.Fatalf("no set %s", name)
	return nil
}

func ipOf(t *testing.T, st *compile.State, name string) string {
	t.Helper()
	for _, in := range st.Instances {
		if in.Name == name {
			return in.IP
		}
	}
	t.Fatalf("no instance %s", name)
	return ""
}

// Every kind of flow lands in the set for its source, destination and
// protocol, and nothing else does.
func TestFlowsBecomeSetElements(t *testing.T) {
	st := compileDir(t, map[string]string{"cloud.yaml": `
cloud: {name: t, domain: t.example}
sites: {a: {engine: local, nodes: [n1]}}
zones:
  mgmt: {type: management, sub-id: 10, access-to: [srv, cams]}
  srv:  {type: service, sub-id: 10, access-to: [internet], pinhole-allowed-from: [dmz, internet]}
  dmz:  {type: dmz, sub-id: 10, pinhole-allowed-from: [internet]}
  cams: {type: iot, sub-id: 30, isolated: true, pinhole-allowed-from: [srv]}
  off:  {type: guest, sub-id: 10, state: inactive, access-to: [internet]}
roles: {app: {vmids: 2000-2099}}
groups: {ops: {can-access: [ops]}}
instances:
  web:   {role: app, zone: srv, ingress: [{from: dmz, ports: [8080, "9000-9010"]}, {from: internet, ports: [8443]}, {from: dmz, proto: icmp}]}
  dns:   {role: app, zone: srv, ingress: [{from: dmz, ports: [53], proto: udp}, {from: internet, proto: udp}, {from: internet}]}
  cam:   {role: app, zone: cams, ingress: [{from: srv, ports: [554]}]}
  nvr:   {role: app, zone: srv, egress: [{to: cams, ports: [554]}, {to: internet, proto: udp, ports: [123]}]}
  proxy: {role: app, zone: dmz, groups: [ops], egress: [{to: internet, ports: [80, 443]}, {to: internet, proto: icmp}]}
  front: {role: app, zone: dmz}
  app:   {role: app, zone: srv}
routes:
  site: {host: www.t.example, frontends: [front], backends: [app], backend-port: 8080}
`})
	rs, err := build(FromState(st, "a", "wan0"))
	if err != nil {
		t.Fatal(err)
	}
	ip := func(name string) string { return ipOf(t, st, name) }
	want := map[string][]string{
		"cloud":      {"10.0.10.0/24", "10.2.10.0/24", "10.4.30.0/24", "10.6.10.0/24"},
		"local":      {"10.0.10.0/24", "10.2.10.0/24", "10.4.30.0/24", "10.6.10.0/24"},
		"bridges":    {`"br10010"`, `"br10210"`, `"br10430"`, `"br10610"`},
		"bridge_src": {`"br10010" . 10.0.10.0/24`, `"br10210" . 10.2.10.0/24`, `"br10430" . 10.4.30.0/24`, `"br10610" . 10.6.10.0/24`},
		// Access (mgmt to srv and the isolated cams, which only a
		// management zone may list), and every zone within itself.
		"from_zone": {"10.0.10.0/24 . 10.0.10.0/24", "10.0.10.0/24 . 10.2.10.0/24", "10.0.10.0/24 . 10.4.30.0/24",
			"10.2.10.0/24 . 10.2.10.0/24", "10.4.30.0/24 . 10.4.30.0/24", "10.6.10.0/24 . 10.6.10.0/24"},
		"from_zone_proto": {"10.6.10.0/24 . " + ip("web") + " . icmp"},
		"from_zone_port": {
			"10.2.10.0/24 . " + ip("cam") + " . tcp . 554",
			"10.6.10.0/24 . " + ip("dns") + " . udp . 53",
			"10.6.10.0/24 . " + ip("web") + " . tcp . 8080",
			"10.6.10.0/24 . " + ip("web") + " . tcp . 9000-9010",
		},
		"from_host":       {},
		"from_host_proto": {},
		"from_host_port": {
			ip("nvr") + " . 10.4.30.0/24 . tcp . 554",         // egress into a zone
			ip("front") + " . " + ip("app") + " . tcp . 8080", // route: front end to backend
		},
		"inbound":       {ip("dns")},
		"inbound_proto": {ip("dns") + " . udp"},
		// The route's port, and 80 for its certificate's HTTP-01 challenge.
		"inbound_port":   {ip("web") + " . tcp . 8443", ip("front") + " . tcp . 443", ip("front") + " . tcp . 80"},
		"outbound":       {"10.2.10.0/24"},
		"outbound_proto": {ip("proxy") + " . icmp"},
		"outbound_port":  {ip("nvr") + " . udp . 123", ip("proxy") + " . tcp . 80", ip("proxy") + " . tcp . 443"},
	}
	for name, w := range want {
		got := elements(t, rs, name)
		slices.Sort(got)
		slices.Sort(w)
		if !slices.Equal(got, w) {
			t.Errorf("set %s:\n got %q\nwant %q", name, got, w)
		}
	}
}

// A site's edge bridges only its own zones, and enforces flows to and from
// the other site's zones, which it reaches through the uplink unmasked.
func TestSiteEdgeOfATwoSiteCloud(t *testing.T) {
	files := map[string]string{}
	for _, f := range []string{"cloud.yaml", "zones.yaml", "instances.yaml", "routes.yaml"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "..", "..", "examples", "zcloud", f))
		if err != nil {
			t.Fatalf("the zcloud example: %v", err)
		}
		files[f] = string(b)
	}
	st := compileDir(t, files)
	in := FromState(st, "provider-a", "wan0")
	rs, err := build(in)
	if err != nil {
		t.Fatal(err)
	}
	var localZones, allZones []string
	for _, z := range st.Zones {
		allZones = append(allZones, z.CIDR)
		if slices.Contains(z.Sites, "provider-a") {
			localZones = append(localZones, z.CIDR)
		}
	}
	if got := elements(t, rs, "local"); len(got) != len(localZones) || len(localZones) == len(allZones) {
		t.Errorf("local zones %q, want the %d of provider-a among %d", got, len(localZones), len(allZones))
	}
	for _, b := range elements(t, rs, "bridges") {
		if !strings.HasPrefix(b, `"br`) {
			t.Errorf("bridge %s", b)
		}
	}
	// The route's failover: zfront-a reaches zpod-b at the other site.
	failover := ipOf(t, st, "zfront-a") + " . " + ipOf(t, st, "zpod-b") + " . tcp . 8080"
	if !slices.Contains(elements(t, rs, "from_host_port"), failover) {
		t.Errorf("from_host_port lacks the cross-site failover %s", failover)
	}
	if len(elements(t, rs, "cloud")) == 0 {
		t.Error("empty cloud set")
	}
}

func TestIgnoredFlows(t *testing.T) {
	zone := func(name, cidr string, vni int) compile.Zone {
		return compile.Zone{Name: name, CIDR: cidr, VNI: &vni, Sites: []string{"a"}}
	}
	in := Input{WAN: "wan0", Site: "a", Zones: []compile.Zone{zone("a", "10.1.0.0/24", 1), zone("b", "10.2.0.0/24", 2)}, Flows: []compile.Flow{
		{From: "group:x", To: "group:y", Proto: "any", Kind: compile.KindOverlay},
		{From: "group:x", To: "b", Proto: "any", Kind: compile.KindAccess, ToCIDR: "10.2.0.0/24"},                       // no source address
		{From: "gone", To: "b", Proto: "any", Kind: compile.KindAccess, FromCIDR: "10.9.0.0/24", ToCIDR: "10.2.0.0/24"}, // not a present zone
		{From: "internet", To: "internet", Proto: "any", Kind: compile.KindRoute},
	}}
	rs, err := build(in)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := elements(t, rs, "from_zone"), []string{"10.1.0.0/24 . 10.1.0.0/24", "10.2.0.0/24 . 10.2.0.0/24"}; !slices.Equal(got, want) {
		t.Errorf("from_zone = %q, want only the zones themselves %q", got, want)
	}
	for _, name := range []string{"inbound", "outbound", "from_zone_port", "from_host"} {
		if got := elements(t, rs, name); len(got) > 0 {
			t.Errorf("%s = %q, want empty", name, got)
		}
	}
}

func TestBuildRefusesWhatItCannotEnforce(t *testing.T) {
	vni := 1
	z := []compile.Zone{{Name: "a", CIDR: "10.1.0.0/24", VNI: &vni}}
	flow := func(proto string, ports ...string) []compile.Flow {
		return []compile.Flow{{From: "a", To: "internet", Proto: proto, Ports: ports, Kind: compile.KindEgress, FromCIDR: "10.1.0.5/32"}}
	}
	for name, in := range map[string]Input{
		"no uplink":        {Zones: z},
		"long uplink name": {WAN: "an-uplink-too-long", Zones: z},
		"bad cidr":         {WAN: "wan0", Zones: []compile.Zone{{Name: "a", CIDR: "10.1.0.0/33"}}},
		"ipv6 zone":        {WAN: "wan0", Zones: []compile.Zone{{Name: "a", CIDR: "fd00::/64"}}},
		"unknown protocol": {WAN: "wan0", Zones: z, Flows: flow("gre")},
		"icmp with ports":  {WAN: "wan0", Zones: z, Flows: flow("icmp", "8")},
		"port zero":        {WAN: "wan0", Zones: z, Flows: flow("tcp", "0")},
		"reversed range":   {WAN: "wan0", Zones: z, Flows: flow("tcp", "90-80")},
		"not a port":       {WAN: "wan0", Zones: z, Flows: flow("tcp", "http")},
	} {
		if _, err := build(in); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// The same flows in any order give the same ruleset.
func TestRulesetIsDeterministic(t *testing.T) {
	st := compileDir(t, map[string]string{"cloud.yaml": `
cloud: {name: t, domain: t.example}
sites: {a: {engine: local, nodes: [n1]}}
zones:
  z1: {type: service, sub-id: 1, access-to: [internet, z2, z3], pinhole-allowed-from: [internet, z3]}
  z2: {type: service, sub-id: 2, access-to: [z1]}
  z3: {type: service, sub-id: 3}
roles: {app: {vmids: 2000-2099}}
instances:
  a: {role: app, zone: z1, ingress: [{from: internet, ports: [80, "8000-8100", 8050]}, {from: z3, ports: [22]}]}
  b: {role: app, zone: z2, egress: [{to: z1, ports: [443]}, {to: internet, proto: udp}]}
`})
	in := FromState(st, "a", "wan0")
	want, err := Ruleset(in)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 20 {
		shuffled := in
		shuffled.Flows = slices.Clone(in.Flows)
		shuffled.Zones = slices.Clone(in.Zones)
		rng.Shuffle(len(shuffled.Flows), func(i, j int) { shuffled.Flows[i], shuffled.Flows[j] = shuffled.Flows[j], shuffled.Flows[i] })
		rng.Shuffle(len(shuffled.Zones), func(i, j int) { shuffled.Zones[i], shuffled.Zones[j] = shuffled.Zones[j], shuffled.Zones[i] })
		if got, _ := Ruleset(shuffled); got != want {
			t.Fatalf("shuffled input gave another ruleset:\n%s\nwant\n%s", got, want)
		}
	}
	// Overlapping port ranges of one pinhole merge into one element.
	if !strings.Contains(want, ". tcp . 8000-8100") || strings.Contains(want, "8050") {
		t.Errorf("port 8050 inside 8000-8100 was not merged:\n%s", want)
	}
}
