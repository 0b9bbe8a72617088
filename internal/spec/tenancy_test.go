package spec_test

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/spec"
)

// Two well-formed public keys (ed25519 key data of bytes 1-32 and 33-64).
const (
	aliceKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g alice@laptop"
	bobKey   = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj9A"
)

// tenancyBase is a cloud that serves tenants; cases start at line 11, in
// a second YAML document (so that they may have zones too).
const tenancyBase = header + `zones:
  mgmt: {type: management, access-to: [all]}
  srv: {type: service, sub-id: 1, pinhole-allowed-from: [internet]}
roles:
  infra: {vmids: 100-199}
  tenants: {vmids: 10000-19999}
tenancy: {role: tenants, cidr: 10.128.0.0/16, vlans: 3000-3099}
---
`

func TestTenantsValid(t *testing.T) {
	s, got := mustLoad(t, tenancyBase+`zones:
  acme--lan: {tenant: acme, type: guest, vlan: 3000, cidr: 10.128.0.0/24, access-to: [internet], pinhole-allowed-from: [internet, acme--db]}
  acme--db: {tenant: acme, type: guest, vlan: 3001, cidr: 10.128.1.0/24, pinhole-allowed-from: [acme--lan]}
  bob--lan: {tenant: bob, type: guest, vlan: 3002, cidr: 10.128.2.0/24, access-to: [internet]}
instances:
  acme--web: {tenant: acme, role: tenants, zone: acme--lan, ingress: [{from: internet, ports: 443}, {from: acme--db}], egress: [{to: internet}, {to: acme--db}], power: stopped, reboot: 3, rebuild: 1, ssh-keys: ["`+aliceKey+`", "`+bobKey+`"]}
  acme--db: {tenant: acme, role: tenants, zone: acme--db, depends-on: [acme--web]}
  bob--vm: {tenant: bob, role: tenants, networks: [{zone: bob--lan}]}
  ops: {role: infra, zone: srv}
`)
	// No warning either: a tenant zone's VLAN comes from the pool, not
	// from typeId*100+subId.
	expectDiags(t, got)
	tn := s.Tenancy.Net
	if tn.Site != "s1" || tn.ZoneType != "guest" || tn.Bits != 24 || tn.Pool != netip.MustParsePrefix("10.128.0.0/16") || !slices.Equal(tn.Access, []string{"internet"}) {
		t.Errorf("tenancy defaults: %+v", tn)
	}
	in := s.Instances["acme--web"]
	if in.Power != "stopped" || in.Reboot != 3 || in.Rebuild != 1 || len(in.SSHKeys) != 2 {
		t.Errorf("acme--web: power %q reboot %d rebuild %d keys %d", in.Power, in.Reboot, in.Rebuild, len(in.SSHKeys))
	}
	// The first free network skips the three taken.
	p, vlan, ok := s.FreeTenantNetwork()
	if !ok || p != netip.MustParsePrefix("10.128.3.0/24") || vlan != 3003 {
		t.Errorf("FreeTenantNetwork = %s %d %v, want 10.128.3.0/24 3003", p, vlan, ok)
	}
}

