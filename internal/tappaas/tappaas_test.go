package tappaas

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/spec"
)

// fixtures holds TAPPaaS's real files, unchanged (testdata/tappaas/NOTICE.md
// says where from); tests fail, not skip, without them.
const fixtures = "testdata/tappaas"

func fixtureDir(t testing.TB) string {
	t.Helper()
	if fi, err := os.Stat(fixtures); err != nil || !fi.IsDir() {
		t.Fatalf("TAPPaaS fixtures not found at %s: %v", fixtures, err)
	}
	return fixtures
}

func moduleFiles(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(fixtureDir(t), "modules", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no module files in %s/modules: %v", fixtures, err)
	}
	return files
}

func importFixture(t testing.TB) (*spec.Spec, *Report) {
	t.Helper()
	s, r, err := Import(filepath.Join(fixtureDir(t), "zones.json"), moduleFiles(t), Options{})
	if err != nil {
		t.Fatalf("import of the TAPPaaS fixture failed:\n%v", err)
	}
	return s, r
}

// readJSON decodes a fixture file generically, independent of the importer.
func readJSON(t testing.TB, path string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return m
}

// num reads a TAPPaaS number, written either as a JSON number or a string.
func num(t testing.TB, v any) int {
	t.Helper()
	n, err := strconv.Atoi(fmt.Sprint(v))
	if err != nil {
		t.Fatalf("%v is not a number", v)
	}
	return n
}

