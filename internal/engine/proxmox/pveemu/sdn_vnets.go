package pveemu

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
)

// The SDN vnet endpoints, /cluster/sdn/vnets.

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
