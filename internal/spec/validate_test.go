package spec_test

import (
	"cmp"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/spec"
)

// TestZoneDefaults: every network fact TAPPaaS derives from type and sub-id.
func TestZoneDefaults(t *testing.T) {
	s, warnings := mustLoad(t, header+`zones:
  mgmt: {type: management}
  srv: {type: service, sub-id: 10}
  home: {type: client, sub-id: 1}
  cams: {type: iot, sub-id: 99}
  guest: {type: guest}
  dmz: {type: dmz, sub-id: 2}
  probe: {type: test}
  mesh: {type: overlay, sub-id: 3}
  small: {type: service, sub-id: 11, cidr: 10.2.11.0/26}
  custom: {type: service, sub-id: 12, vlan: 4000, cidr: 192.168.12.0/24, gateway: 192.168.12.254, dhcp-start: 100, dhcp-end: 199}
  nodhcp: {type: service, sub-id: 13, dhcp: false}
  later: {type: dmz, sub-id: 3, state: inactive}
  off: {type: dmz, sub-id: 4, state: disabled}
  hand: {type: dmz, sub-id: 5, state: manual}
`)
	expectDiags(t, warnings, `spec.yaml:13:45: warning: zone "custom": vlan 4000 differs from typeId*100+subId = 212`)
	for _, tc := range []struct {
		zone               string
		typeID, sub, vlan  int
		cidr, gw           string
		dhcpStart, dhcpEnd string // "" = no DHCP range
		state              string
		present            bool
	}{
		{"mgmt", 0, 0, 0, "10.0.0.0/24", "10.0.0.1", "10.0.0.50", "10.0.0.250", "active", true},
		{"srv", 2, 10, 210, "10.2.10.0/24", "10.2.10.1", "10.2.10.50", "10.2.10.250", "active", true},
		{"home", 3, 1, 301, "10.3.1.0/24", "10.3.1.1", "10.3.1.50", "10.3.1.250", "active", true},
		{"cams", 4, 99, 499, "10.4.99.0/24", "10.4.99.1", "10.4.99.50", "10.4.99.250", "active", true},
		{"guest", 5, 0, 500, "10.5.0.0/24", "10.5.0.1", "10.5.0.50", "10.5.0.250", "active", true},
		{"dmz", 6, 2, 602, "10.6.2.0/24", "10.6.2.1", "10.6.2.50", "10.6.2.250", "active", true},
		{"probe", 8, 0, 800, "10.8.0.0/24", "10.8.0.1", "10.8.0.50", "10.8.0.250", "active", true},
		{"mesh", 7, 3, -1, "10.7.3.0/24", "10.7.3.1", "", "", "active", true},
		{"small", 2, 11, 211, "10.2.11.0/26", "10.2.11.1", "", "", "active", true},
		{"custom", 2, 12, 4000, "192.168.12.0/24", "192.168.12.254", "192.168.12.100", "192.168.12.199", "active", true},
		{"nodhcp", 2, 13, 213, "10.2.13.0/24", "10.2.13.1", "", "", "active", true},
		{"later", 6, 3, 603, "10.6.3.0/24", "10.6.3.1", "10.6.3.50", "10.6.3.250", "inactive", false},
		{"off", 6, 4, 604, "10.6.4.0/24", "10.6.4.1", "10.6.4.50", "10.6.4.250", "disabled", false},
		{"hand", 6, 5, 605, "10.6.5.0/24", "10.6.5.1", "10.6.5.50", "10.6.5.250", "manual", true},
	} {
		n := s.Zones[tc.zone].Net
		want := spec.ZoneNet{
			TypeID: tc.typeID, SubID: tc.sub, VLAN: tc.vlan,
			Prefix: netip.MustParsePrefix(tc.cidr), Gateway: netip.MustParseAddr(tc.gw),
			State: tc.state, Present: tc.present,
		}
		if tc.dhcpStart != "" {
			want.DHCPStart, want.DHCPEnd = netip.MustParseAddr(tc.dhcpStart), netip.MustParseAddr(tc.dhcpEnd)
		}
		if n != want {
			t.Errorf("zone %s:\n got %+v\nwant %+v", tc.zone, n, want)
		}
	}
}

