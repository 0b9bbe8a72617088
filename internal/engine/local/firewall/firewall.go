// Package firewall enforces a cloud's compiled flows at a site edge of the
// local engine: the network namespace that routes between the site's zones
// (a bridge br<vni> per zone) and its uplink. It builds one nftables table,
// inet holdfast, replaces it in a single transaction, and reads it back to
// name drift.
//
// The table is default deny, and its size does not depend on the cloud:
// six chains and 25 rules (27 with an underlay), whatever the number of
// zones and flows. The flows live in named interval sets keyed by
// concatenations (source . destination . protocol . port), so the ruleset
// grows by set elements, about one per flow, and a packet is classified by
// a few set lookups instead of walking a rule per flow.
//
//	prerouting  anti-spoofing: a zone bridge only carries its zone's
//	            sources, the uplink never carries this site's zones
//	input       the edge answers pings from its zones and takes VXLAN
//	            from its nodes (the underlay), nothing else
//	forward     established; the nodes' VXLAN across the underlay; then
//	            source . destination [. proto [. port]] in the from_zone
//	            and from_host sets; from the internet (uplink, not a cloud
//	            source) via chain inbound; to the internet (uplink, not a
//	            cloud destination) via chain outbound; drop
//	postrouting masquerade what leaves for the internet, and only that:
//	            traffic to other sites keeps its source
//
// Members of one zone reach each other: the zone is one segment, and with
// br_netfilter its bridged traffic crosses the edge's forward hook too.
// A zone that isolates its instances is no such segment: its nodes keep
// them apart (see Isolation), and the edge routes nothing from the zone
// back into it but the flows allowed within it.
package firewall

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/spec"
)

// TableName is the nftables table the firewall owns, in family inet.
const TableName = "holdfast"

// Input is what the firewall of one site edge enforces.
type Input struct {
	// Zones are the present zones of the whole cloud. Their CIDRs are the
	// cloud's addresses: what is not in them is the internet.
	Zones []compile.Zone
	// Flows are all flows of the cloud; overlay flows are not this
	// engine's. A flow whose zone or instance address lies in no present
	// zone is ignored: nothing can legitimately send from or to it.
	Flows []compile.Flow
	// Site is the site of this edge: its zones have a bridge here, the
	// other sites' zones are reached through WAN. Empty means every zone
	// is bridged here.
	Site string
	// WAN is the uplink interface, "wan0".
	WAN string
	// Underlay is the edge's interface towards the site's nodes, over
	// which VXLAN carries the zones between the nodes and the edge ("ul"
	// on the local engine; empty when there is none). The edge takes VXLAN
	// on it, and the nodes' VXLAN to each other, bridged across it,
	// passes. Nothing is routed between it and the zones or the internet.
	Underlay string
	// VXLANPort is the underlay's VXLAN port; 0 means 4789.
	VXLANPort int
	// Ingress is what the edge's public address (on WAN) forwards, and
	// the ports the edge keeps for itself there; nil: nothing.
	Ingress *Ingress
}

// Ingress is a site's public address: ports sent on to instances (DNAT;
// the flows then judge them as traffic from the internet to the
// instance), and ports the edge answers itself (the node's SSH).
type Ingress struct {
	Address   netip.Addr
	Forward   []compile.Forward
	HostPorts []int
}

// DefaultVXLANPort is VXLAN's IANA port.
const DefaultVXLANPort = 4789

// FromState takes what site's edge enforces from a compiled state.
func FromState(st *compile.State, site, wan string) Input {
	in := Input{Site: site, WAN: wan, Flows: st.Flows}
	for _, z := range st.Zones {
		if z.Present {
			in.Zones = append(in.Zones, z)
		}
	}
	return in
}

// BridgeName is the edge's interface for a zone with that VNI.
func BridgeName(vni int) string { return "br" + strconv.Itoa(vni) }

// Ruleset returns what Apply makes, in nft's syntax.
func Ruleset(in Input) (string, error) {
	rs, err := build(in)
	if err != nil {
		return "", err
	}
	return rs.String(), nil
}

// Stats gives the size of what Apply makes: rules, set elements (ranges
// and prefixes count once) and chains.
func Stats(in Input) (rules, setElements, chains int, err error) {
	rs, err := build(in)
	if err != nil {
		return 0, 0, 0, err
	}
	for _, c := range rs.chains {
		rules += len(c.rules)
	}
	for _, s := range rs.sets {
		setElements += len(s.elems)
	}
	return rules, setElements, len(rs.chains), nil
}

