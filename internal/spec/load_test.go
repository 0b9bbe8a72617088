package spec_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/spec"
)

// TestLoadStrict covers what the loader itself refuses: unknown keys, wrong
// types, duplicates, missing fields and bad YAML, each at its position.
func TestLoadStrict(t *testing.T) {
	runDiagCases(t, []diagCase{
		{
			name: "unknown field with suggestion",
			yaml: header + `zones:
  a: {type: iot, vlna: 5}
`,
			want: []string{`spec.yaml:4:18: zone "a": unknown field "vlna" (did you mean "vlan"?)`},
		},
		{
			name: "unknown field suggestion ignores case",
			yaml: header + `zones:
  a: {type: iot, SubID: 5}
`,
			want: []string{`spec.yaml:4:18: zone "a": unknown field "SubID" (did you mean "sub-id"?)`},
		},
		{
			name: "unknown field without a close match lists the known ones",
			yaml: header + `billing: {}
`,
			want: []string{`spec.yaml:3:1: spec: unknown field "billing" (known fields: cloud, sites, zones, roles, flavors, templates, groups, overlay, dns, acme, instances, routes, tenancy)`},
		},
		{
			name: "a misspelt section is suggested",
			yaml: header + `tenants: {}
`,
			want: []string{`spec.yaml:3:1: spec: unknown field "tenants" (did you mean "tenancy"?)`},
		},
		{
			name: "string for int",
			yaml: header + `zones:
  a: {type: iot, vlan: "12"}
`,
			want: []string{`spec.yaml:4:24: zone "a".vlan: expected an integer, got "12"`},
		},
		{
			name: "float for int",
			yaml: header + `flavors:
  f: {cpus: 1.5, memory: 1G}
`,
			want: []string{`spec.yaml:4:13: flavor "f".cpus: expected an integer, got number 1.5`},
		},
		{
			name: "integer too large for int",
			yaml: header + `zones:
  a: {type: iot, vlan: 99999999999999999999}
`,
			want: []string{`spec.yaml:4:24: zone "a".vlan: expected an integer, got number 99999999999999999999`},
		},
		{
			name: "list for map",
			yaml: header + `zones: [a, b]
`,
			want: []string{`spec.yaml:3:8: zones: expected a mapping of names to objects, got a list`},
		},
		{
			name: "scalar for object",
			yaml: header + `zones:
  a: iot
`,
			want: []string{`spec.yaml:4:6: zone "a": expected a mapping, got "iot"`},
		},
		{
			name: "map for list",
			yaml: header + `zones:
  a: {type: iot, access-to: {b: true}}
`,
			want: []string{`spec.yaml:4:29: zone "a".access-to: expected a list, got a mapping`},
		},
		{
			name: "scalar for list",
			yaml: header + `zones:
  a: {type: iot, sites: s1}
`,
			want: []string{`spec.yaml:4:25: zone "a".sites: expected a list, got "s1"`},
		},
		{
			name: "bool for string",
			yaml: header + `zones:
  a: {type: iot, description: true}
`,
			want: []string{`spec.yaml:4:31: zone "a".description: expected a string, got boolean true`},
		},
		{
			name: "null in a list of strings",
			yaml: header + `zones:
  a: {type: iot, access-to: [internet, ~]}
`,
			want: []string{`spec.yaml:4:40: zone "a".access-to[1]: expected a string, got nothing (null)`},
		},
		{
			name: "string for bool",
			yaml: header + `zones:
  a: {type: iot, isolated: "yes"}
`,
			want: []string{`spec.yaml:4:28: zone "a".isolated: expected true or false, got "yes"`},
		},
		{
			name: "YAML 1.1 yes is not a bool even when tagged",
			yaml: header + `zones:
  a: {type: iot, isolated: !!bool yes}
`,
			want: []string{`spec.yaml:4:28: zone "a".isolated: expected true or false, got boolean yes`},
		},
		{
			name: "number is accepted as a string",
			yaml: header + `templates:
  t: {image: 9000}
`,
		},
		{
			name: "duplicate key in one mapping",
			yaml: header + `zones:
  a:
    type: iot
    sub-id: 1
    type: dmz
`,
			want: []string{`spec.yaml:7:5: zone "a": field "type" given twice (first at line 5)`},
		},
		{
			name: "duplicate name in one section",
			yaml: header + `zones:
  a: {type: iot}
  b: {type: dmz}
  a: {type: guest}
`,
			want: []string{`spec.yaml:6:3: zones: "a" defined twice (first at line 4)`},
		},
		{
			name: "invalid name",
			yaml: header + `zones:
  2nd: {type: iot}
  ok-1: {type: dmz}
  bad_: {type: guest}
`,
			want: []string{
				`spec.yaml:4:3: zone "2nd": not a valid name: must start with a letter`,
				`spec.yaml:6:3: zone "bad_": not a valid name: may hold only letters, digits and '-', not '_'`,
			},
		},
		{
			name: "missing required fields",
			yaml: `cloud: {name: demo}
sites:
  s1: {engine: local}
zones:
  a: {sub-id: 1}
flavors:
  f: {cpus: 1}
roles:
  r: {}
`,
			want: []string{
				`spec.yaml:1:8: cloud: missing required field "domain"`,
				`spec.yaml:3:7: site "s1": missing required field "nodes"`,
				`spec.yaml:5:6: zone "a": missing required field "type"`,
				`spec.yaml:7:6: flavor "f": missing required field "memory"`,
				`spec.yaml:9:6: role "r": missing required field "vmids"`,
			},
		},
		{
			name: "required field given as null",
			yaml: header + `zones:
  a:
    type:
    sub-id: 1
templates:
  t: {image: ~}
`,
			want: []string{
				`spec.yaml:5:5: zone "a": field "type" is empty`,
				`spec.yaml:8:7: template "t": field "image" is empty`,
			},
		},
		{
			name: "entry given as null is an empty object",
			yaml: header + `zones:
  a:
`,
			want: []string{`spec.yaml:4:5: zone "a": missing required field "type"`},
		},
		{
			name: "optional field given as null is left out",
			yaml: header + `zones:
  a: {type: iot, description: , vlan: ~}
`,
		},
		{
			name: "bad enum value",
			yaml: header + `zones:
  a: {type: lan}
`,
			want: []string{`spec.yaml:4:13: zone "a".type: "lan" is not one of management, service, client, iot, guest, dmz, overlay, test`},
		},
		{
			name: "bad patterns",
			yaml: `cloud: {name: 9lives, domain: "exa mple.net"}
sites: {s1: {engine: local, nodes: [n1]}}
`,
			want: []string{
				`spec.yaml:1:15: cloud.name: "9lives" is not a valid name: must start with a letter`,
				`spec.yaml:1:31: cloud.domain: "exa mple.net" is not a valid DNS name`,
			},
		},
		{
			name: "integer bounds from tags",
			yaml: header + `flavors:
  f: {cpus: 0, memory: 1G}
routes:
  r: {host: a.example.net, frontends: [x], backends: [y], backend-port: 65536}
`,
			want: []string{
				`spec.yaml:4:13: flavor "f".cpus: 0 is out of range (at least 1)`,
				`spec.yaml:6:73: route "r".backend-port: 65536 is out of range 1-65535`,
			},
		},
		{
			name: "document root is not a mapping",
			yaml: `- cloud
`,
			want: []string{`spec.yaml:1:1: spec: expected a mapping, got a list`},
		},
		{
			name: "YAML syntax error has a line",
			yaml: header + `zones:
  a: {type: iot
  b: [
`,
			// yaml.v3 names the line where the unclosed mapping starts.
			want: []string{`spec.yaml:4:1: YAML syntax: did not find expected ',' or '}'`},
		},
		{
			name: "tab indentation",
			yaml: "cloud:\n  name: demo\n\tdomain: x.net\n",
			want: []string{`spec.yaml:2:1: YAML syntax: found a tab character that violates indentation`},
		},
		{
			name: "unknown anchor",
			yaml: header + "zones: *z\n",
			want: []string{`spec.yaml:1:1: YAML syntax: unknown anchor 'z' referenced`},
		},
		{
			name: "merge keys are not supported",
			yaml: header + `zones:
  a: {type: iot, <<: {sub-id: 1}}
`,
			want: []string{`spec.yaml:4:18: zone "a": unknown field "<<"`},
		},
		{
			name: "every independent error in one run",
			yaml: `cloud: {name: demo, domain: x.net, owner: me}
sites:
  s1: {engine: xen, nodes: n1}
zones:
  a: {type: iot, vlan: high}
  b: {type: dmz, isolated: 1}
flavors:
  f: {cpus: two, memory: lots}
roles:
  r: {vmids: 2000-1000}
instances:
  i: {zone: a, ports: [0], ha: maybe}
  i: {zone: b}
routes:
  w: {host: x.net, frontends: [i], backends: [i]}
`,
			want: []string{
				`spec.yaml:1:36: cloud: unknown field "owner"`,
				`spec.yaml:3:16: site "s1".engine: "xen" is not one of ` + strings.Join(spec.EngineNames(), ", "),
				`spec.yaml:3:28: site "s1".nodes: expected a list, got "n1"`,
				`spec.yaml:5:24: zone "a".vlan: expected an integer, got "high"`,
				`spec.yaml:6:28: zone "b".isolated: expected true or false, got number 1`,
				`spec.yaml:8:13: flavor "f".cpus: expected an integer, got "two"`,
				`spec.yaml:8:26: flavor "f".memory: size "lots": want a number`,
				`spec.yaml:10:14: role "r".vmids: range "2000-1000": end is below start`,
				`spec.yaml:12:24: instance "i".ports[0]: expected a port such as 443 or "53/udp", got "0"`,
				`spec.yaml:12:32: instance "i".ha: expected true or false, got "maybe"`,
				`spec.yaml:13:3: instances: "i" defined twice (first at line 12)`,
				`spec.yaml:15:6: route "w": missing required field "backend-port"`,
			},
		},
	})
}