func TestZoneErrors(t *testing.T) {
	runDiagCases(t, []diagCase{
		{
			name: "VLAN collision on a shared site",
			yaml: header + `zones:
  a: {type: service, sub-id: 1}
  b: {type: service, sub-id: 2, vlan: 201, cidr: 10.20.0.0/24}
  c: {type: client, vlan: 201, cidr: 10.21.0.0/24}
`,
			want: []string{
				`spec.yaml:5:39: warning: zone "b": vlan 201 differs from typeId*100+subId = 202`,
				`spec.yaml:5:39: zone "b": VLAN 201 collides with zone "a" (spec.yaml:4:3)`,
				`spec.yaml:6:27: warning: zone "c": vlan 201 differs from typeId*100+subId = 300`,
				`spec.yaml:6:27: zone "c": VLAN 201 collides with zone "a" (spec.yaml:4:3)`,
			},
		},
		{
			name: "same VLAN on different sites is fine",
			yaml: `cloud: {name: demo, domain: demo.net}
sites:
  s1: {engine: local, nodes: [n1]}
  s2: {engine: local, nodes: [n1]}
zones:
  a: {type: service, sub-id: 1, sites: [s1]}
  b: {type: service, sub-id: 1, cidr: 10.99.1.0/24, sites: [s2]}
`,
		},
		{
			name: "VLAN collision is found even when the zone's cidr is bad",
			yaml: header + `zones:
  a: {type: service, sub-id: 1}
  b: {type: service, sub-id: 1, cidr: 10.2.1.5/24}
`,
			want: []string{
				`spec.yaml:5:3: zone "b": VLAN 201 collides with zone "a" (spec.yaml:4:3)`,
				`spec.yaml:5:39: zone "b": cidr "10.2.1.5/24" has host bits set; did you mean 10.2.1.0/24?`,
			},
		},
		{
			name: "overlapping cidrs",
			yaml: header + `zones:
  wide: {type: service, sub-id: 1, cidr: 10.0.0.0/8}
  mgmt: {type: management}
  inner: {type: service, sub-id: 2, cidr: 10.2.2.128/25}
  other: {type: client, cidr: 192.168.0.0/24}
  twin: {type: client, sub-id: 1, cidr: 192.168.0.0/24}
`,
			want: []string{
				`spec.yaml:5:3: zone "mgmt": cidr 10.0.0.0/24 overlaps zone "wide" (10.0.0.0/8)`,
				`spec.yaml:6:43: zone "inner": cidr 10.2.2.128/25 overlaps zone "wide" (10.0.0.0/8)`,
				`spec.yaml:8:41: zone "twin": cidr 192.168.0.0/24 overlaps zone "other" (192.168.0.0/24)`,
			},
		},
		{
			name: "bad cidrs",
			yaml: header + `zones:
  a: {type: service, sub-id: 1, cidr: 10.2.1.7/24}
  b: {type: service, sub-id: 2, cidr: "fd00::/64"}
  c: {type: service, sub-id: 3, cidr: 10.2.3.0}
  d: {type: service, sub-id: 4, cidr: 10.2.4.0/31}
  e: {type: service, sub-id: 5, cidr: 10.2.5.0/33}
`,
			want: []string{
				`spec.yaml:4:39: zone "a": cidr "10.2.1.7/24" has host bits set; did you mean 10.2.1.0/24?`,
				`spec.yaml:5:39: zone "b": cidr "fd00::/64": only IPv4 zones are supported`,
				`spec.yaml:6:39: zone "c": cidr "10.2.3.0" is not a subnet such as 10.2.10.0/24`,
				`spec.yaml:7:39: zone "d": cidr "10.2.4.0/31" is too small for a gateway and hosts (at most /30)`,
				`spec.yaml:8:39: zone "e": cidr "10.2.5.0/33" is not a subnet`,
			},
		},
		{
			name: "gateway",
			yaml: header + `zones:
  a: {type: service, sub-id: 1, gateway: 10.2.9.1}
  b: {type: service, sub-id: 2, gateway: 10.2.2.100}
  c: {type: service, sub-id: 3, gateway: 10.2.3.0}
  d: {type: service, sub-id: 4, gateway: 10.2.4.255}
  e: {type: service, sub-id: 5, gateway: "fe80::1"}
  f: {type: service, sub-id: 6, gateway: 10.2.6.250}
  g: {type: service, sub-id: 7, gateway: 10.2.7.251}
`,
			want: []string{
				`spec.yaml:4:42: zone "a": gateway 10.2.9.1 is outside the zone's cidr 10.2.1.0/24`,
				`spec.yaml:5:42: zone "b": gateway 10.2.2.100 is inside the DHCP range 10.2.2.50-10.2.2.250`,
				`spec.yaml:6:42: zone "c": gateway 10.2.3.0 is the network or broadcast address`,
				`spec.yaml:7:42: zone "d": gateway 10.2.4.255 is the network or broadcast address`,
				`spec.yaml:8:42: zone "e": gateway "fe80::1" is not an IPv4 address`,
				`spec.yaml:9:42: zone "f": gateway 10.2.6.250 is inside the DHCP range`,
			},
		},
		{
			name: "DHCP range",
			yaml: header + `zones:
  a: {type: service, sub-id: 1, dhcp-start: 10, dhcp-end: 255}
  b: {type: service, sub-id: 2, dhcp-start: 0, dhcp-end: 20}
  c: {type: service, sub-id: 3, dhcp-start: 200, dhcp-end: 100}
  d: {type: service, sub-id: 4, cidr: 10.2.4.0/26, dhcp-start: 10}
  e: {type: service, sub-id: 5, cidr: 10.2.5.0/26, dhcp-end: 60}
  f: {type: service, sub-id: 6, dhcp-start: 1}
  g: {type: service, sub-id: 7, dhcp: false, dhcp-start: 10}
  h: {type: service, sub-id: 8, cidr: 10.2.8.0/26, dhcp-start: 10, dhcp-end: 63}
  j: {type: service, sub-id: 10, cidr: 10.2.10.0/26, dhcp-start: 2, dhcp-end: 62}
  i: {type: service, sub-id: 9, dhcp-start: 300, dhcp-end: 400}
`,
			want: []string{
				`spec.yaml:4:59: zone "a": DHCP range offsets 10-255 fall outside the cidr 10.2.1.0/24 (hosts are offsets 1-254)`,
				`spec.yaml:5:45: zone "b": DHCP range offsets 0-20 fall outside the cidr 10.2.2.0/24`,
				`spec.yaml:6:45: zone "c": DHCP range .200-.100 is reversed`,
				`spec.yaml:7:64: zone "d": DHCP range offsets 10-250 fall outside the cidr 10.2.4.0/26 (hosts are offsets 1-62)`,
				`spec.yaml:9:45: zone "f": gateway 10.2.6.1 is inside the DHCP range 10.2.6.1-10.2.6.250`,
				`spec.yaml:10:58: warning: zone "g": dhcp is off; dhcp-start/dhcp-end are ignored`,
				`spec.yaml:11:78: zone "h": DHCP range offsets 10-63 fall outside the cidr 10.2.8.0/26 (hosts are offsets 1-62)`,
				`spec.yaml:13:45: zone "i": DHCP range offsets 300-400 fall outside the cidr 10.2.9.0/24`,
			},
		},
		{
			name: "VLAN and sub-id bounds; overlays carry no VLAN",
			yaml: header + `zones:
  a: {type: service, sub-id: 1, vlan: 4095}
  b: {type: service, sub-id: 2, vlan: -1}
  c: {type: service, sub-id: 100}
  d: {type: service, sub-id: -1, cidr: 10.2.99.0/24}
  e: {type: service, sub-id: 5, vlan: 4094}
  f: {type: overlay, vlan: 700}
  g: {type: overlay, sub-id: 1, vlan: 0}
  h: {type: service, sub-id: 8, vlan: 208}
`,
			want: []string{
				`spec.yaml:4:39: zone "a": vlan 4095 is outside 0-4094`,
				`spec.yaml:5:39: zone "b": vlan -1 is outside 0-4094`,
				`spec.yaml:6:30: zone "c": sub-id 100 is outside 0-99`,
				`spec.yaml:7:30: zone "d": sub-id -1 is outside 0-99`,
				`spec.yaml:8:39: warning: zone "e": vlan 4094 differs from typeId*100+subId = 205`,
				`spec.yaml:9:28: warning: zone "f": overlay zones carry no VLAN; vlan 700 is ignored`,
			},
		},
		{
			name: "explicit VLAN 0 is untagged; two untagged zones collide",
			yaml: header + `zones:
  mgmt: {type: management}
  lan: {type: client, vlan: 0}
`,
			want: []string{
				`spec.yaml:5:29: warning: zone "lan": vlan 0 differs from typeId*100+subId = 300`,
				// Reported at the zone whose name sorts later, here the default.
				`spec.yaml:4:3: zone "mgmt": VLAN 0 collides with zone "lan" (spec.yaml:5:29)`,
			},
		},
		{
			name: "access-to and pinhole-allowed-from name zones",
			yaml: header + `zones:
  mgmt: {type: management, access-to: [all, internet, servce]}
  service: {type: service, access-to: [service, internet, internet], pinhole-allowed-from: [all, mgmt, dmz]}
  home: {type: client, sites: [s2]}
`,
			want: []string{
				`spec.yaml:4:39: zone "mgmt": access-to names unknown zone "servce" (did you mean "service"?)`,
				`spec.yaml:5:39: warning: zone "service": access-to lists the zone itself; traffic within a zone is always allowed`,
				`spec.yaml:5:39: warning: zone "service": access-to lists "internet" twice`,
				`spec.yaml:5:92: zone "service": pinhole-allowed-from names unknown zone "all"`,
				`spec.yaml:5:92: zone "service": pinhole-allowed-from names unknown zone "dmz"`,
				`spec.yaml:6:31: zone "home": site "s2" does not exist (did you mean "s1"?)`,
			},
		},
		{
			name: "isolated zones in access-to",
			yaml: header + `zones:
  mgmt: {type: management, access-to: [cams, all]}
  srv: {type: service, access-to: [internet, cams]}
  home: {type: client, access-to: [all]}
  cams: {type: iot, isolated: true, access-to: [all], pinhole-allowed-from: [srv]}
  jail: {type: iot, sub-id: 1, isolated: true}
`,
			want: []string{
				`spec.yaml:5:35: zone "srv": access-to lists isolated zone "cams"; only a management zone may, others reach it through pinholes (add "srv" to its pinhole-allowed-from)`,
				`spec.yaml:6:35: zone "home": access-to 'all' would include isolated zone(s) cams, jail; only a management zone may`,
				`spec.yaml:7:48: zone "cams": access-to 'all' would include isolated zone(s) jail; only a management zone may`,
			},
		},
		{
			name: "access-to all is fine without isolated zones, and for the only isolated zone itself",
			yaml: header + `zones:
  home: {type: client, access-to: [all]}
  jail: {type: iot, isolated: true, access-to: [all]}
`,
			want: []string{
				`spec.yaml:4:35: zone "home": access-to 'all' would include isolated zone(s) jail`,
			},
		},
		{
			name: "isolate-instances needs interfaces and excludes access-to itself",
			yaml: header + `zones:
  boot: {type: management, isolate-instances: true, access-to: [boot, internet]}
  mesh: {type: overlay, cidr: 10.10.10.0/24, isolate-instances: true}
  lan: {type: client, isolate-instances: true}
`,
			want: []string{
				`spec.yaml:4:64: zone "boot": access-to lists the zone itself, but isolate-instances keeps its instances apart; give single instances ingress from the zone instead`,
				`spec.yaml:5:65: zone "mesh": isolate-instances needs a zone with interfaces; an overlay zone has none (on the overlay, groups' can-access decides who reaches whom)`,
			},
		},
		{
			name: "access-to all without isolated zones",
			yaml: header + `zones:
  home: {type: client, access-to: [all]}
  dmz: {type: dmz, access-to: [all]}
`,
		},
	})
}

