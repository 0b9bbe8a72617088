package local

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"

	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/engine/local/firewall"
	"github.com/holdfast/holdfast/internal/spec"
)

func toNetlinkAddr(p netip.Prefix) *netlink.Addr {
	return &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}}
}

// zoneNet is what a network resource needs of its zone.
type zoneNet struct {
	vni     int
	cidr    netip.Prefix
	gateway netip.Prefix // the gateway address with the zone's prefix length
}

func (e *Engine) zoneNet(name string) (zoneNet, error) {
	z, ok := e.zone(name)
	if !ok || z.VNI == nil {
		return zoneNet{}, fmt.Errorf("zone %q is not a network in the desired state", name)
	}
	cidr, err := netip.ParsePrefix(z.CIDR)
	if err != nil {
		return zoneNet{}, err
	}
	gw, err := netip.ParseAddr(z.Gateway)
	if err != nil {
		return zoneNet{}, err
	}
	return zoneNet{vni: *z.VNI, cidr: cidr, gateway: netip.PrefixFrom(gw, cidr.Bits())}, nil
}

// ensureNetwork makes a zone at a site: a bridge with the gateway on the
// edge, a bridge on every node, VXLAN joining them all, and the internet's
// route to the zone through this site's edge.
func (e *Engine) ensureNetwork(siteName, zoneName string) error {
	site, ok := e.site(siteName)
	if !ok {
		return fmt.Errorf("site %q is not in the desired state", siteName)
	}
	zn, err := e.zoneNet(zoneName)
	if err != nil {
		return err
	}
	index, err := e.siteIndex(siteName)
	if err != nil {
		return err
	}
	id := compile.NetworkID(siteName, zoneName)
	all := []netip.Addr{edgeUnder}
	for i := range site.Nodes {
		all = append(all, nodeUnder(i))
	}
	others := func(self netip.Addr) []netip.Addr {
		var out []netip.Addr
		for _, a := range all {
			if a != self {
				out = append(out, a)
			}
		}
		return out
	}
	he, err := openHandle(e.edgeNS(siteName))
	if err != nil {
		return err
	}
	defer he.Close()
	if err := ensureSegment(he, "ul", id, zn.vni, edgeUnder, others(edgeUnder)); err != nil {
		return err
	}
	br, err := he.byName(bridgeName(zn.vni))
	if err != nil || br == nil {
		return fmt.Errorf("%s: bridge %s vanished: %w", he.ns, bridgeName(zn.vni), err)
	}
	if err := he.ensureAddr(br, zn.gateway); err != nil {
		return err
	}
	for i, node := range site.Nodes {
		hn, err := openHandle(e.nodeNS(siteName, node))
		if err != nil {
			return err
		}
		err = ensureSegment(hn, "ul0", id, zn.vni, nodeUnder(i), others(nodeUnder(i)))
		hn.Close()
		if err != nil {
			return err
		}
	}
	hi, err := openHandle(e.inetNS())
	if err != nil {
		return err
	}
	defer hi.Close()
	return hi.ensureRoute(&zn.cidr, edgeWAN(index))
}

// ensureSegment makes one namespace's part of a zone: bridge, VXLAN over
// the underlay device, flooding to the other endpoints.
func ensureSegment(h *handle, underlay string, id compile.ID, vni int, local netip.Addr, peers []netip.Addr) error {
	dev, err := h.byName(underlay)
	if err != nil || dev == nil {
		return fmt.Errorf("%s: underlay %s missing (is the site made?): %w", h.ns, underlay, err)
	}
	br, err := h.ensureBridge(bridgeName(vni), id.String(), zoneMTU)
	if err != nil {
		return err
	}
	if err := h.ensureVxlan(vxlanName(vni), vni, local, dev, br); err != nil {
		return err
	}
	return h.ensureFlood(vxlanName(vni), peers)
}

// deleteNetwork removes a zone from a site. When the zone is no longer
// desired its VNI and subnet are read back from the edge's bridge, found by
// its alias.
func (e *Engine) deleteNetwork(siteName, zoneName string) error {
	id := compile.NetworkID(siteName, zoneName)
	edge := e.edgeNS(siteName)
	if !nsExists(edge) {
		return nil // the site is gone, and the network with it
	}
	he, err := openHandle(edge)
	if err != nil {
		return err
	}
	defer he.Close()
	vni, cidr, found, err := findNetwork(he, id)
	if err != nil || !found {
		return err
	}
	nodes, err := listNS(e.prefix() + "n." + siteName + ".")
	if err != nil {
		return err
	}
	for _, ns := range nodes {
		if !nsExists(ns) {
			continue // removed with its node meanwhile
		}
		hn, err := openHandle(ns)
		if err != nil {
			return err
		}
		err = deleteSegment(hn, vni)
		hn.Close()
		if err != nil {
			return err
		}
	}
	if cidr.IsValid() && nsExists(e.inetNS()) {
		hi, err := openHandle(e.inetNS())
		if err != nil {
			return err
		}
		defer hi.Close()
		if err := hi.deleteRoute(cidr); err != nil {
			return err
		}
	}
	return deleteSegment(he, vni)
}

