package firewall_test

import (
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/engine/local/firewall"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TestUnderlayCarriesZonesBetweenNodes builds a zone as the local engine
// does across nodes: a bridge per node and on the edge, joined by VXLAN
// over an underlay bridge on the edge, one instance on each node. Their
// traffic to each other crosses the edge's underlay bridge inside VXLAN;
// their traffic to the gateway is VXLAN to the edge itself. Both need the
// underlay rules, and pass with them.
func TestUnderlayCarriesZonesBetweenNodes(t *testing.T) {
	requireRoot(t)
	const vni = 10201
	zone := netip.MustParsePrefix("10.2.1.0/24")
	gw := netip.MustParseAddr("10.2.1.1")
	edgeUL := netip.MustParseAddr("169.254.0.1")

	l := &lab{t: t, hosts: map[string]*host{}, udp: map[string]*udpLog{}}
	l.edge = newNS(t, "uedge")
	sysctl(t, l.edge, "net/ipv4/ip_forward", "1")
	sysctl(t, l.edge, "net/bridge/bridge-nf-call-iptables", "1")
	eh := handle(t, l.edge)
	up(t, eh, "lo")
	ul := bridge(t, eh, "ul")
	addr(t, eh, ul, netip.PrefixFrom(edgeUL, 24))
	br := bridge(t, eh, firewall.BridgeName(vni))
	addr(t, eh, br, netip.PrefixFrom(gw, zone.Bits()))

	nodes := []netip.Addr{netip.MustParseAddr("169.254.0.2"), netip.MustParseAddr("169.254.0.3")}
	vtep := func(h *netlink.Handle, local netip.Addr, under, master netlink.Link) {
		vx := &netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: fmt.Sprintf("vx%d", vni), MasterIndex: master.Attrs().Index},
			VxlanId: vni, VtepDevIndex: under.Attrs().Index, SrcAddr: local.AsSlice(), Port: firewall.DefaultVXLANPort, Learning: true}
		must(t, "vxlan", h.LinkAdd(vx))
		link, err := h.LinkByName(vx.Name)
		must(t, "vxlan", err)
		for _, peer := range append([]netip.Addr{edgeUL}, nodes...) {
			if peer == local {
				continue
			}
			must(t, "flood", h.NeighAppend(&netlink.Neigh{LinkIndex: link.Attrs().Index, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF,
				State: netlink.NUD_PERMANENT, HardwareAddr: net.HardwareAddr{0, 0, 0, 0, 0, 0}, IP: peer.AsSlice()}))
		}
		up(t, h, vx.Name)
	}
	vtep(eh, edgeUL, ul, br)
	for i, under := range nodes {
		node := newNS(t, fmt.Sprintf("node%d", i))
		sysctl(t, node, "net/bridge/bridge-nf-call-iptables", "0")
		nh := handle(t, node)
		up(t, nh, "lo")
		edgeSide := fmt.Sprintf("u%d", i)
		must(t, edgeSide, eh.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: edgeSide, MasterIndex: ul.Attrs().Index}, PeerName: "ul0", PeerNamespace: netlink.NsFd(int(node))}))
		up(t, eh, edgeSide)
		ul0, err := nh.LinkByName("ul0")
		must(t, "ul0", err)
		addr(t, nh, ul0, netip.PrefixFrom(under, 24))
		up(t, nh, "ul0")
		nbr := bridge(t, nh, firewall.BridgeName(vni))
		vtep(nh, under, ul0, nbr)

		name := fmt.Sprintf("i%d", i)
		h := &host{name: name, ns: newNS(t, name), ip: netip.AddrFrom4([4]byte{10, 2, 1, byte(10 + i)}), gw: gw}
		l.hosts[name] = h
		ih := handle(t, h.ns)
		up(t, ih, "lo")
		must(t, "veth", nh.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "v-" + name, MasterIndex: nbr.Attrs().Index}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(h.ns))}))
		up(t, nh, "v-"+name)
		eth, err := ih.LinkByName("eth0")
		must(t, "eth0", err)
		addr(t, ih, eth, netip.PrefixFrom(h.ip, zone.Bits()))
		up(t, ih, "eth0")
		must(t, "route", ih.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Gw: gw.AsSlice()}))
	}
	l.listenTCP(l.hosts["i1"].ns, l.hosts["i1"].ip.String()+":8080")

	vniOf := vni
	in := firewall.Input{WAN: "wan0", Underlay: "ul", Zones: []compile.Zone{{Name: "app", CIDR: zone.String(), Gateway: gw.String(), VNI: &vniOf}}}
	probes := []probe{
		{"i0", "i1", "tcp", "8080", true}, // the other node, through the edge's underlay bridge
		{"i0", "gw:i0", "icmp", "", true}, // VXLAN to the edge
		{"i1", "gw:i1", "icmp", "", true},
	}
	check := func(in firewall.Input, want func(probe) string) {
		t.Helper()
		if err := firewall.Apply(l.edge, in); err != nil {
			t.Fatal(err)
		}
		for i, got := range l.run(probes) {
			if w := want(probes[i]); got != w {
				t.Errorf("underlay %q: %v: %s, want %s", in.Underlay, probes[i], got, w)
			}
		}
	}
	check(in, func(probe) string { return open })
	// Without the underlay rules the firewall is what stops them: the
	// probes above do not pass by some other way.
	without := in
	without.Underlay = ""
	check(without, func(probe) string { return blocked })
}

func bridge(t *testing.T, h *netlink.Handle, name string) netlink.Link {
	t.Helper()
	must(t, "bridge "+name, h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}))
	link, err := h.LinkByName(name)
	must(t, name, err)
	up(t, h, name)
	return link
}
