package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// run executes the CLI in-process and returns stdout, stderr and the error.
func run(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	root := newRoot()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), errOut.String(), err
}

const good = `cloud: {name: t, domain: t.example}
sites: {a: {engine: local, nodes: [n1]}}
zones:
  mgmt: {type: management, sub-id: 10, access-to: [internet, srv]}
  srv: {type: service, sub-id: 10, pinhole-allowed-from: [internet]}
roles: {app: {vmids: 2000-2999}}
instances:
  web: {role: app, zone: srv, ingress: [{from: internet, ports: [443]}]}
`

func writeSpec(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "cloud.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestValidateReportsEveryErrorAndFails(t *testing.T) {
	p := writeSpec(t, strings.Replace(good, "roles: {app: {vmids: 2000-2999}}", "roles: {app: {vmids: 2000-2999, colour: red}}", 1)+
		"  db: {role: nope, zone: srv}\n")
	_, stderr, err := run(t, "validate", p)
	if !errors.Is(err, errReported) {
		t.Fatalf("validate of a broken spec: err = %v, want errReported (exit 1)", err)
	}
	// A load error (unknown field) and a dangling reference elsewhere are
	// reported in the same run.
	for _, want := range []string{
		p + `:6:33: role "app": unknown field "colour"`,
		p + `:9:14: instance "db": role "nope" does not exist`,
		"2 error(s), 0 warning(s)",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
}

func TestValidateGoodSpec(t *testing.T) {
	out, _, err := run(t, "validate", writeSpec(t, good))
	if err != nil || !strings.Contains(out, "valid (2 zones, 1 instances, 3 flows)") {
		t.Errorf("err = %v, out = %q", err, out)
	}
}

// The JSON of show and plan is a documented contract (docs/cli.md): these
// fields must stay.
func TestShowJSONContract(t *testing.T) {
	p := writeSpec(t, good)
	for what, fields := range map[string][]string{
		"zones":     {"name", "type", "vlan", "cidr", "gateway", "dhcp_start", "dhcp_end", "access_to"},
		"instances": {"name", "site", "node", "role", "vmid", "zone", "ip", "mac", "fqdn", "groups", "overlay_ip"},
		"flows":     {"from", "to", "proto", "ports", "kind", "enforced_by"},
	} {
		out, _, err := run(t, "show", what, p, "-o", "json")
		if err != nil {
			t.Fatalf("show %s: %v", what, err)
		}
		var rows []map[string]any
		if err := json.Unmarshal([]byte(out), &rows); err != nil || len(rows) == 0 {
			t.Fatalf("show %s -o json: %v (%q)", what, err, out)
		}
		for _, f := range fields {
			if _, ok := rows[0][f]; !ok {
				t.Errorf("show %s -o json: field %q missing from %v", what, f, rows[0])
			}
		}
	}
	out, _, _ := run(t, "show", "instances", p, "-o", "json")
	var inst []struct {
		VMID int    `json:"vmid"`
		IP   string `json:"ip"`
		FQDN string `json:"fqdn"`
	}
	if err := json.Unmarshal([]byte(out), &inst); err != nil {
		t.Fatal(err)
	}
	if inst[0].VMID != 2000 || inst[0].IP != "10.2.10.2" || inst[0].FQDN != "web.srv.t.example" {
		t.Errorf("instance = %+v", inst[0])
	}
}

func TestPlanJSON(t *testing.T) {
	out, _, err := run(t, "plan", writeSpec(t, good), "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var p struct {
		Changes []struct {
			Action, ID string
		}
		Summary struct{ Create int }
	}
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatal(err)
	}
	// The site, two networks, one firewall, one instance: all creates, in
	// dependency order.
	if p.Summary.Create != 5 || p.Changes[0].ID != "site/a" || p.Changes[1].ID != "network/a/mgmt" || p.Changes[4].ID != "instance/a/web" {
		t.Errorf("plan = %+v", p)
	}
}

func TestUnknownOutputFormat(t *testing.T) {
	_, _, err := run(t, "plan", writeSpec(t, good), "-o", "yaml")
	if err == nil || !strings.Contains(err.Error(), `unknown output format "yaml"`) {
		t.Errorf("err = %v", err)
	}
}

func TestSchemaIsJSON(t *testing.T) {
	out, _, err := run(t, "schema")
	var v map[string]any
	if err != nil || json.Unmarshal([]byte(out), &v) != nil || v["$schema"] == nil {
		t.Errorf("schema: err = %v, output not a JSON Schema", err)
	}
}

// show instances -o json carries each instance's overlay groups and
// address, and show flows what enforces each flow: Arvandor's dns is in
// infrastructure at 10.10.10.11, a VM without groups is in the overlay at
// no address, and group flows are the overlay's.
func TestShowOverlayJSON(t *testing.T) {
	state := t.TempDir()
	out, _, err := run(t, "show", "instances", "../../examples/arvandor", "--state-dir", state, "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var inst []struct {
		Name      string   `json:"name"`
		Groups    []string `json:"groups"`
		OverlayIP *string  `json:"overlay_ip"`
	}
	if err := json.Unmarshal([]byte(out), &inst); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, in := range inst {
		if in.OverlayIP == nil {
			t.Errorf("instance %s: no overlay_ip field", in.Name)
		}
		if in.Name == "dns" {
			found = true
			if !slices.Equal(in.Groups, []string{"infrastructure"}) || in.OverlayIP == nil || *in.OverlayIP != "10.10.10.11" {
				t.Errorf("dns: groups %v overlay_ip %v, want [infrastructure] 10.10.10.11", in.Groups, in.OverlayIP)
			}
		}
	}
	if !found {
		t.Fatalf("no dns in %s", out)
	}

	out, _, err = run(t, "show", "flows", "../../examples/arvandor", "--state-dir", state, "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var flows []struct {
		From, To, Kind string
		EnforcedBy     string `json:"enforced_by"`
	}
	if err := json.Unmarshal([]byte(out), &flows); err != nil {
		t.Fatal(err)
	}
	for _, f := range flows {
		if want := map[bool]string{true: "overlay", false: "zone-firewall"}[f.Kind == "overlay"]; f.EnforcedBy != want {
			t.Errorf("flow %s -> %s (%s): enforced_by %q, want %q", f.From, f.To, f.Kind, f.EnforcedBy, want)
		}
	}
	table, _, err := run(t, "show", "flows", "../../examples/arvandor", "--state-dir", state)
	if err != nil || !strings.Contains(table, "ENFORCED-BY") || !strings.Contains(table, "group:projects") {
		t.Errorf("show flows table: %v\n%s", err, table)
	}
}