// The ruleset as data: Apply writes it, Verify compares the kernel's table
// with it, String prints it.
type ruleset struct {
	family nftables.TableFamily // inet unless set
	sets   []*set
	chains []*chain
}

type set struct {
	name     string
	key      []field
	interval bool
	elems    []box // canonical: sorted, disjoint (see disjoint)
}

func (s *set) concat() bool { return len(s.key) > 1 }

type chain struct {
	name  string
	base  *hook // nil for a chain reached by jumps
	rules []*rule
}

type hook struct {
	typ      nftables.ChainType
	num      nftables.ChainHook
	prio     nftables.ChainPriority
	policy   nftables.ChainPolicy
	hookName string
	prioName string
}

// A rule is built once into both its expressions and its nft text, so the
// two cannot disagree.
type rule struct {
	text  []string
	exprs []expr.Any
}

// Set names.
const (
	setCloud     = "cloud"      // every zone of the cloud
	setLocal     = "local"      // the zones bridged at this edge
	setBridges   = "bridges"    // their bridges
	setBridgeSrc = "bridge_src" // bridge . the sources it may carry
)

// Flow sets: what the flows allow, by where they come from and go to, and
// by how much of the protocol they name — every protocol (no suffix), one
// protocol on every port (_proto), or a protocol and ports (_port).
// Flows between cloud addresses are split by their source: a zone's
// subnet (from_zone) or one instance (from_host). Within one set the
// sources are then equal or disjoint, so flows nest at most and never
// cross (a zone to a host, a host of that zone to another zone), which
// keeps each flow one element (see disjoint).
var flowSets = []struct {
	name string
	key  []field
}{
	{"from_zone", []field{ipSaddr, ipDaddr}},
	{"from_zone_proto", []field{ipSaddr, ipDaddr, l4proto}},
	{"from_zone_port", []field{ipSaddr, ipDaddr, l4proto, thDport}},
	{"from_host", []field{ipSaddr, ipDaddr}},
	{"from_host_proto", []field{ipSaddr, ipDaddr, l4proto}},
	{"from_host_port", []field{ipSaddr, ipDaddr, l4proto, thDport}},
	{"inbound", []field{ipDaddr}},
	{"inbound_proto", []field{ipDaddr, l4proto}},
	{"inbound_port", []field{ipDaddr, l4proto, thDport}},
	{"outbound", []field{ipSaddr}},
	{"outbound_proto", []field{ipSaddr, l4proto}},
	{"outbound_port", []field{ipSaddr, l4proto, thDport}},
}

