package proxmox

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/engine/proxmox/pve"
)

// A zone becomes, on an SDN site, a vnet in the cloud's SDN zone (type
// vlan on the site's bridge, or vxlan between its peers) with the zone's
// subnet; changes take effect with one SDN apply (PUT /cluster/sdn) shared
// by every network changed at once. On a site without SDN (network:
// bridge), a zone is its VLAN tag on the node bridges: each node's bridge
// is VLAN-aware and its bridge-vids hold the tag.

func (e *Engine) networkZone(r compile.Resource) (*site, *compile.Zone, error) {
	s, err := e.site(r.Site)
	if err != nil {
		return nil, nil, err
	}
	name := r.ID.Name
	z, ok := e.zones[name]
	if !ok {
		return s, nil, nil
	}
	return s, z, nil
}

func (e *Engine) ensureNetwork(ctx context.Context, r compile.Resource) error {
	s, z, err := e.networkZone(r)
	if err != nil {
		return err
	}
	if z == nil {
		return fmt.Errorf("%s: not a desired zone", r.ID)
	}
	switch {
	case z.State == "manual":
		// Someone else's network: VMs attach to it, Holdfast makes nothing.
		return e.mark(r.ID, true)
	case !s.sdnManaged(z):
		if err := e.ensureBridgeVLAN(ctx, s, *z.VLAN); err != nil {
			return err
		}
		return e.mark(r.ID, true)
	}
	owed, err := e.ensureVNet(ctx, s, z)
	if err != nil {
		return err
	}
	if owed {
		return s.sdn.do(ctx)
	}
	return nil
}

// ensureSDNZone makes the cloud's SDN zone exist as configured. It
// reports whether an SDN apply is owed: the zone changed now, or earlier
// without being applied (an apply stopped between the two).
func (s *site) ensureSDNZone(ctx context.Context) (owed bool, err error) {
	want := pve.SDNZone{Zone: s.cfg.SDNZone, Type: s.cfg.Network}
	if want.Type == "vxlan" {
		want.Peers = s.cfg.Peers
	} else {
		want.Bridge = s.cfg.Bridge
	}
	zones, err := s.api.SDNZones(ctx)
	if err != nil {
		return false, err
	}
	i := slices.IndexFunc(zones, func(z pve.SDNZone) bool { return z.Zone == want.Zone })
	if i < 0 {
		err := s.api.CreateSDNZone(ctx, want)
		if pve.IsExists(err) {
			return true, nil // a concurrent network made it
		}
		return true, err
	}
	have := zones[i]
	if have.State == "deleted" {
		return false, fmt.Errorf("SDN zone %s is pending deletion; apply or revert the SDN configuration first", want.Zone)
	}
	if have.Type != want.Type {
		return false, fmt.Errorf("SDN zone %s exists with type %s, not %s; Holdfast does not change a zone's type", want.Zone, have.Type, want.Type)
	}
	if have.Bridge != want.Bridge || !slices.Equal(have.Peers, want.Peers) {
		want.Digest = have.Digest
		return true, s.api.UpdateSDNZone(ctx, want)
	}
	return have.State != "", nil
}

// ensureVNet makes the zone's vnet and subnet exist as desired. It
// reports whether an SDN apply is owed: something of the cloud's SDN
// changed now, or earlier without being applied.
func (e *Engine) ensureVNet(ctx context.Context, s *site, z *compile.Zone) (changed bool, err error) {
	if changed, err = s.ensureSDNZone(ctx); err != nil {
		return changed, fmt.Errorf("SDN zone %s: %w", s.cfg.SDNZone, err)
	}
	id := s.vnetID(z)
	want := pve.VNet{VNet: id, Zone: s.cfg.SDNZone, Alias: e.owner() + "/" + z.Name, Tag: s.tagOf(z)}
	vnets, err := s.api.VNets(ctx)
	if err != nil {
		return changed, err
	}
	changed = changed || slices.ContainsFunc(vnets, func(v pve.VNet) bool { return v.Zone == s.cfg.SDNZone && v.State != "" })
	switch i := slices.IndexFunc(vnets, func(v pve.VNet) bool { return v.VNet == id }); {
	case i < 0:
		if err := s.api.CreateVNet(ctx, want); err != nil && !pve.IsExists(err) {
			return changed, fmt.Errorf("vnet %s: %w", id, err)
		}
		changed = true
	case vnets[i].Alias != want.Alias && !strings.HasPrefix(vnets[i].Alias, e.owner()+"/"):
		return changed, fmt.Errorf("vnet %s (tag %d) exists and is not this cloud's (alias %q); give the zone another VLAN", id, vnets[i].Tag, vnets[i].Alias)
	case vnets[i].Zone != want.Zone || vnets[i].Alias != want.Alias || vnets[i].Tag != want.Tag || vnets[i].State == "deleted":
		want.Digest = vnets[i].Digest
		if err := s.api.UpdateVNet(ctx, want); err != nil {
			return changed, fmt.Errorf("vnet %s: %w", id, err)
		}
		changed = true
	}
	subnets, err := s.api.Subnets(ctx, id)
	if err != nil {
		return changed, err
	}
	sid := pve.SubnetID(s.cfg.SDNZone, z.CIDR)
	found := false
	for _, sn := range subnets {
		switch {
		case sn.ID != sid:
			// The zone's CIDR changed: the old subnet goes.
			if err := s.api.DeleteSubnet(ctx, id, sn.ID); err != nil && !pve.IsNotFound(err) {
				return changed, fmt.Errorf("subnet %s: %w", sn.ID, err)
			}
			changed = true
		case sn.Gateway != z.Gateway || sn.State == "deleted":
			found = true
			if err := s.api.UpdateSubnet(ctx, pve.Subnet{ID: sid, VNet: id, CIDR: z.CIDR, Gateway: z.Gateway, Digest: sn.Digest}); err != nil {
				return changed, fmt.Errorf("subnet %s: %w", sid, err)
			}
			changed = true
		default:
			// Made but not applied (an apply stopped between the two):
			// the SDN apply is still owed.
			found, changed = true, changed || sn.State != ""
		}
	}
	if !found {
		err := s.api.CreateSubnet(ctx, pve.Subnet{ID: sid, VNet: id, CIDR: z.CIDR, Gateway: z.Gateway})
		if err != nil && !pve.IsExists(err) {
			return changed, fmt.Errorf("subnet %s: %w", z.CIDR, err)
		}
		changed = true
	}
	return changed, nil
}

