package deploy_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/engine/local"
	"github.com/holdfast/holdfast/internal/engine/local/container"
	"github.com/holdfast/holdfast/internal/guest"
	"github.com/holdfast/holdfast/internal/nsthread"
)

// upstreamAnswer is what the test's stand-in for 1.1.1.1 answers for any
// name: an address in the internet's documentation range.
var upstreamAnswer = netip.MustParseAddr("203.0.113.80")

// TestArvandorDNS applies examples/arvandor with the guest service
// running: dns's agent serves the cloud's names at 192.168.100.11, where
// every VM's resolver configuration points ("VMs query the DNS server").
// From every instance, through its own resolv.conf (getent, not a chosen
// server), postgres-01's overlay and bridge names resolve to its addresses
// and back; an unknown name is NXDOMAIN; a name outside the cloud is
// forwarded to 1.1.1.1 (a stand-in in the internet namespace); the
// internet gets no answer. An instance added resolves within 2 s of the
// apply that made it, and stops resolving when it is removed.
func TestArvandorDNS(t *testing.T) {
	needRoot(t)
	specDir := copyExample(t, "../../examples/arvandor")
	cloud, stateDir := testCloud("arvdns"), t.TempDir()
	c := applied(t, specDir, cloud, stateDir)
	st := c.Desired
	c.Close()
	serveGuest(t, stateDir, cloud)
	serveUpstream(t, cloud, netip.MustParseAddr("1.1.1.1"))
	waitDNS(t, stateDir, st, "dns")

	pg := instanceOf(t, st, "postgres-01")
	pgOverlay := strings.Split(pg.OverlayIP, "/")[0]
	pgName := "postgres-01." + pg.Zone + "." + st.Domain
	engineDir := filepath.Join(stateDir, cloud, "local")
	cases := []struct{ query, want string }{
		{"postgres-01.nebula", pgOverlay},
		{pgName, pg.IP},
		{pg.IP, pgName}, // the reverse lookup
		{pgOverlay, "postgres-01.nebula"},
		{"example.org", upstreamAnswer.String()}, // forwarded
	}
	var wrong []string
	for _, in := range st.Instances {
		for _, tc := range cases {
			out, code := getent(t, engineDir, in.Name, tc.query)
			if code != 0 || !slices.Contains(strings.Fields(out), tc.want) {
				wrong = append(wrong, fmt.Sprintf("%s: getent hosts %s = %q (exit %d), want %s", in.Name, tc.query, out, code, tc.want))
			}
		}
		if out, code := getent(t, engineDir, in.Name, "no-such-host."+pg.Zone+"."+st.Domain); code != 2 {
			wrong = append(wrong, fmt.Sprintf("%s: an unknown name gives %q (exit %d), want not found (2)", in.Name, out, code))
		}
	}
	if len(wrong) > 0 {
		t.Fatalf("%d lookups went wrong:\n%s", len(wrong), strings.Join(wrong, "\n"))
	}
	t.Logf("%d lookups from %d instances through their own resolv.conf", len(st.Instances)*(len(cases)+1), len(st.Instances))

	server := netip.AddrPortFrom(netip.MustParseAddr(instanceOf(t, st, "dns").IP), 53)
	if m, err := ask(nsOf(cloud, "vault-01"), server, "no-such-host."+pg.Zone+"."+st.Domain); err != nil || m.Rcode != dns.RcodeNameError || len(m.Ns) == 0 {
		t.Errorf("an unknown name: %v (%v), want NXDOMAIN with the zone's SOA", m, err)
	}
	// "VMs query 10.10.10.11": dns answers on its overlay address too.
	dnsOverlay := netip.AddrPortFrom(netip.MustParseAddr(instanceOf(t, st, "dns").OverlayIP), 53)
	waitFor(t, 10*time.Second, "dns to answer on its overlay address", func() []string {
		m, err := ask(nsOf(cloud, "vault-01"), dnsOverlay, "postgres-01.nebula")
		if a, ok := firstA(m); err != nil || !ok || a != pgOverlay {
			return []string{fmt.Sprintf("%s: %v (%v)", dnsOverlay, m, err)}
		}
		return nil
	})
	// Never an open resolver: from the internet, dns's address and the
	// zone's gateway forward nothing.
	inet := "/run/netns/" + local.InternetNS(cloud)
	for _, at := range []netip.AddrPort{server, netip.AddrPortFrom(netip.MustParseAddr(pg.NICs[0].Gateway), 53)} {
		if m, err := ask(inet, at, "example.org"); err == nil && len(m.Answer) > 0 {
			t.Errorf("%s answers the internet's query for example.org: %v", at, m.Answer)
		}
	}

	t.Run("instances come and go", func(t *testing.T) {
		file := filepath.Join(specDir, "instances.yaml")
		orig, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		extra := "\n  extra-01:\n    role: monitoring\n    vmid: 5001\n    zone: provisioning\n    flavor: small\n    template: debian-12\n"
		if err := os.WriteFile(file, append(bytes.Clone(orig), extra...), 0o600); err != nil {
			t.Fatal(err)
		}
		st := reapply(t, specDir, cloud, stateDir)
		applied := time.Now()
		name := "extra-01." + pg.Zone + "." + st.Domain
		want := instanceOf(t, st, "extra-01").IP
		took := resolvesWithin(t, engineDir, "vault-01", name, want, applied)
		t.Logf("a new instance resolved %v after its apply", took.Round(time.Millisecond))

		if err := os.WriteFile(file, orig, 0o600); err != nil {
			t.Fatal(err)
		}
		reapply(t, specDir, cloud, stateDir)
		applied = time.Now()
		took = resolvesWithin(t, engineDir, "vault-01", name, "", applied)
		t.Logf("a deleted instance stopped resolving %v after its apply", took.Round(time.Millisecond))
	})
}