func deleteSegment(h *handle, vni int) error {
	if err := h.deleteLink(vxlanName(vni)); err != nil {
		return err
	}
	return h.deleteLink(bridgeName(vni))
}

// findNetwork finds the edge bridge made for network id and reads its VNI
// and subnet back.
func findNetwork(he *handle, id compile.ID) (vni int, cidr netip.Prefix, found bool, err error) {
	links, err := he.links()
	if err != nil {
		return 0, netip.Prefix{}, false, fmt.Errorf("%s: links: %w", he.ns, err)
	}
	for _, l := range links {
		if l.Attrs().Alias != id.String() || l.Type() != "bridge" {
			continue
		}
		if _, err := fmt.Sscanf(l.Attrs().Name, "br%d", &vni); err != nil {
			continue
		}
		addrs, _ := he.addrs(l)
		for _, a := range addrs {
			ap, _ := netip.AddrFromSlice(a.IP)
			ones, _ := a.Mask.Size()
			cidr = netip.PrefixFrom(ap.Unmap(), ones).Masked()
		}
		return vni, cidr, true, nil
	}
	return 0, netip.Prefix{}, false, nil
}

// networksOn lists the network resources whose bridges are on an edge:
// each bridge carries its resource's ID as its alias.
func networksOn(he *handle) ([]compile.ID, error) {
	links, err := he.links()
	if err != nil {
		return nil, fmt.Errorf("%s: links: %w", he.ns, err)
	}
	var ids []compile.ID
	for _, l := range links {
		if l.Type() != "bridge" {
			continue
		}
		if id, err := compile.ParseID(l.Attrs().Alias); err == nil && id.Kind == compile.ResNetwork {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// ensureFirewall applies the site's ruleset on its edge in one transaction.
func (e *Engine) ensureFirewall(site string) error {
	he, err := openHandle(e.edgeNS(site))
	if err != nil {
		return err
	}
	defer he.Close()
	in := e.firewallInput(site)
	// Replacing an intact table would be a write for nothing: a new
	// ruleset generation, and a moment of empty chains (see Apply).
	if drift, err := firewall.Verify(he.fd, in); err != nil || len(drift) > 0 {
		if err := firewall.Apply(he.fd, in); err != nil {
			return err
		}
	}
	return e.ensureIsolation(he, site)
}

// ensureIsolation keeps the instances of the site's isolating zones apart
// on every node (firewall.Isolation), writing nothing where a node's table
// is intact.
func (e *Engine) ensureIsolation(he *handle, site string) error {
	st, ok := e.site(site)
	if !ok {
		return fmt.Errorf("site %q is not in the desired state", site)
	}
	for _, node := range st.Nodes {
		err := e.onNode(site, node, func(hn *handle) error {
			in, err := e.isolationInput(he, site, node)
			if err != nil {
				return err
			}
			if drift, err := firewall.VerifyIsolation(hn.fd, in); err == nil && len(drift) == 0 {
				return nil
			}
			return firewall.ApplyIsolation(hn.fd, in)
		})
		if err != nil {
			return fmt.Errorf("node %s: %w", node, err)
		}
	}
	return nil
}

// isolationDrift names what differs in the nodes' isolation tables.
func (e *Engine) isolationDrift(he *handle, site string) []string {
	st, ok := e.site(site)
	if !ok {
		return nil
	}
	var drift []string
	for _, node := range st.Nodes {
		if !nsExists(e.nodeNS(site, node)) {
			continue // the site's drift names it
		}
		err := e.onNode(site, node, func(hn *handle) error {
			in, err := e.isolationInput(he, site, node)
			if err != nil {
				return err
			}
			d, err := firewall.VerifyIsolation(hn.fd, in)
			for _, x := range d {
				drift = append(drift, "node "+node+": "+x)
			}
			return err
		})
		if err != nil {
			drift = append(drift, "node "+node+": cannot read the isolation table: "+err.Error())
		}
	}
	return drift
}

func (e *Engine) onNode(site, node string, f func(hn *handle) error) error {
	ns := e.nodeNS(site, node)
	if !nsExists(ns) {
		return fmt.Errorf("namespace %s is missing", ns)
	}
	hn, err := openHandle(ns)
	if err != nil {
		return err
	}
	defer hn.Close()
	return f(hn)
}

// isolationInput is what one node keeps apart: the site's zones that
// isolate their instances, with the gateway's MAC read from the edge's
// bridge and the node's ports of the zone's instances.
func (e *Engine) isolationInput(he *handle, site, node string) (firewall.Isolation, error) {
	var out firewall.Isolation
	for _, z := range e.desired.Zones {
		if !z.Present || !z.IsolateInstances || z.VNI == nil || !slices.Contains(z.Sites, site) {
			continue
		}
		zn, err := e.zoneNet(z.Name)
		if err != nil {
			return out, err
		}
		br, err := he.byName(bridgeName(zn.vni))
		if err != nil || br == nil {
			return out, fmt.Errorf("zone %q has no bridge on the edge (is the network made?): %w", z.Name, err)
		}
		iz := firewall.IsolatedZone{Name: z.Name, VNI: zn.vni, CIDR: zn.cidr, Gateway: zn.gateway.Addr(),
			GatewayMAC: br.Attrs().HardwareAddr, Flows: e.desired.Flows}
		for _, in := range e.desired.Instances {
			if in.Site != site || in.Node != node {
				continue
			}
			for _, nic := range in.NICs {
				if nic.Zone == z.Name {
					iz.Ports = append(iz.Ports, nicLink(in.VMID, nic.Index))
				}
			}
		}
		out.Zones = append(out.Zones, iz)
	}
	return out, nil
}

// firewallInput is what a site's edge enforces: the cloud's flows, with
// VXLAN from the site's nodes let in on the underlay.
// Its public address is its uplink's: what the site's ingress forwards
// is sent on from there, and the ports the node keeps are the edge's.
func (e *Engine) firewallInput(site string) firewall.Input {
	in := firewall.FromState(e.desired, site, wanIf)
	in.Underlay, in.VXLANPort = "ul", vxlanPort
	for _, st := range e.desired.Sites {
		if st.Name != site || st.Ingress == nil {
			continue
		}
		if addr, err := SiteAddress(e.desired, site); err == nil {
			in.Ingress = &firewall.Ingress{Address: addr, Forward: st.Ingress.Forward, HostPorts: st.Ingress.HostPorts}
		}
	}
	return in
}

// compileSpec tells the compiler what the local engine gives a site.
type compileSpec struct{}

func (compileSpec) Settings(*spec.Spec, string, *spec.Site) any { return nil }

// PublicAddress is the site's edge uplink address: the spec's ingress
// address is for a real site's router.
func (compileSpec) PublicAddress(st *compile.State, site string) string {
	if a, err := SiteAddress(st, site); err == nil {
		return a.String()
	}
	return ""
}

// SiteAddress is the public address the local engine gives site of st:
// its edge's uplink into the internet namespace.
func SiteAddress(st *compile.State, site string) (netip.Addr, error) {
	for i, s := range st.Sites {
		if s.Name == site {
			return edgeWAN(i), nil
		}
	}
	return netip.Addr{}, fmt.Errorf("site %q is not in the desired state", site)
}

func (e *Engine) deleteFirewall(ctx context.Context, site string) error {
	if err := e.deleteEdgeServices(ctx, site); err != nil {
		return err
	}
	edge := e.edgeNS(site)
	if !nsExists(edge) {
		return nil
	}
	he, err := openHandle(edge)
	if err != nil {
		return err
	}
	defer he.Close()
	nodes, err := listNS(e.prefix() + "n." + site + ".")
	if err != nil {
		return err
	}
	for _, ns := range nodes {
		hn, err := openHandle(ns)
		if err != nil {
			return err
		}
		err = firewall.DeleteIsolation(hn.fd)
		hn.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", ns, err)
		}
	}
	return firewall.Delete(he.fd)
}

// hasFirewall reports whether the edge has Holdfast's table.
func hasFirewall(he *handle) (bool, error) {
	conn, err := nftables.New(nftables.WithNetNSFd(int(he.fd)))
	if err != nil {
		return false, err
	}
	tables, err := conn.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return false, fmt.Errorf("%s: nftables: %w", he.ns, err)
	}
	for _, t := range tables {
		if t.Name == firewall.TableName {
			return true, nil
		}
	}
	return false, nil
}
