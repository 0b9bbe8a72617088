package spec

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Special names in access-to, pinhole-allowed-from, ingress and egress.
const (
	Internet = "internet"
	All      = "all"
)

// TypeIDs maps a zone type to its TAPPaaS typeId. TAPPaaS's own zones.json
// also uses "Test" (8) for its probe zones, so Holdfast accepts it too.
var TypeIDs = map[string]int{
	"management": 0, "service": 2, "client": 3, "iot": 4, "guest": 5, "dmz": 6, "overlay": 7, "test": 8,
}

// VMID bounds as Proxmox VE accepts them.
const (
	MinVMID = 100
	MaxVMID = 999999999
)

// Validate checks references and zone semantics, applies network defaults
// (filling each Zone.Net) and returns every finding. The spec may be compiled
// only when the result has no errors.
func Validate(s *Spec) Diagnostics {
	v := &validator{s: s}
	if s.Cloud == nil {
		file := ""
		if len(s.Files) > 0 {
			file = s.Files[0]
		}
		v.diags.Errorf(Pos{File: file, Line: 1, Col: 1}, "no cloud section: add cloud: {name: ..., domain: ...}")
	}
	v.sites()
	v.zones()
	v.roles()
	v.tenancy()
	v.tenantZones()
	v.groups()
	v.instances()
	v.overlay()
	v.spread()
	v.routes()
	v.frontDoors()
	v.dns()
	v.diags.Sort()
	s.valid = !v.diags.HasErrors()
	return v.diags
}

type validator struct {
	s     *Spec
	diags Diagnostics
}

func (v *validator) sites() {
	if len(v.s.Sites) == 0 {
		file := ""
		if len(v.s.Files) > 0 {
			file = v.s.Files[0]
		}
		v.diags.Errorf(Pos{File: file, Line: 1, Col: 1}, "no sites: a cloud needs at least one site")
	}
	for _, name := range SortedNames(v.s.Sites) {
		site := v.s.Sites[name]
		if len(site.Nodes) == 0 && site.Has("nodes") {
			v.diags.Errorf(site.FieldPos("nodes"), "site %q: nodes is empty; a site needs at least one node", name)
		}
		seen := map[string]bool{}
		for _, n := range site.Nodes {
			if err := CheckName(n); err != nil {
				v.diags.Errorf(site.FieldPos("nodes"), "site %q: node %q is not a valid name: %v", name, n, err)
			}
			if seen[n] {
				v.diags.Errorf(site.FieldPos("nodes"), "site %q: node %q listed twice", name, n)
			}
			seen[n] = true
		}
		v.engineBlock(name, site)
		if site.Peer != "" {
			peer, ok := v.s.Sites[site.Peer]
			switch {
			case site.Peer == name:
				v.diags.Errorf(site.FieldPos("peer"), "site %q: a site cannot be its own peer", name)
			case !ok:
				v.diags.Errorf(site.FieldPos("peer"), "site %q: peer %q is not a site%s", name, site.Peer, didYouMean(site.Peer, v.s.Sites))
			case peer.Peer == "":
				v.diags.Errorf(site.FieldPos("peer"), "site %q: peer %q does not name it back; peers must name each other (add peer: %s to site %q)", name, site.Peer, name, site.Peer)
			case peer.Peer != name:
				v.diags.Errorf(site.FieldPos("peer"), "site %q: peer %q has peer %q; peers must name each other", name, site.Peer, peer.Peer)
			}
		}
	}
}

// zones resolves each zone's network and checks it alone, then checks
// zones against each other.
func (v *validator) zones() {
	for _, name := range SortedNames(v.s.Zones) {
		v.zoneNet(name, v.s.Zones[name])
	}
	v.vlanCollisions()
	v.cidrOverlaps()
	isolated := v.isolatedZones()
	for _, name := range SortedNames(v.s.Zones) {
		z := v.s.Zones[name]
		v.zoneList(z, "access-to", z.AccessTo, true)
		v.zoneList(z, "pinhole-allowed-from", z.PinholeAllowedFrom, false)
		for _, site := range z.Sites {
			if _, ok := v.s.Sites[site]; !ok {
				v.diags.Errorf(z.FieldPos("sites"), "zone %q: site %q does not exist%s", name, site, didYouMean(site, v.s.Sites))
			}
		}
		if z.IsolateInstances && z.Net.VLAN < 0 {
			v.diags.Errorf(z.FieldPos("isolate-instances"), "zone %q: isolate-instances needs a zone with interfaces; an overlay zone has none (on the overlay, groups' can-access decides who reaches whom)", name)
		}
		if z.Type == "management" {
			continue
		}
		for _, t := range z.AccessTo {
			if tz, ok := v.s.Zones[t]; ok && tz.Isolated && t != name {
				v.diags.Errorf(z.FieldPos("access-to"), "zone %q: access-to lists isolated zone %q; only a management zone may, others reach it through pinholes (add %q to its pinhole-allowed-from)", name, t, name)
			}
			if t == All {
				// A zone always reaches itself; only other isolated zones count.
				if iso := slices.DeleteFunc(slices.Clone(isolated), func(n string) bool { return n == name }); len(iso) > 0 {
					v.diags.Errorf(z.FieldPos("access-to"), "zone %q: access-to 'all' would include isolated zone(s) %s; only a management zone may", name, strings.Join(iso, ", "))
				}
			}
		}
	}
}

