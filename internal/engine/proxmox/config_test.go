package proxmox_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/engine/proxmox"
	"github.com/holdfast/holdfast/internal/spec"
)

// The proxmox block is the engine's own: these cases prove that spec
// hands it over and that its errors still point at the field, file:line:col.

type diagCase struct {
	name string
	yaml string   // written as spec.yaml
	want []string // every error, each a prefix of one finding
}

func runDiagCases(t *testing.T, cases []diagCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := checkSpec(t, tc.yaml)
			left := slices.Clone(got)
			var missing []string
			for _, w := range tc.want {
				i := slices.IndexFunc(left, func(g string) bool { return strings.HasPrefix(g, w) })
				if i < 0 {
					missing = append(missing, w)
					continue
				}
				left = slices.Delete(left, i, i+1)
			}
			if len(missing) > 0 || len(left) > 0 {
				t.Errorf("diagnostics differ\nmissing:\n  %s\nunexpected:\n  %s", strings.Join(missing, "\n  "), strings.Join(left, "\n  "))
			}
		})
	}
}

// checkSpec loads and validates one spec file, rendering each finding
// with the file's base name.
func checkSpec(t *testing.T, yaml string) []string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "spec.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	s, diags := spec.Load(path)
	if !diags.HasErrors() {
		diags = append(diags, spec.Validate(s)...)
	}
	out := make([]string, 0, len(diags))
	for _, d := range diags {
		d.Pos.File = filepath.Base(d.Pos.File)
		out = append(out, d.String())
	}
	return out
}