func strs(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

func TestZonesMatchFile(t *testing.T) {
	s, _ := importFixture(t)
	file := readJSON(t, filepath.Join(fixtures, "zones.json"))
	n := 0
	for name, raw := range file {
		if strings.HasPrefix(name, "_") {
			continue
		}
		n++
		t.Run(name, func(t *testing.T) {
			want := raw.(map[string]any)
			z := s.Zones[name]
			if z == nil {
				t.Fatalf("zone %s missing", name)
			}
			if z.VLAN == nil || *z.VLAN != num(t, want["vlantag"]) {
				t.Errorf("vlan = %v, want %v", z.VLAN, want["vlantag"])
			}
			if z.CIDR != want["ip"] {
				t.Errorf("cidr = %q, want %q", z.CIDR, want["ip"])
			}
			if z.SubID == nil || *z.SubID != num(t, want["subId"]) {
				t.Errorf("sub-id = %v, want %v", z.SubID, want["subId"])
			}
			if spec.TypeIDs[z.Type] != num(t, want["typeId"]) || !strings.EqualFold(z.Type, want["type"].(string)) {
				t.Errorf("type = %s, want %v (typeId %v)", z.Type, want["type"], want["typeId"])
			}
			if !slices.Equal(z.AccessTo, strs(want["access-to"])) {
				t.Errorf("access-to = %v, want %v", z.AccessTo, want["access-to"])
			}
			if !slices.Equal(z.PinholeAllowedFrom, strs(want["pinhole-allowed-from"])) {
				t.Errorf("pinhole-allowed-from = %v, want %v", z.PinholeAllowedFrom, want["pinhole-allowed-from"])
			}
			if z.State != strings.ToLower(want["state"].(string)) {
				t.Errorf("state = %q, want %v lowercased", z.State, want["state"])
			}
			if z.Uplink != want["bridge"] || z.Description != want["description"] {
				t.Errorf("uplink, description = %q, %q; want %q, %q", z.Uplink, z.Description, want["bridge"], want["description"])
			}
			if ssid, _ := want["SSID"].(string); z.SSID != ssid {
				t.Errorf("ssid = %q, want %q", z.SSID, ssid)
			}
			if overlay := want["type"] == "Overlay"; overlay != (z.DHCP != nil && !*z.DHCP) {
				t.Errorf("dhcp = %v for a zone of type %v", z.DHCP, want["type"])
			}
			if p := z.Pos; !strings.HasSuffix(p.File, "zones.json") || p.Line < 2 {
				t.Errorf("zone position %s does not point into zones.json", p)
			}
		})
	}
	if len(s.Zones) != n {
		t.Errorf("imported %d zones, the file has %d", len(s.Zones), n)
	}
}

func TestIsolatedZones(t *testing.T) {
	s, r := importFixture(t)
	var isolated []string
	for _, name := range spec.SortedNames(s.Zones) {
		if s.Zones[name].Isolated {
			isolated = append(isolated, name)
		}
	}
	if want := []string{"iotCams", "iotUntrust"}; !slices.Equal(isolated, want) {
		t.Errorf("isolated zones = %v, want %v", isolated, want)
	}
	if !hasEntry(r.Notes, "zones.json", "_README.isolation_invariant.rule", "iotCams, iotUntrust") {
		t.Errorf("the report does not note the isolated zones:\n%s", r)
	}
}

func TestFixtureValidates(t *testing.T) {
	s, _ := importFixture(t)
	diags := spec.Validate(s)
	if diags.HasErrors() {
		t.Fatalf("imported spec does not validate:\n%v", diags.Err())
	}
	// The one expected warning points into the module file that causes it.
	for _, d := range diags {
		t.Logf("%s", d)
	}
	if len(diags) != 1 || !strings.HasSuffix(diags[0].Pos.File, "nextcloud.json") || diags[0].Pos.Line == 0 ||
		!strings.Contains(diags[0].Message, `zone "srv" is inactive`) {
		t.Errorf("want exactly the warning about nextcloud in inactive zone srv, at nextcloud.json:line:col; got %v", diags)
	}
}

func TestRoundTrip(t *testing.T) {
	s, _ := importFixture(t)
	dir := t.TempDir()
	if err := spec.Write(s, dir); err != nil {
		t.Fatal(err)
	}
	back, diags := spec.Load(dir)
	if diags.HasErrors() {
		t.Fatalf("written spec does not load:\n%v", diags.Err())
	}
	if diags := spec.Validate(back); diags.HasErrors() {
		t.Fatalf("reloaded spec does not validate:\n%v", diags.Err())
	}
	a, err := spec.Encode(s)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := spec.Encode(back)
	if !reflect.DeepEqual(a, b) {
		for name := range a {
			if string(a[name]) != string(b[name]) {
				t.Errorf("%s changed on the round trip:\n--- imported\n%s\n--- reloaded\n%s", name, a[name], b[name])
			}
		}
	}
	if len(back.Zones) != len(s.Zones) || len(back.Instances) != len(s.Instances) {
		t.Errorf("round trip lost objects: %d/%d zones, %d/%d instances", len(back.Zones), len(s.Zones), len(back.Instances), len(s.Instances))
	}
}

// flatModule reads a module file and merges its config blocks into the
// top level, as TAPPaaS's own tooling does.
func flatModule(t *testing.T, path string) map[string]any {
	m := readJSON(t, path)
	if cfg, ok := m["config"].(map[string]any); ok {
		for _, block := range cfg {
			for k, v := range block.(map[string]any) {
				m[k] = v
			}
		}
	}
	return m
}

func TestModulesLand(t *testing.T) {
	s, r := importFixture(t)
	for _, path := range moduleFiles(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			m := flatModule(t, path)
			vmname, isVM := m["vmname"].(string)
			if !isVM {
				if !hasEntry(r.NotMapped, filepath.Base(path), "", "capability provider, no VM") {
					t.Errorf("module without vmname is not reported as a capability provider:\n%s", r)
				}
				for _, in := range s.Instances {
					if in.Pos.File == path {
						t.Errorf("module without vmname became instance %s", in.Name)
					}
				}
				return
			}
			in := s.Instances[vmname]
			if in == nil {
				t.Fatalf("no instance %s", vmname)
			}
			if v, ok := m["vmid"]; ok != (in.VMID != nil) || ok && *in.VMID != num(t, v) {
				t.Errorf("vmid = %v, want %v", in.VMID, v)
			}
			if zone0, _ := m["zone0"].(string); in.NICs()[0].Zone != zone0 {
				t.Errorf("zone = %s, want %s", in.NICs()[0].Zone, zone0)
			}
			if node, _ := m["node"].(string); in.Node != node {
				t.Errorf("node = %q, want %q", in.Node, node)
			}
			if v, ok := m["cores"]; ok != (in.CPUs != nil) || ok && *in.CPUs != num(t, v) {
				t.Errorf("cpus = %v, want %v", in.CPUs, v)
			}
			if v, ok := m["memory"]; ok != (in.Memory != nil) || ok && in.Memory.MiB != int64(num(t, v)) {
				t.Errorf("memory = %v, want %v MiB", in.Memory, v)
			}
			if v, ok := m["diskSize"]; ok != (in.Disk != nil) || ok && in.Disk.String() != v {
				t.Errorf("disk = %v, want %v", in.Disk, v)
			}
			var wantPorts, gotPorts []string
			if ports, ok := m["ports"].([]any); ok {
				for _, p := range ports {
					p := p.(map[string]any)
					wantPorts = append(wantPorts, fmt.Sprintf("%v/%s", p["port"], strings.ToLower(p["protocol"].(string))))
				}
			}
			for _, p := range in.Ports {
				gotPorts = append(gotPorts, fmt.Sprintf("%d/%s", p.Port, p.Proto))
			}
			if !slices.Equal(gotPorts, wantPorts) {
				t.Errorf("ports = %v, want %v", gotPorts, wantPorts)
			}
			// Every rule of the file is either in the spec or in the report.
			for _, kind := range []string{"ingress", "egress"} {
				rules, _ := m[kind].([]any)
				for i, raw := range rules {
					rule := raw.(map[string]any)
					peer, _ := rule["from"].(string)
					got := in.Ingress
					if kind == "egress" {
						peer, _ = rule["to"].(string)
						got = in.Egress
					}
					emitted := slices.ContainsFunc(got, func(r *spec.Rule) bool { return r.From+r.To == peer })
					reported := hasEntry(r.NotMapped, filepath.Base(path), fmt.Sprintf("%s[%d]", kind, i), "not emitted")
					if emitted == reported {
						t.Errorf("%s[%d] (%s): emitted %v, reported %v; want exactly one", kind, i, peer, emitted, reported)
					}
				}
			}
			if desc := m["description"]; in.Description != desc {
				t.Errorf("description = %q, want %q", in.Description, desc)
			}
			if p := in.Pos; p.File != path || p.Line == 0 {
				t.Errorf("instance position %s does not point into %s", p, path)
			}
		})
	}
}

