package proxmox

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/engine/proxmox/pve"
	"github.com/holdfast/holdfast/internal/spec"
)

// The compiled flows become the PVE firewall:
//
//   - per zone, a cluster IPset holding the zone's subnet, and one for the
//     internet (everything but the cloud's subnets);
//   - per zone, a cluster security group with the zone's rules: IN rules
//     for the flows that end in the zone (or at one of its instances) and
//     OUT rules for the flows that start there, sources and destinations
//     given as IPsets (zones, the internet) or addresses (instances);
//   - per guest, the firewall on with both policies DROP and ipfilter on
//     (a guest cannot send from an address that is not its own), each NIC
//     bound to its zone's group.
//
// The PVE firewall is stateful, like Holdfast's flows: answers to an
// allowed connection pass. Traffic within a zone is allowed, as on the
// local engine, where a zone is one bridge, except in a zone that isolates
// its instances: its group accepts only the zone's gateway (the host or
// router) and the flows within the zone (pinholes from the zone, the
// overlay's underlay), each an IN rule on the receiving guest and an OUT
// rule on the sending one, as every flow is.

// fwPlan is the site's firewall as it must be.
type fwPlan struct {
	ipsets map[string][]pve.IPSetEntry // name -> entries
	groups map[string][]pve.Rule       // name -> rules in order
	zoneOf map[string]string           // group or ipset name -> zone ("" for the internet set)
}

// firewallPlan derives the site's groups and IPsets from the flows.
func (e *Engine) firewallPlan(s *site) fwPlan {
	p := fwPlan{ipsets: map[string][]pve.IPSetEntry{}, groups: map[string][]pve.Rule{}, zoneOf: map[string]string{}}
	carried := map[string]bool{}
	// PVE refuses a zero prefix in an IPset: the whole IPv4 space is two
	// halves.
	internet := []pve.IPSetEntry{{CIDR: "0.0.0.0/1"}, {CIDR: "128.0.0.0/1"}}
	for _, z := range e.desired.Zones {
		if !z.Present || z.CIDR == "" {
			continue
		}
		internet = append(internet, pve.IPSetEntry{CIDR: z.CIDR, NoMatch: true})
		if z.VLAN == nil || !slices.Contains(z.Sites, s.name) {
			continue // overlay zones carry no guest NICs
		}
		carried[z.Name] = true
		name := s.fwName(z.Name)
		p.ipsets[name] = []pve.IPSetEntry{{CIDR: z.CIDR}}
		p.zoneOf[name] = z.Name
		// Within the zone everything passes, as on one bridge; unless the
		// zone isolates its instances: then only its gateway (the host or
		// router) and they reach each other, and the flows within it.
		p.groups[name] = []pve.Rule{
			{Type: "in", Action: "ACCEPT", Source: "+" + name, Enable: true, Comment: "within " + z.Name},
			{Type: "out", Action: "ACCEPT", Dest: "+" + name, Enable: true, Comment: "within " + z.Name},
		}
		if z.IsolateInstances {
			p.groups[name] = []pve.Rule{
				{Type: "in", Action: "ACCEPT", Source: z.Gateway, Enable: true, Comment: "from the gateway of " + z.Name},
				{Type: "out", Action: "ACCEPT", Dest: z.Gateway, Enable: true, Comment: "to the gateway of " + z.Name},
			}
		}
	}
	p.ipsets[s.internetSet()] = internet
	p.zoneOf[s.internetSet()] = ""
	for _, f := range e.desired.Flows {
		if f.Kind == compile.KindOverlay {
			continue
		}
		src, srcZone := e.endpoint(s, f.From, f.FromCIDR)
		dst, dstZone := e.endpoint(s, f.To, f.ToCIDR)
		if src == "" || dst == "" {
			continue
		}
		r := pve.Rule{Action: "ACCEPT", Source: src, Dest: dst, Enable: true, Comment: f.Kind + " " + f.From + " -> " + f.To}
		if f.Proto != "" && f.Proto != "any" {
			r.Proto = f.Proto
		}
		if len(f.Ports) > 0 {
			ports := make([]string, len(f.Ports))
			for i, port := range f.Ports {
				ports[i] = strings.ReplaceAll(port, "-", ":") // PVE writes ranges as 8000:8100
			}
			r.DPort = strings.Join(ports, ",")
		}
		if carried[dstZone] {
			in := r
			in.Type = "in"
			g := s.fwName(dstZone)
			p.groups[g] = append(p.groups[g], in)
		}
		if carried[srcZone] {
			out := r
			out.Type = "out"
			g := s.fwName(srcZone)
			p.groups[g] = append(p.groups[g], out)
		}
	}
	return p
}