func TestTenantZoneRules(t *testing.T) {
	runDiagCases(t, []diagCase{
		{
			name: "what a tenant zone may reach and allow",
			yaml: tenancyBase + `zones:
  a--lan: {tenant: a, type: guest, vlan: 3000, cidr: 10.128.0.0/24, access-to: [internet, srv, b--lan, all]}
  a--dmz: {tenant: a, type: guest, vlan: 3001, cidr: 10.128.1.0/24, pinhole-allowed-from: [a--lan, internet, srv, b--lan]}
  b--lan: {tenant: b, type: guest, vlan: 3002, cidr: 10.128.2.0/24}
`,
			want: []string{
				`spec.yaml:12:80: zone "a--lan": access-to lists "srv"; a tenant's zone may reach only the internet`,
				`spec.yaml:12:80: zone "a--lan": access-to lists "b--lan"; a tenant's zone may reach only the internet`,
				`spec.yaml:12:80: zone "a--lan": access-to lists "all"; a tenant's zone may reach only the internet`,
				`spec.yaml:13:91: zone "a--dmz": pinhole-allowed-from lists "srv", which is not a zone of tenant "a"; a tenant's zone allows pinholes only from its own zones and the internet`,
				`spec.yaml:13:91: zone "a--dmz": pinhole-allowed-from lists "b--lan", which is not a zone of tenant "a"`,
			},
		},
		{
			name: "a tenant zone lies in the pool, at the pool's size, with a VLAN of the range",
			yaml: tenancyBase + `zones:
  a: {tenant: t, type: guest, vlan: 3000, cidr: 10.129.0.0/24}
  b: {tenant: t, type: guest, vlan: 3001, cidr: 10.128.4.0/25}
  c: {tenant: t, type: guest, vlan: 3100, cidr: 10.128.5.0/24}
  d: {tenant: t, type: guest, sub-id: 7}
  e: {tenant: t, type: guest, vlan: 3003, cidr: 10.0.0.0/24}
`,
			want: []string{
				`spec.yaml:12:49: zone "a": cidr 10.129.0.0/24 is outside the tenancy pool 10.128.0.0/16`,
				`spec.yaml:13:49: zone "b": cidr 10.128.4.0/25 is a /25; tenant networks are /24`,
				`spec.yaml:14:37: zone "c": VLAN 3100 is outside the tenancy's vlans 3000-3099`,
				// Without a cidr and a vlan, both default, and neither fits.
				`spec.yaml:15:15: zone "d": cidr 10.5.7.0/24 is outside the tenancy pool 10.128.0.0/16`,
				`spec.yaml:15:15: zone "d": VLAN 507 is outside the tenancy's vlans 3000-3099`,
				`spec.yaml:16:49: zone "e": cidr 10.0.0.0/24 is outside the tenancy pool 10.128.0.0/16`,
				// Overlaps stay errors cloud-wide, tenant zones or not.
				`spec.yaml:4:3: zone "mgmt": cidr 10.0.0.0/24 overlaps zone "e" (10.0.0.0/24)`,
			},
		},
		{
			name: "VLANs of tenant zones collide like any others",
			yaml: tenancyBase + `zones:
  a: {tenant: t, type: guest, vlan: 3000, cidr: 10.128.0.0/24}
  b: {tenant: u, type: guest, vlan: 3000, cidr: 10.128.1.0/24}
`,
			want: []string{
				`spec.yaml:13:37: zone "b": VLAN 3000 collides with zone "a" (spec.yaml:12:37)`,
			},
		},
		{
			name: "an operator zone does not grant itself access to a tenant zone",
			yaml: tenancyBase + `zones:
  a: {tenant: t, type: guest, vlan: 3000, cidr: 10.128.0.0/24}
  ops: {type: service, sub-id: 2, access-to: [a, srv]}
`,
			want: []string{
				`spec.yaml:13:46: zone "ops": access-to lists zone "a" of tenant "t"; a tenant's network is reached only through the pinholes it allows`,
			},
		},
		{
			name: "a tenancy without access keeps tenant networks off the internet",
			yaml: header + `roles: {r: {vmids: 100-199}}
tenancy: {role: r, cidr: 10.128.0.0/16, vlans: 3000-3099, access: []}
zones:
  a: {tenant: t, type: guest, vlan: 3000, cidr: 10.128.0.0/24, access-to: [internet]}
`,
			want: []string{
				`spec.yaml:6:75: zone "a": access-to lists "internet"; the tenancy's access does not include the internet`,
			},
		},
		{
			name: "tenant zones need a tenancy block",
			yaml: header + `zones:
  a: {tenant: t, type: guest, vlan: 3000, cidr: 10.128.0.0/24}
`,
			want: []string{
				`spec.yaml:4:15: zone "a": a tenant's zone needs a tenancy block`,
			},
		},
		{
			name: "tenant zones are carried by the tenancy's site only",
			yaml: `cloud: {name: demo, domain: demo.example.net}
sites: {s1: {engine: local, nodes: [n1]}, s2: {engine: local, nodes: [n1]}}
roles: {tenants: {vmids: 10000-19999}}
tenancy: {site: s1, role: tenants, cidr: 10.128.0.0/16, vlans: 3000-3099}
zones:
  a: {tenant: t, type: guest, vlan: 3000, cidr: 10.128.0.0/24}
  b: {tenant: t, type: guest, vlan: 3001, cidr: 10.128.1.0/24, sites: [s1, s2]}
  c: {tenant: t, type: guest, vlan: 3002, cidr: 10.128.2.0/24, sites: [s1]}
`,
			want: []string{
				`spec.yaml:6:15: zone "a": a tenant's zone is carried by the tenancy's site only (sites: [s1])`,
				`spec.yaml:7:71: zone "b": a tenant's zone is carried by the tenancy's site only (sites: [s1])`,
			},
		},
	})
}

