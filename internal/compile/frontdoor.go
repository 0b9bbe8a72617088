package compile

import (
	"cmp"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/holdfast/holdfast/internal/spec"
)

// KindIngress is the kind of the flows a site's public address forwards:
// the internet to the instance, on the forwarded ports.
const KindIngress = "ingress"

// acme is the cloud's ACME directory, when a route needs it.
func (c *compiler) acme() {
	if !slices.ContainsFunc(c.state.Routes, func(r Route) bool { return r.Proto == spec.ProtoHTTPS && r.Certificate == nil }) {
		return
	}
	a := &ACME{Directory: spec.LetsEncrypt}
	if sa := c.s.ACME; sa != nil {
		a = &ACME{Directory: sa.Directory, Email: sa.Email, CARootsFile: sa.Path(sa.CARoots)}
	}
	c.state.ACME = a
}

// ingresses compile each site's public address: what it forwards, one
// entry per port, to the instance's address.
func (c *compiler) ingresses() {
	for i := range c.state.Sites {
		st := c.s.Sites[c.state.Sites[i].Name]
		if st == nil || st.Ingress == nil {
			continue
		}
		in := &Ingress{Address: st.Ingress.Address, Forward: []Forward{}, HostPorts: nonNil(slices.Clone(st.Ingress.KeptPorts()))}
		if pa, ok := engineSpec(c.state.Sites[i].Engine).(PublicAddresser); ok {
			// The engine's address is where it serves the site (the
			// local engine's edge), whatever a real router would have.
			if a := pa.PublicAddress(c.state, c.state.Sites[i].Name); a != "" {
				in.Address = a
			}
		}
		for _, f := range st.Ingress.Forward {
			to := c.instIndex[f.To]
			if to == nil {
				continue // refused by validation
			}
			for _, r := range f.Ports {
				for p := r.Lo; p <= r.Hi; p++ {
					in.Forward = append(in.Forward, Forward{Proto: f.ForwardProto(), Port: p, To: f.To, ToIP: to.IP})
				}
			}
		}
		slices.SortFunc(in.Forward, func(a, b Forward) int {
			return cmp.Or(cmp.Compare(a.Proto, b.Proto), cmp.Compare(a.Port, b.Port))
		})
		c.state.Sites[i].Ingress = in
	}
}

// ingressFlows let the internet reach what a site's address forwards:
// forwarding a port is allowing it.
func (c *compiler) ingressFlows() []Flow {
	var fs []Flow
	for _, name := range spec.SortedNames(c.s.Sites) {
		st := c.s.Sites[name]
		if st.Ingress == nil {
			continue
		}
		for _, f := range st.Ingress.Forward {
			to := c.instIndex[f.To]
			if to == nil || to.IP == "" {
				continue
			}
			fs = append(fs, Flow{From: spec.Internet, To: f.To, Proto: f.ForwardProto(), Ports: f.Ports.Strings(), Kind: KindIngress, ToCIDR: to.IP + "/32"})
		}
	}
	return fs
}

// challengeFlows let the ACME server's HTTP-01 validation in on port 80
// of a public https route's front ends, and each front end pass a
// challenge on to its challenge peers (routeChallengePeers).
func (c *compiler) challengeFlows() []Flow {
	var fs []Flow
	for _, name := range spec.SortedNames(c.s.Routes) {
		r := c.s.Routes[name]
		if !r.UsesACME() {
			continue
		}
		peers := c.challengePeers(name, r)
		for _, fe := range r.Frontends {
			f := c.instIndex[fe]
			if f == nil || f.IP == "" {
				continue
			}
			if slices.Contains(routeAllowed(r), spec.Internet) {
				fs = append(fs, Flow{From: spec.Internet, To: fe, Proto: "tcp", Ports: []string{ChallengePort}, Kind: KindRoute, ToCIDR: f.IP + "/32"})
			}
			for _, p := range peers {
				if pi := c.instIndex[p]; pi != nil && pi.IP != "" && p != fe {
					fs = append(fs, Flow{From: fe, To: p, Proto: "tcp", Ports: []string{ChallengePort}, Kind: KindRoute, FromCIDR: f.IP + "/32", ToCIDR: pi.IP + "/32"})
				}
			}
		}
	}
	return fs
}

// ChallengePort is where ACME's HTTP-01 validation asks.
const ChallengePort = "80"

// challengePeers are the other front ends that serve the route's host
// over https from ACME: the route's own, and the peer site's routes' for
// the same host. Whichever of them the public address or the hostname
// leads the ACME server to must answer a challenge for any of them: one
// that does not hold the token passes the request on.
func (c *compiler) challengePeers(name string, r *spec.Route) []string {
	peers := slices.Clone(r.Frontends)
	if st := c.s.Sites[c.routeSite(r)]; st != nil && st.Peer != "" {
		for _, on := range spec.SortedNames(c.s.Routes) {
			o := c.s.Routes[on]
			if on != name && o.UsesACME() && strings.EqualFold(o.Host, r.Host) && c.routeSite(o) == st.Peer {
				peers = append(peers, o.Frontends...)
			}
		}
	}
	slices.Sort(peers)
	return slices.Compact(peers)
}

// routeAddress is where clients reach a route: the public address of its
// site when the site forwards the route's port to one of its front ends,
// else its first front end's own address.
func (c *compiler) routeAddress(out *Route) string {
	port := strconv.Itoa(out.Port)
	for _, st := range c.state.Sites {
		if st.Name != out.Site || st.Ingress == nil || st.Ingress.Address == "" {
			continue
		}
		for _, f := range st.Ingress.Forward {
			if f.Proto == "tcp" && f.Port == out.Port && slices.Contains(out.Frontends, f.To) {
				return net.JoinHostPort(st.Ingress.Address, port)
			}
		}
	}
	for _, fe := range out.Frontends {
		if in := c.instIndex[fe]; in != nil && in.IP != "" {
			return net.JoinHostPort(in.IP, port)
		}
	}
	return ""
}

// routeDoor fills what the front door needs of route name.
func (c *compiler) routeDoor(name string, r *spec.Route, out *Route) {
	out.Address = c.routeAddress(out)
	out.Proto = r.RouteProto()
	if out.Proto != spec.ProtoTCP {
		out.HealthPath = cmp.Or(r.HealthPath, "/")
	}
	if cf := r.Certificate; cf != nil {
		out.Certificate = &CertFiles{CertFile: cf.Path(cf.CertFile), KeyFile: cf.Path(cf.KeyFile)}
	}
	if r.UsesACME() {
		out.ChallengePeers = c.challengePeers(name, r)
	}
}

// FrontDoorRoutes are the routes instance name at site serves as a front
// end.
func (s *State) FrontDoorRoutes(site, name string) []Route {
	if s == nil {
		return nil
	}
	var rs []Route
	for _, r := range s.Routes {
		if r.Site == site && slices.Contains(r.Frontends, name) {
			rs = append(rs, r)
		}
	}
	return rs
}

// String is the ingress in one line, for the firewall's attributes:
// "203.0.113.7: tcp/80->10.6.11.10 tcp/443->10.6.11.10; keep 22".
func (in *Ingress) String() string {
	var b strings.Builder
	if in.Address != "" {
		b.WriteString(in.Address + ":")
	}
	for _, f := range in.Forward {
		fmt.Fprintf(&b, " %s/%d->%s", f.Proto, f.Port, f.ToIP)
	}
	b.WriteString("; keep")
	for _, p := range in.HostPorts {
		fmt.Fprintf(&b, " %d", p)
	}
	return strings.TrimSpace(b.String())
}