// endpoint gives a flow end as a firewall source or destination, and the
// zone it lies in ("" for the internet): a zone's IPset, an instance's
// address, or the internet's IPset.
func (e *Engine) endpoint(s *site, name, cidr string) (ref, zone string) {
	if name == spec.Internet {
		return "+" + s.internetSet(), ""
	}
	if z, ok := e.zones[name]; ok {
		if z.VLAN != nil && z.Present && slices.Contains(z.Sites, s.name) {
			return "+" + s.fwName(z.Name), z.Name
		}
		// An overlay zone, or one of another site: its subnet, as routed.
		return z.CIDR, ""
	}
	in, ok := e.instances[name]
	if !ok {
		return "", ""
	}
	addr := strings.TrimSuffix(cidr, "/32")
	if _, err := netip.ParseAddr(addr); err != nil {
		addr = in.IP
	}
	for _, nic := range in.NICs {
		if nic.IP == addr {
			return addr, nic.Zone
		}
	}
	return addr, in.Zone
}

func (e *Engine) ensureFirewall(ctx context.Context, r compile.Resource) error {
	s, err := e.site(r.Site)
	if err != nil {
		return err
	}
	// The datacenter firewall must be on for any guest firewall to work;
	// on PVE that also turns every node's host firewall on with the
	// datacenter's input policy, so each node's SSH and API are kept open
	// first.
	for _, node := range s.nodes {
		if err := e.syncNodeRules(ctx, s.api, node); err != nil {
			return fmt.Errorf("node %s: %w", node, err)
		}
	}
	opts, err := s.api.FirewallOptions(ctx, pve.ClusterScope())
	if err != nil {
		return err
	}
	if opts.Enable == nil || !*opts.Enable {
		on := true
		if err := s.api.SetFirewallOptions(ctx, pve.ClusterScope(), pve.FirewallOptions{Enable: &on, Digest: opts.Digest}); err != nil {
			return fmt.Errorf("datacenter firewall: %w", err)
		}
	}
	p := e.firewallPlan(s)
	if err := e.syncIPSets(ctx, s, p); err != nil {
		return err
	}
	return e.syncGroups(ctx, s, p)
}

func (e *Engine) syncIPSets(ctx context.Context, s *site, p fwPlan) error {
	sets, err := s.api.IPSets(ctx, pve.ClusterScope())
	if err != nil {
		return err
	}
	have := map[string]string{}
	for _, set := range sets {
		have[set.Name] = set.Comment
	}
	for _, name := range slices.Sorted(maps.Keys(p.ipsets)) {
		if err := e.claim("IPset", name, have, p.zoneOf[name], func(comment string) error {
			return s.api.CreateIPSet(ctx, pve.ClusterScope(), name, comment)
		}); err != nil {
			return err
		}
		if err := syncEntries(ctx, s.api, pve.ClusterScope(), name, p.ipsets[name]); err != nil {
			return fmt.Errorf("IPset %s: %w", name, err)
		}
	}
	return nil
}

// claim makes an object the plan needs exist as the cloud's: created,
// with the cloud's mark, when missing (have: name -> comment), refused
// when it is someone else's.
func (e *Engine) claim(what, name string, have map[string]string, zone string, create func(comment string) error) error {
	comment, ok := have[name]
	switch {
	case ok && !e.ownedComment(comment):
		return fmt.Errorf("%s %s exists and is not this cloud's (comment %q)", what, name, comment)
	case !ok:
		if err := create(e.owner() + " " + label(zone)); err != nil && !pve.IsExists(err) {
			return fmt.Errorf("%s %s: %w", what, name, err)
		}
	}
	return nil
}

func label(zone string) string {
	if zone == "" {
		return "internet"
	}
	return "zone " + zone
}

// syncEntries makes an IPset hold exactly want.
func syncEntries(ctx context.Context, api *pve.Client, scope pve.Scope, name string, want []pve.IPSetEntry) error {
	have, digest, err := api.IPSetEntries(ctx, scope, name)
	if err != nil {
		return err
	}
	wanted := map[string]bool{}
	for _, w := range want {
		wanted[entryKey(w)] = true
	}
	present := map[string]bool{}
	for _, h := range have {
		if wanted[entryKey(h)] {
			present[entryKey(h)] = true
			continue
		}
		if err := api.DeleteIPSetEntry(ctx, scope, name, h.CIDR, digest); err != nil && !pve.IsNotFound(err) {
			return err
		}
		// Each deletion changes the set's digest: read it again.
		if _, digest, err = api.IPSetEntries(ctx, scope, name); err != nil {
			return err
		}
	}
	for _, w := range want {
		if present[entryKey(w)] {
			continue
		}
		if err := api.AddIPSetEntry(ctx, scope, name, w); err != nil && !pve.IsExists(err) {
			return err
		}
	}
	return nil
}