func TestTenantInstanceRules(t *testing.T) {
	const zones = tenancyBase + `zones:
  a--lan: {tenant: a, type: guest, vlan: 3000, cidr: 10.128.0.0/24, pinhole-allowed-from: [internet]}
  b--lan: {tenant: b, type: guest, vlan: 3001, cidr: 10.128.1.0/24}
instances:
  ops: {role: infra, zone: srv}
` // instances start at line 16
	runDiagCases(t, []diagCase{
		{
			name: "every interface of a tenant's instance is in its tenant's zones, and only there",
			yaml: zones + `  a1: {tenant: a, role: tenants, zone: srv}
  a2: {tenant: a, role: tenants, networks: [{zone: a--lan}, {zone: b--lan}]}
  op: {role: infra, zone: a--lan}
  a3: {tenant: a, role: tenants, zone: a--lan, trunks: [all, srv, a--lan]}
`,
			want: []string{
				`spec.yaml:16:40: instance "a1": zone "srv" is not a zone of tenant "a"; a tenant's instance uses only its own tenant's zones`,
				`spec.yaml:17:68: instance "a2": zone "b--lan" belongs to tenant "b", not to tenant "a"`,
				`spec.yaml:18:27: instance "op": zone "a--lan" is a network of tenant "a"; only that tenant's instances may use it`,
				`spec.yaml:19:56: instance "a3": a tenant's instance may trunk only its own tenant's zones, not 'all'`,
				`spec.yaml:19:56: instance "a3": trunks: zone "srv" is not a zone of tenant "a"`,
			},
		},
		{
			name: "rules of a tenant's instance name its own zones or the internet",
			yaml: zones + `  a1: {tenant: a, role: tenants, zone: a--lan, ingress: [{from: internet}, {from: srv}, {from: b--lan}], egress: [{to: internet}, {to: mgmt}, {to: b--lan}]}
`,
			want: []string{
				`spec.yaml:16:83: instance "a1": from names zone "srv", which is not a zone of tenant "a"; a tenant's rules name only its own zones and the internet`,
				`spec.yaml:16:96: instance "a1": from names zone "b--lan", which is not a zone of tenant "a"`,
				`spec.yaml:16:136: instance "a1": to names zone "mgmt", which is not a zone of tenant "a"`,
				`spec.yaml:16:148: instance "a1": to names zone "b--lan", which is not a zone of tenant "a"`,
			},
		},
		{
			name: "an operator zone with access-to all does not reach tenants",
			yaml: zones + `  op: {role: infra, zone: mgmt, egress: [{to: a--lan}]}
`,
			want: []string{
				`spec.yaml:16:47: instance "op": egress into zone "a--lan" is not allowed: zone "mgmt" has no access-to "a--lan"`,
			},
		},
		{
			name: "a tenant's instance takes the tenancy's role and depends only on its tenant's instances",
			yaml: zones + `  a1: {tenant: a, role: infra, zone: a--lan}
  a2: {tenant: a, vmid: 10500, zone: a--lan, depends-on: [ops, a1]}
`,
			want: []string{
				`spec.yaml:16:25: instance "a1": a tenant's instance takes its VMID from the tenancy's role "tenants"`,
				`spec.yaml:17:16: instance "a2": a tenant's instance takes its VMID from the tenancy's role "tenants"`,
				`spec.yaml:17:58: instance "a2": depends-on names "ops", which is not an instance of tenant "a"`,
			},
		},
	})
}

