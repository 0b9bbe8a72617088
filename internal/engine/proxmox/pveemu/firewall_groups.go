package pveemu

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// The security group endpoints, /cluster/firewall/groups: the groups of
// the cluster's file; their rules are served by firewall_rules.go.

func fwGroupList(f *fwFile) []map[string]string {
	out := []map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(f.groups)) {
		m := map[string]string{"group": name}
		if g := f.groups[name]; g.comment != "" {
			m["comment"] = g.comment
		}
		out = append(out, m)
	}
	return out
}

func fwListJSON(list []map[string]string) []map[string]any {
	d := fwListDigest(list)
	out := make([]map[string]any, 0, len(list))
	for _, m := range list {
		o := map[string]any{"digest": d}
		for k, v := range m {
			o[k] = v
		}
		out = append(out, o)
	}
	return out
}

func (e *Emulator) getFWGroups(*call) (any, error) {
	return fwListJSON(fwGroupList(e.clusterFW())), nil
}

func (e *Emulator) postFWGroup(c *call) (any, error) {
	f := e.clusterFW()
	name, comment := c.values["group"], c.values["comment"]
	_, hasComment := c.values["comment"]
	rename := c.values["rename"]
	if rename == "" {
		if _, ok := f.groups[name]; ok {
			return nil, paramError(map[string]string{"group": fmt.Sprintf("Security group '%s' already exists", name)})
		}
		key := strings.ToLower(name)
		if _, ok := f.groups[key]; ok {
			// PVE writes a second section whose name reads back as the
			// existing group's; the existing group stays as it was.
			return nil, nil
		}
		f.groups[key] = &fwGroup{comment: fwComment(comment)}
		return nil, nil
	}
	if err := fwAssertDigest(fwListDigest(fwGroupList(f)), c); err != nil {
		return nil, err
	}
	old, ok := f.groups[rename]
	if !ok {
		return nil, paramError(map[string]string{"group": fmt.Sprintf("Security group '%s' does not exist", rename)})
	}
	if _, taken := f.groups[name]; taken && name != rename {
		return nil, paramError(map[string]string{"group": fmt.Sprintf("Security group '%s' does already exist", name)})
	}
	if hasComment {
		old.comment = fwComment(comment)
	}
	if name == rename {
		return nil, nil
	}
	// PVE renames the references in every firewall file, then the group.
	for _, file := range append(e.liveVMFirewalls(), f) {
		for _, r := range file.rules {
			if r["type"] == "group" && r["action"] == rename {
				r["action"] = name
			}
		}
	}
	delete(f.groups, rename)
	f.groups[strings.ToLower(name)] = old
	return nil, nil
}

func (e *Emulator) deleteFWGroup(c *call) (any, error) {
	f := e.clusterFW()
	name := c.values["group"]
	g, ok := f.groups[name]
	if !ok {
		return nil, fail("no such security group '%s'", name)
	}
	if len(g.rules) > 0 {
		return nil, fail("Security group '%s' is not empty", name)
	}
	delete(f.groups, name)
	return nil, nil
}

// fwComment is a comment as PVE reads it back: trimmed.
func fwComment(s string) string { return strings.TrimSpace(s) }
