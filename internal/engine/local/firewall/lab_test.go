package firewall_test

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/engine/local/firewall"
	"github.com/holdfast/holdfast/internal/testenv"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The lab is a site edge as the local engine builds it, in namespaces of
// its own: an edge namespace with a bridge per zone holding the zone's
// gateway, a host namespace per instance on its zone's bridge, and an
// internet namespace behind the edge's wan0.

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.NeedRoot(t, "the test builds network namespaces, bridges and nftables rulesets")
	}
}

// compileSpec compiles one YAML spec with the real compiler.
func compileSpec(t testing.TB, yaml string) *compile.State {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "cloud.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	_, st, _, diags := compile.File(dir, compile.Allocations{})
	if st == nil {
		t.Fatalf("compile:\n%v", diags)
	}
	return st
}

var nsSeq atomic.Int32

// newNS creates a named network namespace that the test removes at its
// end. Creating one moves the creating thread into it, so that happens on
// a locked thread that is thrown away.
func newNS(t testing.TB, role string) netns.NsHandle {
	t.Helper()
	name := fmt.Sprintf("hffw-%d-%d-%s", os.Getpid(), nsSeq.Add(1), role)
	type result struct {
		h   netns.NsHandle
		err error
	}
	ch := make(chan result)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		h, err := netns.NewNamed(name)
		ch <- result{h, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatalf("namespace %s: %v", name, r.err)
	}
	t.Cleanup(func() {
		r.h.Close()
		if err := netns.DeleteNamed(name); err != nil {
			t.Errorf("delete namespace %s: %v", name, err)
		}
	})
	return r.h
}

// inNS runs f on a thread inside ns. Sockets f creates stay in ns.
func inNS(ns netns.NsHandle, f func() error) error {
	ch := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		if err := netns.Set(ns); err != nil {
			ch <- err
			return
		}
		ch <- f()
	}()
	return <-ch
}

func must(t testing.TB, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func sysctl(t testing.TB, ns netns.NsHandle, key, value string) {
	t.Helper()
	must(t, "sysctl "+key, inNS(ns, func() error {
		return os.WriteFile("/proc/sys/"+key, []byte(value), 0o644)
	}))
}

// handle opens netlink inside ns.
func handle(t testing.TB, ns netns.NsHandle) *netlink.Handle {
	t.Helper()
	var h *netlink.Handle
	must(t, "netlink handle", inNS(ns, func() (err error) {
		h, err = netlink.NewHandle()
		return err
	}))
	t.Cleanup(h.Close)
	return h
}

const (
	edgeWAN  = "198.51.100.1" // the edge's uplink address: what masquerading shows
	inetWAN  = "198.51.100.2" // the internet's side of the uplink
	inetHost = "203.0.113.10" // a host on the internet: server and client
	cloudNet = "10.0.0.0/8"   // routed back to the edge from the internet
	edgePort = "2222"         // a service on the edge itself, which no one may reach
	probeTTL = 600 * time.Millisecond
)

type lab struct {
	t     *testing.T
	state *compile.State
	edge  netns.NsHandle
	inet  netns.NsHandle
	hosts map[string]*host
	udp   map[string]*udpLog // by "host:port"
}

type host struct {
	name   string
	ns     netns.NsHandle
	ip, gw netip.Addr
}

func newLab(t *testing.T, st *compile.State, site string) *lab {
	l := &lab{t: t, state: st, hosts: map[string]*host{}, udp: map[string]*udpLog{}}
	l.edge, l.inet = newNS(t, "edge"), newNS(t, "inet")
	sysctl(t, l.edge, "net/ipv4/ip_forward", "1")
	// Reverse-path filtering would drop forged sources before the
	// firewall sees them; the test must prove the firewall does.
	sysctl(t, l.edge, "net/ipv4/conf/all/rp_filter", "0")
	sysctl(t, l.edge, "net/ipv4/conf/default/rp_filter", "0")
	// br_netfilter is built in: bridged traffic crosses the inet hooks.
	sysctl(t, l.edge, "net/bridge/bridge-nf-call-iptables", "1")
	eh := handle(t, l.edge)
	up(t, eh, "lo")

	bridges := map[string]netlink.Link{}
	for _, z := range st.Zones {
		if !z.Present || z.VNI == nil || !slices.Contains(z.Sites, site) {
			continue
		}
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: firewall.BridgeName(*z.VNI)}}
		must(t, "bridge "+br.Name, eh.LinkAdd(br))
		link, err := eh.LinkByName(br.Name)
		must(t, "bridge "+br.Name, err)
		p := netip.MustParsePrefix(z.CIDR)
		addr(t, eh, link, netip.PrefixFrom(netip.MustParseAddr(z.Gateway), p.Bits()))
		up(t, eh, br.Name)
		bridges[z.Name] = link
	}
	for _, in := range st.Instances {
		if in.Site != site {
			continue
		}
		h := &host{name: in.Name, ns: newNS(t, in.Name), ip: netip.MustParseAddr(in.IP), gw: netip.MustParseAddr(in.NICs[0].Gateway)}
		l.hosts[in.Name] = h
		hh := handle(t, h.ns)
		up(t, hh, "lo")
		edgeSide := "v-" + in.Name
		must(t, "veth "+edgeSide, eh.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: edgeSide}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(h.ns))}))
		link, err := eh.LinkByName(edgeSide)
		must(t, edgeSide, err)
		must(t, "enslave "+edgeSide, eh.LinkSetMaster(link, bridges[in.Zone]))
		up(t, eh, edgeSide)
		eth, err := hh.LinkByName("eth0")
		must(t, in.Name+" eth0", err)
		addr(t, hh, eth, netip.PrefixFrom(h.ip, in.NICs[0].Prefix))
		up(t, hh, "eth0")
		must(t, in.Name+" default route", hh.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Gw: h.gw.AsSlice()}))
	}

	ih := handle(t, l.inet)
	up(t, ih, "lo")
	must(t, "wan0", eh.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "wan0"}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(l.inet))}))
	wan, err := eh.LinkByName("wan0")
	must(t, "wan0", err)
	addr(t, eh, wan, netip.MustParsePrefix(edgeWAN+"/24"))
	up(t, eh, "wan0")
	must(t, "edge default route", eh.RouteAdd(&netlink.Route{LinkIndex: wan.Attrs().Index, Gw: net.ParseIP(inetWAN)}))
	eth, err := ih.LinkByName("eth0")
	must(t, "internet eth0", err)
	addr(t, ih, eth, netip.MustParsePrefix(inetWAN+"/24"))
	up(t, ih, "eth0")
	lo, err := ih.LinkByName("lo")
	must(t, "internet lo", err)
	addr(t, ih, lo, netip.MustParsePrefix(inetHost+"/32"))
	_, dst, _ := net.ParseCIDR(cloudNet)
	must(t, "internet route to the cloud", ih.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Dst: dst, Gw: net.ParseIP(edgeWAN)}))
	return l
}

