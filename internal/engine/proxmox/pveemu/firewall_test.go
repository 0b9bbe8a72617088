package pveemu_test

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/engine/proxmox/pveemu"
)

const fwModified = "detected modified configuration - file changed by other user? Try again.\n"

// fwOK sends a request that must succeed and returns its data.
func fwOK(t *testing.T, srv *httptest.Server, method, path, form string) any {
	t.Helper()
	st, body := call(t, srv, method, path, form)
	if st != 200 {
		t.Fatalf("%s %s %s: %d %v", method, path, form, st, body)
	}
	return body["data"]
}

// fwRefused sends a request that must fail with status and a message
// (param == "") or a parameter error on param that contains want.
func fwRefused(t *testing.T, srv *httptest.Server, method, path, form string, status int, param, want string) {
	t.Helper()
	st, body := call(t, srv, method, path, form)
	got, _ := body["message"].(string)
	if param != "" {
		errs, _ := body["errors"].(map[string]any)
		got, _ = errs[param].(string)
	}
	if st != status || !strings.Contains(got, want) {
		t.Errorf("%s %s %s: %d %v; want %d with %q", method, path, form, st, body, status, want)
	}
}

// fwList reads a list and returns its entries without their digest, which
// must be the same on all, and that digest.
func fwList(t *testing.T, srv *httptest.Server, path string) ([]map[string]any, string) {
	t.Helper()
	data, _ := fwOK(t, srv, "GET", path, "").([]any)
	out := []map[string]any{}
	digest := ""
	for i, d := range data {
		m := d.(map[string]any)
		if i > 0 && m["digest"] != digest {
			t.Fatalf("%s: digests differ: %v", path, data)
		}
		digest, _ = m["digest"].(string)
		delete(m, "digest")
		out = append(out, m)
	}
	return out, digest
}