func (v *validator) isolatedZones() []string {
	var out []string
	for _, name := range SortedNames(v.s.Zones) {
		if v.s.Zones[name].Isolated {
			out = append(out, name)
		}
	}
	return out
}

// zoneNet derives a zone's network (state, VLAN, subnet, gateway, DHCP
// range) into z.Net, reporting what is wrong with what was given.
func (v *validator) zoneNet(name string, z *Zone) {
	v.zoneState(name, z)
	v.zoneVLAN(name, z)
	if !v.zonePrefix(name, z) {
		return // no subnet: no gateway or range to place in it
	}
	v.zoneGateway(name, z)
	v.zoneDHCP(name, z)
}

// zoneState sets whether the zone exists, and its type and sub ids.
func (v *validator) zoneState(name string, z *Zone) {
	n := &z.Net
	// Set even when the subnet is bad: the zone's instances must still see
	// its real state.
	n.State = z.State
	if n.State == "" {
		n.State = "active"
	}
	n.Present = n.State == "active" || n.State == "mandatory" || n.State == "manual"
	n.TypeID = TypeIDs[z.Type]
	if z.SubID != nil {
		n.SubID = *z.SubID
		if n.SubID < 0 || n.SubID > 99 {
			v.diags.Errorf(z.FieldPos("sub-id"), "zone %q: sub-id %d is outside 0-99", name, n.SubID)
		}
	}
}

// zoneVLAN sets the zone's VLAN: none on an overlay, the given one, or
// typeId*100+subId.
func (v *validator) zoneVLAN(name string, z *Zone) {
	n := &z.Net
	computed := n.TypeID*100 + n.SubID
	switch {
	case z.Type == "overlay":
		n.VLAN = -1
		if z.VLAN != nil && *z.VLAN != 0 {
			v.diags.Warnf(z.FieldPos("vlan"), "zone %q: overlay zones carry no VLAN; vlan %d is ignored", name, *z.VLAN)
		}
	case z.VLAN != nil:
		n.VLAN = *z.VLAN
		if n.VLAN < 0 || n.VLAN > 4094 {
			v.diags.Errorf(z.FieldPos("vlan"), "zone %q: vlan %d is outside 0-4094", name, n.VLAN)
		} else if n.VLAN != computed && z.Tenant == "" { // tenant zones take theirs from the pool
			v.diags.Warnf(z.FieldPos("vlan"), "zone %q: vlan %d differs from typeId*100+subId = %d", name, n.VLAN, computed)
		}
	default:
		n.VLAN = computed
	}

}

// zonePrefix sets the zone's subnet, the given one or 10.typeId.subId.0/24;
// false when the given one is unusable.
func (v *validator) zonePrefix(name string, z *Zone) bool {
	n := &z.Net
	if z.CIDR != "" {
		p, err := netip.ParsePrefix(z.CIDR)
		switch {
		case err != nil:
			v.diags.Errorf(z.FieldPos("cidr"), "zone %q: cidr %q is not a subnet such as 10.2.10.0/24", name, z.CIDR)
			return false
		case !p.Addr().Is4():
			v.diags.Errorf(z.FieldPos("cidr"), "zone %q: cidr %q: only IPv4 zones are supported", name, z.CIDR)
			return false
		case p.Masked() != p:
			v.diags.Errorf(z.FieldPos("cidr"), "zone %q: cidr %q has host bits set; did you mean %s?", name, z.CIDR, p.Masked())
			return false
		case p.Bits() > 30:
			v.diags.Errorf(z.FieldPos("cidr"), "zone %q: cidr %q is too small for a gateway and hosts (at most /30)", name, z.CIDR)
			return false
		}
		n.Prefix = p
	} else {
		n.Prefix = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(n.TypeID), byte(n.SubID), 0}), 24)
	}
	return true
}

// zoneGateway sets the zone's gateway, the given one or the subnet's first
// host.
func (v *validator) zoneGateway(name string, z *Zone) {
	n := &z.Net
	size := PrefixSize(n.Prefix)
	if z.Gateway != "" {
		gw, err := netip.ParseAddr(z.Gateway)
		switch {
		case err != nil || !gw.Is4():
			v.diags.Errorf(z.FieldPos("gateway"), "zone %q: gateway %q is not an IPv4 address", name, z.Gateway)
		case !n.Prefix.Contains(gw):
			v.diags.Errorf(z.FieldPos("gateway"), "zone %q: gateway %s is outside the zone's cidr %s", name, gw, n.Prefix)
		case gw == n.Prefix.Addr() || gw == AddrAt(n.Prefix, size-1):
			v.diags.Errorf(z.FieldPos("gateway"), "zone %q: gateway %s is the network or broadcast address", name, gw)
		default:
			n.Gateway = gw
		}
	} else {
		n.Gateway = AddrAt(n.Prefix, 1)
	}

}

