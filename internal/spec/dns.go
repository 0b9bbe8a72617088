package spec

import (
	"net/netip"
	"slices"
	"strings"
)

// DNSServersFor names the DNS servers an instance at site resolves at, in
// the order it asks them: the site's own servers, then its peer site's (the
// VM map's fallback to the peer's zNet), each by name. None when the spec
// names no servers, or none at either site; then instances ask their
// gateway.
func (s *Spec) DNSServersFor(site string) []string {
	if s.DNS == nil {
		return nil
	}
	var own, peer []string
	peerSite := ""
	if st := s.Sites[site]; st != nil {
		peerSite = st.Peer
	}
	for _, name := range s.DNS.Servers {
		in := s.Instances[name]
		if in == nil {
			continue
		}
		switch s.SiteOf(in) {
		case site:
			own = append(own, name)
		case peerSite:
			if peerSite != "" {
				peer = append(peer, name)
			}
		}
	}
	slices.Sort(own)
	slices.Sort(peer)
	return slices.Concat(own, peer)
}

// UsesCloudDNS reports whether an instance resolves at the spec's DNS
// servers. A tenant's instance does not: its zones are allocated when the
// tenant asks, and no operator zone lets them in; it asks its gateway.
func UsesCloudDNS(in *Instance) bool { return in.Tenant == "" }

// dns checks the dns section: servers are operator instances with an
// address, named once; upstreams are addresses; and every zone whose
// instances or DHCP clients resolve at a server may reach it (the
// compiler then derives the flows; a zone the policy keeps away is
// refused, never opened silently).
func (v *validator) dns() {
	v.nameClash()
	d := v.s.DNS
	if d == nil {
		return
	}
	seen := map[string]bool{}
	for _, name := range d.Servers {
		in, ok := v.s.Instances[name]
		switch {
		case seen[name]:
			v.diags.Errorf(d.FieldPos("servers"), "dns: server %q is named twice", name)
			continue
		case !ok:
			v.diags.Errorf(d.FieldPos("servers"), "dns: server %q is not an instance%s", name, didYouMean(name, v.s.Instances))
			continue
		case in.Tenant != "":
			v.diags.Errorf(d.FieldPos("servers"), "dns: server %q is tenant %q's instance; the cloud's names are served by the operator's", name, in.Tenant)
		case v.dnsZone(in) == nil:
			v.diags.Errorf(d.FieldPos("servers"), "dns: server %q has no address in a zone (an overlay address or a trunk cannot serve the zones)", name)
		}
		seen[name] = true
	}
	ups := map[netip.Addr]bool{}
	for _, u := range d.Upstreams {
		a, err := netip.ParseAddr(u)
		switch {
		case err != nil:
			v.diags.Errorf(d.FieldPos("upstreams"), "dns: upstream %q is not an IP address (a resolver is asked on port 53)", u)
		case ups[a]:
			v.diags.Errorf(d.FieldPos("upstreams"), "dns: upstream %s is named twice", a)
		}
		ups[a] = true
	}
	if !v.diags.HasErrors() {
		v.dnsReach()
	}
}

// nameClash refuses an overlay domain that is a zone's domain
// (<zone>.<cloud domain>): every member would have one name for two
// addresses, its NIC's and its overlay's.
func (v *validator) nameClash() {
	o, c := v.s.Overlay, v.s.Cloud
	if o == nil || c == nil || o.Net.Domain == "" {
		return
	}
	for _, name := range SortedNames(v.s.Zones) {
		if strings.EqualFold(o.Net.Domain, name+"."+c.Domain) && v.s.Zones[name].Type != "overlay" {
			v.diags.Errorf(o.FieldPos("domain"), "overlay: domain %q is zone %q's (its instances are <instance>.%s): a member there would have one name for two addresses; choose another domain", o.Net.Domain, name, o.Net.Domain)
		}
	}
}

// dnsZone is the zone a DNS server serves from: that of its first interface
// with an address, or nil.
func (v *validator) dnsZone(in *Instance) *Zone {
	for _, nic := range in.NICs() {
		if z := v.s.Zones[nic.Zone]; z != nil && z.Type != "overlay" {
			return z
		}
	}
	return nil
}

// dnsReach refuses a server that a zone resolving at it may not reach.
func (v *validator) dnsReach() {
	d := v.s.DNS
	told := map[[2]string]bool{}
	check := func(from *Zone, fromName, srv string) {
		to := v.dnsZone(v.s.Instances[srv])
		if to == nil || told[[2]string{fromName, srv}] {
			return
		}
		if msg := zoneMayReach(from, to); msg != "" {
			told[[2]string{fromName, srv}] = true
			v.diags.Errorf(d.FieldPos("servers"), "dns: zone %q resolves at server %q (zone %q) but may not reach it: %s", fromName, srv, to.Name, msg)
		}
	}
	for _, name := range SortedNames(v.s.Instances) {
		in := v.s.Instances[name]
		nics := in.NICs()
		if !UsesCloudDNS(in) || len(nics) == 0 || v.s.Zones[nics[0].Zone] == nil {
			continue
		}
		for _, srv := range v.s.DNSServersFor(v.s.SiteOf(in)) {
			to := v.dnsZone(v.s.Instances[srv])
			if srv == name || to == nil || slices.ContainsFunc(nics, func(n *NIC) bool { return n.Zone == to.Name }) {
				continue // itself, or a neighbour on one of its zones
			}
			check(v.s.Zones[nics[0].Zone], nics[0].Zone, srv)
		}
	}
	// A zone's DHCP clients are handed the servers of each site carrying it.
	for _, name := range SortedNames(v.s.Zones) {
		z := v.s.Zones[name]
		if !z.Net.Present || !z.Net.DHCPStart.IsValid() || z.Tenant != "" {
			continue
		}
		for _, site := range v.zoneSites(z) {
			for _, srv := range v.s.DNSServersFor(site) {
				check(z, name, srv)
			}
		}
	}
}