func up(t testing.TB, h *netlink.Handle, name string) {
	t.Helper()
	link, err := h.LinkByName(name)
	must(t, name, err)
	must(t, "up "+name, h.LinkSetUp(link))
}

func addr(t testing.TB, h *netlink.Handle, link netlink.Link, p netip.Prefix) {
	t.Helper()
	a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}}
	must(t, fmt.Sprintf("address %s on %s", p, link.Attrs().Name), h.AddrAdd(link, a))
}

// ns returns the namespace of an endpoint: an instance, "internet" or "edge".
func (l *lab) ns(name string) netns.NsHandle {
	switch name {
	case "internet":
		return l.inet
	case "edge":
		return l.edge
	}
	h, ok := l.hosts[name]
	if !ok {
		l.t.Fatalf("no host %q in the lab", name)
	}
	return h.ns
}

// addrOf is where an endpoint listens: an instance's address, the
// internet host, or (for "gw:<instance>") that instance's gateway.
func (l *lab) addrOf(name string) string {
	switch {
	case name == "internet":
		return inetHost
	case name == "edge":
		return edgeWAN
	case strings.HasPrefix(name, "gw:"):
		return l.hosts[strings.TrimPrefix(name, "gw:")].gw.String()
	}
	return l.hosts[name].ip.String()
}

// listenTCP serves on addr inside ns: each connection is told the source
// address the server saw, and closed.
func (l *lab) listenTCP(ns netns.NsHandle, addr string) {
	var ln net.Listener
	must(l.t, "listen "+addr, inNS(ns, func() (err error) {
		ln, err = net.Listen("tcp4", addr)
		return err
	}))
	l.t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "%s\n", c.RemoteAddr())
			c.Close()
		}
	}()
}

// A udpLog is a UDP echo server that remembers who sent what.
type udpLog struct {
	mu   sync.Mutex
	seen []string // "source payload"
	got  chan struct{}
}

func (u *udpLog) contains(payload string) (string, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, s := range u.seen {
		if src, p, _ := strings.Cut(s, " "); p == payload {
			return src, true
		}
	}
	return "", false
}

// waitFor waits up to d for payload to arrive and says who sent it.
func (u *udpLog) waitFor(payload string, d time.Duration) (string, bool) {
	deadline := time.After(d)
	for {
		if src, ok := u.contains(payload); ok {
			return src, true
		}
		select {
		case <-u.got:
		case <-deadline:
			return "", false
		}
	}
}

func (l *lab) listenUDP(name, port string) {
	var pc net.PacketConn
	must(l.t, "listen udp "+name, inNS(l.ns(name), func() (err error) {
		pc, err = net.ListenPacket("udp4", net.JoinHostPort(l.addrOf(name), port))
		return err
	}))
	l.t.Cleanup(func() { pc.Close() })
	u := &udpLog{got: make(chan struct{}, 1)}
	l.udp[name+":"+port] = u
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			u.mu.Lock()
			u.seen = append(u.seen, from.(*net.UDPAddr).IP.String()+" "+string(buf[:n]))
			u.mu.Unlock()
			select {
			case u.got <- struct{}{}:
			default:
			}
			_, _ = pc.WriteTo(buf[:n], from) // an echo that fails shows as a failed probe
		}
	}()
}

