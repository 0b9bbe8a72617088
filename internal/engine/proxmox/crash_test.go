package proxmox_test

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/deploy"
	"github.com/holdfast/holdfast/internal/engine/enginetest"
	"github.com/holdfast/holdfast/internal/engine/proxmox/pve"
	"github.com/holdfast/holdfast/internal/engine/proxmox/pveemu"
	"github.com/holdfast/holdfast/internal/engine/proxmox/pvetest"
)

func TestMain(m *testing.M) { enginetest.Main(m) }

// TestKillDuringApplyResumes kills applies of the Tasmanian cloud with
// SIGKILL — right after a step's intent is recorded, and at random
// moments of engine work (mid-clone, mid-config, mid-SDN-apply) — then
// applies once more: the cloud converges with exactly one guest per
// instance, each at its allocated VMID, and nothing orphaned.
func TestKillDuringApplyResumes(t *testing.T) {
	path0 := examplePath("tasmanian")
	clusters := clustersFor(t, path0, pveemu.Config{Seed: 7, Durations: fast(30 * time.Millisecond)})
	path := pvetest.Spec(t, path0, clusters, nil)
	state := t.TempDir()
	child := func(killAt int) *exec.Cmd {
		return enginetest.DeployApply{Spec: path, State: state, Parallel: 8, KillAt: killAt}.Command(t)
	}
	start := time.Now()
	if out, err := child(-1).CombinedOutput(); err != nil {
		t.Fatalf("first apply: %v\n%s", err, out)
	}
	full := time.Since(start)
	converge(t, path, state, true, 3)

	atBoundary, inFlight := enginetest.KillLoop{Kills: 12, Full: full,
		Remaining: func() int {
			c := open(t, path, state)
			defer c.Close()
			return len(plan(t, c).Changes)
		},
		Restart: func() { converge(t, path, state, true, 3) }, // start over so that kills land in every phase
		Child:   child,
	}.Run(t, enginetest.Rand(t))
	kills := atBoundary + inFlight
	rounds := converge(t, path, state, false, 4)
	t.Logf("%d applies killed; the last apply converged in %d round(s)", kills, rounds)

	c := open(t, path, state)
	defer c.Close()
	checkOneGuestEach(t, c.Desired, clusters["launceston"])
	verifyCluster(t, c.Desired, clusters)
}

// TestKillBetweenCloneAndMigrate: the template is on local storage, so a
// guest for another node is cloned on the template's node and then
// migrated. Applies are killed (SIGKILL) as they ask the cluster for such a
// migration — before PVE gets the request, and just after it started the
// task. Status shows the guest on the template's node; the next apply
// moves it (or waits out the migration under way) and never clones it
// again; the cloud converges with one guest per instance, each on its
// node.
func TestKillBetweenCloneAndMigrate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		reaches bool // the migrate request reaches PVE before the kill
		ha      bool // kill at an HA instance's migration (not yet an HA resource)
	}{{"before the migration", false, false}, {"during the migration", true, false}, {"before an HA instance's migration", false, true}} {
		t.Run(tc.name, func(t *testing.T) {
			path0 := examplePath("tasmanian")
			clusters := clustersFor(t, path0, pveemu.Config{Seed: 13, Durations: fast(30 * time.Millisecond)})
			cl := clusters["launceston"]
			path := pvetest.Spec(t, path0, clusters, nil)
			state := t.TempDir()

			ha := map[string]bool{}
			for name, in := range loadSpec(t, path).Instances {
				ha[name] = in.HA
			}
			var mu sync.Mutex
			clones := map[string]int{} // VMID -> clone requests for it
			var child *exec.Cmd
			killedVMID := 0
			cl.SetHook(func(r *http.Request) bool {
				if r.Method != http.MethodPost {
					return true
				}
				form := peekForm(r)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case strings.HasSuffix(r.URL.Path, "/clone"):
					clones[form.Get("newid")]++
				case strings.HasSuffix(r.URL.Path, "/migrate") && killedVMID == 0:
					var node string
					var vmid int
					_, _ = fmt.Sscanf(strings.ReplaceAll(r.URL.Path, "/", " "), " api2 json nodes %s qemu %d migrate", &node, &vmid)
					if cfg, err := cl.API.Config(context.Background(), node, vmid); tc.ha && (err != nil || !ha[cfg.Name]) {
						return true
					}
					killedVMID = vmid
					_ = child.Process.Signal(syscall.SIGKILL)
					return tc.reaches
				}
				return true
			})
			mu.Lock()
			child = enginetest.DeployApply{Spec: path, State: state, Parallel: 8, KillAt: -1}.Command(t)
			if err := child.Start(); err != nil {
				t.Fatal(err)
			}
			mu.Unlock()
			_ = child.Wait()
			mu.Lock()
			vmid := killedVMID
			mu.Unlock()
			if !enginetest.Killed(child) || vmid == 0 {
				t.Fatalf("the apply was not killed at a migration (%v)", child.ProcessState)
			}

			c := open(t, path, state)
			var in compile.Instance
			for _, i := range c.Desired.Instances {
				if i.VMID == vmid {
					in = i
				}
			}
			tplNode := c.Desired.Sites[0].Nodes[0]
			if in.Name == "" || in.Node == tplNode || tc.ha && !in.HA {
				t.Fatalf("VMID %d (%q, HA %v) was migrated to %q, its template's node", vmid, in.Name, in.HA, in.Node)
			}
			if !tc.reaches {
				g := guestByVMID(t, cl, vmid)
				if g.Node != tplNode || g.Status != "stopped" || g.Lock != "" {
					t.Fatalf("after the kill, guest %d is on %s, %s, lock %q; want it stopped on %s where it was cloned", vmid, g.Node, g.Status, g.Lock, tplNode)
				}
				st, err := c.Status(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				want := fmt.Sprintf("is on node %s, want %s", tplNode, in.Node)
				if i := slices.IndexFunc(st, func(s deploy.Status) bool { return s.ID == compile.InstanceID(in.Site, in.Name) }); i < 0 ||
					st[i].State != "drifted" || !slices.Contains(st[i].Drift, want) {
					t.Fatalf("status of %s after the kill: %+v, want drifted %q", in.Name, st, want)
				}
			}
			c.Close()

			converge(t, path, state, false, 3)
			c = open(t, path, state)
			defer c.Close()
			checkOneGuestEach(t, c.Desired, cl)
			verifyCluster(t, c.Desired, clusters)
			mu.Lock()
			defer mu.Unlock()
			for id, n := range clones {
				if n != 1 {
					t.Errorf("VMID %s was cloned %d times, want once", id, n)
				}
			}
			if len(clones) != len(c.Desired.Instances) {
				t.Errorf("%d VMIDs cloned, want one per instance (%d)", len(clones), len(c.Desired.Instances))
			}
		})
	}
}

