package dns

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/miekg/dns"

	"github.com/holdfast/holdfast/internal/compile"
)

// Records are the names the cloud answers for, by zone apex.
type Records struct {
	// Zones are the zones the server is authoritative for, fully
	// qualified ("internal.", "nebula.", "100.168.192.in-addr.arpa.").
	Zones []string
	// Names maps a fully qualified, lower-case name to its records.
	Names map[string][]dns.RR
	// Clients are the addresses whose recursive queries are answered: the
	// cloud's zones and its overlay.
	Clients []netip.Prefix
}

// TTL of the records Holdfast serves: short, as instances come and go.
const TTL = 30

// Table is the cloud's names in a form that travels as JSON: what Compile
// derives from a compiled state, what the agent of a DNS server receives,
// and what DHCP leases add to.
type Table struct {
	// Zones are the zones answered for, fully qualified and lower case
	// ("internal.", "nebula.", "100.168.192.in-addr.arpa.").
	Zones []string `json:"zones"`
	// Hosts are the names with their addresses; each also gets a PTR.
	Hosts []Host `json:"hosts"`
	// Clients are the addresses whose recursive queries are answered: the
	// cloud's zones and its overlay.
	Clients []netip.Prefix `json:"clients"`
}

// Host is one name and one of its addresses.
type Host struct {
	Name string     `json:"name"` // fully qualified, lower case
	Addr netip.Addr `json:"addr"`
}

// Compile derives the table of st: every NIC as <instance>.<zone>.<domain>,
// every overlay member as <name>.<overlay domain>, and the reverse zones of
// the zones' CIDRs and of the overlay.
func Compile(st *compile.State) (Table, error) {
	var t Table
	apex := map[string]bool{}
	zone := func(name string) {
		if !apex[name] {
			apex[name] = true
			t.Zones = append(t.Zones, name)
		}
	}
	if st.Domain != "" {
		zone(dns.Fqdn(strings.ToLower(st.Domain)))
	}
	for _, z := range st.Zones {
		if z.CIDR == "" {
			continue
		}
		p, err := netip.ParsePrefix(z.CIDR)
		if err != nil {
			return t, fmt.Errorf("zone %s: %w", z.Name, err)
		}
		t.Clients = append(t.Clients, p.Masked())
		for _, rz := range reverseZones(p) {
			zone(rz)
		}
	}
	for _, in := range st.Instances {
		for _, nic := range in.NICs {
			ip, err := netip.ParseAddr(nic.IP)
			if err != nil {
				continue // a NIC without an address (a trunk)
			}
			t.Hosts = append(t.Hosts, Host{Name: InstanceName(in.Name, nic.Zone, st.Domain), Addr: ip})
		}
	}
	if o := st.Overlay; o != nil {
		p, err := netip.ParsePrefix(o.CIDR)
		if err != nil {
			return t, fmt.Errorf("overlay: %w", err)
		}
		t.Clients = append(t.Clients, p.Masked())
		zone(dns.Fqdn(strings.ToLower(o.Domain)))
		for _, rz := range reverseZones(p) {
			zone(rz)
		}
		for _, m := range o.Members {
			ap, err := netip.ParsePrefix(m.OverlayIP)
			if err != nil {
				return t, fmt.Errorf("overlay member %s: %w", m.Name, err)
			}
			t.Hosts = append(t.Hosts, Host{Name: dns.Fqdn(strings.ToLower(m.FQDN)), Addr: ap.Addr()})
		}
	}
	slices.Sort(t.Zones)
	return t, nil
}

// InstanceName is the name of an instance's address in a zone (and of a
// DHCP client's, by the hostname it gives): <name>.<zone>.<domain>.
func InstanceName(name, zone, domain string) string {
	return dns.Fqdn(strings.ToLower(name + "." + zone + "." + domain))
}

// Build is the records of st (Compile, then Records).
func Build(st *compile.State) (Records, error) {
	t, err := Compile(st)
	if err != nil {
		return Records{}, err
	}
	return t.Records()
}

// Records are the table's resource records: an A (or AAAA) record for
// every host and the PTR back to it. A name outside the table's zones is
// refused: the server would never answer for it.
func (t Table) Records() (Records, error) {
	r := Records{Zones: slices.Clone(t.Zones), Clients: slices.Clone(t.Clients), Names: make(map[string][]dns.RR, 2*len(t.Hosts))}
	for _, h := range t.Hosts {
		name := dns.Fqdn(strings.ToLower(h.Name))
		if _, ok := dns.IsDomainName(name); !ok || !slices.ContainsFunc(r.Zones, func(z string) bool { return dns.IsSubDomain(z, name) }) {
			return r, fmt.Errorf("host %q is not a name in the table's zones", h.Name)
		}
		if err := r.addAddr(name, h.Addr); err != nil {
			return r, err
		}
	}
	return r, nil
}

// addAddr adds name's A (or AAAA) record and the PTR back to it.
func (r *Records) addAddr(name string, ip netip.Addr) error {
	hdr := func(n string, t uint16) dns.RR_Header {
		return dns.RR_Header{Name: n, Rrtype: t, Class: dns.ClassINET, Ttl: TTL}
	}
	var rr dns.RR
	if ip.Is4() {
		rr = &dns.A{Hdr: hdr(name, dns.TypeA), A: ip.AsSlice()}
	} else {
		rr = &dns.AAAA{Hdr: hdr(name, dns.TypeAAAA), AAAA: ip.AsSlice()}
	}
	r.Names[name] = append(r.Names[name], rr)
	rev, err := dns.ReverseAddr(ip.String())
	if err != nil {
		return err
	}
	r.Names[rev] = append(r.Names[rev], &dns.PTR{Hdr: hdr(rev, dns.TypePTR), Ptr: name})
	return nil
}

// reverseZones are the in-addr.arpa (or ip6.arpa) zones that hold the
// PTR records of p, each at a label boundary (octets; nibbles for IPv6):
// p's own zone when p ends on a boundary; for a prefix between boundaries,
// each zone of the next boundary it covers (a /23 is two /24 zones), or,
// for one within the last label (a /25), the zone holding it (the /24), as
// RFC 2317 would have it delegated.
func reverseZones(p netip.Prefix) []string {
	p = p.Masked()
	step := 8
	if p.Addr().Is6() {
		step = 4
	}
	bits, n := p.Bits(), 1
	if up := (bits + step - 1) / step * step; up != bits && up < p.Addr().BitLen() {
		bits, n = up, 1<<(up-p.Bits())
	} else {
		bits = bits / step * step
	}
	var out []string
	a := p.Addr()
	for range n {
		z, _ := dns.ReverseAddr(a.String())
		// Drop the labels below the zone's boundary.
		labels := dns.SplitDomainName(z)
		keep := len(labels) - (a.BitLen()-bits)/step
		out = append(out, dns.Fqdn(strings.Join(labels[len(labels)-keep:], ".")))
		a = next(a, bits)
	}
	return out
}

// next is the first address after the block of a at prefix length bits.
func next(a netip.Addr, bits int) netip.Addr {
	b := a.AsSlice()
	i, carry := (bits-1)/8, byte(1)<<(7-(bits-1)%8)
	for ; i >= 0; i-- {
		v := b[i] + carry
		overflow := v < b[i]
		b[i] = v
		if !overflow {
			break
		}
		carry = 1
	}
	out, _ := netip.AddrFromSlice(b)
	return out
}
