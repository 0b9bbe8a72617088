package dhcp_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/holdfast/holdfast/internal/dhcp"
	"github.com/holdfast/holdfast/internal/nsthread"
	"github.com/holdfast/holdfast/internal/testenv"
)

// The lab is a zone as the local engine builds one, in namespaces of its
// own: a server namespace with the zone's bridge holding the gateway
// address, where the Server runs, and a client namespace whose interfaces
// (each a veth with its own MAC, the other end on the bridge) are the
// zone's DHCP clients. The clients are Debian's busybox udhcpc.

type lab struct {
	t       testing.TB
	srvName string // named namespaces: `ip netns exec` runs the clients
	cliName string
	dir     string // lease file, client script, what the clients report
	clients []string
}

var nsSeq atomic.Int32

const labBridge = "br0"

var labGateway = netip.MustParseAddr("10.77.0.1")

func labPool() dhcp.Pool {
	return dhcp.Pool{
		Zone:      "home",
		Interface: labBridge,
		Prefix:    netip.MustParsePrefix("10.77.0.0/20"), // room for the benchmark's 1,000 clients
		Gateway:   labGateway,
		Start:     netip.MustParseAddr("10.77.0.100"),
		End:       netip.MustParseAddr("10.77.0.199"),
		DNS:       []netip.Addr{netip.MustParseAddr("10.77.0.2"), netip.MustParseAddr("10.77.0.3")},
		Domain:    "home.tappaas.example",
		LeaseTime: 30 * time.Minute,
	}
}

func clientMAC(i int) net.HardwareAddr {
	return net.HardwareAddr{0x02, 0x77, 0, 0, byte(i >> 8), byte(i)}
}

// newNS creates a named network namespace, removed at the test's end.
// Creating one moves the creating thread into it: that thread is thrown
// away (nsthread.Run).
func newNS(t testing.TB, role string) string {
	t.Helper()
	name := fmt.Sprintf("hfdhcp-%d-%d-%s", os.Getpid(), nsSeq.Add(1), role)
	err := nsthread.Run(func() error {
		h, err := netns.NewNamed(name)
		if err == nil {
			h.Close()
		}
		return err
	})
	if err != nil {
		t.Fatalf("namespace %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := netns.DeleteNamed(name); err != nil {
			t.Errorf("delete namespace %s: %v", name, err)
		}
	})
	return name
}

func nsPath(name string) string { return "/var/run/netns/" + name }

// inNS opens a netlink handle in the namespace name.
func nlHandle(t testing.TB, name string) *netlink.Handle {
	t.Helper()
	ns, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatalf("netlink in %s: %v", name, err)
	}
	t.Cleanup(h.Close)
	return h
}

