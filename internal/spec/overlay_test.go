package spec_test

import (
	"net/netip"
	"testing"

	"github.com/holdfast/holdfast/internal/spec"
)

// overlayBase is a cloud with two zones and three instances, two of them
// in groups; its lines 1-14 are fixed, and a case may add instances.
const overlayBase = header + `zones:
  lan: {type: service, sub-id: 10, cidr: 10.2.10.0/24}
  mesh: {type: overlay, cidr: 10.10.10.0/24}
  later: {type: service, sub-id: 11, state: inactive}
roles: {r: {vmids: 100-199}}
groups:
  infra: {can-access: [infra]}
  guests: {}
instances:
  a: {role: r, zone: lan, groups: [infra]}
  b: {role: r, zone: lan, groups: [guests]}
  c: {role: r, zone: lan}
`

// TestOverlayDefaults: the port, the domain and the overlay zone that
// stands for the overlay.
func TestOverlayDefaults(t *testing.T) {
	s, _ := mustLoad(t, overlayBase+`overlay: {cidr: 10.10.10.0/24, lighthouses: [a]}
`)
	want := spec.OverlayNet{Prefix: netip.MustParsePrefix("10.10.10.0/24"), Domain: "demo.example.net", Port: 4242, Zone: "mesh"}
	if s.Overlay.Net != want {
		t.Errorf("overlay %+v, want %+v", s.Overlay.Net, want)
	}
	for name, member := range map[string]bool{"a": true, "b": true, "c": false} {
		if got := s.IsMember(s.Instances[name]); got != member {
			t.Errorf("instance %s: member %v, want %v", name, got, member)
		}
	}
}

func TestOverlayErrors(t *testing.T) {
	runDiagCases(t, []diagCase{
		{
			name: "the cidr overlaps a zone",
			yaml: overlayBase + `overlay: {cidr: 10.2.0.0/16, lighthouses: [a]}
`,
			want: []string{
				`spec.yaml:15:17: overlay: cidr 10.2.0.0/16 overlaps zone "lan" (10.2.10.0/24, spec.yaml:4:15)`,
				`spec.yaml:15:17: overlay: cidr 10.2.0.0/16 overlaps zone "later" (10.2.11.0/24, spec.yaml:6:17)`,
			},
		},
		{
			name: "an overlay zone with another cidr overlaps",
			yaml: overlayBase + `overlay: {cidr: 10.10.0.0/16, lighthouses: [a]}
`,
			want: []string{
				`spec.yaml:15:17: overlay: cidr 10.10.0.0/16 overlaps zone "mesh" (10.10.10.0/24, spec.yaml:5:16); an overlay zone standing for the overlay has exactly its cidr`,
			},
		},
		{
			name: "the cidr is not a subnet",
			yaml: overlayBase + `overlay: {cidr: 10.10.10.1/24, lighthouses: [a]}
`,
			want: []string{`spec.yaml:15:17: overlay: cidr "10.10.10.1/24" has host bits set; did you mean 10.10.10.0/24?`},
		},
		{
			name: "a member's address is outside the cidr",
			yaml: header + `zones: {lan: {type: service, cidr: 10.2.10.0/24}}
roles: {r: {vmids: 100-199}}
groups: {infra: {}}
instances:
  a: {role: r, zone: lan, groups: [infra], overlay-ip: 10.10.11.5}
  b: {role: r, zone: lan, groups: [infra], overlay-ip: 10.10.10.255}
  c: {role: r, zone: lan, groups: [infra], overlay-ip: fe80::1}
overlay: {cidr: 10.10.10.0/24, lighthouses: [a]}
`,
			want: []string{
				`spec.yaml:7:56: instance "a": overlay-ip 10.10.11.5 is outside the overlay's cidr 10.10.10.0/24`,
				`spec.yaml:8:56: instance "b": overlay-ip 10.10.10.255 is the network or broadcast address of the overlay's cidr 10.10.10.0/24`,
				`spec.yaml:9:56: instance "c": overlay-ip "fe80::1" is not an IPv4 address`,
			},
		},
		{
			name: "two members with one overlay address",
			yaml: header + `zones: {lan: {type: service, cidr: 10.2.10.0/24}}
roles: {r: {vmids: 100-199}}
groups: {infra: {}}
instances:
  a: {role: r, zone: lan, groups: [infra], overlay-ip: 10.10.10.5}
  b: {role: r, zone: lan, groups: [infra], overlay-ip: 10.10.10.5}
overlay:
  cidr: 10.10.10.0/24
  lighthouses: [a, {address: "lh.example.net:4242", overlay-ip: 10.10.10.5}]
`,
			want: []string{
				`spec.yaml:8:56: instance "b": overlay-ip 10.10.10.5 is already given to instance "a"`,
				`spec.yaml:11:65: overlay: lighthouse "lh.example.net:4242": overlay-ip 10.10.10.5 is already given to instance "a"`,
			},
		},
		{
			name: "overlay-ip without groups or without an overlay",
			yaml: header + `zones: {lan: {type: service, cidr: 10.2.10.0/24}}
roles: {r: {vmids: 100-199}}
instances:
  a: {role: r, zone: lan, overlay-ip: 10.10.10.5}
`,
			want: []string{`spec.yaml:6:39: instance "a": overlay-ip needs an overlay section (overlay: {cidr: ..., lighthouses: [...]})`},
		},
		{
			name: "lighthouses that are no members, unknown, or unreachable",
			yaml: overlayBase + `  d: {role: r, zone: later, groups: [infra]}
overlay:
  cidr: 10.10.10.0/24
  lighthouses:
    - c
    - dns
    - d
    - "lh.example.net:4242"
    - {address: "lh.example.net", overlay-ip: 10.10.10.2}
    - {address: "203.0.113.7:4242"}
    - {instance: a, address: "203.0.113.7:4242"}
`,
			want: []string{
				`spec.yaml:19:7: overlay: lighthouse "c" is not an overlay member: give it groups`,
				`spec.yaml:20:7: overlay: lighthouse "dns" is neither an instance nor a host:port`,
				`spec.yaml:21:7: overlay: lighthouse "d" has no underlay address other members can reach: it needs an interface in a zone that exists (not an overlay, not inactive or disabled)`,
				`spec.yaml:22:7: overlay: lighthouse "lh.example.net:4242" is outside the cloud: write {address: lh.example.net:4242, overlay-ip: <its overlay address>}`,
				`spec.yaml:23:17: overlay: lighthouse address "lh.example.net" is not a host:port such as 203.0.113.7:4242`,
				`spec.yaml:24:7: overlay: lighthouse "203.0.113.7:4242" outside the cloud needs its overlay-ip`,
				`spec.yaml:25:7: overlay: a lighthouse is an instance or an outside {address, overlay-ip}, not both`,
				`spec.yaml:15:22: warning: instance "d": zone "later" is inactive`,
			},
		},
		{
			name: "no lighthouse",
			yaml: overlayBase + `overlay: {cidr: 10.10.10.0/24, lighthouses: []}
`,
			want: []string{`spec.yaml:15:45: overlay: lighthouses is empty; members find each other through at least one`},
		},
		{
			name: "one overlay per cloud",
			files: map[string]string{
				"a.yaml": overlayBase + `overlay: {cidr: 10.10.10.0/24, lighthouses: [a]}
`,
				"b.yaml": `overlay: {cidr: 10.10.10.0/24, lighthouses: [a]}
`,
			},
			want: []string{`b.yaml:1:10: overlay: defined again (first at a.yaml:15:10); a cloud has one overlay`},
		},
	})
}
