package pveemu

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Node network configuration, as pve-manager's PVE::API2::Network serves
// it: writes go to /etc/network/interfaces.new, which is what the API
// reads back; PUT /nodes/{node}/network applies it (ifreload) and DELETE
// discards it. The parameter tables are taken from PVE's published API
// schema (see schema.go).
//
// PVE reports pending changes only as the "changes" result attribute of
// the index, a diff of the two files, beside "data"; the emulator does the
// same, and NetworkChanges gives the diff to tests directly.

// TaskNetworkReload is the task PUT /nodes/{node}/network starts to apply the
// node's pending network configuration; a key of Config.Durations.
const TaskNetworkReload = "srvreload"

func init() {
	// Registered here so that emulator.go's table stays as it is.
	DefaultDurations[TaskNetworkReload] = time.Second
}

// netState is the emulated cluster's node network configuration.
type netState struct {
	nodes map[string]*nodeNet
}

// nodeNet is one node's network configuration.
type nodeNet struct {
	running ifaceSet // /etc/network/interfaces, as last applied
	pending ifaceSet // /etc/network/interfaces.new; nil when there is none
}

// ifaceSet is an interfaces file: its interfaces by name.
type ifaceSet map[string]*netIface

// netIface is one interface with PVE's keys (type, method, families,
// address, netmask, bridge_ports, bridge_vids, ...). Booleans that are
// off are absent, as they are when PVE reads the file back.
type netIface struct {
	prio int // its place in the file
	opts map[string]string
}

// networkRoutes are the node network configuration endpoints.
var networkRoutes = []route{
	{"GET", "/nodes/{node}/network", paramsNetList, (*Emulator).getNetwork},
	{"PUT", "/nodes/{node}/network", paramsNetReload, (*Emulator).putNetwork},
	{"DELETE", "/nodes/{node}/network", paramsNetRevert, (*Emulator).deleteNetwork},
	{"GET", "/nodes/{node}/network/{iface}", paramsIfaceRead, (*Emulator).getIface},
	{"PUT", "/nodes/{node}/network/{iface}", paramsIfaceUpdate, (*Emulator).putIface},
}

var (
	ifaceTypes = []string{"bridge", "bond", "eth", "alias", "vlan", "fabric", "OVSBridge", "OVSBond", "OVSPort",
		"OVSIntPort", "vnet"}

	// From the API schema, as are all parameter tables.
	paramsNetList = []param{str("node").withFormat("pve-node").req(),
		{name: "type", kind: kString, enum: append(slices.Clone(ifaceTypes), "any_bridge", "any_local_bridge", "include_sdn")}}
	paramsNetReload   = []param{str("node").withFormat("pve-node").req(), boolean("regenerate-frr")}
	paramsNetRevert   = []param{str("node").withFormat("pve-node").req()}
	paramsIfaceRead   = []param{str("iface").withFormat("pve-iface").maxLen(20).req(), str("node").withFormat("pve-node").req()}
	paramsIfaceUpdate = []param{
		str("address").withFormat("ipv4"), str("address6").withFormat("ipv6"), boolean("autostart"),
		str("bond-primary").withFormat("pve-iface"),
		{name: "bond_mode", kind: kString, enum: []string{"balance-rr", "active-backup", "balance-xor", "broadcast",
			"802.3ad", "balance-tlb", "balance-alb", "balance-slb", "lacp-balance-slb", "lacp-balance-tcp"}},
		{name: "bond_xmit_hash_policy", kind: kString, enum: []string{"layer2", "layer2+3", "layer3+4"}},
		str("bridge_ports").withFormat("pve-iface-list"), str("bridge_vids").withFormat("pve-vlan-id-or-range-list"),
		boolean("bridge_vlan_aware"), str("cidr").withFormat("CIDRv4"), str("cidr6").withFormat("CIDRv6"),
		str("comments"), str("comments6"), str("delete").withFormat("pve-configid-list"),
		str("gateway").withFormat("ipv4"), str("gateway6").withFormat("ipv6"),
		str("iface").withFormat("pve-iface").maxLen(20).req(), integer("mtu", 1280, 65520),
		str("netmask").withFormat("ipv4mask"), integer("netmask6", 0, 128), str("node").withFormat("pve-node").req(),
		str("ovs_bonds").withFormat("pve-iface-list"), str("ovs_bridge").withFormat("pve-iface"),
		str("ovs_options").maxLen(1024), str("ovs_ports").withFormat("pve-iface-list"), integer("ovs_tag", 1, 4094),
		str("slaves").withFormat("pve-iface-list"),
		{name: "type", kind: kString, enum: append(slices.Clone(ifaceTypes), "unknown"), required: true},
		integer("vlan-id", 1, 4094), str("vlan-raw-device").withFormat("pve-iface"),
	}
)

