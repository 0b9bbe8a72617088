package compile

import (
	"net/netip"
	"slices"
	"strconv"

	"github.com/holdfast/holdfast/internal/spec"
)

// Overlay is the compiled overlay mesh: what the overlay's CA signs and
// what each member's Nebula runs with, in plain values.
type Overlay struct {
	CIDR   string `json:"cidr"`
	Domain string `json:"domain"` // members are <instance>.<domain>
	Port   int    `json:"port"`   // UDP port members listen on
	// Zone is the overlay-type zone standing for the overlay in zone
	// lists; empty when the spec has none.
	Zone        string       `json:"zone,omitempty"`
	Lighthouses []Lighthouse `json:"lighthouses"`
	Members     []Member     `json:"members"` // by name
}

// Lighthouse is where members find each other.
type Lighthouse struct {
	Instance  string `json:"instance,omitempty"` // the member; empty for a lighthouse outside the cloud
	OverlayIP string `json:"overlay_ip"`         // its overlay address, without a prefix length
	Underlay  string `json:"underlay"`           // host:port members reach it at
}

// Member is one instance of the overlay.
type Member struct {
	Name string `json:"name"`
	Site string `json:"site"`
	FQDN string `json:"fqdn"` // <instance>.<overlay domain>
	// OverlayIP carries the overlay's prefix length (10.10.10.11/24), as a
	// Nebula certificate's network does.
	OverlayIP  string   `json:"overlay_ip"`
	Groups     []string `json:"groups"` // sorted; what its certificate carries
	Lighthouse bool     `json:"lighthouse"`
	// Inbound is default deny plus these rules; Outbound allows all, as
	// Nebula's usual configuration does.
	Inbound  []FirewallRule `json:"inbound"`
	Outbound []FirewallRule `json:"outbound"`
}

// FirewallRule is one rule of a member's Nebula firewall, with Nebula's
// own field names and values so that a renderer maps it one to one.
type FirewallRule struct {
	Port  string `json:"port"`            // "any", "443" or "8000-8100"
	Proto string `json:"proto"`           // any, tcp, udp or icmp
	Host  string `json:"host,omitempty"`  // "any": every peer
	Group string `json:"group,omitempty"` // peers whose certificate carries this group
}

// OverlayAddrKey is the key of a member's overlay address in its
// InstanceAlloc.Addrs, beside its zones' addresses. It is not a valid zone
// name, so it never collides with one, and it does not change when an
// overlay zone is added or renamed.
const OverlayAddrKey = "@overlay"

// overlay addresses every member and compiles its firewall. Like zone
// addresses, in passes so that a stable address is never displaced:
// explicit addresses (and outside lighthouses'), VMID-derived ones, earlier
// allocations (a removed instance's stay reserved), then the pool.
func (c *compiler) overlay(names []string) {
	o := c.s.Overlay
	if o == nil || !o.Net.Prefix.IsValid() {
		return
	}
	p := &overlayPool{prefix: o.Net.Prefix, used: map[netip.Addr]string{}, cursor: 1}
	for _, lh := range o.Lighthouses {
		if lh.OverlayIP != "" {
			p.used[netip.MustParseAddr(lh.OverlayIP)] = "lighthouse " + strconv.Quote(lh.Address)
		}
	}
	var members, derive, fromPrev, fromPool []string
	for _, name := range names {
		in := c.s.Instances[name]
		if !c.s.IsMember(in) {
			continue
		}
		members = append(members, name)
		switch {
		case in.OverlayIP != "":
			a := netip.MustParseAddr(in.OverlayIP)
			p.used[a] = holder(name)
			c.instIndex[name].OverlayIP = a.String()
		case c.s.Roles[in.Role] != nil && c.s.Roles[in.Role].IP == "vmid":
			derive = append(derive, name)
		default:
			fromPrev = append(fromPrev, name)
		}
	}
	for _, name := range derive {
		out := c.instIndex[name]
		a := spec.AddrAt(p.prefix, int64(VMIDAddrOffset(out.VMID)))
		pos := c.s.Instances[name].FieldPos("groups")
		if other := p.used[a]; other != "" {
			c.diags.Errorf(pos, "instance %q: VMID %d derives overlay address %s, which %s already has", name, out.VMID, a, other)
			continue
		}
		if !p.free(a) {
			c.diags.Errorf(pos, "instance %q: VMID %d derives overlay address %s, which the overlay's cidr %s cannot give (outside it, or its network or broadcast address)", name, out.VMID, a, p.prefix)
			continue
		}
		p.used[a] = holder(name)
		out.OverlayIP = a.String()
	}
	for name, a := range c.prev.Instances {
		if _, ok := c.s.Instances[name]; ok {
			continue
		}
		if addr, err := netip.ParseAddr(a.Addrs[OverlayAddrKey]); err == nil && p.free(addr) {
			p.used[addr] = holder(name) + " (removed, not yet destroyed)"
		}
	}
	for _, name := range fromPrev {
		if prev, ok := c.prev.Instances[name]; ok {
			if a, err := netip.ParseAddr(prev.Addrs[OverlayAddrKey]); err == nil && p.free(a) {
				p.used[a] = holder(name)
				c.instIndex[name].OverlayIP = a.String()
				continue
			}
		}
		fromPool = append(fromPool, name)
	}
	for _, name := range fromPool {
		a, ok := p.next()
		if !ok {
			c.diags.Errorf(c.s.Instances[name].FieldPos("groups"), "instance %q: the overlay's cidr %s has no free address left", name, p.prefix)
			continue
		}
		p.used[a] = holder(name)
		c.instIndex[name].OverlayIP = a.String()
	}
	c.state.Overlay = c.compileOverlay(o, members)
}

