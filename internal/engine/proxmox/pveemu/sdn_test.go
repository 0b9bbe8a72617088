package pveemu_test

import (
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/engine/proxmox/pveemu"
)

// netDurations are short task durations for the network tests; the SDN
// apply's is long enough to observe the nodes while it runs.
var netDurations = map[string]time.Duration{
	pveemu.TaskSDNApply: 200 * time.Millisecond, pveemu.TaskNetworkReload: 30 * time.Millisecond,
	pveemu.TaskClone: 10 * time.Millisecond, pveemu.TaskDestroy: 10 * time.Millisecond,
}

// netServer is an emulated cluster with the nodes pve1 and pve2 and
// template 9000, served over loopback.
type netServer struct {
	*httptest.Server
	emu *pveemu.Emulator
}

func newNetServer(t *testing.T) *netServer {
	t.Helper()
	emu, srv := newServer(t, pveemu.Config{Seed: 1, Durations: netDurations})
	if err := emu.AddNode(pveemu.Node{Name: "pve2"}); err != nil {
		t.Fatal(err)
	}
	return &netServer{srv, emu}
}

// okData sends a request that must answer 200 and returns its data.
func okData(t *testing.T, srv *netServer, method, path string, form url.Values) any {
	t.Helper()
	st, body := call(t, srv.Server, method, path, form.Encode())
	if st != 200 {
		t.Fatalf("%s %s %v: %d %v", method, path, form, st, body)
	}
	return body["data"]
}

