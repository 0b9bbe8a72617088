package pveemu

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
)

// The SDN subnet endpoints, /cluster/sdn/vnets/{vnet}/subnets.

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
