package spec

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// fullSpec sets every field of every spec type at least once (the test
// below checks that), with values that need care in YAML: strings that
// look like numbers or booleans, a multi-line description, vlan 0.
const fullSpec = `
cloud:
  name: demo
  domain: demo.example.org
  description: |
    Two sites.
    Second line: with a colon.
sites:
  north:
    engine: lab
    nodes: [pve1, pve2]
    peer: south
    lab:
      endpoint: https://pve1.demo.example.org:8006
      mode: slow
      slots: 8
      hosts: [pve1, pve2]
    description: "true"
  south:
    engine: local
    nodes: [n1]
    peer: north
    ingress:
      address: 203.0.113.7
      forward:
        - {ports: [80, 443], to: fw, proto: tcp, description: "443"}
      host-ports: [22, 2222]
acme:
  directory: https://acme.demo.example.org/dir
  email: ops@demo.example.org
  ca-roots: roots.pem
zones:
  mgmt:
    type: management
    sub-id: 0
    vlan: 0
    cidr: 10.0.0.0/24
    gateway: 10.0.0.1
    dhcp: true
    dhcp-start: 100
    dhcp-end: 200
    access-to: [internet, all]
    pinhole-allowed-from: []
    state: manual
    sites: [north]
    uplink: lan
    ssid: "<MGMT_SSID>"
    description: "123"
  cams:
    type: iot
    sub-id: 30
    isolated: true
    isolate-instances: true
    pinhole-allowed-from: [mgmt, internet]
  vpn:
    type: overlay
    dhcp: false
    cidr: 100.64.0.0/10
  acme--lan:
    tenant: acme
    type: guest
    vlan: 3000
    cidr: 10.128.0.0/24
    access-to: [internet]
roles:
  infra:
    vmids: 100-199
    ip: vmid
    description: "a: b"
  one:
    vmids: 5000
  tenants:
    vmids: 10000-19999
flavors:
  small:
    cpus: 1
    memory: 512M
    disk: 8G
  big:
    cpus: 16
    memory: 65536
    disk: 2T
templates:
  debian:
    image: "9000"
    os: debian
    cloud-init: false
    description: Debian 12
groups:
  admins:
    can-access: [all]
    description: operators
  users: {}
overlay:
  cidr: 100.64.0.0/10
  domain: mesh.demo.example.org
  lighthouses:
    - fw
    - {address: "lh.example.net:4242", overlay-ip: 100.64.0.1}
  port: 4243
  description: the mesh
dns:
  servers: [dns]
  upstreams: [1.1.1.1, 9.9.9.9]
instances:
  fw:
    site: north
    node: pve1
    role: infra
    vmid: 110
    zone: mgmt
    ip: 10.0.0.10
    trunks: [all]
    flavor: small
    template: debian
    cpus: 2
    memory: 1536M
    disk: 40G
    groups: [admins]
    overlay-ip: 100.64.0.10
    ports:
      - 443
      - 53/udp
      - {port: 8443, proto: tcp, description: admin UI}
    ingress:
      - {from: internet, ports: [80, 443, "8000-8100"], proto: tcp, description: web}
      - {from: cams, proto: icmp}
    egress:
      - {to: cams, ports: 554, description: rtsp}
    depends-on: [dns]
    provides: [firewall, proxy]
    command: [/usr/sbin/nginx, -g, "daemon off;"]
    ha: true
    spread: web
    replicate: true
    description: The firewall.
  dns:
    role: infra
    networks:
      - {zone: mgmt, ip: 10.0.0.11, trunks: [cams]}
      - {zone: cams}
  acme--web:
    tenant: acme
    site: south
    role: tenants
    zone: acme--lan
    power: stopped
    reboot: 2
    rebuild: 1
    ssh-keys:
      - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g alice@laptop
      - "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj9A bob: #1"
tenancy:
  site: south
  role: tenants
  zone-type: guest
  cidr: 10.128.0.0/16
  prefix: 24
  vlans: 3000-3099
  access: []
  description: tenant networks
routes:
  www:
    host: www.demo.example.org
    proto: https
    port: 8443
    certificate: {cert-file: www.pem, key-file: www.key}
    health-path: /healthz
    frontends: [fw]
    backends: [dns]
    backend-port: 8080
    failover: [fw]
    allowed-from: [internet, mgmt]
`

func loadString(t *testing.T, src string) *Spec {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "spec.yaml"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	s, diags := Load(dir)
	if diags.HasErrors() {
		t.Fatalf("load hand-written spec:\n%v", diags.Err())
	}
	return s
}

