package pveemu

import (
	"maps"
	"slices"
	"strings"
)

// The SDN zone endpoints, /cluster/sdn/zones, and a node's view of the
// running zones, /nodes/{node}/sdn/zones.

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
