package spec

import (
	"errors"
	"net"
	"net/netip"
	"strconv"

	"go.yaml.in/yaml/v3"
)

// decodeShorthand lets a lighthouse that is an instance be written as its
// name.
func (l *Lighthouse) decodeShorthand(n *yaml.Node) (handled bool, err error) {
	if n.Kind != yaml.ScalarNode {
		return false, nil
	}
	if n.Value == "" {
		return true, errors.New("expected an instance name or {address: host:port, overlay-ip: ...}")
	}
	l.Instance = n.Value
	return true, nil
}

// IsMember reports whether an instance is a member of the overlay: with an
// overlay section, every instance that carries groups is.
func (s *Spec) IsMember(in *Instance) bool { return s.Overlay != nil && len(in.Groups) > 0 }

// overlay checks the overlay section and fills Overlay.Net, then the
// members' explicit addresses and the lighthouses. Overlay addresses
// derived from VMIDs or allocated are the compiler's: it reports their
// collisions.
func (v *validator) overlay() {
	o := v.s.Overlay
	if o == nil {
		for _, name := range SortedNames(v.s.Instances) {
			if in := v.s.Instances[name]; in.OverlayIP != "" {
				v.diags.Errorf(in.FieldPos("overlay-ip"), "instance %q: overlay-ip needs an overlay section (overlay: {cidr: ..., lighthouses: [...]})", name)
			}
		}
		return
	}
	o.Net.Port = DefaultOverlayPort
	if o.Port != nil {
		o.Net.Port = *o.Port
	}
	o.Net.Domain = o.Domain
	if o.Net.Domain == "" && v.s.Cloud != nil {
		o.Net.Domain = v.s.Cloud.Domain
	}
	if v.overlayPrefix(o) {
		v.overlayOverlaps(o)
	}
	used := map[netip.Addr]string{} // overlay address -> who has it
	v.overlayMembers(o, used)
	v.lighthouses(o, used)
}

// overlayPrefix parses the overlay's cidr into o.Net.Prefix; false when it
// is unusable.
func (v *validator) overlayPrefix(o *Overlay) bool {
	p, err := netip.ParsePrefix(o.CIDR)
	switch {
	case err != nil:
		v.diags.Errorf(o.FieldPos("cidr"), "overlay: cidr %q is not a subnet such as 10.10.10.0/24", o.CIDR)
	case !p.Addr().Is4():
		v.diags.Errorf(o.FieldPos("cidr"), "overlay: cidr %q: only IPv4 overlays are supported", o.CIDR)
	case p.Masked() != p:
		v.diags.Errorf(o.FieldPos("cidr"), "overlay: cidr %q has host bits set; did you mean %s?", o.CIDR, p.Masked())
	case p.Bits() > 30:
		v.diags.Errorf(o.FieldPos("cidr"), "overlay: cidr %q is too small for members (at most /30)", o.CIDR)
	default:
		o.Net.Prefix = p
		return true
	}
	return false
}

// overlayOverlaps refuses an overlay network that overlaps a zone's or the
// tenancy pool: an address would then mean two places. An overlay-type zone
// with exactly the overlay's cidr is the overlay itself, as TAPPaaS and
// Tasmanian Cloud write it.
func (v *validator) overlayOverlaps(o *Overlay) {
	p := o.Net.Prefix
	for _, name := range SortedNames(v.s.Zones) {
		z := v.s.Zones[name]
		if !z.Net.Prefix.IsValid() || !z.Net.Prefix.Overlaps(p) {
			continue
		}
		if z.Type == "overlay" && z.Net.Prefix == p && o.Net.Zone == "" {
			o.Net.Zone = name
			continue
		}
		hint := ""
		if z.Type == "overlay" {
			hint = "; an overlay zone standing for the overlay has exactly its cidr"
		}
		v.diags.Errorf(o.FieldPos("cidr"), "overlay: cidr %s overlaps zone %q (%s, %s)%s", p, name, z.Net.Prefix, z.FieldPos("type"), hint)
	}
	if t := v.s.Tenancy; t != nil && t.Net.Pool.IsValid() && t.Net.Pool.Overlaps(p) {
		v.diags.Errorf(o.FieldPos("cidr"), "overlay: cidr %s overlaps the tenancy pool %s (%s)", p, t.Net.Pool, t.FieldPos("cidr"))
	}
}

// overlayAddr explains why a is not a usable member address in the
// overlay (empty when it is).
func overlayAddr(p netip.Prefix, a netip.Addr) string {
	switch {
	case !p.IsValid():
		return "" // the cidr's own error says it
	case !p.Contains(a):
		return "is outside the overlay's cidr " + p.String()
	case a == p.Addr() || a == lastAddr(p):
		return "is the network or broadcast address of the overlay's cidr " + p.String()
	}
	return ""
}