// result of a probe: "open", "blocked" (no answer in time), or what went
// wrong otherwise (a refused connection means the firewall let it pass
// to a port with no server: a broken test, not a blocked flow).
const (
	open    = "open"
	blocked = "blocked"
)

// local is the address a probe from the internet uses: its host's, so
// that it is plainly not a cloud address.
func (l *lab) local(from string) net.IP {
	if from == "internet" {
		return net.ParseIP(inetHost)
	}
	return nil
}

// tcp connects from an endpoint and returns the source the server saw.
func (l *lab) tcp(from, to, port string) (result, seen string) {
	err := inNS(l.ns(from), func() error {
		d := net.Dialer{Timeout: probeTTL}
		if ip := l.local(from); ip != nil {
			d.LocalAddr = &net.TCPAddr{IP: ip}
		}
		c, err := d.Dial("tcp4", net.JoinHostPort(l.addrOf(to), port))
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(probeTTL)) // a socket that cannot time out fails the probe by blocking
		line, err := bufio.NewReader(c).ReadString('\n')
		seen = strings.TrimSpace(line)
		return err
	})
	return classify(err), seen
}

func (l *lab) udpEcho(from, to, port string) string {
	return classify(inNS(l.ns(from), func() error {
		var laddr *net.UDPAddr
		if ip := l.local(from); ip != nil {
			laddr = &net.UDPAddr{IP: ip}
		}
		c, err := net.DialUDP("udp4", laddr, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(net.JoinHostPort(l.addrOf(to), port))))
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(probeTTL)) // a socket that cannot time out fails the probe by blocking
		msg := fmt.Sprintf("probe %s>%s", from, to)
		if _, err := c.Write([]byte(msg)); err != nil {
			return err
		}
		buf := make([]byte, 64)
		n, err := c.Read(buf)
		if err == nil && string(buf[:n]) != msg {
			err = fmt.Errorf("echo %q, want %q", buf[:n], msg)
		}
		return err
	}))
}

var pingID atomic.Uint32

// ping sends one ICMP echo from a raw socket and waits for its reply.
func (l *lab) ping(from, to string) string {
	id := uint16(pingID.Add(1))
	dst := net.ParseIP(l.addrOf(to)).To4()
	return classify(inNS(l.ns(from), func() error {
		local := "0.0.0.0"
		if ip := l.local(from); ip != nil {
			local = ip.String()
		}
		c, err := net.ListenPacket("ip4:icmp", local)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(probeTTL)) // a socket that cannot time out fails the probe by blocking
		req := []byte{8, 0, 0, 0, byte(id >> 8), byte(id), 0, 1, 'h', 'f'}
		binary.BigEndian.PutUint16(req[2:], checksum(req))
		if _, err := c.WriteTo(req, &net.IPAddr{IP: dst}); err != nil {
			return err
		}
		buf := make([]byte, 1500)
		for {
			n, src, err := c.ReadFrom(buf)
			if err != nil {
				return err
			}
			// Every ICMP message of the namespace arrives here; ours is
			// the echo reply with our id from the address we pinged.
			if n >= 8 && buf[0] == 0 && binary.BigEndian.Uint16(buf[4:]) == id && src.(*net.IPAddr).IP.Equal(dst) {
				return nil
			}
		}
	}))
}

func checksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// spoof sends one UDP datagram from an endpoint with a forged source
// address, through a raw socket that writes the IP header itself.
func (l *lab) spoof(from string, src netip.Addr, to, port, payload string) {
	dst := netip.MustParseAddr(l.addrOf(to))
	p, _ := netip.ParseAddrPort("0.0.0.0:" + port)
	must(l.t, "spoof from "+from, inNS(l.ns(from), func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		udpLen := 8 + len(payload)
		pkt := make([]byte, 20+udpLen)
		pkt[0], pkt[8], pkt[9] = 0x45, 64, unix.IPPROTO_UDP // version+IHL, TTL, protocol
		copy(pkt[12:16], src.AsSlice())
		copy(pkt[16:20], dst.AsSlice())
		binary.BigEndian.PutUint16(pkt[20:], 40000)
		binary.BigEndian.PutUint16(pkt[22:], p.Port())
		binary.BigEndian.PutUint16(pkt[24:], uint16(udpLen)) // checksum 0: none
		copy(pkt[28:], payload)
		// The kernel fills in the total length, the ID and the header checksum.
		return unix.Sendto(fd, pkt, 0, &unix.SockaddrInet4{Addr: dst.As4()})
	}))
}

func classify(err error) string {
	var ne net.Error
	switch {
	case err == nil:
		return open
	case errors.As(err, &ne) && ne.Timeout():
		return blocked
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused (nothing listens: the firewall let it through)"
	}
	return err.Error()
}