func entryKey(e pve.IPSetEntry) string {
	return fmt.Sprintf("%s/%t", canonicalCIDR(e.CIDR), e.NoMatch)
}

// canonicalCIDR writes an address as PVE does: a /32 is a bare address.
func canonicalCIDR(c string) string {
	if p, err := netip.ParsePrefix(c); err == nil {
		if p.Bits() == 32 {
			return p.Addr().String()
		}
		return p.Masked().String()
	}
	return c
}

func (e *Engine) syncGroups(ctx context.Context, s *site, p fwPlan) error {
	groups, err := s.api.Groups(ctx)
	if err != nil {
		return err
	}
	have := map[string]string{}
	for _, g := range groups {
		have[g.Group] = g.Comment
	}
	for _, name := range slices.Sorted(maps.Keys(p.groups)) {
		if err := e.claim("security group", name, have, p.zoneOf[name], func(comment string) error {
			return s.api.CreateGroup(ctx, name, comment)
		}); err != nil {
			return err
		}
		if err := syncRules(ctx, s.api, pve.ClusterScope(), name, p.groups[name]); err != nil {
			return fmt.Errorf("security group %s: %w", name, err)
		}
	}
	// Groups and IPsets of zones the site no longer carries. PVE deletes
	// an empty group even while guests' rules still name it; those guests
	// lose the zone in this same apply (they depend on the firewall), and
	// a rule naming a missing group matches nothing meanwhile.
	for _, g := range groups {
		if _, want := p.groups[g.Group]; want || !strings.HasPrefix(g.Comment, e.owner()+" zone ") {
			continue
		}
		if err := syncRules(ctx, s.api, pve.ClusterScope(), g.Group, nil); err != nil {
			return err
		}
		if err := s.api.DeleteGroup(ctx, g.Group); err != nil && !pve.IsNotFound(err) {
			return fmt.Errorf("security group %s: %w", g.Group, err)
		}
	}
	sets, err := s.api.IPSets(ctx, pve.ClusterScope())
	if err != nil {
		return err
	}
	for _, set := range sets {
		if _, want := p.ipsets[set.Name]; want || !strings.HasPrefix(set.Comment, e.owner()+" zone ") {
			continue
		}
		if err := s.api.DeleteIPSet(ctx, pve.ClusterScope(), set.Name); err != nil && !pve.IsNotFound(err) {
			return fmt.Errorf("IPset %s: %w", set.Name, err)
		}
	}
	return nil
}

// syncRules makes a rule list (a security group's, or a guest's) exactly
// want, one change at a time against the list's current digest, so that
// a concurrent edit is read before anything is overwritten.
func syncRules(ctx context.Context, api *pve.Client, scope pve.Scope, group string, want []pve.Rule) error {
	for range 3*len(want) + 64 {
		have, digest, err := api.Rules(ctx, scope, group)
		if err != nil {
			return err
		}
		i := 0
		for i < len(have) && i < len(want) && sameRule(have[i], want[i]) {
			i++
		}
		switch {
		case i == len(have) && i == len(want):
			return nil
		case i < len(have) && i < len(want):
			r := want[i]
			r.Pos = i
			err = api.UpdateRule(ctx, scope, group, r, digest)
		case i < len(want):
			r := want[i]
			r.Pos = i
			err = api.AddRule(ctx, scope, group, r, digest)
		default:
			err = api.DeleteRule(ctx, scope, group, len(have)-1, digest)
		}
		if err != nil && !pve.IsDigestMismatch(err) {
			return err
		}
	}
	return fmt.Errorf("rules keep changing under Holdfast: %w", errConflict)
}

func sameRule(a, b pve.Rule) bool {
	return a.Type == b.Type && a.Action == b.Action && canonicalCIDR(a.Source) == canonicalCIDR(b.Source) &&
		canonicalCIDR(a.Dest) == canonicalCIDR(b.Dest) && a.Proto == b.Proto && a.DPort == b.DPort &&
		a.SPort == b.SPort && a.Iface == b.Iface && a.Macro == b.Macro && a.Enable == b.Enable && a.Comment == b.Comment
}

