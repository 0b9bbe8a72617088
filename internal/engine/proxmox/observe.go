package proxmox

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/engine"
	"github.com/holdfast/holdfast/internal/engine/proxmox/pve"
)

// observeParallel bounds the reads Observe has in flight per site.
const observeParallel = 16

// Observe finds what the cloud owns on each site's cluster — guests by
// tag, vnets by alias, security groups and IPsets by comment, sites and
// routes by the engine's own record — and checks what is desired for
// drift. It reads the guest list once and each guest's config and
// firewall in parallel; it changes nothing.
func (e *Engine) Observe(ctx context.Context) ([]engine.Observed, error) {
	var out []engine.Observed
	for _, name := range slices.Sorted(maps.Keys(e.sites)) {
		obs, err := e.observeSite(ctx, e.sites[name])
		if err != nil {
			return nil, fmt.Errorf("site %s: %w", name, err)
		}
		out = append(out, obs...)
	}
	for _, r := range e.desired.Resources {
		if r.Kind == compile.ResRoute && e.sites[r.Site] != nil && e.marked(r.ID) {
			out = append(out, engine.Observed{Resource: compile.NewResource(r.ID, nil, map[string]string{})})
		}
	}
	return out, nil
}

func (e *Engine) observeSite(ctx context.Context, s *site) ([]engine.Observed, error) {
	var out []engine.Observed
	siteID := compile.SiteID(s.name)
	add := func(id compile.ID, attrs map[string]string, drift []string) {
		var deps []compile.ID
		if id.Kind != compile.ResSite {
			deps = []compile.ID{siteID}
		}
		if attrs == nil {
			attrs = map[string]string{}
		}
		out = append(out, engine.Observed{Resource: compile.NewResource(id, deps, attrs), Drift: drift})
	}
	if e.marked(siteID) {
		add(siteID, nil, s.nodeDrift(ctx))
	}

	// Networks: the cloud's vnets, and the markers of networks that have
	// no object of their own (bridge VLANs, manual zones).
	var vnets []pve.VNet
	if s.cfg.Network != "bridge" {
		var err error
		if vnets, err = s.api.VNets(ctx); err != nil {
			return nil, err
		}
	}
	seen := map[compile.ID]bool{}
	for _, v := range vnets {
		zone, ok := strings.CutPrefix(v.Alias, e.owner()+"/")
		if !ok || v.Zone != s.cfg.SDNZone {
			continue
		}
		id := compile.NetworkID(s.name, zone)
		seen[id] = true
		add(id, map[string]string{"vlan": strconv.Itoa(v.Tag)}, e.networkDrift(ctx, s, e.zones[zone], vnets))
	}
	for _, r := range e.desired.Resources {
		if r.Kind == compile.ResNetwork && r.Site == s.name && !seen[r.ID] && e.marked(r.ID) {
			add(r.ID, nil, e.networkDrift(ctx, s, e.zones[r.ID.Name], vnets))
		}
	}

	exists, drift, err := e.firewallDrift(ctx, s)
	if err != nil {
		return nil, err
	}
	if exists {
		add(compile.FirewallID(s.name), nil, drift)
	}

	obs, err := e.observeGuests(ctx, s)
	if err != nil {
		return nil, err
	}
	return append(out, obs...), nil
}

// observeGuests finds the cloud's guests on a site and checks each.
func (e *Engine) observeGuests(ctx context.Context, s *site) ([]engine.Observed, error) {
	vms, err := s.guests(ctx, true)
	if err != nil {
		return nil, err
	}
	var res []pve.HAResource
	if slices.ContainsFunc(e.desired.Instances, func(in compile.Instance) bool { return in.Site == s.name && in.HA }) {
		if res, err = s.api.HAResources(ctx); err != nil {
			return nil, err
		}
	}
	var mine []pve.VM
	for _, vm := range vms {
		in, desired := e.instances[vm.Name]
		switch {
		case desired && in.Site != s.name:
			continue // another site's, on a cluster the sites share
		case e.owns(vm):
		case desired && vm.VMID == in.VMID && vm.Type == "qemu" && !vm.Template && e.describedAsOurs(ctx, s, vm):
			// Cloned but not yet configured (tagged): an apply stopped
			// between the two, maybe before the clone was moved to its
			// node. The next apply adopts it by its description.
		default:
			continue
		}
		mine = append(mine, vm)
	}
	out := make([]engine.Observed, len(mine))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(observeParallel)
	var mu sync.Mutex
	for i, vm := range mine {
		g.Go(func() error {
			drift, err := e.guestDrift(gctx, s, vm, res)
			if err != nil {
				return fmt.Errorf("guest %d (%s): %w", vm.VMID, vm.Name, err)
			}
			mu.Lock()
			defer mu.Unlock()
			out[i] = engine.Observed{
				Resource: compile.NewResource(compile.InstanceID(s.name, vm.Name), []compile.ID{compile.SiteID(s.name)},
					map[string]string{"vmid": strconv.Itoa(vm.VMID), "node": vm.Node}),
				Drift: drift,
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return out, nil
}

// guestDrift compares a guest with its instance: where it runs, its
// power, its size, its config, its firewall and its HA resource.
func (e *Engine) guestDrift(ctx context.Context, s *site, vm pve.VM, res []pve.HAResource) ([]string, error) {
	in, ok := e.instances[vm.Name]
	if !ok {
		return nil, nil // not desired: it will be deleted
	}
	var drift []string
	if vm.VMID != in.VMID {
		drift = append(drift, fmt.Sprintf("runs as VMID %d, want %d", vm.VMID, in.VMID))
		return drift, nil
	}
	if !hasTag(vm.Tags, e.tag()) {
		drift = append(drift, "is not tagged "+e.tag()+" (cloned, not yet configured)")
	}
	// HA places its resources; a guest not yet one is where Holdfast put
	// it (a clone left on its template's node).
	if vm.Node != in.Node && !haManaged(res, vm.VMID) {
		drift = append(drift, fmt.Sprintf("is on node %s, want %s", vm.Node, in.Node))
	}
	if vm.Lock != "" {
		drift = append(drift, "is locked ("+vm.Lock+")")
	}
	switch running := vm.Status == "running"; {
	case in.Power == compile.PowerStopped && running:
		drift = append(drift, "is running, want stopped")
	case in.Power != compile.PowerStopped && !running:
		drift = append(drift, "is "+vm.Status+", want running")
	}
	cfg, err := s.api.Config(ctx, vm.Node, vm.VMID)
	if pve.IsNotFound(err) {
		return []string{"vanished while observed"}, nil
	}
	if err != nil {
		return nil, err
	}
	drift = append(drift, configDrift(cfg, e.desiredConfig(s, in))...)
	drift = append(drift, e.seedDrift(s, in, cfg.SMBIOS1)...)
	if m, ok := parseMeta(cfg.Description); !ok || m.Rebuild != in.Rebuild || m.Reboot != in.Reboot {
		drift = append(drift, "reboot or rebuild not carried out")
	}
	if key, size := bootDisk(cfg); key != "" && size < in.DiskMiB {
		drift = append(drift, fmt.Sprintf("disk %s is %d MiB, want %d", key, size, in.DiskMiB))
	}
	fw, err := e.guestFirewallDrift(ctx, s, in, vm.Node)
	if pve.IsNotFound(err) {
		return []string{"vanished while observed"}, nil // destroyed or migrated since it was listed
	}
	if err != nil {
		return nil, err
	}
	drift = append(drift, fw...)
	return append(drift, e.haDrift(in, res)...), nil
}