// fwPVEDigest is PVE's copy_list_with_digest, written down independently.
func fwPVEDigest(entries ...map[string]string) string {
	h := sha1.New()
	for _, m := range entries {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			fmt.Fprintf(h, "%s:%s\n", k, m[k])
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

func TestFirewallRulePositions(t *testing.T) {
	_, srv := newServer(t, pveemu.Config{Seed: 1})
	fwOK(t, srv, "POST", "/cluster/firewall/groups", "group=web&comment=+Web+servers+")
	groups, _ := fwList(t, srv, "/cluster/firewall/groups")
	if want := []map[string]any{{"group": "web", "comment": "Web servers"}}; !reflect.DeepEqual(groups, want) {
		t.Fatalf("groups %v, want %v", groups, want)
	}

	const g = "/cluster/firewall/groups/web"
	fwOK(t, srv, "POST", g, "type=in&action=ACCEPT&proto=tcp&dport=22&enable=1&comment=ssh")
	// PVE takes pos but puts every new rule at the top.
	fwOK(t, srv, "POST", g, "type=in&action=ACCEPT&proto=tcp&dport=80%2C443&enable=1&pos=2")
	// Without enable a new rule is disabled.
	fwOK(t, srv, "POST", g, "type=out&action=DROP&dest=10.0.0.0%2F8")
	ssh := map[string]any{"type": "in", "action": "ACCEPT", "proto": "tcp", "dport": "22", "enable": 1.0, "comment": "ssh"}
	web := map[string]any{"type": "in", "action": "ACCEPT", "proto": "tcp", "dport": "80,443", "enable": 1.0}
	out := map[string]any{"type": "out", "action": "DROP", "dest": "10.0.0.0/8", "enable": 0.0, "ipversion": 4.0}
	at := func(pos int, r map[string]any) map[string]any {
		m := map[string]any{"pos": float64(pos)}
		for k, v := range r {
			m[k] = v
		}
		return m
	}
	expect := func(what string, rules ...map[string]any) string {
		t.Helper()
		got, digest := fwList(t, srv, g)
		want := []map[string]any{}
		for i, r := range rules {
			want = append(want, at(i, r))
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: rules\n%v\nwant\n%v", what, got, want)
		}
		return digest
	}
	expect("after three creates", out, web, ssh)

	// moveto puts the rule before the one at moveto, or at the end.
	fwOK(t, srv, "PUT", g+"/0", "moveto=3")
	expect("moved to the end", web, ssh, out)
	fwOK(t, srv, "PUT", g+"/0", "moveto=2")
	expect("moved before the last", ssh, web, out)

	// An update merges; delete removes properties.
	fwOK(t, srv, "PUT", g+"/0", "source=192.168.0.0%2F16&enable=0&delete=comment")
	ssh = map[string]any{"type": "in", "action": "ACCEPT", "proto": "tcp", "dport": "22", "enable": 0.0,
		"source": "192.168.0.0/16", "ipversion": 4.0}
	expect("after the update", ssh, web, out)
	fwRefused(t, srv, "PUT", g+"/0", "delete=action", 400, "delete", "unable to delete required property 'action'")
	fwRefused(t, srv, "PUT", g+"/0", "delete=bogus", 400, "delete", "no such property ('bogus')")

	// Deleting shifts the rules after it up.
	fwOK(t, srv, "DELETE", g+"/1", "")
	digest := expect("after the delete", ssh, out)
	want := fwPVEDigest(
		map[string]string{"type": "in", "action": "ACCEPT", "proto": "tcp", "dport": "22", "enable": "0",
			"source": "192.168.0.0/16", "ipversion": "4"},
		map[string]string{"type": "out", "action": "DROP", "dest": "10.0.0.0/8", "enable": "0", "ipversion": "4"})
	if digest != want {
		t.Errorf("digest %s, want PVE's %s", digest, want)
	}
	got, _ := fwOK(t, srv, "GET", g+"/1", "").(map[string]any)
	if got["digest"] != want || !reflect.DeepEqual(got, map[string]any{"pos": 1.0, "digest": want,
		"type": "out", "action": "DROP", "dest": "10.0.0.0/8", "enable": 0.0, "ipversion": 4.0}) {
		t.Errorf("rule 1: %v", got)
	}
	fwRefused(t, srv, "GET", g+"/2", "", 500, "", "no rule at position 2\n")
	fwRefused(t, srv, "DELETE", g+"/2", "", 500, "", "no rule at position 2\n")
	fwRefused(t, srv, "PUT", g+"/2", "comment=x", 500, "", "no rule at position 2\n")
	fwRefused(t, srv, "GET", "/cluster/firewall/groups/nope", "", 500, "", "no such security group 'nope'\n")

	// The cluster's own rule list is separate.
	if rules, d := fwList(t, srv, "/cluster/firewall/rules"); len(rules) != 0 || d != "" {
		t.Errorf("cluster rules %v", rules)
	}
}

func TestFirewallRuleVerification(t *testing.T) {
	_, srv := newServer(t, pveemu.Config{Seed: 1})
	const (
		cl = "/cluster/firewall/rules"
		vm = "/nodes/pve1/qemu/9000/firewall/rules"
	)
	fwOK(t, srv, "POST", "/cluster/firewall/groups", "group=web")
	for _, tc := range []struct {
		path, form   string
		param, error string // "" when the rule is accepted
	}{
		{cl, "type=in&action=ACCEPT&source=%2Badmins", "source", "no such ipset 'admins'"},
		{vm, "type=in&action=ACCEPT&source=%2Bipfilter-net0", "source", "no such ipset 'ipfilter-net0'"},
		{cl, "type=in&action=ACCEPT&source=mynet", "source", "no such alias 'mynet'"},
		{cl, "type=in&action=ACCEPT&source=%2B1bad", "source", "invalid ipset name '+1bad'"},
		{vm, "type=forward&action=ACCEPT", "type", "invalid rule type 'forward' for rule_env 'vm'"},
		{"/cluster/firewall/groups/web", "type=group&action=web", "type", "invalid rule type 'group' for rule_env 'group'"},
		{"/cluster/firewall/groups/web", "type=in&action=ACCEPT&iface=eth0", "type", "parameter -i not allowed for this rule type"},
		{cl, "type=forward&action=REJECT", "action", "cannot define REJECT rules on forward chain"},
		{cl, "type=in&action=ALLOW", "action", "unknown action 'ALLOW'"},
		{cl, "type=in&action=ACCEPT&dport=22", "proto", "missing property - 'dport' requires this property"},
		{cl, "type=in&action=ACCEPT&proto=gre&dport=22", "dport", "protocol 'gre' does not support ports"},
		{cl, "type=in&action=ACCEPT&proto=tcp&dport=70000", "dport", "invalid format - invalid port '70000'"},
		{cl, "type=in&action=ACCEPT&proto=tcp&dport=80-90", "dport", "invalid format - invalid port '80-90'"},
		{cl, "type=in&action=ACCEPT&proto=tcp&dport=90%3A80", "dport", "backwards range '90:80' not allowed"},
		{cl, "type=in&action=ACCEPT&proto=tcp&dport=1%2C2%2C3%2C4%2C5%2C6%2C7%2C8%2C9%2C10%2C11%2C12%2C13%2C14%2C15%3A16", "dport", "too many entries in port list"},
		{cl, "type=in&action=ACCEPT&proto=tcp&dport=echo-request", "dport", "invalid port 'echo-request'"},
		{cl, "type=in&action=ACCEPT&proto=tcp&sport=1024%3A65535&dport=8000%3A8100%2C22%2Cssh", "", ""},
		{cl, "type=in&action=ACCEPT&proto=bogus", "proto", "invalid format - unknown protocol 'bogus'"},
		{cl, "type=in&action=ACCEPT&proto=icmp&icmp-type=echo-request", "", ""},
		{cl, "type=in&action=ACCEPT&proto=icmp&icmp-type=neighbor-solicitation", "icmp-type", "invalid icmp-type 'neighbor-solicitation' for proto 'icmp'"},
		{cl, "type=in&action=ACCEPT&proto=tcp&icmp-type=echo-request", "proto", "missing property - 'icmp-type' requires this property"},
		{cl, "type=in&action=ACCEPT&source=10.0.0.1%2F24", "source", "invalid format - invalid IP address: Invalid prefix"},
		{cl, "type=in&action=ACCEPT&source=10.0.0.1&dest=fd00%3A%3A1", "dest", "detected mixed ipv4/ipv6 addresses in rule"},
		{cl, "type=in&action=ACCEPT&source=10.0.0.1%2Cfd00%3A%3A1", "source", "detected mixed ipv4/ipv6 addresses in address list"},
		{cl, "type=in&action=ACCEPT&source=10.0.0.1-10.0.0.9%2C10.0.1.1", "source", "you can't use a range in a list"},
		{cl, "type=in&action=ACCEPT&source=10.0.0.1-10.0.0.9", "", ""},
		{cl, "type=in&action=ACCEPT&source=10.0.0.1%2C", "source", "extraneous commas in list"},
		{vm, "type=in&action=ACCEPT&iface=eth0", "iface", `value does not match the regex pattern 'net\d+'`},
		{vm, "type=in&action=ACCEPT&iface=net0", "", ""},
		{cl, "type=in&action=ACCEPT&macro=nope", "macro", "unknown macro 'nope'"},
		{cl, "type=in&action=ACCEPT&bogus=1", "bogus", "property is not defined in schema"},
		{cl, "action=ACCEPT", "type", "property is missing and it is not optional"},
		{cl, "type=in&action=A", "action", "value does not match the regex pattern"},
		{cl, "type=in&action=ACCEPT&log=loud", "log", "does not have a value in the enumeration"},
		// PVE does not check that a rule's security group exists.
		{vm, "type=group&action=nosuchgroup", "", ""},
	} {
		st, body := call(t, srv, "POST", tc.path, tc.form)
		errs, _ := body["errors"].(map[string]any)
		got, _ := errs[tc.param].(string)
		switch {
		case tc.error == "" && st != 200:
			t.Errorf("%s %s: %d %v, want it accepted", tc.path, tc.form, st, body)
		case tc.error != "" && (st != 400 || !strings.Contains(got, tc.error)):
			t.Errorf("%s %s: %d %v, want 400 with %s: %q", tc.path, tc.form, st, body, tc.param, tc.error)
		}
	}

	// The references resolve once the IPSets exist: the cluster's from
	// anywhere, a VM's from that VM's rules.
	fwOK(t, srv, "POST", "/cluster/firewall/ipset", "name=admins")
	fwOK(t, srv, "POST", "/nodes/pve1/qemu/9000/firewall/ipset", "name=ipfilter-net0")
	fwOK(t, srv, "POST", cl, "type=in&action=ACCEPT&source=%2Badmins")
	fwOK(t, srv, "POST", vm, "type=in&action=ACCEPT&source=%2Bdc%2Fadmins&dest=%2Bipfilter-net0")
	fwRefused(t, srv, "POST", cl, "type=in&action=ACCEPT&source=%2Bipfilter-net0", 400, "source", "no such ipset 'ipfilter-net0'")

	// A macro is stored under its canonical name; a rule naming a group
	// keeps only its interface.
	fwOK(t, srv, "POST", vm, "type=in&action=ACCEPT&macro=ssh&enable=1")
	fwOK(t, srv, "POST", vm, "type=group&action=web&iface=net0&enable=1")
	rules, _ := fwList(t, srv, vm)
	if rules[1]["macro"] != "SSH" {
		t.Errorf("macro rule %v", rules[1])
	}
	if want := map[string]any{"pos": 0.0, "type": "group", "action": "web", "iface": "net0", "enable": 1.0}; !reflect.DeepEqual(rules[0], want) {
		t.Errorf("group rule %v, want %v", rules[0], want)
	}
}

func TestFirewallGroups(t *testing.T) {
	_, srv := newServer(t, pveemu.Config{Seed: 1})
	const groups = "/cluster/firewall/groups"
	fwRefused(t, srv, "POST", groups, "group=a", 400, "group", "value does not match the regex pattern")
	fwRefused(t, srv, "POST", groups, "group=1web", 400, "group", "value does not match the regex pattern")
	fwRefused(t, srv, "POST", groups, "group=abcdefghijklmnopqrs", 400, "group", "value may only be 18 characters long")
	fwRefused(t, srv, "POST", groups, "group=web&color=red", 400, "color", "property is not defined in schema")

	// PVE reads group names back lower-cased.
	fwOK(t, srv, "POST", groups, "group=Web")
	if list, _ := fwList(t, srv, groups); len(list) != 1 || list[0]["group"] != "web" {
		t.Fatalf("groups %v", list)
	}
	fwRefused(t, srv, "GET", groups+"/Web", "", 500, "", "no such security group 'Web'")
	fwRefused(t, srv, "POST", groups, "group=web", 400, "group", "Security group 'web' already exists")

	// A group with rules cannot go; one that rules name can (PVE does not
	// look), leaving the rules naming a group that is no more.
	fwOK(t, srv, "POST", groups+"/web", "type=in&action=ACCEPT&proto=tcp&dport=443")
	fwRefused(t, srv, "DELETE", groups+"/web", "", 500, "", "Security group 'web' is not empty\n")
	fwOK(t, srv, "POST", "/nodes/pve1/qemu/9000/firewall/rules", "type=group&action=web&enable=1")
	fwOK(t, srv, "DELETE", groups+"/web/0", "")
	fwOK(t, srv, "DELETE", groups+"/web", "")
	fwRefused(t, srv, "DELETE", groups+"/web", "", 500, "", "no such security group 'web'\n")
	if rules, _ := fwList(t, srv, "/nodes/pve1/qemu/9000/firewall/rules"); len(rules) != 1 || rules[0]["action"] != "web" {
		t.Errorf("VM rules %v", rules)
	}

	// A rename renames the rules naming the group.
	fwOK(t, srv, "POST", groups, "group=old&comment=before")
	fwOK(t, srv, "POST", "/cluster/firewall/rules", "type=group&action=old")
	fwOK(t, srv, "POST", "/nodes/pve1/qemu/9000/firewall/rules", "type=group&action=old")
	fwRefused(t, srv, "POST", groups, "group=new&rename=gone", 400, "group", "Security group 'gone' does not exist")
	fwOK(t, srv, "POST", groups, "group=new&rename=old")
	list, _ := fwList(t, srv, groups)
	if want := []map[string]any{{"group": "new", "comment": "before"}}; !reflect.DeepEqual(list, want) {
		t.Errorf("groups after the rename %v", list)
	}
	for _, path := range []string{"/cluster/firewall/rules", "/nodes/pve1/qemu/9000/firewall/rules"} {
		if rules, _ := fwList(t, srv, path); rules[0]["action"] != "new" {
			t.Errorf("%s after the rename: %v", path, rules)
		}
	}
}

func TestFirewallIPSets(t *testing.T) {
	_, srv := newServer(t, pveemu.Config{Seed: 1})
	for _, base := range []string{"/cluster/firewall/ipset", "/nodes/pve1/qemu/9000/firewall/ipset"} {
		fwRefused(t, srv, "POST", base, "name=x", 400, "name", "value does not match the regex pattern")
		fwOK(t, srv, "POST", base, "name=Admins&comment=ops")
		if list, _ := fwList(t, srv, base); !reflect.DeepEqual(list, []map[string]any{{"name": "admins", "comment": "ops"}}) {
			t.Fatalf("%s: %v", base, list)
		}
		fwRefused(t, srv, "POST", base, "name=admins", 400, "name", "IPSet 'admins' already exists")
		set := base + "/admins"
		fwOK(t, srv, "POST", set, "cidr=10.0.0.5%2F24")
		fwOK(t, srv, "POST", set, "cidr=192.168.1.1%2F32")
		fwOK(t, srv, "POST", set, "cidr=2001%3Adb8%3A%3A%2F32&nomatch=1&comment=+not+these+")
		fwRefused(t, srv, "POST", set, "cidr=10.0.0.0%2F24", 400, "cidr", "address '10.0.0.0/24' already exists")
		fwRefused(t, srv, "POST", set, "cidr=0.0.0.0%2F0", 400, "cidr", "a zero prefix is not allowed in ipset entries")
		fwRefused(t, srv, "POST", set, "cidr=10.0.0.256", 400, "cidr", "invalid format - value does not look like a valid IP address or CIDR network")
		fwRefused(t, srv, "POST", set, "cidr=office", 500, "", "no such alias 'office'")
		entries, digest := fwList(t, srv, set)
		want := []map[string]any{
			{"cidr": "10.0.0.0/24"},
			{"cidr": "192.168.1.1"},
			{"cidr": "2001:db8::/32", "nomatch": 1.0, "comment": "not these"},
		}
		if !reflect.DeepEqual(entries, want) {
			t.Fatalf("%s: entries %v, want %v", set, entries, want)
		}
		if d := fwPVEDigest(map[string]string{"cidr": "10.0.0.0/24"}, map[string]string{"cidr": "192.168.1.1"},
			map[string]string{"cidr": "2001:db8::/32", "nomatch": "1", "comment": "not these"}); digest != d {
			t.Errorf("%s: digest %s, want PVE's %s", set, digest, d)
		}

		// An entry is addressed by its CIDR with the slash escaped.
		got, _ := fwOK(t, srv, "GET", set+"/2001%3Adb8%3A%3A%2F32", "").(map[string]any)
		if got["nomatch"] != 1.0 || got["digest"] != digest {
			t.Errorf("entry %v", got)
		}
		fwRefused(t, srv, "GET", set+"/10.9.9.9", "", 400, "cidr", "no such IP/Network")
		// An update replaces both nomatch and comment.
		fwOK(t, srv, "PUT", set+"/2001%3Adb8%3A%3A%2F32", "comment=v6")
		if entries, _ := fwList(t, srv, set); !reflect.DeepEqual(entries[2], map[string]any{"cidr": "2001:db8::/32", "comment": "v6"}) {
			t.Errorf("after the update: %v", entries[2])
		}
		// Deleting an entry that is not there succeeds, as in PVE.
		fwOK(t, srv, "DELETE", set+"/10.9.9.9", "")
		fwOK(t, srv, "DELETE", set+"/192.168.1.1", "")
		if entries, _ := fwList(t, srv, set); len(entries) != 2 {
			t.Errorf("after the delete: %v", entries)
		}

		fwRefused(t, srv, "DELETE", set, "", 500, "", "IPSet 'admins' is not empty\n")
		fwOK(t, srv, "DELETE", set+"?force=1", "")
		fwRefused(t, srv, "DELETE", set, "", 500, "", "no such IPSet 'admins'\n")
		fwRefused(t, srv, "GET", set, "", 500, "", "no such IPSet 'admins'\n")
	}
}

func TestFirewallOptions(t *testing.T) {
	_, srv := newServer(t, pveemu.Config{Seed: 1})
	const cl = "/cluster/firewall/options"
	fwOK(t, srv, "PUT", cl, "enable=1&policy_in=DROP&ebtables=0&log_ratelimit=enable%3D1%2Crate%3D10%2Fminute%2Cburst%3D20")
	got, _ := fwOK(t, srv, "GET", cl, "").(map[string]any)
	opts := map[string]string{"enable": "1", "policy_in": "DROP", "ebtables": "0", "log_ratelimit": "enable=1,rate=10/minute,burst=20"}
	want := map[string]any{"enable": 1.0, "policy_in": "DROP", "ebtables": 0.0,
		"log_ratelimit": "enable=1,rate=10/minute,burst=20", "digest": fwPVEDigest(opts)}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("cluster options %v, want %v", got, want)
	}
	fwOK(t, srv, "PUT", cl, "delete=ebtables%2Clog_ratelimit")
	// PVE's anti-lockout call: an enable above 1 is stored as the time.
	fwOK(t, srv, "PUT", cl, "enable=2")
	got, _ = fwOK(t, srv, "GET", cl, "").(map[string]any)
	if n, _ := got["enable"].(float64); n < float64(time.Now().Add(-time.Minute).Unix()) || got["ebtables"] != nil {
		t.Errorf("cluster options %v", got)
	}
	fwRefused(t, srv, "PUT", cl, "delete=bogus", 400, "delete", "no such option 'bogus'")
	fwRefused(t, srv, "PUT", cl, "ipfilter=1", 400, "ipfilter", "property is not defined in schema")
	fwRefused(t, srv, "PUT", cl, "enable=yes", 400, "enable", "type check ('integer') failed")
	fwRefused(t, srv, "PUT", cl, "policy_in=allow", 400, "policy_in", "does not have a value in the enumeration")
	fwRefused(t, srv, "PUT", cl, "log_ratelimit=enable%3D1%2Crate%3D5%2Ffortnight", 400, "log_ratelimit", "invalid format - rate")

	const vm = "/nodes/pve1/qemu/9000/firewall/options"
	fwOK(t, srv, "PUT", vm, "enable=1&ipfilter=1&policy_in=DROP&log_level_in=info&dhcp=0")
	got, _ = fwOK(t, srv, "GET", vm, "").(map[string]any)
	opts = map[string]string{"enable": "1", "ipfilter": "1", "policy_in": "DROP", "log_level_in": "info", "dhcp": "0"}
	want = map[string]any{"enable": 1.0, "ipfilter": 1.0, "policy_in": "DROP", "log_level_in": "info", "dhcp": 0.0,
		"digest": fwPVEDigest(opts)}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("VM options %v, want %v", got, want)
	}
	fwOK(t, srv, "PUT", vm, "delete=ipfilter")
	if got, _ := fwOK(t, srv, "GET", vm, "").(map[string]any); got["ipfilter"] != nil || got["enable"] != 1.0 {
		t.Errorf("VM options after the delete: %v", got)
	}
	fwRefused(t, srv, "PUT", vm, "policy_forward=DROP", 400, "policy_forward", "property is not defined in schema")
}