// zoneDHCP sets the zone's DHCP range, the given one or .50-.250 where the
// subnet holds it, and never over the gateway.
func (v *validator) zoneDHCP(name string, z *Zone) {
	n := &z.Net
	size := PrefixSize(n.Prefix)
	dhcp := z.Type != "overlay"
	if z.DHCP != nil {
		dhcp = *z.DHCP
	}
	if dhcp {
		start, end := 50, 250
		explicit := z.DHCPStart != nil || z.DHCPEnd != nil
		if z.DHCPStart != nil {
			start = *z.DHCPStart
		}
		if z.DHCPEnd != nil {
			end = *z.DHCPEnd
		}
		field := "dhcp-end"
		if z.DHCPStart != nil && (start < 1 || int64(start) >= size-1) || z.DHCPEnd == nil {
			field = "dhcp-start"
		}
		switch {
		case start > end:
			v.diags.Errorf(z.FieldPos("dhcp-start"), "zone %q: DHCP range .%d-.%d is reversed", name, start, end)
		case start < 1 || int64(end) >= size-1:
			if explicit {
				v.diags.Errorf(z.FieldPos(field), "zone %q: DHCP range offsets %d-%d fall outside the cidr %s (hosts are offsets 1-%d)", name, start, end, n.Prefix, size-2)
			}
			// A subnet too small for the default range simply has none.
		default:
			n.DHCPStart, n.DHCPEnd = AddrAt(n.Prefix, int64(start)), AddrAt(n.Prefix, int64(end))
			if n.Gateway.IsValid() && InRange(n.Gateway, n.DHCPStart, n.DHCPEnd) {
				at := "gateway"
				if !z.Has(at) {
					at = "dhcp-start" // the default gateway: the range moved onto it
					if !z.Has(at) {
						at = "dhcp-end"
					}
				}
				v.diags.Errorf(z.FieldPos(at), "zone %q: gateway %s is inside the DHCP range %s-%s", name, n.Gateway, n.DHCPStart, n.DHCPEnd)
			}
		}
	} else if z.DHCPStart != nil || z.DHCPEnd != nil {
		v.diags.Warnf(z.FieldPos("dhcp-start"), "zone %q: dhcp is off; dhcp-start/dhcp-end are ignored", name)
	}
}

// zoneSites returns the sites a zone is carried by.
func (v *validator) zoneSites(z *Zone) []string {
	if len(z.Sites) > 0 {
		return z.Sites
	}
	return SortedNames(v.s.Sites)
}

func sharesSite(a, b []string) bool {
	for _, x := range a {
		if slices.Contains(b, x) {
			return true
		}
	}
	return false
}

func (v *validator) vlanCollisions() {
	byVLAN := map[int][]string{}
	for _, name := range SortedNames(v.s.Zones) {
		z := v.s.Zones[name]
		if z.Net.VLAN >= 0 && z.Net.VLAN <= 4094 { // out-of-range VLANs are already errors
			byVLAN[z.Net.VLAN] = append(byVLAN[z.Net.VLAN], name)
		}
	}
	for _, vlan := range SortedKeys(byVLAN) {
		names := byVLAN[vlan]
		for i := 1; i < len(names); i++ {
			for _, prev := range names[:i] {
				a, b := v.s.Zones[prev], v.s.Zones[names[i]]
				if sharesSite(v.zoneSites(a), v.zoneSites(b)) {
					v.diags.Errorf(b.FieldPos("vlan"), "zone %q: VLAN %d collides with zone %q (%s)", names[i], vlan, prev, a.FieldPos("vlan"))
					break
				}
			}
		}
	}
}

// cidrOverlaps finds overlapping subnets in O(n log n): sorted by start
// address, a prefix overlaps an earlier one exactly when it starts before
// the furthest end seen so far (prefixes nest or are disjoint).
func (v *validator) cidrOverlaps() {
	type ent struct {
		name string
		p    netip.Prefix
	}
	var es []ent
	for _, name := range SortedNames(v.s.Zones) {
		if p := v.s.Zones[name].Net.Prefix; p.IsValid() {
			es = append(es, ent{name, p})
		}
	}
	slices.SortStableFunc(es, func(a, b ent) int {
		return cmp.Or(a.p.Addr().Compare(b.p.Addr()), cmp.Compare(a.p.Bits(), b.p.Bits()))
	})
	var widest ent
	for i, e := range es {
		if i > 0 && widest.p.Overlaps(e.p) {
			z := v.s.Zones[e.name]
			v.diags.Errorf(z.FieldPos("cidr"), "zone %q: cidr %s overlaps zone %q (%s)", e.name, e.p, widest.name, widest.p)
		}
		if i == 0 || lastAddr(e.p).Compare(lastAddr(widest.p)) > 0 {
			widest = e
		}
	}
}

func lastAddr(p netip.Prefix) netip.Addr { return AddrAt(p, PrefixSize(p)-1) }

