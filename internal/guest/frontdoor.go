package guest

import (
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"

	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/frontdoor"
	"github.com/holdfast/holdfast/internal/spec"
)

// MetricsPort is where a front end's /metrics answers: the port of
// HAProxy's Prometheus exporter, which monitoring set up for an HAProxy
// edge (Tasmanian Cloud's) already scrapes.
const MetricsPort = 8405

// FrontDoorConfig is the front door part of instance in's configuration
// (nil when it fronts no route): each route it fronts, with its backends'
// and failover backends' addresses, its certificate (the operator's, read
// from its files now; or the ACME directory's), and the peers that may
// hold a challenge for its host.
func FrontDoorConfig(st *compile.State, in *compile.Instance) (*frontdoor.Config, error) {
	routes := st.FrontDoorRoutes(in.Site, in.Name)
	if len(routes) == 0 {
		return nil, nil
	}
	addr := func(name string, port int) (string, bool) {
		for i := range st.Instances {
			if o := &st.Instances[i]; o.Name == name && o.IP != "" {
				return net.JoinHostPort(o.IP, strconv.Itoa(port)), true
			}
		}
		return "", false
	}
	addrs := func(names []string, port int) []string {
		var out []string
		for _, n := range names {
			if a, ok := addr(n, port); ok {
				out = append(out, a)
			}
		}
		return out
	}
	c := &frontdoor.Config{Metrics: ":" + strconv.Itoa(MetricsPort)}
	for _, r := range routes {
		fr := frontdoor.Route{
			Name: r.Name, Proto: r.Proto, Host: r.Host, Listen: ":" + strconv.Itoa(r.Port),
			Backends: addrs(r.Backends, r.BackendPort), Failover: addrs(r.Failover, r.BackendPort),
			HealthPath:     r.HealthPath,
			ChallengePeers: addrs(slices.DeleteFunc(slices.Clone(r.ChallengePeers), func(n string) bool { return n == in.Name }), challengePort),
		}
		if cf := r.Certificate; cf != nil {
			cert, err := os.ReadFile(cf.CertFile)
			if err != nil {
				return nil, fmt.Errorf("route %s: %w", r.Name, err)
			}
			key, err := os.ReadFile(cf.KeyFile)
			if err != nil {
				return nil, fmt.Errorf("route %s: %w", r.Name, err)
			}
			fr.Certificate = &frontdoor.Certificate{Cert: string(cert), Key: string(key)}
		}
		c.Routes = append(c.Routes, fr)
	}
	if a := st.ACME; a != nil && slices.ContainsFunc(routes, usesACME) {
		c.ACME = &frontdoor.ACME{Directory: a.Directory, Email: a.Email, HTTPListen: ":" + compile.ChallengePort}
		if a.CARootsFile != "" {
			roots, err := spec.ReadCARoots(a.CARootsFile)
			if err != nil {
				return nil, fmt.Errorf("acme: ca-roots: %w", err)
			}
			c.ACME.Roots = string(roots)
		}
	}
	return c, nil
}

var challengePort, _ = strconv.Atoi(compile.ChallengePort)

func usesACME(r compile.Route) bool { return r.Proto == spec.ProtoHTTPS && r.Certificate == nil }

// FrontDoorPorts are the ports the instance's front door listens on (its
// routes', HTTP for ACME challenges, metrics): none of them is the
// instance's own service's to answer.
func FrontDoorPorts(st *compile.State, site, name string) []int {
	routes := st.FrontDoorRoutes(site, name)
	if len(routes) == 0 {
		return nil
	}
	ports := []int{MetricsPort}
	for _, r := range routes {
		ports = append(ports, r.Port)
	}
	if slices.ContainsFunc(routes, usesACME) {
		ports = append(ports, challengePort)
	}
	slices.Sort(ports)
	return slices.Compact(ports)
}
