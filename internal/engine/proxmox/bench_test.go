package proxmox_test

import (
	"context"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/deploy"
	"github.com/holdfast/holdfast/internal/engine/proxmox/pveemu"
	"github.com/holdfast/holdfast/internal/engine/proxmox/pvetest"
)

// syntheticCluster serves a cluster of nodes whose tasks take taskTime,
// with no shared storage and a debian-12 template on the first node's
// local-lvm, and writes a cloud of n instances on it. Guests for the other
// nodes are cloned on the first and migrated, as on such a real cluster.
func syntheticCluster(b *testing.B, n int, nodes []string, taskTime time.Duration) (string, *requests) {
	b.Helper()
	c := pvetest.Start(b, nodes, pveemu.Config{Seed: 1, Durations: fast(taskTime)})
	if err := c.Emu.AddTemplate(pveemu.Template{Node: nodes[0], VMID: pvetest.TemplateBase, Name: "debian-12"}); err != nil {
		b.Fatal(err)
	}
	return pvetest.Synthetic{Cloud: "bench", Nodes: nodes, VLAN: 100, CIDR: "10.100.0.0/21", VMIDs: "100-1999", Instances: n}.Write(b, c), count(c)
}

func applyOnce(b *testing.B, path, state string) int {
	b.Helper()
	c, _, err := deploy.Open(path, deploy.Options{StateDir: state, Parallel: 32})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	p, err := c.Plan(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	res, err := c.Apply(context.Background(), p)
	if err != nil || len(res.Errors) > 0 {
		b.Fatalf("apply: %v %v", err, res.Errors)
	}
	return len(p.Changes)
}

// BenchmarkProvision100 provisions 100 VMs (clone, migrate those for
// other nodes than the template's, configure, grow the disk, firewall,
// start) on three nodes without shared storage whose every task takes
// 200 ms, from nothing: open, plan and apply. Target: under 30 s.
func BenchmarkProvision100(b *testing.B) {
	migrations := 0
	for b.Loop() {
		b.StopTimer()
		path, reqs := syntheticCluster(b, 100, []string{"pve1", "pve2", "pve3"}, 200*time.Millisecond)
		state := b.TempDir()
		b.StartTimer()
		if n := applyOnce(b, path, state); n < 100 {
			b.Fatalf("%d changes, want at least 100", n)
		}
		if migrations = reqs.get("POST migrate"); migrations == 0 {
			b.Fatal("no guest was migrated: the template's node took every VM")
		}
	}
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/apply")
	b.ReportMetric(float64(migrations), "migrations/apply")
}

// BenchmarkNoopApply1000 applies a converged cloud of 1,000 VMs on four
// nodes again: the inventory, observing every guest (config, firewall)
// and the networks, planning nothing. Target: under 2 s.
func BenchmarkNoopApply1000(b *testing.B) {
	path, _ := syntheticCluster(b, 1000, []string{"pve1", "pve2", "pve3", "pve4"}, time.Millisecond)
	state := b.TempDir()
	applyOnce(b, path, state)
	b.ResetTimer()
	for b.Loop() {
		if n := applyOnce(b, path, state); n != 0 {
			b.Fatalf("a no-op apply planned %d changes", n)
		}
	}
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/apply")
}