func TestProxmoxSiteErrors(t *testing.T) {
	runDiagCases(t, []diagCase{
		{
			name: "a complete block",
			yaml: `cloud: {name: demo, domain: demo.net}
sites:
  a:
    engine: proxmox
    nodes: [pve1]
    proxmox: {endpoint: 'https://pve1.demo.net:8006', token-id: 'holdfast@pve!apply', secret-file: pve.secret}
  b:
    engine: proxmox
    nodes: [pve1]
    proxmox: {endpoint: 'http://127.0.0.1:8006', token-id: 'root@pam!x', secret-env: PVE_SECRET, network: vxlan, peers: [10.0.0.1, 10.0.0.2]}
`,
		},
		{
			name: "missing and misplaced",
			yaml: `cloud: {name: demo, domain: demo.net}
sites:
  a: {engine: proxmox, nodes: [pve1]}
  b:
    engine: local
    nodes: [n1]
    proxmox: {endpoint: 'https://pve1.demo.net:8006', token-id: 'holdfast@pve!apply', secret-env: S}
`,
			want: []string{
				`spec.yaml:3:15: site "a": engine proxmox needs a proxmox block (endpoint, token-id, secret-file or secret-env)`,
				`spec.yaml:7:14: site "b": proxmox is for sites with engine: proxmox (this one has engine: local)`,
			},
		},
		{
			name: "every field wrong",
			yaml: `cloud: {name: demo, domain: demo.net}
sites:
  a:
    engine: proxmox
    nodes: [pve1]
    proxmox:
      endpoint: http://pve1.demo.net:8006
      token-id: holdfast
      secret-file: f
      secret-env: S
      fingerprint: AB:CD
      sdn-zone: HoldfastZone
      bridge: "vmbr 0"
      pool: "a pool"
      network: vxlan
`,
			want: []string{
				`spec.yaml:7:17: site "a": proxmox endpoint "http://pve1.demo.net:8006" is plain http: the API token would cross the network in clear (use https; http is allowed only on this host)`,
				`spec.yaml:8:17: site "a": proxmox token-id "holdfast" is not an API token ID (user@realm!name)`,
				`spec.yaml:10:19: site "a": proxmox has both secret-file and secret-env; give one`,
				`spec.yaml:11:20: site "a": proxmox fingerprint must be 32 hex pairs separated by colons (as ` + "`pvenode cert info`" + ` prints it)`,
				`spec.yaml:12:17: site "a": proxmox sdn-zone "HoldfastZone" must be 2-8 lowercase letters and digits, starting with a letter`,
				`spec.yaml:13:15: site "a": proxmox bridge "vmbr 0" is not an interface name`,
				`spec.yaml:14:13: site "a": proxmox pool "a pool" is not a pool ID`,
				`spec.yaml:15:16: site "a": proxmox network vxlan needs peers (the nodes' addresses)`,
			},
		},
		{
			name: "per-node templates",
			yaml: `cloud: {name: demo, domain: demo.net}
templates: {debian: {image: debian-12}}
sites:
  a:
    engine: proxmox
    nodes: [pve1, pve2, pve3]
    proxmox:
      endpoint: 'https://pve1.demo.net:8006'
      token-id: 'holdfast@pve!apply'
      secret-env: S
      templates: {debian: {pve2: 9001, pve3: debian-12-pve3}}
`,
		},
		{
			name: "per-node templates wrong",
			yaml: `cloud: {name: demo, domain: demo.net}
templates: {debian: {image: debian-12}}
sites:
  a:
    engine: proxmox
    nodes: [pve1, pve2, pve3]
    proxmox:
      endpoint: 'https://pve1.demo.net:8006'
      token-id: 'holdfast@pve!apply'
      secret-env: S
      templates: {ubuntu: {pve2: 9001}, debian: {pve4: 9002, pve2: ""}}
`,
			want: []string{
				`spec.yaml:11:18: site "a": proxmox templates: "ubuntu" is not a template (templates: debian)`,
				`spec.yaml:11:18: site "a": proxmox templates: debian on pve2 names no VM (a template VM's name or VMID)`,
				`spec.yaml:11:18: site "a": proxmox templates: debian: "pve4" is not a node of the site (nodes: pve1, pve2, pve3)`,
			},
		},
		{
			// A linked clone cannot leave its template's node on local
			// storage, and per-node copies say the storage is local.
			name: "linked clones need a copy on every node",
			yaml: `cloud: {name: demo, domain: demo.net}
templates: {debian: {image: debian-12}}
sites:
  a:
    engine: proxmox
    nodes: [pve1, pve2, pve3]
    proxmox:
      endpoint: 'https://pve1.demo.net:8006'
      token-id: 'holdfast@pve!apply'
      secret-env: S
      clone: linked
      templates:
        debian: {pve2: 9001}
`,
			want: []string{
				`spec.yaml:13:9: site "a": proxmox templates: debian has no copy on pve1, pve3; with clone: linked every node needs one (name the template's own node too): PVE cannot move a linked clone off its template's node on local storage`,
			},
		},
		{
			name: "metadata-url",
			yaml: `cloud: {name: demo, domain: demo.net}
sites:
  a:
    engine: proxmox
    nodes: [pve1]
    proxmox: {endpoint: 'https://pve1.demo.net:8006', token-id: 'holdfast@pve!apply', secret-env: S, metadata-url: 'http://192.168.100.1:8442/'}
  b:
    engine: proxmox
    nodes: [pve1]
    proxmox:
      endpoint: 'https://pve1.demo.net:8006'
      token-id: 'holdfast@pve!apply'
      secret-env: S
      metadata-url: 'ftp://192.168.100.1'
  c:
    engine: proxmox
    nodes: [pve1]
    proxmox:
      endpoint: 'https://pve1.demo.net:8006'
      token-id: 'holdfast@pve!apply'
      secret-env: S
      metadata-url: 'http://192.168.100.1:8442/seed'
  d:
    engine: proxmox
    nodes: [pve1]
    proxmox:
      endpoint: 'https://pve1.demo.net:8006'
      token-id: 'holdfast@pve!apply'
      secret-env: S
      metadata-url: 'http://meta;s=x:8442'
`,
			want: []string{
				`spec.yaml:14:21: site "b": proxmox metadata-url "ftp://192.168.100.1" must start with http:// or https://`,
				`spec.yaml:22:21: site "c": proxmox metadata-url "http://192.168.100.1:8442/seed" is not a URL like http://192.168.100.1:8442 (scheme, host and port, no path)`,
				`spec.yaml:30:21: site "d": proxmox metadata-url "http://meta;s=x:8442"`,
			},
		},
		{
			name: "parallel out of range",
			yaml: `cloud: {name: demo, domain: demo.net}
sites:
  a:
    engine: proxmox
    nodes: [pve1]
    proxmox: {endpoint: 'https://pve1.demo.net:8006', token-id: 'holdfast@pve!apply', secret-env: S, parallel: 0}
`,
			want: []string{`spec.yaml:6:112: site "a".proxmox.parallel: 0 is out of range 1-64`},
		},
	})
}

