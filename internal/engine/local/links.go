package local

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// handle is a netlink socket inside one named namespace. Opening it does
// not move any thread: netlink.NewHandleAt creates the socket there.
type handle struct {
	ns   string
	fd   netns.NsHandle
	link *netlink.Handle
}

func openHandle(name string) (*handle, error) {
	fd, err := netns.GetFromName(name)
	if err != nil {
		return nil, fmt.Errorf("namespace %s: %w", name, err)
	}
	h, err := netlink.NewHandleAt(fd)
	if err != nil {
		fd.Close()
		return nil, fmt.Errorf("netlink in %s: %w", name, err)
	}
	return &handle{ns: name, fd: fd, link: h}, nil
}

func (h *handle) Close() {
	h.link.Close()
	h.fd.Close()
}

// dump retries a netlink dump that the kernel interrupted because the
// namespace changed under it (other steps run in parallel): the result of
// an interrupted dump may be incomplete.
func dump[T any](f func() (T, error)) (T, error) {
	var (
		v   T
		err error
	)
	for range 10 {
		if v, err = f(); !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	return v, err
}

func (h *handle) links() ([]netlink.Link, error) {
	return dump(h.link.LinkList)
}

func (h *handle) addrs(l netlink.Link) ([]netlink.Addr, error) {
	return dump(func() ([]netlink.Addr, error) { return h.link.AddrList(l, unix.AF_INET) })
}

func notFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf)
}

// byName returns the link, or nil when there is none.
func (h *handle) byName(name string) (netlink.Link, error) {
	l, err := h.link.LinkByName(name)
	if notFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: link %s: %w", h.ns, name, err)
	}
	return l, nil
}

func (h *handle) up(l netlink.Link) error {
	if l.Attrs().Flags&net.FlagUp != 0 {
		return nil
	}
	if err := h.link.LinkSetUp(l); err != nil {
		return fmt.Errorf("%s: up %s: %w", h.ns, l.Attrs().Name, err)
	}
	return nil
}

// ensureLo brings the loopback interface up.
func (h *handle) ensureLo() error {
	lo, err := h.byName("lo")
	if err != nil || lo == nil {
		return fmt.Errorf("%s: no lo: %w", h.ns, err)
	}
	return h.up(lo)
}

// ensureBridge makes a bridge with the given alias (which names the
// resource that owns it, for observation) and MTU, up.
func (h *handle) ensureBridge(name, alias string, mtu int) (netlink.Link, error) {
	l, err := h.byName(name)
	if err != nil {
		return nil, err
	}
	if l != nil && l.Type() != "bridge" {
		if err := h.link.LinkDel(l); err != nil {
			return nil, fmt.Errorf("%s: replace %s: %w", h.ns, name, err)
		}
		l = nil
	}
	if l == nil {
		off := false
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu}, MulticastSnooping: &off}
		if err := h.link.LinkAdd(br); err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("%s: add bridge %s: %w", h.ns, name, err)
		}
		if l, err = h.byName(name); err != nil || l == nil {
			return nil, fmt.Errorf("%s: bridge %s vanished: %w", h.ns, name, err)
		}
	}
	if alias != "" && l.Attrs().Alias != alias {
		if err := h.link.LinkSetAlias(l, alias); err != nil {
			return nil, fmt.Errorf("%s: alias %s: %w", h.ns, name, err)
		}
	}
	if l.Attrs().MTU != mtu {
		if err := h.link.LinkSetMTU(l, mtu); err != nil {
			return nil, fmt.Errorf("%s: mtu %s: %w", h.ns, name, err)
		}
	}
	return l, h.up(l)
}

