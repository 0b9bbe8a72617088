package pveemu

import (
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
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

func (e *Emulator) getZones(c *call) (any, error) {
	objs, digest := e.sdn.view(c, "zones")
	out := []map[string]any{}
	for _, id := range slices.Sorted(maps.Keys(objs)) {
		o := zoneJSON(id, objs[id], digest)
		if t := c.values["type"]; t != "" && o["type"] != t {
			continue
		}
		out = append(out, o)
	}
	return out, nil
}

func zoneJSON(id string, o map[string]any, digest string) map[string]any {
	o["zone"] = id
	if digest != "" {
		o["digest"] = digest
	}
	return o
}

func (e *Emulator) getZone(c *call) (any, error) {
	id := c.values["zone"]
	objs, digest := e.sdn.view(c, "zones")
	o, ok := objs[id]
	if !ok {
		return nil, fail("sdn '%s' does not exist", id)
	}
	return zoneJSON(id, o, digest), nil
}

func (e *Emulator) postZone(c *call) (any, error) {
	typ, id := c.values["type"], c.values["zone"]
	opts, err := checkSection(zoneOptions[typ], paramsZoneCreate, c.values, []string{"type", "zone", "lock-token"}, true)
	if err != nil {
		return nil, err
	}
	const what = "create sdn zone object failed"
	s := &e.sdn
	if _, dup := s.zones[id]; dup {
		return nil, lockedErr(what, fail("sdn zone object ID '%s' already defined", id))
	}
	if err := checkZoneRefs(opts); err != nil {
		return nil, lockedErr(what, err)
	}
	z := &scObj{typ: typ, opts: opts}
	if err := s.zoneUpdateHook(id, z); err != nil {
		return nil, lockedErr(what, err)
	}
	s.zones.put(id, z)
	return nil, nil
}

func (e *Emulator) putZone(c *call) (any, error) {
	const what = "update sdn zone object failed"
	s := &e.sdn
	id := c.values["zone"]
	if err := assertDigest(s.zones.digest(), c.values["digest"]); err != nil {
		return nil, lockedErr(what, err)
	}
	old, ok := s.zones[id]
	if !ok {
		return nil, lockedErr(what, fail("sdn '%s' does not exist", id))
	}
	opts, err := checkSection(zoneOptions[old.typ], paramsZoneUpdate, c.values,
		[]string{"zone", "digest", "delete", "lock-token"}, false)
	if err != nil {
		return nil, lockedErr(what, err)
	}
	z := old.clone()
	if err := deleteOptions(z, zoneOptions[old.typ], opts, c.values["delete"]); err != nil {
		return nil, lockedErr(what, err)
	}
	maps.Copy(z.opts, opts)
	if z.opts["ipam"] != old.opts["ipam"] {
		// PVE cannot move a zone's subnets to another IPAM.
		for _, sid := range s.subnets.ids() {
			if zone, _, _ := strings.Cut(sid, "-"); zone == id {
				return nil, lockedErr(what, oneParamError("ipam", "can't change ipam if a subnet is already defined in this zone"))
			}
		}
	}
	if err := checkZoneRefs(opts); err != nil {
		return nil, lockedErr(what, err)
	}
	if err := s.zoneUpdateHook(id, z); err != nil {
		return nil, lockedErr(what, err)
	}
	s.zones.put(id, z)
	return nil, nil
}

// checkZoneRefs checks the DNS and IPAM servers a zone names. The emulator
// has no DNS servers, and only the built-in IPAM "pve" (which PVE always
// adds to ipams.cfg).
func checkZoneRefs(opts map[string]string) error {
	for _, k := range []string{"dns", "reversedns"} {
		if v := opts[k]; v != "" {
			return oneParamError(k, v+" don't exist")
		}
	}
	if opts["dnszone"] != "" && opts["dns"] == "" {
		return oneParamError("dnszone", "missing dns server")
	}
	if v := opts["ipam"]; v != "" && v != "pve" {
		return oneParamError("ipam", v+" not existing")
	}
	return nil
}

// zoneUpdateHook is the zone plugins' on_update_hook.
func (s *sdnState) zoneUpdateHook(id string, z *scObj) error {
	switch z.typ {
	case "vxlan":
		if (z.opts["peers"] != "") == (z.opts["fabric"] != "") {
			const msg = "must have exactly one of peers / fabric defined"
			return paramError(map[string]string{"peers": msg, "fabric": msg})
		}
	case "evpn", "faucet":
		// There are no SDN controllers in the emulator.
		return fail("controller %s don't exist", z.opts["controller"])
	}
	return nil
}

func (e *Emulator) deleteZone(c *call) (any, error) {
	const what = "delete sdn zone object failed"
	s := &e.sdn
	id := c.values["zone"]
	if _, ok := s.zones[id]; !ok {
		return nil, lockedErr(what, fail("sdn '%s' does not exist", id))
	}
	for _, vid := range s.vnets.ids() {
		if s.vnets[vid].opts["zone"] == id {
			return nil, lockedErr(what, fail("zone %s is used by vnet %s", id, vid))
		}
	}
	delete(s.zones, id)
	return nil, nil
}

func (e *Emulator) getVNets(c *call) (any, error) {
	objs, digest := e.sdn.view(c, "vnets")
	out := []map[string]any{}
	for _, id := range slices.Sorted(maps.Keys(objs)) {
		out = append(out, vnetJSON(id, objs[id], digest))
	}
	return out, nil
}

func vnetJSON(id string, o map[string]any, digest string) map[string]any {
	o["vnet"] = id
	if digest != "" {
		o["digest"] = digest
	}
	return o
}

func (e *Emulator) getVNet(c *call) (any, error) {
	id := c.values["vnet"]
	if err := e.sdn.vnetExists(id); err != nil {
		return nil, err
	}
	objs, digest := e.sdn.view(c, "vnets")
	o, ok := objs[id]
	if !ok {
		return nil, fail("sdn vnet '%s' does not exist", id)
	}
	return vnetJSON(id, o, digest), nil
}

// vnetExists is the API's check_vnet_access, which reads the vnet from the
// edited configuration first.
func (s *sdnState) vnetExists(id string) error {
	if _, ok := s.vnets[id]; !ok {
		return fail("sdn vnet '%s' does not exist", id)
	}
	return nil
}

func (e *Emulator) postVNet(c *call) (any, error) {
	const what = "create sdn vnet object failed"
	s := &e.sdn
	id := c.values["vnet"]
	opts, err := checkSection(vnetOptions, paramsVNetCreate, c.values, []string{"type", "vnet", "lock-token"}, true)
	if err != nil {
		return nil, lockedErr(what, err)
	}
	if _, dup := s.vnets[id]; dup {
		return nil, lockedErr(what, fail("sdn vnet object ID '%s' already defined", id))
	}
	v := &scObj{typ: "vnet", opts: opts}
	if err := s.vnetHooks(id, v); err != nil {
		return nil, lockedErr(what, err)
	}
	s.vnets.put(id, v)
	return nil, nil
}

func (e *Emulator) putVNet(c *call) (any, error) {
	const what = "update sdn vnet object failed"
	s := &e.sdn
	id := c.values["vnet"]
	if err := s.vnetExists(id); err != nil {
		return nil, err
	}
	if err := assertDigest(s.vnets.digest(), c.values["digest"]); err != nil {
		return nil, lockedErr(what, err)
	}
	opts, err := checkSection(vnetOptions, paramsVNetUpdate, c.values, []string{"vnet", "digest", "delete", "lock-token"}, false)
	if err != nil {
		return nil, lockedErr(what, err)
	}
	old := s.vnets[id]
	v := old.clone()
	if err := deleteOptions(v, vnetOptions, opts, c.values["delete"]); err != nil {
		return nil, lockedErr(what, err)
	}
	maps.Copy(v.opts, opts)
	if v.opts["zone"] == "" {
		return nil, lockedErr(what, oneParamError("zone", "cannot delete zone"))
	}
	if s.hasSubnets(id) && v.opts["zone"] != old.opts["zone"] {
		return nil, lockedErr(what, oneParamError("zone", "can't change zone if subnets exist"))
	}
	if err := s.vnetHooks(id, v); err != nil {
		return nil, lockedErr(what, err)
	}
	s.vnets.put(id, v)
	return nil, nil
}

// vnetHooks are the zone plugin's vnet_update_hook and the vnet plugin's
// on_update_hook.
func (s *sdnState) vnetHooks(id string, v *scObj) error {
	zone, ok := s.zones[v.opts["zone"]]
	if !ok {
		// PVE looks the zone's plugin up by the type of a zone that is
		// not there.
		return fail("cannot lookup undefined type!")
	}
	tag, hasTag := v.opts["tag"]
	n, _ := strconv.Atoi(tag)
	others := func(yield func(string, *scObj) bool) {
		for _, oid := range s.vnets.ids() {
			if oid != id && !yield(oid, s.vnets[oid]) {
				return
			}
		}
	}
	switch zone.typ {
	case "vlan":
		if !hasTag {
			return oneParamError("tag", "missing vlan tag")
		}
		if n > 4096 {
			return oneParamError("tag", "vlan tag max value is 4096")
		}
		for oid, o := range others {
			if o.opts["zone"] == v.opts["zone"] && o.opts["tag"] == tag {
				return oneParamError("tag", fmt.Sprintf("tag %s already exist in vnet %s", tag, oid))
			}
		}
	case "qinq":
		if n > 4096 {
			return oneParamError("tag", "VLAN tag maximal value is 4096")
		}
		for oid, o := range others {
			if o.opts["zone"] != v.opts["zone"] {
				continue
			}
			otherTag, otherHas := o.opts["tag"]
			if hasTag && otherHas && otherTag == tag {
				return oneParamError("tag", fmt.Sprintf("tag %s already exist in zone %s vnet %s", tag, v.opts["zone"], oid))
			}
			if !hasTag && !otherHas {
				return oneParamError("tag", fmt.Sprintf("tag-less vnet already exists in zone %s vnet %s", v.opts["zone"], oid))
			}
		}
	case "vxlan", "evpn":
		if !hasTag {
			return oneParamError("tag", "missing vxlan tag")
		}
		if n > 16777216 {
			return oneParamError("tag", "vxlan tag max value is 16777216")
		}
		if zone.typ == "evpn" && v.opts["vlanaware"] == "1" {
			return oneParamError("vlan-aware", "vlan-aware option can't be enabled with evpn")
		}
		for oid, o := range others {
			oz := s.zones[o.opts["zone"]]
			if oz != nil && (oz.typ == "vxlan" || oz.typ == "evpn") && o.opts["tag"] == tag {
				return oneParamError("tag", fmt.Sprintf("vxlan tag %s already exist in vnet %s in zone %s ", tag, oid, o.opts["zone"]))
			}
		}
	case "simple":
		if hasTag {
			return oneParamError("tag", "vlan tag is not allowed on simple zone")
		}
	}
	if v.opts["vlanaware"] == "1" && s.hasSubnets(id) {
		return oneParamError("vlanaware", "vlanaware vnet is not compatible with subnets")
	}
	return nil
}

func (s *sdnState) hasSubnets(vnet string) bool {
	for _, o := range s.subnets {
		if o.opts["vnet"] == vnet {
			return true
		}
	}
	return false
}

func (e *Emulator) deleteVNet(c *call) (any, error) {
	s := &e.sdn
	id := c.values["vnet"]
	if err := s.vnetExists(id); err != nil {
		return nil, err
	}
	if s.hasSubnets(id) {
		return nil, lockedErr("delete sdn vnet object failed",
			oneParamError("vnet", "Can't delete vnet if subnets exists"))
	}
	delete(s.vnets, id)
	return nil, nil
}

func (e *Emulator) getSubnets(c *call) (any, error) {
	vnet := c.values["vnet"]
	if err := e.sdn.vnetExists(vnet); err != nil {
		return nil, err
	}
	objs, digest := e.sdn.view(c, "subnets")
	out := []map[string]any{}
	for _, id := range slices.Sorted(maps.Keys(objs)) {
		o := subnetJSON(id, objs[id], digest)
		if o["vnet"] == vnet {
			out = append(out, o)
		}
	}
	return out, nil
}

// subnetJSON adds what the subnet API derives from the ID
// (sdn_subnets_config) and answers the top level dhcp-range parsed.
func subnetJSON(id string, o map[string]any, digest string) map[string]any {
	o["subnet"], o["id"] = id, id
	zone, rest, _ := strings.Cut(id, "-")
	network, mask, _ := strings.Cut(rest, "-")
	o["zone"], o["network"], o["mask"], o["cidr"] = zone, network, mask, network+"/"+mask
	if digest != "" {
		o["digest"] = digest
	}
	ranges := []map[string]string{}
	list, _ := o["dhcp-range"].([]string)
	for _, r := range list {
		if kv, err := parseDHCPRange(r); err == nil {
			ranges = append(ranges, kv)
		}
	}
	o["dhcp-range"] = ranges
	return o
}

func (e *Emulator) getSubnet(c *call) (any, error) {
	vnet, id := c.values["vnet"], c.values["subnet"]
	if err := e.sdn.vnetExists(vnet); err != nil {
		return nil, err
	}
	objs, digest := e.sdn.view(c, "subnets")
	o, ok := objs[id]
	if !ok {
		return nil, fail("sdn subnet '%s' does not exist", id)
	}
	o = subnetJSON(id, o, digest)
	if o["vnet"] != vnet {
		return nil, oneParamError("vnet", "wrong vnet")
	}
	return o, nil
}

// subnetID is PVE's ID for a subnet of a vnet in zone: the CIDR as given,
// its slash a dash, after the zone ("hfz-10.0.10.0-24").
func subnetID(zone, cidr string) string {
	return zone + "-" + strings.Replace(cidr, "/", "-", 1)
}

func (e *Emulator) postSubnet(c *call) (any, error) {
	const what = "create sdn subnet object failed"
	s := &e.sdn
	vnet := c.values["vnet"]
	if err := s.vnetExists(vnet); err != nil {
		return nil, err
	}
	zoneID := s.vnets[vnet].opts["zone"]
	id := subnetID(zoneID, c.values["subnet"])
	opts, err := checkSection(subnetOptions, paramsSubnetCreate, c.values, []string{"type", "subnet", "lock-token"}, true)
	if err != nil {
		return nil, lockedErr(what, err)
	}
	if _, dup := s.subnets[id]; dup {
		return nil, lockedErr(what, fail("sdn subnet object ID '%s' already defined", id))
	}
	sub := &scObj{typ: "subnet", opts: opts}
	if err := s.subnetHook(id, sub); err != nil {
		return nil, lockedErr(what, err)
	}
	s.subnets.put(id, sub)
	return nil, nil
}

func (e *Emulator) putSubnet(c *call) (any, error) {
	const what = "update sdn subnet object failed"
	s := &e.sdn
	vnet, id := c.values["vnet"], c.values["subnet"]
	if err := s.vnetExists(vnet); err != nil {
		return nil, err
	}
	old, ok := s.subnets[id]
	if !ok {
		return nil, lockedErr(what, fail("sdn subnet '%s' does not exist", id))
	}
	if err := assertDigest(s.subnets.digest(), c.values["digest"]); err != nil {
		return nil, lockedErr(what, err)
	}
	opts, err := checkSection(subnetOptions, paramsSubnetUpdate, c.values, []string{"subnet", "digest", "delete", "lock-token"}, false)
	if err != nil {
		return nil, lockedErr(what, err)
	}
	sub := old.clone()
	if err := deleteOptions(sub, subnetOptions, opts, c.values["delete"]); err != nil {
		return nil, lockedErr(what, err)
	}
	maps.Copy(sub.opts, opts)
	if err := s.subnetHook(id, sub); err != nil {
		return nil, lockedErr(what, err)
	}
	s.subnets.put(id, sub)
	return nil, nil
}

// subnetHook is the subnet plugin's on_update_hook, without the IPAM's
// bookkeeping.
func (s *sdnState) subnetHook(id string, sub *scObj) error {
	if v := sub.opts["vnet"]; v != "" {
		vnet, ok := s.vnets[v]
		if !ok {
			return oneParamError("vnet", v+" don't exist")
		}
		if vnet.opts["vlanaware"] == "1" {
			return oneParamError("vnet", "you can't add a subnet on a vlanaware vnet")
		}
	}
	_, rest, _ := strings.Cut(id, "-")
	network, mask, _ := strings.Cut(rest, "-")
	cidr := network + "/" + mask
	prefix, err := netip.ParsePrefix(cidr)
	if err != nil {
		return fail("invalid subnet '%s'", cidr)
	}
	prefix = prefix.Masked()
	if gw := sub.opts["gateway"]; gw != "" {
		a, err := netip.ParseAddr(gw)
		// A /32 gateway may lie outside: point-to-point.
		pointopoint := err == nil && a.Is4() && prefix.Bits() == 32
		if err != nil || !prefix.Contains(a) && !pointopoint {
			return oneParamError("gateway", fmt.Sprintf("%s is not in subnet %s", gw, cidr))
		}
	}
	type span struct{ from, to netip.Addr }
	var seen []span
	for _, r := range splitLines(sub.opts["dhcp-range"]) {
		kv, err := parseDHCPRange(r)
		if err != nil {
			return oneParamError("dhcp-range", err.Error())
		}
		from, to := netip.MustParseAddr(kv["start-address"]), netip.MustParseAddr(kv["end-address"])
		switch {
		case from.Compare(to) > 0:
			return oneParamError("dhcp-range", fmt.Sprintf("start-address %s must be smaller than end-address %s", from, to))
		case !prefix.Contains(from):
			return oneParamError("dhcp-range", fmt.Sprintf("start-address %s is not in subnet %s", from, cidr))
		case !prefix.Contains(to):
			return oneParamError("dhcp-range", fmt.Sprintf("end-address %s is not in subnet %s", to, cidr))
		}
		for _, o := range seen {
			if from.Compare(o.to) <= 0 && o.from.Compare(to) <= 0 {
				return oneParamError("dhcp-range", "dhcp ranges must not overlap")
			}
		}
		seen = append(seen, span{from, to})
	}
	return nil
}

// deleteSubnet removes a subnet; like PVE it succeeds when there is none.
func (e *Emulator) deleteSubnet(c *call) (any, error) {
	s := &e.sdn
	if err := s.vnetExists(c.values["vnet"]); err != nil {
		return nil, err
	}
	delete(s.subnets, c.values["subnet"])
	return nil, nil
}

// getNodeSDNZones is a node's view of the running zones: "pending" until
// the node has reloaded its network with the running configuration.
func (e *Emulator) getNodeSDNZones(c *call) (any, error) {
	node := c.values["node"]
	if err := e.checkNode(node); err != nil {
		return nil, err
	}
	out := []map[string]any{}
	r := e.sdn.running
	if r == nil {
		return out, nil
	}
	status := "available"
	if e.sdn.applied[node] < r.version {
		status = "pending"
	}
	for _, id := range r.zones.ids() {
		if nodes := r.zones[id].opts["nodes"]; nodes != "" && !slices.Contains(splitList(nodes), node) {
			continue
		}
		out = append(out, map[string]any{"zone": id, "status": status})
	}
	return out, nil
}

// Section configs (PVE::SectionConfig), shared by SDN and HA.

// scObj is one section of a section config file: its type and options,
// values as PVE writes them (booleans 1/0; a list option one value a line).
type scObj struct {
	typ  string
	opts map[string]string
}

// scFile is a section config file: its sections by ID.
type scFile map[string]*scObj

func (f scFile) ids() []string { return slices.Sorted(maps.Keys(f)) }

func (f *scFile) put(id string, o *scObj) {
	if *f == nil {
		*f = scFile{}
	}
	(*f)[id] = o
}

func (f scFile) clone() scFile {
	out := scFile{}
	for id, o := range f {
		out[id] = o.clone()
	}
	return out
}

// digest is the SHA1 of the file as written, which PVE reports and checks.
func (f scFile) digest() string {
	var b strings.Builder
	for _, id := range f.ids() {
		o := f[id]
		fmt.Fprintf(&b, "%s: %s\n", o.typ, id)
		for _, k := range slices.Sorted(maps.Keys(o.opts)) {
			for _, v := range splitLines(o.opts[k]) {
				fmt.Fprintf(&b, "\t%s %s\n", k, v)
			}
		}
		b.WriteString("\n")
	}
	sum := sha1.Sum([]byte(b.String()))
	return hex.EncodeToString(sum[:])
}

func (o *scObj) clone() *scObj { return &scObj{typ: o.typ, opts: maps.Clone(o.opts)} }

// keys are the section's keys as PVE holds them, type included.
func (o *scObj) keys() []string {
	return append([]string{"type"}, slices.Sorted(maps.Keys(o.opts))...)
}

func (o *scObj) get(k string) (string, bool) {
	if o == nil {
		return "", false
	}
	if k == "type" {
		return o.typ, true
	}
	v, ok := o.opts[k]
	return v, ok
}

// json is the section as the API answers it.
func (o *scObj) json() map[string]any {
	out := map[string]any{"type": o.typ}
	for k, v := range o.opts {
		out[k] = scValue(k, v)
	}
	return out
}

// scNumeric are the options whose values PVE answers as JSON numbers
// (integers, and booleans as 1 or 0).
var scNumeric = map[string]bool{
	"mtu": true, "tag": true, "vrf-vxlan": true, "vxlan-port": true, "dp-id": true,
	"advertise-subnets": true, "bridge-disable-mac-learning": true, "disable-arp-nd-suppression": true,
	"exitnodes-local-routing": true, "vlanaware": true, "isolate-ports": true, "snat": true,
	"max_restart": true, "max_relocate": true, "failback": true, "strict": true, "disable": true,
}

// scListKeys are the options that hold a list, one value a line.
var scListKeys = map[string]bool{"dhcp-range": true}

func scValue(k, v string) any {
	switch {
	case scListKeys[k]:
		return splitLines(v)
	case scNumeric[k]:
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			return n
		}
	}
	return v
}

