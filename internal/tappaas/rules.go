package tappaas

import (
	"fmt"
	"slices"
	"strings"

	"github.com/holdfast/holdfast/internal/spec"
)

// rules maps ingress (pinholes) or egress rules. A rule is never widened: unreadable ports are dropped from it,
// and a rule left without ports is not emitted at all, because a rule
// without ports opens every port.
func (b *builder) rules(f *field, ingress bool) {
	peerKey := "to"
	if ingress {
		peerKey = "from"
	}
	if f.val.kind != kArray {
		b.wrongType(f, "a list of rules")
		return
	}
	for i, el := range f.val.elems {
		path := fmt.Sprintf("%s[%d]", f.path, i)
		if el.kind != kObject {
			b.im.report.notMapped(b.src.name, path, "expected an object {%s, ports, protocol, description}, got %s; not emitted", peerKey, el.describe())
			continue
		}
		var (
			peer, desc string
			ports      spec.Ports
			protos     = []string{"tcp"} // TAPPaaS's default
			hasPorts   bool
			problems   []string
		)
		for _, mb := range el.members {
			if mb.val.kind == kNull {
				continue // unset
			}
			switch mb.key {
			case peerKey:
				s, ok := mb.val.asString()
				if !ok {
					problems = append(problems, fmt.Sprintf("%s is %s, not a zone name", peerKey, mb.val.describe()))
				}
				peer = s
			case "ports":
				hasPorts = true
				items := mb.val.elems
				if mb.val.kind != kArray {
					items = []*value{mb.val}
				}
				for j, it := range items {
					r, why := portRange(it)
					if why != "" {
						b.im.report.notMapped(b.src.name, fmt.Sprintf("%s.ports[%d]", path, j), "%s; dropped from the rule", why)
						continue
					}
					ports = append(ports, r)
				}
			case "protocol":
				var why string
				if protos, why = protocols(mb.val, true); why != "" {
					problems = append(problems, why)
				}
			case "description":
				var isStr bool
				if desc, isStr = mb.val.asString(); !isStr {
					b.im.report.notMapped(b.src.name, path+".description", "expected a string, got %s; not mapped", mb.val.describe())
				}
			default:
				if !strings.HasPrefix(mb.key, "_") {
					b.im.report.notMapped(b.src.name, path+"."+mb.key, "unknown rule field; not mapped")
				}
			}
		}
		icmp := slices.Equal(protos, []string{"icmp"})
		switch {
		case peer == "" && len(problems) == 0:
			problems = append(problems, "no "+peerKey)
		case peer != "":
			if why := b.peerProblem(peer); why != "" {
				problems = append(problems, why)
			}
		}
		switch {
		case icmp && len(ports) > 0:
			b.im.report.notMapped(b.src.name, path+".ports", "ICMP has no ports; dropped from the rule")
			ports = nil
		case !icmp && !hasPorts:
			problems = append(problems, "no ports (TAPPaaS requires them; a rule without ports would open every port)")
		case !icmp && len(ports) == 0:
			problems = append(problems, "no usable ports left (a rule without ports would open every port)")
		}
		if len(problems) > 0 {
			b.im.report.notMapped(b.src.name, path, "%s; not emitted", strings.Join(problems, "; "))
			continue
		}
		for _, proto := range protos {
			r := &spec.Rule{Ports: slices.Clone(ports), Proto: proto, Description: desc}
			if ingress {
				r.From = peer
				b.in.Ingress = append(b.in.Ingress, r)
			} else {
				r.To = peer
				b.in.Egress = append(b.in.Egress, r)
			}
			r.SetPos(b.src.pos(el.off))
			b.im.rulePaths[r] = Entry{File: b.src.name, Path: path}
		}
	}
}

// peerProblem says why a rule's peer cannot be mapped, or returns "".
// TAPPaaS rules may also name modules and OPNsense aliases; the spec's name
// a zone or internet. Whether the zones' policies allow the flow is left to
// the validator (see dropRejectedRules).
func (b *builder) peerProblem(peer string) string {
	_, isZone := b.im.spec.Zones[peer]
	switch {
	case peer == spec.Internet || isZone:
		return ""
	case strings.HasPrefix(peer, "alias:"):
		return fmt.Sprintf("%q is an OPNsense alias; the spec's rules name a zone or internet", peer)
	case b.im.modules[peer] != nil || b.im.vmnames[peer] != nil:
		return fmt.Sprintf("%q is a module (a TAPPaaS host alias); the spec's rules name a zone or internet", peer)
	}
	return fmt.Sprintf("%q is not a zone in the zones file", peer)
}

