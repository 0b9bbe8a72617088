package deploy

import (
	"cmp"
	"context"
	"net/netip"
	"slices"

	"github.com/holdfast/holdfast/internal/engine"
)

// Lease is an address in a zone with a DHCP range (engine.Lease).
type Lease = engine.Lease

// Leases are the cloud's reservations and its engines' current leases, by
// zone and address.
func (c *Cloud) Leases(ctx context.Context) ([]Lease, error) {
	out := []Lease{}
	dhcp := map[string]bool{}
	for _, z := range c.Desired.Zones {
		dhcp[z.Name] = z.Present && z.DHCPStart != ""
	}
	for _, in := range c.Desired.Instances {
		for _, nic := range in.NICs {
			ip, err := netip.ParseAddr(nic.IP)
			if err != nil || !dhcp[nic.Zone] {
				continue
			}
			out = append(out, Lease{Site: in.Site, Zone: nic.Zone, IP: ip, MAC: nic.MAC, Hostname: in.Name, Reserved: true})
		}
	}
	for _, e := range c.engine.engines {
		l, ok := e.(engine.Leaser)
		if !ok {
			continue
		}
		ls, err := l.Leases(ctx)
		if err != nil {
			return nil, err
		}
		out = append(out, ls...)
	}
	slices.SortFunc(out, func(a, b Lease) int {
		return cmp.Or(cmp.Compare(a.Site, b.Site), cmp.Compare(a.Zone, b.Zone), a.IP.Compare(b.IP))
	})
	return out, nil
}
