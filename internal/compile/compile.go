package compile

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/holdfast/holdfast/internal/spec"
)

// Defaults for instances that name no flavor.
const (
	DefaultCPUs      = 1
	DefaultMemoryMiB = 1024
	DefaultDiskMiB   = 10 << 10
)

// Compile derives the desired state. s must have passed spec.Validate
// without errors. prev may be empty. It returns the state, the allocations
// to store (prev plus what this compile handed out), and diagnostics for
// what only compiling can find: address collisions, exhausted pools.
func Compile(s *spec.Spec, prev Allocations) (*State, Allocations, spec.Diagnostics) {
	return CompileWith(s, prev, Options{})
}

// CompileWith is Compile with what engines know about the infrastructure:
// VMIDs taken by others and the nodes' free memory.
func CompileWith(s *spec.Spec, prev Allocations, opts Options) (*State, Allocations, spec.Diagnostics) {
	if !s.Valid() {
		// The compiler relies on every default validation fills in; a
		// spec with errors is reported, not compiled.
		var d spec.Diagnostics
		file := ""
		if len(s.Files) > 0 {
			file = s.Files[0]
		}
		d.Errorf(spec.Pos{File: file, Line: 1, Col: 1}, "the spec has errors, or was not validated: it cannot be compiled until it validates")
		return &State{}, prev, d
	}
	c := &compiler{s: s, prev: prev, opts: opts}
	c.state = &State{Cloud: s.Cloud.Name, Domain: s.Cloud.Domain}
	c.sites()
	c.zones()
	c.instances()
	c.ingresses()
	c.dns()
	c.flows()
	c.routes()
	c.acme()
	c.resources()
	c.diags.Sort()
	return c.state, c.next, c.diags
}

type compiler struct {
	s     *spec.Spec
	prev  Allocations
	opts  Options
	next  Allocations
	state *State
	diags spec.Diagnostics

	zoneIndex map[string]*Zone
	instIndex map[string]*Instance
}

func (c *compiler) sites() {
	for _, name := range spec.SortedNames(c.s.Sites) {
		st := c.s.Sites[name]
		c.state.Sites = append(c.state.Sites, Site{Name: name, Engine: st.Engine, Nodes: slices.Clone(st.Nodes), Peer: st.Peer, Settings: c.settings(name, st)})
	}
}

// settings compiles a site's engine block through its engine.
func (c *compiler) settings(name string, st *spec.Site) any {
	if es := engineSpec(st.Engine); es != nil {
		return es.Settings(c.s, name, st)
	}
	return nil
}

func (c *compiler) zones() {
	names := spec.SortedNames(c.s.Zones)
	c.state.Zones = make([]Zone, 0, len(names))
	for _, name := range names {
		z := c.s.Zones[name]
		n := z.Net
		out := Zone{
			Name: name, Type: z.Type, TypeID: n.TypeID, SubID: n.SubID,
			CIDR: n.Prefix.String(), Gateway: n.Gateway.String(),
			AccessTo: nonNil(z.AccessTo), PinholeAllowedFrom: nonNil(z.PinholeAllowedFrom),
			State: n.State, Present: n.Present, Isolated: z.Isolated, IsolateInstances: z.IsolateInstances, Sites: c.zoneSites(z), Tenant: z.Tenant,
		}
		if n.VLAN >= 0 {
			vlan, vni := n.VLAN, VNIBase+n.VLAN
			out.VLAN, out.VNI = &vlan, &vni
		}
		if n.DHCPStart.IsValid() {
			out.DHCPStart, out.DHCPEnd = n.DHCPStart.String(), n.DHCPEnd.String()
		}
		c.state.Zones = append(c.state.Zones, out)
	}
	c.zoneIndex = make(map[string]*Zone, len(c.state.Zones))
	for i := range c.state.Zones {
		c.zoneIndex[c.state.Zones[i].Name] = &c.state.Zones[i]
	}
}

// VNIBase offsets VXLAN ids from VLAN tags, so that an untagged zone (VLAN
// 0) still gets a valid, non-zero VNI and the two never read alike.
const VNIBase = 10000

func (c *compiler) zoneSites(z *spec.Zone) []string {
	if len(z.Sites) > 0 {
		out := slices.Clone(z.Sites)
		slices.Sort(out)
		return out
	}
	return spec.SortedNames(c.s.Sites)
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return slices.Clone(s)
}