func TestFirewall(t *testing.T) {
	s, r := importFixture(t)
	fw := s.Instances["firewall"]
	if fw == nil {
		t.Fatal("no firewall instance")
	}
	// Ingress from the internet into mgmt, whose pinhole-allowed-from is
	// empty, would fail validation: reported, not emitted.
	for _, rule := range fw.Ingress {
		if rule.From == spec.Internet {
			t.Errorf("internet ingress into mgmt was emitted: %+v", rule)
		}
	}
	if !hasEntry(r.NotMapped, "firewall.json", "ingress[0]", `pinhole from "internet" into zone "mgmt" is not allowed`) {
		t.Errorf("internet ingress is not reported:\n%s", r)
	}
	if !hasEntry(r.NotMapped, "firewall.json", "zone1", `zone1 duplicates zone0 (bridge1 "wan")`) {
		t.Errorf("duplicate zone1 is not reported:\n%s", r)
	}
	if fw.Zone != "mgmt" || !slices.Equal(fw.Trunks, []string{"all"}) || len(fw.Networks) != 0 {
		t.Errorf("firewall NIC = zone %q trunks %v networks %d; want mgmt, [all], one NIC", fw.Zone, fw.Trunks, len(fw.Networks))
	}
	if !fw.HA {
		t.Error("firewall depends on cluster:ha but is not ha")
	}
	tmpl := s.Templates[fw.Template]
	if tmpl == nil || tmpl.Image != "tappaas-firewall.qcow2.zst" || tmpl.CloudInit == nil || *tmpl.CloudInit {
		t.Errorf("firewall template %q = %+v; want image tappaas-firewall.qcow2.zst without cloud-init", fw.Template, tmpl)
	}
	for _, key := range []string{"proxyPort", "proxyAllowedZones"} {
		if !hasEntry(r.NotMapped, "firewall.json", "config.firewall:proxy."+key, "route") {
			t.Errorf("%s is not reported:\n%s", key, r)
		}
	}
}

func TestDependencies(t *testing.T) {
	s, r := importFixture(t)
	// Every dependsOn entry naming a module that is not imported as an
	// instance is reported; those naming one become depends-on.
	for _, path := range moduleFiles(t) {
		m := readJSON(t, path)
		vmname, _ := m["vmname"].(string)
		deps, _ := m["dependsOn"].([]any)
		for i, d := range deps {
			mod, _, _ := strings.Cut(d.(string), ":")
			if mod == "cluster" || mod == moduleName(path) {
				continue
			}
			target := s.Instances[mod]
			if target != nil && !slices.Contains(s.Instances[vmname].DependsOn, mod) {
				t.Errorf("%s: dependsOn %s did not become depends-on %s", path, d, mod)
			}
			if target == nil && !hasEntry(r.NotMapped, filepath.Base(path), fmt.Sprintf("dependsOn[%d]", i), d.(string)) {
				t.Errorf("%s: unknown dependency %s is not reported", path, d)
			}
		}
	}
	if got := s.Instances["hass"].DependsOn; !slices.Equal(got, []string{"backup", "firewall"}) {
		t.Errorf("hass depends-on = %v, want [backup firewall] (firewall once)", got)
	}
	if !hasEntry(r.NotMapped, "identity.json", "dependsOn[2]", "templates:nixos") {
		t.Errorf("templates:nixos is not reported for identity:\n%s", r)
	}
	for name, wantHA := range map[string]bool{"firewall": true, "identity": true, "tappaas-cicd": true, "vaultwarden": true, "hass": false, "nextcloud": false} {
		if s.Instances[name].HA != wantHA {
			t.Errorf("%s: ha = %v, want %v", name, s.Instances[name].HA, wantHA)
		}
	}
}