func TestSiteErrors(t *testing.T) {
	runDiagCases(t, []diagCase{
		{
			name: "peers name each other",
			yaml: `cloud: {name: demo, domain: demo.net}
sites:
  a: {engine: local  , nodes: [n1], peer: b}
  b: {engine: local  , nodes: [n1], peer: a}
`,
		},
		{
			name: "peer problems",
			yaml: `cloud: {name: demo, domain: demo.net}
sites:
  a: {engine: local  , nodes: [n1], peer: b}
  b: {engine: local  , nodes: [n1]}
  c: {engine: local  , nodes: [n1], peer: a}
  d: {engine: local, nodes: [n1], peer: d}
  e: {engine: local, nodes: [n1], peer: hobrat}
  hobart: {engine: local, nodes: [n1, n2, n1, "x_y"], peer: launceston}
  launceston: {engine: local, nodes: [n1], peer: hobart}
`,
			want: []string{
				`spec.yaml:3:43: site "a": peer "b" does not name it back; peers must name each other (add peer: a to site "b")`,
				`spec.yaml:5:43: site "c": peer "a" has peer "b"; peers must name each other`,
				`spec.yaml:6:41: site "d": a site cannot be its own peer`,
				`spec.yaml:7:41: site "e": peer "hobrat" is not a site (did you mean "hobart"?)`,
				`spec.yaml:8:34: site "hobart": node "n1" listed twice`,
				`spec.yaml:8:34: site "hobart": node "x_y" is not a valid name`,
			},
		},
		{
			name: "no cloud and no sites",
			yaml: `zones: {a: {type: iot}}
`,
			want: []string{
				`spec.yaml:1:1: no cloud section: add cloud: {name: ..., domain: ...}`,
				`spec.yaml:1:1: no sites: a cloud needs at least one site`,
			},
		},
	})
}

func TestRoleErrors(t *testing.T) {
	runDiagCases(t, []diagCase{
		{
			name: "Arvandor's ranges do not overlap",
			yaml: header + `roles:
  management: {vmids: 1000-1999}
  services: {vmids: 2000-2999}
  data: {vmids: 3000-3999}
  workloads: {vmids: 4000-4999}
  monitoring: {vmids: 5000-5999}
`,
		},
		{
			name: "overlapping ranges, neighbours or not",
			yaml: header + `roles:
  wide: {vmids: 1000-5000}
  two: {vmids: 2000-2100}
  three: {vmids: 3000-3100}
  edge: {vmids: 5000-5999}
  after: {vmids: 6000-6999}
  low: {vmids: 99-150}
  high: {vmids: 999999000-1000000000}
`,
			want: []string{
				`spec.yaml:5:16: role "two": vmids 2000-2100 overlap role "wide" (1000-5000)`,
				`spec.yaml:6:18: role "three": vmids 3000-3100 overlap role "wide" (1000-5000)`,
				`spec.yaml:7:17: role "edge": vmids 5000-5999 overlap role "wide" (1000-5000)`,
				`spec.yaml:9:16: role "low": vmids 99-150 must lie within 100-999999999`,
				`spec.yaml:10:17: role "high": vmids 999999000-1000000000 must lie within 100-999999999`,
			},
		},
	})
}

