package pve_test

import (
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/engine/proxmox/pve"
	"github.com/holdfast/holdfast/internal/engine/proxmox/pveemu"
)

const fwStaleDigest = "0123456789abcdef0123456789abcdef01234567"

func fwBool(b bool) *bool { return &b }

// paramError returns PVE's error for param when err is a parameter error
// (HTTP 400) naming it.
func fwParamErr(err error, param string) string {
	var e *pve.Error
	if !errors.As(err, &e) || e.StatusCode != http.StatusBadRequest {
		return ""
	}
	return e.Params[param]
}

func TestFirewallOptionsRoundTrip(t *testing.T) {
	c := newCluster(t, pveemu.Config{Seed: 1})
	cl := c.client(t)
	ctx := ctx(t)

	cluster := pve.ClusterScope()
	o, err := cl.FirewallOptions(ctx, cluster)
	if err != nil || o.Enable != nil || o.PolicyIn != "" || o.Digest == "" {
		t.Fatalf("fresh cluster options %+v, %v", o, err)
	}
	if err := cl.SetFirewallOptions(ctx, cluster, pve.FirewallOptions{Enable: fwBool(true), PolicyIn: "DROP", Digest: o.Digest}); err != nil {
		t.Fatal(err)
	}
	got, err := cl.FirewallOptions(ctx, cluster)
	if err != nil || got.Enable == nil || !*got.Enable || got.PolicyIn != "DROP" || got.PolicyOut != "" ||
		got.IPFilter != nil || got.Digest == o.Digest {
		t.Fatalf("cluster options %+v, %v", got, err)
	}
	err = cl.SetFirewallOptions(ctx, cluster, pve.FirewallOptions{PolicyIn: "ACCEPT", Digest: o.Digest})
	if !pve.IsDigestMismatch(err) || pve.IsRetryable(err) {
		t.Fatalf("stale digest: %v", err)
	}
	// The cluster has no IP filter: PVE refuses the parameter.
	err = cl.SetFirewallOptions(ctx, cluster, pve.FirewallOptions{IPFilter: fwBool(true)})
	if !strings.Contains(fwParamErr(err, "ipfilter"), "not defined in schema") {
		t.Fatalf("cluster ipfilter: %v", err)
	}

	vm := pve.VMScope("pve1", template)
	want := pve.FirewallOptions{Enable: fwBool(true), PolicyIn: "DROP", PolicyOut: "REJECT",
		IPFilter: fwBool(true), MACFilter: fwBool(false), DHCP: fwBool(true)}
	if err := cl.SetFirewallOptions(ctx, vm, want); err != nil {
		t.Fatal(err)
	}
	got, err = cl.FirewallOptions(ctx, vm)
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest == "" {
		t.Error("VM options have no digest")
	}
	got.Digest = ""
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("VM options %+v, want %+v", got, want)
	}
	// Unset fields are left alone.
	if err := cl.SetFirewallOptions(ctx, vm, pve.FirewallOptions{DHCP: fwBool(false)}); err != nil {
		t.Fatal(err)
	}
	if got, _ := cl.FirewallOptions(ctx, vm); *got.DHCP || !*got.IPFilter || got.PolicyOut != "REJECT" {
		t.Fatalf("VM options after setting DHCP: %+v", got)
	}
}