func TestLoadMultiFile(t *testing.T) {
	runDiagCases(t, []diagCase{
		{
			name: "zone defined in two files names the first place",
			files: map[string]string{
				"a.yaml": header + "zones:\n  web: {type: service}\n",
				"b.yaml": "zones:\n  db: {type: service, sub-id: 1}\n  web: {type: dmz}\n",
			},
			want: []string{`b.yaml:3:3: zone "web": defined twice (first at a.yaml:4:3)`},
		},
		{
			name: "cloud defined in two files",
			files: map[string]string{
				"a.yaml": header,
				"b.yaml": "cloud: {name: other, domain: other.net}\n",
			},
			want: []string{`b.yaml:1:8: cloud: defined again (first at a.yaml:1:8)`},
		},
		{
			name: "errors from every file together",
			files: map[string]string{
				"a.yaml": header + "zones:\n  web: {type: service, colour: red}\n",
				"b.yml":  "instances:\n  i: {zone: web, cpus: many}\n",
				"c.yaml": "routes: [x]\n",
			},
			want: []string{
				`a.yaml:4:24: zone "web": unknown field "colour"`,
				`b.yml:2:24: instance "i".cpus: expected an integer, got "many"`,
				`c.yaml:1:9: routes: expected a mapping of names to objects, got a list`,
			},
		},
		{
			name: "syntax error in one file does not hide the others",
			files: map[string]string{
				"a.yaml": header + "zones: {a: {type: iot}\n",
				"b.yaml": "zones:\n  b: {type: dmz, vlan: x}\n",
			},
			want: []string{
				`a.yaml:`,
				`b.yaml:2:24: zone "b".vlan: expected an integer, got "x"`,
			},
		},
		{
			name: "references resolve across files; hidden, non-yaml files and subdirectories are skipped",
			files: map[string]string{
				"cloud.yaml":     header,
				"zones.yml":      "zones:\n  web: {type: service}\n",
				"instances.yaml": "instances:\n  i: {zone: web, vmid: 100}\n",
				".draft.yaml":    "zones: {broken",
				"notes.txt":      "zones: {broken",
			},
		},
	})

	t.Run("merged spec keeps every file in order", func(t *testing.T) {
		dir := writeFiles(t, map[string]string{
			"b.yaml": "zones:\n  web: {type: service}\n",
			"a.yaml": header,
		})
		s, got := check(t, dir)
		expectDiags(t, got)
		if len(s.Files) != 2 || filepath.Base(s.Files[0]) != "a.yaml" || filepath.Base(s.Files[1]) != "b.yaml" {
			t.Errorf("Files = %v, want a.yaml then b.yaml", s.Files)
		}
		if s.Zones["web"].Pos.File != filepath.Join(dir, "b.yaml") || s.Zones["web"].Pos.Line != 2 {
			t.Errorf("zone web declared at %v, want b.yaml:2", s.Zones["web"].Pos)
		}
	})
}