// newLab builds the bridge and n client interfaces c0…c<n-1>, client i
// with MAC clientMAC(i).
func newLab(t testing.TB, n int) *lab {
	t.Helper()
	testenv.NeedRoot(t, "the test builds network namespaces, a bridge and veths")
	if _, err := exec.LookPath("busybox"); err != nil {
		testenv.Unavailable(t, "busybox (udhcpc, the DHCP client) is not installed: apt-get install busybox")
	}
	l := &lab{t: t, srvName: newNS(t, "srv"), cliName: newNS(t, "cli"), dir: t.TempDir()}
	srv, cli := nlHandle(t, l.srvName), nlHandle(t, l.cliName)
	cliNS, err := netns.GetFromName(l.cliName)
	if err != nil {
		t.Fatal(err)
	}
	defer cliNS.Close()

	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: labBridge}}
	if err := srv.LinkAdd(br); err != nil {
		t.Fatalf("bridge: %v", err)
	}
	gw := &netlink.Addr{IPNet: &net.IPNet{IP: labGateway.AsSlice(), Mask: net.CIDRMask(labPool().Prefix.Bits(), 32)}}
	if err := srv.AddrAdd(br, gw); err != nil {
		t.Fatal(err)
	}
	if err := srv.LinkSetUp(br); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		name := fmt.Sprintf("c%d", i)
		veth := &netlink.Veth{
			LinkAttrs:        netlink.LinkAttrs{Name: fmt.Sprintf("p%d", i), MasterIndex: br.Index},
			PeerName:         name,
			PeerHardwareAddr: clientMAC(i),
			PeerNamespace:    netlink.NsFd(cliNS),
		}
		if err := srv.LinkAdd(veth); err != nil {
			t.Fatalf("veth %d: %v", i, err)
		}
		if err := srv.LinkSetUp(veth); err != nil {
			t.Fatal(err)
		}
		c, err := cli.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := cli.LinkSetUp(c); err != nil {
			t.Fatal(err)
		}
		l.clients = append(l.clients, name)
	}
	script := `#!/bin/sh
# udhcpc runs this on each event (deconfig, bound, renew, leasefail, nak):
# it records what the client was told, and, when asked to, configures the
# address as a real client would (a renewal is unicast from it).
f="$LEASE_DIR/$interface.$1"
{
	echo "ip=$ip"; echo "mask=$mask"; echo "router=$router"; echo "dns=$dns"
	echo "domain=$domain"; echo "search=$search"; echo "lease=$lease"; echo "serverid=$serverid"
} >"$f.tmp" && mv "$f.tmp" "$f"
if [ -n "$CONFIGURE" ]; then
	case "$1" in
	bound) ip addr add "$ip/$mask" dev "$interface" ;;
	deconfig) ip addr flush dev "$interface" ;;
	esac
fi
`
	if err := os.WriteFile(filepath.Join(l.dir, "script"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return l
}

// server starts a Server on the lab's lease file, serving pool on the
// bridge inside the server namespace.
func (l *lab) server(pool dhcp.Pool) *dhcp.Server {
	l.t.Helper()
	s, err := dhcp.New(filepath.Join(l.dir, "leases.json"), nil)
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { s.Close() })
	if err := nsthread.In(nsPath(l.srvName), func() error { return s.Set([]dhcp.Pool{pool}) }); err != nil {
		l.t.Fatal(err)
	}
	return s
}

// udhcpc runs busybox udhcpc on client i until it has a lease (or gives
// up after 5 tries a second apart), and returns what its script was told
// at "bound" (nil when it got no lease).
func (l *lab) udhcpc(i int, hostname string) map[string]string {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args := []string{"netns", "exec", l.cliName, "busybox", "udhcpc", "-i", l.clients[i], "-n", "-q", "-f", "-t", "5", "-T", "1", "-s", filepath.Join(l.dir, "script")}
	if hostname != "" {
		args = append(args, "-x", "hostname:"+hostname)
	}
	cmd := exec.CommandContext(ctx, "ip", args...)
	cmd.Env = append(os.Environ(), "LEASE_DIR="+l.dir)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		l.t.Errorf("udhcpc on %s: still running after a minute:\n%s", l.clients[i], out)
	}
	got := l.event(i, "bound")
	if err != nil && got != nil {
		l.t.Errorf("udhcpc on %s: %v with a lease:\n%s", l.clients[i], err, out)
	}
	return got
}