// resolvesWithin waits, from instance, until name resolves to want (""
// for: no longer resolves), failing when that takes more than 2 s from
// since; it returns how long it took.
func resolvesWithin(t *testing.T, engineDir, instance, name, want string, since time.Time) time.Duration {
	t.Helper()
	for {
		out, code := getent(t, engineDir, instance, name)
		fields := strings.Fields(out)
		if want == "" && code == 2 || want != "" && code == 0 && len(fields) > 0 && fields[0] == want {
			return time.Since(since)
		}
		if time.Since(since) > 2*time.Second {
			t.Fatalf("%s: getent hosts %s = %q (exit %d) %v after the apply, want %q", instance, name, out, code, time.Since(since), want)
		}
		time.Sleep(50 * time.Millisecond) // polling the condition; the deadline above bounds it
	}
}

// getent runs getent hosts inside the instance, as a program there would
// look a name up.
func getent(t *testing.T, engineDir, instance, query string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var out bytes.Buffer
	code, err := container.Exec(ctx, local.InstanceDir(engineDir, instance), []string{"getent", "hosts", query}, nil, &out, &out)
	if err != nil {
		t.Fatalf("%s: getent: %v", instance, err)
	}
	return strings.TrimSpace(out.String()), code
}

// ask sends one query from the namespace at nsPath.
func ask(nsPath string, server netip.AddrPort, name string) (*dns.Msg, error) {
	var m *dns.Msg
	err := nsthread.In(nsPath, func() error {
		q := new(dns.Msg)
		q.SetQuestion(dns.Fqdn(name), dns.TypeA)
		c := &dns.Client{Timeout: time.Second}
		var err error
		m, _, err = c.Exchange(q, server.String())
		return err
	})
	return m, err
}

// serveUpstream puts addr on the internet namespace and answers every A
// query there with upstreamAnswer, as a public resolver would.
func serveUpstream(t *testing.T, cloud string, addr netip.Addr) {
	t.Helper()
	ns := local.InternetNS(cloud)
	if out, err := exec.Command("ip", "-n", ns, "addr", "add", addr.String()+"/32", "dev", "lo").CombinedOutput(); err != nil {
		t.Fatalf("ip addr add: %v\n%s", err, out)
	}
	var pc net.PacketConn
	if err := nsthread.In("/run/netns/"+ns, func() (err error) {
		pc, err = net.ListenPacket("udp", netip.AddrPortFrom(addr, 53).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		if q := r.Question[0]; q.Qtype == dns.TypeA {
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: upstreamAnswer.AsSlice()})
		}
		_ = w.WriteMsg(m)
	})}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
}

