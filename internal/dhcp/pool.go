// Package dhcp serves DHCPv4 leases for the zones that hand them out: one
// server per zone bridge, built on github.com/insomniacslk/dhcp (server4),
// with reservations for compiled instances and leases persisted before
// they are acknowledged, so a restart never hands an address out twice.
package dhcp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// DefaultLeaseTime is a pool's lease time when it names none.
const DefaultLeaseTime = time.Hour

// Pool is one zone's DHCP service on one interface.
type Pool struct {
	Zone         string        // compiled zone name, reported with every lease
	Interface    string        // the bridge the server binds to (SO_BINDTODEVICE via server4)
	Prefix       netip.Prefix  // the zone's CIDR (subnet mask option)
	Gateway      netip.Addr    // router option; the server's own address on Interface (server identifier)
	Start, End   netip.Addr    // the dynamic range, inclusive
	DNS          []netip.Addr  // DNS servers option
	Domain       string        // domain name + domain search option (e.g. "home.tappaas.example")
	LeaseTime    time.Duration // DefaultLeaseTime when 0
	Reservations []Reservation // compiled instances: always get their address, never a pool address
}

// Reservation gives the client with MAC the address IP, whether or not IP
// is inside the dynamic range; no other client is ever given IP.
type Reservation struct {
	MAC      net.HardwareAddr
	IP       netip.Addr
	Hostname string
}

func (p Pool) leaseTime() time.Duration {
	if p.LeaseTime <= 0 {
		return DefaultLeaseTime
	}
	return p.LeaseTime
}

// Validate says what is wrong with p, naming the zone and the field. The
// spec refuses bad user input earlier with its position; this guards the
// engine that builds pools from a compiled state.
func (p Pool) Validate() error {
	err := p.validate()
	if err != nil {
		return fmt.Errorf("dhcp pool %q: %w", p.Zone, err)
	}
	return nil
}

func (p Pool) validate() error {
	switch {
	case p.Zone == "":
		return errors.New("no zone name")
	case p.Interface == "":
		return errors.New("no interface to serve on")
	case !p.Prefix.IsValid() || !p.Prefix.Addr().Is4():
		return fmt.Errorf("prefix %v is not an IPv4 CIDR", p.Prefix)
	case p.Prefix.Bits() > 30:
		return fmt.Errorf("prefix %v leaves no room for a gateway and clients", p.Prefix)
	}
	prefix := p.Prefix.Masked()
	network, broadcast := prefix.Addr(), lastAddr(prefix)
	inside := func(field string, a netip.Addr) error {
		if !a.IsValid() || !a.Is4() {
			return fmt.Errorf("%s %v is not an IPv4 address", field, a)
		}
		if !prefix.Contains(a) {
			return fmt.Errorf("%s %v is outside the zone's CIDR %v", field, a, prefix)
		}
		if a == network || a == broadcast {
			return fmt.Errorf("%s %v is the network or broadcast address of %v", field, a, prefix)
		}
		return nil
	}
	if err := inside("gateway", p.Gateway); err != nil {
		return err
	}
	if err := inside("range start", p.Start); err != nil {
		return err
	}
	if err := inside("range end", p.End); err != nil {
		return err
	}
	if p.End.Less(p.Start) {
		return fmt.Errorf("range end %v comes before its start %v", p.End, p.Start)
	}
	if p.inRange(p.Gateway) {
		return fmt.Errorf("gateway %v is inside the range %v-%v: the gateway would be leased", p.Gateway, p.Start, p.End)
	}
	for _, d := range p.DNS {
		if !d.IsValid() || !d.Is4() {
			return fmt.Errorf("DNS server %v is not an IPv4 address", d)
		}
	}
	if p.LeaseTime < 0 {
		return fmt.Errorf("lease time %v is negative", p.LeaseTime)
	}
	macs := map[string]bool{}
	ips := map[netip.Addr]bool{}
	for _, r := range p.Reservations {
		if len(r.MAC) == 0 {
			return fmt.Errorf("reservation of %v has no MAC address", r.IP)
		}
		if err := inside("reserved address", r.IP); err != nil {
			return fmt.Errorf("reservation for %s: %w", r.MAC, err)
		}
		if r.IP == p.Gateway {
			return fmt.Errorf("reservation of %s is the gateway's address %v", r.MAC, r.IP)
		}
		if macs[r.MAC.String()] {
			return fmt.Errorf("MAC %s is reserved twice", r.MAC)
		}
		if ips[r.IP] {
			return fmt.Errorf("address %v is reserved twice", r.IP)
		}
		macs[r.MAC.String()], ips[r.IP] = true, true
	}
	return nil
}

func (p Pool) inRange(a netip.Addr) bool {
	return !a.Less(p.Start) && !p.End.Less(a)
}

// lastAddr is p's broadcast address.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := 32 - p.Bits()
	for i := 3; i >= 0 && host > 0; i-- {
		n := min(host, 8)
		b[i] |= byte(1<<n - 1)
		host -= n
	}
	return netip.AddrFrom4(b)
}

// validatePools checks every pool and that no zone or interface is served
// twice (one socket per interface answers for exactly one zone).
func validatePools(pools []Pool) error {
	zones := map[string]bool{}
	ifaces := map[string]string{}
	for _, p := range pools {
		if err := p.Validate(); err != nil {
			return err
		}
		if zones[p.Zone] {
			return fmt.Errorf("dhcp pool %q: the zone has two pools", p.Zone)
		}
		if other, ok := ifaces[p.Interface]; ok {
			return fmt.Errorf("dhcp pool %q: interface %s already serves zone %q", p.Zone, p.Interface, other)
		}
		zones[p.Zone], ifaces[p.Interface] = true, p.Zone
	}
	return nil
}