func TestLoadMultiDocument(t *testing.T) {
	runDiagCases(t, []diagCase{
		{
			name: "documents merge and lines count through the stream",
			yaml: header + `---
zones:
  a: {type: iot, bogus: 1}
---
zones:
  a: {type: dmz}
`,
			want: []string{
				`spec.yaml:5:18: zone "a": unknown field "bogus"`,
				`spec.yaml:8:3: zone "a": defined twice (first at spec.yaml:5:3)`,
			},
		},
		{
			name: "empty documents are skipped",
			yaml: "---\n---\n" + header + "---\n",
		},
	})
}

func TestLoadPathErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "nope.yaml")
	_, diags := spec.Load(missing)
	if len(diags) != 1 || diags[0].Pos != (spec.Pos{File: missing}) || !strings.HasPrefix(diags[0].Message, "cannot read spec: ") {
		t.Errorf("missing file: got %v, want one whole-file error at %s", diags, missing)
	}
	empty := writeFiles(t, map[string]string{"README.md": "# not a spec"})
	_, diags = spec.Load(empty)
	if len(diags) != 1 || diags[0].Pos != (spec.Pos{File: empty}) || diags[0].Message != "no *.yaml files in the spec directory" {
		t.Errorf("directory without specs: got %v", diags)
	}
	if diags.Err() == nil {
		t.Error("Err() is nil for an error")
	}
}

