package local

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/engine"
	"github.com/holdfast/holdfast/internal/engine/local/container"
	"github.com/holdfast/holdfast/internal/engine/local/firewall"
)

// Observe finds everything the engine has made for the cloud, by name, and
// checks what is desired for drift. It changes nothing.
func (e *Engine) Observe(ctx context.Context) ([]engine.Observed, error) {
	obs, err := e.observe(ctx)
	return obs, classify(err)
}

func (e *Engine) observe(ctx context.Context) ([]engine.Observed, error) {
	names, err := listNS(e.prefix())
	if err != nil {
		return nil, err
	}
	var out []engine.Observed
	var sites []compile.ID
	for _, ns := range names {
		if site, ok := strings.CutPrefix(ns, e.prefix()+"e."); ok {
			sites = append(sites, compile.SiteID(site))
		}
	}
	// Dependencies are what the engine's structure implies, so that what
	// is found without a record (after a crash) is still removed in order:
	// instances and networks before their site.
	addWith := func(id compile.ID, attrs map[string]string, drift []string) {
		deps := []compile.ID{}
		switch id.Kind {
		case compile.ResInstance:
			deps = sites // its site may be a guess (see instanceSite): before every site, then
		case compile.ResSite:
		default:
			deps = []compile.ID{compile.SiteID(id.Site)}
		}
		out = append(out, engine.Observed{Resource: compile.NewResource(id, deps, attrs), Drift: drift})
	}
	add := func(id compile.ID, drift []string) { addWith(id, map[string]string{}, drift) }
	for _, ns := range names {
		rest := strings.TrimPrefix(ns, e.prefix())
		switch {
		case strings.HasPrefix(rest, "e."):
			site := strings.TrimPrefix(rest, "e.")
			add(compile.SiteID(site), e.siteDrift(site))
			he, err := openHandle(ns)
			if err != nil {
				return nil, err
			}
			nets, err := networksOn(he)
			if err != nil {
				he.Close()
				return nil, err
			}
			for _, id := range nets {
				add(id, e.networkDrift(id.Site, id.Name))
			}
			has, err := hasFirewall(he)
			if err != nil {
				he.Close()
				return nil, err
			}
			if has {
				var drift []string
				if _, ok := e.site(site); ok {
					if drift, err = firewall.Verify(he.fd, e.firewallInput(site)); err != nil {
						drift = []string{"cannot read the ruleset: " + err.Error()}
					}
					drift = append(drift, e.isolationDrift(he, site)...)
					drift = append(drift, e.edgeDrift(site)...)
				}
				add(compile.FirewallID(site), drift)
			}
			he.Close()
		case strings.HasPrefix(rest, "i."):
			name := strings.TrimPrefix(rest, "i.")
			attrs, drift := e.observeInstance(name)
			addWith(compile.InstanceID(e.instanceSite(name), name), attrs, drift)
		}
	}
	// A route is realized by its front ends' own software: it exists when
	// they do.
	if e.desired != nil {
		for _, r := range e.desired.Routes {
			if !slices.Contains(e.sites, r.Site) {
				continue // another engine's
			}
			up := len(r.Frontends) > 0
			for _, fe := range r.Frontends {
				up = up && nsExists(e.instNS(fe))
			}
			if up {
				add(compile.RouteID(r.Site, r.Name), nil)
			}
		}
	}
	return out, ctx.Err()
}

// instanceSite tells the site of an instance found by its namespace: the
// desired instance's, else the one its record keeps. An instance made
// before records kept the site, and no longer desired, is put at the
// engine's first site: it is this engine's either way, and deleting it
// needs only its name.
func (e *Engine) instanceSite(name string) string {
	if in, ok := e.instance(name); ok {
		return in.Site
	}
	if rec, ok := readRecord(e.instDir(name)); ok && rec.Site != "" {
		return rec.Site
	}
	if len(e.sites) > 0 {
		return e.sites[0]
	}
	return ""
}