func build(in Input) (*ruleset, error) {
	if in.WAN == "" || len(in.WAN) >= ifNameSize {
		return nil, fmt.Errorf("uplink interface %q: want a name of 1-%d bytes", in.WAN, ifNameSize-1)
	}
	if len(in.Underlay) >= ifNameSize || in.Underlay != "" && in.Underlay == in.WAN {
		return nil, fmt.Errorf("underlay interface %q: want a name of 1-%d bytes other than the uplink's", in.Underlay, ifNameSize-1)
	}
	vxlanPort := cmp.Or(in.VXLANPort, DefaultVXLANPort)
	if vxlanPort < 1 || vxlanPort > 65535 {
		return nil, fmt.Errorf("vxlan port %d: want 1-65535", in.VXLANPort)
	}
	elems, err := collect(in)
	if err != nil {
		return nil, err
	}

	rs := &ruleset{}
	add := func(name string, key []field, interval bool) *set {
		s := &set{name: name, key: key, interval: interval}
		if interval {
			s.elems = disjoint(elems[name])
		} else {
			s.elems = slices.SortedFunc(slices.Values(elems[name]), compareBoxes)
			s.elems = slices.CompactFunc(s.elems, func(a, b box) bool { return compareBoxes(a, b) == 0 })
		}
		rs.sets = append(rs.sets, s)
		return s
	}
	cloud := add(setCloud, []field{ipSaddr}, true)
	local := add(setLocal, []field{ipSaddr}, true)
	bridges := add(setBridges, []field{iifname}, false)
	bridgeSrc := add(setBridgeSrc, []field{iifname, ipSaddr}, true)
	flow := map[string]*set{}
	for _, fs := range flowSets {
		flow[fs.name] = add(fs.name, fs.key, true)
	}

	established := func() *rule {
		return newRule().ctState(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED, "established,related")
	}
	invalid := func() *rule { return newRule().ctState(expr.CtStateBitINVALID, "invalid") }
	accept, drop := expr.Verdict{Kind: expr.VerdictAccept}, expr.Verdict{Kind: expr.VerdictDrop}
	jump := func(chain string) expr.Verdict { return expr.Verdict{Kind: expr.VerdictJump, Chain: chain} }
	lookups := func(prefix string) []*rule {
		var rules []*rule
		for _, suffix := range []string{"", "_proto", "_port"} {
			s := flow[prefix+suffix]
			rules = append(rules, newRule().ipv4().lookup(s.key, s, false).verdict(accept))
		}
		return rules
	}
	// The underlay carries the zones: VXLAN to the edge, and between nodes
	// through the edge's underlay bridge (whose bridged traffic crosses
	// the forward hook when br_netfilter is on).
	var underlayIn, underlayFwd []*rule
	if u := in.Underlay; u != "" {
		underlayIn = []*rule{newRule().ifname(expr.MetaKeyIIFNAME, u, true).udpDport(uint16(vxlanPort)).verdict(accept)}
		underlayFwd = []*rule{newRule().ifname(expr.MetaKeyIIFNAME, u, true).ifname(expr.MetaKeyOIFNAME, u, true).verdict(accept)}
	}

	// The edge serves its zones DNS and DHCP at their gateways (the
	// engine's edge services); a DHCP client asks before it has an
	// address, so the spoofing check below would drop it.
	fromBridge := func() *rule { return newRule().lookup([]field{iifname}, bridges, false) }
	prerouting := []*rule{
		fromBridge().udpDport(67).verdict(accept),
		newRule().ifname(expr.MetaKeyIIFNAME, in.WAN, true).ipv4().lookup([]field{ipSaddr}, local, false).verdict(drop),
		newRule().lookup([]field{iifname}, bridges, false).ipv4().lookup([]field{iifname, ipSaddr}, bridgeSrc, true).verdict(drop),
	}
	input := slices.Concat(
		[]*rule{
			established().verdict(accept),
			invalid().verdict(drop),
			newRule().ifname(expr.MetaKeyIIFNAME, "lo", true).verdict(accept),
		},
		underlayIn,
		[]*rule{
			newRule().lookup([]field{iifname}, bridges, false).ipv4().icmpEcho().verdict(accept),
			fromBridge().udpDport(53).verdict(accept),
			fromBridge().tcpDport(53).verdict(accept),
			fromBridge().udpDport(67).verdict(accept),
		},
		hostPorts(in),
		[]*rule{lastDrop()})
	forward := slices.Concat(
		[]*rule{established().verdict(accept), invalid().verdict(drop)},
		underlayFwd,
		lookups("from_zone"),
		lookups("from_host"),
		[]*rule{
			newRule().ifname(expr.MetaKeyIIFNAME, in.WAN, true).ipv4().lookup([]field{ipSaddr}, cloud, true).verdict(jump("inbound")),
			newRule().ifname(expr.MetaKeyIIFNAME, in.WAN, false).ifname(expr.MetaKeyOIFNAME, in.WAN, true).ipv4().lookup([]field{ipDaddr}, cloud, true).verdict(jump("outbound")),
			lastDrop(),
		})
	dnat, err := dnatRules(in)
	if err != nil {
		return nil, err
	}
	postrouting := []*rule{
		newRule().ifname(expr.MetaKeyOIFNAME, in.WAN, true).ipv4().lookup([]field{ipSaddr}, cloud, false).lookup([]field{ipDaddr}, cloud, true).masquerade(),
	}
	filter := func(num nftables.ChainHook, hookName string, prio nftables.ChainPriority, prioName string, policy nftables.ChainPolicy) *hook {
		return &hook{typ: nftables.ChainTypeFilter, num: num, hookName: hookName, prio: prio, prioName: prioName, policy: policy}
	}
	rs.chains = []*chain{
		{name: "prerouting", rules: prerouting,
			base: filter(*nftables.ChainHookPrerouting, "prerouting", *nftables.ChainPriorityRaw, "raw", nftables.ChainPolicyAccept)},
		{name: "input", rules: input,
			base: filter(*nftables.ChainHookInput, "input", *nftables.ChainPriorityFilter, "filter", nftables.ChainPolicyDrop)},
		{name: "forward", rules: forward,
			base: filter(*nftables.ChainHookForward, "forward", *nftables.ChainPriorityFilter, "filter", nftables.ChainPolicyDrop)},
		{name: "inbound", rules: lookups("inbound")},
		{name: "outbound", rules: lookups("outbound")},
	}
	if len(dnat) > 0 {
		rs.chains = append(rs.chains, &chain{name: "dnat", rules: dnat,
			base: &hook{typ: nftables.ChainTypeNAT, num: *nftables.ChainHookPrerouting, hookName: "prerouting",
				prio: *nftables.ChainPriorityNATDest, prioName: "dstnat", policy: nftables.ChainPolicyAccept}})
	}
	rs.chains = append(rs.chains,
		&chain{name: "postrouting", rules: postrouting,
			base: &hook{typ: nftables.ChainTypeNAT, num: *nftables.ChainHookPostrouting, hookName: "postrouting",
				prio: *nftables.ChainPriorityNATSource, prioName: "srcnat", policy: nftables.ChainPolicyAccept}})
	return rs, nil
}

