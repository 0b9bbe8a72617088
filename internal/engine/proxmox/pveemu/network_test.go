package pveemu_test

import (
	"net/url"
	"strings"
	"testing"
)

func TestBridgeVIDsPendingUntilReload(t *testing.T) {
	srv := newNetServer(t)
	ifaces := indexBy(okData(t, srv, "GET", "/nodes/pve1/network", nil), "iface")
	br, eth := ifaces["vmbr0"], ifaces["eno1"]
	if br["type"] != "bridge" || br["bridge_vlan_aware"] != float64(1) || br["bridge_vids"] != "2-4094" ||
		br["bridge_ports"] != "eno1" || br["active"] != float64(1) || br["method"] != "static" || br["cidr"] != "192.0.2.11/24" {
		t.Fatalf("vmbr0 as installed: %v", br)
	}
	if eth["type"] != "eth" || len(ifaces) != 2 {
		t.Fatalf("interfaces as installed: %v", ifaces)
	}
	if c := srv.emu.NetworkChanges("pve1"); c != "" {
		t.Fatalf("changes before any edit: %q", c)
	}

	// An edit goes to interfaces.new, which is what the API reads.
	set := url.Values{"type": {"bridge"}, "bridge_vlan_aware": {"1"}, "bridge_vids": {"10 20"},
		"cidr": {"192.0.2.11/24"}, "gateway": {"192.0.2.1"}, "bridge_ports": {"eno1"}, "autostart": {"1"}}
	okData(t, srv, "PUT", "/nodes/pve1/network/vmbr0", set)
	br = okData(t, srv, "GET", "/nodes/pve1/network/vmbr0", nil).(map[string]any)
	if br["bridge_vids"] != "10 20" || br["method"] != "static" || br["address"] != "192.0.2.11" {
		t.Fatalf("vmbr0 after the edit: %v", br)
	}
	changes := srv.emu.NetworkChanges("pve1")
	if !strings.Contains(changes, "-\tbridge-vids 2-4094\n+\tbridge-vids 10 20\n") {
		t.Fatalf("changes after the edit:\n%s", changes)
	}
	if srv.emu.NetworkChanges("pve2") != "" {
		t.Fatal("pve1's edit shows on pve2")
	}

	// Reverting drops it.
	okData(t, srv, "DELETE", "/nodes/pve1/network", nil)
	if br := okData(t, srv, "GET", "/nodes/pve1/network/vmbr0", nil).(map[string]any); br["bridge_vids"] != "2-4094" {
		t.Fatalf("vmbr0 after the revert: %v", br)
	}

	// Reloading applies it when the task ends.
	okData(t, srv, "PUT", "/nodes/pve1/network/vmbr0", set)
	upid := okData(t, srv, "PUT", "/nodes/pve1/network", nil)
	if s, _ := upid.(string); !strings.Contains(s, ":srvreload:networking:") {
		t.Fatalf("reload answered %v", upid)
	}
	awaitUPID(t, srv, upid)
	if c := srv.emu.NetworkChanges("pve1"); c != "" {
		t.Fatalf("changes after the reload:\n%s", c)
	}
	if br := okData(t, srv, "GET", "/nodes/pve1/network/vmbr0", nil).(map[string]any); br["bridge_vids"] != "10 20" {
		t.Fatalf("vmbr0 after the reload: %v", br)
	}
}

// An SDN apply reloads every node, which applies their pending changes too.
func TestSDNApplyReloadsNodes(t *testing.T) {
	srv := newNetServer(t)
	okData(t, srv, "PUT", "/nodes/pve2/network/vmbr0", url.Values{"type": {"bridge"}, "cidr": {"192.0.2.12/24"}, "bridge_vids": {"30"}})
	awaitUPID(t, srv, okData(t, srv, "PUT", "/cluster/sdn", nil))
	if c := srv.emu.NetworkChanges("pve2"); c != "" {
		t.Fatalf("pve2's changes after an SDN apply:\n%s", c)
	}
}

func TestNetworkRefusals(t *testing.T) {
	srv := newNetServer(t)
	for _, tc := range []struct {
		path       string
		form       url.Values
		param, err string
	}{
		{"/nodes/pve1/network/vmbr0", url.Values{"bridge_vids": {"10"}}, "type", "property is missing and it is not optional"},
		{"/nodes/pve1/network/vmbr0", url.Values{"type": {"bridge"}, "bridge_vids": {"1 10"}}, "bridge_vids", "invalid format - invalid VLAN tag '1'"},
		{"/nodes/pve1/network/vmbr0", url.Values{"type": {"bridge"}, "bridge_vids": {"20-10"}}, "bridge_vids",
			"invalid format - VLAN range must go from lower to higher tag '20-10'"},
		{"/nodes/pve1/network/vmbr0", url.Values{"type": {"bridge"}, "address": {"192.0.2.5"}}, "netmask", "missing property required by 'address'"},
		{"/nodes/pve1/network/vmbr9", url.Values{"type": {"bridge"}}, "iface", "interface does not exist"},
		{"/nodes/pve1/network/vmbr0", url.Values{"type": {"bridge"}, "cidr": {"192.0.2.5/24"}, "address": {"192.0.2.5"}, "netmask": {"255.255.255.0"}},
			"address", "address conflicts with cidr"},
	} {
		st, body := call(t, srv.Server, "PUT", tc.path, tc.form.Encode())
		errs, _ := body["errors"].(map[string]any)
		if st != 400 || errs[tc.param] != tc.err {
			t.Errorf("PUT %s %v: %d %v, want 400 %s: %s", tc.path, tc.form, st, body, tc.param, tc.err)
		}
	}
	if c := srv.emu.NetworkChanges("pve1"); c != "" {
		t.Fatalf("refused edits left changes:\n%s", c)
	}
}

// Like PVE, an update without an address makes the interface manual: the
// caller must send the whole configuration.
func TestIfaceUpdateWithoutAddressIsManual(t *testing.T) {
	srv := newNetServer(t)
	okData(t, srv, "PUT", "/nodes/pve1/network/vmbr0", url.Values{"type": {"bridge"}, "bridge_vids": {"10"}})
	br := okData(t, srv, "GET", "/nodes/pve1/network/vmbr0", nil).(map[string]any)
	if br["method"] != "manual" || br["address"] != "192.0.2.11" {
		t.Fatalf("vmbr0 after a partial update: %v", br)
	}
}