func TestInstanceErrors(t *testing.T) {
	const zones = `zones:
  mgmt: {type: management}
  srv: {type: service, sub-id: 1}
  dmz: {type: dmz, sites: [s2]}
  mesh: {type: overlay}
  later: {type: guest, state: inactive}
roles:
  infra: {vmids: 1000-1999}
  apps: {vmids: 2000-2999}
flavors: {small: {cpus: 1, memory: 1G}}
templates: {debian: {image: "9000"}}
groups: {admins: {}}
`
	const twoSites = `cloud: {name: demo, domain: demo.net}
sites:
  s1: {engine: local, nodes: [n1, n2]}
  s2: {engine: local, nodes: [n1]}
` + zones // instances start at line 17
	runDiagCases(t, []diagCase{
		{
			name: "vmids",
			yaml: twoSites + `instances:
  a: {site: s1, zone: srv, role: infra, vmid: 2500}
  b: {site: s1, zone: srv, role: infra, vmid: 1500}
  c: {site: s1, zone: srv, role: apps, vmid: 2500}
  d: {site: s1, zone: srv, vmid: 1500}
  e: {site: s1, zone: srv, vmid: 99}
  f: {site: s1, zone: srv}
  g: {site: s1, zone: srv, role: infar}
  h: {site: s1, zone: srv, vmid: 1000000000}
`,
			want: []string{
				`spec.yaml:18:47: instance "a": vmid 2500 is outside role "infra"'s range 1000-1999`,
				`spec.yaml:20:46: instance "c": vmid 2500 is already used by instance "a" (spec.yaml:18:47)`,
				`spec.yaml:21:34: instance "d": vmid 1500 is already used by instance "b" (spec.yaml:19:47)`,
				`spec.yaml:22:34: instance "e": vmid 99 is outside 100-999999999`,
				`spec.yaml:23:3: instance "f": needs a role (to allocate a VMID from) or an explicit vmid`,
				`spec.yaml:24:34: instance "g": role "infar" does not exist (did you mean "infra"?)`,
				`spec.yaml:25:34: instance "h": vmid 1000000000 is outside 100-999999999`,
			},
		},
		{
			name: "addresses",
			yaml: twoSites + `instances:
  a: {site: s1, role: apps, zone: srv, ip: 10.2.1.10}
  b: {site: s1, role: apps, zone: srv, ip: 10.2.2.10}
  c: {site: s1, role: apps, zone: srv, ip: 10.2.1.100}
  d: {site: s1, role: apps, zone: srv, ip: 10.2.1.1}
  e: {site: s1, role: apps, zone: srv, ip: 10.2.1.10}
  f: {site: s1, role: apps, zone: srv, ip: 10.2.1.255}
  g: {site: s1, role: apps, zone: srv, ip: 10.2.1.0}
  h: {site: s1, role: apps, zone: srv, ip: "10.2.1.300"}
  i: {site: s1, role: apps, networks: [{zone: mgmt, ip: 10.0.0.5}, {zone: srv, ip: 10.2.1.11}]}
  j: {site: s1, role: apps, networks: [{zone: srv, ip: 10.2.1.11}, {zone: mgmt, ip: "::1"}]}
  k: {site: s1, role: apps, zone: srv, ip: 10.2.1.49}
  l: {site: s1, role: apps, zone: srv, ip: 10.2.1.251}
  m: {site: s1, role: apps, networks: [{zone: srv}, {zone: srv}]}
`,
			want: []string{
				`spec.yaml:19:44: instance "b": ip 10.2.2.10 is outside zone "srv"'s cidr 10.2.1.0/24`,
				`spec.yaml:20:44: instance "c": ip 10.2.1.100 is inside zone "srv"'s DHCP range 10.2.1.50-10.2.1.250`,
				`spec.yaml:21:44: instance "d": ip 10.2.1.1 is zone "srv"'s gateway`,
				`spec.yaml:22:44: instance "e": ip 10.2.1.10 is already given to instance "a"`,
				`spec.yaml:23:44: instance "f": ip 10.2.1.255 is the network or broadcast address of zone "srv"`,
				`spec.yaml:24:44: instance "g": ip 10.2.1.0 is the network or broadcast address of zone "srv"`,
				`spec.yaml:25:44: instance "h": ip "10.2.1.300" is not an IPv4 address`,
				`spec.yaml:27:56: instance "j": ip 10.2.1.11 is already given to instance "i"`,
				`spec.yaml:27:85: instance "j": ip "::1" is not an IPv4 address`,
				`spec.yaml:30:60: instance "m": two interfaces in zone "srv"; an instance has at most one interface per zone`,
			},
		},
		{
			name: "placement",
			yaml: twoSites + `instances:
  a: {site: s1, role: apps, zone: dmz}
  b: {site: s2, role: apps, zone: dmz}
  c: {site: s1, role: apps, zone: mesh}
  d: {site: s1, role: apps, zone: later}
  e: {site: s1, role: apps, networks: [{zone: srv}, {zone: later}]}
  f: {role: apps, zone: srv}
  g: {site: s3, role: apps, zone: srv}
  h: {site: s1, node: n3, role: apps, zone: srv}
  i: {site: s1, role: apps, zone: svr}
  j: {site: s1, role: apps}
  k: {site: s1, role: apps, zone: srv, networks: [{zone: mgmt}]}
  l: {site: s1, role: apps, zone: srv, trunks: [all, mgmt, dnz]}
  m: {site: s1, role: apps, networks: [{zone: srv, trunks: [mesg]}]}
`,
			want: []string{
				`spec.yaml:18:35: instance "a": zone "dmz" is not carried by site "s1" (sites: s2)`,
				`spec.yaml:20:35: instance "c": zone "mesh" is an overlay; instances join overlays through groups, not interfaces`,
				`spec.yaml:21:35: warning: instance "d": zone "later" is inactive, so the instance has no network until the zone is activated`,
				`spec.yaml:23:3: instance "f": missing site (the cloud has 2 sites)`,
				`spec.yaml:24:13: instance "g": site "s3" does not exist (did you mean "s1"?)`,
				`spec.yaml:25:23: instance "h": node "n3" is not a node of site "s1" (nodes: n1, n2)`,
				`spec.yaml:26:35: instance "i": zone "svr" does not exist (did you mean "srv"?)`,
				`spec.yaml:27:3: instance "j": missing zone (or networks)`,
				`spec.yaml:28:50: instance "k": give either zone (with ip, trunks) or networks, not both`,
				`spec.yaml:29:48: instance "l": trunks name unknown zone "dnz" (did you mean "dmz"?)`,
				`spec.yaml:30:60: instance "m": trunks name unknown zone "mesg" (did you mean "mesh"?)`,
			},
		},
		{
			name: "a zone with a bad cidr keeps its state",
			yaml: header + `zones:
  bad: {type: service, cidr: 10.2.0.0/33}
  off: {type: dmz, cidr: 10.6.0.0/33, state: disabled}
instances:
  a: {vmid: 100, zone: bad}
  b: {vmid: 101, zone: off}
`,
			want: []string{
				`spec.yaml:4:30: zone "bad": cidr "10.2.0.0/33" is not a subnet`,
				`spec.yaml:5:26: zone "off": cidr "10.6.0.0/33" is not a subnet`,
				`spec.yaml:8:24: warning: instance "b": zone "off" is disabled, so the instance has no network until the zone is activated`,
			},
		},
		{
			name: "references",
			yaml: twoSites + `instances:
  a: {site: s1, role: apps, zone: srv, flavor: smal, template: debain, groups: [admins, admin, web], cpus: 0}
  b: {site: s1, role: apps, zone: srv, replicate: true, flavor: small, template: debian, groups: [admins]}
`,
			want: []string{
				`spec.yaml:18:48: instance "a": flavor "smal" does not exist (did you mean "small"?)`,
				`spec.yaml:18:64: instance "a": template "debain" does not exist (did you mean "debian"?)`,
				`spec.yaml:18:80: instance "a": group "admin" does not exist (did you mean "admins"?)`,
				`spec.yaml:18:80: instance "a": group "web" does not exist`,
				`spec.yaml:18:108: instance "a": cpus must be at least 1`,
				`spec.yaml:19:51: instance "b": replicate needs a peer site, and site "s1" has none`,
			},
		},
	})
}