func TestRolesAndTemplates(t *testing.T) {
	s, r := importFixture(t)
	for name, want := range map[string]string{"foundation": "100-199", "app": "200-999"} {
		if role := s.Roles[name]; role == nil || role.VMIDs.String() != want {
			t.Errorf("role %s = %+v, want vmids %s", name, role, want)
		}
	}
	if len(s.Roles) != 2 {
		t.Errorf("roles = %v, want foundation and app", spec.SortedNames(s.Roles))
	}
	for inst, role := range map[string]string{"firewall": "foundation", "backup": "foundation", "identity": "foundation",
		"tappaas-cicd": "foundation", "hass": "app", "nextcloud": "app", "vaultwarden": "app"} {
		if got := s.Instances[inst].Role; got != role {
			t.Errorf("%s: role %q, want %q", inst, got, role)
		}
	}
	if !hasEntry(r.Notes, "", "vmtag", `role "foundation" gets vmids 100-199`) {
		t.Errorf("roles are not noted:\n%s", r)
	}
	for name, image := range map[string]string{"clone-8080": "8080", "img-haos-ova-17-3": "haos_ova-17.3.qcow2.xz"} {
		if tm := s.Templates[name]; tm == nil || tm.Image != image {
			t.Errorf("template %s = %+v, want image %s", name, tm, image)
		}
	}
	if got := s.Instances["nextcloud"].Template; got != "clone-8080" {
		t.Errorf("nextcloud template = %q, want clone-8080", got)
	}
	if !hasEntry(r.NotMapped, "backup.json", "imageType", `"apt" is not a VM image`) {
		t.Errorf("backup's apt image is not reported:\n%s", r)
	}
}

func TestSite(t *testing.T) {
	s, _ := importFixture(t)
	site := s.Sites[SiteName]
	if site == nil || site.Engine != "proxmox" || !slices.Equal(site.Nodes, []string{"tappaas1", "tappaas3"}) {
		t.Errorf("site = %+v, want engine proxmox, nodes the modules name: tappaas1, tappaas3", site)
	}
	if s.Cloud.Name != DefaultCloud || s.Cloud.Domain != DefaultDomain {
		t.Errorf("cloud = %+v", s.Cloud)
	}
}