// nodeNetwork is a node's network configuration, made on first use: an
// uplink eno1 and a VLAN-aware bridge vmbr0 on it carrying the node's
// address, as a PVE install with VLANs enabled has.
func (e *Emulator) nodeNetwork(name string) *nodeNet {
	if e.net.nodes == nil {
		e.net.nodes = map[string]*nodeNet{}
	}
	if n := e.net.nodes[name]; n != nil {
		return n
	}
	host := 11 + slices.Index(e.nodeNames(), name)
	n := &nodeNet{running: ifaceSet{
		"eno1": {prio: 3, opts: map[string]string{"type": "eth", "method": "manual", "method6": "manual",
			"families": "inet"}},
		"vmbr0": {prio: 4, opts: map[string]string{"type": "bridge", "method": "static", "method6": "manual",
			"families": "inet", "autostart": "1", "address": fmt.Sprintf("192.0.2.%d", host), "netmask": "24",
			"gateway": "192.0.2.1", "bridge_ports": "eno1", "bridge_stp": "off", "bridge_fd": "0",
			"bridge_vlan_aware": "1", "bridge_vids": "2-4094"}},
	}}
	e.net.nodes[name] = n
	return n
}

// current is the configuration the API reads and edits: the pending one
// if there is one.
func (n *nodeNet) current() ifaceSet {
	if n.pending != nil {
		return n.pending
	}
	return n.running
}

// applyNetwork is ifreload: the pending configuration becomes the running
// one.
func (e *Emulator) applyNetwork(node string) {
	n := e.nodeNetwork(node)
	if n.pending != nil {
		n.running, n.pending = n.pending, nil
	}
}

// NetworkChanges is what PVE reports as the "changes" of a node's network
// index: a diff of /etc/network/interfaces against interfaces.new, empty
// when nothing is pending.
func (e *Emulator) NetworkChanges(node string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.advance(time.Now())
	if _, ok := e.nodes[node]; !ok {
		return ""
	}
	n := e.nodeNetwork(node)
	if n.pending == nil {
		return ""
	}
	return lineDiff("/etc/network/interfaces", "/etc/network/interfaces.new",
		n.running.render(), n.pending.render())
}

func (e *Emulator) getNetwork(c *call) (any, error) {
	node := c.values["node"]
	if err := e.checkNode(node); err != nil {
		return nil, err
	}
	n := e.nodeNetwork(node)
	if n.pending != nil {
		c.attrs = map[string]any{"changes": lineDiff("/etc/network/interfaces", "/etc/network/interfaces.new",
			n.running.render(), n.pending.render())}
	}
	items := map[string]map[string]any{}
	filter := c.values["type"]
	for name, ifc := range n.current() {
		typ := ifc.opts["type"]
		isBridge := typ == "bridge" || typ == "OVSBridge"
		anyBridge := filter == "any_bridge" || filter == "any_local_bridge"
		if match := filter == "" || filter == "include_sdn" || filter == typ || isBridge && anyBridge; !match {
			continue
		}
		items[name] = n.ifaceJSON(name, ifc)
	}
	if filter == "any_bridge" || filter == "include_sdn" || filter == "vnet" {
		maps.Copy(items, e.localVNets(node))
	}
	out := []map[string]any{}
	for _, name := range slices.Sorted(maps.Keys(items)) {
		out = append(out, items[name])
	}
	return out, nil
}

