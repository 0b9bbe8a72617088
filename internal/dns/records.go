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

// Build derives the records of st: an A record for every NIC under the
// cloud's domain, one for every overlay member under the overlay's domain,
// and the PTR records of both, in the reverse zones of the zones' CIDRs
// and the overlay's.
func Build(st *compile.State) (Records, error) {
	r := Records{Names: map[string][]dns.RR{}}
	apex := map[string]bool{}
	zone := func(name string) {
		if !apex[name] {
			apex[name] = true
			r.Zones = append(r.Zones, name)
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
			return r, fmt.Errorf("zone %s: %w", z.Name, err)
		}
		r.Clients = append(r.Clients, p.Masked())
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
			name := dns.Fqdn(strings.ToLower(in.Name + "." + nic.Zone + "." + st.Domain))
			if err := r.addAddr(name, ip); err != nil {
				return r, err
			}
		}
	}
	if o := st.Overlay; o != nil {
		p, err := netip.ParsePrefix(o.CIDR)
		if err != nil {
			return r, fmt.Errorf("overlay: %w", err)
		}
		r.Clients = append(r.Clients, p.Masked())
		zone(dns.Fqdn(strings.ToLower(o.Domain)))
		for _, rz := range reverseZones(p) {
			zone(rz)
		}
		for _, m := range o.Members {
			ap, err := netip.ParsePrefix(m.OverlayIP)
			if err != nil {
				return r, fmt.Errorf("overlay member %s: %w", m.Name, err)
			}
			if err := r.addAddr(dns.Fqdn(strings.ToLower(m.FQDN)), ap.Addr()); err != nil {
				return r, err
			}
		}
	}
	slices.Sort(r.Zones)
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
