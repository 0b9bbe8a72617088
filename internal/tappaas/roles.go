package tappaas

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/holdfast/holdfast/internal/spec"
)

// fallbackRole holds every instance when the vmtag roles cannot be given
// VMID ranges that fit their instances.
const fallbackRole = "module"

// roles groups the instances into roles by vmtag and gives each role a VMID
// range that holds the VMIDs TAPPaaS already assigned.
func (im *importer) roles(mods []*module) {
	ids := map[string][]int{}
	members := map[string][]*module{}
	for _, m := range mods {
		if m.inst == nil {
			continue
		}
		members[m.role] = append(members[m.role], m)
		if _, ok := ids[m.role]; !ok {
			ids[m.role] = nil // a role whose instances have no VMIDs still needs a range
		}
		if m.inst.VMID != nil {
			ids[m.role] = append(ids[m.role], *m.inst.VMID)
		}
	}
	if len(members) == 0 {
		return
	}
	ranges, why := vmidRanges(ids)
	if why != "" {
		hi := spec.MaxVMID / 1000 // 999999, TAPPaaS's own maximum
		for _, list := range ids {
			for _, id := range list {
				hi = max(hi, id)
			}
		}
		ranges = map[string]spec.Range{fallbackRole: {Lo: spec.MinVMID, Hi: hi}}
		for _, role := range spec.SortedNames(members) {
			for _, m := range members[role] {
				if role != fallbackRole {
					im.report.notMapped(m.src.name, m.roleBy, "role %q not mapped: %s; every instance gets role %q %d-%d", role, why, fallbackRole, spec.MinVMID, hi)
				}
				m.role, m.roleBy = fallbackRole, ""
			}
		}
		all := members
		members = map[string][]*module{}
		for _, role := range spec.SortedNames(all) {
			members[fallbackRole] = append(members[fallbackRole], all[role]...)
		}
	}
	for _, name := range spec.SortedNames(ranges) {
		ms := members[name]
		r := &spec.Role{VMIDs: ranges[name], Description: roleDescription(name)}
		r.Name = name
		r.SetPos(ms[0].roleAt)
		im.spec.Roles[name] = r
		var who []string
		for _, m := range ms {
			m.inst.Role = name
			if m.inst.VMID != nil {
				who = append(who, fmt.Sprintf("%s %d", m.vmname, *m.inst.VMID))
			} else {
				who = append(who, m.vmname+" (no vmid)")
			}
		}
		slices.Sort(who)
		im.report.note(ms[0].src.name, ms[0].roleBy, "role %q gets vmids %s: %s", name, r.VMIDs, strings.Join(who, ", "))
	}
}

func roleDescription(name string) string {
	if name == fallbackRole {
		return "TAPPaaS modules"
	}
	return "TAPPaaS modules tagged " + name
}

// vmidRanges gives each role a range: a role starts at the hundred below
// its lowest VMID and ends where the next role starts; the last ends at
// the thousand above its highest VMID (at least 100 wide), and roles
// without VMIDs follow, 100 each. It returns why when the ranges cannot
// hold every role's VMIDs without overlapping.
func vmidRanges(ids map[string][]int) (map[string]spec.Range, string) {
	type role struct {
		name   string
		lo, hi int // lowest and highest VMID
	}
	var with []role
	var without []string
	for _, name := range spec.SortedNames(ids) {
		if len(ids[name]) == 0 {
			without = append(without, name)
			continue
		}
		with = append(with, role{name, slices.Min(ids[name]), slices.Max(ids[name])})
	}
	start := func(r role) int { return max(spec.MinVMID, r.lo/100*100) }
	slices.SortStableFunc(with, func(a, b role) int { return cmp.Compare(start(a), start(b)) })

	out := map[string]spec.Range{}
	next := spec.MinVMID
	for i, r := range with {
		lo := start(r)
		var hi int
		if i+1 < len(with) {
			hi = start(with[i+1]) - 1
		} else {
			hi = min(spec.MaxVMID, max((r.hi+1+999)/1000*1000-1, lo+99))
		}
		if hi < lo {
			return nil, fmt.Sprintf("roles %s and %s would both start at %d", r.name, with[i+1].name, lo)
		}
		for _, id := range ids[r.name] {
			if id < lo || id > hi {
				return nil, fmt.Sprintf("vmid %d of role %s falls outside its range %d-%d", id, r.name, lo, hi)
			}
		}
		out[r.name] = spec.Range{Lo: lo, Hi: hi}
		next = hi + 1
	}
	for _, name := range without {
		if next+99 > spec.MaxVMID {
			return nil, "no VMIDs left for role " + name
		}
		out[name] = spec.Range{Lo: next, Hi: next + 99}
		next += 100
	}
	return out, ""
}