func (v *validator) zoneList(z *Zone, field string, list []string, allowAll bool) {
	seen := map[string]bool{}
	for _, t := range list {
		switch {
		case seen[t]:
			v.diags.Warnf(z.FieldPos(field), "zone %q: %s lists %q twice", z.Name, field, t)
		case t == Internet, allowAll && t == All:
		case t == z.Name && z.IsolateInstances && field == "access-to":
			v.diags.Errorf(z.FieldPos(field), "zone %q: access-to lists the zone itself, but isolate-instances keeps its instances apart; give single instances ingress from the zone instead", z.Name)
		case t == z.Name:
			v.diags.Warnf(z.FieldPos(field), "zone %q: %s lists the zone itself; traffic within a zone is always allowed", z.Name, field)
		default:
			if _, ok := v.s.Zones[t]; !ok {
				v.diags.Errorf(z.FieldPos(field), "zone %q: %s names unknown zone %q%s", z.Name, field, t, didYouMean(t, v.s.Zones))
			}
		}
		seen[t] = true
	}
}

func (v *validator) roles() {
	names := SortedNames(v.s.Roles)
	for _, name := range names {
		r := v.s.Roles[name]
		if r.VMIDs.Lo < MinVMID || r.VMIDs.Hi > MaxVMID {
			v.diags.Errorf(r.FieldPos("vmids"), "role %q: vmids %s must lie within %d-%d", name, r.VMIDs, MinVMID, MaxVMID)
		}
	}
	slices.SortStableFunc(names, func(a, b string) int { return cmp.Compare(v.s.Roles[a].VMIDs.Lo, v.s.Roles[b].VMIDs.Lo) })
	// Compare each range with the one reaching furthest so far, not just
	// its neighbour: 1000-5000 overlaps 3000-3100 even with 2000-2100 between.
	var widest *Role
	for _, name := range names {
		b := v.s.Roles[name]
		if widest != nil && b.VMIDs.Lo <= widest.VMIDs.Hi {
			v.diags.Errorf(b.FieldPos("vmids"), "role %q: vmids %s overlap role %q (%s)", b.Name, b.VMIDs, widest.Name, widest.VMIDs)
		}
		if widest == nil || b.VMIDs.Hi > widest.VMIDs.Hi {
			widest = b
		}
	}
}

func (v *validator) groups() {
	for _, name := range SortedNames(v.s.Groups) {
		g := v.s.Groups[name]
		for _, t := range g.CanAccess {
			if _, ok := v.s.Groups[t]; !ok && t != All {
				v.diags.Errorf(g.FieldPos("can-access"), "group %q: can-access names unknown group %q%s", name, t, didYouMean(t, v.s.Groups))
			}
		}
	}
}

// NICs returns an instance's interfaces whichever way they were written.
func (in *Instance) NICs() []*NIC {
	if len(in.Networks) > 0 {
		return in.Networks
	}
	if in.Zone == "" {
		return nil
	}
	nic := &NIC{Zone: in.Zone, IP: in.IP, Trunks: in.Trunks}
	nic.Pos = in.FieldPos("zone")
	if in.Has("ip") {
		nic.setField("ip", in.FieldPos("ip"))
	}
	nic.setField("zone", in.FieldPos("zone"))
	nic.setField("trunks", in.FieldPos("trunks"))
	return []*NIC{nic}
}

// SiteOf returns the instance's site, defaulting to the only site.
func (s *Spec) SiteOf(in *Instance) string {
	if in.Site == "" && len(s.Sites) == 1 {
		for name := range s.Sites {
			return name
		}
	}
	return in.Site
}

func (v *validator) instances() {
	vmids := map[int]*Instance{}
	ips := map[netip.Addr]string{}
	for _, name := range SortedNames(v.s.Instances) {
		in := v.s.Instances[name]
		v.instanceSite(in)
		v.instanceVMID(in, vmids)
		v.instanceNICs(in, ips)
		if in.Flavor != "" {
			if _, ok := v.s.Flavors[in.Flavor]; !ok {
				v.diags.Errorf(in.FieldPos("flavor"), "instance %q: flavor %q does not exist%s", name, in.Flavor, didYouMean(in.Flavor, v.s.Flavors))
			}
		}
		if in.Template != "" {
			if _, ok := v.s.Templates[in.Template]; !ok {
				v.diags.Errorf(in.FieldPos("template"), "instance %q: template %q does not exist%s", name, in.Template, didYouMean(in.Template, v.s.Templates))
			}
		}
		if in.CPUs != nil && *in.CPUs < 1 {
			v.diags.Errorf(in.FieldPos("cpus"), "instance %q: cpus must be at least 1", name)
		}
		for i, key := range in.SSHKeys {
			if err := CheckSSHKey(key); err != nil {
				v.diags.Errorf(in.FieldPos("ssh-keys"), "instance %q: ssh-keys[%d]: %v", name, i, err)
			}
		}
		v.tenantInstance(in)
		for _, g := range in.Groups {
			if _, ok := v.s.Groups[g]; !ok {
				v.diags.Errorf(in.FieldPos("groups"), "instance %q: group %q does not exist%s", name, g, didYouMean(g, v.s.Groups))
			}
		}
		v.instanceRules(in)
		for _, dep := range in.DependsOn {
			switch _, ok := v.s.Instances[dep]; {
			case dep == name:
				v.diags.Errorf(in.FieldPos("depends-on"), "instance %q: depends on itself", name)
			case !ok:
				v.diags.Errorf(in.FieldPos("depends-on"), "instance %q: depends-on names unknown instance %q%s", name, dep, didYouMean(dep, v.s.Instances))
			}
		}
		if in.Replicate {
			if site := v.s.Sites[v.s.SiteOf(in)]; site != nil && site.Peer == "" {
				v.diags.Errorf(in.FieldPos("replicate"), "instance %q: replicate needs a peer site, and site %q has none", name, v.s.SiteOf(in))
			}
		}
	}
	v.dependencyCycles()
}