// waitDNS waits until the named DNS servers' agents report their DNS
// serving.
func waitDNS(t *testing.T, stateDir string, st *compile.State, names ...string) {
	t.Helper()
	reports := guest.NewReports(stateDir, st.Cloud)
	waitFor(t, 60*time.Second, "the DNS servers to serve", func() []string {
		var missing []string
		for _, name := range names {
			in := instanceOf(t, st, name)
			rep, ok, err := reports.Get(compile.InstanceID(in.Site, in.Name))
			if err != nil || !ok || !rep.Services["dns"].OK {
				missing = append(missing, fmt.Sprintf("%s: %+v (%v)", name, rep.Health, err))
			}
		}
		return missing
	})
}

func instanceOf(t *testing.T, st *compile.State, name string) compile.Instance {
	t.Helper()
	for _, in := range st.Instances {
		if in.Name == name {
			return in
		}
	}
	t.Fatalf("no instance %s", name)
	return compile.Instance{}
}

// TestZcloudDNSFallback applies examples/zcloud with the guest service
// running: each provider's VMs ask their own zNet, then the peer's. With
// zNet at provider-a switched off through the spec, provider-a's VMs still
// resolve the cloud's names (at the peer's zNet, across the sites) and
// public names (which the peer's zNet forwards upstream).
func TestZcloudDNSFallback(t *testing.T) {
	needRoot(t)
	specDir := copyExample(t, "../../examples/zcloud")
	cloud, stateDir := testCloud("zdn"), t.TempDir()
	c := applied(t, specDir, cloud, stateDir)
	st := c.Desired
	c.Close()
	serveGuest(t, stateDir, cloud)
	serveUpstream(t, cloud, netip.MustParseAddr("1.1.1.1"))
	waitDNS(t, stateDir, st, "znet-a", "znet-b")
	engineDir := filepath.Join(stateDir, cloud, "local")

	zpodB := instanceOf(t, st, "zpod-b")
	check := func(when string) {
		t.Helper()
		var wrong []string
		for _, in := range st.Instances {
			if in.Site != "provider-a" || in.Name == "znet-a" {
				continue
			}
			for query, want := range map[string]string{
				"zpod-b." + zpodB.Zone + "." + st.Domain: zpodB.IP,
				"example.org":                            upstreamAnswer.String(),
			} {
				if out, code := getent(t, engineDir, in.Name, query); code != 0 || !strings.HasPrefix(out, want+" ") {
					wrong = append(wrong, fmt.Sprintf("%s: getent hosts %s = %q (exit %d), want %s", in.Name, query, out, code, want))
				}
			}
		}
		if len(wrong) > 0 {
			t.Fatalf("%s:\n%s", when, strings.Join(wrong, "\n"))
		}
	}
	check("both zNets up")

	edit(t, filepath.Join(specDir, "instances.yaml"), "    provides: [dns, ntp, logger]\n    description: \"zNet: site-local DNS records and caching, NTP, the logger. Needs no other VM.\"\n\n  zfront-a:",
		"    provides: [dns, ntp, logger]\n    power: stopped\n    description: \"zNet: site-local DNS records and caching, NTP, the logger. Needs no other VM.\"\n\n  zfront-a:")
	st = reapply(t, specDir, cloud, stateDir)
	if in := instanceOf(t, st, "znet-a"); in.Power != compile.PowerStopped {
		t.Fatalf("znet-a is %s after the edit", in.Power)
	}
	if s, err := container.Inspect(local.InstanceDir(engineDir, "znet-a")); err != nil || s.Running {
		t.Fatalf("znet-a still runs (%+v, %v)", s, err)
	}
	check("zNet at provider-a stopped")
}

// firstA is the first A record of m's answer.
func firstA(m *dns.Msg) (string, bool) {
	if m == nil {
		return "", false
	}
	for _, rr := range m.Answer {
		if a, ok := rr.(*dns.A); ok {
			return a.A.String(), true
		}
	}
	return "", false
}
