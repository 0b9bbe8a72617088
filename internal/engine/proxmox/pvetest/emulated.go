package pvetest

import (
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/engine/proxmox"
	"github.com/holdfast/holdfast/internal/engine/proxmox/pveemu"
	"github.com/holdfast/holdfast/internal/spec"
)

// Emulated starts an emulated cluster for every site of the spec at src,
// with the spec's templates and tasks of a few milliseconds, makes the
// proxmox engine's clients poll them closely, and returns the spec
// rewritten onto them: a whole cloud on Proxmox that a test (the control
// plane's, the client's) can apply without root.
func Emulated(tb testing.TB, src string, seed uint64) (path string, clusters map[string]*Cluster) {
	tb.Helper()
	proxmox.ClientOptions.PollMin, proxmox.ClientOptions.PollMax = 5*time.Millisecond, 40*time.Millisecond
	proxmox.ClientOptions.RetryWait, proxmox.ClientOptions.TaskTimeout = 10*time.Millisecond, 20*time.Second
	sp, diags := spec.Check(src)
	if diags.HasErrors() {
		tb.Fatal(diags.Err())
	}
	durations := map[string]time.Duration{pveemu.TaskSDNApply: 5 * time.Millisecond, pveemu.TaskNetworkReload: 5 * time.Millisecond}
	for k := range pveemu.DefaultDurations {
		durations[k] = 5 * time.Millisecond
	}
	clusters = map[string]*Cluster{}
	for i, name := range spec.SortedNames(sp.Sites) {
		clusters[name] = Start(tb, sp.Sites[name].Nodes, pveemu.Config{Seed: seed + uint64(i), Durations: durations})
		clusters[name].AddTemplates(tb, sp, sp.Sites[name].Nodes[0])
	}
	return Spec(tb, src, clusters, nil), clusters
}
