// Package specgen writes large synthetic cloud specs for benchmarks and
// load tests: many instances spread over many zones and sites, with
// pinholes, egress rules and dependencies in realistic proportions.
package specgen

import (
	"bufio"
	"fmt"
	"io"
)

// Params sizes a generated spec.
type Params struct {
	Instances int
	Zones     int // at most 500
	Sites     int // at most 9
	Nodes     int // per site
}

// zoneTypes are the types generated zones cycle through (typeIds 2-6), so
// that VLAN = typeId*100+subId stays unique for up to 500 zones.
var zoneTypes = []string{"service", "client", "iot", "guest", "dmz"}

// Write writes one YAML spec for p to w.
func Write(w io.Writer, p Params) error {
	if p.Zones < 1 || p.Zones > 500 || p.Sites < 1 || p.Sites > 9 || p.Nodes < 1 || p.Instances < 0 {
		return fmt.Errorf("specgen: parameters out of range: %+v", p)
	}
	const roles = 10
	perRole := p.Instances/roles + 100
	bw := bufio.NewWriterSize(w, 1<<16)
	fmt.Fprintf(bw, "cloud: {name: gen, domain: gen.example}\nsites:\n")
	for s := range p.Sites {
		fmt.Fprintf(bw, "  site%d: {engine: local, nodes: [", s)
		for n := range p.Nodes {
			if n > 0 {
				fmt.Fprint(bw, ", ")
			}
			fmt.Fprintf(bw, "s%dn%d", s, n)
		}
		fmt.Fprint(bw, "]}\n")
	}
	fmt.Fprint(bw, "zones:\n")
	for z := range p.Zones {
		typ, sub := zoneTypes[z%len(zoneTypes)], z/len(zoneTypes)
		// Each zone gets a /20 in 10.64.0.0/10; it reaches the next zone
		// and the internet, and allows pinholes from the previous zone.
		fmt.Fprintf(bw, "  z%d: {type: %s, sub-id: %d, cidr: 10.%d.%d.0/20, access-to: [internet, z%d], pinhole-allowed-from: [z%d, internet]}\n",
			z, typ, sub, 64+z/16, (z%16)*16, (z+1)%p.Zones, (z+p.Zones-1)%p.Zones)
	}
	fmt.Fprint(bw, "roles:\n")
	for r := range roles {
		lo := 10000 + r*perRole
		fmt.Fprintf(bw, "  role%d: {vmids: %d-%d}\n", r, lo, lo+perRole-1)
	}
	fmt.Fprint(bw, "flavors:\n  small: {cpus: 1, memory: 512M, disk: 8G}\ninstances:\n")
	for i := range p.Instances {
		z := i % p.Zones
		fmt.Fprintf(bw, "  vm%d: {site: site%d, role: role%d, zone: z%d, flavor: small, ports: [443]", i, i%p.Sites, i%roles, z)
		switch i % 10 {
		case 0:
			fmt.Fprintf(bw, ", ingress: [{from: z%d, ports: [443]}]", (z+p.Zones-1)%p.Zones)
		case 1:
			fmt.Fprint(bw, ", ingress: [{from: internet, ports: [80, 443]}]")
		case 2:
			fmt.Fprintf(bw, ", egress: [{to: z%d, ports: [5432]}]", (z+1)%p.Zones)
		}
		if i >= p.Zones && i%3 == 0 {
			fmt.Fprintf(bw, ", depends-on: [vm%d]", i-p.Zones)
		}
		fmt.Fprint(bw, "}\n")
	}
	return bw.Flush()
}
