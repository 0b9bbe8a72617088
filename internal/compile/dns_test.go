package compile_test

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/holdfast/holdfast/internal/compile"
)

// TestDNSArvandor: every VM asks dns at its bridge address ("VMs query
// 10.10.10.11"), which the isolated bridge lets through on port 53 only,
// and dns reaches its upstream.
func TestDNSArvandor(t *testing.T) {
	_, st, _, diags := compile.File(filepath.Join(examplesDir, "arvandor"), compile.Allocations{})
	if diags.HasErrors() {
		t.Fatal(diagText(diags))
	}
	dns := exInstance(t, st, "dns")
	if st.DNS == nil || len(st.DNS.Servers) != 1 || st.DNS.Servers[0] != (compile.DNSServer{Instance: "dns", Site: dns.Site, Zone: dns.Zone, IP: dns.IP}) {
		t.Fatalf("dns servers %+v, want dns at %s", st.DNS, dns.IP)
	}
	if !slices.Equal(st.DNS.Upstreams, []string{"1.1.1.1"}) {
		t.Errorf("upstreams %v", st.DNS.Upstreams)
	}
	for _, in := range st.Instances {
		if !slices.Equal(in.Resolvers, []string{dns.IP}) {
			t.Errorf("%s resolves at %v, want [%s]", in.Name, in.Resolvers, dns.IP)
		}
	}
	var got []string
	for _, f := range st.Flows {
		if f.To == "dns" && slices.Equal(f.Ports, []string{"53"}) {
			got = append(got, f.From+" "+f.Proto+" "+f.Kind+" "+f.ToCIDR)
		}
	}
	want := []string{"provisioning tcp dns " + dns.IP + "/32", "provisioning udp dns " + dns.IP + "/32"}
	if !slices.Equal(got, want) {
		t.Errorf("flows to dns on 53: %v, want %v", got, want)
	}
}

// TestDNSZcloud: each provider's VMs ask their own zNet, then the peer's
// across the sites, and the flows let every zone reach both; a zone's
// DHCP clients are handed the same servers.
func TestDNSZcloud(t *testing.T) {
	_, st, _, diags := compile.File(filepath.Join(examplesDir, "zcloud"), compile.Allocations{})
	if diags.HasErrors() {
		t.Fatal(diagText(diags))
	}
	a, b := exInstance(t, st, "znet-a").IP, exInstance(t, st, "znet-b").IP
	for _, in := range st.Instances {
		want := []string{a, b}
		if in.Site == "provider-b" {
			want = []string{b, a}
		}
		if !slices.Equal(in.Resolvers, want) {
			t.Errorf("%s (%s) resolves at %v, want %v", in.Name, in.Site, in.Resolvers, want)
		}
	}
	flows := map[string]bool{}
	for _, f := range st.Flows {
		if slices.Equal(f.Ports, []string{"53"}) {
			flows[f.From+">"+f.To+"/"+f.Proto] = true
		}
	}
	for _, z := range st.Zones {
		for _, srv := range []string{"znet-a", "znet-b"} {
			if z.Name == exInstance(t, st, srv).Zone {
				continue // its own zone: no flow needed
			}
			for _, proto := range []string{"udp", "tcp"} {
				if !flows[z.Name+">"+srv+"/"+proto] {
					t.Errorf("no flow %s -> %s %s 53", z.Name, srv, proto)
				}
			}
		}
	}
	z := exZones(st)["a-pod"]
	if got := st.ZoneResolvers("provider-a", z); !slices.Equal(got, []string{a, b}) {
		t.Errorf("a-pod's DHCP clients are handed %v, want [%s %s]", got, a, b)
	}
}

// TestDNSNoServers: without a dns section instances ask their gateway, as
// they did before clouds had DNS servers, and their resources say nothing
// new.
func TestDNSNoServers(t *testing.T) {
	_, st, _, diags := compile.File(filepath.Join(examplesDir, "tasmanian"), compile.Allocations{})
	if diags.HasErrors() {
		t.Fatal(diagText(diags))
	}
	if st.DNS != nil {
		t.Fatalf("dns %+v without a dns section", st.DNS)
	}
	for _, in := range st.Instances {
		if len(in.NICs) > 0 && !slices.Equal(in.Resolvers, []string{in.NICs[0].Gateway}) {
			t.Errorf("%s resolves at %v, want its gateway %s", in.Name, in.Resolvers, in.NICs[0].Gateway)
		}
	}
	for _, r := range st.Resources {
		if _, ok := r.Attrs["resolvers"]; ok {
			t.Errorf("%s has resolvers %q", r.ID, r.Attrs["resolvers"])
		}
	}
}