func TestSpreadErrors(t *testing.T) {
	const head = `cloud: {name: demo, domain: demo.net}
sites:
  a: {engine: local, nodes: [n1, n2, n3]}
  b: {engine: local, nodes: [m1]}
zones:
  srv: {type: service}
roles:
  r: {vmids: 100-199}
`
	runDiagCases(t, []diagCase{
		{
			name: "three members on three nodes",
			yaml: head + `instances:
  db1: {site: a, role: r, zone: srv, spread: db}
  db2: {site: a, role: r, zone: srv, spread: db, node: n2}
  db3: {site: a, role: r, zone: srv, spread: db}
`,
		},
		{
			name: "pinned together, too many, two sites",
			yaml: head + `instances:
  db1: {site: a, role: r, zone: srv, spread: db, node: n1}
  db2: {site: a, role: r, zone: srv, spread: db, node: n1}
  db3: {site: a, role: r, zone: srv, spread: db}
  db4: {site: a, role: r, zone: srv, spread: db}
  w1: {site: a, role: r, zone: srv, spread: web}
  w2: {site: b, role: r, zone: srv, spread: web}
`,
			want: []string{
				`spec.yaml:10:46: spread "db" has 4 members (db1, db2, db3, db4) but site "a" has 3 nodes; each member needs its own node`,
				`spec.yaml:11:56: instance "db2": spread "db": node "n1" already holds member "db1"`,
				`spec.yaml:15:45: instance "w2": spread "web" has members at sites "a" and "b"; a spread group lives at one site`,
			},
		},
	})
}

// TestProxmoxSettings: the block compiles to the engine's settings with
// its defaults, written under "proxmox" in the state, and round-trips
// through spec's encoder under the same key.
func TestProxmoxSettings(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "spec.yaml")
	const yaml = `cloud: {name: Demo-1, domain: demo.net}
sites:
  a:
    engine: proxmox
    nodes: [pve1, pve2]
    proxmox:
      endpoint: https://pve1.demo.net:8006/
      token-id: holdfast@pve!apply
      secret-file: pve.secret
      fingerprint: "ab:cd:ef:01:23:45:67:89:ab:cd:ef:01:23:45:67:89:ab:cd:ef:01:23:45:67:89:ab:cd:ef:01:23:45:67:89"
      templates: {debian: {pve2: debian-pve2}}
    description: north
templates:
  debian: {image: "9000"}
`
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	s, st, _, diags := compile.File(path, compile.Allocations{})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	got, ok := st.Sites[0].Settings.(*proxmox.Config)
	if !ok {
		t.Fatalf("settings are %T", st.Sites[0].Settings)
	}
	want := proxmox.Config{
		Endpoint: "https://pve1.demo.net:8006", TokenID: "holdfast@pve!apply", SecretFile: filepath.Join(dir, "pve.secret"),
		Fingerprint: "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89",
		Network:     "vlan", Bridge: "vmbr0", SDNZone: "hfdemo1", Clone: "full", Parallel: 4,
		Templates: map[string]map[string]string{"debian": {"pve2": "debian-pve2"}},
	}
	if !reflect.DeepEqual(*got, want) {
		t.Errorf("settings:\n got %+v\nwant %+v", *got, want)
	}
	b, err := json.Marshal(st.Sites[0])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(b), `{"name":"a","engine":"proxmox","nodes":["pve1","pve2"],"proxmox":{"endpoint":"https://pve1.demo.net:8006","token_id":"holdfast@pve!apply"`) {
		t.Errorf("the state's site does not carry the settings under \"proxmox\": %s", b)
	}
	if attrs := st.Resources[0].Attrs; attrs["sdn_zone"] != "hfdemo1" || attrs["bridge"] != "vmbr0" || attrs["network"] != "vlan" || attrs["endpoint"] != want.Endpoint {
		t.Errorf("site resource attributes %v lack the settings the engine acts on", attrs)
	}

	out, err := spec.EncodeFile(s)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "    proxmox:\n      endpoint: https://pve1.demo.net:8006/\n") || !strings.Contains(string(out), "pve2: debian-pve2\n    description: north\n") {
		t.Errorf("the block is not written back under proxmox:, before the description:\n%s", out)
	}
	back, diags := spec.Parse(path, out)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	if b := back.Sites["a"].Block.(*proxmox.Block); b.TokenID != "holdfast@pve!apply" || b.Templates["debian"]["pve2"] != "debian-pve2" {
		t.Errorf("read back as %+v", b)
	}
}