// instances places, numbers and addresses every instance. Order matters for
// stability: explicit values first, then what was allocated before, then
// new allocations in name order.
func (c *compiler) instances() {
	names := spec.SortedNames(c.s.Instances)
	c.state.Instances = make([]Instance, len(names))
	c.next.Instances = make(map[string]InstanceAlloc, len(names)+len(c.prev.Instances))
	for i, name := range names {
		in := c.s.Instances[name]
		out := &c.state.Instances[i]
		out.Name, out.Site, out.Role = name, c.s.SiteOf(in), in.Role
		out.Template, out.HA, out.Replicate = in.Template, in.HA, in.Replicate
		out.Pinned, out.Spread = in.Node != "", in.Spread
		if t := c.s.Templates[in.Template]; t != nil {
			out.Image = t.Image
		}
		out.Command = slices.Clone(in.Command)
		out.Tenant, out.Power, out.Reboot, out.Rebuild = in.Tenant, cmpOr(in.Power, PowerRunning), in.Reboot, in.Rebuild
		out.SSHKeys = make([]string, len(in.SSHKeys))
		for j, k := range in.SSHKeys {
			out.SSHKeys[j] = strings.TrimSpace(k)
		}
		out.Groups, out.DependsOn = sortedCopy(in.Groups), sortedCopy(in.DependsOn)
		out.CPUs, out.MemoryMiB, out.DiskMiB = c.size(in)
		out.Ports = make([]Port, 0, len(in.Ports))
		for _, p := range in.Ports {
			out.Ports = append(out.Ports, Port{Port: p.Port, Proto: cmpOr(p.Proto, "tcp")})
		}
	}
	c.instIndex = make(map[string]*Instance, len(names))
	for i := range c.state.Instances {
		c.instIndex[c.state.Instances[i].Name] = &c.state.Instances[i]
	}
	c.place(names)
	c.number(names)
	c.address(names)
	c.overlay(names)
	for _, name := range names {
		out := c.instIndex[name]
		alloc := InstanceAlloc{VMID: out.VMID, Site: out.Site, Node: out.Node, Addrs: make(map[string]string, len(out.NICs)+1)}
		for j := range out.NICs {
			nic := &out.NICs[j]
			nic.MAC = MAC(out.VMID, nic.Index)
			alloc.Addrs[nic.Zone] = nic.IP
		}
		if out.OverlayIP != "" {
			alloc.Addrs[OverlayAddrKey] = out.OverlayIP
		}
		if len(out.NICs) > 0 {
			out.Zone, out.IP, out.MAC = out.NICs[0].Zone, out.NICs[0].IP, out.NICs[0].MAC
			out.FQDN = name + "." + out.Zone + "." + c.s.Cloud.Domain
		}
		c.next.Instances[name] = alloc
	}
	// What was allocated to instances no longer in the spec stays allocated
	// until an engine destroys them.
	for name, a := range c.prev.Instances {
		if _, ok := c.s.Instances[name]; !ok {
			c.next.Instances[name] = a
		}
	}
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func sortedCopy(s []string) []string {
	out := nonNil(s)
	slices.Sort(out)
	return slices.Compact(out)
}

func (c *compiler) size(in *spec.Instance) (cpus int, mem, disk int64) {
	cpus, mem, disk = DefaultCPUs, DefaultMemoryMiB, DefaultDiskMiB
	if f, ok := c.s.Flavors[in.Flavor]; ok {
		cpus, mem = f.CPUs, f.Memory.MiB
		if f.Disk.MiB > 0 {
			disk = f.Disk.MiB
		}
	}
	if in.CPUs != nil {
		cpus = *in.CPUs
	}
	if in.Memory != nil {
		mem = in.Memory.MiB
	}
	if in.Disk != nil {
		disk = in.Disk.MiB
	}
	return cpus, mem, disk
}

// place assigns nodes: explicit, else the node allocated before (if still a
// node of the site), else the best node of the site for a new instance:
// never one holding a member of the instance's spread group, then the one
// with the most free memory when an engine reported it (less what this
// compile has already placed there), else the one with the fewest instances.
func (c *compiler) place(names []string) {
	load := map[string]map[string]int{}      // site -> node -> instances
	placed := map[string]map[string]int64{}  // site -> node -> MiB placed by this compile
	spread := map[string]map[string]string{} // spread group -> node -> member
	for _, st := range c.state.Sites {
		load[st.Name] = make(map[string]int, len(st.Nodes))
		placed[st.Name] = make(map[string]int64, len(st.Nodes))
	}
	mark := func(out *Instance) {
		load[out.Site][out.Node]++
		if out.Spread == "" {
			return
		}
		if spread[out.Spread] == nil {
			spread[out.Spread] = map[string]string{}
		}
		if other, ok := spread[out.Spread][out.Node]; ok {
			c.diags.Warnf(c.s.Instances[out.Name].FieldPos("spread"), "instance %q: shares node %q with %q of spread %q (both were placed before); pin one elsewhere with node:", out.Name, out.Node, other, out.Spread)
		}
		spread[out.Spread][out.Node] = out.Name
	}
	var unplaced []string
	for _, name := range names {
		in, out := c.s.Instances[name], c.instIndex[name]
		nodes := c.s.Sites[out.Site].Nodes
		switch prev, ok := c.prev.Instances[name]; {
		case in.Node != "":
			out.Node = in.Node
		case ok && prev.Site == out.Site && slices.Contains(nodes, prev.Node):
			out.Node = prev.Node
		default:
			unplaced = append(unplaced, name)
			continue
		}
		mark(out)
	}
	for _, name := range unplaced {
		out := c.instIndex[name]
		free, site := c.opts.Free[out.Site], out.Site
		better := func(a, b string) bool {
			if free != nil {
				fa, fb := free[a]-placed[site][a], free[b]-placed[site][b]
				if fa != fb {
					return fa > fb
				}
			}
			return load[site][a] < load[site][b]
		}
		best := ""
		for _, n := range c.s.Sites[site].Nodes {
			if _, held := spread[out.Spread][n]; held && out.Spread != "" {
				continue
			}
			if best == "" || better(n, best) {
				best = n
			}
		}
		if best == "" {
			// Every node holds a member already: validation rules out
			// more members than nodes, so earlier placements share one.
			for _, n := range c.s.Sites[site].Nodes {
				if best == "" || better(n, best) {
					best = n
				}
			}
		}
		out.Node = best
		placed[site][best] += out.MemoryMiB
		mark(out)
	}
}

// number assigns VMIDs. Explicit VMIDs and everything allocated before
// (including to instances since removed) are reserved, so a VMID is never
// handed out twice while it is allocated.
func (c *compiler) number(names []string) {
	used := make(map[int]string, len(names)+len(c.prev.Instances)+len(c.opts.Taken))
	for id := range c.opts.Taken {
		used[id] = "\x00taken"
	}
	for _, name := range names {
		if v := c.s.Instances[name].VMID; v != nil {
			if holder, taken := c.opts.Taken[*v]; taken {
				c.diags.Errorf(c.s.Instances[name].FieldPos("vmid"), "instance %q: VMID %d is taken on the cluster by %s, which Holdfast does not manage for this cloud", name, *v, holder)
			}
			used[*v] = name
			c.instIndex[name].VMID = *v
		}
	}
	var pending []string
	for _, name := range names {
		in := c.s.Instances[name]
		if in.VMID != nil {
			continue
		}
		prev, ok := c.prev.Instances[name]
		role := c.s.Roles[in.Role]
		if ok && role.VMIDs.Contains(prev.VMID) && used[prev.VMID] == "" {
			used[prev.VMID] = name
			c.instIndex[name].VMID = prev.VMID
			continue
		}
		pending = append(pending, name)
	}
	for name, a := range c.prev.Instances {
		if _, ok := c.s.Instances[name]; !ok && used[a.VMID] == "" {
			used[a.VMID] = name
		}
	}
	cursor := map[string]int{}
	for _, name := range pending {
		in := c.s.Instances[name]
		role := c.s.Roles[in.Role]
		id := max(cursor[in.Role], role.VMIDs.Lo)
		for id <= role.VMIDs.Hi && used[id] != "" {
			id++
		}
		cursor[in.Role] = id + 1
		if id > role.VMIDs.Hi {
			c.diags.Errorf(in.FieldPos("role"), "instance %q: role %q has no free VMID left in %s", name, in.Role, role.VMIDs)
			continue
		}
		used[id] = name
		c.instIndex[name].VMID = id
	}
}

// VMIDAddrOffset is Arvandor's VMID-to-address rule: the last octet is the
// VMID's first digit times ten plus its last digit (1001 -> 11, 3000 -> 30).
func VMIDAddrOffset(vmid int) int {
	s := strconv.Itoa(vmid)
	return int(s[0]-'0')*10 + int(s[len(s)-1]-'0')
}

// MAC derives an interface's address from the instance's VMID, unique
// because VMIDs are: locally administered unicast 02:<nic>:<vmid as 4 bytes>.
func MAC(vmid, nic int) string {
	return fmt.Sprintf("02:%02x:%02x:%02x:%02x:%02x", nic&0xff, byte(vmid>>24), byte(vmid>>16), byte(vmid>>8), byte(vmid))
}

type pool struct {
	z      *spec.Zone
	used   map[netip.Addr]string
	cursor int64
}

// free reports whether a is usable for a new allocation in the zone.
func (p *pool) free(a netip.Addr) bool {
	n := p.z.Net
	if !n.Prefix.Contains(a) || a == n.Gateway || a == n.Prefix.Addr() || a == spec.AddrAt(n.Prefix, spec.PrefixSize(n.Prefix)-1) {
		return false
	}
	if n.DHCPStart.IsValid() && spec.InRange(a, n.DHCPStart, n.DHCPEnd) {
		return false
	}
	return p.used[a] == ""
}

func (p *pool) next() (netip.Addr, bool) {
	size := spec.PrefixSize(p.z.Net.Prefix)
	for ; p.cursor < size-1; p.cursor++ {
		if a := spec.AddrAt(p.z.Net.Prefix, p.cursor); p.free(a) {
			p.cursor++
			return a, true
		}
	}
	return netip.Addr{}, false
}

// address gives every interface an address, in four passes so that a
// stable allocation is never displaced by a newer one: explicit addresses,
// VMID-derived ones, earlier allocations, then the pool.
func (c *compiler) address(names []string) {
	pools := make(map[string]*pool, len(c.s.Zones))
	poolOf := func(zone string) *pool {
		if p, ok := pools[zone]; ok {
			return p
		}
		p := &pool{z: c.s.Zones[zone], used: map[netip.Addr]string{}, cursor: 1}
		pools[zone] = p
		return p
	}
	type slot struct {
		inst string
		nic  int
	}
	var derive, fromPrev, fromPool []slot
	for _, name := range names {
		in, out := c.s.Instances[name], c.instIndex[name]
		nics := in.NICs()
		out.NICs = make([]NIC, len(nics))
		for j, nic := range nics {
			z := c.s.Zones[nic.Zone]
			out.NICs[j] = NIC{Index: j, Zone: nic.Zone, Prefix: z.Net.Prefix.Bits(), Gateway: z.Net.Gateway.String(), Trunks: nic.Trunks}
			switch {
			case nic.IP != "":
				a := netip.MustParseAddr(nic.IP)
				poolOf(nic.Zone).used[a] = name
				out.NICs[j].IP = a.String()
			case c.s.Roles[in.Role] != nil && c.s.Roles[in.Role].IP == "vmid":
				derive = append(derive, slot{name, j})
			default:
				fromPrev = append(fromPrev, slot{name, j})
			}
		}
	}
	for _, sl := range derive {
		in, out := c.s.Instances[sl.inst], c.instIndex[sl.inst]
		nic := &out.NICs[sl.nic]
		p := poolOf(nic.Zone)
		a := spec.AddrAt(p.z.Net.Prefix, int64(VMIDAddrOffset(out.VMID)))
		pos := in.NICs()[sl.nic].FieldPos("zone")
		if other := p.used[a]; other != "" {
			c.diags.Errorf(pos, "instance %q: VMID %d derives address %s in zone %q, which instance %q already has", sl.inst, out.VMID, a, nic.Zone, other)
			continue
		}
		if !p.free(a) {
			c.diags.Errorf(pos, "instance %q: VMID %d derives address %s, which zone %q cannot give (outside the subnet, the gateway or in the DHCP range)", sl.inst, out.VMID, a, nic.Zone)
			continue
		}
		p.used[a] = sl.inst
		nic.IP = a.String()
	}
	// Earlier allocations of removed instances stay reserved.
	for name, a := range c.prev.Instances {
		if _, ok := c.s.Instances[name]; ok {
			continue
		}
		for zone, ip := range a.Addrs {
			if addr, err := netip.ParseAddr(ip); err == nil && c.s.Zones[zone] != nil && poolOf(zone).used[addr] == "" {
				poolOf(zone).used[addr] = name
			}
		}
	}
	for _, sl := range fromPrev {
		nic := &c.instIndex[sl.inst].NICs[sl.nic]
		p := poolOf(nic.Zone)
		if prev, ok := c.prev.Instances[sl.inst]; ok {
			if a, err := netip.ParseAddr(prev.Addrs[nic.Zone]); err == nil && p.free(a) {
				p.used[a] = sl.inst
				nic.IP = a.String()
				continue
			}
		}
		fromPool = append(fromPool, sl)
	}
	for _, sl := range fromPool {
		nic := &c.instIndex[sl.inst].NICs[sl.nic]
		p := poolOf(nic.Zone)
		a, ok := p.next()
		if !ok {
			pos := c.s.Instances[sl.inst].NICs()[sl.nic].FieldPos("zone")
			c.diags.Errorf(pos, "instance %q: zone %q has no free address left in %s outside its gateway and DHCP range", sl.inst, nic.Zone, p.z.Net.Prefix)
			continue
		}
		p.used[a] = sl.inst
		nic.IP = a.String()
	}
}