// ensureVxlan makes a VXLAN device for vni over dev (the underlay, whose
// address is local), enslaved to master, up. A device with other
// parameters is replaced.
func (h *handle) ensureVxlan(name string, vni int, local netip.Addr, dev, master netlink.Link) error {
	l, err := h.byName(name)
	if err != nil {
		return err
	}
	if vx, ok := l.(*netlink.Vxlan); l != nil && (!ok || vx.VxlanId != vni || vx.VtepDevIndex != dev.Attrs().Index || !vx.SrcAddr.Equal(local.AsSlice())) {
		if err := h.link.LinkDel(l); err != nil {
			return fmt.Errorf("%s: replace %s: %w", h.ns, name, err)
		}
		l = nil
	}
	if l == nil {
		vx := &netlink.Vxlan{
			LinkAttrs:    netlink.LinkAttrs{Name: name, MTU: zoneMTU, MasterIndex: master.Attrs().Index},
			VxlanId:      vni,
			VtepDevIndex: dev.Attrs().Index,
			SrcAddr:      local.AsSlice(),
			Port:         vxlanPort,
			Learning:     true,
		}
		if err := h.link.LinkAdd(vx); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("%s: add vxlan %s: %w", h.ns, name, err)
		}
		if l, err = h.byName(name); err != nil || l == nil {
			return fmt.Errorf("%s: vxlan %s vanished: %w", h.ns, name, err)
		}
	}
	if l.Attrs().MasterIndex != master.Attrs().Index {
		if err := h.link.LinkSetMasterByIndex(l, master.Attrs().Index); err != nil {
			return fmt.Errorf("%s: enslave %s: %w", h.ns, name, err)
		}
	}
	return h.up(l)
}

// ensureFlood makes the VXLAN device send broadcast and unknown traffic to
// exactly the given peers (head-end replication: no multicast needed on
// the underlay).
func (h *handle) ensureFlood(name string, peers []netip.Addr) error {
	l, err := h.byName(name)
	if err != nil || l == nil {
		return fmt.Errorf("%s: vxlan %s missing: %w", h.ns, name, err)
	}
	neighs, err := dump(func() ([]netlink.Neigh, error) { return h.link.NeighList(l.Attrs().Index, unix.AF_BRIDGE) })
	if err != nil {
		return fmt.Errorf("%s: fdb of %s: %w", h.ns, name, err)
	}
	zero := net.HardwareAddr{0, 0, 0, 0, 0, 0}
	have := map[netip.Addr]netlink.Neigh{}
	for _, n := range neighs {
		if a, ok := netip.AddrFromSlice(n.IP); ok && n.HardwareAddr.String() == zero.String() {
			have[a.Unmap()] = n
		}
	}
	for _, p := range peers {
		if _, ok := have[p]; ok {
			continue
		}
		n := &netlink.Neigh{LinkIndex: l.Attrs().Index, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF,
			State: netlink.NUD_PERMANENT, HardwareAddr: zero, IP: p.AsSlice()}
		if err := h.link.NeighAppend(n); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("%s: flood %s to %s: %w", h.ns, name, p, err)
		}
	}
	for a, n := range have {
		if !slices.Contains(peers, a) {
			if err := h.link.NeighDel(&n); err != nil {
				return fmt.Errorf("%s: stale flood entry %s on %s: %w", h.ns, a, name, err)
			}
		}
	}
	return nil
}

// ensureVeth makes a veth pair: name here, peer (renamed peerName) in
// the peer handle's namespace, with the given MTU and peer MAC. An
// existing pair whose far end is not where it should be is replaced.
func (h *handle) ensureVeth(name string, peer *handle, peerName string, mtu int, peerMAC net.HardwareAddr) (netlink.Link, netlink.Link, error) {
	l, err := h.byName(name)
	if err != nil {
		return nil, nil, err
	}
	p, err := peer.byName(peerName)
	if err != nil {
		return nil, nil, err
	}
	if l != nil && p != nil {
		if _, ok := l.(*netlink.Veth); ok {
			return l, p, nil
		}
	}
	// Half a pair, or something else by that name: start over.
	for _, x := range []struct {
		h *handle
		l netlink.Link
	}{{h, l}, {peer, p}} {
		if x.l != nil {
			if err := x.h.link.LinkDel(x.l); err != nil && !notFound(err) {
				return nil, nil, fmt.Errorf("%s: remove stale %s: %w", x.h.ns, x.l.Attrs().Name, err)
			}
		}
	}
	v := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: name, MTU: mtu},
		PeerName:      peerName,
		PeerMTU:       uint32(mtu),
		PeerNamespace: netlink.NsFd(int(peer.fd)),
	}
	if peerMAC != nil {
		v.PeerHardwareAddr = peerMAC
	}
	if err := h.link.LinkAdd(v); err != nil {
		return nil, nil, fmt.Errorf("%s: add veth %s/%s: %w", h.ns, name, peerName, err)
	}
	if l, err = h.byName(name); err != nil || l == nil {
		return nil, nil, fmt.Errorf("%s: veth %s vanished: %w", h.ns, name, err)
	}
	if p, err = peer.byName(peerName); err != nil || p == nil {
		return nil, nil, fmt.Errorf("%s: veth peer %s vanished: %w", peer.ns, peerName, err)
	}
	return l, p, nil
}