// hostPorts accept what the edge keeps for itself on its public address.
func hostPorts(in Input) []*rule {
	if in.Ingress == nil {
		return nil
	}
	var rs []*rule
	for _, p := range in.Ingress.HostPorts {
		rs = append(rs, newRule().ifname(expr.MetaKeyIIFNAME, in.WAN, true).tcpDport(uint16(p)).verdict(expr.Verdict{Kind: expr.VerdictAccept}))
	}
	return rs
}

// dnatRules send the forwarded ports of the public address on to their
// instances.
func dnatRules(in Input) ([]*rule, error) {
	if in.Ingress == nil || len(in.Ingress.Forward) == 0 {
		return nil, nil
	}
	if !in.Ingress.Address.Is4() {
		return nil, fmt.Errorf("ingress: the public address %v is not IPv4", in.Ingress.Address)
	}
	var rs []*rule
	for _, f := range in.Ingress.Forward {
		to, err := netip.ParseAddr(f.ToIP)
		if err != nil || !to.Is4() {
			return nil, fmt.Errorf("ingress: forward %s/%d to %s: %q is not an IPv4 address", f.Proto, f.Port, f.To, f.ToIP)
		}
		r := newRule().ifname(expr.MetaKeyIIFNAME, in.WAN, true).ipv4().ipDaddr(in.Ingress.Address)
		switch f.Proto {
		case "tcp":
			r.tcpDport(uint16(f.Port))
		case "udp":
			r.udpDport(uint16(f.Port))
		default:
			return nil, fmt.Errorf("ingress: forward %s/%d: want tcp or udp", f.Proto, f.Port)
		}
		rs = append(rs, r.dnat(to))
	}
	return rs, nil
}

// collect sorts the zones and flows into the elements of each set, as
// boxes that may still overlap.
func collect(in Input) (map[string][]box, error) {
	elems := map[string][]box{}
	var zones []netip.Prefix
	for _, z := range in.Zones {
		p, err := netip.ParsePrefix(z.CIDR)
		if err != nil || !p.Addr().Is4() {
			return nil, fmt.Errorf("zone %q: cidr %q is not an IPv4 prefix", z.Name, z.CIDR)
		}
		zones = append(zones, p)
		addrs := prefixSpan(p)
		elems[setCloud] = append(elems[setCloud], box{addrs})
		if z.VNI == nil || (in.Site != "" && !slices.Contains(z.Sites, in.Site)) {
			continue // not bridged at this edge
		}
		br := ifnameSpan(BridgeName(*z.VNI))
		elems[setLocal] = append(elems[setLocal], box{addrs})
		elems[setBridges] = append(elems[setBridges], box{br})
		elems[setBridgeSrc] = append(elems[setBridgeSrc], box{br, addrs})
		if !z.IsolateInstances { // routed through the gateway, they would meet again
			elems["from_zone"] = append(elems["from_zone"], box{addrs, addrs})
		}
	}
	inCloud := func(p netip.Prefix) bool {
		return slices.ContainsFunc(zones, func(z netip.Prefix) bool { return z.Bits() <= p.Bits() && z.Contains(p.Addr()) })
	}
	for _, f := range in.Flows {
		if f.Kind == compile.KindOverlay {
			continue
		}
		src, srcNet, err := endpoint(f.From, f.FromCIDR)
		if err != nil {
			return nil, fmt.Errorf("flow %s>%s: from: %w", f.From, f.To, err)
		}
		dst, dstNet, err := endpoint(f.To, f.ToCIDR)
		if err != nil {
			return nil, fmt.Errorf("flow %s>%s: to: %w", f.From, f.To, err)
		}
		switch {
		case !src.IsValid() && !srcNet, !dst.IsValid() && !dstNet, srcNet && dstNet:
			continue // a group, or the internet to itself
		case src.IsValid() && !inCloud(src), dst.IsValid() && !inCloud(dst):
			continue // an address in no present zone
		}
		ms, err := matches(f.Proto, f.Ports)
		if err != nil {
			return nil, fmt.Errorf("flow %s>%s: %w", f.From, f.To, err)
		}
		var addrs box
		var name string
		switch {
		case srcNet:
			name, addrs = "inbound", box{prefixSpan(dst)}
		case dstNet:
			name, addrs = "outbound", box{prefixSpan(src)}
		case src.IsSingleIP():
			name, addrs = "from_host", box{prefixSpan(src), prefixSpan(dst)}
		default:
			name, addrs = "from_zone", box{prefixSpan(src), prefixSpan(dst)}
		}
		for _, m := range ms {
			switch {
			case m.all:
				elems[name] = append(elems[name], addrs)
			case m.ports == nil:
				elems[name+"_proto"] = append(elems[name+"_proto"], append(slices.Clone(addrs), protoSpan(m.proto)))
			default:
				elems[name+"_port"] = append(elems[name+"_port"], append(slices.Clone(addrs), protoSpan(m.proto), *m.ports))
			}
		}
	}
	return elems, nil
}