// event is what client i's script recorded at its last event ev, nil when
// there was none.
func (l *lab) event(i int, ev string) map[string]string {
	f, err := os.Open(filepath.Join(l.dir, l.clients[i]+"."+ev))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		l.t.Fatal(err)
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), "=")
		env[k] = v
	}
	return env
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A real client gets an address in the range with the zone's router, DNS
// servers, domain, search list and lease time; its hostname is in the
// lease, in Leases and in the lease file.
func TestUDHCPCLease(t *testing.T) {
	l := newLab(t, 1)
	p := labPool()
	s := l.server(p)
	env := l.udhcpc(0, "laptop-1")
	if env == nil {
		t.Fatal("udhcpc got no lease")
	}
	ip, err := netip.ParseAddr(env["ip"])
	if err != nil || ip.Less(p.Start) || p.End.Less(ip) {
		t.Errorf("address %q, want one in %v-%v", env["ip"], p.Start, p.End)
	}
	for k, want := range map[string]string{
		"mask": "20", "router": "10.77.0.1", "dns": "10.77.0.2 10.77.0.3", "domain": "home.tappaas.example",
		"search": "home.tappaas.example", "lease": "1800", "serverid": "10.77.0.1",
	} {
		if got := strings.TrimSpace(env[k]); got != want {
			t.Errorf("udhcpc's %s = %q, want %q", k, got, want)
		}
	}
	want := func(ls []dhcp.Lease) bool {
		return len(ls) == 1 && ls[0].IP == ip && ls[0].MAC == clientMAC(0).String() && ls[0].Hostname == "laptop-1" && ls[0].Zone == "home"
	}
	if ls := s.Leases(); !want(ls) {
		t.Errorf("Leases() = %+v, want laptop-1's lease of %v", ls, ip)
	}
	if ls, err := dhcp.ReadLeases(filepath.Join(l.dir, "leases.json")); err != nil || !want(ls) {
		t.Errorf("lease file: %+v (%v), want laptop-1's lease of %v", ls, err, ip)
	}
}

// 50 clients asking at once get 50 distinct addresses.
func TestUDHCPCFiftyAtOnce(t *testing.T) {
	const n = 50
	l := newLab(t, n)
	s := l.server(labPool())
	var wg sync.WaitGroup
	envs := make([]map[string]string, n)
	for i := range n {
		wg.Go(func() { envs[i] = l.udhcpc(i, fmt.Sprintf("client-%d", i)) })
	}
	wg.Wait()
	seen := map[string]int{}
	for i, env := range envs {
		if env == nil {
			t.Errorf("client %d got no lease", i)
			continue
		}
		if j, dup := seen[env["ip"]]; dup {
			t.Errorf("clients %d and %d both got %s", j, i, env["ip"])
		}
		seen[env["ip"]] = i
	}
	if ls := s.Leases(); len(ls) != n {
		t.Errorf("Leases() has %d leases, want %d", len(ls), n)
	}
}

// After the server restarts on its lease file, running clients renew
// their addresses (a unicast REQUEST, ACKed), and a client starting over
// (DISCOVER) is offered its old address.
func TestUDHCPCRenewAfterRestart(t *testing.T) {
	const n = 5
	l := newLab(t, n+1) // the last one joins after the restart
	p := labPool()
	s := l.server(p)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var procs []*exec.Cmd
	for i := range n {
		// Without -q udhcpc stays, bound, and renews on SIGUSR1.
		cmd := exec.CommandContext(ctx, "ip", "netns", "exec", l.cliName, "busybox", "udhcpc", "-i", l.clients[i], "-f", "-t", "5", "-T", "1", "-s", filepath.Join(l.dir, "script"))
		cmd.Env = append(os.Environ(), "LEASE_DIR="+l.dir, "CONFIGURE=1")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		procs = append(procs, cmd)
	}
	defer func() {
		for _, c := range procs {
			_ = c.Process.Kill()
			_ = c.Wait() // killed: its error says so
		}
	}()
	waitFor(t, "every client bound", 30*time.Second, func() bool {
		for i := range n {
			if l.event(i, "bound") == nil {
				return false
			}
		}
		return true
	})
	before := s.Leases()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s2 := l.server(p)
	// A client new to the restarted server gets none of the leased addresses.
	newcomer := l.udhcpc(n, "")
	for _, ls := range before {
		if newcomer == nil || newcomer["ip"] == ls.IP.String() {
			t.Fatalf("after the restart a new client got %v, leased to %s before it", newcomer, ls.MAC)
		}
	}
	for i, c := range procs {
		if err := c.Process.Signal(syscall.SIGUSR1); err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
	}
	waitFor(t, "every client renewed", 30*time.Second, func() bool {
		for i := range n {
			if l.event(i, "renew") == nil {
				return false
			}
		}
		return true
	})
	for i := range n {
		if b, r := l.event(i, "bound")["ip"], l.event(i, "renew")["ip"]; b != r {
			t.Errorf("client %d: bound to %s, renewed %s after the restart", i, b, r)
		}
		if l.event(i, "nak") != nil {
			t.Errorf("client %d was NAKed", i)
		}
	}
	after := map[netip.Addr]dhcp.Lease{}
	for _, ls := range s2.Leases() {
		after[ls.IP] = ls
	}
	for _, b := range before {
		if a, ok := after[b.IP]; !ok || a.MAC != b.MAC || !a.Expires.After(b.Expires) {
			t.Errorf("lease %+v after the restart and its renewal: %+v, want the same client's, extended", b, a)
		}
	}

	// Client 0 starts over, as after its own reboot: DISCOVER, no address asked.
	_ = procs[0].Process.Kill()
	_ = procs[0].Wait() // killed: its error says so
	procs = procs[1:]
	first := l.event(0, "bound")["ip"]
	if err := os.Remove(filepath.Join(l.dir, l.clients[0]+".bound")); err != nil {
		t.Fatal(err)
	}
	if err := exec.Command("ip", "netns", "exec", l.cliName, "ip", "addr", "flush", "dev", l.clients[0]).Run(); err != nil {
		t.Fatal(err)
	}
	if env := l.udhcpc(0, ""); env == nil || env["ip"] != first {
		t.Errorf("client starting over got %v, want its address %s", env, first)
	}
}