func (e *Engine) siteDrift(name string) []string {
	site, ok := e.site(name)
	if !ok {
		return nil
	}
	var drift []string
	if !nsExists(e.inetNS()) {
		drift = append(drift, "the internet namespace is missing")
	}
	index, err := e.siteIndex(name)
	if err != nil {
		return []string{err.Error()}
	}
	he, err := openHandle(e.edgeNS(name))
	if err != nil {
		return []string{err.Error()}
	}
	defer he.Close()
	if v, err := readSysctl(e.edgeNS(name), "ipv4.ip_forward"); err != nil || v != "1" {
		drift = append(drift, "edge: forwarding is off")
	}
	if wan, _ := he.byName(wanIf); wan == nil {
		drift = append(drift, "edge: uplink "+wanIf+" is missing")
	} else if !he.hasAddr(wan, netip.PrefixFrom(edgeWAN(index), wanNet.Bits())) || wan.Attrs().Flags&net.FlagUp == 0 {
		drift = append(drift, "edge: uplink "+wanIf+" lost its address or is down")
	}
	ul, _ := he.byName("ul")
	if ul == nil {
		drift = append(drift, "edge: underlay bridge ul is missing")
	}
	for i, node := range site.Nodes {
		ns := e.nodeNS(name, node)
		if !nsExists(ns) {
			drift = append(drift, "node "+node+": namespace is missing")
			continue
		}
		if near, _ := he.byName(nodeLink(node)); near == nil || ul == nil || near.Attrs().MasterIndex != ul.Attrs().Index {
			drift = append(drift, "node "+node+": underlay link on the edge is missing or detached")
		}
		hn, err := openHandle(ns)
		if err != nil {
			drift = append(drift, "node "+node+": "+err.Error())
			continue
		}
		if far, _ := hn.byName("ul0"); far == nil || !hn.hasAddr(far, netip.PrefixFrom(nodeUnder(i), underlayNet.Bits())) {
			drift = append(drift, "node "+node+": underlay interface ul0 is missing or unaddressed")
		}
		hn.Close()
	}
	if nodes, err := listNS(e.prefix() + "n." + name + "."); err == nil {
		for _, ns := range nodes {
			if node := strings.TrimPrefix(ns, e.prefix()+"n."+name+"."); !contains(site.Nodes, node) {
				drift = append(drift, "node "+node+" is no longer in the site")
			}
		}
	}
	return drift
}

func (e *Engine) networkDrift(siteName, zoneName string) []string {
	site, ok := e.site(siteName)
	if !ok {
		return nil
	}
	zn, err := e.zoneNet(zoneName)
	if err != nil {
		return nil // not desired: it will be deleted
	}
	var drift []string
	check := func(where, ns string) *handle {
		h, err := openHandle(ns)
		if err != nil {
			drift = append(drift, where+": "+err.Error())
			return nil
		}
		br, _ := h.byName(bridgeName(zn.vni))
		vx, _ := h.byName(vxlanName(zn.vni))
		switch {
		case br == nil:
			drift = append(drift, where+": bridge "+bridgeName(zn.vni)+" is missing")
		case vx == nil:
			drift = append(drift, where+": vxlan "+vxlanName(zn.vni)+" is missing")
		case vx.Attrs().MasterIndex != br.Attrs().Index:
			drift = append(drift, where+": vxlan "+vxlanName(zn.vni)+" is detached from its bridge")
		case br.Attrs().Flags&net.FlagUp == 0 || vx.Attrs().Flags&net.FlagUp == 0:
			drift = append(drift, where+": the zone's links are down")
		}
		return h
	}
	if he := check("edge", e.edgeNS(siteName)); he != nil {
		if br, _ := he.byName(bridgeName(zn.vni)); br != nil && !he.hasAddr(br, zn.gateway) {
			drift = append(drift, "edge: gateway "+zn.gateway.String()+" is missing")
		}
		he.Close()
	}
	for _, node := range site.Nodes {
		if h := check("node "+node, e.nodeNS(siteName, node)); h != nil {
			h.Close()
		}
	}
	if hi, err := openHandle(e.inetNS()); err == nil {
		if !hi.hasRoute(zn.cidr) {
			drift = append(drift, "internet: no route to "+zn.cidr.String())
		}
		hi.Close()
	}
	return drift
}

