package proxmox_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/engine/proxmox/pve"
	"github.com/holdfast/holdfast/internal/engine/proxmox/pveemu"
	"github.com/holdfast/holdfast/internal/engine/proxmox/pvetest"
)

// TestIsolatedZoneGroup: Arvandor's bridge isolates its VMs, so the
// zone's security group accepts nothing "within" the zone: only the
// gateway (the Proxmox host) in and out, and the overlay's underlay, each
// member's Nebula port from the zone (IN on the member, OUT on the
// sender).
func TestIsolatedZoneGroup(t *testing.T) {
	clusters := clustersFor(t, examplePath("arvandor"), pveemu.Config{Seed: 7, Durations: fast(5 * time.Millisecond)})
	path := pvetest.Spec(t, examplePath("arvandor"), clusters, modes["arvandor"])
	converge(t, path, t.TempDir(), false, 2)
	c := open(t, path, t.TempDir())
	defer c.Close()
	ctx := context.Background()
	api := clusters["home"].API
	groups, err := api.Groups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var group string
	for _, g := range groups {
		if strings.HasSuffix(g.Comment, " zone provisioning") {
			group = g.Group
		}
	}
	if group == "" {
		t.Fatalf("no security group for zone provisioning in %+v", groups)
	}
	rules, _, err := api.Rules(ctx, pve.ClusterScope(), group)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rules {
		t.Logf("%s: %s %s %s -> %s %s %s (%s)", group, r.Type, r.Action, r.Source, r.Dest, r.Proto, r.DPort, r.Comment)
	}
	has := func(want pve.Rule) bool {
		return slices.ContainsFunc(rules, func(r pve.Rule) bool {
			return r.Type == want.Type && r.Action == "ACCEPT" && r.Source == want.Source && r.Dest == want.Dest && r.Proto == want.Proto && r.DPort == want.DPort && r.Enable
		})
	}
	if !has(pve.Rule{Type: "in", Source: "192.168.100.1"}) || !has(pve.Rule{Type: "out", Dest: "192.168.100.1"}) {
		t.Error("the group does not accept the gateway (the Proxmox host) in and out")
	}
	set := "+" + group
	inZone := func(ref string) bool {
		return ref == set || strings.HasPrefix(ref, "192.168.100.") && ref != "192.168.100.1"
	}
	for _, r := range rules {
		// Between two ends in the zone only the overlay's underlay and
		// DNS to the DNS server pass.
		dns := r.Dest == "192.168.100.11" && r.DPort == "53"
		if inZone(r.Source) && inZone(r.Dest) && (r.Proto != "udp" || r.DPort != "4242") && !dns {
			t.Errorf("rule %+v lets the zone's VMs reach each other", r)
		}
	}
	members := 0
	for _, in := range c.Desired.Instances {
		if in.OverlayIP == "" {
			continue
		}
		members++
		for _, typ := range []string{"in", "out"} {
			if !has(pve.Rule{Type: typ, Source: set, Dest: in.IP, Proto: "udp", DPort: "4242"}) {
				t.Errorf("no %s rule from %s to %s (%s) udp 4242: the overlay's underlay is cut", typ, set, in.Name, in.IP)
			}
		}
	}
	if members != 15 {
		t.Errorf("%d overlay members, want Arvandor's 15 VMs", members)
	}
}
