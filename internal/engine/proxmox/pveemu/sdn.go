package pveemu

import (
	"maps"
	"regexp"
	"slices"
	"time"
)

// SDN, as pve-network serves it (PVE::API2::Network::SDN and its Zones,
// Vnets and Subnets): the API edits the configuration files under
// /etc/pve/sdn; PUT /cluster/sdn commits them as the running
// configuration and reloads the network of every node. Until then the
// edits are pending, which the index endpoints show with pending=1.
//
// The parameter tables are taken from PVE's published API schema (see
// schema.go); the behaviour the schema does not give (the pending view,
// plugin checks, error texts) follows pve-network's Perl source.
//
// This file holds the state, the route and parameter tables, the apply and
// the views every read shares; the endpoints are in sdn_zones.go,
// sdn_vnets.go and sdn_subnets.go, the named formats in sdn_formats.go.

// TaskSDNApply is the task PUT /cluster/sdn starts to reload the network of
// every node; a key of Config.Durations.
const TaskSDNApply = "reloadnetworkall"

func init() {
	// Registered here so that emulator.go's table stays as it is.
	DefaultDurations[TaskSDNApply] = time.Second
	maps.Copy(namedFormats, sdnFormats())
}

// sdnState is the emulated cluster's SDN configuration: zones.cfg,
// vnets.cfg and subnets.cfg as the API edits them, and .running-config,
// the copy the last apply committed.
type sdnState struct {
	zones, vnets, subnets scFile
	running               *sdnRunning // nil until the first apply
	// applied is, per node, the running-config version the node's
	// network was last reloaded with.
	applied map[string]int
}

type sdnRunning struct {
	version               int
	zones, vnets, subnets scFile
}

// sdnRoutes are the SDN configuration endpoints.
var sdnRoutes = []route{
	{"GET", "/cluster/sdn", nil, (*Emulator).getSDNIndex},
	{"PUT", "/cluster/sdn", paramsSDNApply, (*Emulator).putSDN},
	{"GET", "/cluster/sdn/zones", paramsZoneList, (*Emulator).getZones},
	{"POST", "/cluster/sdn/zones", paramsZoneCreate, (*Emulator).postZone},
	{"GET", "/cluster/sdn/zones/{zone}", paramsZoneRead, (*Emulator).getZone},
	{"PUT", "/cluster/sdn/zones/{zone}", paramsZoneUpdate, (*Emulator).putZone},
	{"DELETE", "/cluster/sdn/zones/{zone}", paramsZoneDelete, (*Emulator).deleteZone},
	{"GET", "/cluster/sdn/vnets", paramsVNetList, (*Emulator).getVNets},
	{"POST", "/cluster/sdn/vnets", paramsVNetCreate, (*Emulator).postVNet},
	{"GET", "/cluster/sdn/vnets/{vnet}", paramsVNetRead, (*Emulator).getVNet},
	{"PUT", "/cluster/sdn/vnets/{vnet}", paramsVNetUpdate, (*Emulator).putVNet},
	{"DELETE", "/cluster/sdn/vnets/{vnet}", paramsVNetDelete, (*Emulator).deleteVNet},
	{"GET", "/cluster/sdn/vnets/{vnet}/subnets", paramsSubnetList, (*Emulator).getSubnets},
	{"POST", "/cluster/sdn/vnets/{vnet}/subnets", paramsSubnetCreate, (*Emulator).postSubnet},
	{"GET", "/cluster/sdn/vnets/{vnet}/subnets/{subnet}", paramsSubnetRead, (*Emulator).getSubnet},
	{"PUT", "/cluster/sdn/vnets/{vnet}/subnets/{subnet}", paramsSubnetUpdate, (*Emulator).putSubnet},
	{"DELETE", "/cluster/sdn/vnets/{vnet}/subnets/{subnet}", paramsSubnetDelete, (*Emulator).deleteSubnet},
	{"GET", "/nodes/{node}/sdn/zones", paramsNodeSDNZones, (*Emulator).getNodeSDNZones},
}