func TestRuleErrors(t *testing.T) {
	const zones = header + `zones:
  mgmt: {type: management, access-to: [all]}
  srv: {type: service, sub-id: 1, pinhole-allowed-from: [dmz, internet]}
  db: {type: service, sub-id: 2}
  dmz: {type: dmz, access-to: [internet]}
  cams: {type: iot, isolated: true, pinhole-allowed-from: [srv]}
roles: {r: {vmids: 1000-1999}}
` // instances start at line 11
	runDiagCases(t, []diagCase{
		{
			name: "ingress: allowed zone, own zone, internet when allowed",
			yaml: zones + `instances:
  web: {role: r, zone: srv, ingress: [{from: dmz, ports: 443}, {from: internet, ports: [80, 443]}, {from: srv}]}
`,
		},
		{
			name: "ingress from a zone or internet the target does not allow",
			yaml: zones + `instances:
  a: {role: r, zone: db, ingress: [{from: srv, ports: 5432}, {from: internet}, {from: mgmt}]}
  b: {role: r, zone: cams, ingress: [{from: srv}, {from: dmz, ports: 554}]}
`,
			want: []string{
				`spec.yaml:11:43: instance "a": pinhole from "srv" into zone "db" is not allowed (its pinhole-allowed-from is [])`,
				`spec.yaml:11:69: instance "a": pinhole from "internet" into zone "db" is not allowed`,
				`spec.yaml:11:87: instance "a": pinhole from "mgmt" into zone "db" is not allowed`,
				`spec.yaml:12:58: instance "b": pinhole from "dmz" into zone "cams" is not allowed (its pinhole-allowed-from is [srv])`,
			},
		},
		{
			name: "egress needs the target zone's consent",
			yaml: zones + `instances:
  a: {role: r, zone: db, egress: [{to: cams, ports: 554}, {to: internet}, {to: srv}]}
  b: {role: r, zone: srv, egress: [{to: cams, ports: 554}]}
  c: {role: r, zone: mgmt, egress: [{to: cams}]}
  d: {role: r, zone: cams, egress: [{to: cams}]}
`,
			want: []string{
				`spec.yaml:11:40: instance "a": egress into zone "cams" is not allowed: zone "db" has no access-to "cams", and "cams" does not allow pinholes from "db" (add it to its pinhole-allowed-from)`,
				`spec.yaml:11:80: instance "a": egress into zone "srv" is not allowed: zone "db" has no access-to "srv", and "srv" does not allow pinholes from "db" (add it to its pinhole-allowed-from)`,
			},
		},
		{
			name: "rule shape",
			yaml: zones + `instances:
  a:
    role: r
    zone: srv
    ingress:
      - {to: dmz, from: dmz}
      - {ports: 443}
      - {from: dmzz}
      - {from: dmz, proto: icmp, ports: 8}
      - {from: dmz, proto: any, ports: 8}
      - {from: dmz, proto: icmp}
    egress:
      - {from: dmz, to: internet}
      - {proto: udp}
      - {to: dbz}
`,
			want: []string{
				`spec.yaml:15:14: instance "a": an ingress rule has from, not to`,
				`spec.yaml:16:9: instance "a": ingress rule is missing from (a zone or 'internet')`,
				`spec.yaml:17:16: instance "a": from names unknown zone "dmzz" (a zone or 'internet') (did you mean "dmz"?)`,
				`spec.yaml:18:41: instance "a": ingress rule: icmp has no ports`,
				`spec.yaml:19:40: instance "a": ingress rule: ports need proto tcp or udp`,
				`spec.yaml:22:16: instance "a": an egress rule has to, not from`,
				`spec.yaml:23:9: instance "a": egress rule is missing to (a zone or 'internet')`,
				`spec.yaml:24:14: instance "a": to names unknown zone "dbz" (a zone or 'internet') (did you mean "db"?)`,
			},
		},
	})
}

