package server

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/api"
	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/spec"
	"github.com/holdfast/holdfast/internal/tenant"
)

// tenancySpec is the smallest cloud that serves tenants.
const tenancySpec = "testdata/tenancy"

// copySpec copies the spec directory src into a new directory, with extra
// files (name -> content), and returns it: a spec a test may change.
func copySpec(t testing.TB, src string, extra map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		extra[e.Name()] = string(data)
	}
	for name, content := range extra {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestNamesTheCloudRefusesAreRefusedAtOnce: a request whose name would
// give the cloud's spec a name it refuses — badly formed, too long with
// the tenant's name, or already the operator's — is refused when it
// arrives, with a problem naming the field and saying why, and nothing is
// recorded. The longest names that fit are accepted.
func TestNamesTheCloudRefusesAreRefusedAtOnce(t *testing.T) {
	dir := copySpec(t, tenancySpec, map[string]string{"zones.yaml": "zones:\n  acme--dmz:\n    type: dmz\n"})
	e := newEnv(t, Config{SpecPath: dir})
	long := strings.Repeat("t", 32) // the longest tenant name
	e.tenantWith("acme", nil, nil)
	e.tenantWith(long, nil, nil)
	net := func(tenant, name string) (string, string, any) {
		return "POST", "/v1/tenants/" + tenant + "/networks", api.NetworkCreate{Name: name}
	}
	inst := func(name string) (string, string, any) {
		return "POST", "/v1/tenants/acme/instances", api.InstanceCreate{Name: name, Flavor: "burstable", Template: "debian-12", Network: "net"}
	}
	tmpl := func(name string) (string, string, any) {
		return "PUT", "/v1/templates/" + name, api.Template{Name: name, Image: "x"}
	}
	for _, tc := range []struct {
		req    func() (string, string, any)
		status int
		why    string
	}{
		{func() (string, string, any) { return net("acme", "w-") }, http.StatusUnprocessableEntity, "it must not end in '-'"},
		{func() (string, string, any) { return net("acme", "a--b") }, http.StatusUnprocessableEntity, `it must not hold "--"`},
		{func() (string, string, any) { return net("acme", "Net") }, http.StatusUnprocessableEntity, "it must start with a lower-case letter"},
		{func() (string, string, any) { return net(long, strings.Repeat("n", 30)) }, http.StatusUnprocessableEntity,
			`gives the zone "` + long + "--" + strings.Repeat("n", 30) + `" in the cloud's spec, which is 64 characters long; a name has at most 63`},
		{func() (string, string, any) { return net("acme", "dmz") }, http.StatusConflict,
			`gives the zone "acme--dmz" in the cloud's spec, which the operator's spec already names`},
		{func() (string, string, any) { return inst("web-") }, http.StatusUnprocessableEntity, "it must not end in '-'"},
		{func() (string, string, any) { return tmpl("ubuntu-24.04") }, http.StatusUnprocessableEntity, "it may hold only lower-case letters, digits and '-', not '.'"},
		{func() (string, string, any) { return tmpl(strings.Repeat("x", 53)) }, http.StatusUnprocessableEntity, "must be at most 52 characters"},
		{func() (string, string, any) { return "POST", "/v1/tenants", api.TenantCreate{Name: "a--b"} }, http.StatusUnprocessableEntity, `it must not hold "--"`},
	} {
		method, path, body := tc.req()
		status, h, b := e.do(e.admin, method, path, body)
		if status != tc.status {
			t.Errorf("%s %s %+v: status %d, want %d: %s", method, path, body, status, tc.status, b)
			continue
		}
		p := e.problemOf(h, b)
		if len(p.Errors) != 1 || p.Errors[0].Field != "name" || !strings.Contains(p.Errors[0].Message, tc.why) {
			t.Errorf("%s %s %+v: errors %+v, want name: ...%s", method, path, body, p.Errors, tc.why)
		}
	}
	var nets api.Page[api.Network]
	e.must(e.admin, http.StatusOK, "GET", "/v1/tenants/acme/networks", nil, &nets)
	if len(nets.Items) != 0 {
		t.Errorf("refused requests recorded networks: %+v", nets.Items)
	}
	// The longest network name that fits the longest tenant name.
	e.must(e.admin, http.StatusAccepted, "POST", "/v1/tenants/"+long+"/networks", api.NetworkCreate{Name: strings.Repeat("n", 29)}, nil)
	e.must(e.admin, http.StatusOK, "PUT", "/v1/templates/"+strings.Repeat("x", 52), api.Template{Name: strings.Repeat("x", 52), Image: "x"}, nil)
}

// FuzzAcceptedNamesAreSpecValid: whatever names of a tenant, a network, an
// instance and a catalogue template the API accepts, the tenants spec the
// realizer writes from them is one the cloud's spec validator and compiler
// accept. The seeds hold the longest names; run with -fuzz to look further.
func FuzzAcceptedNamesAreSpecValid(f *testing.F) {
	sp, diags := spec.Check(tenancySpec)
	if diags.HasErrors() {
		f.Fatal(diags.Err())
	}
	pl, err := poolOf(sp)
	if err != nil {
		f.Fatal(err)
	}
	s := &Server{spec: sp, pool: pl, cloud: sp.Cloud.Name}
	s.real = newRealizer(s)
	for _, seed := range [][4]string{
		{"acme", "net", "web", "debian-12"},
		{strings.Repeat("t", 32), strings.Repeat("n", 29), strings.Repeat("i", 6), strings.Repeat("x", 52)},
		{strings.Repeat("t", 32), strings.Repeat("n", 31), "i", "x"},
		{"a", strings.Repeat("n", 31), strings.Repeat("i", 31), "t"},
		{"a", "w-", "v-", "ubuntu-24.04"},
		{"a-1", "n-2", "i-3", "t-4"},
	} {
		f.Add(seed[0], seed[1], seed[2], seed[3])
	}
	accepted := func(v any) bool { return len(api.Check(v)) == 0 }
	// Not vacuous: the longest names are accepted, and so checked below.
	if long := strings.Repeat("t", 32); s.networkName(long, strings.Repeat("n", 29)) != nil || s.instanceName(long, strings.Repeat("i", 6)) != nil ||
		!accepted(api.Template{Name: strings.Repeat("x", 52), Image: "i"}) {
		f.Fatal("the API refuses the longest names that fit")
	}
	f.Fuzz(func(t *testing.T, tenantName, network, instance, template string) {
		if !accepted(api.TenantCreate{Name: tenantName}) ||
			!accepted(api.NetworkCreate{Name: network}) || s.networkName(tenantName, network) != nil {
			return
		}
		n := tenant.NetworkRecord{Network: api.Network{Name: network, Tenant: tenantName, Zone: tenant.ZoneName(tenantName, network),
			CIDR: "10.128.0.0/24", VLAN: 3000, Status: "creating"}}
		sn := snapshot{nets: []tenant.NetworkRecord{n}}
		if accepted(api.InstanceCreate{Name: instance, Flavor: "f", Template: "t", Network: "n"}) && s.instanceName(tenantName, instance) == nil {
			in := tenant.InstanceRecord{Instance: api.Instance{Name: instance, Tenant: tenantName, Network: network,
				Spec: tenant.SpecName(tenantName, instance), CPUs: 1, MemoryMiB: 128, Power: "running", Status: api.StatusCreating}}
			if accepted(api.Template{Name: template, Image: "debian-12"}) {
				in.Template, in.Image = template, "debian-12"
			}
			sn.insts = append(sn.insts, in)
		}
		p := newPass(s.real, sn)
		p.accepted, p.made = &spec.Spec{}, map[object]bool{}
		data, err := spec.EncodeFile(p.tenantSpec())
		if err != nil {
			t.Fatal(err)
		}
		whole, diags := spec.CheckWith(tenancySpec, func(string) (string, []byte, error) { return "tenants.yaml", data, nil })
		if !diags.HasErrors() {
			_, _, cd := compile.Compile(whole, compile.Allocations{})
			diags = append(diags, cd...)
		}
		if diags.HasErrors() || len(p.refused) > 0 {
			t.Fatalf("the API accepts tenant %q, network %q, instance %q, template %q; the cloud refuses them:\n%v\n%v\n%s",
				tenantName, network, instance, template, diags.Err(), p.refused, data)
		}
	})
}
