package compile

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/holdfast/holdfast/internal/spec"
)

// flows derives the firewall policy as an explicit allow list. Zones that
// are not present (inactive, disabled) contribute nothing: they do not exist.
func (c *compiler) flows() {
	fs := slices.Concat(c.zoneFlows(), c.instanceFlows(), c.routeFlows(), c.challengeFlows(), c.ingressFlows(), c.overlayFlows(), c.underlayFlows())
	// A DNS flow the spec already allows (a pinhole or egress rule written
	// for it) is not derived again.
	for _, f := range c.dnsFlows() {
		if !slices.ContainsFunc(fs, func(g Flow) bool {
			return g.From == f.From && g.To == f.To && g.Proto == f.Proto && slices.Equal(g.Ports, f.Ports) && g.FromCIDR == f.FromCIDR && g.ToCIDR == f.ToCIDR
		}) {
			fs = append(fs, f)
		}
	}
	slices.SortFunc(fs, compareFlows)
	c.state.Flows = slices.CompactFunc(fs, func(a, b Flow) bool { return compareFlows(a, b) == 0 })
	if c.state.Flows == nil {
		c.state.Flows = []Flow{}
	}
	for i := range c.state.Flows {
		c.state.Flows[i].EnforcedBy = enforcedBy(c.state.Flows[i].Kind)
	}
}

// zoneFlows are what zones' access-to grants: subnet to subnet, or out to
// the internet.
func (c *compiler) zoneFlows() []Flow {
	var fs []Flow
	for _, z := range c.state.Zones {
		if !z.Present {
			continue
		}
		for _, t := range z.AccessTo {
			switch t {
			case spec.Internet:
				fs = append(fs, Flow{From: z.Name, To: spec.Internet, Proto: "any", Kind: KindInternet, FromCIDR: z.CIDR})
			case spec.All:
				fs = append(fs, Flow{From: z.Name, To: spec.Internet, Proto: "any", Kind: KindInternet, FromCIDR: z.CIDR})
				for _, o := range c.state.Zones {
					// A tenant's network is reached only through the pinholes it allows.
					if o.Name != z.Name && o.Present && (!o.Isolated || z.Type == "management") && o.Tenant == "" {
						fs = append(fs, zoneFlow(z, o))
					}
				}
			default:
				if o := c.zoneIndex[t]; o != nil && o.Present && o.Name != z.Name {
					fs = append(fs, zoneFlow(z, *o))
				}
			}
		}
	}
	return fs
}

// instanceFlows are instances' own rules: pinholes in (ingress) and
// egress out of their zone, each for the instance's address alone.
func (c *compiler) instanceFlows() []Flow {
	var fs []Flow
	for _, name := range spec.SortedNames(c.s.Instances) {
		in, out := c.s.Instances[name], c.instIndex[name]
		if out.IP == "" || !c.zoneIndex[out.Zone].Present {
			continue
		}
		host := out.IP + "/32"
		for _, r := range in.Ingress {
			f := Flow{From: r.From, To: name, Kind: KindPinhole, ToCIDR: host}
			if r.From != spec.Internet {
				src := c.zoneIndex[r.From]
				if !src.Present {
					continue
				}
				f.FromCIDR = src.CIDR
			}
			f.Proto, f.Ports = ruleProto(r)
			fs = append(fs, f)
		}
		for _, r := range in.Egress {
			f := Flow{From: name, To: r.To, Kind: KindEgress, FromCIDR: host}
			if r.To != spec.Internet {
				dst := c.zoneIndex[r.To]
				if !dst.Present {
					continue
				}
				f.ToCIDR = dst.CIDR
			}
			f.Proto, f.Ports = ruleProto(r)
			fs = append(fs, f)
		}
	}
	return fs
}

// routeFlows let a route's clients reach its front ends, and the front
// ends reach its backends and failover backends.
func (c *compiler) routeFlows() []Flow {
	var fs []Flow
	for _, name := range spec.SortedNames(c.s.Routes) {
		r := c.s.Routes[name]
		port := strconv.Itoa(r.RoutePort())
		for _, fe := range r.Frontends {
			f := c.instIndex[fe]
			if f.IP == "" {
				continue
			}
			for _, from := range routeAllowed(r) {
				fl := Flow{From: from, To: fe, Proto: "tcp", Ports: []string{port}, Kind: KindRoute, ToCIDR: f.IP + "/32"}
				if z := c.zoneIndex[from]; z != nil {
					fl.FromCIDR = z.CIDR
				}
				fs = append(fs, fl)
			}
			for _, be := range slices.Concat(r.Backends, r.Failover) {
				b := c.instIndex[be]
				if b.IP == "" || be == fe {
					continue
				}
				fs = append(fs, Flow{From: fe, To: be, Proto: "tcp", Ports: []string{strconv.Itoa(r.BackendPort)}, Kind: KindRoute, FromCIDR: f.IP + "/32", ToCIDR: b.IP + "/32"})
			}
		}
	}
	return fs
}