func TestOptions(t *testing.T) {
	zones := File{Name: "zones.json", Data: []byte(`{"mgmt": {"type": "Management", "ip": "10.0.0.0/24"}}`)}
	s, r, err := ImportFiles(zones, nil, Options{Cloud: "home", Domain: "home.example.org", Engine: "local"})
	if err != nil {
		t.Fatal(err)
	}
	if s.Cloud.Name != "home" || s.Cloud.Domain != "home.example.org" || s.Sites[SiteName].Engine != "local" {
		t.Errorf("options ignored: cloud %+v, site %+v", s.Cloud, s.Sites[SiteName])
	}
	if !slices.Equal(s.Sites[SiteName].Nodes, []string{DefaultNode}) || !hasEntry(r.Notes, "", "", "no module names a node") {
		t.Errorf("nodes = %v, want the default node, noted", s.Sites[SiteName].Nodes)
	}
	_, _, err = ImportFiles(zones, nil, Options{Cloud: "1bad", Domain: "bad..domain", Engine: "xen"})
	for _, want := range []string{`cloud name "1bad"`, `cloud domain "bad..domain"`, `engine "xen"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not mention %s", err, want)
		}
	}
}

func TestErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		zones   string
		modules map[string]string
		want    []string // substrings, each a file:line:col and message
	}{
		{
			name:  "zones syntax",
			zones: "{\n  \"a\": {\n    \"type\": \"Service\",,\n  }\n}",
			want:  []string{"zones.json:3:23: JSON syntax: invalid character ','"},
		},
		{
			name:    "module syntax",
			zones:   `{}`,
			modules: map[string]string{"m.json": "{\n  \"vmname\": \"m\"\n  \"vmid\": 100\n}"},
			want:    []string{"m.json:3:3: JSON syntax: invalid character '\"' after object key:value pair"},
		},
		{
			name:  "truncated",
			zones: "{\n \"a\": [1, 2\n",
			want:  []string{"zones.json:3:1: JSON syntax: unexpected end of JSON input"},
		},
		{
			name:  "unknown type",
			zones: "{\n  \"lab\": {\"type\": \"Lab\", \"typeId\": \"9\"}\n}",
			want:  []string{`zones.json:2:19: zone "lab": unknown type "Lab"`},
		},
		{
			name:  "non-numeric typeId",
			zones: `{"srv": {"type": "Service", "typeId": "two"}}`,
			want:  []string{`zones.json:1:39: zone "srv": typeId: expected a whole number, got "two"`},
		},
		{
			name:  "invalid zone key",
			zones: "{\n  \"iot_cams\": {\"type\": \"IoT\"}\n}",
			want:  []string{`zones.json:2:3: zone "iot_cams": not a valid name`},
		},
		{
			name: "errors accumulate across files",
			zones: "{\n  \"a\": {\"type\": \"Nope\"},\n  \"b\": {\"type\": \"IoT\", \"subId\": \"x\"},\n" +
				"  \"c\": {\"type\": \"IoT\", \"state\": \"Sleeping\"}\n}",
			modules: map[string]string{"m.json": `{"vmname": "not_valid"}`, "n.json": `[]`},
			want: []string{`zones.json:2:17: zone "a": unknown type "Nope"`, `zones.json:3:33: zone "b": subId`,
				`zones.json:4:33: zone "c": unknown state "Sleeping"`, `m.json:1:12: module "m": vmname "not_valid"`,
				`n.json:1:1: module file: expected an object, got a list`},
		},
		{
			name:  "missing type, null type, field twice",
			zones: "{\n  \"a\": {},\n  \"b\": {\"type\": null},\n  \"c\": {\"type\": \"IoT\", \"vlantag\": 1, \"vlantag\": 2}\n}",
			want: []string{`zones.json:2:3: zone "a": missing type`, `zones.json:3:3: zone "b": missing type`,
				`zones.json:4:38: zone "c": vlantag is given twice`},
		},
		{
			name:    "duplicate vmname",
			zones:   `{}`,
			modules: map[string]string{"a.json": `{"vmname": "x"}`, "b.json": `{"vmname": "x"}`},
			want:    []string{`b.json:1:12: module "b": vmname "x" is also the vmname of module "a"`},
		},
		{
			name:    "setting in header and config",
			zones:   `{}`,
			modules: map[string]string{"a.json": `{"vmname": "x", "cores": 2, "config": {"cluster:vm": {"cores": 4}}}`},
			want:    []string{`a.json:1:55: module "a": cores is given twice (cores and config.cluster:vm.cores)`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mods []File
			for _, name := range slices.Sorted(maps.Keys(tc.modules)) {
				mods = append(mods, File{Name: name, Data: []byte(tc.modules[name])})
			}
			s, r, err := ImportFiles(File{Name: "zones.json", Data: []byte(tc.zones)}, mods, Options{})
			if err == nil {
				t.Fatalf("no error; want %v", tc.want)
			}
			if s != nil || r == nil {
				t.Errorf("on error want a nil spec and a report, got %v, %v", s, r)
			}
			if el := (spec.ErrorList)(nil); !errors.As(err, &el) {
				t.Errorf("error is %T, want spec.ErrorList", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}
			if got := strings.Count(err.Error(), "\n") + 1; got != len(tc.want) {
				t.Errorf("%d errors, want %d:\n%v", got, len(tc.want), err)
			}
		})
	}
}

// TestReported covers input that imports but not completely: each case
// names the report entry it must produce and what must not be emitted.
func TestReported(t *testing.T) {
	zones := `{
  "_README": {"isolation_invariant": {"rule": "Tier-4 zones (cams) never appear in access-to"}},
  "mgmt": {"type": "Management", "typeId": "0", "subId": "0", "vlantag": 0, "ip": "10.0.0.0/24", "bridge": "lan",
           "access-to": ["internet", "cams"], "pinhole-allowed-from": []},
  "srv": {"type": "Service", "typeId": "3", "subId": 10, "vlantag": 210, "ip": "10.2.10.0/24", "bridge": "lan",
          "access-to": ["internet"], "pinhole-allowed-from": ["internet", "mgmt"], "color": "blue"},
  "cams": {"type": "IoT", "typeId": 4, "subId": 30, "vlantag": 430, "ip": "10.4.30.0/24", "access-to": [],
           "pinhole-allowed-from": ["mgmt"], "_comment": "ignored"}
}`
	for _, tc := range []struct {
		name   string
		module string
		path   string // report entry for m.json ("" = none expected)
		reason string
		check  func(*testing.T, *spec.Instance)
	}{
		{"ingress from a module", `{"vmname": "m", "zone0": "srv", "ingress": [{"from": "m", "ports": [80]}, {"from": "alias:x", "ports": [80]}, {"from": "nowhere", "ports": [80]}]}`,
			"ingress[0]", `"m" is a module`, func(t *testing.T, in *spec.Instance) {
				if len(in.Ingress) != 0 {
					t.Errorf("ingress emitted: %v", in.Ingress)
				}
			}},
		{"ingress without ports", `{"vmname": "m", "zone0": "srv", "ingress": [{"from": "internet"}]}`,
			"ingress[0]", "no ports", func(t *testing.T, in *spec.Instance) {
				if len(in.Ingress) != 0 {
					t.Errorf("a rule without ports (every port) was emitted: %v", in.Ingress)
				}
			}},
		{"ingress TCP/UDP range", `{"vmname": "m", "zone0": "srv", "ingress": [{"from": "mgmt", "ports": ["8000:8010", 99999], "protocol": "TCP/UDP"}]}`,
			"ingress[0].ports[1]", "outside 1-65535", func(t *testing.T, in *spec.Instance) {
				if len(in.Ingress) != 2 || in.Ingress[0].Proto != "tcp" || in.Ingress[1].Proto != "udp" ||
					in.Ingress[0].Ports.Strings()[0] != "8000-8010" || len(in.Ingress[0].Ports) != 1 {
					t.Errorf("want tcp and udp rules for 8000-8010 only, got %+v %+v", in.Ingress[0], in.Ingress[1])
				}
			}},
		{"egress into isolated zone", `{"vmname": "m", "zone0": "srv", "egress": [{"to": "cams", "ports": [554]}, {"to": "internet", "ports": [443], "protocol": "UDP"}]}`,
			"egress[0]", `egress into zone "cams" is not allowed`, func(t *testing.T, in *spec.Instance) {
				if len(in.Egress) != 1 || in.Egress[0].To != "internet" || in.Egress[0].Proto != "udp" {
					t.Errorf("egress = %+v, want only internet/udp", in.Egress)
				}
			}},
		{"second NIC", `{"vmname": "m", "zone0": "srv", "trunks0": "mgmt;cams", "zone1": "mgmt", "bridge1": "wan", "trunks1": "NONE"}`,
			"bridge1", `bridge "wan" is not zone "mgmt"'s bridge ("lan")`, func(t *testing.T, in *spec.Instance) {
				if len(in.Networks) != 2 || in.Networks[1].Zone != "mgmt" || !slices.Equal(in.Networks[0].Trunks, []string{"mgmt", "cams"}) || in.Zone != "" {
					t.Errorf("networks = %+v, zone %q; want srv (trunks mgmt, cams) and mgmt", in.Networks, in.Zone)
				}
			}},
		{"no zone0", `{"vmname": "m", "zone1": "srv"}`, "", "", func(t *testing.T, in *spec.Instance) {
			if len(in.Networks) != 2 || in.Networks[0].Zone != "mgmt" || in.Networks[1].Zone != "srv" {
				t.Errorf("networks = %+v, want TAPPaaS's default mgmt, then srv", in.Networks)
			}
		}},
		{"port range and ICMP port", `{"vmname": "m", "ports": [{"port": "8000:8010"}, {"port": 53, "protocol": "ICMP"}, {"port": "53", "protocol": "TCP/UDP"}]}`,
			"ports[0]", "port range 8000-8010", func(t *testing.T, in *spec.Instance) {
				if len(in.Ports) != 2 || in.Ports[0].Port != 53 || in.Ports[1].Proto != "udp" {
					t.Errorf("ports = %+v, want 53/tcp and 53/udp", in.Ports)
				}
			}},
		{"bad sizes", `{"vmname": "m", "cores": 0, "memory": "lots", "diskSize": "32"}`, "diskSize", "needs a unit",
			func(t *testing.T, in *spec.Instance) {
				if in.CPUs != nil || in.Memory != nil || in.Disk != nil {
					t.Errorf("bad sizes were mapped: %v %v %v", in.CPUs, in.Memory, in.Disk)
				}
			}},
		{"vmtag without role", `{"vmname": "m", "vmid": 5000, "vmtag": "TAPPaaS"}`, "", "", func(t *testing.T, in *spec.Instance) {
			if in.Role != "module" {
				t.Errorf("role = %q, want module", in.Role)
			}
		}},
		{"unknown module key", `{"vmname": "m", "flux": 1, "config": {"cluster:vm": {"bios": "ovmf"}}}`,
			"config.cluster:vm.bios", "VM firmware", nil},
		{"unknown dependency form", `{"vmname": "m", "dependsOn": ["nocolon", 7, "cluster:ha"]}`, "dependsOn[1]", "not of the form",
			func(t *testing.T, in *spec.Instance) {
				if !in.HA || len(in.DependsOn) != 0 {
					t.Errorf("ha = %v, depends-on = %v", in.HA, in.DependsOn)
				}
			}},
		{"archived", `{"vmname": "m", "status": "archived"}`, "status", "not imported", func(t *testing.T, in *spec.Instance) {
			if in != nil {
				t.Errorf("archived module imported as an instance")
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, r, err := ImportFiles(File{Name: "zones.json", Data: []byte(zones)}, []File{{Name: "m.json", Data: []byte(tc.module)}}, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if tc.path != "" && !hasEntry(r.NotMapped, "m.json", tc.path, tc.reason) {
				t.Errorf("no report entry m.json: %s: ...%s...; report:\n%s", tc.path, tc.reason, r)
			}
			if tc.check != nil {
				tc.check(t, s.Instances["m"])
			}
			if diags := spec.Validate(s); diags.HasErrors() {
				t.Errorf("imported spec does not validate:\n%v", diags.Err())
			}
			if !s.Zones["cams"].Isolated || s.Zones["srv"].Isolated {
				t.Errorf("isolation: cams %v, srv %v", s.Zones["cams"].Isolated, s.Zones["srv"].Isolated)
			}
			if !hasEntry(r.NotMapped, "zones.json", "srv.typeId", "does not match type service") {
				t.Errorf("typeId mismatch not reported:\n%s", r)
			}
			if !hasEntry(r.NotMapped, "zones.json", "srv.color", "unknown zone field") {
				t.Errorf("unknown zone field not reported:\n%s", r)
			}
			if strings.Contains(r.String(), "_comment") {
				t.Errorf("'_' keys must be ignored silently:\n%s", r)
			}
		})
	}
}