// localVNets are the running configuration's vnets in zones that span
// node, as the network index lists them (get_local_vnets).
func (e *Emulator) localVNets(node string) map[string]map[string]any {
	out := map[string]map[string]any{}
	r := e.sdn.running
	if r == nil {
		return out
	}
	for _, id := range r.vnets.ids() {
		v := r.vnets[id]
		zone := r.zones[v.opts["zone"]]
		if zone == nil {
			continue
		}
		if nodes := zone.opts["nodes"]; nodes != "" && !slices.Contains(splitList(nodes), node) {
			continue
		}
		item := map[string]any{"iface": id, "type": "vnet", "active": "1",
			"ipam": boolInt(zone.opts["ipam"] != ""), "vlanaware": boolInt(v.opts["vlanaware"] == "1")}
		if a := v.opts["alias"]; a != "" {
			item["comments"] = a
		}
		out[id] = item
	}
	return out
}

// netNumeric are the interface keys PVE answers as JSON numbers.
var netNumeric = map[string]bool{"autostart": true, "bridge_vlan_aware": true, "mtu": true, "netmask6": true,
	"vlan-id": true, "ovs_tag": true}

// ifaceJSON is an interface as the API answers it; it is active when the
// running configuration has it (ifreload brought it up).
func (n *nodeNet) ifaceJSON(name string, ifc *netIface) map[string]any {
	out := map[string]any{"iface": name, "priority": ifc.prio}
	for k, v := range ifc.opts {
		switch {
		case k == "families":
			out[k] = strings.Fields(v)
		case netNumeric[k]:
			num, _ := strconv.Atoi(v)
			out[k] = num
		default:
			out[k] = v
		}
	}
	if a, m := ifc.opts["address"], ifc.opts["netmask"]; a != "" && m != "" {
		out["cidr"] = a + "/" + m
	}
	if a, m := ifc.opts["address6"], ifc.opts["netmask6"]; a != "" && m != "" {
		out["cidr6"] = a + "/" + m
	}
	if _, up := n.running[name]; up {
		out["active"] = 1
		if ifc.opts["type"] == "eth" {
			out["exists"] = 1
		}
	}
	return out
}

func (e *Emulator) getIface(c *call) (any, error) {
	node, name := c.values["node"], c.values["iface"]
	if err := e.checkNode(node); err != nil {
		return nil, err
	}
	n := e.nodeNetwork(node)
	ifc, ok := n.current()[name]
	if !ok {
		return nil, oneParamError("iface", "interface does not exist")
	}
	return n.ifaceJSON(name, ifc), nil
}

