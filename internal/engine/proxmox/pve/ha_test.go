package pve_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/engine/proxmox/pve"
)

func findHAResource(res []pve.HAResource, sid string) pve.HAResource {
	i := slices.IndexFunc(res, func(r pve.HAResource) bool { return r.SID == sid })
	if i < 0 {
		return pve.HAResource{}
	}
	return res[i]
}

func findHARule(rules []pve.HARule, id string) pve.HARule {
	i := slices.IndexFunc(rules, func(r pve.HARule) bool { return r.Rule == id })
	if i < 0 {
		return pve.HARule{}
	}
	return rules[i]
}

func TestHARoundTrip(t *testing.T) {
	c := newNetCluster(t)
	cl := c.client(t)
	ctx := ctx(t)
	for _, id := range []int{100, 101} {
		if err := cl.Clone(ctx, "pve1", template, pve.CloneOptions{NewID: id, Name: "vm" + strings.Repeat("x", id-99)}); err != nil {
			t.Fatal(err)
		}
	}

	want := pve.HAResource{SID: "vm:100", State: "started", Comment: "holdfast web", MaxRestart: 2, MaxRelocate: 1}
	if err := cl.CreateHAResource(ctx, want); err != nil {
		t.Fatal(err)
	}
	if err := cl.CreateHAResource(ctx, pve.HAResource{SID: "vm:101", MaxRestart: 1, MaxRelocate: 1}); err != nil {
		t.Fatal(err)
	}
	res, err := cl.HAResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := findHAResource(res, "vm:100")
	if want.Digest = got.Digest; got != want || len(got.Digest) != 40 {
		t.Fatalf("resource vm:100: %+v", got)
	}
	if r := findHAResource(res, "vm:101"); r.State != "started" || r.MaxRestart != 1 {
		t.Fatalf("resource vm:101 with PVE's defaults: %+v", r)
	}
	want.State, want.Comment, want.MaxRestart = "stopped", "", 0
	if err := cl.UpdateHAResource(ctx, want); err != nil {
		t.Fatal(err)
	}
	res, _ = cl.HAResources(ctx)
	if got := findHAResource(res, "vm:100"); got.State != "stopped" || got.Comment != "" || got.MaxRestart != 0 {
		t.Fatalf("resource vm:100 updated: %+v", got)
	}
	// The digest is resources.cfg's, and it changed.
	err = cl.UpdateHAResource(ctx, want)
	if !pve.IsDigestMismatch(err) || pve.IsRetryable(err) {
		t.Fatalf("update with a stale digest: %v", err)
	}

	pin := pve.HARule{Rule: "hf-pin-100", Type: "node-affinity", Resources: []string{"vm:100"}, Nodes: []string{"pve1:2", "pve2"}, Strict: true, Comment: "pin"}
	apart := pve.HARule{Rule: "hf-apart", Type: "resource-affinity", Resources: []string{"vm:100", "vm:101"}, Affinity: "negative"}
	for _, r := range []pve.HARule{pin, apart} {
		if err := cl.CreateHARule(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	rules, err := cl.HARules(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rules) != 2 || rules[0].Rule != pin.Rule {
		t.Fatalf("rules in their order: %+v", rules)
	}
	got0 := findHARule(rules, pin.Rule)
	if pin.Digest = got0.Digest; !equalRule(got0, pin) || got0.Digest == "" {
		t.Fatalf("rule %s: %+v", pin.Rule, got0)
	}
	if got := findHARule(rules, apart.Rule); got.Affinity != "negative" || !slices.Equal(got.Resources, apart.Resources) {
		t.Fatalf("rule %s: %+v", apart.Rule, got)
	}
	pin.Nodes, pin.Strict, pin.Comment = []string{"pve2"}, false, ""
	if err := cl.UpdateHARule(ctx, pin); err != nil {
		t.Fatal(err)
	}
	rules, _ = cl.HARules(ctx)
	if got := findHARule(rules, pin.Rule); !slices.Equal(got.Nodes, []string{"pve2"}) || got.Strict || got.Comment != "" {
		t.Fatalf("rule %s updated: %+v", pin.Rule, got)
	}
	if err := cl.UpdateHARule(ctx, pin); !pve.IsDigestMismatch(err) {
		t.Fatalf("rule update with a stale digest: %v", err)
	}

	// Deleting a resource takes it out of the rules; a rule left empty goes.
	if err := cl.DeleteHAResource(ctx, "vm:100"); err != nil {
		t.Fatal(err)
	}
	rules, _ = cl.HARules(ctx)
	if len(rules) != 1 || !slices.Equal(rules[0].Resources, []string{"vm:101"}) {
		t.Fatalf("rules after deleting vm:100: %+v", rules)
	}
	if err := cl.DeleteHARule(ctx, apart.Rule); err != nil {
		t.Fatal(err)
	}
	if err := cl.DeleteHARule(ctx, apart.Rule); err != nil {
		t.Fatalf("deleting a rule that is gone (PVE succeeds): %v", err)
	}
	if err := cl.DeleteHAResource(ctx, "vm:100"); !pve.IsNotFound(err) || pve.IsRetryable(err) {
		t.Fatalf("deleting a resource that is gone: %v", err)
	}

	// Destroying the VM (the client purges) takes its resource along.
	if err := cl.Delete(ctx, "pve1", 101); err != nil {
		t.Fatal(err)
	}
	if res, _ := cl.HAResources(ctx); len(res) != 0 {
		t.Fatalf("resources after destroying the VM: %+v", res)
	}
}

func equalRule(a, b pve.HARule) bool {
	return a.Rule == b.Rule && a.Type == b.Type && slices.Equal(a.Resources, b.Resources) && slices.Equal(a.Nodes, b.Nodes) &&
		a.Strict == b.Strict && a.Affinity == b.Affinity && a.Comment == b.Comment && a.Digest == b.Digest
}

func TestHARefusals(t *testing.T) {
	c := newNetCluster(t)
	cl := c.client(t)
	ctx := ctx(t)

	before := c.emu.Stats().Requests
	err := cl.CreateHAResource(ctx, pve.HAResource{SID: "vm:4242", MaxRestart: 1, MaxRelocate: 1})
	if msg := refusedOnce(t, c, before, err); !strings.Contains(msg, "resource 'vm:4242' does not exist in cluster") {
		t.Fatalf("HA for a missing VM: %v", err)
	}
	if err := cl.CreateHAResource(ctx, pve.HAResource{SID: "vm:9000", MaxRestart: 1, MaxRelocate: 1}); err != nil {
		t.Fatal(err)
	}
	before = c.emu.Stats().Requests
	err = cl.CreateHAResource(ctx, pve.HAResource{SID: "vm:9000", MaxRestart: 1, MaxRelocate: 1})
	if msg := refusedOnce(t, c, before, err); !pve.IsExists(err) || !strings.Contains(msg, "already defined") {
		t.Fatalf("duplicate resource: %v", err)
	}
	before = c.emu.Stats().Requests
	err = cl.CreateHARule(ctx, pve.HARule{Rule: "r1", Type: "node-affinity", Resources: []string{"vm:101"}, Nodes: []string{"pve1"}})
	if msg := refusedOnce(t, c, before, err); !strings.Contains(msg, "cannot use unmanaged resource(s) vm:101.") {
		t.Fatalf("rule on a resource that is not HA managed: %v", err)
	}
	before = c.emu.Stats().Requests
	err = cl.CreateHARule(ctx, pve.HARule{Rule: "r1", Type: "resource-affinity", Resources: []string{"vm:9000"}, Affinity: "positive"})
	if msg := refusedOnce(t, c, before, err); !strings.Contains(msg, "Rule 'r1' is invalid.\nresources: rule is ineffective as there are less than two resources") {
		t.Fatalf("resource affinity with one resource: %v", err)
	}
	if err := cl.CreateHARule(ctx, pve.HARule{Rule: "r1", Type: "node-affinity", Resources: []string{"vm:9000"}, Nodes: []string{"pve1"}}); err != nil {
		t.Fatal(err)
	}
	if err := cl.CreateHARule(ctx, pve.HARule{Rule: "r1", Type: "node-affinity", Resources: []string{"vm:9000"}, Nodes: []string{"pve2"}}); !pve.IsExists(err) {
		t.Fatalf("duplicate rule: %v", err)
	}
	if err := cl.UpdateHARule(ctx, pve.HARule{Rule: "nope", Type: "node-affinity", Resources: []string{"vm:9000"}, Nodes: []string{"pve2"}}); !pve.IsNotFound(err) {
		t.Fatalf("updating a rule that is not there: %v", err)
	}
}
