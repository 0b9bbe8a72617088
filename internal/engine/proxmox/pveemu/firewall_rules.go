package pveemu

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
)

// The rule endpoints of the three rule lists (the cluster's, a security
// group's, a VM's): list, read, create, update and move, delete. Rules are
// verified on the way in by firewall_rules_verify.go.

// fwRuleList is one list of rules and what its rules are verified
// against.
type fwRuleList struct {
	env   string // PVE's rule_env: cluster, group or vm
	rules *[]fwRule
	// local is the VM's file, whose IPSets "+name" may name besides the
	// cluster's.
	local *fwFile
}

type fwRuleListFunc func(e *Emulator, c *call) (fwRuleList, error)

func clusterRuleList(e *Emulator, _ *call) (fwRuleList, error) {
	return fwRuleList{env: "cluster", rules: &e.clusterFW().rules}, nil
}

func groupRuleList(e *Emulator, c *call) (fwRuleList, error) {
	g, ok := e.clusterFW().groups[c.values["group"]]
	if !ok {
		return fwRuleList{}, fail("no such security group '%s'", c.values["group"])
	}
	return fwRuleList{env: "group", rules: &g.rules}, nil
}

func vmRuleList(e *Emulator, c *call) (fwRuleList, error) {
	f, err := e.vmFW(c)
	if err != nil {
		return fwRuleList{}, err
	}
	return fwRuleList{env: "vm", rules: &f.rules, local: f}, nil
}

func fwRulesDigest(rules []fwRule) string {
	list := make([]map[string]string, len(rules))
	for i, r := range rules {
		list[i] = r
	}
	return fwListDigest(list)
}

func (r fwRule) json(pos int, digest string) map[string]any {
	out := map[string]any{"pos": pos, "digest": digest}
	for k, v := range r {
		if k == "enable" || k == "ipversion" {
			n, _ := strconv.Atoi(v)
			out[k] = n
			continue
		}
		out[k] = v
	}
	return out
}

func getFWRules(list fwRuleListFunc) fwHandler {
	return func(e *Emulator, c *call) (any, error) {
		l, err := list(e, c)
		if err != nil {
			return nil, err
		}
		d := fwRulesDigest(*l.rules)
		out := make([]map[string]any, 0, len(*l.rules))
		for i, r := range *l.rules {
			out = append(out, r.json(i, d))
		}
		return out, nil
	}
}

func getFWRule(list fwRuleListFunc) fwHandler {
	return func(e *Emulator, c *call) (any, error) {
		l, err := list(e, c)
		if err != nil {
			return nil, err
		}
		pos, _ := strconv.Atoi(c.values["pos"])
		if pos >= len(*l.rules) {
			return nil, fail("no rule at position %d", pos)
		}
		return (*l.rules)[pos].json(pos, fwRulesDigest(*l.rules)), nil
	}
}

func postFWRule(list fwRuleListFunc) fwHandler {
	return func(e *Emulator, c *call) (any, error) {
		l, err := list(e, c)
		if err != nil {
			return nil, err
		}
		r := fwRule{}
		fwCopyRuleData(r, c.values)
		if err := e.verifyFWRule(r, l); err != nil {
			return nil, err
		}
		if _, ok := c.values["enable"]; !ok {
			r["enable"] = "0" // a rule created without enable is disabled
		}
		// pos is accepted but ignored: PVE unshifts.
		*l.rules = slices.Insert(*l.rules, 0, r.stored())
		return nil, nil
	}
}

func putFWRule(list fwRuleListFunc) fwHandler {
	return func(e *Emulator, c *call) (any, error) {
		l, err := list(e, c)
		if err != nil {
			return nil, err
		}
		rules := *l.rules
		if err := fwAssertDigest(fwRulesDigest(rules), c); err != nil {
			return nil, err
		}
		pos, _ := strconv.Atoi(c.values["pos"])
		if pos >= len(rules) {
			return nil, fail("no rule at position %d", pos)
		}
		if s, ok := c.values["moveto"]; ok {
			if moveto, _ := strconv.Atoi(s); moveto != pos {
				// Other arguments are ignored.
				*l.rules = fwMoveRule(rules, pos, moveto)
				return nil, nil
			}
		}
		r := maps.Clone(rules[pos])
		fwCopyRuleData(r, c.values)
		if del := c.values["delete"]; del != "" {
			for _, k := range splitList(del) {
				if !fwRuleProperties[k] {
					return nil, paramError(map[string]string{"delete": fmt.Sprintf("no such property ('%s')", k)})
				}
				if k == "type" || k == "action" {
					return nil, paramError(map[string]string{"delete": fmt.Sprintf("unable to delete required property '%s'", k)})
				}
				delete(r, k)
			}
		}
		if err := e.verifyFWRule(r, l); err != nil {
			return nil, err
		}
		rules[pos] = r.stored()
		return nil, nil
	}
}

// fwMoveRule is update_rule's move: the rule goes before the one at
// moveto, or to the end.
func fwMoveRule(rules []fwRule, pos, moveto int) []fwRule {
	rule := rules[pos]
	out := make([]fwRule, 0, len(rules))
	for i, r := range rules {
		if i == pos {
			continue
		}
		if i == moveto {
			out = append(out, rule)
		}
		out = append(out, r)
	}
	if moveto >= len(rules) {
		out = append(out, rule)
	}
	return out
}

func deleteFWRule(list fwRuleListFunc) fwHandler {
	return func(e *Emulator, c *call) (any, error) {
		l, err := list(e, c)
		if err != nil {
			return nil, err
		}
		if err := fwAssertDigest(fwRulesDigest(*l.rules), c); err != nil {
			return nil, err
		}
		pos, _ := strconv.Atoi(c.values["pos"])
		if pos >= len(*l.rules) {
			return nil, fail("no rule at position %d", pos)
		}
		*l.rules = slices.Delete(*l.rules, pos, pos+1)
		return nil, nil
	}
}

// fwRuleProperties are the rule properties a request may set or delete.
var fwRuleProperties = map[string]bool{"pos": true, "digest": true, "type": true, "action": true,
	"macro": true, "iface": true, "source": true, "dest": true, "proto": true, "enable": true,
	"log": true, "sport": true, "dport": true, "comment": true, "icmp-type": true}

// fwCopyRuleData is copy_rule_data: a value of "" or "-" removes the
// property. pos and digest are request metadata PVE never writes.
func fwCopyRuleData(r fwRule, values map[string]string) {
	for k, v := range values {
		if !fwRuleProperties[k] || k == "pos" || k == "digest" {
			continue
		}
		if v == "" || v == "-" {
			delete(r, k)
		} else {
			r[k] = v
		}
	}
}

// stored is the rule as PVE's parser reads it back after writing it:
// enable as 0 or 1, a rule naming a group keeps no addresses or ports, a
// blank comment is dropped.
func (r fwRule) stored() fwRule {
	out := fwRule{"type": r["type"], "action": r["action"], "enable": "1"}
	if en, ok := r["enable"]; ok {
		if n, _ := strconv.Atoi(en); n == 0 {
			out["enable"] = "0"
		}
	}
	keep := []string{"iface"}
	if r["type"] != "group" {
		keep = append(keep, "macro", "source", "dest", "proto", "dport", "sport", "log", "icmp-type", "ipversion")
	}
	for _, k := range keep {
		if v := r[k]; perlTrue(v) {
			out[k] = v
		}
	}
	if c := fwComment(r["comment"]); c != "" {
		out["comment"] = c
	}
	return out
}