func TestDependsOn(t *testing.T) {
	const base = header + `zones: {z: {type: iot}}
roles: {r: {vmids: 1000-1999}}
instances:
` // instances start at line 6
	runDiagCases(t, []diagCase{
		{
			name: "a diamond is not a cycle",
			yaml: base + `  app: {role: r, zone: z, depends-on: [db, cache]}
  db: {role: r, zone: z, depends-on: [dns]}
  cache: {role: r, zone: z, depends-on: [dns]}
  dns: {role: r, zone: z}
`,
		},
		{
			name: "a cycle is reported once, with its path",
			yaml: base + `  a: {role: r, zone: z, depends-on: [b]}
  b: {role: r, zone: z, depends-on: [c]}
  c: {role: r, zone: z, depends-on: [a]}
  d: {role: r, zone: z, depends-on: [a]}
`,
			want: []string{`spec.yaml:8:37: instance "c": dependency cycle a -> b -> c -> a`},
		},
		{
			name: "two cycles, self dependency, unknown names",
			yaml: base + `  a: {role: r, zone: z, depends-on: [b]}
  b: {role: r, zone: z, depends-on: [a]}
  c: {role: r, zone: z, depends-on: [c, databse, d]}
  d: {role: r, zone: z, depends-on: [c]}
  database: {role: r, zone: z}
`,
			want: []string{
				`spec.yaml:7:37: instance "b": dependency cycle a -> b -> a`,
				`spec.yaml:8:37: instance "c": depends on itself`,
				`spec.yaml:8:37: instance "c": depends-on names unknown instance "databse" (did you mean "database"?)`,
				`spec.yaml:9:37: instance "d": dependency cycle c -> d -> c`,
			},
		},
	})
}

func TestRouteErrors(t *testing.T) {
	const base = header + `zones:
  dmz: {type: dmz, access-to: [web], pinhole-allowed-from: [internet]}
  web: {type: service, sub-id: 1, pinhole-allowed-from: [edge, internet]}
  edge: {type: dmz, sub-id: 1, pinhole-allowed-from: [internet]}
  db: {type: service, sub-id: 2}
  mgmt: {type: management, access-to: [all], pinhole-allowed-from: [internet]}
roles: {r: {vmids: 1000-1999}}
instances:
  fe: {role: r, zone: dmz}
  fe2: {role: r, zone: edge}
  fe3: {role: r, zone: mgmt}
  be: {role: r, zone: web}
  be2: {role: r, zone: web}
  data: {role: r, zone: db}
routes:
` // routes start at line 18
	runDiagCases(t, []diagCase{
		{
			name: "reachable by access-to, pinhole, same zone and all",
			yaml: base + `  a: {host: a.demo.net, frontends: [fe, fe2, fe3], backends: [be, be2], backend-port: 8080}
  b: {host: b.demo.net, frontends: [be], backends: [be2], backend-port: 8080, port: 8443, allowed-from: [internet, mgmt]}
`,
		},
		{
			name: "frontend zone cannot reach backend zone",
			yaml: base + `  a: {host: a.demo.net, frontends: [fe, fe2], backends: [data, be], backend-port: 5432}
`,
			want: []string{
				`spec.yaml:18:57: route "a": frontend "fe" cannot reach backend "data": zone "dmz" has no access-to "db", and "db" does not allow pinholes from "dmz" (add it to its pinhole-allowed-from)`,
				`spec.yaml:18:57: route "a": frontend "fe2" cannot reach backend "data": zone "edge" has no access-to "db"`,
			},
		},
		{
			name: "references and ports",
			yaml: base + `  a: {host: a.demo.net, frontends: [fee], backends: [be, bee], failover: [nope], backend-port: 80, port: 0, allowed-from: [internet, dnz]}
  b: {host: b.demo.net, frontends: [fe], backends: [be], backend-port: 80, port: 65536}
`,
			want: []string{
				`spec.yaml:18:36: route "a": frontends names unknown instance "fee" (did you mean "fe"?)`,
				`spec.yaml:18:53: route "a": backends names unknown instance "bee" (did you mean "be"?)`,
				`spec.yaml:18:74: route "a": failover names unknown instance "nope"`,
				`spec.yaml:18:106: route "a": port 0 is out of range 1-65535`,
				`spec.yaml:18:123: route "a": allowed-from names unknown zone "dnz" (did you mean "dmz"?)`,
				`spec.yaml:19:82: route "b": port 65536 is out of range 1-65535`,
			},
		},
	})
}

// A route belongs to the site of its front ends, whose engine realizes
// it: front ends at two sites are refused, and failover may name the
// peer's backends.
func TestRouteBelongsToOneSite(t *testing.T) {
	const base = `cloud: {name: demo, domain: demo.example.net}
sites:
  a: {engine: local, nodes: [n1], peer: b}
  b: {engine: local, nodes: [n1], peer: a}
zones:
  web: {type: service, sub-id: 1, pinhole-allowed-from: [internet]}
roles: {r: {vmids: 1000-1999}}
instances:
  fe-a: {role: r, zone: web, site: a}
  fe-b: {role: r, zone: web, site: b}
  be-a: {role: r, zone: web, site: a}
  be-b: {role: r, zone: web, site: b}
routes:
` // routes start at line 14
	runDiagCases(t, []diagCase{
		{
			name: "one route per site, failing over to the peer",
			yaml: base + `  app-a: {host: app.demo.net, frontends: [fe-a], backends: [be-a], failover: [be-b], backend-port: 80}
  app-b: {host: app.demo.net, frontends: [fe-b], backends: [be-b], failover: [be-a], backend-port: 80}
`,
		},
		{
			name: "front ends at two sites",
			yaml: base + `  app: {host: app.demo.net, frontends: [fe-a, fe-b], backends: [be-a], backend-port: 80}
`,
			want: []string{
				`spec.yaml:14:40: route "app": frontend "fe-b" is at site "b" but "fe-a" is at site "a"; a route belongs to one site: give each site its own route with its own frontends (failover may name the peer's backends)`,
			},
		},
	})
}

