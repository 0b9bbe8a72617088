package deploy_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netns"

	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/engine/local"
	"github.com/holdfast/holdfast/internal/nsthread"
	"github.com/holdfast/holdfast/internal/probe"
)

// isolateSpec: a zone that isolates its instances (three, on two nodes)
// and is the overlay's underlay, beside a zone that does not.
const isolateSpec = `
cloud: {name: iso, domain: iso.example}
sites: {s: {engine: local, nodes: [n1, n2]}}
zones:
  boot: {type: management, isolate-instances: true, access-to: [internet]}
  app: {type: service, sub-id: 1}
roles: {r: {vmids: 100-199}}
groups: {infra: {can-access: [infra]}}
overlay: {cidr: 10.10.10.0/24, lighthouses: [b1]}
instances:
  b1: {role: r, zone: boot, node: n1, ports: [8080], groups: [infra]}
  b2: {role: r, zone: boot, node: n1, ports: [8080], groups: [infra]}
  b3: {role: r, zone: boot, node: n2, ports: [8080], groups: [infra]}
  a1: {role: r, zone: app, node: n1, ports: [8080]}
  a2: {role: r, zone: app, node: n2, ports: [8080]}
`

// TestIsolatedZone: in a zone with isolate-instances nothing passes
// between two of its instances, on one node or across two, over IPv4 or
// IPv6 link-local, but the overlay's UDP port; the gateway side reaches
// them and they reach it; a zone beside it is unaffected. A node's table
// deleted behind Holdfast's back is named by status and put back by apply.
func TestIsolatedZone(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	specFile := filepath.Join(dir, "cloud.yaml")
	if err := os.WriteFile(specFile, []byte(isolateSpec), 0o644); err != nil {
		t.Fatal(err)
	}
	cloud := testCloud("iso")
	c := applied(t, specFile, cloud, t.TempDir())
	defer c.Close()
	defer destroy(t, c)
	by := map[string]endpoint{}
	for _, pc := range matrix(c.Desired, cloud) {
		by[pc.from.name] = pc.from
	}
	edge := endpoint{name: "the edge", ns: "/run/netns/" + local.EdgeNS(cloud, "s")}
	var gateway endpoint
	for _, z := range c.Desired.Zones {
		if z.Name == "boot" {
			gateway = endpoint{name: "the gateway", ip: netip.MustParseAddr(z.Gateway)}
		}
	}
	blockedPairs := [][2]string{{"b1", "b2"}, {"b2", "b1"}, {"b1", "b3"}, {"b3", "b1"}, {"b2", "b3"}, {"b3", "b2"}}
	isolation := func() []probeCase {
		var cases []probeCase
		for _, p := range blockedPairs {
			cases = append(cases,
				probeCase{from: by[p[0]], to: by[p[1]], proto: "tcp", port: 8080, want: false},
				probeCase{from: by[p[0]], to: by[p[1]], proto: "icmp", want: false})
		}
		return cases
	}
	cases := isolation()
	for _, b := range []string{"b1", "b2", "b3"} {
		cases = append(cases,
			probeCase{from: edge, to: by[b], proto: "tcp", port: 8080, want: true}, // the host side reaches the served port
			probeCase{from: by[b], to: gateway, proto: "icmp", want: true})         // and the instance its gateway
	}
	cases = append(cases,
		probeCase{from: by["a1"], to: by["a2"], proto: "tcp", port: 8080, want: true}, // the zone beside, across nodes
		probeCase{from: by["a2"], to: by["a1"], proto: "icmp", want: true},
		probeCase{from: by["b1"], to: by["a1"], proto: "tcp", port: 8080, want: false}, // between zones as before
	)
	for _, w := range run(t, cases) {
		t.Error(w)
	}

	// The overlay's underlay: UDP on its port passes between members, on
	// one node and across nodes, with the reply; another port does not.
	port := c.Desired.Overlay.Port
	for _, p := range blockedPairs {
		if err := udpEcho(by[p[0]], by[p[1]], port); err != nil {
			t.Errorf("%s -> %s udp/%d (the overlay's underlay) should pass: %v", p[0], p[1], port, err)
		}
		if err := udpEcho(by[p[0]], by[p[1]], port+1); err == nil {
			t.Errorf("%s -> %s udp/%d should be blocked, but was answered", p[0], p[1], port+1)
		}
	}

	// IPv6 link-local: what the gateway's address rules cannot see. In the
	// zone beside it passes (so the probe can tell).
	if ll, ok := linkLocal(t, by["a2"]); ok {
		if err := udp6Echo(by["a1"], by["a2"], ll, port); err != nil {
			t.Errorf("a1 -> a2 udp6/%d on %s should pass (the zone does not isolate): %v", port, ll, err)
		}
	}
	for _, p := range blockedPairs {
		ll, ok := linkLocal(t, by[p[1]])
		if !ok {
			t.Logf("%s has no IPv6 link-local address: nothing to probe", p[1])
			break
		}
		if err := udp6Echo(by[p[0]], by[p[1]], ll, port); err == nil {
			t.Errorf("%s -> %s udp6/%d on %s should be blocked, but was answered", p[0], p[1], port, ll)
		}
	}

	// Drift: the table gone from a node is named, and apply repairs it.
	node := "hf." + cloud + ".n.s.n1"
	deleteBridgeTable(t, node)
	if w := run(t, []probeCase{{from: by["b1"], to: by["b2"], proto: "tcp", port: 8080, want: true}}); len(w) > 0 {
		t.Fatalf("without the table, instances should meet (else the test proves nothing): %v", w)
	}
	status, err := c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	named := false
	for _, s := range status {
		if s.ID == compile.FirewallID("s") && strings.Contains(strings.Join(s.Drift, "; "), "node n1: table bridge holdfast is missing") {
			named = true
		}
	}
	if !named {
		t.Errorf("status does not name the missing table: %+v", status)
	}
	p := planOf(t, c)
	if len(p.Changes) != 1 || p.Changes[0].ID != compile.FirewallID("s") {
		t.Errorf("the repair plan is %+v, want the site's firewall alone", p.Changes)
	}
	if _, err := c.Apply(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	if p := planOf(t, c); len(p.Changes) != 0 {
		t.Errorf("after the repair, %d changes remain: %+v", len(p.Changes), p.Changes)
	}
	for _, w := range run(t, isolation()) {
		t.Errorf("after the repair: %s", w)
	}
}

// udpEcho sends a datagram from one instance to another's port, where a
// listener echoes it, and waits for the echo: nil when it came back.
func udpEcho(from, to endpoint, port int) error {
	return udpEchoAt(from, to, netip.AddrPortFrom(to.ip, uint16(port)), "")
}

func udp6Echo(from, to endpoint, ll netip.Addr, port int) error {
	return udpEchoAt(from, to, netip.AddrPortFrom(ll.WithZone("eth0"), uint16(port)), "eth0")
}

func udpEchoAt(from, to endpoint, dst netip.AddrPort, zone string) error {
	network := "udp4"
	listen := netip.AddrPortFrom(netip.IPv4Unspecified(), dst.Port())
	if dst.Addr().Is6() {
		network, listen = "udp6", netip.AddrPortFrom(netip.IPv6Unspecified(), dst.Port())
	}
	var srv *net.UDPConn
	if err := nsthread.In(to.ns, func() error {
		var err error
		srv, err = net.ListenUDP(network, net.UDPAddrFromAddrPort(listen))
		return err
	}); err != nil {
		return fmt.Errorf("listen in %s: %w", to.name, err)
	}
	defer srv.Close()
	go func() {
		buf := make([]byte, 64)
		for {
			n, addr, err := srv.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			_, _ = srv.WriteToUDPAddrPort(buf[:n], addr)
		}
	}()
	const timeout = 700 * time.Millisecond
	return nsthread.In(from.ns, func() error {
		conn, err := net.DialUDP(network, nil, net.UDPAddrFromAddrPort(dst))
		if err != nil {
			return err
		}
		defer conn.Close()
		// Repeat until the deadline: the first datagram may wait on ARP
		// or ND, and the kernel keeps only a few while it does.
		deadline := time.Now().Add(timeout)
		buf := make([]byte, 64)
		for time.Now().Before(deadline) {
			if _, err := conn.Write([]byte("ping")); err != nil && !errors.Is(err, net.ErrClosed) {
				return err
			}
			_ = conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			if n, err := conn.Read(buf); err == nil && string(buf[:n]) == "ping" {
				return nil
			}
		}
		return probe.ErrNoReply
	})
}

// linkLocal is an instance's IPv6 link-local address on eth0, if it has one.
func linkLocal(t *testing.T, e endpoint) (netip.Addr, bool) {
	t.Helper()
	var out netip.Addr
	err := nsthread.In(e.ns, func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		addrs, err := ifi.Addrs()
		if err != nil {
			return err
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Is6() && ip.IsLinkLocalUnicast() {
					out = ip
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s: %v", e.name, err)
	}
	return out, out.IsValid()
}

// deleteBridgeTable removes the node's table bridge holdfast, as an
// operator with nft would.
func deleteBridgeTable(t *testing.T, ns string) {
	t.Helper()
	h, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	conn, err := nftables.New(nftables.WithNetNSFd(int(h)))
	if err != nil {
		t.Fatal(err)
	}
	conn.DelTable(&nftables.Table{Family: nftables.TableFamilyBridge, Name: "holdfast"})
	if err := conn.Flush(); err != nil {
		t.Fatalf("delete table bridge holdfast in %s: %v", ns, err)
	}
}
