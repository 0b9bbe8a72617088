package pveemu_test

import (
	"net/url"
	"testing"
)

func TestHAResourcesAndRules(t *testing.T) {
	srv := newNetServer(t)
	awaitUPID(t, srv, okData(t, srv, "POST", "/nodes/pve1/qemu/9000/clone", url.Values{"newid": {"100"}, "name": {"a"}}))
	awaitUPID(t, srv, okData(t, srv, "POST", "/nodes/pve1/qemu/9000/clone", url.Values{"newid": {"101"}, "name": {"b"}}))

	okData(t, srv, "POST", "/cluster/ha/resources", url.Values{"sid": {"vm:100"}, "state": {"started"}, "max_restart": {"2"}})
	okData(t, srv, "POST", "/cluster/ha/resources", url.Values{"sid": {"101"}}) // a VMID stands for its guest
	res := indexBy(okData(t, srv, "GET", "/cluster/ha/resources", nil), "sid")
	if r := res["vm:100"]; r["type"] != "vm" || r["state"] != "started" || r["max_restart"] != float64(2) || len(r["digest"].(string)) != 40 {
		t.Fatalf("resource vm:100: %v", r)
	}
	if r := okData(t, srv, "GET", "/cluster/ha/resources/101", nil).(map[string]any); r["sid"] != "vm:101" {
		t.Fatalf("resource 101: %v", r)
	}

	okData(t, srv, "POST", "/cluster/ha/rules", url.Values{"rule": {"pin"}, "type": {"node-affinity"},
		"resources": {"vm:100"}, "nodes": {"pve2:1,pve1:2"}, "strict": {"1"}})
	okData(t, srv, "POST", "/cluster/ha/rules", url.Values{"rule": {"apart"}, "type": {"resource-affinity"},
		"resources": {"vm:101,vm:100"}, "affinity": {"negative"}, "comment": {"spread"}})
	rules := indexBy(okData(t, srv, "GET", "/cluster/ha/rules", nil), "rule")
	if r := rules["pin"]; r["nodes"] != "pve1:2,pve2:1" || r["strict"] != float64(1) || r["resources"] != "vm:100" || r["order"] != float64(1) {
		t.Fatalf("rule pin: %v", r)
	}
	if r := rules["apart"]; r["resources"] != "vm:100,vm:101" || r["affinity"] != "negative" || r["comment"] != "spread" {
		t.Fatalf("rule apart: %v", r)
	}

	// Deleting a resource purges it from the rules, and a rule left
	// without resources goes.
	okData(t, srv, "DELETE", "/cluster/ha/resources/vm:100", nil)
	rules = indexBy(okData(t, srv, "GET", "/cluster/ha/rules", nil), "rule")
	if _, ok := rules["pin"]; ok || rules["apart"]["resources"] != "vm:101" {
		t.Fatalf("rules after deleting vm:100: %v", rules)
	}
	// A rule left infeasible is listed with its errors.
	if errs, _ := rules["apart"]["errors"].(map[string]any); errs == nil {
		t.Fatalf("rule apart with one resource has no errors: %v", rules["apart"])
	}

	// Destroying the VM (with purge, as the client does) takes its
	// resource along.
	awaitUPID(t, srv, okData(t, srv, "DELETE", "/nodes/pve1/qemu/101", url.Values{"purge": {"1"}}))
	if res := okData(t, srv, "GET", "/cluster/ha/resources", nil).([]any); len(res) != 0 {
		t.Fatalf("resources after destroying the VM: %v", res)
	}
}