func guestByVMID(t *testing.T, c *pvetest.Cluster, vmid int) pve.VM {
	t.Helper()
	for _, vm := range c.Guests(t) {
		if vm.VMID == vmid {
			return vm
		}
	}
	t.Fatalf("no guest %d", vmid)
	return pve.VM{}
}

// checkOneGuestEach: every guest on the cluster is one instance's, at its
// VMID, and every instance has exactly one.
func checkOneGuestEach(t *testing.T, st *compile.State, c *pvetest.Cluster) {
	t.Helper()
	want := map[string]int{}
	for _, in := range st.Instances {
		want[in.Name] = in.VMID
	}
	seen := map[string]int{}
	for _, vm := range c.Guests(t) {
		vmid, ok := want[vm.Name]
		switch {
		case !ok:
			t.Errorf("orphan guest %d %q (lock %q)", vm.VMID, vm.Name, vm.Lock)
		case vmid != vm.VMID:
			t.Errorf("guest %q at VMID %d, allocated %d", vm.Name, vm.VMID, vmid)
		}
		seen[vm.Name]++
	}
	for name := range want {
		if seen[name] != 1 {
			t.Errorf("instance %s has %d guests", name, seen[name])
		}
	}
}

// TestConcurrentAppliesNeverCollide: two clouds whose roles share a VMID
// range are applied at once to one cluster, both compiled before either
// creates anything, so that both allocate the same VMIDs. PVE's clone is
// the arbiter: the loser of each VMID re-allocates, and both clouds end
// with all their guests, at distinct VMIDs, each cloud's allocation
// matching the cluster.
func TestConcurrentAppliesNeverCollide(t *testing.T) {
	c := pvetest.Start(t, []string{"pve1", "pve2"}, pveemu.Config{Seed: 9, Durations: fast(20 * time.Millisecond), Faults: pveemu.Faults{ErrorRate: 0.02}})
	if err := c.Emu.AddTemplate(pveemu.Template{Node: "pve1", VMID: pvetest.TemplateBase, Name: "debian-12"}); err != nil {
		t.Fatal(err)
	}
	specs := []pvetest.Synthetic{
		{Cloud: "alpha", Nodes: []string{"pve1", "pve2"}, VLAN: 10, CIDR: "10.10.0.0/24", VMIDs: "100-199", Instances: 12},
		{Cloud: "beta", Nodes: []string{"pve1", "pve2"}, VLAN: 20, CIDR: "10.20.0.0/24", VMIDs: "100-199", Instances: 12},
	}
	var clouds []*deploy.Cloud
	var paths, states []string
	for _, s := range specs {
		path, state := s.Write(t, c), t.TempDir()
		cl := open(t, path, state)
		paths, states, clouds = append(paths, path), append(states, state), append(clouds, cl)
	}
	if a, b := clouds[0].Desired.Instances[0].VMID, clouds[1].Desired.Instances[0].VMID; a != b {
		t.Fatalf("the clouds were meant to allocate the same VMIDs first (%d, %d)", a, b)
	}
	var wg sync.WaitGroup
	for i, cl := range clouds {
		wg.Go(func() {
			p, err := cl.Plan(context.Background())
			if err != nil {
				t.Error(err)
				return
			}
			if _, err := cl.Apply(context.Background(), p); err != nil {
				t.Errorf("%s: %v", specs[i].Cloud, err)
			}
			cl.Close()
		})
	}
	wg.Wait()
	for i := range specs {
		converge(t, paths[i], states[i], false, 4)
	}
	c.Emu.SetFaults(pveemu.Faults{})
	owner := map[int]string{}
	for i, s := range specs {
		cl := open(t, paths[i], states[i])
		for _, in := range cl.Desired.Instances {
			if other, dup := owner[in.VMID]; dup {
				t.Errorf("VMID %d allocated to %s and %s", in.VMID, other, s.Cloud+"/"+in.Name)
			}
			owner[in.VMID] = s.Cloud + "/" + in.Name
		}
		cl.Close()
	}
	guests := c.Guests(t)
	if len(guests) != 24 {
		t.Errorf("%d guests, want 24", len(guests))
	}
	moved := 0
	for _, vm := range guests {
		o := owner[vm.VMID]
		cloud, name, _ := strings.Cut(o, "/")
		if name != vm.Name || !strings.Contains(vm.Tags, "holdfast-"+cloud) {
			t.Errorf("guest %d is %q tagged %q, allocated to %q", vm.VMID, vm.Name, vm.Tags, o)
		}
		if vm.VMID > 111 {
			moved++
		}
	}
	if moved == 0 {
		t.Error("no VMID was re-allocated: the clouds never raced")
	}
	t.Logf("%d guests re-allocated after losing their VMID to the other cloud", moved)
}