func TestEncodeRoundTrip(t *testing.T) {
	orig := loadString(t, fullSpec)
	dir := t.TempDir()
	if err := Write(orig, dir); err != nil {
		t.Fatal(err)
	}
	back, diags := Load(dir)
	if diags.HasErrors() {
		files, _ := Encode(orig)
		t.Fatalf("reload written spec:\n%v\n%s", diags.Err(), files["cloud.yaml"])
	}
	if diffs := specDiff(orig, back); len(diffs) > 0 {
		t.Errorf("round trip changed the spec:\n%s", strings.Join(diffs, "\n"))
	}
	// The written form is a fixed point: encoding the reloaded spec gives
	// the same bytes.
	a, _ := Encode(orig)
	b, _ := Encode(back)
	if !reflect.DeepEqual(a, b) {
		t.Errorf("re-encoding the reloaded spec gives different bytes")
	}
}

func TestEncodeCoversEveryField(t *testing.T) {
	// If a field is added to a spec type, fullSpec must exercise it, or the
	// round trip above proves nothing about it.
	s := loadString(t, fullSpec)
	set := map[string]bool{}
	markSet(reflect.ValueOf(s).Elem(), set)
	var missing []string
	for _, typ := range []reflect.Type{reflect.TypeFor[Spec](), reflect.TypeFor[Cloud](), reflect.TypeFor[Site](),
		reflect.TypeFor[Zone](), reflect.TypeFor[Role](), reflect.TypeFor[Flavor](), reflect.TypeFor[Template](),
		reflect.TypeFor[Group](), reflect.TypeFor[Instance](), reflect.TypeFor[NIC](), reflect.TypeFor[Port](),
		reflect.TypeFor[Rule](), reflect.TypeFor[Route](), reflect.TypeFor[Ingress](), reflect.TypeFor[Forward](),
		reflect.TypeFor[ACME](), reflect.TypeFor[Certificate]()} {
		for _, fi := range infoFor(typ).fields {
			if k := typ.Name() + "." + fi.key; !set[k] {
				missing = append(missing, k)
			}
		}
	}
	if len(missing) > 0 {
		t.Errorf("fullSpec leaves these fields unset: %s", strings.Join(missing, ", "))
	}
}

func markSet(v reflect.Value, set map[string]bool) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			markSet(v.Elem(), set)
		}
	case reflect.Map:
		for _, k := range v.MapKeys() {
			markSet(v.MapIndex(k), set)
		}
	case reflect.Slice:
		for i := range v.Len() {
			markSet(v.Index(i), set)
		}
	case reflect.Struct:
		for _, fi := range infoFor(v.Type()).fields {
			fv := v.Field(fi.index)
			if !isEmptyValue(fv) {
				set[v.Type().Name()+"."+fi.key] = true
				markSet(fv, set)
			}
		}
	}
}

func TestEncodedFilesListed(t *testing.T) {
	// Write removes stale files by this list; a section file missing from
	// it would be left behind when its section empties.
	for _, file := range sectionFiles {
		if !slices.Contains(EncodedFiles, file) {
			t.Errorf("%s is not in EncodedFiles", file)
		}
	}
}

func TestEncodeShape(t *testing.T) {
	files, err := Encode(loadString(t, fullSpec))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(SortedNames(files), " "), "cloud.yaml instances.yaml routes.yaml zones.yaml"; got != want {
		t.Errorf("files = %s, want %s", got, want)
	}
	for file, want := range map[string][]string{
		"cloud.yaml": {
			"cloud:\n  name: demo\n  domain: demo.example.org\n", // struct field order
			"\nsites:\n  north:\n",                               // blank line between sections
			"\n  south:\n",                                       // and between entries
			"    vmids: 100-199\n",                               // Range
			"    vmids: 5000\n",
			"    memory: 512M\n", // Size
			"    memory: 64G\n",
			"    disk: 2T\n",
			`    image: "9000"` + "\n", // a numeric string stays a string
			`    description: "true"` + "\n",
			"    nodes: [pve1, pve2]\n", // lists of names on one line
			"  users: {}\n",             // an entry with no fields is kept
			"\ntenancy:\n  site: south\n",
			"  access: []\n", // an explicit empty list differs from the default
		},
		"zones.yaml": {
			"    vlan: 0\n", // set pointers are written even when zero
			"    isolated: true\n",
			"    isolate-instances: true\n",
			"    dhcp: false\n",
			"    ssid: <MGMT_SSID>\n",
		},
		"instances.yaml": {
			"    memory: 1536M\n",
			"ports: [80, 443, 8000-8100]",
			"      - port: 53\n        proto: udp\n",
			"  acme--web:\n    tenant: acme\n", // the tenant first
			"    power: stopped\n    reboot: 2\n    rebuild: 1\n",
		},
	} {
		for _, w := range want {
			if !strings.Contains(string(files[file]), w) {
				t.Errorf("%s does not contain %q:\n%s", file, w, files[file])
			}
		}
	}
	if bytes.Contains(files["zones.yaml"], []byte("pinhole-allowed-from: []")) {
		t.Errorf("empty lists must be omitted:\n%s", files["zones.yaml"])
	}
	if bytes.Contains(files["zones.yaml"], []byte("isolated: false")) {
		t.Errorf("false booleans must be omitted:\n%s", files["zones.yaml"])
	}
}

