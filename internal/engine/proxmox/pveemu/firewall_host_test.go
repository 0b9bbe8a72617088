package pveemu_test

import (
	"reflect"
	"testing"

	"github.com/holdfast/holdfast/internal/engine/proxmox/pveemu"
)

// TestHostFirewallEndpoints shows a node's rules and options served as
// the schema and pve-firewall have them: per node, with list digests,
// rules of the host's types, and the host's options only.
func TestHostFirewallEndpoints(t *testing.T) {
	emu, srv := newServer(t, pveemu.Config{Seed: 1})
	if err := emu.AddNode(pveemu.Node{Name: "pve2"}); err != nil {
		t.Fatal(err)
	}
	const rules = "/nodes/pve1/firewall/rules"
	fwOK(t, srv, "POST", rules, "type=in&action=ACCEPT&proto=tcp&dport=22&enable=1&comment=ssh")
	fwOK(t, srv, "POST", rules, "type=in&action=DROP&proto=tcp&dport=8006&enable=1")
	got, digest := fwList(t, srv, rules)
	r0 := map[string]string{"type": "in", "action": "DROP", "proto": "tcp", "dport": "8006", "enable": "1"}
	r1 := map[string]string{"type": "in", "action": "ACCEPT", "proto": "tcp", "dport": "22", "enable": "1", "comment": "ssh"}
	want := []map[string]any{
		{"pos": 0.0, "type": "in", "action": "DROP", "proto": "tcp", "dport": "8006", "enable": 1.0},
		{"pos": 1.0, "type": "in", "action": "ACCEPT", "proto": "tcp", "dport": "22", "enable": 1.0, "comment": "ssh"},
	}
	if !reflect.DeepEqual(got, want) || digest != fwPVEDigest(r0, r1) {
		t.Errorf("pve1's rules %v (digest %s), want %v", got, digest, want)
	}
	if other, _ := fwList(t, srv, "/nodes/pve2/firewall/rules"); len(other) != 0 {
		t.Errorf("pve2 has pve1's rules: %v", other)
	}
	fwRefused(t, srv, "DELETE", rules+"/0", "digest=0000", 500, "", "detected modified configuration")
	fwOK(t, srv, "DELETE", rules+"/0", "digest="+digest)
	if got, _ := fwList(t, srv, rules); len(got) != 1 || got[0]["dport"] != "22" {
		t.Errorf("after deleting rule 0: %v", got)
	}
	fwRefused(t, srv, "POST", rules, "type=in&action=ACCEPT&iface=net0%25&enable=1", 400, "iface", "invalid format")
	fwRefused(t, srv, "POST", rules, "type=in&action=ACCEPT&dport=22", 400, "proto", "'dport' requires this property")
	fwRefused(t, srv, "GET", "/nodes/nope/firewall/rules", "", 500, "", "no such cluster node 'nope'")

	const opts = "/nodes/pve1/firewall/options"
	fwOK(t, srv, "PUT", opts, "enable=0&nosmurfs=1&log_level_in=info&nf_conntrack_max=300000")
	gotOpts, _ := fwOK(t, srv, "GET", opts, "").(map[string]any)
	stored := map[string]string{"enable": "0", "nosmurfs": "1", "log_level_in": "info", "nf_conntrack_max": "300000"}
	wantOpts := map[string]any{"enable": 0.0, "nosmurfs": 1.0, "log_level_in": "info", "nf_conntrack_max": 300000.0,
		"digest": fwPVEDigest(stored)}
	if !reflect.DeepEqual(gotOpts, wantOpts) {
		t.Errorf("pve1's options %v, want %v", gotOpts, wantOpts)
	}
	fwRefused(t, srv, "PUT", opts, "policy_in=ACCEPT", 400, "policy_in", "property is not defined in schema")
	fwRefused(t, srv, "PUT", opts, "nf_conntrack_max=10", 400, "nf_conntrack_max", "minimum")
	fwRefused(t, srv, "PUT", opts, "nf_conntrack_helpers=ftp%2Cbogus", 400, "nf_conntrack_helpers", "invalid format")
	fwRefused(t, srv, "PUT", opts, "enable=1&digest=0000", 500, "", "detected modified configuration")
}

// TestNodeAdmits shows what turning the datacenter firewall on does to a
// node's SSH and API, and the node rules that keep them.
func TestNodeAdmits(t *testing.T) {
	emu, srv := newServer(t, pveemu.Config{Seed: 1})
	admits := func(port int, fromMgmt bool) bool { return emu.NodeAdmits("pve1", "tcp", port, fromMgmt) }
	if !admits(22, false) || !admits(8006, false) {
		t.Fatal("with the datacenter firewall off, the node must be open")
	}
	fwOK(t, srv, "PUT", "/cluster/firewall/options", "enable=1")
	if admits(22, false) || admits(8006, false) {
		t.Error("datacenter firewall on, no node rules: SSH and the API admitted from outside; PVE drops them")
	}
	if !admits(22, true) || !admits(8006, true) || !admits(5901, true) || admits(80, true) {
		t.Error("the management network must reach 22, 8006 and the consoles, and no other port")
	}
	const rules = "/nodes/pve1/firewall/rules"
	fwOK(t, srv, "POST", rules, "type=in&action=ACCEPT&proto=tcp&dport=22%2C8000%3A8010&enable=1")
	if !admits(22, false) || !admits(8006, false) || admits(443, false) {
		t.Error("node rule ACCEPT tcp 22,8000:8010 not followed")
	}
	// First match wins: a DROP above the ACCEPT shuts SSH, even from the
	// management network (host rules come before PVE's management accepts).
	fwOK(t, srv, "POST", rules, "type=in&action=DROP&proto=tcp&dport=22&enable=1")
	if admits(22, false) || admits(22, true) || !admits(8006, false) {
		t.Error("DROP tcp 22 above the ACCEPT must win")
	}
	// A disabled rule, an OUT rule and a udp rule do not count.
	_, digest := fwList(t, srv, rules)
	fwOK(t, srv, "PUT", rules+"/0", "enable=0&digest="+digest)
	fwOK(t, srv, "POST", rules, "type=out&action=DROP&proto=tcp&dport=22&enable=1")
	fwOK(t, srv, "POST", rules, "type=in&action=DROP&proto=udp&dport=22&enable=1")
	if !admits(22, false) {
		t.Error("a disabled, an OUT or a udp rule decided tcp 22")
	}
	if emu.NodeAdmits("pve1", "udp", 22, false) {
		t.Error("udp 22 is dropped by its rule")
	}
	// The node's own enable=0 turns its host firewall off; policy_in
	// ACCEPT lets everything in.
	fwOK(t, srv, "PUT", "/nodes/pve1/firewall/options", "enable=0")
	if !admits(443, false) {
		t.Error("node firewall off: everything is admitted")
	}
	fwOK(t, srv, "PUT", "/nodes/pve1/firewall/options", "delete=enable")
	fwOK(t, srv, "PUT", "/cluster/firewall/options", "policy_in=ACCEPT")
	if !admits(443, false) {
		t.Error("policy_in ACCEPT: a port no rule names is admitted")
	}
}
