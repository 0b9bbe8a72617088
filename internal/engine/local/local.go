// Package local is the engine that realizes a cloud on this Linux host
// with the kernel's own primitives, through netlink and nftables:
//
//   - a network namespace per site edge (the site's router and firewall),
//     per node, and per instance; one more plays the internet. The host's
//     own network namespace is never changed.
//   - per zone, a bridge on the edge (holding the gateway) and on every
//     node, joined by VXLAN over a per-site underlay;
//   - nftables on the edge enforcing exactly the compiled flows;
//   - instances as system containers (package container) in their own
//     namespaces, attached to their zones' bridges by veth pairs.
//
// Everything it makes is named hf.<cloud>.… so that it can be observed,
// repaired and removed by name alone, after any crash.
package local

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/engine"
)

// Name is the engine's name in specs (site engine: local).
const Name = "local"

func init() {
	engine.Register(Name, engine.Driver{New: func(cfg engine.Config) (engine.Engine, error) { return New(cfg) }, Compile: compileSpec{}})
}

// Addressing of the plumbing the engine adds around the cloud. The uplink
// network and the internet's own addresses are documentation ranges
// (RFC 5737), which never collide with a real network; the underlay is
// link-local and private to each site's namespaces.
var (
	wanNet      = netip.MustParsePrefix("198.51.100.0/24") // edges' uplinks into the internet namespace
	inetAddr    = netip.MustParseAddr("198.51.100.1")
	underlayNet = netip.MustParsePrefix("169.254.0.0/24")
	edgeUnder   = netip.MustParseAddr("169.254.0.1")
	// InternetHost is an address the internet namespace answers on, for
	// probing egress.
	InternetHost = netip.MustParseAddr("203.0.113.10")
)

const (
	zoneMTU     = 1500
	underlayMTU = 9000 // room for VXLAN's 50 bytes over a 1500-byte zone
	vxlanPort   = 4789
	wanIf       = "wan0"
)

// Engine is the local engine.
type Engine struct {
	cloud    string
	stateDir string
	desired  *compile.State
	sites    []string
	agents   engine.Agents // nil: instances run no agent

	nsMu sync.Mutex // serializes creating and deleting shared namespaces (the internet, edges)
}

var _ engine.Engine = (*Engine)(nil)

