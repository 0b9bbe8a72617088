package proxmox_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/engine/proxmox/pve"
	"github.com/holdfast/holdfast/internal/engine/proxmox/pveemu"
	"github.com/holdfast/holdfast/internal/engine/proxmox/pvetest"
)

// TestNodesKeepSSHAndAPI: applying a cloud turns the datacenter firewall
// on, which on PVE shuts every node's SSH and API to anyone outside the
// management network; Holdfast's node rules keep them open. A rule
// deleted behind Holdfast's back is drift that apply repairs, the
// operator's own node rule is never touched, and destroying the cloud
// takes Holdfast's rules away and leaves the operator's.
func TestNodesKeepSSHAndAPI(t *testing.T) {
	path0 := examplePath("tasmanian")
	clusters := clustersFor(t, path0, pveemu.Config{Seed: 21, Durations: fast(10 * time.Millisecond)})
	path := pvetest.Spec(t, path0, clusters, nil)
	state := t.TempDir()
	cl := clusters["launceston"]
	api, emu := cl.API, cl.Emu
	nodes := loadSpec(t, path).Sites["launceston"].Nodes
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// An operator's rule of their own on one node, before Holdfast comes.
	mine := pve.Rule{Type: "in", Action: "ACCEPT", Proto: "tcp", DPort: "9100", Enable: true, Comment: "node exporter"}
	must(api.AddRule(ctx, pve.NodeScope(nodes[0]), "", mine, ""))

	// The emulator's default, so that what follows proves something: the
	// datacenter firewall on and no node rules shut SSH and the API from
	// outside, not from the management network.
	on, off := true, false
	must(api.SetFirewallOptions(ctx, pve.ClusterScope(), pve.FirewallOptions{Enable: &on}))
	for _, n := range nodes {
		if emu.NodeAdmits(n, "tcp", 22, false) || emu.NodeAdmits(n, "tcp", 8006, false) {
			t.Fatalf("node %s: SSH or the API admitted from outside with no node rule", n)
		}
		if !emu.NodeAdmits(n, "tcp", 22, true) {
			t.Fatalf("node %s: SSH refused from the management network", n)
		}
	}
	must(api.SetFirewallOptions(ctx, pve.ClusterScope(), pve.FirewallOptions{Enable: &off}))

	converge(t, path, state, false, 3)
	opts, err := api.FirewallOptions(ctx, pve.ClusterScope())
	must(err)
	if opts.Enable == nil || !*opts.Enable {
		t.Fatal("after apply the datacenter firewall is off")
	}
	for _, n := range nodes {
		for _, port := range []int{22, 8006} {
			if !emu.NodeAdmits(n, "tcp", port, false) {
				t.Errorf("node %s: tcp %d refused from outside after apply", n, port)
			}
		}
		if emu.NodeAdmits(n, "tcp", 443, false) {
			t.Errorf("node %s: tcp 443 admitted from outside: the datacenter policy is not in effect", n)
		}
	}
	rules, _, err := api.Rules(ctx, pve.NodeScope(nodes[0]), "")
	must(err)
	if len(rules) != 3 || rules[0].DPort != "22" || rules[1].DPort != "8006" || !sameAs(rules[2], mine) {
		t.Fatalf("node %s's rules %+v: want Holdfast's two on top, then the operator's", nodes[0], rules)
	}
	for _, r := range rules[:2] {
		if !strings.HasPrefix(r.Comment, "holdfast ") || r.Type != "in" || r.Action != "ACCEPT" || r.Proto != "tcp" || !r.Enable {
			t.Errorf("Holdfast's node rule %+v", r)
		}
	}

	// Delete the SSH rule behind Holdfast's back on the last node.
	last := nodes[len(nodes)-1]
	_, digest, err := api.Rules(ctx, pve.NodeScope(last), "")
	must(err)
	must(api.DeleteRule(ctx, pve.NodeScope(last), "", 0, digest))
	if emu.NodeAdmits(last, "tcp", 22, false) {
		t.Fatal("SSH still admitted without Holdfast's rule")
	}
	c := open(t, path, state)
	st, err := c.Status(ctx)
	must(err)
	want := "node " + last + ": rule keeping SSH (22) is missing"
	for _, s := range st {
		drifted := s.State == "drifted" && strings.Contains(strings.Join(s.Drift, "; "), want)
		switch {
		case s.ID.String() == "firewall/launceston" && !drifted:
			t.Errorf("%s is %s %v, want drift %q", s.ID, s.State, s.Drift, want)
		case s.ID.String() != "firewall/launceston" && s.State != "ok":
			t.Errorf("%s is %s %v, but was not touched", s.ID, s.State, s.Drift)
		}
	}
	p := plan(t, c)
	if p.Summary.Update != 1 || p.Summary.Create+p.Summary.Delete != 0 {
		t.Errorf("plan %+v, want one update", p.Summary)
	}
	_, err = c.Apply(ctx, p)
	must(err)
	c.Close()
	if !emu.NodeAdmits(last, "tcp", 22, false) {
		t.Error("apply did not restore SSH")
	}
	if got, _, err := api.Rules(ctx, pve.NodeScope(last), ""); err != nil || len(got) != 2 {
		t.Errorf("node %s's rules after repair %+v, %v", last, got, err)
	}

	// An operator's DROP put above Holdfast's rules shuts SSH again: drift
	// naming where the rule is; apply puts Holdfast's back on top and keeps
	// the operator's rule, below them.
	drop := pve.Rule{Type: "in", Action: "DROP", Proto: "tcp", DPort: "22", Enable: true, Comment: "no ssh"}
	must(api.AddRule(ctx, pve.NodeScope(last), "", drop, ""))
	if emu.NodeAdmits(last, "tcp", 22, false) {
		t.Fatal("SSH admitted past a DROP above it")
	}
	c = open(t, path, state)
	st, err = c.Status(ctx)
	must(err)
	want = "node " + last + ": rule keeping SSH (22) is at position 1, below rule 0 (IN DROP -p tcp -dport 22), which is not Holdfast's"
	for _, s := range st {
		if s.ID.String() == "firewall/launceston" && !strings.Contains(strings.Join(s.Drift, "; "), want) {
			t.Errorf("%s is %s %v, want drift %q", s.ID, s.State, s.Drift, want)
		}
	}
	c.Close()
	converge(t, path, state, false, 3)
	got, _, err := api.Rules(ctx, pve.NodeScope(last), "")
	must(err)
	if len(got) != 3 || got[0].DPort != "22" || got[1].DPort != "8006" || !sameAs(got[2], drop) {
		t.Errorf("node %s's rules %+v: want Holdfast's two, then the operator's DROP", last, got)
	}
	if !emu.NodeAdmits(last, "tcp", 22, false) {
		t.Error("apply did not put SSH back above the operator's DROP")
	}

	converge(t, path, state, true, 3)
	for _, n := range nodes {
		got, _, err := api.Rules(ctx, pve.NodeScope(n), "")
		must(err)
		var left []pve.Rule
		switch n {
		case nodes[0]:
			left = []pve.Rule{mine}
		case last:
			left = []pve.Rule{drop}
		}
		if len(got) != len(left) || len(left) == 1 && !sameAs(got[0], left[0]) {
			t.Errorf("node %s's rules after destroy %+v: want only the operator's %+v", n, got, left)
		}
	}
}

// sameAs compares a listed rule with one added, leaving out its position.
func sameAs(got, want pve.Rule) bool {
	got.Pos = want.Pos
	return got == want
}