// rulesDrift compares a rule list with want.
func rulesDrift(what string, have, want []pve.Rule) []string {
	if len(have) != len(want) {
		return []string{fmt.Sprintf("%s has %d rules, want %d", what, len(have), len(want))}
	}
	for i := range have {
		if !sameRule(have[i], want[i]) {
			return []string{fmt.Sprintf("%s rule %d is %s, want %s", what, i, ruleText(have[i]), ruleText(want[i]))}
		}
	}
	return nil
}

func ruleText(r pve.Rule) string {
	parts := []string{strings.ToUpper(r.Type), r.Action}
	for _, kv := range [][2]string{{"-source", r.Source}, {"-dest", r.Dest}, {"-p", r.Proto}, {"-dport", r.DPort}, {"-i", r.Iface}} {
		if kv[1] != "" {
			parts = append(parts, kv[0], kv[1])
		}
	}
	if !r.Enable {
		parts = append(parts, "(disabled)")
	}
	return strings.Join(parts, " ")
}

// firewallDrift checks the site's groups and IPsets against the plan.
func (e *Engine) firewallDrift(ctx context.Context, s *site) (exists bool, drift []string, err error) {
	p := e.firewallPlan(s)
	groups, err := s.api.Groups(ctx)
	if err != nil {
		return false, nil, err
	}
	have := map[string]bool{}
	for _, g := range groups {
		if !e.ownedComment(g.Comment) {
			continue
		}
		exists, have[g.Group] = true, true
		if _, want := p.groups[g.Group]; !want {
			drift = append(drift, "security group "+g.Group+" is no longer wanted")
		}
	}
	sets, err := s.api.IPSets(ctx, pve.ClusterScope())
	if err != nil {
		return false, nil, err
	}
	haveSet := map[string]bool{}
	for _, set := range sets {
		if e.ownedComment(set.Comment) {
			exists, haveSet[set.Name] = true, true
		}
	}
	if !exists {
		return false, nil, nil
	}
	opts, err := s.api.FirewallOptions(ctx, pve.ClusterScope())
	if err != nil {
		return true, nil, err
	}
	if opts.Enable == nil || !*opts.Enable {
		drift = append(drift, "the datacenter firewall is off")
	}
	for _, node := range s.nodes {
		rules, _, err := s.api.Rules(ctx, pve.NodeScope(node), "")
		if err != nil {
			return true, nil, fmt.Errorf("node %s: %w", node, err)
		}
		drift = append(drift, e.nodeRulesDrift(node, rules)...)
	}
	for _, name := range slices.Sorted(maps.Keys(p.groups)) {
		if !have[name] {
			drift = append(drift, "security group "+name+" is missing")
			continue
		}
		rules, _, err := s.api.Rules(ctx, pve.ClusterScope(), name)
		if err != nil {
			return true, nil, err
		}
		drift = append(drift, rulesDrift("security group "+name, rules, p.groups[name])...)
	}
	for _, name := range slices.Sorted(maps.Keys(p.ipsets)) {
		if !haveSet[name] {
			drift = append(drift, "IPset "+name+" is missing")
			continue
		}
		entries, _, err := s.api.IPSetEntries(ctx, pve.ClusterScope(), name)
		if err != nil {
			return true, nil, err
		}
		if !sameEntries(entries, p.ipsets[name]) {
			drift = append(drift, "IPset "+name+" holds other addresses")
		}
	}
	return true, drift, nil
}

func sameEntries(a, b []pve.IPSetEntry) bool {
	ka, kb := make([]string, len(a)), make([]string, len(b))
	for i := range a {
		ka[i] = entryKey(a[i])
	}
	for i := range b {
		kb[i] = entryKey(b[i])
	}
	slices.Sort(ka)
	slices.Sort(kb)
	return slices.Equal(ka, kb)
}

func (e *Engine) deleteFirewall(ctx context.Context, r compile.Resource) error {
	s, err := e.site(r.Site)
	if err != nil {
		return err
	}
	groups, err := s.api.Groups(ctx)
	if err != nil {
		return err
	}
	for _, g := range groups {
		if !e.ownedComment(g.Comment) {
			continue
		}
		if err := syncRules(ctx, s.api, pve.ClusterScope(), g.Group, nil); err != nil {
			return fmt.Errorf("security group %s: %w", g.Group, err)
		}
		if err := s.api.DeleteGroup(ctx, g.Group); err != nil && !pve.IsNotFound(err) {
			return fmt.Errorf("security group %s: %w", g.Group, err)
		}
	}
	sets, err := s.api.IPSets(ctx, pve.ClusterScope())
	if err != nil {
		return err
	}
	for _, set := range sets {
		if !e.ownedComment(set.Comment) {
			continue
		}
		if err := s.api.DeleteIPSet(ctx, pve.ClusterScope(), set.Name); err != nil && !pve.IsNotFound(err) {
			return fmt.Errorf("IPset %s: %w", set.Name, err)
		}
	}
	for _, node := range s.nodes {
		if err := e.deleteNodeRules(ctx, s.api, node); err != nil {
			return fmt.Errorf("node %s: %w", node, err)
		}
	}
	return nil
}