// New creates a local engine for cfg's sites.
func New(cfg engine.Config) (*Engine, error) {
	if cfg.Cloud == "" || strings.ContainsAny(cfg.Cloud, "./") {
		return nil, fmt.Errorf("local engine: invalid cloud name %q", cfg.Cloud)
	}
	e := &Engine{cloud: cfg.Cloud, stateDir: cfg.StateDir, desired: cfg.Desired, sites: slices.Sorted(slices.Values(cfg.Sites)), agents: cfg.Agents}
	if e.desired != nil {
		if err := e.check(); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// check refuses what the local engine cannot realize.
func (e *Engine) check() error {
	for _, z := range e.desired.Zones {
		if !z.Present || z.VLAN == nil {
			continue
		}
		var here []string
		for _, s := range z.Sites {
			if slices.Contains(e.sites, s) {
				here = append(here, s)
			}
		}
		if len(here) > 1 {
			// One subnet behind two edges would need the zone stretched
			// between sites and two gateways with one address.
			if n := e.instancesIn(z.Name, here); n > 1 {
				return fmt.Errorf("local engine: zone %q has instances at %d sites (%s); the local engine realizes a zone at one site only: restrict it with sites: in the spec", z.Name, n, strings.Join(here, ", "))
			}
		}
	}
	if len(e.desired.Sites) > 200 {
		return fmt.Errorf("local engine: %d sites; at most 200 fit its uplink network", len(e.desired.Sites))
	}
	return nil
}

func (e *Engine) instancesIn(zone string, sites []string) int {
	seen := map[string]bool{}
	for _, in := range e.desired.Instances {
		for _, nic := range in.NICs {
			if nic.Zone == zone && slices.Contains(sites, in.Site) {
				seen[in.Site] = true
			}
		}
	}
	return len(seen)
}

// Close releases nothing: handles are opened per step.
func (e *Engine) Close() error { return nil }

// Names of what the engine makes. Dots cannot occur in spec names, so
// every name parses back unambiguously.
func (e *Engine) prefix() string            { return "hf." + e.cloud + "." }
func (e *Engine) inetNS() string            { return e.prefix() + "inet" }
func (e *Engine) edgeNS(site string) string { return e.prefix() + "e." + site }
func (e *Engine) nodeNS(site, node string) string {
	return e.prefix() + "n." + site + "." + node
}
func (e *Engine) instNS(name string) string { return e.prefix() + "i." + name }

// InstanceNS is the network namespace an instance lives in, for tools and tests.
func InstanceNS(cloud, instance string) string { return "hf." + cloud + ".i." + instance }

// NodeNS is a node's namespace, which holds its zones' bridges
// (ZoneBridge), for tools and tests.
func NodeNS(cloud, site, node string) string { return "hf." + cloud + ".n." + site + "." + node }

// ZoneBridge is the bridge of the zone with VXLAN id vni in a node's
// namespace.
func ZoneBridge(vni int) string { return bridgeName(vni) }

// EdgeNS is a site edge's namespace.
func EdgeNS(cloud, site string) string { return "hf." + cloud + ".e." + site }

// InternetNS is the namespace that plays the internet.
func InternetNS(cloud string) string { return "hf." + cloud + ".inet" }

// InstanceDir is an instance's state directory under the engine's state dir.
func InstanceDir(stateDir, instance string) string { return filepath.Join(stateDir, "i", instance) }

func (e *Engine) instDir(name string) string { return InstanceDir(e.stateDir, name) }
func (e *Engine) cgroup(name string) string  { return "holdfast/" + e.cloud + "/" + name }

// siteIndex numbers a site for its uplink address: its place among the
// cloud's sites in name order.
func (e *Engine) siteIndex(site string) (int, error) {
	for i, s := range e.desired.Sites {
		if s.Name == site {
			return i, nil
		}
	}
	return 0, fmt.Errorf("site %q is not in the desired state", site)
}

func edgeWAN(index int) netip.Addr {
	return netip.AddrFrom4([4]byte{198, 51, 100, byte(10 + index)})
}

func nodeUnder(index int) netip.Addr {
	return netip.AddrFrom4([4]byte{169, 254, 0, byte(10 + index)})
}

func (e *Engine) site(name string) (compile.Site, bool) {
	if e.desired == nil {
		return compile.Site{}, false
	}
	for _, s := range e.desired.Sites {
		if s.Name == name {
			return s, true
		}
	}
	return compile.Site{}, false
}

func (e *Engine) zone(name string) (compile.Zone, bool) {
	if e.desired == nil {
		return compile.Zone{}, false
	}
	for _, z := range e.desired.Zones {
		if z.Name == name {
			return z, true
		}
	}
	return compile.Zone{}, false
}

func (e *Engine) instance(name string) (compile.Instance, bool) {
	if e.desired == nil {
		return compile.Instance{}, false
	}
	for _, in := range e.desired.Instances {
		if in.Name == name {
			return in, true
		}
	}
	return compile.Instance{}, false
}

func bridgeName(vni int) string { return "br" + strconv.Itoa(vni) }
func vxlanName(vni int) string  { return "vx" + strconv.Itoa(vni) }

// Ensure makes a resource exist as desired. When it was creating the
// resource (not repairing one) and fails, it reverts: what it made half is
// removed, so a failed create leaves nothing behind.
func (e *Engine) Ensure(ctx context.Context, r compile.Resource) error {
	if e.desired == nil {
		return fmt.Errorf("local engine: no desired state to ensure %s from", r.ID)
	}
	existed := e.exists(r.ID)
	err := stepFault(r.ID)
	if err == nil {
		err = e.ensure(ctx, r)
	}
	if err != nil && !existed {
		if rerr := e.Delete(context.WithoutCancel(ctx), r); rerr != nil {
			err = errors.Join(err, fmt.Errorf("revert of the half-made %s: %w", r.ID, rerr))
		}
	}
	return classify(err)
}

// injectedFault is where tests inject a kernel's failure into a step (the
// conformance suite's fault properties); it is nil in production.
var injectedFault atomic.Pointer[func(id compile.ID) error]

func stepFault(id compile.ID) error {
	if f := injectedFault.Load(); f != nil {
		return (*f)(id)
	}
	return nil
}

// exists reports whether any part of a resource is there already.
func (e *Engine) exists(id compile.ID) bool {
	switch id.Kind {
	case compile.ResSite:
		return nsExists(e.edgeNS(id.Site))
	case compile.ResNetwork, compile.ResFirewall:
		if !nsExists(e.edgeNS(id.Site)) {
			return false
		}
		he, err := openHandle(e.edgeNS(id.Site))
		if err != nil {
			return true // cannot tell: never revert what may be someone's
		}
		defer he.Close()
		if id.Kind == compile.ResFirewall {
			has, err := hasFirewall(he)
			return has || err != nil
		}
		_, _, found, err := findNetwork(he, id)
		return found || err != nil
	case compile.ResInstance:
		return nsExists(e.instNS(id.Name))
	}
	return true
}

func (e *Engine) ensure(ctx context.Context, r compile.Resource) error {
	switch id := r.ID; id.Kind {
	case compile.ResSite:
		return e.ensureSite(id.Site)
	case compile.ResNetwork:
		return e.ensureNetwork(id.Site, id.Name)
	case compile.ResFirewall:
		if err := e.ensureFirewall(id.Site); err != nil {
			return err
		}
		return e.ensureEdgeServices(ctx, id.Site)
	case compile.ResInstance:
		return e.ensureInstance(ctx, id.Name)
	case compile.ResRoute:
		// Routes are realized by their front ends' own software; the
		// flows they need are in the firewall.
		return nil
	}
	return fmt.Errorf("local engine: unknown resource %s", r.ID)
}

// Delete removes a resource and everything it owns.
func (e *Engine) Delete(ctx context.Context, r compile.Resource) error {
	if err := stepFault(r.ID); err != nil {
		return classify(err)
	}
	return classify(e.delete(ctx, r))
}

func (e *Engine) delete(ctx context.Context, r compile.Resource) error {
	switch id := r.ID; id.Kind {
	case compile.ResSite:
		return e.deleteSite(id.Site)
	case compile.ResNetwork:
		return e.deleteNetwork(id.Site, id.Name)
	case compile.ResFirewall:
		return e.deleteFirewall(ctx, id.Site)
	case compile.ResInstance:
		return e.deleteInstance(ctx, id.Name)
	case compile.ResRoute:
		return nil
	}
	return fmt.Errorf("local engine: unknown resource %s", r.ID)
}
