package main

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/engine/proxmox/pve"
	"github.com/holdfast/holdfast/internal/engine/proxmox/pveemu"
	"github.com/holdfast/holdfast/internal/engine/proxmox/pvetest"
)

// TestPlanProxmoxAsksTheCluster: before the first apply, a plan of a
// proxmox cloud already allocates around the guests the cluster has and
// places by the nodes' free memory; it changes nothing on the cluster.
// It runs the holdfast binary, as an operator would, against an emulated
// cluster; holdfast's own tests link no emulator.
func TestPlanProxmoxAsksTheCluster(t *testing.T) {
	fast := map[string]time.Duration{}
	for k := range pveemu.DefaultDurations {
		fast[k] = time.Millisecond
	}
	c := pvetest.Start(t, []string{"pve1", "pve2"}, pveemu.Config{Durations: fast})
	// Someone else's guests at the first VMIDs of the role, and a big one
	// running on pve1.
	for vmid := 100; vmid < 103; vmid++ {
		if err := c.Emu.AddTemplate(pveemu.Template{Node: "pve1", VMID: vmid, Name: "other", MemoryMiB: 32 << 10}); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	if err := c.API.Clone(ctx, "pve1", 100, pve.CloneOptions{NewID: 150, Name: "big"}); err != nil {
		t.Fatal(err)
	}
	if err := c.API.Start(ctx, "pve1", 150); err != nil {
		t.Fatal(err)
	}
	path := pvetest.Synthetic{Cloud: "plancheck", Nodes: []string{"pve1", "pve2"}, VLAN: 10, CIDR: "10.10.0.0/24", VMIDs: "100-199", Instances: 2}.Write(t, c)
	out, err := runCommand(t, command(t, "holdfast"), "plan", path, "-o", "json", "--state-dir", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var p struct {
		Changes []struct {
			ID    string
			After map[string]string
		}
	}
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatal(err)
	}
	vmids := map[string]string{}
	for _, ch := range p.Changes {
		if ch.After["vmid"] != "" {
			vmids[ch.ID] = ch.After["vmid"] + "@" + ch.After["node"]
		}
	}
	// 100-102 and 150 are taken; pve2 has 32 GiB more free than pve1.
	if vmids["instance/dc/app-0000"] != "103@pve2" || vmids["instance/dc/app-0001"] != "104@pve2" {
		t.Errorf("planned %v, want VMIDs 103 and 104 on pve2", vmids)
	}
	if g := c.Guests(t); len(g) != 1 {
		t.Errorf("the cluster has %d guests after a plan, want only the one it had", len(g))
	}
}