// guestFirewallWant is a guest's firewall as it must be.
func (e *Engine) guestFirewallWant(s *site, in *compile.Instance) (pve.FirewallOptions, []pve.Rule, map[string][]pve.IPSetEntry) {
	on := true
	opts := pve.FirewallOptions{Enable: &on, PolicyIn: "DROP", PolicyOut: "DROP", IPFilter: &on}
	var rules []pve.Rule
	sets := map[string][]pve.IPSetEntry{}
	for _, nic := range in.NICs {
		iface := "net" + strconv.Itoa(nic.Index)
		rules = append(rules, pve.Rule{Type: "group", Action: s.fwName(nic.Zone), Iface: iface, Enable: true, Comment: "zone " + nic.Zone})
		sets["ipfilter-"+iface] = []pve.IPSetEntry{{CIDR: nic.IP}}
	}
	return opts, rules, sets
}

// guestFirewall sets a guest's firewall options, rules and ipfilter sets.
func (e *Engine) guestFirewall(ctx context.Context, s *site, in *compile.Instance, node string) error {
	scope := pve.VMScope(node, in.VMID)
	want, rules, sets := e.guestFirewallWant(s, in)
	have, err := s.api.FirewallOptions(ctx, scope)
	if err != nil {
		return err
	}
	if len(optionsDrift(have, want)) > 0 {
		want.Digest = have.Digest
		if err := s.api.SetFirewallOptions(ctx, scope, want); err != nil {
			return err
		}
	}
	existing, err := s.api.IPSets(ctx, scope)
	if err != nil {
		return err
	}
	for _, name := range slices.Sorted(maps.Keys(sets)) {
		if !slices.ContainsFunc(existing, func(set pve.IPSet) bool { return set.Name == name }) {
			if err := s.api.CreateIPSet(ctx, scope, name, e.owner()); err != nil && !pve.IsExists(err) {
				return err
			}
		}
		if err := syncEntries(ctx, s.api, scope, name, sets[name]); err != nil {
			return err
		}
	}
	return syncRules(ctx, s.api, scope, "", rules)
}

func optionsDrift(have, want pve.FirewallOptions) []string {
	var drift []string
	isOn := func(b *bool) bool { return b != nil && *b }
	if !isOn(have.Enable) {
		drift = append(drift, "firewall is off")
	}
	if !strings.EqualFold(have.PolicyIn, want.PolicyIn) {
		drift = append(drift, fmt.Sprintf("policy_in is %q, want %s", have.PolicyIn, want.PolicyIn))
	}
	if !strings.EqualFold(have.PolicyOut, want.PolicyOut) {
		drift = append(drift, fmt.Sprintf("policy_out is %q, want %s", have.PolicyOut, want.PolicyOut))
	}
	if !isOn(have.IPFilter) {
		drift = append(drift, "ipfilter is off")
	}
	return drift
}

// guestFirewallDrift checks a guest's firewall.
func (e *Engine) guestFirewallDrift(ctx context.Context, s *site, in *compile.Instance, node string) ([]string, error) {
	scope := pve.VMScope(node, in.VMID)
	want, rules, sets := e.guestFirewallWant(s, in)
	have, err := s.api.FirewallOptions(ctx, scope)
	if err != nil {
		return nil, err
	}
	drift := optionsDrift(have, want)
	got, _, err := s.api.Rules(ctx, scope, "")
	if err != nil {
		return nil, err
	}
	drift = append(drift, rulesDrift("the guest's firewall", got, rules)...)
	for _, name := range slices.Sorted(maps.Keys(sets)) {
		entries, _, err := s.api.IPSetEntries(ctx, scope, name)
		if pve.IsNotFound(err) {
			drift = append(drift, "IPset "+name+" is missing")
			continue
		}
		if err != nil {
			return nil, err
		}
		if !sameEntries(entries, sets[name]) {
			drift = append(drift, "IPset "+name+" holds other addresses")
		}
	}
	for i := range drift {
		drift[i] = "firewall: " + drift[i]
	}
	return drift, nil
}