func (v *validator) instanceSite(in *Instance) {
	siteName := v.s.SiteOf(in)
	if siteName == "" {
		v.diags.Errorf(in.Pos, "instance %q: missing site (the cloud has %d sites)", in.Name, len(v.s.Sites))
		return
	}
	site, ok := v.s.Sites[siteName]
	if !ok {
		v.diags.Errorf(in.FieldPos("site"), "instance %q: site %q does not exist%s", in.Name, siteName, didYouMean(siteName, v.s.Sites))
		return
	}
	if in.Node != "" && !slices.Contains(site.Nodes, in.Node) {
		v.diags.Errorf(in.FieldPos("node"), "instance %q: node %q is not a node of site %q (nodes: %s)", in.Name, in.Node, siteName, strings.Join(site.Nodes, ", "))
	}
}

func (v *validator) instanceVMID(in *Instance, vmids map[int]*Instance) {
	var role *Role
	if in.Role != "" {
		var ok bool
		if role, ok = v.s.Roles[in.Role]; !ok {
			v.diags.Errorf(in.FieldPos("role"), "instance %q: role %q does not exist%s", in.Name, in.Role, didYouMean(in.Role, v.s.Roles))
		}
	}
	if in.VMID == nil {
		if in.Role == "" {
			v.diags.Errorf(in.Pos, "instance %q: needs a role (to allocate a VMID from) or an explicit vmid", in.Name)
		}
		return
	}
	id := *in.VMID
	switch {
	case id < MinVMID || id > MaxVMID:
		v.diags.Errorf(in.FieldPos("vmid"), "instance %q: vmid %d is outside %d-%d", in.Name, id, MinVMID, MaxVMID)
	case role != nil && !role.VMIDs.Contains(id):
		v.diags.Errorf(in.FieldPos("vmid"), "instance %q: vmid %d is outside role %q's range %s", in.Name, id, role.Name, role.VMIDs)
	}
	if other, dup := vmids[id]; dup {
		v.diags.Errorf(in.FieldPos("vmid"), "instance %q: vmid %d is already used by instance %q (%s)", in.Name, id, other.Name, other.FieldPos("vmid"))
	} else {
		vmids[id] = in
	}
}

