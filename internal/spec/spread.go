package spec

import (
	"slices"
	"strings"
)

// spread checks anti-affinity: the members of a spread group share a site,
// the site has a node for each, and no two are pinned to one node.
func (v *validator) spread() {
	groups := map[string][]*Instance{}
	for _, name := range SortedNames(v.s.Instances) {
		if in := v.s.Instances[name]; in.Spread != "" {
			groups[in.Spread] = append(groups[in.Spread], in)
		}
	}
	for _, g := range SortedNames(groups) {
		members := groups[g]
		first := members[0]
		site := v.s.SiteOf(first)
		pinned := map[string]string{}
		for _, in := range members {
			if s := v.s.SiteOf(in); s != site {
				v.diags.Errorf(in.FieldPos("spread"), "instance %q: spread %q has members at sites %q and %q; a spread group lives at one site", in.Name, g, site, s)
				return
			}
			if in.Node == "" {
				continue
			}
			if other, dup := pinned[in.Node]; dup {
				v.diags.Errorf(in.FieldPos("node"), "instance %q: spread %q: node %q already holds member %q", in.Name, g, in.Node, other)
			}
			pinned[in.Node] = in.Name
		}
		if st := v.s.Sites[site]; st != nil && len(members) > len(st.Nodes) {
			names := make([]string, len(members))
			for i, in := range members {
				names[i] = in.Name
			}
			slices.Sort(names)
			v.diags.Errorf(first.FieldPos("spread"), "spread %q has %d members (%s) but site %q has %d nodes; each member needs its own node", g, len(members), strings.Join(names, ", "), site, len(st.Nodes))
		}
	}
}