func TestFirewallGroupRules(t *testing.T) {
	c := newCluster(t, pveemu.Config{Seed: 2})
	cl := c.client(t)
	ctx := ctx(t)
	cluster := pve.ClusterScope()

	if err := cl.CreateGroup(ctx, "web", "Web servers"); err != nil {
		t.Fatal(err)
	}
	groups, err := cl.Groups(ctx)
	if err != nil || len(groups) != 1 || groups[0].Group != "web" || groups[0].Comment != "Web servers" || groups[0].Digest == "" {
		t.Fatalf("groups %+v, %v", groups, err)
	}
	if err := cl.CreateGroup(ctx, "web", ""); !strings.Contains(fwParamErr(err, "group"), "already exists") || !pve.IsExists(err) {
		t.Fatalf("second create: %v", err)
	}
	if err := cl.CreateGroup(ctx, "1web", ""); fwParamErr(err, "group") == "" {
		t.Fatalf("bad name: %v", err)
	}

	rules, digest, err := cl.Rules(ctx, cluster, "web")
	if err != nil || len(rules) != 0 || len(digest) != 40 {
		t.Fatalf("empty group: %v %q %v", rules, digest, err)
	}
	ssh := pve.Rule{Type: "in", Action: "ACCEPT", Proto: "tcp", DPort: "22", Source: "+admins", Enable: true, Comment: "ssh"}
	https := pve.Rule{Type: "in", Action: "ACCEPT", Proto: "tcp", DPort: "443,8000:8100", Enable: true, Log: "info"}
	ping := pve.Rule{Type: "in", Action: "ACCEPT", Proto: "icmp", ICMPType: "echo-request", Enable: true}
	drop := pve.Rule{Type: "out", Action: "DROP", Dest: "10.0.0.0/8"}

	// A reference to an IPSet that does not exist is refused.
	err = cl.AddRule(ctx, cluster, "web", ssh, digest)
	if got := fwParamErr(err, "source"); got != "no such ipset 'admins'" {
		t.Fatalf("rule naming a missing IPSet: %v", err)
	}
	if err := cl.CreateIPSet(ctx, cluster, "admins", ""); err != nil {
		t.Fatal(err)
	}
	if err := cl.AddRule(ctx, cluster, "web", ssh, digest); err != nil {
		t.Fatal(err)
	}
	// Rules go where Pos says, past the end to the end.
	https.Pos, ping.Pos, drop.Pos = 1, 1, 9
	for _, r := range []pve.Rule{https, ping, drop} {
		if err := cl.AddRule(ctx, cluster, "web", r, ""); err != nil {
			t.Fatal(err)
		}
	}
	expect := func(what string, want ...pve.Rule) string {
		t.Helper()
		got, digest, err := cl.Rules(ctx, cluster, "web")
		if err != nil {
			t.Fatal(err)
		}
		for i := range want {
			want[i].Pos = i
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: rules\n%+v\nwant\n%+v", what, got, want)
		}
		return digest
	}
	digest = expect("after adding", ssh, ping, https, drop)

	// A stale digest refuses every kind of write, changing nothing.
	if err := cl.AddRule(ctx, cluster, "web", drop, fwStaleDigest); !pve.IsDigestMismatch(err) {
		t.Errorf("add with a stale digest: %v", err)
	}
	if err := cl.UpdateRule(ctx, cluster, "web", ssh, fwStaleDigest); !pve.IsDigestMismatch(err) {
		t.Errorf("update with a stale digest: %v", err)
	}
	if err := cl.DeleteRule(ctx, cluster, "web", 0, fwStaleDigest); !pve.IsDigestMismatch(err) {
		t.Errorf("delete with a stale digest: %v", err)
	}
	expect("after stale writes", ssh, ping, https, drop)

	// An update replaces the rule: what it leaves empty goes.
	updated := pve.Rule{Pos: 2, Type: "in", Action: "DROP", Proto: "udp", DPort: "53", Comment: "dns"}
	if err := cl.UpdateRule(ctx, cluster, "web", updated, digest); err != nil {
		t.Fatal(err)
	}
	digest = expect("after the update", ssh, ping, updated, drop)
	if err := cl.DeleteRule(ctx, cluster, "web", 1, digest); err != nil {
		t.Fatal(err)
	}
	expect("after the delete", ssh, updated, drop)
	if err := cl.DeleteRule(ctx, cluster, "web", 3, ""); !pve.IsNotFound(err) || pve.IsRetryable(err) {
		t.Fatalf("delete past the end: %v", err)
	}
	err = cl.UpdateRule(ctx, cluster, "web", pve.Rule{Type: "in", Action: "ACCEPT", Proto: "tcp", DPort: "70000"}, "")
	if !strings.Contains(fwParamErr(err, "dport"), "invalid port '70000'") {
		t.Fatalf("bad port: %v", err)
	}

	// A VM's rules may name the group; deleting the group is refused while
	// it has rules, not while it is named.
	vm := pve.VMScope("pve1", template)
	if err := cl.AddRule(ctx, vm, "", pve.Rule{Type: "group", Action: "web", Iface: "net0", Enable: true}, ""); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cl.Rules(ctx, vm, "web"); err == nil {
		t.Fatal("a group read in a VM scope")
	}
	err = cl.DeleteGroup(ctx, "web")
	if err == nil || pve.IsNotFound(err) || pve.IsRetryable(err) || !strings.Contains(err.Error(), "is not empty") {
		t.Fatalf("delete of a group with rules: %v", err)
	}
	for range 3 {
		if err := cl.DeleteRule(ctx, cluster, "web", 0, ""); err != nil {
			t.Fatal(err)
		}
	}
	if err := cl.DeleteGroup(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if err := cl.DeleteGroup(ctx, "web"); !pve.IsNotFound(err) || pve.IsRetryable(err) {
		t.Fatalf("delete of a deleted group: %v", err)
	}
	if _, _, err := cl.Rules(ctx, cluster, "web"); !pve.IsNotFound(err) {
		t.Fatalf("rules of a deleted group: %v", err)
	}
}

func TestFirewallVMRulePositions(t *testing.T) {
	c := newCluster(t, pveemu.Config{Seed: 3})
	cl := c.client(t)
	ctx := ctx(t)
	vm := pve.VMScope("pve1", template)
	var want []pve.Rule
	// Insert each rule at the middle and check the whole list each time.
	for i := range 6 {
		r := pve.Rule{Pos: i / 2, Type: "in", Action: "ACCEPT", Proto: "tcp", DPort: string(rune('1' + i)), Enable: i%2 == 0}
		if err := cl.AddRule(ctx, vm, "", r, ""); err != nil {
			t.Fatal(err)
		}
		want = append(want[:r.Pos], append([]pve.Rule{r}, want[r.Pos:]...)...)
		got, _, err := cl.Rules(ctx, vm, "")
		if err != nil {
			t.Fatal(err)
		}
		for j := range want {
			want[j].Pos = j
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("after inserting at %d:\n%+v\nwant\n%+v", r.Pos, got, want)
		}
	}
}

func TestFirewallIPSetsRoundTrip(t *testing.T) {
	c := newCluster(t, pveemu.Config{Seed: 4})
	cl := c.client(t)
	ctx := ctx(t)
	for _, s := range []pve.Scope{pve.ClusterScope(), pve.VMScope("pve1", template)} {
		if err := cl.CreateIPSet(ctx, s, "ipfilter-net0", "net0"); err != nil {
			t.Fatal(err)
		}
		sets, err := cl.IPSets(ctx, s)
		if err != nil || len(sets) != 1 || sets[0].Name != "ipfilter-net0" || sets[0].Comment != "net0" || sets[0].Digest == "" {
			t.Fatalf("%+v: IPSets %+v, %v", s, sets, err)
		}
		for _, e := range []pve.IPSetEntry{
			{CIDR: "10.0.0.5/24"}, {CIDR: "10.0.0.7", NoMatch: true, Comment: "not this one"}, {CIDR: "fd00::1/128"},
		} {
			if err := cl.AddIPSetEntry(ctx, s, "ipfilter-net0", e); err != nil {
				t.Fatal(err)
			}
		}
		err = cl.AddIPSetEntry(ctx, s, "ipfilter-net0", pve.IPSetEntry{CIDR: "10.0.0.0/24"})
		if !strings.Contains(fwParamErr(err, "cidr"), "already exists") || !pve.IsExists(err) {
			t.Fatalf("duplicate entry: %v", err)
		}
		if err := cl.CreateIPSet(ctx, s, "ipfilter-net0", ""); !pve.IsExists(err) {
			t.Fatalf("duplicate IPSet: %v", err)
		}
		// PVE refuses a zero prefix: "everything" takes two halves.
		err = cl.AddIPSetEntry(ctx, s, "ipfilter-net0", pve.IPSetEntry{CIDR: "0.0.0.0/0"})
		if fwParamErr(err, "cidr") != "a zero prefix is not allowed in ipset entries" {
			t.Fatalf("zero prefix: %v", err)
		}
		entries, digest, err := cl.IPSetEntries(ctx, s, "ipfilter-net0")
		want := []pve.IPSetEntry{{CIDR: "10.0.0.0/24"}, {CIDR: "10.0.0.7", NoMatch: true, Comment: "not this one"}, {CIDR: "fd00::1"}}
		if err != nil || !reflect.DeepEqual(entries, want) {
			t.Fatalf("%+v: entries %+v, %v; want %+v", s, entries, err, want)
		}
		if err := cl.DeleteIPSetEntry(ctx, s, "ipfilter-net0", "10.0.0.0/24", fwStaleDigest); !pve.IsDigestMismatch(err) {
			t.Fatalf("delete with a stale digest: %v", err)
		}
		if err := cl.DeleteIPSetEntry(ctx, s, "ipfilter-net0", "10.0.0.0/24", digest); err != nil {
			t.Fatal(err)
		}
		// Already gone: PVE does not mind.
		if err := cl.DeleteIPSetEntry(ctx, s, "ipfilter-net0", "10.0.0.0/24", ""); err != nil {
			t.Fatal(err)
		}
		if entries, _, _ := cl.IPSetEntries(ctx, s, "ipfilter-net0"); len(entries) != 2 {
			t.Fatalf("entries after the delete: %+v", entries)
		}
		// Deleting a set deletes its entries.
		if err := cl.DeleteIPSet(ctx, s, "ipfilter-net0"); err != nil {
			t.Fatal(err)
		}
		if err := cl.DeleteIPSet(ctx, s, "ipfilter-net0"); !pve.IsNotFound(err) || pve.IsRetryable(err) {
			t.Fatalf("delete of a deleted IPSet: %v", err)
		}
		if _, _, err := cl.IPSetEntries(ctx, s, "ipfilter-net0"); !pve.IsNotFound(err) {
			t.Fatalf("entries of a deleted IPSet: %v", err)
		}
		if err := cl.DeleteIPSetEntry(ctx, s, "ipfilter-net0", "10.0.0.7", ""); !pve.IsNotFound(err) {
			t.Fatalf("entry of a deleted IPSet: %v", err)
		}
	}
}

func TestVMFirewallGoesWithTheVM(t *testing.T) {
	c := newCluster(t, pveemu.Config{Seed: 5})
	cl := c.client(t)
	ctx := ctx(t)
	vm := pve.VMScope("pve1", 101)
	if _, err := cl.FirewallOptions(ctx, vm); !pve.IsNotFound(err) {
		t.Fatalf("firewall of a missing VM: %v", err)
	}
	if err := cl.AddRule(ctx, vm, "", pve.Rule{Type: "in", Action: "ACCEPT"}, ""); !pve.IsNotFound(err) {
		t.Fatalf("rule on a missing VM: %v", err)
	}
	if _, err := cl.IPSets(ctx, pve.VMScope("pve2", template)); !pve.IsNotFound(err) {
		t.Fatalf("firewall of a VM on another node: %v", err)
	}

	if err := cl.Clone(ctx, "pve1", template, pve.CloneOptions{NewID: 101, Name: "a"}); err != nil {
		t.Fatal(err)
	}
	if err := cl.SetFirewallOptions(ctx, vm, pve.FirewallOptions{Enable: fwBool(true)}); err != nil {
		t.Fatal(err)
	}
	if err := cl.CreateIPSet(ctx, vm, "ipfilter-net0", ""); err != nil {
		t.Fatal(err)
	}
	if err := cl.AddRule(ctx, vm, "", pve.Rule{Type: "in", Action: "ACCEPT", Source: "+ipfilter-net0"}, ""); err != nil {
		t.Fatal(err)
	}
	if err := cl.Delete(ctx, "pve1", 101); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cl.Rules(ctx, vm, ""); !pve.IsNotFound(err) {
		t.Fatalf("rules of a deleted VM: %v", err)
	}
	if err := cl.Clone(ctx, "pve1", template, pve.CloneOptions{NewID: 101, Name: "b"}); err != nil {
		t.Fatal(err)
	}
	o, err := cl.FirewallOptions(ctx, vm)
	if err != nil || o.Enable != nil {
		t.Fatalf("options of the new VM: %+v, %v", o, err)
	}
	rules, _, err := cl.Rules(ctx, vm, "")
	if err != nil || len(rules) != 0 {
		t.Fatalf("rules of the new VM: %+v, %v", rules, err)
	}
	sets, err := cl.IPSets(ctx, vm)
	if err != nil || len(sets) != 0 {
		t.Fatalf("IPSets of the new VM: %+v, %v", sets, err)
	}
}

// TestFirewallNodeScope shows the node scope reaching a node's host
// firewall: its options, and rules added, placed, listed and deleted
// there and nowhere else.
func TestFirewallNodeScope(t *testing.T) {
	c := newCluster(t, pveemu.Config{Seed: 4})
	cl := c.client(t)
	ctx := ctx(t)
	node := pve.NodeScope("pve1")

	o, err := cl.FirewallOptions(ctx, node)
	if err != nil || o.Enable != nil || o.Digest == "" {
		t.Fatalf("fresh node options %+v, %v", o, err)
	}
	if err := cl.SetFirewallOptions(ctx, node, pve.FirewallOptions{Enable: fwBool(false), Digest: o.Digest}); err != nil {
		t.Fatal(err)
	}
	if got, err := cl.FirewallOptions(ctx, node); err != nil || got.Enable == nil || *got.Enable {
		t.Fatalf("node options %+v, %v", got, err)
	}
	// A node's firewall takes no input policy: that is the datacenter's.
	err = cl.SetFirewallOptions(ctx, node, pve.FirewallOptions{PolicyIn: "ACCEPT"})
	if !strings.Contains(fwParamErr(err, "policy_in"), "not defined in schema") {
		t.Fatalf("node policy_in: %v", err)
	}

	ssh := pve.Rule{Type: "in", Action: "ACCEPT", Proto: "tcp", DPort: "22", Enable: true, Comment: "ssh"}
	api := pve.Rule{Pos: 1, Type: "in", Action: "ACCEPT", Proto: "tcp", DPort: "8006", Enable: true, Comment: "api"}
	for _, r := range []pve.Rule{ssh, api} {
		if err := cl.AddRule(ctx, node, "", r, ""); err != nil {
			t.Fatal(err)
		}
	}
	got, digest, err := cl.Rules(ctx, node, "")
	ssh.Pos = 0
	if err != nil || !reflect.DeepEqual(got, []pve.Rule{ssh, api}) {
		t.Fatalf("node rules %+v, %v", got, err)
	}
	if cluster, _, err := cl.Rules(ctx, pve.ClusterScope(), ""); err != nil || len(cluster) != 0 {
		t.Fatalf("the cluster's rules %+v, %v", cluster, err)
	}
	if err := cl.DeleteRule(ctx, node, "", 0, fwStaleDigest); !pve.IsDigestMismatch(err) {
		t.Fatalf("stale digest: %v", err)
	}
	if err := cl.DeleteRule(ctx, node, "", 0, digest); err != nil {
		t.Fatal(err)
	}
	if got, _, err := cl.Rules(ctx, node, ""); err != nil || len(got) != 1 || got[0].DPort != "8006" {
		t.Fatalf("after the delete: %+v, %v", got, err)
	}
	if _, _, err := cl.Rules(ctx, pve.NodeScope("nope"), ""); err == nil {
		t.Fatal("rules of a node that does not exist: no error")
	}
}