func (v *validator) instanceNICs(in *Instance, ips map[netip.Addr]string) {
	if len(in.Networks) > 0 && (in.Zone != "" || in.IP != "" || len(in.Trunks) > 0) {
		v.diags.Errorf(in.FieldPos("networks"), "instance %q: give either zone (with ip, trunks) or networks, not both", in.Name)
	}
	nics := in.NICs()
	if len(nics) == 0 {
		v.diags.Errorf(in.Pos, "instance %q: missing zone (or networks)", in.Name)
		return
	}
	if len(in.Networks) == 0 && (in.IP != "" || len(in.Trunks) > 0) && in.Zone == "" {
		v.diags.Errorf(in.FieldPos("ip"), "instance %q: ip and trunks need a zone", in.Name)
	}
	site := v.s.SiteOf(in)
	zonesSeen := make(map[string]bool, len(nics))
	for i, nic := range nics {
		if zonesSeen[nic.Zone] {
			v.diags.Errorf(nic.FieldPos("zone"), "instance %q: two interfaces in zone %q; an instance has at most one interface per zone", in.Name, nic.Zone)
			continue
		}
		zonesSeen[nic.Zone] = true
		z, ok := v.s.Zones[nic.Zone]
		if !ok {
			v.diags.Errorf(nic.FieldPos("zone"), "instance %q: zone %q does not exist%s", in.Name, nic.Zone, didYouMean(nic.Zone, v.s.Zones))
			continue
		}
		if z.Tenant != in.Tenant {
			v.diags.Errorf(nic.FieldPos("zone"), "instance %q: %s", in.Name, tenancyMismatch(in, z))
		}
		switch {
		case z.Type == "overlay":
			v.diags.Errorf(nic.FieldPos("zone"), "instance %q: zone %q is an overlay; instances join overlays through groups, not interfaces", in.Name, nic.Zone)
			continue
		case len(z.Sites) > 0 && site != "" && !slices.Contains(z.Sites, site):
			v.diags.Errorf(nic.FieldPos("zone"), "instance %q: zone %q is not carried by site %q (sites: %s)", in.Name, nic.Zone, site, strings.Join(z.Sites, ", "))
		case !z.Net.Present && i == 0:
			v.diags.Warnf(nic.FieldPos("zone"), "instance %q: zone %q is %s, so the instance has no network until the zone is activated", in.Name, nic.Zone, z.Net.State)
		}
		for _, t := range nic.Trunks {
			tz, ok := v.s.Zones[t]
			switch {
			case t == All && in.Tenant != "":
				v.diags.Errorf(nic.FieldPos("trunks"), "instance %q: a tenant's instance may trunk only its own tenant's zones, not 'all'", in.Name)
			case !ok && t != All:
				v.diags.Errorf(nic.FieldPos("trunks"), "instance %q: trunks name unknown zone %q%s", in.Name, t, didYouMean(t, v.s.Zones))
			case ok && tz.Tenant != in.Tenant:
				v.diags.Errorf(nic.FieldPos("trunks"), "instance %q: trunks: %s", in.Name, tenancyMismatch(in, tz))
			}
		}
		if nic.IP == "" {
			continue
		}
		ip, err := netip.ParseAddr(nic.IP)
		n := z.Net
		switch {
		case err != nil || !ip.Is4():
			v.diags.Errorf(nic.FieldPos("ip"), "instance %q: ip %q is not an IPv4 address", in.Name, nic.IP)
		case !n.Prefix.IsValid():
		case !n.Prefix.Contains(ip):
			v.diags.Errorf(nic.FieldPos("ip"), "instance %q: ip %s is outside zone %q's cidr %s", in.Name, ip, nic.Zone, n.Prefix)
		case ip == n.Prefix.Addr() || ip == lastAddr(n.Prefix):
			v.diags.Errorf(nic.FieldPos("ip"), "instance %q: ip %s is the network or broadcast address of zone %q", in.Name, ip, nic.Zone)
		case ip == n.Gateway:
			v.diags.Errorf(nic.FieldPos("ip"), "instance %q: ip %s is zone %q's gateway", in.Name, ip, nic.Zone)
		case n.DHCPStart.IsValid() && InRange(ip, n.DHCPStart, n.DHCPEnd):
			v.diags.Errorf(nic.FieldPos("ip"), "instance %q: ip %s is inside zone %q's DHCP range %s-%s", in.Name, ip, nic.Zone, n.DHCPStart, n.DHCPEnd)
		default:
			if other, dup := ips[ip]; dup {
				v.diags.Errorf(nic.FieldPos("ip"), "instance %q: ip %s is already given to instance %q", in.Name, ip, other)
			}
			ips[ip] = in.Name
		}
	}
}

// instanceRules checks pinholes (ingress) and egress rules against the
// zones' policies.
func (v *validator) instanceRules(in *Instance) {
	nics := in.NICs()
	if len(nics) == 0 {
		return
	}
	home := v.s.Zones[nics[0].Zone]
	for _, r := range in.Ingress {
		v.ruleShape(in, r, "ingress")
		if r.To != "" {
			v.diags.Errorf(r.FieldPos("to"), "instance %q: an ingress rule has from, not to (the destination is the instance)", in.Name)
		}
		if r.From == "" {
			v.diags.Errorf(r.Pos, "instance %q: ingress rule is missing from (a zone or 'internet')", in.Name)
			continue
		}
		if !v.zoneOrInternet(in, r, "from", r.From) || home == nil || !v.tenantRuleZone(in, r, "from", r.From) {
			continue
		}
		if !slices.Contains(home.PinholeAllowedFrom, r.From) && r.From != home.Name {
			v.diags.Errorf(r.FieldPos("from"), "instance %q: pinhole from %q into zone %q is not allowed (its pinhole-allowed-from is [%s])", in.Name, r.From, home.Name, strings.Join(home.PinholeAllowedFrom, ", "))
		}
	}
	for _, r := range in.Egress {
		v.ruleShape(in, r, "egress")
		if r.From != "" {
			v.diags.Errorf(r.FieldPos("from"), "instance %q: an egress rule has to, not from (the source is the instance)", in.Name)
		}
		if r.To == "" {
			v.diags.Errorf(r.Pos, "instance %q: egress rule is missing to (a zone or 'internet')", in.Name)
			continue
		}
		if !v.zoneOrInternet(in, r, "to", r.To) || home == nil || !v.tenantRuleZone(in, r, "to", r.To) {
			continue
		}
		// An egress rule is a pinhole seen from its source: the target zone
		// must consent, or the source zone must already reach it.
		if t := v.s.Zones[r.To]; t != nil {
			if why := zoneMayReach(home, t); why != "" {
				v.diags.Errorf(r.FieldPos("to"), "instance %q: egress into zone %q is not allowed: %s", in.Name, r.To, why)
			}
		}
	}
}