// awaitUPID polls a task until it stops and fails unless it ended OK.
func awaitUPID(t *testing.T, srv *netServer, upid any) {
	t.Helper()
	s, _ := upid.(string)
	node := strings.Split(s, ":")[1]
	deadline := time.Now().Add(5 * time.Second)
	for {
		d := okData(t, srv, "GET", "/nodes/"+node+"/tasks/"+url.PathEscape(s)+"/status", nil).(map[string]any)
		if d["status"] == "stopped" {
			if d["exitstatus"] != "OK" {
				t.Fatalf("task %s ended with %v", s, d["exitstatus"])
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s never ended", s)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// byID indexes a listing by one of its keys.
func indexBy(data any, key string) map[string]map[string]any {
	out := map[string]map[string]any{}
	list, _ := data.([]any)
	for _, item := range list {
		o := item.(map[string]any)
		out[o[key].(string)] = o
	}
	return out
}

func TestSDNPendingUntilApplied(t *testing.T) {
	srv := newNetServer(t)
	okData(t, srv, "POST", "/cluster/sdn/zones", url.Values{"zone": {"hfz"}, "type": {"vlan"}, "bridge": {"vmbr0"}})
	okData(t, srv, "POST", "/cluster/sdn/vnets", url.Values{"vnet": {"hfnet"}, "zone": {"hfz"}, "tag": {"10"}})
	okData(t, srv, "POST", "/cluster/sdn/vnets/hfnet/subnets", url.Values{"subnet": {"10.0.10.0/24"}, "type": {"subnet"},
		"gateway": {"10.0.10.1"}, "dhcp-range": {"start-address=10.0.10.50,end-address=10.0.10.99"}})

	// Pending: new, with the values under "pending" (type and vnet at the top).
	vnet := indexBy(okData(t, srv, "GET", "/cluster/sdn/vnets?pending=1", nil), "vnet")["hfnet"]
	pending, _ := vnet["pending"].(map[string]any)
	if vnet["state"] != "new" || vnet["type"] != "vnet" || pending["zone"] != "hfz" || pending["tag"] != float64(10) || vnet["digest"] != nil {
		t.Fatalf("pending vnet: %v", vnet)
	}
	sub := indexBy(okData(t, srv, "GET", "/cluster/sdn/vnets/hfnet/subnets?pending=1", nil), "subnet")["hfz-10.0.10.0-24"]
	if sub["state"] != "new" || sub["vnet"] != "hfnet" || sub["cidr"] != "10.0.10.0/24" || sub["zone"] != "hfz" {
		t.Fatalf("pending subnet: %v", sub)
	}
	if got := okData(t, srv, "GET", "/cluster/sdn/zones?running=1", nil); len(got.([]any)) != 0 {
		t.Fatalf("running zones before any apply: %v", got)
	}
	plain := indexBy(okData(t, srv, "GET", "/cluster/sdn/zones", nil), "zone")["hfz"]
	if plain["bridge"] != "vmbr0" || plain["state"] != nil || len(plain["digest"].(string)) != 40 {
		t.Fatalf("zone as configured: %v", plain)
	}

	upid := okData(t, srv, "PUT", "/cluster/sdn", nil)
	if s, _ := upid.(string); !strings.HasSuffix(s, ":reloadnetworkall::root@pam!t:") {
		t.Fatalf("apply answered %v", upid)
	}
	// PVE commits at once; the nodes catch up when the reload ends.
	if z := indexBy(okData(t, srv, "GET", "/cluster/sdn/zones?pending=1", nil), "zone")["hfz"]; z["state"] != nil || z["pending"] != nil || z["bridge"] != "vmbr0" {
		t.Fatalf("zone after the commit: %v", z)
	}
	if z := indexBy(okData(t, srv, "GET", "/nodes/pve1/sdn/zones", nil), "zone")["hfz"]; z["status"] != "pending" {
		t.Fatalf("node zone during the reload: %v", z)
	}
	awaitUPID(t, srv, upid)
	if z := indexBy(okData(t, srv, "GET", "/nodes/pve1/sdn/zones", nil), "zone")["hfz"]; z["status"] != "available" {
		t.Fatalf("node zone after the reload: %v", z)
	}
	sub = indexBy(okData(t, srv, "GET", "/cluster/sdn/vnets/hfnet/subnets?running=1", nil), "subnet")["hfz-10.0.10.0-24"]
	ranges, _ := sub["dhcp-range"].([]any)
	if sub["gateway"] != "10.0.10.1" || len(ranges) != 1 || ranges[0].(map[string]any)["end-address"] != "10.0.10.99" {
		t.Fatalf("running subnet: %v", sub)
	}

	// A change: running values at the top, the new one pending.
	okData(t, srv, "PUT", "/cluster/sdn/vnets/hfnet", url.Values{"alias": {"web tier"}, "tag": {"11"}})
	vnet = indexBy(okData(t, srv, "GET", "/cluster/sdn/vnets?pending=1", nil), "vnet")["hfnet"]
	pending, _ = vnet["pending"].(map[string]any)
	if vnet["state"] != "changed" || vnet["tag"] != float64(10) || pending["tag"] != float64(11) || pending["alias"] != "web tier" {
		t.Fatalf("changed vnet: %v", vnet)
	}
	// A removal: running values, state deleted, nothing pending.
	okData(t, srv, "DELETE", "/cluster/sdn/vnets/hfnet/subnets/hfz-10.0.10.0-24", nil)
	okData(t, srv, "PUT", "/cluster/sdn/vnets/hfnet", url.Values{"delete": {"alias"}})
	sub = indexBy(okData(t, srv, "GET", "/cluster/sdn/vnets/hfnet/subnets?pending=1", nil), "subnet")["hfz-10.0.10.0-24"]
	if sub["state"] != "deleted" || len(sub["pending"].(map[string]any)) != 0 || sub["gateway"] != "10.0.10.1" {
		t.Fatalf("deleted subnet: %v", sub)
	}
	awaitUPID(t, srv, okData(t, srv, "PUT", "/cluster/sdn", nil))
	if got := okData(t, srv, "GET", "/cluster/sdn/vnets/hfnet/subnets?pending=1", nil); len(got.([]any)) != 0 {
		t.Fatalf("subnets after applying the removal: %v", got)
	}
}

func TestSDNRefusals(t *testing.T) {
	srv := newNetServer(t)
	okData(t, srv, "POST", "/cluster/sdn/zones", url.Values{"zone": {"hfz"}, "type": {"vlan"}, "bridge": {"vmbr0"}})
	okData(t, srv, "POST", "/cluster/sdn/zones", url.Values{"zone": {"hfx"}, "type": {"vxlan"}, "peers": {"192.0.2.11,192.0.2.12"}})
	okData(t, srv, "POST", "/cluster/sdn/vnets", url.Values{"vnet": {"hfnet"}, "zone": {"hfz"}, "tag": {"10"}})
	okData(t, srv, "POST", "/cluster/sdn/vnets/hfnet/subnets", url.Values{"subnet": {"10.0.10.0/24"}, "type": {"subnet"}})
	digest := indexBy(okData(t, srv, "GET", "/cluster/sdn/zones", nil), "zone")["hfz"]["digest"].(string)
	okData(t, srv, "PUT", "/cluster/sdn/zones/hfx", url.Values{"mtu": {"1400"}}) // zones.cfg changes

	for _, tc := range []struct {
		method, path string
		form         url.Values
		status       int
		message      string // the message, or with errors its start
		param, err   string
	}{
		{"POST", "/cluster/sdn/zones", url.Values{"zone": {"toolongname"}, "type": {"simple"}}, 400, "Parameter verification failed.\n",
			"zone", "invalid format - zone ID 'toolongname' can't be more length than 8 characters"},
		{"POST", "/cluster/sdn/zones", url.Values{"zone": {"hf-z"}, "type": {"simple"}}, 400, "Parameter verification failed.\n",
			"zone", "invalid format - zone ID 'hf-z' contains illegal characters"},
		{"POST", "/cluster/sdn/zones", url.Values{"zone": {"hfy"}, "type": {"vlan"}, "colour": {"red"}}, 400, "Parameter verification failed.\n",
			"colour", "property is not defined in schema and the schema does not allow additional properties"},
		{"POST", "/cluster/sdn/zones", url.Values{"zone": {"hfy"}, "type": {"vxlan"}, "peers": {"10.0.0.1,nope"}}, 400, "Parameter verification failed.\n",
			"peers", "invalid format - value does not look like a valid IP address"},
		{"POST", "/cluster/sdn/zones", url.Values{"zone": {"hfy"}, "type": {"vlan"}}, 500, "missing value for required option 'bridge'\n", "", ""},
		{"POST", "/cluster/sdn/zones", url.Values{"zone": {"hfy"}, "type": {"vlan"}, "bridge": {"vmbr0"}, "peers": {"10.0.0.1"}}, 500,
			"unexpected property 'peers'\n", "", ""},
		{"POST", "/cluster/sdn/zones", url.Values{"zone": {"hfy"}, "type": {"vxlan"}}, 500,
			"create sdn zone object failed: 400 Parameter verification failed.\nfabric: must have exactly one of peers / fabric defined\npeers: must have exactly one of peers / fabric defined\n", "", ""},
		{"POST", "/cluster/sdn/zones", url.Values{"zone": {"hfz"}, "type": {"simple"}}, 500,
			"create sdn zone object failed: sdn zone object ID 'hfz' already defined\n", "", ""},
		{"POST", "/cluster/sdn/vnets", url.Values{"vnet": {"hfb"}, "zone": {"hfz"}, "tag": {"0"}}, 400, "Parameter verification failed.\n",
			"tag", "value must have a minimum value of 1"},
		{"POST", "/cluster/sdn/vnets", url.Values{"vnet": {"hfb"}, "zone": {"hfz"}, "tag": {"5000"}}, 500,
			"create sdn vnet object failed: 400 Parameter verification failed.\ntag: vlan tag max value is 4096\n", "", ""},
		{"POST", "/cluster/sdn/vnets", url.Values{"vnet": {"hfb"}, "zone": {"hfz"}}, 500,
			"create sdn vnet object failed: 400 Parameter verification failed.\ntag: missing vlan tag\n", "", ""},
		{"POST", "/cluster/sdn/vnets", url.Values{"vnet": {"hfb"}, "zone": {"hfz"}, "tag": {"10"}}, 500,
			"create sdn vnet object failed: 400 Parameter verification failed.\ntag: tag 10 already exist in vnet hfnet\n", "", ""},
		{"POST", "/cluster/sdn/vnets", url.Values{"vnet": {"hfb"}, "zone": {"nozone"}, "tag": {"12"}}, 500,
			"create sdn vnet object failed: cannot lookup undefined type!\n", "", ""},
		{"DELETE", "/cluster/sdn/vnets/hfnet", nil, 500,
			"delete sdn vnet object failed: 400 Parameter verification failed.\nvnet: Can't delete vnet if subnets exists\n", "", ""},
		{"DELETE", "/cluster/sdn/zones/hfz", nil, 500, "delete sdn zone object failed: zone hfz is used by vnet hfnet\n", "", ""},
		{"PUT", "/cluster/sdn/zones/hfz", url.Values{"mtu": {"9000"}, "digest": {digest}}, 500,
			"update sdn zone object failed: detected modified configuration - file changed by other user? Try again.\n", "", ""},
		{"PUT", "/cluster/sdn/zones/hfz", url.Values{"delete": {"bridge"}}, 500,
			"update sdn zone object failed: unable to delete required option 'bridge'\n", "", ""},
		{"GET", "/cluster/sdn/zones/nozone", nil, 500, "sdn 'nozone' does not exist\n", "", ""},
		{"DELETE", "/cluster/sdn/vnets/novnet", nil, 500, "sdn vnet 'novnet' does not exist\n", "", ""},
		{"POST", "/cluster/sdn/vnets/hfnet/subnets", url.Values{"subnet": {"10.0.20.0/24"}, "type": {"subnet"}, "gateway": {"10.0.30.1"}}, 500,
			"create sdn subnet object failed: 400 Parameter verification failed.\ngateway: 10.0.30.1 is not in subnet 10.0.20.0/24\n", "", ""},
		{"POST", "/cluster/sdn/vnets/hfnet/subnets", url.Values{"subnet": {"10.0.20.0/24"}, "type": {"subnet"},
			"dhcp-range": {"start-address=10.0.20.50,end-address=10.0.21.1"}}, 500,
			"create sdn subnet object failed: 400 Parameter verification failed.\ndhcp-range: end-address 10.0.21.1 is not in subnet 10.0.20.0/24\n", "", ""},
		{"POST", "/cluster/sdn/vnets/hfnet/subnets", url.Values{"subnet": {"10.0.20.0/24"}, "type": {"subnet"}, "dhcp-range": {"10.0.20.5-10.0.20.9"}},
			400, "Parameter verification failed.\n", "dhcp-range[0]", "invalid format - value without key, but schema does not define a default key"},
		{"POST", "/cluster/sdn/vnets/hfnet/subnets", url.Values{"subnet": {"10.0.10.0/24"}, "type": {"subnet"}}, 500,
			"create sdn subnet object failed: sdn subnet object ID 'hfz-10.0.10.0-24' already defined\n", "", ""},
		{"GET", "/cluster/sdn/vnets/hfnet/subnets/hfz-10.0.99.0-24", nil, 500, "sdn subnet 'hfz-10.0.99.0-24' does not exist\n", "", ""},
	} {
		st, body := call(t, srv.Server, tc.method, tc.path, tc.form.Encode())
		if st != tc.status || body["message"] != tc.message {
			t.Errorf("%s %s %v: %d %q, want %d %q", tc.method, tc.path, tc.form, st, body["message"], tc.status, tc.message)
			continue
		}
		if tc.param != "" {
			if errs, _ := body["errors"].(map[string]any); errs[tc.param] != tc.err {
				t.Errorf("%s %s %v: errors %v, want %s: %s", tc.method, tc.path, tc.form, errs, tc.param, tc.err)
			}
		}
	}

	// Deleting a subnet that is not there succeeds, as in PVE.
	okData(t, srv, "DELETE", "/cluster/sdn/vnets/hfnet/subnets/hfz-10.0.99.0-24", nil)
}