// putIface is update_network: it edits interfaces.new.
func (e *Emulator) putIface(c *call) (any, error) {
	node, name := c.values["node"], c.values["iface"]
	for _, pair := range [][2]string{{"address", "netmask"}, {"netmask", "address"}, {"address6", "netmask6"}, {"netmask6", "address6"}} {
		if _, ok := c.values[pair[0]]; ok {
			if _, ok := c.values[pair[1]]; !ok {
				return nil, oneParamError(pair[1], fmt.Sprintf("missing property required by '%s'", pair[0]))
			}
		}
	}
	if err := e.checkNode(node); err != nil {
		return nil, err
	}
	n := e.nodeNetwork(node)
	cfg := n.current().clone()
	old, ok := cfg[name]
	if !ok {
		return nil, oneParamError("iface", "interface does not exist")
	}
	ifc := old.opts
	set := map[string]string{}
	for k, v := range c.values {
		if k != "node" && k != "iface" && k != "delete" {
			set[k] = v
		}
	}
	for _, k := range splitList(c.values["delete"]) {
		delete(ifc, k)
		switch k {
		case "cidr":
			delete(ifc, "address")
			delete(ifc, "netmask")
		case "cidr6":
			delete(ifc, "address6")
			delete(ifc, "netmask6")
		}
	}
	if err := cidrToAddress(set, "cidr", "address", "netmask"); err != nil {
		return nil, err
	}
	if err := cidrToAddress(set, "cidr6", "address6", "netmask6"); err != nil {
		return nil, err
	}
	for _, gw := range []struct{ key, name string }{{"gateway", "Default gateway"}, {"gateway6", "Default ipv6 gateway"}} {
		if set[gw.key] == "" {
			continue
		}
		for _, other := range slices.Sorted(maps.Keys(cfg)) {
			if other != name && cfg[other].opts[gw.key] != "" {
				return nil, oneParamError(gw.key, fmt.Sprintf("%s already exists on interface '%s'.", gw.name, other))
			}
		}
	}
	if err := checkDuplicatePorts(cfg, name, set); err != nil {
		return nil, err
	}
	// Like PVE, the address family and method follow this request's
	// address alone: an update without one makes the interface manual.
	families := []string{}
	if set["address"] != "" {
		families = append(families, "inet")
	}
	if set["address6"] != "" {
		families = append(families, "inet6")
	}
	if len(families) == 0 {
		families = []string{"inet"}
	}
	set["families"] = strings.Join(families, " ")
	set["method"], set["method6"] = "manual", "manual"
	if set["address"] != "" {
		set["method"] = "static"
	}
	if set["address6"] != "" {
		set["method6"] = "static"
	}
	for k, v := range set {
		if p, _ := lookupParam(paramsIfaceUpdate, k); p.kind == kBoolean {
			if on, _ := parseBool(v); !on {
				delete(ifc, k)
				continue
			}
			v = "1"
		}
		ifc[k] = v
	}
	if v, ok := set["bridge_vids"]; ok && len(splitList(v)) == 0 {
		return nil, oneParamError("bridge_vids", "VLAN list items are empty")
	}
	n.pending = cfg
	return nil, nil
}

// cidrToAddress splits an address/prefix parameter into address and
// netmask, as update_network does.
func cidrToAddress(set map[string]string, cidr, address, netmask string) error {
	v, ok := set[cidr]
	if !ok {
		return nil
	}
	if _, given := set[address]; given {
		return oneParamError(address, fmt.Sprintf("%s conflicts with %s", address, cidr))
	}
	if _, given := set[netmask]; given {
		return oneParamError(netmask, fmt.Sprintf("%s conflicts with %s", netmask, cidr))
	}
	a, bits, _ := strings.Cut(v, "/")
	set[address], set[netmask] = a, bits
	delete(set, cidr)
	return nil
}

var portKeys = []string{"bridge_ports", "ovs_ports", "slaves", "ovs_bonds"}

// checkDuplicatePorts refuses a port that another interface already uses.
func checkDuplicatePorts(cfg ifaceSet, name string, set map[string]string) error {
	paramName := ""
	ports := func(opts map[string]string) []string {
		var all []string
		for _, k := range portKeys {
			if v := opts[k]; v != "" {
				all = append(all, splitList(v)...)
				if paramName == "" {
					paramName = k
				}
			}
		}
		return all
	}
	want := ports(set)
	for _, other := range slices.Sorted(maps.Keys(cfg)) {
		if other == name {
			continue
		}
		for _, p := range ports(cfg[other].opts) {
			if slices.Contains(want, p) {
				return oneParamError(paramName, fmt.Sprintf("%s is already used on interface '%s'.", p, other))
			}
		}
	}
	return nil
}

// putNetwork is reload_network_config: a task that applies the pending
// configuration.
func (e *Emulator) putNetwork(c *call) (any, error) {
	node := c.values["node"]
	if err := e.checkNode(node); err != nil {
		return nil, err
	}
	return e.startTask(c, node, TaskNetworkReload, "networking", nil, func(time.Time) error {
		e.applyNetwork(node)
		return nil
	}), nil
}

// deleteNetwork is revert_network_changes: it drops interfaces.new.
func (e *Emulator) deleteNetwork(c *call) (any, error) {
	node := c.values["node"]
	if err := e.checkNode(node); err != nil {
		return nil, err
	}
	e.nodeNetwork(node).pending = nil
	return nil, nil
}

func (s ifaceSet) clone() ifaceSet {
	out := ifaceSet{}
	for name, ifc := range s {
		out[name] = &netIface{prio: ifc.prio, opts: maps.Clone(ifc.opts)}
	}
	return out
}

