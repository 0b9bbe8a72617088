package local

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"

	"github.com/holdfast/holdfast/internal/agent"
	"github.com/holdfast/holdfast/internal/atomicfile"
	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/dns"
	"github.com/holdfast/holdfast/internal/engine/local/container"
	"github.com/holdfast/holdfast/internal/guest"
)

// A site's edge is its zones' gateway, and so where their DNS and DHCP
// are served: the Holdfast agent, run from a configuration file the engine
// writes (no guest service needed), in a container on the edge's network
// namespace. It answers DNS on every zone's gateway address and serves
// DHCP on the bridge of every zone with a range, handing out the zone's
// resolvers. It belongs to the site's firewall resource, which comes after
// the site's networks (the bridges and addresses it serves on) and is
// checked for drift with it: a stale configuration (instances came or
// went) or a stopped agent is the firewall's drift, repaired by apply.
//
//	<state>/e/<site>/              the container's state directory (the
//	                               container package's files, and:)
//	                 services.json the agent's configuration (guest.Config)
//	                 agent.json    its settings (guest.AgentSettings)
//	                 agent/        its state: the last configuration applied
//	                 leases.json   the DHCP leases (EdgeLeases)
const (
	edgeConfigFile = "services.json"
	edgeLeaseFile  = "leases.json"
	edgeHostname   = "edge"
)

func (e *Engine) edgeDir(site string) string { return filepath.Join(e.stateDir, "e", site) }

// EdgeLeases is where the local engine's edge of site keeps its DHCP
// leases (stateDir is the engine's).
func EdgeLeases(stateDir, site string) string {
	return filepath.Join(stateDir, "e", site, edgeLeaseFile)
}

// edgeContainer is how a site's edge services run.
func (e *Engine) edgeContainer(site string) container.Config {
	dir := e.edgeDir(site)
	return container.Config{
		Name:   edgeHostname,
		NetNS:  nsPath(e.edgeNS(site)),
		Dir:    dir,
		Cgroup: e.cgroup("edge." + site), // instance names hold no dot: never an instance's
		Agent:  []string{agent.EnvConfig + "=" + filepath.Join(dir, "agent.json")},
		Ports:  e.edgePorts(site),
	}
}

// edgePorts are what the edge answers itself on its public address: the
// ports the site's ingress keeps for the node (its SSH), answered by the
// container's built-in responder, as an instance's ports are: the node's
// own SSH, stood in for.
func (e *Engine) edgePorts(site string) []container.Port {
	var ports []container.Port
	for _, st := range e.desired.Sites {
		if st.Name == site && st.Ingress != nil {
			for _, p := range st.Ingress.HostPorts {
				ports = append(ports, container.Port{Port: p, Proto: "tcp"})
			}
		}
	}
	return ports
}

// edgeConfig is what the edge of site serves.
func (e *Engine) edgeConfig(site string) (guest.Config, error) {
	st := e.desired
	c := guest.Config{Instance: compile.SiteID(site)}
	t, err := dns.Compile(st)
	if err != nil {
		return c, err
	}
	d := &guest.DNSConfig{Table: t, Domain: st.Domain, Listen: []string{}, Upstreams: []string{}}
	if st.DNS != nil {
		d.Upstreams = guest.Upstreams(st.DNS.Upstreams)
	}
	var pools []guest.DHCPPool
	for _, z := range st.Zones {
		if !z.Present || z.VNI == nil || !slices.Contains(z.Sites, site) {
			continue
		}
		zn, err := e.zoneNet(z.Name)
		if err != nil {
			return c, err
		}
		d.Listen = append(d.Listen, netipJoin(zn.gateway.Addr(), guest.DNSPort))
		if z.DHCPStart == "" {
			continue
		}
		p := guest.DHCPPool{Zone: z.Name, Interface: bridgeName(zn.vni), Prefix: zn.cidr, Gateway: zn.gateway.Addr(),
			Domain: z.Name + "." + st.Domain, Reservations: []guest.DHCPReservation{}}
		if p.Start, err = netip.ParseAddr(z.DHCPStart); err != nil {
			return c, err
		}
		if p.End, err = netip.ParseAddr(z.DHCPEnd); err != nil {
			return c, err
		}
		for _, r := range st.ZoneResolvers(site, z) {
			if a, err := netip.ParseAddr(r); err == nil {
				p.DNS = append(p.DNS, a)
			}
		}
		for _, in := range st.Instances {
			for _, nic := range in.NICs {
				if a, err := netip.ParseAddr(nic.IP); err == nil && nic.Zone == z.Name && nic.MAC != "" {
					p.Reservations = append(p.Reservations, guest.DHCPReservation{MAC: nic.MAC, IP: a, Hostname: in.Name})
				}
			}
		}
		pools = append(pools, p)
	}
	c.DNS = d
	if len(pools) > 0 {
		c.DHCP = &guest.DHCPConfig{LeaseFile: EdgeLeases(e.stateDir, site), Pools: pools}
	}
	return c, nil
}