func TestTenancyBlockErrors(t *testing.T) {
	runDiagCases(t, []diagCase{
		{
			name: "references and the pool",
			yaml: header + `zones:
  mgmt: {type: management}
  guests: {type: guest, vlan: 3050, cidr: 10.128.128.0/24}
  mesh: {type: overlay, cidr: 10.200.0.0/16}
roles: {r: {vmids: 100-199}}
tenancy: {role: tenant, cidr: 10.128.0.0/16, vlans: 3000-3099, access: [internet, srv]}
`,
			want: []string{
				`spec.yaml:5:31: warning: zone "guests": vlan 3050 differs from typeId*100+subId = 500`,
				`spec.yaml:8:17: tenancy: role "tenant" does not exist`,
				`spec.yaml:8:31: tenancy: pool 10.128.0.0/16 overlaps zone "guests" (10.128.128.0/24); tenant networks need addresses of their own`,
				`spec.yaml:8:53: tenancy: vlans 3000-3099 include VLAN 3050 of zone "guests"`,
				`spec.yaml:8:72: tenancy: access lists "srv"; tenant networks may reach only the internet (access: [internet]) or nothing (access: [])`,
			},
		},
		{
			name: "shapes",
			yaml: header + `roles: {r: {vmids: 100-199}}
tenancy:
  site: s2
  role: r
  cidr: 10.128.0.1/16
  vlans: 0-4095
`,
			want: []string{
				`spec.yaml:5:9: tenancy: site "s2" does not exist (did you mean "s1"?)`,
				`spec.yaml:7:9: tenancy: cidr "10.128.0.1/16" has host bits set; did you mean 10.128.0.0/16?`,
				`spec.yaml:8:10: tenancy: vlans 0-4095 must lie within 1-4094`,
			},
		},
		{
			name: "bounds the loader checks",
			yaml: header + `tenancy: {cidr: 10.128.0.0/16, vlans: 3000-3099, prefix: 30, zone-type: overlay}
`,
			want: []string{
				`spec.yaml:3:10: tenancy: missing required field "role"`,
				`spec.yaml:3:58: tenancy.prefix: 30 is out of range 16-29`,
				`spec.yaml:3:73: tenancy.zone-type: "overlay" is not one of management, service, client, iot, guest, dmz, test`,
			},
		},
		{
			name: "networks wider than the pool",
			yaml: header + `roles: {r: {vmids: 100-199}}
tenancy: {role: r, cidr: 10.128.0.0/25, vlans: 3000-3099}
`,
			want: []string{
				`spec.yaml:4:26: tenancy: networks of /24 do not fit the pool 10.128.0.0/25; give a wider cidr or a longer prefix`,
			},
		},
		{
			name: "a cloud of two sites names the tenancy's site",
			yaml: `cloud: {name: demo, domain: demo.example.net}
sites: {s1: {engine: local, nodes: [n1]}, s2: {engine: local, nodes: [n1]}}
roles: {r: {vmids: 100-199}}
tenancy: {role: r, cidr: 10.128.0.0/16, vlans: 3000-3099}
`,
			want: []string{
				`spec.yaml:4:10: tenancy: missing site (the cloud has 2 sites; name the one that serves tenants)`,
			},
		},
		{
			name: "one tenancy block per cloud",
			files: map[string]string{
				"a.yaml": header + "roles: {r: {vmids: 100-199}}\ntenancy: {role: r, cidr: 10.128.0.0/16, vlans: 3000-3099}\n",
				"b.yaml": "tenancy: {role: r, cidr: 10.129.0.0/16, vlans: 3100-3199}\n",
			},
			want: []string{
				`b.yaml:1:10: tenancy: defined again (first at a.yaml:4:10); a cloud has one tenancy block`,
			},
		},
	})
}

