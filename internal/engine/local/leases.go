package local

import (
	"context"

	"github.com/holdfast/holdfast/internal/dhcp"
	"github.com/holdfast/holdfast/internal/engine"
)

var _ engine.Leaser = (*Engine)(nil)

// Leases are the current leases of every site's edge, from their lease
// files (the edge's agent writes each before it acknowledges it).
func (e *Engine) Leases(ctx context.Context) ([]engine.Lease, error) {
	var out []engine.Lease
	for _, site := range e.sites {
		ls, err := dhcp.ReadLeases(EdgeLeases(e.stateDir, site))
		if err != nil {
			return nil, err
		}
		for _, l := range ls {
			if l.Reserved {
				continue // the compiled reservations are listed from the state
			}
			out = append(out, engine.Lease{Site: site, Zone: l.Zone, IP: l.IP, MAC: l.MAC, Hostname: l.Hostname, Expires: &l.Expires})
		}
	}
	return out, ctx.Err()
}