// lastDrop ends a filter chain whose policy is drop with an explicit drop.
// The kernel arms a new base chain's drop policy only when the transaction
// commits that chain, after it has unhooked the old table's chains: in
// between, the new chain's rules are live but its policy is still accept,
// and a packet no rule decides passes. Apply replaces the table as a
// whole, so without this rule every Apply would open that window (the
// reachability test sees it within a few applies); with it, the rules
// decide every packet.
func lastDrop() *rule { return newRule().verdict(expr.Verdict{Kind: expr.VerdictDrop}) }

// endpoint reads one end of a flow: an address prefix, or the internet.
// Neither (a group) is not this engine's.
func endpoint(name, cidr string) (p netip.Prefix, internet bool, err error) {
	switch {
	case cidr != "":
		p, err = netip.ParsePrefix(cidr)
		if err != nil || !p.Addr().Is4() {
			return p, false, fmt.Errorf("%q is not an IPv4 prefix", cidr)
		}
		return p.Masked(), false, nil
	case name == spec.Internet:
		return p, true, nil
	}
	return p, false, nil
}

// A match is the protocol part of a flow: every protocol, one protocol, or
// one protocol and a port range.
type match struct {
	all   bool
	proto uint8
	ports *span
}

var protoNumbers = map[string]uint8{"tcp": 6, "udp": 17, "icmp": 1}

func matches(proto string, ports []string) ([]match, error) {
	var protos []uint8
	switch proto {
	case "", "any":
		if len(ports) == 0 {
			return []match{{all: true}}, nil
		}
		protos = []uint8{6, 17} // ports of any protocol: the ones that have ports
	case "icmp":
		if len(ports) > 0 {
			return nil, fmt.Errorf("icmp has no ports (got %s)", strings.Join(ports, ","))
		}
		return []match{{proto: 1}}, nil
	default:
		p, ok := protoNumbers[proto]
		if !ok {
			return nil, fmt.Errorf("protocol %q: want any, tcp, udp or icmp", proto)
		}
		protos = []uint8{p}
	}
	if len(ports) == 0 {
		return []match{{proto: protos[0]}}, nil
	}
	var out []match
	for _, p := range protos {
		for _, r := range ports {
			lo, hi, err := portRange(r)
			if err != nil {
				return nil, err
			}
			s := portSpan(lo, hi)
			out = append(out, match{proto: p, ports: &s})
		}
	}
	return out, nil
}

func portRange(s string) (lo, hi uint16, err error) {
	a, b, isRange := strings.Cut(s, "-")
	if !isRange {
		b = a
	}
	x, err1 := strconv.ParseUint(a, 10, 16)
	y, err2 := strconv.ParseUint(b, 10, 16)
	if err1 != nil || err2 != nil || x == 0 || x > y {
		return 0, 0, fmt.Errorf("port %q: want 1-65535 or a range lo-hi", s)
	}
	return uint16(x), uint16(y), nil
}

func compareBoxes(a, b box) int {
	return slices.CompareFunc(a, b, func(s, t span) int {
		if c := strings.Compare(string(s.lo), string(t.lo)); c != 0 {
			return c
		}
		return strings.Compare(string(s.hi), string(t.hi))
	})
}