func TestInstanceLifecycleFields(t *testing.T) {
	const base = header + `zones: {z: {type: iot}}
roles: {r: {vmids: 100-199}}
instances:
` // instances start at line 6
	runDiagCases(t, []diagCase{
		{
			name: "power, generations and keys",
			yaml: base + `  a: {role: r, zone: z, power: Stopped, reboot: 0, rebuild: 12, ssh-keys: ["` + aliceKey + `", "  ` + bobKey + `  "]}
  b: {role: r, zone: z, power: off, reboot: -1, rebuild: x}
`,
			want: []string{
				`spec.yaml:7:32: instance "b".power: "off" is not one of running, stopped`,
				`spec.yaml:7:45: instance "b".reboot: -1 is out of range (at least 0)`,
				`spec.yaml:7:58: instance "b".rebuild: expected an integer, got "x"`,
			},
		},
		{
			name: "malformed keys",
			yaml: base + `  a:
    role: r
    zone: z
    ssh-keys:
      - ssh-ed25519
      - ssh-dss AAAAB3NzaC1kc3MAAACBAP
      - command="/bin/sh" ` + aliceKey + `
      - ssh-ed25519 not-base64!
      - ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj9A
      - ssh-ed25519 AAAA
      - "` + aliceKey + `\nssh-ed25519 AAAA"
`,
			want: []string{
				`spec.yaml:10:7: instance "a": ssh-keys[0]: want <type> <base64 key> [comment]`,
				`spec.yaml:10:7: instance "a": ssh-keys[1]: unknown key type "ssh-dss"`,
				`spec.yaml:10:7: instance "a": ssh-keys[2]: unknown key type "command=\"/bin/sh\"" (known: ssh-ed25519, ssh-rsa, ecdsa-sha2-nistp256, ecdsa-sha2-nistp384, ecdsa-sha2-nistp521, sk-ssh-ed25519@openssh.com, sk-ecdsa-sha2-nistp256@openssh.com; authorized_keys options are not accepted)`,
				`spec.yaml:10:7: instance "a": ssh-keys[3]: the key data is not base64`,
				`spec.yaml:10:7: instance "a": ssh-keys[4]: the key data is a "ssh-ed25519" key, not "ssh-rsa"`,
				`spec.yaml:10:7: instance "a": ssh-keys[5]: the key data is malformed`,
				`spec.yaml:10:7: instance "a": ssh-keys[6]: a key is one line; it holds a line break`,
			},
		},
	})
}

func TestCheckSSHKeyAcceptsRealKeys(t *testing.T) {
	for _, k := range []string{aliceKey, bobKey, bobKey + " comment with spaces", "\t" + aliceKey + " "} {
		if err := spec.CheckSSHKey(k); err != nil {
			t.Errorf("%q: %v", k, err)
		}
	}
}

// tenantsFile is what holdfast serve writes beside the cloud's state.
const tenantsFile = `zones:
  acme--lan: {tenant: acme, type: guest, vlan: 3000, cidr: 10.128.0.0/24, access-to: [internet]}
instances:
  acme--web: {tenant: acme, role: tenants, zone: acme--lan, ssh-keys: ["` + aliceKey + `"]}
`

func TestCheckWithMergesTheTenantsFile(t *testing.T) {
	dir := writeFiles(t, map[string]string{"spec.yaml": tenancyBase, "tenants.yaml": ""})
	specPath, tenantsPath := filepath.Join(dir, "spec.yaml"), filepath.Join(dir, "tenants.yaml")
	source := func(content string) spec.TenantsSource {
		return func(cloud string) (string, []byte, error) {
			if cloud != "demo" {
				t.Errorf("the tenants source was asked for cloud %q", cloud)
			}
			if content == "" {
				return tenantsPath, nil, nil
			}
			return tenantsPath, []byte(content), nil
		}
	}
	s, diags := spec.CheckWith(specPath, source(tenantsFile))
	expectDiags(t, render(diags))
	if s.Instances["acme--web"] == nil || s.Zones["acme--lan"] == nil || !slices.Contains(s.Files, tenantsPath) {
		t.Fatalf("the tenants file was not merged: files %v", s.Files)
	}

	// No tenants file: the spec alone.
	s, diags = spec.CheckWith(specPath, source(""))
	expectDiags(t, render(diags))
	if len(s.Instances) != 0 {
		t.Errorf("instances without a tenants file: %v", spec.SortedNames(s.Instances))
	}

	// Errors in the tenants file name it, whatever they are.
	_, diags = spec.CheckWith(specPath, source(`cloud: {name: x, domain: x.net}
zones:
  mgmt: {tenant: acme, type: guest, vlan: 3000, cidr: 10.128.0.0/24}
  acme--lan: {type: guest, vlan: 3001, cidr: 10.128.1.0/24}
instances:
  acme--web: {tenant: acme, role: tenants, zone: acme--dmz, power: paused}
routes:
  r: {host: r.demo.net, frontends: [acme--web], backends: [acme--web], backend-port: 80}
`))
	expectDiags(t, render(diags),
		`tenants.yaml:1:8: cloud: a tenants file holds only tenants' zones and instances and catalogue templates; cloud belongs in the operator's spec`,
		`tenants.yaml:3:3: zone "mgmt": defined twice (first at spec.yaml:4:3)`,
		`tenants.yaml:4:3: zone "acme--lan": a tenants file holds only tenants' zones; it has no tenant`,
		`tenants.yaml:6:68: instance "acme--web".power: "paused" is not one of running, stopped`,
		`tenants.yaml:8:3: routes: a tenants file holds only tenants' zones and instances and catalogue templates; routes belongs in the operator's spec`,
	)

	// A tenants file that does not parse stops validation, like any file.
	_, diags = spec.CheckWith(specPath, source("zones: [\n"))
	if got := render(diags); len(got) != 1 || !strings.HasPrefix(got[0], "tenants.yaml:") {
		t.Errorf("diagnostics %v, want one syntax error in tenants.yaml", got)
	}
}