func splitLines(v string) []string {
	if v == "" {
		return nil
	}
	return strings.Split(v, "\n")
}

// checkSection is SectionConfig's check_config on a request's parameters
// (less skip): each must be an option of the section's type (options, true
// marking the required ones), and on create every required option must be
// there. Values were checked by the schema; booleans are stored as 1 or 0,
// integers in decimal.
func checkSection(options map[string]bool, params []param, values map[string]string, skip []string, create bool) (map[string]string, error) {
	opts := map[string]string{}
	for _, k := range slices.Sorted(maps.Keys(values)) {
		if slices.Contains(skip, k) {
			continue
		}
		if _, ok := options[k]; !ok {
			return nil, fail("unexpected property '%s'", k)
		}
		v := values[k]
		p, _ := lookupParam(params, k)
		// An array's elements are stored one a line.
		if strings.Contains(v, "\r") || p.kind != kArray && strings.Contains(v, "\n") {
			return nil, fail("property contains a line feed")
		}
		switch p.kind {
		case kBoolean:
			b, _ := parseBool(v)
			v = strconv.Itoa(boolInt(b))
		case kInteger:
			n, _ := strconv.ParseInt(v, 10, 64)
			v = strconv.FormatInt(n, 10)
		case kString:
			if p.format == "pve-node-list" {
				// Stored as a set of node names.
				v = strings.Join(slices.Compact(slices.Sorted(slices.Values(splitList(v)))), ",")
			}
		}
		opts[k] = v
	}
	if create {
		for _, k := range slices.Sorted(maps.Keys(options)) {
			if _, ok := opts[k]; options[k] && !ok {
				return nil, fail("missing value for required option '%s'", k)
			}
		}
	}
	return opts, nil
}