// overlayMembers checks the members' explicit addresses, each unique.
func (v *validator) overlayMembers(o *Overlay, used map[netip.Addr]string) {
	for _, name := range SortedNames(v.s.Instances) {
		in := v.s.Instances[name]
		if in.OverlayIP == "" {
			continue
		}
		pos := in.FieldPos("overlay-ip")
		if !v.s.IsMember(in) {
			v.diags.Errorf(pos, "instance %q: overlay-ip is given but the instance has no groups, so it is no overlay member; give it groups or drop overlay-ip", name)
			continue
		}
		a, err := netip.ParseAddr(in.OverlayIP)
		if err != nil || !a.Is4() {
			v.diags.Errorf(pos, "instance %q: overlay-ip %q is not an IPv4 address", name, in.OverlayIP)
			continue
		}
		if why := overlayAddr(o.Net.Prefix, a); why != "" {
			v.diags.Errorf(pos, "instance %q: overlay-ip %s %s", name, a, why)
			continue
		}
		if other, dup := used[a]; dup {
			v.diags.Errorf(pos, "instance %q: overlay-ip %s is already given to %s", name, a, other)
			continue
		}
		used[a] = "instance " + strconv.Quote(name)
	}
}

// lighthouses checks that every lighthouse is a member instance other
// members can reach on the underlay, or an outside host:port with its
// overlay address.
func (v *validator) lighthouses(o *Overlay, used map[netip.Addr]string) {
	if len(o.Lighthouses) == 0 && o.Has("lighthouses") {
		v.diags.Errorf(o.FieldPos("lighthouses"), "overlay: lighthouses is empty; members find each other through at least one")
	}
	seen := map[string]bool{}
	for _, lh := range o.Lighthouses {
		switch {
		case lh.Instance != "" && (lh.Address != "" || lh.OverlayIP != ""):
			v.diags.Errorf(lh.Pos, "overlay: a lighthouse is an instance or an outside {address, overlay-ip}, not both")
		case lh.Instance != "":
			if seen[lh.Instance] {
				v.diags.Errorf(lh.Pos, "overlay: lighthouse %q listed twice", lh.Instance)
			}
			seen[lh.Instance] = true
			v.lighthouseInstance(lh)
		case lh.Address != "":
			if seen[lh.Address] {
				v.diags.Errorf(lh.Pos, "overlay: lighthouse %q listed twice", lh.Address)
			}
			seen[lh.Address] = true
			v.outsideLighthouse(o, lh, used)
		default:
			v.diags.Errorf(lh.Pos, "overlay: a lighthouse needs an instance, or an address with its overlay-ip")
		}
	}
}

func (v *validator) lighthouseInstance(lh *Lighthouse) {
	name := lh.Instance
	in, ok := v.s.Instances[name]
	if !ok {
		if _, _, err := net.SplitHostPort(name); err == nil {
			v.diags.Errorf(lh.Pos, "overlay: lighthouse %q is outside the cloud: write {address: %s, overlay-ip: <its overlay address>}", name, name)
			return
		}
		v.diags.Errorf(lh.Pos, "overlay: lighthouse %q is neither an instance nor a host:port%s", name, didYouMean(name, v.s.Instances))
		return
	}
	if !v.s.IsMember(in) {
		v.diags.Errorf(lh.Pos, "overlay: lighthouse %q is not an overlay member: give it groups", name)
		return
	}
	if in.Tenant != "" {
		v.diags.Errorf(lh.Pos, "overlay: lighthouse %q belongs to tenant %q; the other members cannot reach a tenant's network", name, in.Tenant)
		return
	}
	// Members reach a lighthouse on its underlay address: an interface in
	// a zone that exists (overlay zones carry no interfaces).
	for _, nic := range in.NICs() {
		if z := v.s.Zones[nic.Zone]; z != nil && z.Type != "overlay" && z.Net.Present {
			return
		}
	}
	v.diags.Errorf(lh.Pos, "overlay: lighthouse %q has no underlay address other members can reach: it needs an interface in a zone that exists (not an overlay, not inactive or disabled)", name)
}

func (v *validator) outsideLighthouse(o *Overlay, lh *Lighthouse, used map[netip.Addr]string) {
	host, port, err := net.SplitHostPort(lh.Address)
	n, perr := strconv.Atoi(port)
	if err != nil || host == "" || perr != nil || n < 1 || n > 65535 || !validHost(host) {
		v.diags.Errorf(lh.FieldPos("address"), "overlay: lighthouse address %q is not a host:port such as 203.0.113.7:4242", lh.Address)
	}
	if lh.OverlayIP == "" {
		v.diags.Errorf(lh.Pos, "overlay: lighthouse %q outside the cloud needs its overlay-ip", lh.Address)
		return
	}
	a, err := netip.ParseAddr(lh.OverlayIP)
	if err != nil || !a.Is4() {
		v.diags.Errorf(lh.FieldPos("overlay-ip"), "overlay: lighthouse %q: overlay-ip %q is not an IPv4 address", lh.Address, lh.OverlayIP)
		return
	}
	if why := overlayAddr(o.Net.Prefix, a); why != "" {
		v.diags.Errorf(lh.FieldPos("overlay-ip"), "overlay: lighthouse %q: overlay-ip %s %s", lh.Address, a, why)
		return
	}
	if other, dup := used[a]; dup {
		v.diags.Errorf(lh.FieldPos("overlay-ip"), "overlay: lighthouse %q: overlay-ip %s is already given to %s", lh.Address, a, other)
		return
	}
	used[a] = "lighthouse " + strconv.Quote(lh.Address)
}

// validHost reports whether h is an IP address or a DNS name.
func validHost(h string) bool {
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	return domainPattern.MatchString(h)
}