func netipJoin(a netip.Addr, port string) string { return a.String() + ":" + port }

// ensureEdgeServices writes the edge's configuration and starts its agent
// when it is not running; a running agent picks a new configuration up
// from the file.
func (e *Engine) ensureEdgeServices(ctx context.Context, site string) error {
	c, err := e.edgeConfig(site)
	if err != nil {
		return fmt.Errorf("edge services: %w", err)
	}
	dir := e.edgeDir(site)
	if err := os.MkdirAll(filepath.Join(dir, agentDir), 0o700); err != nil {
		return err
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	if old, err := os.ReadFile(filepath.Join(dir, edgeConfigFile)); err != nil || !bytes.Equal(old, b) {
		if err := atomicfile.Write(filepath.Join(dir, edgeConfigFile), b, 0o600); err != nil {
			return err
		}
	}
	settings, err := json.MarshalIndent(guest.AgentSettings{
		ConfigFile: filepath.Join(dir, edgeConfigFile), StateDir: filepath.Join(dir, agentDir),
	}, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(dir, "agent.json"), settings, 0o600); err != nil {
		return err
	}
	cfg := e.edgeContainer(site)
	st, err := container.Inspect(cfg.Dir)
	if err != nil {
		return err
	}
	if st.Running && st.AgentPID > 0 && slices.Equal(st.Config.Ports, cfg.Ports) {
		return nil
	}
	if st.Running {
		if err := container.Stop(ctx, cfg); err != nil {
			return err
		}
	}
	_, err = container.Start(ctx, cfg)
	return err
}

// edgeDrift is what is wrong with the edge's services.
func (e *Engine) edgeDrift(site string) []string {
	st, err := container.Inspect(e.edgeDir(site))
	switch {
	case err != nil:
		return []string{"edge services: " + err.Error()}
	case !st.Running:
		return []string{"edge services (DNS, DHCP) are not running"}
	case st.AgentPID == 0:
		return []string{"edge services: the agent is not running"}
	case !slices.Equal(st.Config.Ports, e.edgePorts(site)):
		return []string{"edge services: the ports the node keeps on its public address changed"}
	}
	c, err := e.edgeConfig(site)
	if err != nil {
		return []string{"edge services: " + err.Error()}
	}
	want, _ := json.MarshalIndent(c, "", "  ")
	if have, err := os.ReadFile(filepath.Join(e.edgeDir(site), edgeConfigFile)); err != nil || !bytes.Equal(have, want) {
		return []string{"edge services: names or DHCP pools are stale"}
	}
	return nil
}

// deleteEdgeServices stops the edge's agent; its leases stay with the
// site's state until the site goes.
func (e *Engine) deleteEdgeServices(ctx context.Context, site string) error {
	return container.Stop(ctx, e.edgeContainer(site))
}