// The control plane writes the tenants file with EncodeFile: what it
// writes reads back as what it meant, and validates.
func TestTenantsFileRoundTrip(t *testing.T) {
	dir := writeFiles(t, map[string]string{"spec.yaml": tenancyBase, "tenants.yaml": tenantsFile})
	tenants, diags := spec.ParseTenants("tenants.yaml", []byte(tenantsFile))
	if diags.HasErrors() {
		t.Fatal(diags.Err())
	}
	web := tenants.Instances["acme--web"]
	web.Power, web.Reboot, web.Rebuild = "stopped", 4, 2
	web.SSHKeys = append(web.SSHKeys, bobKey)
	path := filepath.Join(dir, "tenants.yaml")
	if err := spec.WriteFile(tenants, path); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s, diags := spec.CheckWith(filepath.Join(dir, "spec.yaml"), func(string) (string, []byte, error) { return path, data, nil })
	expectDiags(t, render(diags))
	back := s.Instances["acme--web"]
	if back.Tenant != "acme" || back.Power != "stopped" || back.Reboot != 4 || back.Rebuild != 2 || !slices.Equal(back.SSHKeys, []string{aliceKey, bobKey}) {
		t.Errorf("read back %+v\nfrom:\n%s", back, data)
	}
	if z := s.Zones["acme--lan"]; z.Tenant != "acme" || z.Net.VLAN != 3000 {
		t.Errorf("zone read back: tenant %q VLAN %d", z.Tenant, z.Net.VLAN)
	}
	if empty, err := spec.EncodeFile(&spec.Spec{}); err != nil || len(empty) != 0 {
		t.Errorf("an empty spec encodes to %q, %v; want an empty file", empty, err)
	}
}

func TestTenancyNetworks(t *testing.T) {
	s, _ := mustLoad(t, header+`roles: {r: {vmids: 100-199}}
tenancy: {role: r, cidr: 10.128.0.0/22, prefix: 24, vlans: 3000-3009}
zones:
  taken: {tenant: x, type: guest, vlan: 3001, cidr: 10.128.0.0/24}
`)
	var got []string
	for p, vlan := range s.Tenancy.Networks() {
		got = append(got, p.String()+"@"+strconv.Itoa(vlan))
	}
	want := []string{"10.128.0.0/24@3000", "10.128.1.0/24@3001", "10.128.2.0/24@3002", "10.128.3.0/24@3003"}
	if !slices.Equal(got, want) {
		t.Errorf("Networks = %v, want %v (four subnets, as many VLANs)", got, want)
	}
	// The first slot's subnet is taken, the second's VLAN is.
	if p, vlan, ok := s.FreeTenantNetwork(); !ok || p.String() != "10.128.2.0/24" || vlan != 3002 {
		t.Errorf("FreeTenantNetwork = %s %d %v, want 10.128.2.0/24 3002", p, vlan, ok)
	}
}