func TestVMIDRanges(t *testing.T) {
	for _, tc := range []struct {
		name string
		ids  map[string][]int
		want string // role=range ... sorted by role, or "!" and part of the reason
	}{
		{"fixture", map[string][]int{"foundation": {110, 130, 140}, "app": {210, 340, 610}}, "app=200-999 foundation=100-199"},
		{"no ids", map[string][]int{"b": nil, "a": nil}, "a=100-199 b=200-299"},
		{"after the others", map[string][]int{"x": {1500}, "y": nil}, "x=1500-1999 y=2000-2099"},
		{"last at least 100 wide", map[string][]int{"x": {999}}, "x=900-999"},
		{"thousand boundary", map[string][]int{"x": {1000}}, "x=1000-1999"},
		{"same start", map[string][]int{"a": {110}, "b": {150}}, "!both start at 100"},
		{"interleaved", map[string][]int{"a": {110, 250}, "b": {210}}, "!vmid 250 of role a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ranges, why := vmidRanges(tc.ids)
			if strings.HasPrefix(tc.want, "!") {
				if !strings.Contains(why, tc.want[1:]) {
					t.Errorf("why = %q, want it to contain %q (ranges %v)", why, tc.want[1:], ranges)
				}
				return
			}
			var got []string
			for _, name := range spec.SortedNames(ranges) {
				got = append(got, name+"="+ranges[name].String())
			}
			if strings.Join(got, " ") != tc.want || why != "" {
				t.Errorf("got %v (%s), want %s", got, why, tc.want)
			}
		})
	}
}