// TestEnumCase: TAPPaaS writes "Management"; enums match without regard to
// case and are stored in their canonical spelling.
func TestEnumCase(t *testing.T) {
	s, _ := mustLoad(t, `cloud: {name: demo, domain: demo.net}
sites: {s1: {engine: LAB, nodes: [n1], lab: {endpoint: here, mode: Slow}}}
zones:
  mgmt: {type: Management, state: Mandatory}
  srv: {type: SERVICE, sub-id: 1, pinhole-allowed-from: [mgmt]}
roles:
  r: {vmids: 1000-1999, ip: VMID}
instances:
  i: {zone: srv, role: r, ports: ["53/UDP", {port: 22, proto: TCP}], ingress: [{from: mgmt, proto: ICMP}]}
`)
	checks := []struct{ got, want string }{
		{s.Sites["s1"].Engine, "lab"},
		{s.Sites["s1"].Block.(*spec.LabBlock).Mode, "slow"},
		{s.Zones["mgmt"].Type, "management"},
		{s.Zones["mgmt"].State, "mandatory"},
		{s.Zones["srv"].Type, "service"},
		{s.Roles["r"].IP, "vmid"},
		{s.Instances["i"].Ports[0].Proto, "udp"},
		{s.Instances["i"].Ports[1].Proto, "tcp"},
		{s.Instances["i"].Ingress[0].Proto, "icmp"},
	}
	for i, c := range checks {
		if c.got != c.want {
			t.Errorf("check %d: got %q, want %q", i, c.got, c.want)
		}
	}
	// Management semantics follow from the canonical type: typeId 0, VLAN 0.
	if n := s.Zones["mgmt"].Net; n.TypeID != 0 || n.VLAN != 0 || n.Prefix.String() != "10.0.0.0/24" || !n.Present {
		t.Errorf("mgmt net = %+v", n)
	}
}

