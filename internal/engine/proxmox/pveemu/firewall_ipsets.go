package pveemu

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
)

// The IPSet endpoints of the cluster's file and of a VM's: the sets, and
// the entries of a set.

type fwFileFunc func(e *Emulator, c *call) (*fwFile, error)

func fwIPSetList(f *fwFile) []map[string]string {
	out := []map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(f.ipsets)) {
		m := map[string]string{"name": name}
		if s := f.ipsets[name]; s.comment != "" {
			m["comment"] = s.comment
		}
		out = append(out, m)
	}
	return out
}

func (s *fwIPSet) list() []map[string]string {
	out := make([]map[string]string, 0, len(s.entries))
	for _, en := range s.entries {
		m := map[string]string{"cidr": en.cidr}
		if en.nomatch {
			m["nomatch"] = "1"
		}
		if en.comment != "" {
			m["comment"] = en.comment
		}
		out = append(out, m)
	}
	return out
}

func fwEntriesJSON(s *fwIPSet) []map[string]any {
	out := fwListJSON(s.list())
	for _, o := range out {
		if _, ok := o["nomatch"]; ok {
			o["nomatch"] = 1
		}
	}
	return out
}

// onIPSet makes a handler that works on the IPset the path names, in
// the firewall file file finds.
func onIPSet(file fwFileFunc, do func(c *call, s *fwIPSet) (any, error)) fwHandler {
	return func(e *Emulator, c *call) (any, error) {
		f, err := file(e, c)
		if err != nil {
			return nil, err
		}
		s, err := fwLookupIPSet(f, c.values["name"])
		if err != nil {
			return nil, err
		}
		return do(c, s)
	}
}

func fwLookupIPSet(f *fwFile, name string) (*fwIPSet, error) {
	s, ok := f.ipsets[name]
	if !ok {
		return nil, fail("no such IPSet '%s'", name)
	}
	return s, nil
}

func getFWIPSets(file fwFileFunc) fwHandler {
	return func(e *Emulator, c *call) (any, error) {
		f, err := file(e, c)
		if err != nil {
			return nil, err
		}
		return fwListJSON(fwIPSetList(f)), nil
	}
}

func postFWIPSet(file fwFileFunc) fwHandler {
	return func(e *Emulator, c *call) (any, error) {
		f, err := file(e, c)
		if err != nil {
			return nil, err
		}
		name, rename := c.values["name"], c.values["rename"]
		comment, hasComment := c.values["comment"]
		if rename == "" {
			if _, ok := f.ipsets[name]; ok {
				return nil, paramError(map[string]string{"name": fmt.Sprintf("IPSet '%s' already exists", name)})
			}
			if _, ok := f.ipsets[strings.ToLower(name)]; ok {
				return nil, nil // as for groups: the existing set stays
			}
			f.ipsets[strings.ToLower(name)] = &fwIPSet{comment: fwComment(comment)}
			return nil, nil
		}
		if err := fwAssertDigest(fwListDigest(fwIPSetList(f)), c); err != nil {
			return nil, err
		}
		s, ok := f.ipsets[rename]
		if !ok {
			return nil, paramError(map[string]string{"name": fmt.Sprintf("IPSet '%s' does not exist", rename)})
		}
		if _, taken := f.ipsets[name]; taken && name != rename {
			return nil, paramError(map[string]string{"name": fmt.Sprintf("IPSet '%s' does already exist", name)})
		}
		if hasComment {
			s.comment = fwComment(comment)
		}
		delete(f.ipsets, rename)
		f.ipsets[strings.ToLower(name)] = s
		return nil, nil
	}
}

func deleteFWIPSet(file fwFileFunc) fwHandler {
	return func(e *Emulator, c *call) (any, error) {
		f, err := file(e, c)
		if err != nil {
			return nil, err
		}
		name := c.values["name"]
		s, err := fwLookupIPSet(f, name)
		if err != nil {
			return nil, err
		}
		if force, _ := parseBool(c.values["force"]); len(s.entries) > 0 && !force {
			return nil, fail("IPSet '%s' is not empty", name)
		}
		delete(f.ipsets, name)
		return nil, nil
	}
}

func getFWEntries(file fwFileFunc) fwHandler {
	return onIPSet(file, func(c *call, s *fwIPSet) (any, error) {
		return fwEntriesJSON(s), nil
	})
}

func postFWEntry(file fwFileFunc) fwHandler {
	return onIPSet(file, func(c *call, s *fwIPSet) (any, error) {
		cidr := c.values["cidr"]
		if m := fwAliasRe.FindStringSubmatch(cidr); m != nil {
			return nil, fail("no such alias '%s'", strings.TrimPrefix(cidr, m[1])) // aliases are not emulated
		}
		cidr, _ = fwCleanCIDR(cidr) // the format is checked already
		for _, en := range s.entries {
			if en.cidr == cidr {
				return nil, paramError(map[string]string{"cidr": fmt.Sprintf("address '%s' already exists", cidr)})
			}
		}
		if fwZeroPrefixRe.MatchString(cidr) {
			return nil, paramError(map[string]string{"cidr": "a zero prefix is not allowed in ipset entries"})
		}
		nomatch, _ := parseBool(c.values["nomatch"])
		s.entries = append(s.entries, fwEntry{cidr: cidr, nomatch: nomatch, comment: fwComment(c.values["comment"])})
		slices.SortFunc(s.entries, func(a, b fwEntry) int { return strings.Compare(a.cidr, b.cidr) })
		return nil, nil
	})
}

var fwZeroPrefixRe = regexp.MustCompile(`/0+$`)

func getFWEntry(file fwFileFunc) fwHandler {
	return onIPSet(file, func(c *call, s *fwIPSet) (any, error) {
		for _, o := range fwEntriesJSON(s) {
			if o["cidr"] == c.values["cidr"] {
				return o, nil
			}
		}
		return nil, paramError(map[string]string{"cidr": "no such IP/Network"})
	})
}

func putFWEntry(file fwFileFunc) fwHandler {
	return onIPSet(file, func(c *call, s *fwIPSet) (any, error) {
		if err := fwAssertDigest(fwListDigest(s.list()), c); err != nil {
			return nil, err
		}
		for i, en := range s.entries {
			if en.cidr == c.values["cidr"] {
				// Both are replaced: one not given is removed.
				s.entries[i].nomatch, _ = parseBool(c.values["nomatch"])
				s.entries[i].comment = fwComment(c.values["comment"])
				return nil, nil
			}
		}
		return nil, paramError(map[string]string{"cidr": "no such IP/Network"})
	})
}

// deleteFWEntry removes an entry; like PVE it succeeds when there is no
// such entry.
func deleteFWEntry(file fwFileFunc) fwHandler {
	return onIPSet(file, func(c *call, s *fwIPSet) (any, error) {
		if err := fwAssertDigest(fwListDigest(s.list()), c); err != nil {
			return nil, err
		}
		s.entries = slices.DeleteFunc(s.entries, func(en fwEntry) bool { return en.cidr == c.values["cidr"] })
		return nil, nil
	})
}