// deleteOptions is SectionConfig's delete_from_config.
func deleteOptions(o *scObj, options map[string]bool, set map[string]string, list string) error {
	for _, k := range splitList(list) {
		required, ok := options[k]
		switch {
		case !ok:
			return fail("no such option '%s'", k)
		case required:
			return fail("unable to delete required option '%s'", k)
		}
		if _, both := set[k]; both {
			return fail("cannot set and delete property '%s' at the same time!", k)
		}
		delete(o.opts, k)
	}
	return nil
}

// assertDigest is PVE::Tools::assert_if_modified.
func assertDigest(current, given string) error {
	if given != "" && given != current {
		return fail("detected modified configuration - file changed by other user? Try again.")
	}
	return nil
}

// lockedErr is how an error raised inside PVE's cluster-wide config locks
// (lock_sdn_config, lock_ha_domain) reaches the caller: a plain 500
// "<what>: <error>", a parameter exception stringified with its status and
// per-parameter errors.
func lockedErr(what string, err error) error {
	var ae *apiError
	if !errors.As(err, &ae) {
		return fail("%s: %v", what, err)
	}
	msg := ae.msg
	if ae.status != http.StatusInternalServerError {
		msg = fmt.Sprintf("%d %s", ae.status, ae.msg)
	}
	for _, k := range slices.Sorted(maps.Keys(ae.errors)) {
		msg += k + ": " + ae.errors[k] + "\n"
	}
	return &apiError{status: http.StatusInternalServerError, msg: what + ": " + msg}
}