// TestPositions: objects and fields remember where they were written.
func TestPositions(t *testing.T) {
	s, _ := mustLoad(t, header+`zones:
  a:
    type: iot
    vlan: 401
`)
	z := s.Zones["a"]
	if z.Name != "a" || z.Pos.Line != 4 || z.Pos.Col != 3 {
		t.Errorf("zone pos = %v name %q, want line 4 col 3", z.Pos, z.Name)
	}
	if p := z.FieldPos("vlan"); p.Line != 6 || p.Col != 11 {
		t.Errorf("vlan pos = %v, want 6:11", p)
	}
	if !z.Has("vlan") || z.Has("cidr") {
		t.Errorf("Has: vlan %v, cidr %v", z.Has("vlan"), z.Has("cidr"))
	}
	if p := z.FieldPos("cidr"); p != z.Pos {
		t.Errorf("unwritten field pos = %v, want the zone's %v", p, z.Pos)
	}
}

func TestAliases(t *testing.T) {
	t.Run("ordinary anchors and aliases work", func(t *testing.T) {
		s, _ := mustLoad(t, header+`zones:
  a: {type: service, sub-id: 1, access-to: &out [internet]}
  b: {type: service, sub-id: 2, access-to: *out}
`)
		if got := s.Zones["b"].AccessTo; len(got) != 1 || got[0] != "internet" {
			t.Errorf("b access-to = %v", got)
		}
	})

	// Shared settings reused by every instance are what aliases are for.
	t.Run("heavy legitimate reuse", func(t *testing.T) {
		var b strings.Builder
		b.WriteString(header + "zones: {z: {type: iot, pinhole-allowed-from: [internet]}}\nroles: {r: {vmids: 1000-9999}}\ninstances:\n")
		b.WriteString("  i0: {role: r, zone: z, ingress: &in [{from: internet, ports: &p [22, 80, 443, 8000-8100]}, {from: internet, ports: *p, proto: udp}], trunks: &tr [" + strings.Repeat("z,", 49) + "z]}\n")
		for i := 1; i < 2000; i++ {
			fmt.Fprintf(&b, "  i%d: {role: r, zone: z, ingress: *in, trunks: *tr}\n", i)
		}
		s, _ := mustLoad(t, b.String())
		if got := s.Instances["i1999"].Ingress[1].Ports.Strings(); len(got) != 4 || len(s.Instances["i1999"].Trunks) != 50 {
			t.Errorf("aliased values not expanded: ports %v, %d trunks", got, len(s.Instances["i1999"].Trunks))
		}
	})

	// A few kilobytes of nested aliases would otherwise expand into a
	// billion values: the loader must refuse, quickly and with one error.
	t.Run("alias bomb", func(t *testing.T) {
		const n = 200 // 8 million strings unchecked: slow and big, but finishes
		var b strings.Builder
		b.WriteString(header)
		// n instances of n interfaces of n trunks: n³ strings, all well typed.
		b.WriteString("zones:\n  z: {type: iot, access-to: &s [" + strings.Repeat("x,", n-1) + "x]}\n")
		fmt.Fprintf(&b, "instances:\n  i0: &i {networks: [&nic {zone: z, trunks: *s}%s]}\n", strings.Repeat(", *nic", n-1))
		for i := 1; i < n; i++ {
			fmt.Fprintf(&b, "  i%d: *i\n", i)
		}
		dir := writeFiles(t, map[string]string{"spec.yaml": b.String()})
		start := time.Now()
		_, diags := spec.Load(filepath.Join(dir, "spec.yaml"))
		if el := time.Since(start); el > 10*time.Second {
			t.Errorf("Load took %v", el)
		}
		var bombs int
		for _, d := range diags {
			if strings.Contains(d.Message, "expands aliases excessively") {
				bombs++
			}
		}
		if bombs != 1 || len(diags) > 10 {
			t.Errorf("want exactly one alias error among few findings, got %d findings (%d alias errors): %v", len(diags), bombs, diags[:min(len(diags), 5)])
		}
	})
}
