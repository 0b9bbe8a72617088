package agent

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/dhcp"
	hdns "github.com/holdfast/holdfast/internal/dns"
	"github.com/holdfast/holdfast/internal/guest"
)

// freePort is a loopback port nothing listens on, over UDP and TCP.
func freePort(t *testing.T) string {
	t.Helper()
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := pc.LocalAddr().String()
		ln, err := net.Listen("tcp", addr)
		pc.Close()
		if err == nil {
			ln.Close()
			return addr
		}
	}
	t.Fatal("no free loopback port")
	return ""
}

func table(hosts ...hdns.Host) hdns.Table {
	return hdns.Table{Zones: []string{"demo.example."}, Hosts: hosts, Clients: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}}
}

func writeConfig(t *testing.T, path string, c guest.Config) {
	t.Helper()
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// lookup asks server for name's A record; "" when there is none.
func lookup(server, name string) (string, int, error) {
	q := new(dns.Msg)
	q.SetQuestion(name, dns.TypeA)
	m, _, err := (&dns.Client{Timeout: time.Second}).Exchange(q, server)
	if err != nil {
		return "", 0, err
	}
	for _, rr := range m.Answer {
		if a, ok := rr.(*dns.A); ok {
			return a.A.String(), m.Rcode, nil
		}
	}
	return "", m.Rcode, nil
}

// waitAnswer polls server until name resolves to want ("" for NXDOMAIN),
// for at most 2 s: the time an apply allows.
func waitAnswer(t *testing.T, server, name, want string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		got, rcode, err := lookup(server, name)
		if err == nil && got == want && (want != "" || rcode == dns.RcodeNameError) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s at %s: %q (rcode %d, %v), want %q", name, server, got, rcode, err, want)
		}
		time.Sleep(20 * time.Millisecond) // polling; the deadline bounds it
	}
}

// An agent run from a configuration file serves DNS from it, takes a new
// file's records within two seconds without restarting the server, and
// names DHCP clients by their hostnames where the cloud does not use the
// name already.
func TestFileAgentServesDNS(t *testing.T) {
	dir := t.TempDir()
	addr := freePort(t)
	cfgFile := filepath.Join(dir, "services.json")
	writeConfig(t, cfgFile, guest.Config{Instance: compile.SiteID("s"), DNS: &guest.DNSConfig{Listen: []string{addr}, Domain: "demo.example",
		Table: table(hdns.Host{Name: "web.app.demo.example.", Addr: netip.MustParseAddr("10.0.0.5")})}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, guest.AgentSettings{ConfigFile: cfgFile, StateDir: filepath.Join(dir, "state")}, "test", slog.New(slog.DiscardHandler))
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent: %v", err)
		}
	})
	waitAnswer(t, addr, "web.app.demo.example.", "10.0.0.5")

	writeConfig(t, cfgFile, guest.Config{Instance: compile.SiteID("s"), DNS: &guest.DNSConfig{Listen: []string{addr}, Domain: "demo.example",
		Table: table(hdns.Host{Name: "db.app.demo.example.", Addr: netip.MustParseAddr("10.0.0.6")})}})
	waitAnswer(t, addr, "db.app.demo.example.", "10.0.0.6")
	waitAnswer(t, addr, "web.app.demo.example.", "")
}

// A DHCP client's hostname becomes <hostname>.<zone>.<domain>, unless it is
// not one DNS label or a compiled instance has that name.
func TestLeaseNames(t *testing.T) {
	addr := freePort(t)
	a := &Agent{log: slog.New(slog.DiscardHandler)}
	t.Cleanup(a.stopDNS)
	c := &guest.DNSConfig{Listen: []string{addr}, Domain: "demo.example",
		Table: table(hdns.Host{Name: "web.app.demo.example.", Addr: netip.MustParseAddr("10.0.0.5")})}
	if err := a.applyDNS(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr
	a.leasesChanged([]dhcp.Lease{
		{Zone: "app", IP: ip("10.0.0.60"), Hostname: "Laptop"},
		{Zone: "app", IP: ip("10.0.0.61"), Hostname: "web"},                     // the instance keeps its name
		{Zone: "app", IP: ip("10.0.0.62"), Hostname: "bad.name"},                // not one label
		{Zone: "app", IP: ip("10.0.0.63"), Hostname: "-x"},                      // not a label
		{Zone: "app", IP: ip("10.0.0.64"), Hostname: "printer", Reserved: true}, // named by the compiled state
	})
	for name, want := range map[string]string{
		"laptop.app.demo.example.":   "10.0.0.60",
		"web.app.demo.example.":      "10.0.0.5",
		"bad.name.app.demo.example.": "",
		"printer.app.demo.example.":  "",
	} {
		got, _, err := lookup(addr, name)
		if err != nil || got != want {
			t.Errorf("%s = %q (%v), want %q", name, got, err, want)
		}
	}
	// Leases gone, names gone.
	a.leasesChanged(nil)
	if got, rcode, err := lookup(addr, "laptop.app.demo.example."); err != nil || got != "" || rcode != dns.RcodeNameError {
		t.Errorf("laptop after its lease went: %q rcode %d (%v)", got, rcode, err)
	}
}