// tagOf is the vnet tag: the VLAN on vlan zones, the VNI on vxlan zones.
func (s *site) tagOf(z *compile.Zone) int {
	if s.cfg.Network == "vxlan" {
		return *z.VNI
	}
	return *z.VLAN
}

func (e *Engine) deleteNetwork(ctx context.Context, r compile.Resource) error {
	s, err := e.site(r.Site)
	if err != nil {
		return err
	}
	zone := r.ID.Name
	vlan, verr := strconv.Atoi(r.Attrs["vlan"])
	if s.cfg.Network == "bridge" || r.Attrs["managed"] == "false" || verr == nil && vlan == 0 {
		// VLAN tags stay on the bridges: other guests may use them.
		return e.mark(r.ID, false)
	}
	vnets, err := s.api.VNets(ctx)
	if err != nil {
		return err
	}
	alias := e.owner() + "/" + zone
	// pending: a change of ours waits for an SDN apply. Deleting what is
	// gone writes nothing, not even an apply (found by the conformance
	// suite's DeleteWhatIsGone).
	pending := false
	i := slices.IndexFunc(vnets, func(v pve.VNet) bool { return v.Alias == alias })
	if i >= 0 {
		id := vnets[i].VNet
		subnets, err := s.api.Subnets(ctx, id)
		if err != nil {
			return err
		}
		for _, sn := range subnets {
			if err := s.api.DeleteSubnet(ctx, id, sn.ID); err != nil && !pve.IsNotFound(err) {
				return fmt.Errorf("subnet %s: %w", sn.ID, err)
			}
		}
		if err := s.api.DeleteVNet(ctx, id); err != nil && !pve.IsNotFound(err) {
			return fmt.Errorf("vnet %s: %w", id, err)
		}
		pending = true
	}
	// The SDN zone goes with the cloud's last vnet.
	if vnets, err = s.api.VNets(ctx); err != nil {
		return err
	}
	zones, err := s.api.SDNZones(ctx)
	if err != nil {
		return err
	}
	zi := slices.IndexFunc(zones, func(z pve.SDNZone) bool { return z.Zone == s.cfg.SDNZone })
	if zi >= 0 && zones[zi].State != "deleted" &&
		!slices.ContainsFunc(vnets, func(v pve.VNet) bool { return v.Zone == s.cfg.SDNZone && v.State != "deleted" }) {
		if err := s.api.DeleteSDNZone(ctx, s.cfg.SDNZone); err != nil && !pve.IsNotFound(err) {
			return fmt.Errorf("SDN zone %s: %w", s.cfg.SDNZone, err)
		}
		pending = true
	}
	// A deletion an earlier apply made but did not apply (it was killed).
	if zi >= 0 && zones[zi].State != "" || slices.ContainsFunc(vnets, func(v pve.VNet) bool { return v.Zone == s.cfg.SDNZone && v.State != "" }) {
		pending = true
	}
	if !pending {
		return nil
	}
	return s.sdn.do(ctx)
}