var (
	zoneTypes = []string{"evpn", "faucet", "qinq", "simple", "vlan", "vxlan"}
	// aliasRe is the vnet alias pattern, (?^i:[\(\)-_.\w\d\s]{0,256}),
	// anchored as PVE anchors patterns.
	aliasRe = regexp.MustCompile(`(?i)^[\(\)-_.\w\d\s]{0,256}$`)

	// From the API schema, as are all parameter tables.
	paramsSDNApply = []param{str("lock-token"), boolean("release-lock")}
	paramsZoneList = []param{boolean("pending"), boolean("running"),
		{name: "type", kind: kString, enum: zoneTypes}}
	zoneProperties = []param{
		boolean("advertise-subnets"), str("bridge"), boolean("bridge-disable-mac-learning"), str("controller"),
		{name: "dhcp", kind: kString, enum: []string{"dnsmasq"}}, boolean("disable-arp-nd-suppression"),
		str("dns"), str("dnszone").withFormat("dns-name"), {name: "dp-id", kind: kInteger},
		str("exitnodes").withFormat("pve-node-list"), boolean("exitnodes-local-routing"),
		str("exitnodes-primary").withFormat("pve-node"), str("fabric").withFormat("pve-sdn-fabric-id"),
		str("ipam"), str("lock-token"), str("mac").withFormat("mac-addr"), {name: "mtu", kind: kInteger},
		str("nodes").withFormat("pve-node-list"), str("peers").withFormat("ip-list"), str("reversedns"),
		str("rt-import").withFormat("pve-sdn-bgp-rt-list"), integer("tag", 0, 0),
		{name: "vlan-protocol", kind: kString, enum: []string{"802.1q", "802.1ad"}},
		integer("vrf-vxlan", 1, 16777215), integer("vxlan-port", 1, 65536),
		str("zone").withFormat("pve-sdn-zone-id").req(),
	}
	paramsZoneCreate = append(slices.Clone(zoneProperties),
		param{name: "type", kind: kString, enum: zoneTypes, required: true, format: "pve-configid"})
	paramsZoneUpdate = append(slices.Clone(zoneProperties),
		str("delete").withFormat("pve-configid-list").maxLen(4096), str("digest").maxLen(64))
	paramsZoneRead   = []param{boolean("pending"), boolean("running"), str("zone").withFormat("pve-sdn-zone-id").req()}
	paramsZoneDelete = []param{str("lock-token"), str("zone").withFormat("pve-sdn-zone-id").req()}

	paramsVNetList   = []param{boolean("pending"), boolean("running")}
	paramsVNetCreate = []param{
		str("alias").maxLen(256).matching(aliasRe), boolean("isolate-ports"), str("lock-token"),
		integer("tag", 1, 16777215), {name: "type", kind: kString, enum: []string{"vnet"}}, boolean("vlanaware"),
		str("vnet").withFormat("pve-sdn-vnet-id").req(), str("zone").req(),
	}
	paramsVNetRead   = []param{boolean("pending"), boolean("running"), str("vnet").withFormat("pve-sdn-vnet-id").req()}
	paramsVNetUpdate = []param{
		str("alias").maxLen(256).matching(aliasRe), str("delete").withFormat("pve-configid-list").maxLen(4096),
		str("digest").maxLen(64), boolean("isolate-ports"), str("lock-token"), integer("tag", 1, 16777215),
		boolean("vlanaware"), str("vnet").withFormat("pve-sdn-vnet-id").req(), str("zone"),
	}
	paramsVNetDelete = []param{str("lock-token"), str("vnet").withFormat("pve-sdn-vnet-id").req()}

	paramsSubnetList   = []param{boolean("pending"), boolean("running"), str("vnet").withFormat("pve-sdn-vnet-id").req()}
	paramsSubnetCreate = []param{
		str("dhcp-dns-server").withFormat("ip"), array("dhcp-range", str("dhcp-range").withFormat("pve-sdn-dhcp-range")),
		str("dnszoneprefix").withFormat("dns-name"), str("gateway").withFormat("ip"), str("lock-token"),
		boolean("snat"), str("subnet").withFormat("pve-sdn-subnet-id").req(),
		{name: "type", kind: kString, enum: []string{"subnet"}, required: true}, str("vnet").req(),
	}
	paramsSubnetRead = []param{boolean("pending"), boolean("running"),
		str("subnet").withFormat("pve-sdn-subnet-id").req(), str("vnet").withFormat("pve-sdn-vnet-id").req()}
	paramsSubnetUpdate = []param{
		str("delete").withFormat("pve-configid-list").maxLen(4096), str("dhcp-dns-server").withFormat("ip"),
		array("dhcp-range", str("dhcp-range").withFormat("pve-sdn-dhcp-range")), str("digest").maxLen(64),
		str("dnszoneprefix").withFormat("dns-name"), str("gateway").withFormat("ip"), str("lock-token"),
		boolean("snat"), str("subnet").withFormat("pve-sdn-subnet-id").req(), str("vnet"),
	}
	paramsSubnetDelete = []param{str("lock-token"), str("subnet").withFormat("pve-sdn-subnet-id").req(),
		str("vnet").withFormat("pve-sdn-vnet-id").req()}
	paramsNodeSDNZones = []param{str("node").withFormat("pve-node").req()}
)

// The options each zone type takes (true: required), from the zone
// plugins' options().
var zoneOptions = func() map[string]map[string]bool {
	common := map[string]bool{"nodes": false, "dns": false, "reversedns": false, "dnszone": false, "ipam": false}
	with := func(extra map[string]bool) map[string]bool {
		m := maps.Clone(common)
		maps.Copy(m, extra)
		return m
	}
	return map[string]map[string]bool{
		"simple": with(map[string]bool{"mtu": false, "dhcp": false}),
		"vlan":   with(map[string]bool{"bridge": true, "bridge-disable-mac-learning": false, "mtu": false}),
		"qinq": with(map[string]bool{"tag": true, "bridge": true, "bridge-disable-mac-learning": false,
			"mtu": false, "vlan-protocol": false}),
		"vxlan": with(map[string]bool{"peers": false, "vxlan-port": false, "mtu": false, "fabric": false}),
		"evpn": with(map[string]bool{"vrf-vxlan": true, "controller": true, "exitnodes": false,
			"exitnodes-local-routing": false, "exitnodes-primary": false, "advertise-subnets": false,
			"disable-arp-nd-suppression": false, "bridge-disable-mac-learning": false, "rt-import": false,
			"vxlan-port": false, "mtu": false, "mac": false}),
		"faucet": with(map[string]bool{"dp-id": true, "controller": true}),
	}
}()

