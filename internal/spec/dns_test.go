package spec_test

import (
	"slices"
	"testing"
)

// dnsBase is a cloud with a DNS server in lan, a client in lan and one in
// cams, a zone that may not reach lan; its lines 1-10 are fixed.
const dnsBase = header + `zones:
  lan: {type: service, sub-id: 10, cidr: 10.2.10.0/24}
  cams: {type: iot, sub-id: 1, cidr: 10.4.1.0/24, dhcp: false}
roles: {r: {vmids: 100-199}}
instances:
  ns: {role: r, zone: lan}
  web: {role: r, zone: lan}
  cam: {role: r, zone: cams}
`

func TestDNSInvalid(t *testing.T) {
	runDiagCases(t, []diagCase{
		{
			name: "servers and upstreams that are not",
			yaml: dnsBase + `dns:
  servers: [ns, nss, ns]
  upstreams: [1.1.1.1, one.one.one.one, 1.1.1.1]
`,
			want: []string{
				`spec.yaml:12:12: dns: server "nss" is not an instance (did you mean "ns"?)`,
				`spec.yaml:12:12: dns: server "ns" is named twice`,
				`spec.yaml:13:14: dns: upstream "one.one.one.one" is not an IP address (a resolver is asked on port 53)`,
				`spec.yaml:13:14: dns: upstream 1.1.1.1 is named twice`,
			},
		},
		{
			name: "a zone that may not reach its server",
			yaml: dnsBase + `dns: {servers: [ns]}
`,
			want: []string{
				`spec.yaml:11:16: dns: zone "cams" resolves at server "ns" (zone "lan") but may not reach it: zone "cams" has no access-to "lan", and "lan" does not allow pinholes from "cams" (add it to its pinhole-allowed-from)`,
			},
		},
		{
			name: "an overlay domain that is a zone's",
			yaml: dnsBase + `groups: {g: {}}
overlay: {cidr: 10.10.10.0/24, domain: lan.demo.example.net, lighthouses: [{address: "203.0.113.7:4242", overlay-ip: 10.10.10.1}]}
`,
			want: []string{
				`spec.yaml:12:40: overlay: domain "lan.demo.example.net" is zone "lan"'s (its instances are <instance>.lan.demo.example.net): a member there would have one name for two addresses; choose another domain`,
			},
		},
		{
			name: "one dns section per cloud",
			files: map[string]string{
				"a.yaml": dnsBase + `dns: {servers: [ns]}
`,
				"b.yaml": `dns: {upstreams: [1.1.1.1]}
`,
			},
			want: []string{`b.yaml:1:6: dns: defined again (first at a.yaml:11:6); a cloud has one dns section`},
		},
	})
}

// TestDNSServersFor: a site's own servers come first, then its peer's;
// a third site's never.
func TestDNSServersFor(t *testing.T) {
	s, _ := mustLoad(t, `cloud: {name: demo, domain: demo.example.net}
sites:
  a: {engine: local, nodes: [n1], peer: b}
  b: {engine: local, nodes: [n2], peer: a}
  c: {engine: local, nodes: [n3]}
zones:
  net: {type: service, cidr: 10.2.0.0/24, sites: [a, b, c]}
roles: {r: {vmids: 100-199}}
instances:
  ns-b: {role: r, site: b, zone: net}
  ns-a2: {role: r, site: a, zone: net}
  ns-a1: {role: r, site: a, zone: net}
  ns-c: {role: r, site: c, zone: net}
dns: {servers: [ns-b, ns-a2, ns-a1, ns-c]}
`)
	for site, want := range map[string][]string{
		"a": {"ns-a1", "ns-a2", "ns-b"},
		"b": {"ns-b", "ns-a1", "ns-a2"},
		"c": {"ns-c"},
	} {
		if got := s.DNSServersFor(site); !slices.Equal(got, want) {
			t.Errorf("DNSServersFor(%s) = %v, want %v", site, got, want)
		}
	}
}