// TestDriftRepaired changes a converged cloud behind Holdfast's back,
// through the PVE API, and checks that status names each change and one
// apply repairs them all.
func TestDriftRepaired(t *testing.T) {
	path0 := examplePath("tasmanian")
	clusters := clustersFor(t, path0, pveemu.Config{Seed: 11, Durations: fast(10 * time.Millisecond)})
	path := pvetest.Spec(t, path0, clusters, nil)
	state := t.TempDir()
	converge(t, path, state, false, 3)
	cl := clusters["launceston"]
	api := cl.API
	ctx := context.Background()

	c := open(t, path, state)
	inst := map[string]compile.Instance{}
	for _, in := range c.Desired.Instances {
		inst[in.Name] = in
	}
	c.Close()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	panel, admin, edge, grafana := inst["panel"], inst["admin"], inst["edge-1"], inst["grafana"]
	must(api.SetConfig(ctx, panel.Node, panel.VMID, pve.ConfigUpdate{MemoryMiB: int(panel.MemoryMiB) * 2}))
	must(api.Stop(ctx, admin.Node, admin.VMID))
	off := false
	must(api.SetFirewallOptions(ctx, pve.VMScope(edge.Node, edge.VMID), pve.FirewallOptions{Enable: &off}))
	must(api.Stop(ctx, grafana.Node, grafana.VMID))
	must(api.Delete(ctx, grafana.Node, grafana.VMID))
	groups, err := api.Groups(ctx)
	must(err)
	group := groups[0].Group
	rules, digest, err := api.Rules(ctx, pve.ClusterScope(), group)
	must(err)
	must(api.DeleteRule(ctx, pve.ClusterScope(), group, len(rules)-1, digest))

	c = open(t, path, state)
	st, err := c.Status(ctx)
	must(err)
	byID := map[string]deploy.Status{}
	for _, s := range st {
		byID[s.ID.String()] = s
	}
	expect := map[string]string{
		"instance/launceston/panel":   "memory is",
		"instance/launceston/admin":   "want running",
		"instance/launceston/edge-1":  "firewall is off",
		"instance/launceston/grafana": "",
		"firewall/launceston":         "security group " + group,
	}
	for id, text := range expect {
		s := byID[id]
		switch {
		case text == "" && s.State != "missing":
			t.Errorf("%s is %s, want missing", id, s.State)
		case text != "" && (s.State != "drifted" || !strings.Contains(strings.Join(s.Drift, "; "), text)):
			t.Errorf("%s is %s %v, want drift naming %q", id, s.State, s.Drift, text)
		}
	}
	for _, s := range st {
		if _, ok := expect[s.ID.String()]; !ok && s.State != "ok" {
			t.Errorf("%s is %s %v, but was not touched", s.ID, s.State, s.Drift)
		}
	}
	p := plan(t, c)
	if p.Summary.Update+p.Summary.Create != len(expect) {
		t.Errorf("plan %+v, want %d changes", p.Summary, len(expect))
	}
	if _, err := c.Apply(ctx, p); err != nil {
		t.Fatal(err)
	}
	c.Close()
	c = open(t, path, state)
	defer c.Close()
	if p := plan(t, c); len(p.Changes) != 0 {
		t.Errorf("after repair, %d changes remain: %+v", len(p.Changes), p.Changes[0])
	}
	verifyCluster(t, c.Desired, clusters)
}