func TestVMIDFallback(t *testing.T) {
	mods := []File{
		{Name: "a.json", Data: []byte(`{"vmname": "a", "vmid": 110, "vmtag": "TAPPaaS,Foundation"}`)},
		{Name: "b.json", Data: []byte(`{"vmname": "b", "vmid": 150, "vmtag": "TAPPaaS,App"}`)},
	}
	s, r, err := ImportFiles(File{Name: "zones.json", Data: []byte(`{"mgmt": {"type": "Management"}}`)}, mods, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Roles) != 1 || s.Roles["module"] == nil || s.Roles["module"].VMIDs.String() != "100-999999" {
		t.Errorf("roles = %v, want only module 100-999999", spec.SortedNames(s.Roles))
	}
	if s.Instances["a"].Role != "module" || s.Instances["b"].Role != "module" {
		t.Errorf("instances keep their vmtag roles")
	}
	if !hasEntry(r.NotMapped, "a.json", "vmtag", "both start at 100") {
		t.Errorf("fallback not reported:\n%s", r)
	}
	if diags := spec.Validate(s); diags.HasErrors() {
		t.Error(diags.Err())
	}
}

func TestTemplateNames(t *testing.T) {
	im := &importer{spec: &spec.Spec{Templates: map[string]*spec.Template{}}}
	for _, tc := range []struct{ typ, image, want string }{
		{"clone", "8080", "clone-8080"},
		{"img", "haos_ova-17.3.qcow2.xz", "img-haos-ova-17-3"},
		{"img", "tappaas-firewall.qcow2.zst", "img-tappaas-firewall"},
		{"img", "OPNsense-25.7-nano-amd64.img.bz2", "img-opnsense-25-7-nano-amd64"},
		{"iso", "ubuntu-24.04-live-server-amd64.iso", "iso-ubuntu-24-04-live-server-amd64"},
		{"img", ".qcow2", "img-qcow2"},
		{"img", strings.Repeat("x", 100), "img-" + strings.Repeat("x", 59)},
	} {
		if got := im.templateName(tc.typ, tc.image); got != tc.want || !validName(got) {
			t.Errorf("templateName(%s, %s) = %s, want %s", tc.typ, tc.image, got, tc.want)
		}
	}
	im.spec.Templates["clone-a-b"] = &spec.Template{}
	if got := im.templateName("clone", "a.b"); got != "clone-a-b-2" {
		t.Errorf("a taken name gets %s, want clone-a-b-2", got)
	}
}