// overlayFlows are what groups' can-access grants on the overlay.
func (c *compiler) overlayFlows() []Flow {
	var fs []Flow
	groups := spec.SortedNames(c.s.Groups)
	for _, name := range groups {
		for _, t := range c.s.Groups[name].CanAccess {
			targets := []string{t}
			if t == spec.All {
				targets = groups
			}
			// A group reaching itself is a flow like any other: on an overlay,
			// members of one group do not reach each other unless allowed.
			for _, to := range targets {
				fs = append(fs, Flow{From: "group:" + name, To: "group:" + to, Proto: "any", Kind: KindOverlay})
			}
		}
	}
	return fs
}

// underlayFlows let the overlay's members reach each other's Nebula on
// the underlay: UDP on the overlay's port, from every zone holding members'
// interfaces to each member's address. A member is reached at its address
// in the sender's zone when it has one there, else at each of its
// addresses. Only where traffic would not pass anyway: between zones, and
// within a zone that isolates its instances. (A lighthouse outside the
// cloud gets no flow: the zone firewall's flows to the internet name no
// destination address, so one would open the port to the whole internet;
// a zone that reaches the internet reaches it already.)
func (c *compiler) underlayFlows() []Flow {
	o := c.state.Overlay
	if o == nil {
		return nil
	}
	port := []string{strconv.Itoa(o.Port)}
	var from []*Zone // zones holding members' interfaces, by name
	for _, m := range o.Members {
		for _, nic := range c.instIndex[m.Name].NICs {
			if z := c.zoneIndex[nic.Zone]; z != nil && z.Present && nic.IP != "" && !slices.Contains(from, z) {
				from = append(from, z)
			}
		}
	}
	slices.SortFunc(from, func(a, b *Zone) int { return cmp.Compare(a.Name, b.Name) })
	var fs []Flow
	for _, m := range o.Members {
		var nics []NIC
		for _, nic := range c.instIndex[m.Name].NICs {
			if z := c.zoneIndex[nic.Zone]; z != nil && z.Present && nic.IP != "" {
				nics = append(nics, nic)
			}
		}
		for _, zs := range from {
			reach := nics
			if i := slices.IndexFunc(nics, func(n NIC) bool { return n.Zone == zs.Name }); i >= 0 {
				if !zs.IsolateInstances {
					continue // within the zone the traffic passes anyway
				}
				reach = nics[i : i+1]
			}
			for _, nic := range reach {
				fs = append(fs, Flow{From: zs.Name, To: m.Name, Proto: "udp", Ports: port, Kind: KindUnderlay, FromCIDR: zs.CIDR, ToCIDR: nic.IP + "/32"})
			}
		}
	}
	return fs
}

// enforcedBy says what enforces a flow of a kind: group flows only the
// overlay can, since a group is a certificate's, not an address's.
func enforcedBy(kind string) string {
	if kind == KindOverlay {
		return EnforcedByOverlay
	}
	return EnforcedByZoneFirewall
}

func zoneFlow(from, to Zone) Flow {
	return Flow{From: from.Name, To: to.Name, Proto: "any", Kind: KindAccess, FromCIDR: from.CIDR, ToCIDR: to.CIDR}
}

func ruleProto(r *spec.Rule) (string, []string) {
	proto := r.Proto
	if proto == "" {
		proto = "any"
		if len(r.Ports) > 0 {
			proto = "tcp"
		}
	}
	return proto, nonNil(r.Ports.Strings())
}

func routeAllowed(r *spec.Route) []string {
	if len(r.AllowedFrom) == 0 {
		return []string{spec.Internet}
	}
	return r.AllowedFrom
}

func compareFlows(a, b Flow) int {
	return cmp.Or(
		cmp.Compare(a.From, b.From), cmp.Compare(a.To, b.To), cmp.Compare(a.Kind, b.Kind),
		cmp.Compare(a.Proto, b.Proto), slices.Compare(a.Ports, b.Ports),
		cmp.Compare(a.FromCIDR, b.FromCIDR), cmp.Compare(a.ToCIDR, b.ToCIDR),
	)
}

func (c *compiler) routes() {
	c.state.Routes = []Route{}
	for _, name := range spec.SortedNames(c.s.Routes) {
		r := c.s.Routes[name]
		out := Route{
			Name: name, Site: c.routeSite(r), Host: r.Host, Port: r.RoutePort(), BackendPort: r.BackendPort,
			Frontends: nonNil(r.Frontends), Backends: nonNil(r.Backends), Failover: nonNil(r.Failover),
			AllowedFrom: routeAllowed(r),
		}
		c.routeDoor(name, r, &out)
		c.state.Routes = append(c.state.Routes, out)
	}
}