func oneParamError(name, msg string) error { return paramError(map[string]string{name: msg}) }

// sdnFormats check PVE's named formats (pve-common's JSONSchema.pm,
// pve-network, pve-ha-manager) used by the SDN, network and HA tables. A
// name ending in -list is a list of the format (split on commas,
// semicolons and spaces). They are registered in namedFormats, where
// checkFormat finds them.
func sdnFormats() map[string]func(string) error {
	return map[string]func(string) error{
		"pve-sdn-zone-id":           sdnIDFormat("zone"),
		"pve-sdn-vnet-id":           sdnIDFormat("vnet"),
		"pve-sdn-subnet-id":         checkSubnetIDFormat,
		"pve-sdn-dhcp-range":        func(v string) error { _, err := parseDHCPRange(v); return err },
		"ip":                        checkIP,
		"ip-list":                   eachOf(checkIP),
		"ipv4":                      checkIPv4,
		"ipv6":                      checkIPv6,
		"ipv4mask":                  checkIPv4Mask,
		"CIDRv4":                    func(v string) error { return checkCIDR(v, true) },
		"CIDRv6":                    func(v string) error { return checkCIDR(v, false) },
		"pve-node-list":             eachOf(func(v string) error { return checkFormat("pve-node", v) }),
		"mac-addr":                  checkUnicastMAC,
		"pve-iface":                 checkIface,
		"pve-iface-list":            eachOf(checkIface),
		"pve-vlan-id-or-range-list": eachOf(checkVLANRange),
		"pve-ha-resource-or-vm-id":  checkHAResourceOrVMID,
		"pve-ha-resource-id-list":   eachOf(checkHAResourceID),
		"pve-ha-node-list":          eachOf(checkHANode),
	}
}

