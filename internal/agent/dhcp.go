package agent

import (
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/holdfast/holdfast/internal/dhcp"
	"github.com/holdfast/holdfast/internal/guest"
)

// applyDHCP brings the DHCP server to c. The server keeps its leases
// across configurations; a new lease file (it never changes in practice)
// starts a new server.
func (a *Agent) applyDHCP(c *guest.DHCPConfig) error {
	if c == nil {
		a.stopDHCP()
		return nil
	}
	pools, err := dhcpPools(c.Pools)
	if err != nil {
		return err
	}
	if a.dhcp != nil && a.dhcpFile != c.LeaseFile {
		a.stopDHCP()
	}
	if a.dhcp == nil {
		s, err := dhcp.New(c.LeaseFile, a.log.With("service", "dhcp"))
		if err != nil {
			return err
		}
		a.dhcp, a.dhcpFile = s, c.LeaseFile
		s.OnChange(a.leasesChanged)
	}
	return a.dhcp.Set(pools)
}

func dhcpPools(in []guest.DHCPPool) ([]dhcp.Pool, error) {
	out := make([]dhcp.Pool, 0, len(in))
	for _, p := range in {
		dp := dhcp.Pool{Zone: p.Zone, Interface: p.Interface, Prefix: p.Prefix, Gateway: p.Gateway,
			Start: p.Start, End: p.End, DNS: p.DNS, Domain: p.Domain}
		for _, r := range p.Reservations {
			mac, err := net.ParseMAC(r.MAC)
			if err != nil {
				return nil, fmt.Errorf("zone %s: reservation %s: %w", p.Zone, r.Hostname, err)
			}
			dp.Reservations = append(dp.Reservations, dhcp.Reservation{MAC: mac, IP: r.IP, Hostname: r.Hostname})
		}
		out = append(out, dp)
	}
	return out, nil
}

func (a *Agent) stopDHCP() {
	if a.dhcp == nil {
		return
	}
	if err := a.dhcp.Close(); err != nil {
		a.log.Warn("dhcp: closing", "err", err)
	}
	a.dhcp, a.dhcpFile = nil, ""
	a.leasesChanged(nil)
}

// leasesChanged registers the DHCP clients' names in the agent's DNS:
// <hostname>.<zone>.<domain> for each lease whose hostname is a DNS label
// and names nothing the cloud already does (a compiled instance keeps its
// name, whatever a client calls itself).
func (a *Agent) leasesChanged(leases []dhcp.Lease) {
	var hosts []leaseName
	for _, l := range leases {
		name := strings.ToLower(l.Hostname)
		if l.Reserved || !label(name) || !l.IP.IsValid() {
			continue
		}
		hosts = append(hosts, leaseName{zone: l.Zone, host: name, addr: l.IP})
	}
	a.dnsMu.Lock()
	defer a.dnsMu.Unlock()
	a.leaseHosts = hosts
	if a.dns != nil {
		if err := a.refreshDNSLocked(); err != nil {
			a.log.Warn("dns: naming DHCP clients", "err", err)
		}
	}
}

// leaseName is a DHCP client's name in its zone.
type leaseName struct {
	zone, host string
	addr       netip.Addr
}

// label reports whether s is one DNS label of letters, digits and inner
// hyphens.
func label(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for _, r := range s {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '-' {
			return false
		}
	}
	return true
}

func (a *Agent) dhcpHealth() guest.Service {
	if a.dhcp == nil {
		return guest.Service{Detail: "the DHCP server is not running"}
	}
	return guest.Service{OK: true, Detail: fmt.Sprintf("%d leases", len(a.dhcp.Leases()))}
}