func TestGroupErrors(t *testing.T) {
	runDiagCases(t, []diagCase{{
		name: "can-access names groups or all",
		yaml: header + `groups:
  admins: {can-access: [all]}
  web: {can-access: [db, dbs, admns]}
  db:
`,
		want: []string{
			`spec.yaml:5:21: group "web": can-access names unknown group "dbs" (did you mean "db"?)`,
			`spec.yaml:5:21: group "web": can-access names unknown group "admns" (did you mean "admins"?)`,
		},
	}})
}

// TestValidateReportsEverything: independent problems in every section
// come back together, sorted by position.
func TestValidateReportsEverything(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"a.yaml": `cloud: {name: demo, domain: demo.net}
sites:
  s1: {engine: local, nodes: [n1], peer: s2}
  s2: {engine: local, nodes: [n1]}
zones:
  a: {type: service, sub-id: 1, access-to: [b, cams]}
  b: {type: service, sub-id: 1, cidr: 10.2.1.0/25}
  cams: {type: iot, isolated: true}
`,
		"b.yaml": `roles:
  r: {vmids: 1000-1999}
  q: {vmids: 1500-2500}
instances:
  i: {site: s1, role: r, vmid: 3000, zone: a, ip: 10.2.9.9, depends-on: [j], ingress: [{from: b}]}
  j: {site: s1, role: r, zone: a, depends-on: [i]}
routes:
  w: {host: w.demo.net, frontends: [i], backends: [k], backend-port: 80}
`,
	})
	s, diags := spec.Load(dir)
	if diags.HasErrors() {
		t.Fatalf("load: %v", diags)
	}
	vd := spec.Validate(s)
	expectDiags(t, render(vd),
		`a.yaml:3:42: site "s1": peer "s2" does not name it back`,
		`a.yaml:6:44: zone "a": access-to lists isolated zone "cams"`,
		`a.yaml:7:3: zone "b": VLAN 201 collides with zone "a"`,
		`a.yaml:7:39: zone "b": cidr 10.2.1.0/25 overlaps zone "a"`,
		`b.yaml:3:14: role "q": vmids 1500-2500 overlap role "r"`,
		`b.yaml:5:32: instance "i": vmid 3000 is outside role "r"'s range 1000-1999`,
		`b.yaml:5:51: instance "i": ip 10.2.9.9 is outside zone "a"'s cidr 10.2.1.0/24`,
		`b.yaml:5:95: instance "i": pinhole from "b" into zone "a" is not allowed`,
		`b.yaml:6:47: instance "j": dependency cycle i -> j -> i`,
		`b.yaml:8:36: route "w": frontend "i" is in zone "a", which the internet may not reach, and the route is public`,
		`b.yaml:8:51: route "w": backends names unknown instance "k"`,
	)
	sorted := slices.IsSortedFunc(vd, func(a, b spec.Diagnostic) int {
		return cmp.Or(cmp.Compare(a.Pos.File, b.Pos.File), cmp.Compare(a.Pos.Line, b.Pos.Line), cmp.Compare(a.Pos.Col, b.Pos.Col))
	})
	if !sorted {
		t.Errorf("Validate's findings are not sorted by position: %v", vd)
	}
	if err := vd.Err(); err == nil || len(vd.Errors()) != 11 {
		t.Errorf("Err() = %v, Errors() = %d, want 11", err, len(vd.Errors()))
	}
}

// TestSeedSpecIsValid: the realistic spec the fuzzer starts from loads
// without a finding, and a few derived facts hold.
func TestSeedSpecIsValid(t *testing.T) {
	s, got := check(t, "testdata/full.yaml")
	expectDiags(t, got)
	if n := s.Zones["srv"].Net; n.VLAN != 210 || n.Prefix.String() != "10.2.10.0/24" {
		t.Errorf("srv: %+v", n)
	}
	if n := s.Zones["lab"].Net; n.VLAN != 801 || n.DHCPStart.IsValid() {
		t.Errorf("lab: %+v", n)
	}
	if n := s.Zones["nebula"].Net; n.VLAN != -1 || n.DHCPStart.IsValid() {
		t.Errorf("nebula: %+v", n)
	}
	if got := len(s.Instances["fw"].NICs()); got != 2 {
		t.Errorf("fw has %d NICs, want 2", got)
	}
	if got := s.SiteOf(s.Instances["web2"]); got != "launceston" {
		t.Errorf("web2 site = %q", got)
	}
}

func TestEmptyRequiredLists(t *testing.T) {
	runDiagCases(t, []diagCase{
		{
			name: "a site without nodes, a route without frontends or backends",
			yaml: `cloud: {name: demo, domain: demo.example.net}
sites: {s1: {engine: local, nodes: []}}
routes:
  r: {host: r.demo.example.net, frontends: [], backends: [], backend-port: 80}
`,
			want: []string{
				`spec.yaml:2:36: site "s1": nodes is empty; a site needs at least one node`,
				`spec.yaml:4:44: route "r": frontends is empty`,
				`spec.yaml:4:58: route "r": backends is empty`,
			},
		},
	})
}

// TestRouteFrontDoorErrors: what a front door cannot serve is refused
// where it is written.
func TestRouteFrontDoorErrors(t *testing.T) {
	const base = `cloud: {name: demo, domain: demo.example.net}
sites:
  a: {engine: local, nodes: [n1], peer: b}
  b: {engine: local, nodes: [n1], peer: a}
  c: {engine: local, nodes: [n1]}
zones:
  web: {type: service, sub-id: 1, pinhole-allowed-from: [internet, app]}
  app: {type: service, sub-id: 2, pinhole-allowed-from: [web]}
roles: {r: {vmids: 1000-1999}}
instances:
  fe-a: {role: r, zone: web, site: a}
  be-a: {role: r, zone: web, site: a}
  be-b: {role: r, zone: web, site: b}
  be-c: {role: r, zone: web, site: c}
  in-app: {role: r, zone: app, site: a}
routes:
` // routes start at line 17
	runDiagCases(t, []diagCase{
		{
			name: "two routes claim one hostname and port on one front end",
			yaml: base + `  one: {host: app.demo.net, frontends: [fe-a], backends: [be-a], backend-port: 80}
  two: {host: APP.demo.net, frontends: [fe-a], backends: [be-a], backend-port: 8080, port: 443}
  other-port: {host: app.demo.net, frontends: [fe-a], backends: [be-a], backend-port: 80, port: 8443}
`,
			want: []string{
				`spec.yaml:18:15: route "two": APP.demo.net:443 on frontend "fe-a" is route "one"'s already; one front end serves a hostname and port once`,
			},
		},
		{
			name: "a failover backend outside the peer site",
			yaml: base + `  app: {host: app.demo.net, frontends: [fe-a], backends: [be-a], failover: [be-b, be-c], backend-port: 80}
`,
			want: []string{
				`spec.yaml:17:76: route "app": failover backend "be-c" is at site "c", not the peer site of the route's (site "a"'s peer is "b"); failover is the peer's backends`,
			},
		},
		{
			name: "a public route's front end the internet may not reach",
			yaml: base + `  app: {host: app.demo.net, frontends: [in-app], backends: [be-a], backend-port: 80}
  private: {host: p.demo.net, frontends: [in-app], backends: [be-a], backend-port: 80, allowed-from: [web]}
`,
			want: []string{
				`spec.yaml:17:40: route "app": frontend "in-app" is in zone "app", which the internet may not reach, and the route is public (add internet to the zone's pinhole-allowed-from, or name the zones in allowed-from)`,
			},
		},
	})
}