func eachOf(check func(string) error) func(string) error {
	return func(v string) error {
		for _, item := range splitList(v) {
			if err := check(item); err != nil {
				return err
			}
		}
		return nil
	}
}

// sdnIDRe is pve-network's zone and vnet ID format, case-insensitive.
var sdnIDRe = regexp.MustCompile(`^(?i)[a-z][a-z0-9]*[a-z0-9]$`)

func sdnIDFormat(what string) func(string) error {
	return func(v string) error {
		if !sdnIDRe.MatchString(v) {
			return fmt.Errorf("%s ID '%s' contains illegal characters", what, v)
		}
		if len(v) > 8 {
			return fmt.Errorf("%s ID '%s' can't be more length than 8 characters", what, v)
		}
		return nil
	}
}

// checkSubnetIDFormat takes a CIDR or a subnet ID ("zone-10.0.0.0-24").
func checkSubnetIDFormat(v string) error {
	cidr := v
	if !strings.Contains(v, "/") {
		parts := strings.Split(v, "-")
		ip, mask := "", ""
		if len(parts) > 1 {
			ip = parts[1]
		}
		if len(parts) > 2 {
			mask = parts[2]
		}
		cidr = ip + "/" + mask
	}
	if checkCIDR(cidr, true) != nil && checkCIDR(cidr, false) != nil {
		return errors.New("value does not look like a valid CIDR network")
	}
	return nil
}