func TestHARefusals(t *testing.T) {
	srv := newNetServer(t)
	okData(t, srv, "POST", "/cluster/ha/resources", url.Values{"sid": {"vm:9000"}})
	digest := indexBy(okData(t, srv, "GET", "/cluster/ha/resources", nil), "sid")["vm:9000"]["digest"].(string)
	okData(t, srv, "PUT", "/cluster/ha/resources/vm:9000", url.Values{"comment": {"changed"}})
	okData(t, srv, "POST", "/cluster/ha/rules", url.Values{"rule": {"pin"}, "type": {"node-affinity"}, "resources": {"vm:9000"}, "nodes": {"pve1"}})

	for _, tc := range []struct {
		method, path string
		form         url.Values
		status       int
		message      string
		param, err   string
	}{
		{"POST", "/cluster/ha/resources", url.Values{"sid": {"vm:9000"}}, 500, "create resource failed: resource ID 'vm:9000' already defined\n", "", ""},
		{"POST", "/cluster/ha/resources", url.Values{"sid": {"vm:4242"}}, 500, "resource 'vm:4242' does not exist in cluster\n", "", ""},
		{"POST", "/cluster/ha/resources", url.Values{"sid": {"4242"}}, 500, "unable to detect SID from VMID - VM/CT 4242 does not exist\n", "", ""},
		{"POST", "/cluster/ha/resources", url.Values{"sid": {"vm 1"}}, 400, "Parameter verification failed.\n",
			"sid", "invalid format - value does not look like a valid ha resource id"},
		{"POST", "/cluster/ha/resources", url.Values{"sid": {"vm:9000"}, "state": {"running"}}, 400, "Parameter verification failed.\n",
			"state", "value 'running' does not have a value in the enumeration 'started, stopped, enabled, disabled, ignored'"},
		{"POST", "/cluster/ha/resources", url.Values{"sid": {"vm:9000"}, "group": {"g1"}}, 500,
			"invalid parameter 'group': ha groups have been migrated to rules\n", "", ""},
		{"PUT", "/cluster/ha/resources/vm:9000", url.Values{"state": {"stopped"}, "digest": {digest}}, 500,
			"update resources config failed: detected modified configuration - file changed by other user? Try again.\n", "", ""},
		{"GET", "/cluster/ha/resources/vm:4242", nil, 500, "no such resource 'vm:4242'\n", "", ""},
		{"DELETE", "/cluster/ha/resources/vm:4242", nil, 500, "cannot delete service 'vm:4242', not HA managed!\n", "", ""},
		{"POST", "/cluster/ha/rules", url.Values{"rule": {"pin"}, "type": {"node-affinity"}, "resources": {"vm:9000"}, "nodes": {"pve1"}}, 500,
			"create ha rule failed: HA rule 'pin' already defined\n", "", ""},
		{"POST", "/cluster/ha/rules", url.Values{"rule": {"r2"}, "type": {"node-affinity"}, "resources": {"vm:9000"}, "nodes": {"pve7"}}, 500,
			"create ha rule failed: cannot use non-existent node(s) pve7.\n", "", ""},
		{"POST", "/cluster/ha/rules", url.Values{"rule": {"r2"}, "type": {"node-affinity"}, "resources": {"vm:100"}, "nodes": {"pve1"}}, 500,
			"create ha rule failed: cannot use unmanaged resource(s) vm:100.\n", "", ""},
		{"POST", "/cluster/ha/rules", url.Values{"rule": {"r2"}, "type": {"node-affinity"}, "resources": {"vm:9000"}, "nodes": {"pve2"}}, 500,
			"create ha rule failed: 400 Rule 'r2' is invalid.\nresources: resource 'vm:9000' is already used in another node affinity rule\n", "", ""},
		{"POST", "/cluster/ha/rules", url.Values{"rule": {"r2"}, "type": {"resource-affinity"}, "resources": {"vm:9000"}, "affinity": {"positive"}}, 500,
			"create ha rule failed: 400 Rule 'r2' is invalid.\nresources: rule is ineffective as there are less than two resources\n", "", ""},
		{"POST", "/cluster/ha/rules", url.Values{"rule": {"r2"}, "type": {"node-affinity"}, "resources": {"vm:9000"}}, 500,
			"missing value for required option 'nodes'\n", "", ""},
		{"POST", "/cluster/ha/rules", url.Values{"rule": {"r2"}, "type": {"node-affinity"}, "resources": {"vm:9000"}, "nodes": {"pve1"}, "affinity": {"positive"}}, 500,
			"unexpected property 'affinity'\n", "", ""},
		{"PUT", "/cluster/ha/rules/pin", url.Values{"type": {"resource-affinity"}, "affinity": {"positive"}}, 500,
			"update HA rules failed: unexpected property 'type'\n", "", ""},
		{"PUT", "/cluster/ha/rules/nope", url.Values{"type": {"node-affinity"}}, 500, "update HA rules failed: HA rule 'nope' does not exist\n", "", ""},
		{"GET", "/cluster/ha/rules/nope", nil, 500, "no such ha rule 'nope'\n", "", ""},
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
	// Deleting a rule that is not there succeeds, as in PVE.
	okData(t, srv, "DELETE", "/cluster/ha/rules/nope", nil)
}