// TestFirewallDigests shows every write that takes a digest refusing a
// stale one, and the creates PVE does not check.
func TestFirewallDigests(t *testing.T) {
	_, srv := newServer(t, pveemu.Config{Seed: 1})
	const stale = "0123456789abcdef0123456789abcdef01234567"
	vm := "/nodes/pve1/qemu/9000/firewall"
	fwOK(t, srv, "POST", "/cluster/firewall/groups", "group=web")
	for _, base := range []string{"/cluster/firewall", vm} {
		fwOK(t, srv, "POST", base+"/rules", "type=in&action=ACCEPT")
		fwOK(t, srv, "POST", base+"/ipset", "name=admins")
		fwOK(t, srv, "POST", base+"/ipset/admins", "cidr=10.0.0.1")
	}
	for _, w := range []struct{ method, path, form string }{
		{"PUT", "/cluster/firewall/options", "enable=1&digest=" + stale},
		{"PUT", vm + "/options", "enable=1&digest=" + stale},
		{"PUT", "/cluster/firewall/rules/0", "comment=x&digest=" + stale},
		{"PUT", vm + "/rules/0", "moveto=1&digest=" + stale},
		{"DELETE", "/cluster/firewall/rules/0?digest=" + stale, ""},
		{"DELETE", vm + "/rules/0?digest=" + stale, ""},
		{"PUT", "/cluster/firewall/ipset/admins/10.0.0.1", "comment=x&digest=" + stale},
		{"DELETE", vm + "/ipset/admins/10.0.0.1?digest=" + stale, ""},
		{"POST", "/cluster/firewall/groups", "group=web2&rename=web&digest=" + stale},
		{"POST", vm + "/ipset", "name=ops&rename=admins&digest=" + stale},
	} {
		fwRefused(t, srv, w.method, w.path, w.form, 500, "", fwModified)
	}
	// Nothing changed.
	if rules, _ := fwList(t, srv, "/cluster/firewall/rules"); len(rules) != 1 || rules[0]["comment"] != nil {
		t.Errorf("cluster rules %v", rules)
	}
	if groups, _ := fwList(t, srv, "/cluster/firewall/groups"); len(groups) != 1 || groups[0]["group"] != "web" {
		t.Errorf("groups %v", groups)
	}

	// The current digest passes.
	_, d := fwList(t, srv, vm+"/rules")
	fwOK(t, srv, "PUT", vm+"/rules/0", "comment=x&digest="+d)
	fwRefused(t, srv, "PUT", vm+"/rules/0", "comment=y&digest="+d, 500, "", fwModified)
	opts, _ := fwOK(t, srv, "GET", "/cluster/firewall/options", "").(map[string]any)
	fwOK(t, srv, "PUT", "/cluster/firewall/options", fmt.Sprintf("enable=1&digest=%s", opts["digest"]))

	// PVE checks no digest on creating a rule, group, IPSet or entry.
	fwOK(t, srv, "POST", vm+"/rules", "type=in&action=DROP&digest="+stale)
	fwOK(t, srv, "POST", "/cluster/firewall/groups", "group=db&digest="+stale)
	fwOK(t, srv, "POST", vm+"/ipset", "name=ops&digest="+stale)
}

