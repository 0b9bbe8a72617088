package proxmox_test

import (
	"context"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/deploy"
	"github.com/holdfast/holdfast/internal/engine/proxmox"
	"github.com/holdfast/holdfast/internal/engine/proxmox/pve"
	"github.com/holdfast/holdfast/internal/engine/proxmox/pveemu"
	"github.com/holdfast/holdfast/internal/engine/proxmox/pvetest"
	"github.com/holdfast/holdfast/internal/reconcile"
	"github.com/holdfast/holdfast/internal/spec"
)

func init() {
	// Tasks take tens of milliseconds in these tests: poll them closely.
	proxmox.ClientOptions.PollMin = 5 * time.Millisecond
	proxmox.ClientOptions.PollMax = 40 * time.Millisecond
	proxmox.ClientOptions.RetryWait = 10 * time.Millisecond
	proxmox.ClientOptions.TaskTimeout = 20 * time.Second
}

var examples = []string{"tasmanian", "arvandor", "tappaas", "zcloud"}

func examplePath(name string) string { return filepath.Join("..", "..", "..", "examples", name) }

// fast gives every task type the same short duration.
func fast(d time.Duration) map[string]time.Duration {
	out := map[string]time.Duration{}
	for k := range pveemu.DefaultDurations {
		out[k] = d
	}
	for _, k := range []string{pveemu.TaskSDNApply, pveemu.TaskNetworkReload} {
		out[k] = d
	}
	return out
}

// faults5 is the 5 % of requests failing: answered with an
// error, dropped before or after taking effect.
var faults5 = pveemu.Faults{ErrorRate: 0.03, DropRate: 0.01, LostRate: 0.01}

// modes gives each example another way of networking, so that all three
// are proven: SDN vlan zones, SDN vxlan zones, and plain bridge VLANs.
var modes = map[string]map[string]any{
	"tasmanian": nil, // vlan
	"arvandor":  {"network": "bridge"},
	"tappaas":   nil,
	"zcloud":    {"network": "vxlan", "peers": []string{"192.0.2.1", "192.0.2.2"}},
}

func loadSpec(t *testing.T, path string) *spec.Spec {
	t.Helper()
	s, diags := spec.Check(path)
	if diags.HasErrors() {
		t.Fatalf("%s: %v", path, diags.Err())
	}
	return s
}

// clustersFor starts one emulated cluster per site of the spec at path,
// each with the spec's templates.
func clustersFor(t *testing.T, path string, cfg pveemu.Config) map[string]*pvetest.Cluster {
	t.Helper()
	s := loadSpec(t, path)
	out := map[string]*pvetest.Cluster{}
	for i, name := range spec.SortedNames(s.Sites) {
		site := s.Sites[name]
		c := cfg
		c.Seed += uint64(i)
		out[name] = pvetest.Start(t, site.Nodes, c)
		out[name].AddTemplates(t, s, site.Nodes[0])
	}
	return out
}

func open(t *testing.T, path, state string) *deploy.Cloud {
	t.Helper()
	c, _, err := deploy.Open(path, deploy.Options{StateDir: state, LockWait: time.Minute, Parallel: 16})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return c
}

func plan(t *testing.T, c *deploy.Cloud) reconcile.Plan {
	t.Helper()
	p, err := c.Plan(context.Background())
	if err != nil {
		t.Fatalf("plan: %v", err)
	}
	return p
}

// converge applies until the plan is empty, as an operator re-running
// apply after a fault would; it fails after max rounds.
func converge(t *testing.T, path, state string, destroy bool, max int) (rounds int) {
	t.Helper()
	for rounds = 1; ; rounds++ {
		c := open(t, path, state)
		var p reconcile.Plan
		var err error
		if destroy {
			p, err = c.DestroyPlan(context.Background())
		} else {
			p, err = c.Plan(context.Background())
		}
		if err != nil {
			c.Close()
			if rounds < max {
				t.Logf("round %d: plan: %v", rounds, err)
				continue
			}
			t.Fatalf("round %d: plan: %v", rounds, err)
		}
		if len(p.Changes) == 0 {
			c.Close()
			return rounds
		}
		if rounds > max {
			c.Close()
			t.Fatalf("not converged after %d rounds; %d changes remain, first %+v", max, len(p.Changes), p.Changes[0])
		}
		res, _ := c.Apply(context.Background(), p)
		c.Close()
		for _, e := range res.Errors {
			t.Logf("round %d: %v", rounds, e)
		}
	}
}

// TestExamplesConverge: every example applies, converges and is destroyed
// on emulated clusters that fail 5 % of requests.
func TestExamplesConverge(t *testing.T) {
	for i, name := range examples {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			clusters := clustersFor(t, examplePath(name), pveemu.Config{Seed: uint64(100 + i), Durations: fast(20 * time.Millisecond), Faults: faults5})
			path := pvetest.Spec(t, examplePath(name), clusters, modes[name])
			state := t.TempDir()

			rounds := converge(t, path, state, false, 8)
			for _, c := range clusters {
				c.Emu.SetFaults(pveemu.Faults{})
			}
			c := open(t, path, state)
			st, err := c.Status(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range st {
				if s.State != "ok" {
					t.Errorf("%s is %s %v", s.ID, s.State, s.Drift)
				}
			}
			verifyCluster(t, c.Desired, clusters)
			// The templates are on local storage on each site's first
			// node: every guest elsewhere was cloned there and migrated.
			moved, multi, sp := 0, false, loadSpec(t, path)
			for _, in := range c.Desired.Instances {
				if in.Node != sp.Sites[in.Site].Nodes[0] {
					moved++
				}
				multi = multi || len(sp.Sites[in.Site].Nodes) > 1
			}
			if multi && moved == 0 {
				t.Error("every instance is on its template's node: no clone had to cross nodes")
			}
			c.Close()
			var injected int
			for _, c := range clusters {
				st := c.Emu.Stats()
				injected += st.InjectedErrors + st.Dropped + st.Lost
			}
			t.Logf("converged in %d round(s) through %d injected faults; %d guests cloned on their template's node and migrated", rounds, injected, moved)
			if injected == 0 {
				t.Error("no fault was injected: the test proves nothing about faults")
			}

			for _, c := range clusters {
				c.Emu.SetFaults(faults5)
			}
			converge(t, path, state, true, 8)
			for _, c := range clusters {
				c.Emu.SetFaults(pveemu.Faults{})
			}
			verifyEmpty(t, clusters)
		})
	}
}