// ensureBridgeVLAN makes every node's bridge VLAN-aware with vlan in its
// bridge-vids, reloading the node's network where it changed.
func (e *Engine) ensureBridgeVLAN(ctx context.Context, s *site, vlan int) error {
	if vlan == 0 {
		return nil
	}
	for _, node := range s.nodes {
		ifaces, err := s.api.NodeNetwork(ctx, node)
		if err != nil {
			return fmt.Errorf("node %s: %w", node, err)
		}
		i := slices.IndexFunc(ifaces, func(f pve.Iface) bool { return f.Iface == s.cfg.Bridge })
		if i < 0 {
			return fmt.Errorf("node %s has no bridge %s", node, s.cfg.Bridge)
		}
		br := ifaces[i]
		if br.VLANAware && vidsContain(cmpOrVIDs(br.BridgeVIDs), vlan) && !br.Pending {
			continue
		}
		vids := strings.TrimSpace(br.BridgeVIDs)
		switch {
		case !br.VLANAware:
			vids = "" // a plain bridge carried no tags: only ours now
		case vids == "":
			vids = "2-4094" // ifupdown2's default for a VLAN-aware bridge
		}
		if !vidsContain(vids, vlan) {
			vids = strings.TrimSpace(vids + " " + strconv.Itoa(vlan))
		}
		if err := s.api.SetBridgeVIDs(ctx, node, s.cfg.Bridge, vids); err != nil {
			return fmt.Errorf("node %s bridge %s: %w", node, s.cfg.Bridge, err)
		}
		if err := s.api.ReloadNetwork(ctx, node); err != nil {
			return fmt.Errorf("node %s: reload network: %w", node, err)
		}
	}
	return nil
}

// cmpOrVIDs is a VLAN-aware bridge's VLANs: its bridge-vids, or
// ifupdown2's default 2-4094 when it has none.
func cmpOrVIDs(vids string) string {
	if strings.TrimSpace(vids) == "" {
		return "2-4094"
	}
	return vids
}

// vidsContain reports whether a bridge-vids list ("2-4094", "10 20 30-40")
// holds vlan.
func vidsContain(vids string, vlan int) bool {
	for _, f := range strings.FieldsFunc(vids, func(r rune) bool { return r == ' ' || r == ',' || r == ';' }) {
		lo, hi, isRange := strings.Cut(f, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			continue
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil {
				continue
			}
		}
		if vlan >= a && vlan <= b {
			return true
		}
	}
	return false
}

// networkDrift checks a zone's network on a site.
func (e *Engine) networkDrift(ctx context.Context, s *site, z *compile.Zone, vnets []pve.VNet) []string {
	if z == nil || z.State == "manual" {
		return nil
	}
	if !s.sdnManaged(z) {
		var drift []string
		for _, node := range s.nodes {
			ifaces, err := s.api.NodeNetwork(ctx, node)
			if err != nil {
				return []string{"node " + node + ": " + err.Error()}
			}
			i := slices.IndexFunc(ifaces, func(f pve.Iface) bool { return f.Iface == s.cfg.Bridge })
			switch {
			case i < 0:
				drift = append(drift, fmt.Sprintf("node %s has no bridge %s", node, s.cfg.Bridge))
			case *z.VLAN != 0 && (!ifaces[i].VLANAware || !vidsContain(cmpOrVIDs(ifaces[i].BridgeVIDs), *z.VLAN)):
				drift = append(drift, fmt.Sprintf("node %s: bridge %s does not carry VLAN %d", node, s.cfg.Bridge, *z.VLAN))
			}
		}
		return drift
	}
	id := s.vnetID(z)
	i := slices.IndexFunc(vnets, func(v pve.VNet) bool { return v.VNet == id })
	if i < 0 {
		return []string{"vnet " + id + " is missing"}
	}
	v := vnets[i]
	var drift []string
	if v.State != "" {
		drift = append(drift, fmt.Sprintf("vnet %s has changes not applied (%s)", id, v.State))
	}
	if v.Tag != s.tagOf(z) {
		drift = append(drift, fmt.Sprintf("vnet %s has tag %d, want %d", id, v.Tag, s.tagOf(z)))
	}
	if v.Zone != s.cfg.SDNZone {
		drift = append(drift, fmt.Sprintf("vnet %s is in SDN zone %s, want %s", id, v.Zone, s.cfg.SDNZone))
	}
	subnets, err := s.api.Subnets(ctx, id)
	if err != nil {
		return append(drift, "subnets: "+err.Error())
	}
	sid := pve.SubnetID(s.cfg.SDNZone, z.CIDR)
	j := slices.IndexFunc(subnets, func(sn pve.Subnet) bool { return sn.ID == sid })
	switch {
	case j < 0:
		drift = append(drift, fmt.Sprintf("vnet %s has no subnet %s", id, z.CIDR))
	case subnets[j].Gateway != z.Gateway:
		drift = append(drift, fmt.Sprintf("subnet %s has gateway %q, want %s", z.CIDR, subnets[j].Gateway, z.Gateway))
	case subnets[j].State != "":
		drift = append(drift, fmt.Sprintf("subnet %s has changes not applied (%s)", z.CIDR, subnets[j].State))
	}
	if len(subnets) > 1 {
		drift = append(drift, fmt.Sprintf("vnet %s has %d subnets, want 1", id, len(subnets)))
	}
	return drift
}