func parseIP(v string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(v)
	return a, err == nil && a.Zone() == ""
}

func checkIP(v string) error {
	if _, ok := parseIP(v); !ok {
		return errors.New("value does not look like a valid IP address")
	}
	return nil
}

func checkIPv4(v string) error {
	if a, ok := parseIP(v); !ok || !a.Is4() {
		return errors.New("value does not look like a valid IPv4 address")
	}
	return nil
}

func checkIPv6(v string) error {
	if a, ok := parseIP(v); !ok || !a.Is6() {
		return errors.New("value does not look like a valid IPv6 address")
	}
	return nil
}

// checkIPv4Mask takes a dotted netmask, as PVE's ipv4mask does.
func checkIPv4Mask(v string) error {
	a, ok := parseIP(v)
	if ok && a.Is4() {
		b := a.As4()
		bits := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
		if bits|(bits-1) == 0xffffffff || bits == 0 {
			return nil
		}
	}
	return errors.New("value does not look like a valid IP netmask")
}

// checkCIDR is PVE's CIDRv4 or CIDRv6: an address and a prefix length
// above 7.
func checkCIDR(v string, v4 bool) error {
	ip, bits, ok := strings.Cut(v, "/")
	a, okIP := parseIP(ip)
	n, err := strconv.Atoi(bits)
	maxBits := 128
	if v4 {
		maxBits = 32
	}
	if !ok || !okIP || a.Is4() != v4 || err != nil || n <= 7 || n > maxBits {
		if v4 {
			return errors.New("value does not look like a valid IPv4 CIDR network")
		}
		return errors.New("value does not look like a valid IPv6 CIDR network")
	}
	return nil
}

var unicastMACRe = regexp.MustCompile(`^(?i)[a-f0-9][02468ace](:[a-f0-9]{2}){5}$`)

func checkUnicastMAC(v string) error {
	if !unicastMACRe.MatchString(v) {
		return errors.New("value does not look like a valid unicast MAC address")
	}
	return nil
}

// parseDHCPRange parses pve-sdn-dhcp-range,
// "start-address=<ip>,end-address=<ip>".
func parseDHCPRange(v string) (map[string]string, error) {
	kv, err := propertyString(v, "")
	if err != nil {
		return nil, err
	}
	for k := range kv {
		if k != "start-address" && k != "end-address" {
			return nil, fmt.Errorf("invalid key in comma-separated list property: %s", k)
		}
	}
	for _, k := range []string{"start-address", "end-address"} {
		a, ok := kv[k]
		if !ok {
			return nil, fmt.Errorf("%s: property is missing and it is not optional", k)
		}
		if checkIP(a) != nil {
			return nil, fmt.Errorf("%s: value does not look like a valid IP address", k)
		}
	}
	return kv, nil
}