var (
	vnetOptions   = map[string]bool{"zone": true, "tag": false, "alias": false, "vlanaware": false, "isolate-ports": false}
	subnetOptions = map[string]bool{"vnet": true, "gateway": false, "snat": false, "dnszoneprefix": false,
		"dhcp-range": false, "dhcp-dns-server": false}
)

func (e *Emulator) getSDNIndex(*call) (any, error) {
	var out []map[string]any
	for _, id := range []string{"vnets", "zones", "controllers", "ipams", "dns", "fabrics"} {
		out = append(out, map[string]any{"id": id})
	}
	return out, nil
}

// putSDN commits the configuration as the running one at once, as
// PVE::API2::Network::SDN's reload does, and starts the task that reloads
// the nodes' networks: when it ends, every node runs this version (and
// has applied its own pending /etc/network/interfaces.new, since the
// reload is a PUT /nodes/{node}/network on each).
func (e *Emulator) putSDN(c *call) (any, error) {
	names := e.nodeNames()
	if len(names) == 0 {
		return nil, fail("cluster has no nodes")
	}
	s := &e.sdn
	version := 1
	if s.running != nil {
		version = s.running.version + 1
	}
	s.running = &sdnRunning{version: version,
		zones: s.zones.clone(), vnets: s.vnets.clone(), subnets: s.subnets.clone()}
	return e.startTask(c, names[0], TaskSDNApply, "", nil, func(time.Time) error {
		if s.applied == nil {
			s.applied = map[string]int{}
		}
		for _, n := range e.nodeNames() {
			s.applied[n] = version
			e.applyNetwork(n)
		}
		return nil
	}), nil
}

// view picks the configuration an SDN read shows: with pending=1 PVE's
// pending view against the running configuration, with running=1 the
// running configuration, otherwise the edited one with its file's digest
// (the only view with a digest).
func (s *sdnState) view(c *call, kind string) (objs map[string]map[string]any, digest string) {
	cfg := s.file(kind)
	var running scFile
	if s.running != nil {
		running = s.running.file(kind)
	}
	if on, _ := parseBool(c.values["pending"]); on {
		return pendingView(running, *cfg), ""
	}
	objs = map[string]map[string]any{}
	if on, _ := parseBool(c.values["running"]); on {
		for id, o := range running {
			objs[id] = o.json()
		}
		return objs, ""
	}
	for id, o := range *cfg {
		objs[id] = o.json()
	}
	return objs, cfg.digest()
}

func (s *sdnState) file(kind string) *scFile {
	switch kind {
	case "zones":
		return &s.zones
	case "vnets":
		return &s.vnets
	}
	return &s.subnets
}

func (r *sdnRunning) file(kind string) scFile {
	switch kind {
	case "zones":
		return r.zones
	case "vnets":
		return r.vnets
	}
	return r.subnets
}

// pendingView is PVE::Network::SDN::pending_config: every object of the
// running or the edited configuration, with the running values at the top,
// the edited ones that differ under "pending" ("deleted" for a removed
// key), and a state of new, changed or deleted. type and vnet are shown
// at the top as edited.
func pendingView(running, cfg scFile) map[string]map[string]any {
	out := map[string]map[string]any{}
	entry := func(id string) map[string]any {
		if out[id] == nil {
			out[id] = map[string]any{}
		}
		return out[id]
	}
	pending := func(o map[string]any) map[string]any {
		p, _ := o["pending"].(map[string]any)
		if p == nil {
			p = map[string]any{}
			o["pending"] = p
		}
		return p
	}
	for _, id := range running.ids() {
		r, c := running[id], cfg[id]
		o := entry(id)
		for _, k := range r.keys() {
			rv, _ := r.get(k)
			o[k] = scValue(k, rv)
			cv, has := c.get(k)
			switch {
			case c == nil:
				o["state"] = "deleted"
			case !has:
				pending(o)[k] = "deleted"
				o["state"] = "changed"
			case cv != rv:
				o["state"] = "changed"
			}
		}
	}
	for _, id := range cfg.ids() {
		r, c := running[id], cfg[id]
		o := entry(id)
		for _, k := range c.keys() {
			cv, _ := c.get(k)
			rv, has := r.get(k)
			if k == "type" || k == "vnet" {
				o[k] = scValue(k, cv)
			} else if !has || cv != rv {
				pending(o)[k] = scValue(k, cv)
			}
			if r == nil {
				o["state"] = "new"
			} else if !has {
				o["state"] = "changed"
			}
		}
	}
	for _, o := range out {
		if o["state"] != nil {
			pending(o)
		}
	}
	return out
}