// render writes the set as /etc/network/interfaces.
func (s ifaceSet) render() string {
	names := slices.SortedFunc(maps.Keys(s), func(a, b string) int { return s[a].prio - s[b].prio })
	var b strings.Builder
	b.WriteString("auto lo\niface lo inet loopback\n\n")
	for _, name := range names {
		o := s[name].opts
		if o["autostart"] == "1" {
			fmt.Fprintf(&b, "auto %s\n", name)
		}
		fmt.Fprintf(&b, "iface %s inet %s\n", name, o["method"])
		if a := o["address"]; a != "" {
			fmt.Fprintf(&b, "\taddress %s/%s\n", a, o["netmask"])
		}
		for _, k := range slices.Sorted(maps.Keys(o)) {
			switch k {
			case "type", "method", "method6", "families", "autostart", "address", "netmask", "comments":
				continue
			}
			v := o[k]
			if k == "bridge_vlan_aware" {
				v = "yes"
			}
			fmt.Fprintf(&b, "\t%s %s\n", strings.ReplaceAll(k, "_", "-"), v)
		}
		if cm := o["comments"]; cm != "" {
			fmt.Fprintf(&b, "#%s\n", strings.TrimSuffix(cm, "\n"))
		}
		b.WriteString("\n")
	}
	b.WriteString("source /etc/network/interfaces.d/*\n")
	return b.String()
}

// lineDiff is a unified diff of two texts in one hunk with all lines as
// context; empty when they are equal.
func lineDiff(nameA, nameB, a, b string) string {
	if a == b {
		return ""
	}
	lines := func(s string) []string { return strings.Split(strings.TrimSuffix(s, "\n"), "\n") }
	x, y := lines(a), lines(b)
	// lcs[i][j] is the longest common subsequence of x[i:] and y[j:].
	lcs := make([][]int, len(x)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(y)+1)
	}
	for i := len(x) - 1; i >= 0; i-- {
		for j := len(y) - 1; j >= 0; j-- {
			if x[i] == y[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out strings.Builder
	fmt.Fprintf(&out, "--- %s\n+++ %s\n@@ -1,%d +1,%d @@\n", nameA, nameB, len(x), len(y))
	i, j := 0, 0
	for i < len(x) || j < len(y) {
		switch {
		case i < len(x) && j < len(y) && x[i] == y[j]:
			out.WriteString(" " + x[i] + "\n")
			i, j = i+1, j+1
		case i < len(x) && (j == len(y) || lcs[i+1][j] >= lcs[i][j+1]):
			out.WriteString("-" + x[i] + "\n")
			i++
		default:
			out.WriteString("+" + y[j] + "\n")
			j++
		}
	}
	return out.String()
}

// Network formats of pve-common's JSONSchema.pm.

var ifaceRe = regexp.MustCompile(`^(?i)[a-z][a-z0-9_]{1,20}([:.]\d+)?$`)

func checkIface(v string) error {
	if !ifaceRe.MatchString(v) {
		return fmt.Errorf("invalid network interface name '%s'", v)
	}
	return nil
}

var vlanRangeRe = regexp.MustCompile(`^(\d+)(?:-(\d+))?$`)

// checkVLANRange is pve-vlan-id-or-range: a tag or a range of tags, each
// from 2 to 4094.
func checkVLANRange(v string) error {
	m := vlanRangeRe.FindStringSubmatch(v)
	if m == nil {
		return fmt.Errorf("invalid VLAN configuration '%s'", v)
	}
	start, _ := strconv.Atoi(m[1])
	if start < 2 || start > 4094 {
		return fmt.Errorf("invalid VLAN tag '%s'", m[1])
	}
	if m[2] != "" {
		end, _ := strconv.Atoi(m[2])
		if end < 2 || end > 4094 {
			return fmt.Errorf("invalid VLAN tag '%s'", m[2])
		}
		if start >= end {
			return fmt.Errorf("VLAN range must go from lower to higher tag '%s'", v)
		}
	}
	return nil
}