func (v *validator) ruleShape(in *Instance, r *Rule, kind string) {
	if r.Proto == "icmp" && len(r.Ports) > 0 {
		v.diags.Errorf(r.FieldPos("ports"), "instance %q: %s rule: icmp has no ports", in.Name, kind)
	}
	if r.Proto == "any" && len(r.Ports) > 0 {
		v.diags.Errorf(r.FieldPos("ports"), "instance %q: %s rule: ports need proto tcp or udp", in.Name, kind)
	}
}

func (v *validator) zoneOrInternet(in *Instance, r *Rule, field, name string) bool {
	if name == Internet {
		return true
	}
	if _, ok := v.s.Zones[name]; !ok {
		v.diags.Errorf(r.FieldPos(field), "instance %q: %s names unknown zone %q (a zone or 'internet')%s", in.Name, field, name, didYouMean(name, v.s.Zones))
		return false
	}
	return true
}

// dependencyCycles reports each depends-on cycle once, with its path.
func (v *validator) dependencyCycles() {
	const (
		unvisited = iota
		active
		done
	)
	state := make(map[string]int, len(v.s.Instances))
	var stack []string
	var visit func(name string)
	visit = func(name string) {
		state[name] = active
		stack = append(stack, name)
		in := v.s.Instances[name]
		for _, dep := range in.DependsOn {
			if _, ok := v.s.Instances[dep]; !ok || dep == name {
				continue
			}
			switch state[dep] {
			case unvisited:
				visit(dep)
			case active:
				i := slices.Index(stack, dep)
				cycle := append(slices.Clone(stack[i:]), dep)
				v.diags.Errorf(in.FieldPos("depends-on"), "instance %q: dependency cycle %s", name, strings.Join(cycle, " -> "))
			}
		}
		stack = stack[:len(stack)-1]
		state[name] = done
	}
	for _, name := range SortedNames(v.s.Instances) {
		if state[name] == unvisited {
			visit(name)
		}
	}
}

func (v *validator) routes() {
	v.routeClaims()
	for _, name := range SortedNames(v.s.Routes) {
		r := v.s.Routes[name]
		v.routeDoor(name, r)
		if r.Port != nil && (*r.Port < 1 || *r.Port > 65535) {
			v.diags.Errorf(r.FieldPos("port"), "route %q: port %d is out of range 1-65535", name, *r.Port)
		}
		for _, from := range r.AllowedFrom {
			if _, ok := v.s.Zones[from]; !ok && from != Internet {
				v.diags.Errorf(r.FieldPos("allowed-from"), "route %q: allowed-from names unknown zone %q%s", name, from, didYouMean(from, v.s.Zones))
			}
		}
		for _, field := range []string{"frontends", "backends", "failover"} {
			list := map[string][]string{"frontends": r.Frontends, "backends": r.Backends, "failover": r.Failover}[field]
			if len(list) == 0 && field != "failover" && r.Has(field) {
				v.diags.Errorf(r.FieldPos(field), "route %q: %s is empty", name, field)
			}
			for _, inst := range list {
				if _, ok := v.s.Instances[inst]; !ok {
					v.diags.Errorf(r.FieldPos(field), "route %q: %s names unknown instance %q%s", name, field, inst, didYouMean(inst, v.s.Instances))
				}
			}
		}
		v.routeSite(name, r)
		v.routeFailover(name, r)
		v.routePublic(name, r)
		for _, fe := range r.Frontends {
			for _, be := range slices.Concat(r.Backends, r.Failover) {
				if msg := v.reachable(fe, be); msg != "" {
					v.diags.Errorf(r.FieldPos("backends"), "route %q: frontend %q cannot reach backend %q: %s", name, fe, be, msg)
				}
			}
		}
	}
}

// routeClaims refuses two routes that claim one hostname and port on one
// front end (it could serve only one of them), and a port on one front
// end that two protocols, or two tcp routes, claim: a tcp route has its
// port to itself, and a port is TLS or plain, not both.
func (v *validator) routeClaims() {
	type claim struct {
		frontend, host string
		port           int
	}
	type port struct {
		frontend string
		port     int
	}
	owner := map[claim]string{}
	byPort := map[port]string{} // the first route on each front end's port
	for _, name := range SortedNames(v.s.Routes) {
		r := v.s.Routes[name]
		p := r.RoutePort()
		if p == 0 {
			continue // a tcp route without a port: refused where it is written
		}
		for _, fe := range r.Frontends {
			if first, ok := byPort[port{fe, p}]; ok {
				fr := v.s.Routes[first]
				if fr.RouteProto() != r.RouteProto() || r.RouteProto() == ProtoTCP {
					v.diags.Errorf(r.FieldPos("port"), "route %q: port %d on frontend %q is route %q's already (%s); a tcp route has its port to itself, and a port serves one protocol", name, p, fe, first, fr.RouteProto())
					continue
				}
			} else {
				byPort[port{fe, p}] = name
			}
			c := claim{fe, strings.ToLower(r.Host), p}
			if first, ok := owner[c]; ok {
				v.diags.Errorf(r.FieldPos("host"), "route %q: %s:%d on frontend %q is route %q's already; one front end serves a hostname and port once", name, r.Host, p, fe, first)
				continue
			}
			owner[c] = name
		}
	}
}