// routeSite is the site of a route's front ends. Validation has refused
// front ends at several sites (a hostname served at two sites is two
// routes, one per site, as examples/zcloud does), so the first decides.
func (c *compiler) routeSite(r *spec.Route) string {
	for _, fe := range r.Frontends {
		if in := c.instIndex[fe]; in != nil {
			return in.Site
		}
	}
	return ""
}

// resources builds what engines realize and orders it so that every
// resource follows its dependencies: sites, networks, then each site's firewall,
// then instances by depends-on depth, then routes.
func (c *compiler) resources() {
	var rs []Resource
	// Manual zones are resources too, marked managed=false: an engine that
	// shares the network with others (Proxmox) only observes them; the
	// local engine, which is the whole world, makes them.
	managed := func(z *Zone) bool { return z.Present && z.VLAN != nil }
	instID := func(name string) ID {
		if in := c.instIndex[name]; in != nil {
			return InstanceID(in.Site, name)
		}
		return ID{Kind: ResInstance, Name: name} // validation has refused it
	}
	for _, st := range c.state.Sites {
		attrs := map[string]string{"engine": st.Engine, "nodes": strings.Join(st.Nodes, ","), "peer": st.Peer}
		maps.Copy(attrs, siteAttrs(st))
		rs = append(rs, NewResource(SiteID(st.Name), nil, attrs))
	}
	for _, z := range c.state.Zones {
		if !managed(&z) {
			continue
		}
		for _, site := range z.Sites {
			rs = append(rs, NewResource(NetworkID(site, z.Name), []ID{SiteID(site)}, map[string]string{
				"vlan": strconv.Itoa(*z.VLAN), "vni": strconv.Itoa(*z.VNI), "cidr": z.CIDR, "gateway": z.Gateway,
				"dhcp": dhcpRange(z), "managed": strconv.FormatBool(z.State != "manual"),
			}))
		}
	}
	for _, st := range c.state.Sites {
		deps := []ID{SiteID(st.Name)}
		for _, z := range c.state.Zones {
			if managed(&z) && slices.Contains(z.Sites, st.Name) {
				deps = append(deps, NetworkID(st.Name, z.Name))
			}
		}
		rs = append(rs, NewResource(FirewallID(st.Name), deps, c.firewallAttrs(st.Name)))
	}
	for _, in := range c.state.Instances {
		deps := []ID{FirewallID(in.Site)}
		var nics []string
		for _, nic := range in.NICs {
			if z := c.zoneIndex[nic.Zone]; managed(z) {
				deps = append(deps, NetworkID(in.Site, nic.Zone))
			}
			nics = append(nics, nic.Zone+"="+nic.IP+"/"+strconv.Itoa(nic.Prefix)+" "+nic.MAC)
		}
		for _, d := range in.DependsOn {
			deps = append(deps, instID(d))
		}
		slices.SortFunc(deps, ID.Compare)
		rs = append(rs, NewResource(InstanceID(in.Site, in.Name), deps, map[string]string{
			"vmid": strconv.Itoa(in.VMID), "node": in.Node, "nics": strings.Join(nics, ", "),
			"cpus": strconv.Itoa(in.CPUs), "memory_mib": strconv.FormatInt(in.MemoryMiB, 10), "disk_mib": strconv.FormatInt(in.DiskMiB, 10),
			"template": in.Template, "image": in.Image, "command": strings.Join(in.Command, " "),
			"ha": strconv.FormatBool(in.HA), "fqdn": in.FQDN, "ports": portList(in.Ports),
			"tenant": in.Tenant, "power": in.Power, "reboot": strconv.Itoa(in.Reboot), "rebuild": strconv.Itoa(in.Rebuild),
			"ssh_keys": SSHKeysDigest(in.SSHKeys),
		}))
		// Resolvers other than the gateway (what instances asked before
		// clouds had DNS servers), so that a cloud without them keeps
		// its instances' attributes.
		gatewayOnly := len(in.Resolvers) == 1 && len(in.NICs) > 0 && in.Resolvers[0] == in.NICs[0].Gateway
		if len(in.Resolvers) > 0 && !gatewayOnly {
			rs[len(rs)-1].Attrs["resolvers"] = strings.Join(in.Resolvers, ",")
		}
	}
	for _, r := range c.state.Routes {
		var deps []ID
		for _, n := range slices.Concat(r.Frontends, r.Backends, r.Failover) {
			deps = append(deps, instID(n))
		}
		slices.SortFunc(deps, ID.Compare)
		rs = append(rs, NewResource(RouteID(r.Site, r.Name), slices.Compact(deps), map[string]string{
			"host": r.Host, "port": strconv.Itoa(r.Port), "backends": strings.Join(r.Backends, ","),
			"backend_port": strconv.Itoa(r.BackendPort), "failover": strings.Join(r.Failover, ","),
			"proto": r.Proto,
		}))
	}
	if o := c.state.Overlay; o != nil {
		// A member's certificate carries its address and groups; a
		// change of either is a new certificate (and the old one revoked).
		for _, m := range o.Members {
			rs = append(rs, NewResource(MemberID(m.Site, m.Name), nil, MemberAttrs(m.OverlayIP, m.Groups)))
		}
	}
	c.state.Resources = order(rs)
}