// observeInstance reads back what an instance's attributes say — its
// power, the generations last realized, the limits in force and its keys —
// and names what differs from the desired instance as drift, with what is
// missing or detached of its interfaces.
func (e *Engine) observeInstance(name string) (map[string]string, []string) {
	dir := e.instDir(name)
	attrs := map[string]string{"power": compile.PowerStopped, "ssh_keys": keysDigest(dir)}
	st, err := container.Inspect(dir)
	if err == nil && st.Running {
		attrs["power"] = compile.PowerRunning
		attrs["cpus"], attrs["memory_mib"] = strconv.Itoa(st.CPUs), strconv.FormatInt(st.MemoryMiB, 10)
	}
	rec, known := readRecord(dir)
	if known {
		attrs["reboot"], attrs["rebuild"] = strconv.Itoa(rec.Reboot), strconv.Itoa(rec.Rebuild)
	}
	in, ok := e.instance(name)
	if !ok {
		return attrs, nil
	}
	var drift []string
	switch {
	case err != nil:
		drift = append(drift, "process: "+err.Error())
	case in.Power == compile.PowerStopped && st.Running:
		drift = append(drift, "power: running, want stopped")
	case in.Power == compile.PowerStopped:
	case !st.Running:
		drift = append(drift, strings.TrimSuffix("power: stopped, want running; "+st.Problem, "; "))
	case !sameConfig(st.Config, e.containerConfig(in)):
		drift = append(drift, "process runs with an old configuration")
	default:
		if st.CPUs != in.CPUs {
			drift = append(drift, fmt.Sprintf("cpus: %d in force, want %d", st.CPUs, in.CPUs))
		}
		if st.MemoryMiB != in.MemoryMiB {
			drift = append(drift, fmt.Sprintf("memory: %d MiB in force, want %d MiB", st.MemoryMiB, in.MemoryMiB))
		}
	}
	if !known {
		drift = append(drift, "no record of its reboot and rebuild generations")
	}
	if known && rec.Reboot != in.Reboot {
		drift = append(drift, fmt.Sprintf("reboot generation %d, want %d", rec.Reboot, in.Reboot))
	}
	if known && rec.Rebuild != in.Rebuild {
		drift = append(drift, fmt.Sprintf("rebuild generation %d, want %d", rec.Rebuild, in.Rebuild))
	}
	if attrs["ssh_keys"] != compile.SSHKeysDigest(in.SSHKeys) {
		drift = append(drift, "ssh-keys: authorized_keys differs from the spec")
	}
	drift = append(drift, e.agentDrift(dir, in)...)
	return attrs, append(drift, e.instanceLinkDrift(in)...)
}

func (e *Engine) instanceLinkDrift(in compile.Instance) []string {
	name := in.Name
	var drift []string
	hn, err := openHandle(e.nodeNS(in.Site, in.Node))
	if err != nil {
		return append(drift, "node "+in.Node+": "+err.Error())
	}
	defer hn.Close()
	hi, err := openHandle(e.instNS(name))
	if err != nil {
		return append(drift, err.Error())
	}
	defer hi.Close()
	for _, nic := range in.NICs {
		z, ok := e.zone(nic.Zone)
		if !ok || !z.Present || z.VNI == nil {
			continue
		}
		link := nicLink(in.VMID, nic.Index)
		near, _ := hn.byName(link)
		br, _ := hn.byName(bridgeName(*z.VNI))
		if near == nil || br == nil || near.Attrs().MasterIndex != br.Attrs().Index || near.Attrs().Flags&net.FlagUp == 0 {
			drift = append(drift, fmt.Sprintf("nic %d: veth %s on node %s is missing, down or detached from zone %s", nic.Index, link, in.Node, nic.Zone))
			continue
		}
		ip, _ := netip.ParseAddr(nic.IP)
		far, _ := hi.byName("eth" + strconv.Itoa(nic.Index))
		if far == nil || !hi.hasAddr(far, netip.PrefixFrom(ip, nic.Prefix)) {
			drift = append(drift, fmt.Sprintf("nic %d: eth%d is missing or lost %s", nic.Index, nic.Index, nic.IP))
		}
	}
	return drift
}