// verifyCluster checks, through the PVE API, that every instance is a
// guest as compiled, and that every zone is a network.
func verifyCluster(t *testing.T, st *compile.State, clusters map[string]*pvetest.Cluster) {
	t.Helper()
	ctx := context.Background()
	zones := map[string]compile.Zone{}
	for _, z := range st.Zones {
		zones[z.Name] = z
	}
	sites := map[string]compile.Site{}
	for _, s := range st.Sites {
		sites[s.Name] = s
	}
	for site, c := range clusters {
		byID := map[int]pve.VM{}
		for _, vm := range c.Guests(t) {
			byID[vm.VMID] = vm
		}
		p := sites[site].Settings.(*proxmox.Config)
		want := 0
		for _, in := range st.Instances {
			if in.Site != site {
				continue
			}
			want++
			vm, ok := byID[in.VMID]
			if !ok {
				t.Errorf("%s: no guest %d", in.Name, in.VMID)
				continue
			}
			if vm.Name != in.Name || vm.Node != in.Node || vm.Status != "running" {
				t.Errorf("%s: guest %d is %q on %s, %s", in.Name, in.VMID, vm.Name, vm.Node, vm.Status)
			}
			cfg, err := c.API.Config(ctx, vm.Node, vm.VMID)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Cores != in.CPUs || int64(cfg.MemoryMiB) != in.MemoryMiB {
				t.Errorf("%s: %d cores %d MiB, want %d, %d", in.Name, cfg.Cores, cfg.MemoryMiB, in.CPUs, in.MemoryMiB)
			}
			for _, nic := range in.NICs {
				d := cfg.Nets[nic.Index]
				z := zones[nic.Zone]
				switch {
				case p.Network == "bridge" || *z.VLAN == 0 || z.State == "manual":
					if d.Bridge != p.Bridge || d.Tag != *z.VLAN {
						t.Errorf("%s net%d: %s, want bridge %s tag %d", in.Name, nic.Index, d, p.Bridge, *z.VLAN)
					}
				case d.Bridge == p.Bridge || d.Tag != 0:
					t.Errorf("%s net%d: %s, want the zone's vnet", in.Name, nic.Index, d)
				}
				if !strings.EqualFold(d.MAC, nic.MAC) || !d.Firewall {
					t.Errorf("%s net%d: %s, want MAC %s with the firewall", in.Name, nic.Index, d, nic.MAC)
				}
				if ip := cfg.IPConfigs[nic.Index].IP; ip != nic.IP+"/"+strconv.Itoa(nic.Prefix) {
					t.Errorf("%s ipconfig%d: %s, want %s/%d", in.Name, nic.Index, ip, nic.IP, nic.Prefix)
				}
			}
			opts, err := c.API.FirewallOptions(ctx, pve.VMScope(vm.Node, vm.VMID))
			if err != nil {
				t.Fatal(err)
			}
			if opts.Enable == nil || !*opts.Enable || opts.PolicyIn != "DROP" || opts.IPFilter == nil || !*opts.IPFilter {
				t.Errorf("%s: guest firewall %+v, want on, policy_in DROP, ipfilter", in.Name, opts)
			}
		}
		if got := len(byID); got != want {
			t.Errorf("site %s: %d guests, want %d", site, got, want)
		}
		if p.Network == "bridge" {
			continue
		}
		vnets, err := c.API.VNets(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, z := range st.Zones {
			if z.VLAN == nil || *z.VLAN == 0 || z.State == "manual" || !z.Present || !slices.Contains(z.Sites, site) {
				continue
			}
			if !slices.ContainsFunc(vnets, func(v pve.VNet) bool {
				return strings.HasSuffix(v.Alias, "/"+z.Name) && v.State == "" && v.Zone == p.SDNZone
			}) {
				t.Errorf("site %s: zone %s has no applied vnet (%+v)", site, z.Name, vnets)
			}
		}
	}
}

// verifyEmpty checks that nothing Holdfast made is left on the clusters.
func verifyEmpty(t *testing.T, clusters map[string]*pvetest.Cluster) {
	t.Helper()
	ctx := context.Background()
	for site, c := range clusters {
		if g := c.Guests(t); len(g) > 0 {
			t.Errorf("site %s: %d guests left, first %+v", site, len(g), g[0])
		}
		vnets, err := c.API.VNets(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(vnets) > 0 {
			t.Errorf("site %s: vnets left: %+v", site, vnets)
		}
		groups, err := c.API.Groups(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(groups) > 0 {
			t.Errorf("site %s: security groups left: %+v", site, groups)
		}
		sets, err := c.API.IPSets(ctx, pve.ClusterScope())
		if err != nil {
			t.Fatal(err)
		}
		if len(sets) > 0 {
			t.Errorf("site %s: IPsets left: %+v", site, sets)
		}
		res, err := c.API.HAResources(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(res) > 0 {
			t.Errorf("site %s: HA resources left: %+v", site, res)
		}
	}
}