// A reserved MAC gets its reserved address; the pool never hands that
// address to anyone else, even though it lies in the range.
func TestUDHCPCReservation(t *testing.T) {
	const n = 6
	l := newLab(t, n)
	p := labPool()
	reserved := p.Start // the first address the pool would give
	p.Reservations = []dhcp.Reservation{{MAC: clientMAC(0), IP: reserved, Hostname: "web-01"}}
	s := l.server(p)
	for i := 1; i < n; i++ {
		env := l.udhcpc(i, "")
		if env == nil {
			t.Fatalf("client %d got no lease", i)
		}
		if env["ip"] == reserved.String() {
			t.Errorf("client %d got the reserved %v", i, reserved)
		}
	}
	if env := l.udhcpc(0, "ignored"); env == nil || env["ip"] != reserved.String() {
		t.Errorf("the reserved client got %v, want %v", env, reserved)
	}
	var found bool
	for _, ls := range s.Leases() {
		if ls.IP == reserved {
			found = true
			if ls.MAC != clientMAC(0).String() || !ls.Reserved || ls.Hostname != "web-01" {
				t.Errorf("reserved lease %+v: want client 0's, reserved, named web-01", ls)
			}
		}
	}
	if !found {
		t.Error("the reserved lease is not listed")
	}
}

// With more clients than addresses, the extra clients get no offer and
// nobody gets an address twice.
func TestUDHCPCExhaustion(t *testing.T) {
	const n, size = 5, 3
	l := newLab(t, n)
	p := labPool()
	p.End = netip.AddrFrom4([4]byte{10, 77, 0, 100 + size - 1})
	s := l.server(p)
	var wg sync.WaitGroup
	envs := make([]map[string]string, n)
	for i := range n {
		wg.Go(func() { envs[i] = l.udhcpc(i, "") })
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, env := range envs {
		if env == nil {
			continue
		}
		if seen[env["ip"]] {
			t.Errorf("%s handed out twice", env["ip"])
		}
		seen[env["ip"]] = true
	}
	if len(seen) != size {
		t.Errorf("%d clients got a lease, want %d (the range's size)", len(seen), size)
	}
	if ls := s.Leases(); len(ls) != size {
		t.Errorf("Leases() has %d, want %d", len(ls), size)
	}
}