func TestReportFormats(t *testing.T) {
	r := &Report{}
	r.notMapped("m.json", "config.cluster:vm.bios", "VM firmware")
	r.notMapped("c.json", "", "capability provider")
	r.note("zones.json", "_README", "isolated")
	if got, want := r.String(), "m.json: config.cluster:vm.bios: VM firmware\nc.json: capability provider\nnote: zones.json: _README: isolated\n"; got != want {
		t.Errorf("String() =\n%s\nwant\n%s", got, want)
	}
	data, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"not-mapped":[{"file":"m.json","path":"config.cluster:vm.bios","reason":"VM firmware"},{"file":"c.json","path":"","reason":"capability provider"}],"notes":[{"file":"zones.json","path":"_README","reason":"isolated"}]}`; string(data) != want {
		t.Errorf("JSON = %s\nwant %s", data, want)
	}
}

func TestDeterministic(t *testing.T) {
	s1, r1 := importFixture(t)
	a, _ := spec.Encode(s1)
	for range 5 {
		s2, r2 := importFixture(t)
		b, _ := spec.Encode(s2)
		if !reflect.DeepEqual(a, b) || r1.String() != r2.String() {
			t.Fatal("the same input gave different output")
		}
	}
}

// hasEntry reports whether an entry's file ends with file, its path equals
// path (any path when path is "" and file is ""), and its reason contains
// reason.
func hasEntry(es []Entry, file, path, reason string) bool {
	return slices.ContainsFunc(es, func(e Entry) bool {
		return strings.HasSuffix(e.File, file) && (e.Path == path || file == "" && path == "") && strings.Contains(e.Reason, reason)
	})
}

func TestUnreadableFiles(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"vmname": "x_y"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, r, err := Import(filepath.Join(dir, "missing.json"), []string{filepath.Join(dir, "gone.json"), bad}, Options{})
	if err == nil || r == nil {
		t.Fatal("want an error and a report")
	}
	// Every problem in one run: both missing files and the bad module.
	for _, want := range []string{"missing.json: cannot read: no such file", "gone.json: cannot read: no such file", `bad.json:1:12: module "bad": vmname "x_y"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not contain %q:\n%v", want, err)
		}
	}
}