// holder names who has an overlay address, for messages.
func holder(name string) string { return "instance " + strconv.Quote(name) }

// compileOverlay builds the state's overlay once every member has its
// address.
func (c *compiler) compileOverlay(o *spec.Overlay, members []string) *Overlay {
	out := &Overlay{
		CIDR: o.Net.Prefix.String(), Domain: o.Net.Domain, Port: o.Net.Port, Zone: o.Net.Zone,
		Lighthouses: []Lighthouse{}, Members: make([]Member, 0, len(members)),
	}
	lighthouses := map[string]bool{}
	for _, lh := range o.Lighthouses {
		if lh.Instance == "" {
			out.Lighthouses = append(out.Lighthouses, Lighthouse{OverlayIP: lh.OverlayIP, Underlay: lh.Address})
			continue
		}
		lighthouses[lh.Instance] = true
		in := c.instIndex[lh.Instance]
		out.Lighthouses = append(out.Lighthouses, Lighthouse{Instance: lh.Instance, OverlayIP: in.OverlayIP, Underlay: c.underlay(in, o.Net.Port)})
	}
	for _, name := range members {
		in := c.instIndex[name]
		m := Member{
			Name: name, Site: in.Site, FQDN: name + "." + o.Net.Domain, Groups: in.Groups,
			Lighthouse: lighthouses[name], Inbound: c.inbound(in.Groups),
			Outbound: []FirewallRule{{Port: "any", Proto: "any", Host: "any"}},
		}
		if in.OverlayIP != "" {
			m.OverlayIP = netip.PrefixFrom(netip.MustParseAddr(in.OverlayIP), o.Net.Prefix.Bits()).String()
		}
		out.Members = append(out.Members, m)
	}
	return out
}

// underlay is where members reach a lighthouse instance: its first
// interface in a zone that exists, at the overlay's port. Validation has
// refused a lighthouse without one.
func (c *compiler) underlay(in *Instance, port int) string {
	for _, nic := range in.NICs {
		if z := c.zoneIndex[nic.Zone]; z != nil && z.Present && nic.IP != "" {
			return netip.AddrPortFrom(netip.MustParseAddr(nic.IP), uint16(port)).String()
		}
	}
	return ""
}

// inbound is a member's inbound firewall: default deny, and every group
// whose can-access names one of the member's groups (or all) may reach it
// on any port. A group reaching itself is a rule like any other: members of
// one group reach each other only when the group's can-access says so.
func (c *compiler) inbound(groups []string) []FirewallRule {
	rules := []FirewallRule{}
	for _, g := range spec.SortedNames(c.s.Groups) {
		access := c.s.Groups[g].CanAccess
		if slices.Contains(access, spec.All) || slices.ContainsFunc(groups, func(mine string) bool { return slices.Contains(access, mine) }) {
			rules = append(rules, FirewallRule{Port: "any", Proto: "any", Group: g})
		}
	}
	return rules
}

// overlayPool hands out overlay addresses: every host address of the
// prefix (an overlay has no gateway or DHCP range).
type overlayPool struct {
	prefix netip.Prefix
	used   map[netip.Addr]string
	cursor int64
}

func (p *overlayPool) free(a netip.Addr) bool {
	return p.prefix.Contains(a) && a != p.prefix.Addr() && a != spec.AddrAt(p.prefix, spec.PrefixSize(p.prefix)-1) && p.used[a] == ""
}

func (p *overlayPool) next() (netip.Addr, bool) {
	for size := spec.PrefixSize(p.prefix); p.cursor < size-1; p.cursor++ {
		if a := spec.AddrAt(p.prefix, p.cursor); p.free(a) {
			p.cursor++
			return a, true
		}
	}
	return netip.Addr{}, false
}

// HasGuest reports whether the instance has guest configuration for its
// Holdfast agent to apply: membership of the overlay, or serving DNS.
// Engines whose instances cost a process per agent (the local engine) run
// agents only there.
func (s *State) HasGuest(site, name string) bool {
	if s == nil {
		return false
	}
	if s.DNS != nil && slices.ContainsFunc(s.DNS.Servers, func(d DNSServer) bool { return d.Site == site && d.Instance == name }) {
		return true
	}
	if len(s.FrontDoorRoutes(site, name)) > 0 {
		return true
	}
	if s.Overlay == nil {
		return false
	}
	for _, m := range s.Overlay.Members {
		if m.Site == site && m.Name == name {
			return true
		}
	}
	return false
}

// Admits reports whether the member's inbound rules let peer in on
// proto/port: a rule for any host, or for a group peer carries.
func (m Member) Admits(peer Member, proto string, port int) bool {
	for _, r := range m.Inbound {
		if r.Proto != proto && r.Proto != "any" {
			continue
		}
		if r.Host != "any" && (r.Group == "" || !slices.Contains(peer.Groups, r.Group)) {
			continue
		}
		if r.Port == "any" || r.Port == "" {
			return true
		}
		if rg, err := spec.ParseRange(r.Port); err == nil && rg.Contains(port) {
			return true
		}
	}
	return false
}