// selfSigned is a PEM certificate for names and its PEM key.
func selfSigned(t *testing.T, names ...string) (certPEM, keyPEM string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	k, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: k}))
}

func TestFrontDoorSpecErrors(t *testing.T) {
	const base = `cloud: {name: demo, domain: demo.example.net}
sites:
  a: {engine: local, nodes: [n1], peer: b}
  b: {engine: local, nodes: [n1], peer: a}
zones:
  web: {type: service, sub-id: 1, pinhole-allowed-from: [internet]}
  app: {type: service, sub-id: 2, pinhole-allowed-from: [web]}
roles: {r: {vmids: 1000-1999}}
instances:
  fe-a: {role: r, zone: web, site: a}
  be-a: {role: r, zone: web, site: a}
  fe-b: {role: r, zone: web, site: b}
  in-app: {role: r, zone: app, site: a}
` // line 13 on
	cert, key := selfSigned(t, "app.demo.net")
	_, otherKey := selfSigned(t, "app.demo.net")
	wwwCert, wwwKey := selfSigned(t, "www.demo.net")
	withFiles := func(yaml string) map[string]string {
		return map[string]string{"spec.yaml": yaml, "app.pem": cert, "app.key": key, "other.key": otherKey, "www.pem": wwwCert, "www.key": wwwKey}
	}
	runDiagCases(t, []diagCase{
		{
			name: "a certificate file that does not match its key",
			files: withFiles(base + `routes:
  app: {host: app.demo.net, frontends: [fe-a], backends: [be-a], backend-port: 80, certificate: {cert-file: app.pem, key-file: other.key}}
`),
			want: []string{`spec.yaml:15:97: route "app": certificate: key-file other.key is not the key of cert-file app.pem`},
		},
		{
			name: "a certificate for another name, a missing file, a certificate on a tcp route",
			files: withFiles(base + `routes:
  www: {host: app.demo.net, frontends: [fe-a], backends: [be-a], backend-port: 80, certificate: {cert-file: www.pem, key-file: www.key}}
  gone: {host: b.demo.net, frontends: [fe-a], backends: [be-a], backend-port: 80, certificate: {cert-file: gone.pem, key-file: app.key}}
  ssh: {host: c.demo.net, proto: tcp, port: 2222, frontends: [fe-a], backends: [be-a], backend-port: 22, certificate: {cert-file: app.pem, key-file: app.key}}
`),
			want: []string{
				`spec.yaml:15:97: route "www": certificate: cert-file www.pem is for www.demo.net, not app.demo.net`,
				`spec.yaml:16:96: route "gone": certificate: open gone.pem: no such file or directory`,
				`spec.yaml:17:119: route "ssh": a certificate is for https routes; this one is tcp`,
			},
		},
		{
			name: "a tcp route without a port, ports two protocols claim, a bad health path",
			yaml: base + `routes:
  db: {host: db.demo.net, proto: tcp, frontends: [fe-a], backends: [be-a], backend-port: 5432}
  plain: {host: p.demo.net, proto: http, port: 443, frontends: [fe-a], backends: [be-a], backend-port: 80}
  tls: {host: t.demo.net, frontends: [fe-a], backends: [be-a], backend-port: 80, health-path: healthz}
`,
			want: []string{
				`spec.yaml:15:34: route "db": a tcp route needs its port (the front end's port clients connect to)`,
				`spec.yaml:17:3: route "tls": port 443 on frontend "fe-a" is route "plain"'s already (http); a tcp route has its port to itself, and a port serves one protocol`,
				`spec.yaml:17:95: route "tls": health-path "healthz" is not a path (it starts with /)`,
			},
		},
		{
			name: "a bad acme section",
			yaml: base + `acme: {directory: http://acme.demo.net/dir, email: nobody}
`,
			want: []string{
				`spec.yaml:14:19: acme: directory "http://acme.demo.net/dir" is not an https URL (Let's Encrypt's is https://acme-v02.api.letsencrypt.org/directory)`,
				`spec.yaml:14:52: acme: email "nobody" is not an address`,
			},
		},
		{
			name: "ingress: forwards to another site, to a zone the internet may not reach, over a kept port, twice",
			yaml: strings.Replace(base, "  a: {engine: local, nodes: [n1], peer: b}\n", `  a:
    engine: local
    nodes: [n1]
    peer: b
    ingress:
      address: 2001:db8::1
      forward:
        - {ports: [443], to: fe-b}
        - {ports: [8080], to: in-app}
        - {ports: [22, 80], to: fe-a}
        - {ports: [80], to: be-a}
        - {ports: [80], to: be-a, proto: udp}
`, 1),
			want: []string{
				`spec.yaml:8:16: site "a": ingress: address "2001:db8::1" is not an IPv4 address`,
				`spec.yaml:10:30: site "a": ingress: forward to "fe-b", which is at site "b"; a site's address forwards to its own instances`,
				`spec.yaml:11:31: site "a": ingress: forward to "in-app" in zone "app", which the internet may not reach (add internet to the zone's pinhole-allowed-from)`,
				`spec.yaml:12:19: site "a": ingress: port 22 is one the node keeps (host-ports); forwarding it would cut the node's own service`,
				`spec.yaml:13:19: site "a": ingress: 80/tcp is forwarded to "fe-a" already`,
			},
		},
	})
}