func TestEncodeDeterministic(t *testing.T) {
	s := loadString(t, fullSpec)
	first, _ := Encode(s)
	for range 20 { // map iteration order changes from run to run
		again, _ := Encode(s)
		if !reflect.DeepEqual(first, again) {
			t.Fatal("Encode output differs between runs")
		}
	}
}

func TestWriteRemovesStaleFiles(t *testing.T) {
	dir := t.TempDir()
	s := loadString(t, fullSpec)
	if err := Write(s, dir); err != nil {
		t.Fatal(err)
	}
	s.Routes = nil
	if err := Write(s, dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "routes.yaml")); !os.IsNotExist(err) {
		t.Errorf("routes.yaml should be removed once the spec has no routes (stat: %v)", err)
	}
	back, diags := Load(dir)
	if diags.HasErrors() {
		t.Fatal(diags.Err())
	}
	if len(back.Routes) != 0 {
		t.Errorf("stale routes were loaded back: %v", SortedNames(back.Routes))
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("temporary file left behind: %s", e.Name())
		}
	}
}

// specDiff compares two specs field by field as the file format sees them:
// positions (Meta), yaml:"-" fields and the nil/empty distinction of lists
// are ignored.
func specDiff(a, b *Spec) []string {
	var diffs []string
	diffValue("spec", reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem(), &diffs)
	return diffs
}

func diffValue(path string, a, b reflect.Value, diffs *[]string) {
	if isEmptyValue(a) && isEmptyValue(b) {
		return
	}
	switch a.Kind() {
	case reflect.Pointer:
		if a.IsNil() != b.IsNil() {
			*diffs = append(*diffs, fmt.Sprintf("%s: set on one side only", path))
			return
		}
		diffValue(path, a.Elem(), b.Elem(), diffs)
		return
	case reflect.Struct:
		if _, ok := a.Interface().(valueEncoder); ok {
			break
		}
		for _, fi := range infoFor(a.Type()).fields {
			diffValue(path+"."+fi.key, a.Field(fi.index), b.Field(fi.index), diffs)
		}
		if sa, ok := a.Addr().Interface().(*Site); ok {
			sb := b.Addr().Interface().(*Site)
			if (sa.Block == nil) != (sb.Block == nil) {
				*diffs = append(*diffs, fmt.Sprintf("%s.%s: block set on one side only", path, sa.Engine))
			} else if sa.Block != nil {
				diffValue(path+"."+sa.Engine, reflect.ValueOf(sa.Block), reflect.ValueOf(sb.Block), diffs)
			}
		}
		return
	case reflect.Map:
		for _, k := range a.MapKeys() {
			if !b.MapIndex(k).IsValid() {
				*diffs = append(*diffs, fmt.Sprintf("%s[%s]: missing after round trip", path, k))
				continue
			}
			diffValue(fmt.Sprintf("%s[%s]", path, k), a.MapIndex(k), b.MapIndex(k), diffs)
		}
		for _, k := range b.MapKeys() {
			if !a.MapIndex(k).IsValid() {
				*diffs = append(*diffs, fmt.Sprintf("%s[%s]: appeared after round trip", path, k))
			}
		}
		return
	case reflect.Slice:
		if a.Len() != b.Len() {
			*diffs = append(*diffs, fmt.Sprintf("%s: %d items became %d", path, a.Len(), b.Len()))
			return
		}
		for i := range a.Len() {
			diffValue(fmt.Sprintf("%s[%d]", path, i), a.Index(i), b.Index(i), diffs)
		}
		return
	}
	if !reflect.DeepEqual(a.Interface(), b.Interface()) {
		*diffs = append(*diffs, fmt.Sprintf("%s: %v became %v", path, a.Interface(), b.Interface()))
	}
}

func TestSpecDiffSeesChanges(t *testing.T) {
	// specDiff is what makes the round-trip test meaningful; prove it is
	// not blind.
	a, b := loadString(t, fullSpec), loadString(t, fullSpec)
	if d := specDiff(a, b); len(d) > 0 {
		t.Fatalf("identical specs differ: %v", d)
	}
	*b.Zones["mgmt"].VLAN = 7
	b.Instances["fw"].Ingress[0].Ports[1].Hi = 444
	b.Templates["debian"].CloudInit = nil
	if d := specDiff(a, b); len(d) != 3 {
		t.Errorf("want 3 differences, got %d: %v", len(d), d)
	}
}