// MemberAttrs are a member resource's attributes: what its certificate
// says of it.
func MemberAttrs(overlayIP string, groups []string) map[string]string {
	return map[string]string{"overlay_ip": overlayIP, "groups": strings.Join(groups, ",")}
}

// SSHKeysDigest names a list of authorized keys in an instance's
// attributes: a short digest of the lines, empty when there are none.
// Engines compute it from the keys they find, so a changed key shows.
func SSHKeysDigest(keys []string) string {
	if len(keys) == 0 {
		return ""
	}
	sum := sha256.Sum256([]byte(strings.Join(keys, "\n")))
	return hex.EncodeToString(sum[:])[:16]
}

func dhcpRange(z Zone) string {
	if z.DHCPStart == "" {
		return "off"
	}
	return z.DHCPStart + "-" + z.DHCPEnd
}

// firewallAttrs summarizes a site's policy: the flows whose zones the site
// carries, and a digest so that any change to them shows as an update.
func (c *compiler) firewallAttrs(site string) map[string]string {
	carried := func(name string) bool {
		if z := c.zoneIndex[name]; z != nil {
			return slices.Contains(z.Sites, site)
		}
		if in := c.instIndex[name]; in != nil {
			return in.Site == site
		}
		return name == spec.Internet
	}
	h := sha256.New()
	n := 0
	enc := json.NewEncoder(h)
	for _, f := range c.state.Flows {
		if f.Kind == KindOverlay || !carried(f.From) && !carried(f.To) {
			continue
		}
		// EnforcedBy follows from the kind; leaving it out keeps the digest
		// of a firewall compiled before the field existed.
		f.EnforcedBy = ""
		_ = enc.Encode(f) // writing to a hash cannot fail
		n++
	}
	attrs := map[string]string{"flows": strconv.Itoa(n), "digest": hex.EncodeToString(h.Sum(nil))[:16]}
	// Zones whose instances are kept apart are the firewall's too; named
	// only when there are any, so that other firewalls' attributes stay
	// as they were.
	var apart []string
	for _, z := range c.state.Zones {
		if z.Present && z.IsolateInstances && slices.Contains(z.Sites, site) {
			apart = append(apart, z.Name)
		}
	}
	if len(apart) > 0 {
		attrs["isolate_instances"] = strings.Join(apart, ",")
	}
	for _, st := range c.state.Sites {
		if st.Name == site && st.Ingress != nil {
			attrs["ingress"] = st.Ingress.String()
		}
	}
	return attrs
}

// order sorts resources so that each follows its dependencies: by depth in
// the dependency graph (longest path from a root), then kind, then ID. The
// spec validator has already rejected cycles.
func order(rs []Resource) []Resource {
	index := make(map[ID]int, len(rs))
	for i, r := range rs {
		index[r.ID] = i
	}
	depth := make([]int, len(rs))
	for i := range depth {
		depth[i] = -1
	}
	var visit func(i int, guard int) int
	visit = func(i int, guard int) int {
		if depth[i] >= 0 || guard > len(rs) {
			return max(depth[i], 0)
		}
		d := 0
		for _, dep := range rs[i].Deps {
			if j, ok := index[dep]; ok {
				d = max(d, visit(j, guard+1)+1)
			}
		}
		depth[i] = d
		return d
	}
	for i := range rs {
		visit(i, 0)
	}
	rank := map[string]int{ResSite: 0, ResNetwork: 1, ResFirewall: 2, ResInstance: 3, ResRoute: 4}
	idx := make([]int, len(rs))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int {
		return cmp.Or(cmp.Compare(depth[a], depth[b]), cmp.Compare(rank[rs[a].Kind], rank[rs[b].Kind]), rs[a].ID.Compare(rs[b].ID))
	})
	out := make([]Resource, len(rs))
	for i, j := range idx {
		out[i] = rs[j]
	}
	return out
}

func portList(ps []Port) string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = strconv.Itoa(p.Port) + "/" + p.Proto
	}
	return strings.Join(out, ",")
}