// ensureMaster enslaves l to master.
func (h *handle) ensureMaster(l, master netlink.Link) error {
	if l.Attrs().MasterIndex == master.Attrs().Index {
		return nil
	}
	if err := h.link.LinkSetMasterByIndex(l, master.Attrs().Index); err != nil {
		return fmt.Errorf("%s: enslave %s to %s: %w", h.ns, l.Attrs().Name, master.Attrs().Name, err)
	}
	return nil
}

// ensureAddr makes p the only IPv4 address of l.
func (h *handle) ensureAddr(l netlink.Link, p netip.Prefix) error {
	addrs, err := h.addrs(l)
	if err != nil {
		return fmt.Errorf("%s: addresses of %s: %w", h.ns, l.Attrs().Name, err)
	}
	found := false
	for _, a := range addrs {
		ap, _ := netip.AddrFromSlice(a.IP)
		ones, _ := a.Mask.Size()
		if netip.PrefixFrom(ap.Unmap(), ones) == p {
			found = true
			continue
		}
		if err := h.link.AddrDel(l, &a); err != nil {
			return fmt.Errorf("%s: remove address %s from %s: %w", h.ns, a.IPNet, l.Attrs().Name, err)
		}
	}
	if found {
		return nil
	}
	a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}}
	if err := h.link.AddrAdd(l, a); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("%s: address %s on %s: %w", h.ns, p, l.Attrs().Name, err)
	}
	return nil
}

// hasAddr reports whether l carries p.
func (h *handle) hasAddr(l netlink.Link, p netip.Prefix) bool {
	addrs, err := h.addrs(l)
	if err != nil {
		return false
	}
	for _, a := range addrs {
		ap, _ := netip.AddrFromSlice(a.IP)
		ones, _ := a.Mask.Size()
		if netip.PrefixFrom(ap.Unmap(), ones) == p {
			return true
		}
	}
	return false
}

// ensureRoute routes dst (nil: default) via gw.
func (h *handle) ensureRoute(dst *netip.Prefix, gw netip.Addr) error {
	r := &netlink.Route{Gw: gw.AsSlice()}
	if dst != nil {
		r.Dst = &net.IPNet{IP: dst.Addr().AsSlice(), Mask: net.CIDRMask(dst.Bits(), 32)}
	}
	if err := h.link.RouteReplace(r); err != nil {
		return fmt.Errorf("%s: route %v via %s: %w", h.ns, dst, gw, err)
	}
	return nil
}

// deleteRoute removes the route to dst; absent is success.
func (h *handle) deleteRoute(dst netip.Prefix) error {
	r := &netlink.Route{Dst: &net.IPNet{IP: dst.Addr().AsSlice(), Mask: net.CIDRMask(dst.Bits(), 32)}}
	if err := h.link.RouteDel(r); err != nil && !errors.Is(err, unix.ESRCH) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("%s: delete route %s: %w", h.ns, dst, err)
	}
	return nil
}

// hasRoute reports whether a route to dst exists.
func (h *handle) hasRoute(dst netip.Prefix) bool {
	routes, err := dump(func() ([]netlink.Route, error) {
		return h.link.RouteListFiltered(unix.AF_INET, &netlink.Route{Dst: &net.IPNet{IP: dst.Addr().AsSlice(), Mask: net.CIDRMask(dst.Bits(), 32)}}, netlink.RT_FILTER_DST)
	})
	return err == nil && len(routes) > 0
}

// deleteLink removes a link by name; absent is success.
func (h *handle) deleteLink(name string) error {
	l, err := h.byName(name)
	if err != nil || l == nil {
		return err
	}
	// ENODEV: the link went between finding and deleting it, as a veth
	// does when the namespace of its peer is deleted.
	if err := h.link.LinkDel(l); err != nil && !notFound(err) && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("%s: delete %s: %w", h.ns, name, err)
	}
	return nil
}