// dropRejectedRules removes the rules spec.Validate rejects, such as a
// pinhole from a zone the target zone does not accept, and reports them, so
// that the imported spec validates. The validator is the authority on which
// flows the zones allow; asking it keeps the two from drifting apart. Each
// rule sits at its own place in its module file, so an error there is
// about that rule.
func (im *importer) dropRejectedRules() {
	rejected := map[spec.Pos][]string{}
	for _, d := range spec.Validate(im.spec) {
		if d.Severity == spec.Error {
			rejected[d.Pos] = append(rejected[d.Pos], d.Message)
		}
	}
	keep := func(rules []*spec.Rule) []*spec.Rule {
		out := rules[:0]
		reported := map[spec.Pos]bool{}
		for _, r := range rules {
			msgs := rejected[r.Pos]
			if len(msgs) == 0 {
				out = append(out, r)
				continue
			}
			if !reported[r.Pos] { // a TCP/UDP rule became two, at one place
				reported[r.Pos] = true
				at := im.rulePaths[r]
				im.report.notMapped(at.File, at.Path, "the spec validator rejects it: %s; not emitted", strings.Join(msgs, "; "))
			}
		}
		if len(out) == 0 {
			return nil
		}
		return out
	}
	for _, name := range spec.SortedNames(im.spec.Instances) {
		in := im.spec.Instances[name]
		in.Ingress = keep(in.Ingress)
		in.Egress = keep(in.Egress)
	}
}

// protocols maps TAPPaaS's TCP, UDP, TCP/UDP and ICMP (rules only; a port
// takes no ICMP) to spec protocols, or says why it cannot.
func protocols(v *value, icmp bool) ([]string, string) {
	s, _ := v.asString()
	switch strings.ToUpper(strings.TrimSpace(s)) {
	case "TCP":
		return []string{"tcp"}, ""
	case "UDP":
		return []string{"udp"}, ""
	case "TCP/UDP", "UDP/TCP":
		return []string{"tcp", "udp"}, ""
	case "ICMP":
		if icmp {
			return []string{"icmp"}, ""
		}
		return nil, "protocol ICMP has no ports"
	}
	want := "TCP, UDP or TCP/UDP"
	if icmp {
		want = "TCP, UDP, TCP/UDP or ICMP"
	}
	return nil, fmt.Sprintf("protocol %s is not %s", v.describe(), want)
}

// portRange reads a port or a TAPPaaS range "8000:8010" (or "8000-8010").
func portRange(v *value) (spec.Range, string) {
	if n, ok := v.asInt(); ok {
		if n < 1 || n > 65535 {
			return spec.Range{}, fmt.Sprintf("port %d is outside 1-65535", n)
		}
		return spec.Range{Lo: n, Hi: n}, ""
	}
	s, ok := v.asString()
	if !ok {
		return spec.Range{}, fmt.Sprintf("port %s is not a port or range", v.describe())
	}
	r, err := spec.ParseRange(strings.Replace(s, ":", "-", 1))
	if err != nil || r.Lo < 1 || r.Hi > 65535 {
		return spec.Range{}, fmt.Sprintf("port %q is not a port or range within 1-65535", s)
	}
	return r, ""
}

// dependencies maps dependsOn "module:capability" entries: cluster:vm is
// what makes a module a VM, cluster:ha is ha, and any other names the
// module whose instance must exist first.
func (b *builder) dependencies(f *field) {
	if f.val.kind != kArray {
		b.wrongType(f, "a list of module:capability entries")
		return
	}
	for i, el := range f.val.elems {
		path := fmt.Sprintf("%s[%d]", f.path, i)
		s, _ := el.asString()
		mod, capability, found := strings.Cut(s, ":")
		switch {
		case el.kind != kString || !found || mod == "" || capability == "":
			b.im.report.notMapped(b.src.name, path, "%s is not of the form module:capability; not mapped", el.describe())
		case mod == "cluster" && capability == "vm":
			if !b.im.notedVM {
				b.im.notedVM = true
				b.im.report.note(b.src.name, path, "dependsOn cluster:vm is what makes a module a VM instance: consumed for every module")
			}
		case mod == "cluster" && capability == "ha":
			b.in.HA = true
		case mod == b.m.name:
			b.im.report.notMapped(b.src.name, path, "%q is the module's own capability, not a dependency; not mapped", s)
		default:
			dep := b.im.modules[mod]
			switch {
			case dep == nil:
				b.im.report.notMapped(b.src.name, path, "%q: module %s is not among the imported modules; dependency not mapped", s, mod)
			case dep.vmname == "":
				b.im.report.notMapped(b.src.name, path, "%q: module %s has no VM; dependency not mapped", s, mod)
			case !slices.Contains(b.in.DependsOn, dep.vmname):
				b.in.DependsOn = append(b.in.DependsOn, dep.vmname)
			}
		}
	}
}
