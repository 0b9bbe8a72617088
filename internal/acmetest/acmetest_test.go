package acmetest

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/holdfast/holdfast/internal/nsthread"
	"github.com/holdfast/holdfast/internal/testenv"
)

func ask(t *testing.T, network, server, name string) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: network, Timeout: 2 * time.Second}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeA)
	r, _, err := c.Exchange(m, server)
	if err != nil {
		t.Fatalf("%s %s: %v", network, name, err)
	}
	return r
}

func TestServeDNSOverUDPAndTCP(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ServeDNS(t, pc, map[string]netip.Addr{"App.Example.": netip.MustParseAddr("192.0.2.7")})
	for _, network := range []string{"udp", "tcp"} {
		r := ask(t, network, pc.LocalAddr().String(), "app.EXAMPLE")
		if len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "192.0.2.7" {
			t.Errorf("%s: %v", network, r)
		}
		if r := ask(t, network, pc.LocalAddr().String(), "other.example"); r.Rcode != dns.RcodeNameError {
			t.Errorf("%s other: %v", network, r)
		}
	}
}

// TestInNamespace runs pebble and the DNS server in a network namespace,
// as the root tests do with their "internet".
func TestInNamespace(t *testing.T) {
	testenv.NeedRoot(t, "makes a network namespace")
	ns := fmt.Sprintf("acmetest-%d", os.Getpid())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, args := range [][]string{{"netns", "add", ns}, {"-n", ns, "link", "set", "lo", "up"}} {
		if out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
		if args[0] == "netns" {
			t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
		}
	}
	path := filepath.Join("/run/netns", ns)
	var pc net.PacketConn
	if err := nsthread.In(path, func() (err error) {
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	ServeDNS(t, pc, map[string]netip.Addr{"app.example": netip.MustParseAddr("127.0.0.1")})
	if err := nsthread.In(path, func() error {
		if r := ask(t, "tcp", pc.LocalAddr().String(), "app.example"); len(r.Answer) != 1 {
			return fmt.Errorf("over TCP in the namespace: %v", r)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	p := Start(t, Options{Addr: "127.0.0.1:14000", MgmtAddr: "127.0.0.1:15000", HTTPPort: 80, TLSPort: 443,
		DNSServer: pc.LocalAddr().String(), Netns: ns})
	if p.IssuerRoots(t) == nil {
		t.Fatal("no roots")
	}
	t.Logf("pebble at %s in %s", p.Directory, ns)
}