// routeFailover refuses a failover backend that is not at the peer site of
// the route's: failover is the peer's backends, reached across the sites.
func (v *validator) routeFailover(name string, r *Route) {
	site := v.routeSiteOf(r)
	if site == "" {
		return
	}
	peer := ""
	if st := v.s.Sites[site]; st != nil {
		peer = st.Peer
	}
	for _, b := range r.Failover {
		in := v.s.Instances[b]
		if in == nil {
			continue // reported as unknown
		}
		if bs := v.s.SiteOf(in); peer == "" || bs != peer {
			why := fmt.Sprintf("site %q's peer is %q", site, peer)
			if peer == "" {
				why = fmt.Sprintf("site %q has no peer", site)
			}
			v.diags.Errorf(r.FieldPos("failover"), "route %q: failover backend %q is at site %q, not the peer site of the route's (%s); failover is the peer's backends", name, b, bs, why)
		}
	}
}

// routePublic refuses a public route (allowed from the internet, the
// default) whose front end sits in a zone the internet may not reach.
func (v *validator) routePublic(name string, r *Route) {
	if len(r.AllowedFrom) > 0 && !slices.Contains(r.AllowedFrom, Internet) {
		return
	}
	for _, fe := range r.Frontends {
		in := v.s.Instances[fe]
		if in == nil || len(in.NICs()) == 0 {
			continue
		}
		zn := in.NICs()[0].Zone
		if z := v.s.Zones[zn]; z != nil && !slices.Contains(z.PinholeAllowedFrom, Internet) {
			v.diags.Errorf(r.FieldPos("frontends"), "route %q: frontend %q is in zone %q, which the internet may not reach, and the route is public (add internet to the zone's pinhole-allowed-from, or name the zones in allowed-from)", name, fe, zn)
		}
	}
}

// routeSiteOf is the site of a route's first known front end.
func (v *validator) routeSiteOf(r *Route) string {
	for _, fe := range r.Frontends {
		if in := v.s.Instances[fe]; in != nil {
			return v.s.SiteOf(in)
		}
	}
	return ""
}

// routeSite refuses a route whose front ends are at more than one site: a
// route belongs to the site of its front ends, whose engine realizes it. A
// hostname served at two sites, each failing over to the other, is one
// route per site (examples/zcloud).
func (v *validator) routeSite(name string, r *Route) {
	first, firstSite := "", ""
	for _, fe := range r.Frontends {
		in := v.s.Instances[fe]
		if in == nil {
			continue
		}
		site := v.s.SiteOf(in)
		switch {
		case first == "":
			first, firstSite = fe, site
		case site != firstSite:
			v.diags.Errorf(r.FieldPos("frontends"), "route %q: frontend %q is at site %q but %q is at site %q; a route belongs to one site: give each site its own route with its own frontends (failover may name the peer's backends)", name, fe, site, first, firstSite)
			return
		}
	}
}

// reachable explains why instance a's zone may not reach instance b's zone
// (empty when it may): same zone, access-to, or b's zone allowing pinholes
// from a's.
func (v *validator) reachable(a, b string) string {
	ia, ib := v.s.Instances[a], v.s.Instances[b]
	if ia == nil || ib == nil || len(ia.NICs()) == 0 || len(ib.NICs()) == 0 {
		return ""
	}
	za, zb := v.s.Zones[ia.NICs()[0].Zone], v.s.Zones[ib.NICs()[0].Zone]
	if za == nil || zb == nil {
		return ""
	}
	return zoneMayReach(za, zb)
}

// zoneMayReach explains why zone a may not open a narrow flow into zone b
// (empty when it may): within one zone always; otherwise when b allows
// pinholes from a, or a already reaches b through access-to. 'all' does not
// reach an isolated zone except from a management zone, nor a tenant's zone.
func zoneMayReach(a, b *Zone) string {
	switch {
	case a == b, slices.Contains(b.PinholeAllowedFrom, a.Name), slices.Contains(a.AccessTo, b.Name):
		return ""
	case slices.Contains(a.AccessTo, All) && (!b.Isolated || a.Type == "management") && b.Tenant == "":
		return ""
	}
	return fmt.Sprintf("zone %q has no access-to %q, and %q does not allow pinholes from %q (add it to its pinhole-allowed-from)", a.Name, b.Name, b.Name, a.Name)
}

// didYouMean suggests the closest existing name.
func didYouMean[T any](name string, m map[string]T) string {
	best, bestD := "", max(2, len(name)/3)+1
	for k := range m {
		if d := editDistance(strings.ToLower(name), strings.ToLower(k)); d < bestD || d == bestD && k < best {
			best, bestD = k, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// SortedKeys returns an int-keyed map's keys in order.
func SortedKeys[T any](m map[int]T) []int {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
