package compile

import (
	"cmp"
	"slices"

	"github.com/holdfast/holdfast/internal/spec"
)

// DNS is the cloud's name service: the instances that serve its names and
// where other names go.
type DNS struct {
	Servers   []DNSServer `json:"servers"`   // by name
	Upstreams []string    `json:"upstreams"` // addresses, asked on port 53
}

// DNSServer is an instance serving the cloud's names.
type DNSServer struct {
	Instance string `json:"instance"`
	Site     string `json:"site"`
	Zone     string `json:"zone"` // the zone it is reached in from other zones
	IP       string `json:"ip"`   // its address there
}

// KindDNS is the kind of the flows that let a zone reach its DNS servers,
// and a server its upstreams.
const KindDNS = "dns"

// dns compiles the dns section and every instance's resolvers.
func (c *compiler) dns() {
	if d := c.s.DNS; d != nil {
		out := &DNS{Upstreams: nonNil(slices.Clone(d.Upstreams))}
		for _, name := range sortedCopy(d.Servers) {
			in := c.instIndex[name]
			if in == nil {
				continue // validation has refused it
			}
			for _, nic := range in.NICs {
				if z := c.zoneIndex[nic.Zone]; z != nil && z.Type != "overlay" && nic.IP != "" {
					out.Servers = append(out.Servers, DNSServer{Instance: name, Site: in.Site, Zone: nic.Zone, IP: nic.IP})
					break
				}
			}
		}
		out.Servers = nonNil(out.Servers)
		c.state.DNS = out
	}
	for i := range c.state.Instances {
		in := &c.state.Instances[i]
		in.Resolvers = []string{}
		if len(in.NICs) == 0 {
			continue
		}
		var zones []string
		for _, nic := range in.NICs {
			zones = append(zones, nic.Zone)
		}
		if in.Tenant == "" {
			in.Resolvers = c.state.resolvers(in.Site, zones)
		}
		if len(in.Resolvers) == 0 && in.NICs[0].Gateway != "" {
			in.Resolvers = []string{in.NICs[0].Gateway}
		}
	}
}

// DNSServersFor are the servers a client at site asks, in order: the
// site's own, then its peer site's, each by name.
func (st *State) DNSServersFor(site string) []DNSServer {
	if st.DNS == nil {
		return nil
	}
	peer := ""
	for _, s := range st.Sites {
		if s.Name == site {
			peer = s.Peer
		}
	}
	rank := func(s DNSServer) int {
		if s.Site == site {
			return 0
		}
		return 1
	}
	var out []DNSServer
	for _, s := range st.DNS.Servers {
		if s.Site == site || peer != "" && s.Site == peer {
			out = append(out, s)
		}
	}
	slices.SortStableFunc(out, func(a, b DNSServer) int { return cmp.Compare(rank(a), rank(b)) })
	return out
}

// MaxResolvers is how many name servers a resolver configuration lists
// (glibc's MAXNS).
const MaxResolvers = 3

// resolvers are the addresses a client at site with interfaces in zones
// asks, in order: each server at its address in one of the client's zones
// when it has one there (reached on that zone), else at its own; nil when
// there is no server for the site.
func (st *State) resolvers(site string, zones []string) []string {
	var out []string
	for _, s := range st.DNSServersFor(site) {
		ip := s.IP
		if in := st.instance(s.Instance); in != nil {
			for _, z := range zones {
				if i := slices.IndexFunc(in.NICs, func(n NIC) bool { return n.Zone == z && n.IP != "" }); i >= 0 {
					ip = in.NICs[i].IP
					break
				}
			}
		}
		if !slices.Contains(out, ip) {
			out = append(out, ip)
		}
	}
	return out[:min(len(out), MaxResolvers)]
}

// ZoneResolvers are the DNS servers a zone's DHCP clients at site are
// handed: the site's servers, else the zone's gateway.
func (st *State) ZoneResolvers(site string, z Zone) []string {
	if z.Tenant == "" {
		if r := st.resolvers(site, []string{z.Name}); len(r) > 0 {
			return r
		}
	}
	if z.Gateway == "" {
		return nil
	}
	return []string{z.Gateway}
}

func (st *State) instance(name string) *Instance {
	i := slices.IndexFunc(st.Instances, func(in Instance) bool { return in.Name == name })
	if i < 0 {
		return nil
	}
	return &st.Instances[i]
}

// dnsFlows let every zone reach the DNS servers its instances and DHCP
// clients resolve at (UDP and TCP 53), and each server its upstreams.
// Only where traffic would not pass anyway: between zones, and within a
// zone that isolates its instances. Validation has refused a zone the
// policy keeps from its server.
func (c *compiler) dnsFlows() []Flow {
	st := c.state
	if st.DNS == nil {
		return nil
	}
	var fs []Flow
	add := func(from *Zone, s DNSServer, ip string) {
		for _, proto := range []string{"udp", "tcp"} {
			fs = append(fs, Flow{From: from.Name, To: s.Instance, Proto: proto, Ports: []string{"53"}, Kind: KindDNS, FromCIDR: from.CIDR, ToCIDR: ip + "/32"})
		}
	}
	// reach adds the flow from a client in zones (the first one routing)
	// to s.
	reach := func(zones []string, s DNSServer) {
		srv := st.instance(s.Instance)
		for _, z := range zones {
			if i := slices.IndexFunc(srv.NICs, func(n NIC) bool { return n.Zone == z && n.IP != "" }); i >= 0 {
				if zz := c.zoneIndex[z]; zz != nil && zz.IsolateInstances {
					add(zz, s, srv.NICs[i].IP)
				}
				return // a neighbour on that zone
			}
		}
		if z := c.zoneIndex[zones[0]]; z != nil && z.Present && z.CIDR != "" {
			add(z, s, s.IP)
		}
	}
	for _, in := range st.Instances {
		if in.Tenant != "" || len(in.NICs) == 0 {
			continue
		}
		var zones []string
		for _, nic := range in.NICs {
			zones = append(zones, nic.Zone)
		}
		for _, s := range st.DNSServersFor(in.Site) {
			if s.Instance != in.Name {
				reach(zones, s)
			}
		}
	}
	for _, z := range st.Zones {
		if !z.Present || z.DHCPStart == "" || z.Tenant != "" {
			continue
		}
		for _, site := range z.Sites {
			for _, s := range st.DNSServersFor(site) {
				reach([]string{z.Name}, s)
			}
		}
	}
	if len(st.DNS.Upstreams) > 0 {
		for _, s := range st.DNS.Servers {
			for _, proto := range []string{"udp", "tcp"} {
				fs = append(fs, Flow{From: s.Instance, To: spec.Internet, Proto: proto, Ports: []string{"53"}, Kind: KindDNS, FromCIDR: s.IP + "/32"})
			}
		}
	}
	return fs
}