func TestVMFirewallFollowsTheVM(t *testing.T) {
	// Tasks that take no time finish by the next request.
	_, srv := newServer(t, pveemu.Config{Seed: 1, Durations: map[string]time.Duration{
		pveemu.TaskClone: 0, pveemu.TaskDestroy: 0}})
	const fw = "/nodes/pve1/qemu/100/firewall"
	for _, path := range []string{"/options", "/rules", "/ipset", "/rules/0", "/ipset/xy"} {
		fwRefused(t, srv, "GET", fw+path, "", 500, "", "Configuration file 'nodes/pve1/qemu-server/100.conf' does not exist\n")
	}
	fwRefused(t, srv, "PUT", fw+"/options", "enable=1", 500, "", "does not exist")
	fwRefused(t, srv, "POST", fw+"/rules", "type=in&action=ACCEPT", 500, "", "does not exist")
	fwRefused(t, srv, "GET", "/nodes/pve2/qemu/9000/firewall/rules", "", 500, "", "no such cluster node 'pve2'")

	fwOK(t, srv, "POST", "/nodes/pve1/qemu/9000/clone", "newid=100&name=a")
	fwOK(t, srv, "PUT", fw+"/options", "enable=1")
	fwOK(t, srv, "POST", fw+"/ipset", "name=ipfilter-net0")
	fwOK(t, srv, "POST", fw+"/ipset/ipfilter-net0", "cidr=10.0.0.5")
	fwOK(t, srv, "POST", fw+"/rules", "type=in&action=ACCEPT&source=%2Bipfilter-net0")
	if rules, _ := fwList(t, srv, fw+"/rules"); len(rules) != 1 {
		t.Fatalf("rules %v", rules)
	}

	fwOK(t, srv, "DELETE", "/nodes/pve1/qemu/100", "")
	fwRefused(t, srv, "GET", fw+"/rules", "", 500, "", "does not exist")

	// A new VM 100 starts with an empty firewall.
	fwOK(t, srv, "POST", "/nodes/pve1/qemu/9000/clone", "newid=100&name=b")
	if rules, _ := fwList(t, srv, fw+"/rules"); len(rules) != 0 {
		t.Errorf("rules of the new VM: %v", rules)
	}
	if sets, _ := fwList(t, srv, fw+"/ipset"); len(sets) != 0 {
		t.Errorf("IPSets of the new VM: %v", sets)
	}
	if opts, _ := fwOK(t, srv, "GET", fw+"/options", "").(map[string]any); len(opts) != 1 {
		t.Errorf("options of the new VM: %v", opts)
	}
}
