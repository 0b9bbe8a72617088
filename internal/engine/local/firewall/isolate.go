package firewall

import (
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/internal/compile"
)

// Isolation keeps the instances of a zone apart on a node: a table bridge
// holdfast in the node's namespace, where the zones' bridges join the
// instances' ports and the VXLAN to the other nodes and the edge. The
// edge's firewall cannot do it: traffic between two instances of a zone
// is bridged, and never reaches the edge when both are on one node.
//
// A frame is judged where it enters the bridge from its instance's port,
// so one rule covers both a peer on the same bridge and one across VXLAN
// on another node. It passes when it is for the gateway (its MAC: what is
// routed, and replies to the gateway's ARP and ND), asks for the gateway
// (ARP, or IPv6 ND to the gateway's solicited-node group), or is a flow
// the spec allows within the zone (a pinhole from the zone, the overlay's
// underlay), or ARP between that flow's ends; everything else from the
// port is dropped, IPv6 included.
//
// Return traffic of an allowed flow is matched without state, by the
// flow's ports in reverse: bridge-family conntrack (nf_conntrack_bridge)
// is not in every kernel (not in the one CI runs).
//
//	forward     iifname <instance port> jump zone_<vni>, one per port
//	zone_<vni>  ether daddr <gateway MAC> accept
//	            arp to the gateway accept; ND to the gateway accept
//	            each flow within the zone, its return and ARP, accept
//	            drop
type Isolation struct {
	Zones []IsolatedZone
}

// IsolatedZone is one zone whose instances are kept apart on a node.
type IsolatedZone struct {
	Name       string
	VNI        int
	CIDR       netip.Prefix
	Gateway    netip.Addr
	GatewayMAC net.HardwareAddr
	// Ports are the node's interfaces of the zone's instances, on the
	// zone's bridge.
	Ports []string
	// Flows are the cloud's flows; those from and to addresses of the
	// zone pass.
	Flows []compile.Flow
}

// IsolationRuleset returns what ApplyIsolation makes, in nft's syntax.
func IsolationRuleset(in Isolation) (string, error) {
	rs, err := buildIsolation(in)
	if err != nil {
		return "", err
	}
	return rs.String(), nil
}

func buildIsolation(in Isolation) (*ruleset, error) {
	rs := &ruleset{family: nftables.TableFamilyBridge}
	forward := &chain{name: "forward", base: &hook{typ: nftables.ChainTypeFilter, num: *nftables.ChainHookForward, hookName: "forward",
		prio: *nftables.ChainPriorityFilter, prioName: "filter", policy: nftables.ChainPolicyAccept}}
	rs.chains = append(rs.chains, forward)
	accept, drop := expr.Verdict{Kind: expr.VerdictAccept}, expr.Verdict{Kind: expr.VerdictDrop}
	for _, z := range in.Zones {
		if len(z.GatewayMAC) != 6 || !z.Gateway.Is4() || !z.CIDR.Addr().Is4() {
			return nil, fmt.Errorf("zone %q: want an IPv4 gateway with its MAC and an IPv4 cidr (got %s, %s, %s)", z.Name, z.Gateway, z.GatewayMAC, z.CIDR)
		}
		name := fmt.Sprintf("zone_%d", z.VNI)
		ports := slices.Sorted(slices.Values(z.Ports))
		for _, p := range slices.Compact(ports) {
			if p == "" || len(p) >= ifNameSize {
				return nil, fmt.Errorf("zone %q: port %q: want a name of 1-%d bytes", z.Name, p, ifNameSize-1)
			}
			forward.rules = append(forward.rules, newRule().ifname(expr.MetaKeyIIFNAME, p, true).verdict(expr.Verdict{Kind: expr.VerdictJump, Chain: name}))
		}
		// The gateway's link-local address is EUI-64 from its MAC, so its
		// solicited-node group ends in the MAC's last three bytes.
		nd := net.HardwareAddr{0x33, 0x33, 0xff, z.GatewayMAC[3], z.GatewayMAC[4], z.GatewayMAC[5]}
		rules := []*rule{
			newRule().etherDaddr(z.GatewayMAC).verdict(accept),
			newRule().arpTarget(z.Gateway).verdict(accept),
			newRule().etherDaddr(nd).verdict(accept),
		}
		for _, f := range z.Flows {
			r, err := zoneFlowRules(z.CIDR, f)
			if err != nil {
				return nil, fmt.Errorf("zone %q: flow %s>%s: %w", z.Name, f.From, f.To, err)
			}
			rules = append(rules, r...)
		}
		rules = append(rules, newRule().verdict(drop))
		rs.chains = append(rs.chains, &chain{name: name, rules: rules})
	}
	return rs, nil
}

// zoneFlowRules renders a flow between addresses of the zone, and its
// return, as rules; nothing for any other flow.
func zoneFlowRules(zone netip.Prefix, f compile.Flow) ([]*rule, error) {
	if f.Kind == compile.KindOverlay || f.FromCIDR == "" || f.ToCIDR == "" {
		return nil, nil
	}
	src, _, err := endpoint(f.From, f.FromCIDR)
	if err != nil {
		return nil, err
	}
	dst, _, err := endpoint(f.To, f.ToCIDR)
	if err != nil {
		return nil, err
	}
	within := func(p netip.Prefix) bool { return zone.Bits() <= p.Bits() && zone.Contains(p.Addr()) }
	if !within(src) || !within(dst) {
		return nil, nil
	}
	ms, err := matches(f.Proto, f.Ports)
	if err != nil {
		return nil, err
	}
	accept := expr.Verdict{Kind: expr.VerdictAccept}
	// The two ends must find each other's MAC: ARP between them, each way.
	out := []*rule{
		newRule().arpFrame().prefix(14, "arp saddr ip", src).prefix(24, "arp daddr ip", dst).verdict(accept),
		newRule().arpFrame().prefix(14, "arp saddr ip", dst).prefix(24, "arp daddr ip", src).verdict(accept),
	}
	for _, m := range ms {
		there := newRule().ipv4Frame().prefix(12, "ip saddr", src).prefix(16, "ip daddr", dst)
		back := newRule().ipv4Frame().prefix(12, "ip saddr", dst).prefix(16, "ip daddr", src)
		if !m.all {
			there.l4proto(m.proto)
			back.l4proto(m.proto)
		}
		if m.ports != nil {
			there.portRange(2, "th dport", *m.ports)
			back.portRange(0, "th sport", *m.ports)
		}
		out = append(out, there.verdict(accept), back.verdict(accept))
	}
	return out, nil
}

// ApplyIsolation makes the namespace's table bridge holdfast what in asks
// for, in one transaction (as Apply does for the edge); with no zones it
// removes the table.
func ApplyIsolation(ns netns.NsHandle, in Isolation) error {
	if len(in.Zones) == 0 {
		return DeleteIsolation(ns)
	}
	rs, err := buildIsolation(in)
	if err != nil {
		return err
	}
	c, err := connect(ns)
	if err != nil {
		return err
	}
	t := &nftables.Table{Family: nftables.TableFamilyBridge, Name: TableName}
	c.AddTable(t)
	c.DelTable(t)
	c.AddTable(t)
	addChains(c, t, rs.chains)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("replace table bridge %s: %w", TableName, err)
	}
	return nil
}

// DeleteIsolation removes the table, writing nothing when it is absent.
func DeleteIsolation(ns netns.NsHandle) error {
	c, err := connect(ns)
	if err != nil {
		return err
	}
	has, err := hasTable(c, nftables.TableFamilyBridge)
	if err != nil || !has {
		return err
	}
	c.DelTable(&nftables.Table{Family: nftables.TableFamilyBridge, Name: TableName})
	if err := c.Flush(); err != nil {
		return fmt.Errorf("delete table bridge %s: %w", TableName, err)
	}
	return nil
}

// VerifyIsolation names every difference between the namespace's table
// bridge holdfast and what ApplyIsolation would make: a missing table or
// chain, a chain's hook, its rules; with no zones, a table that is there.
// It changes nothing.
func VerifyIsolation(ns netns.NsHandle, in Isolation) ([]string, error) {
	rs, err := buildIsolation(in)
	if err != nil {
		return nil, err
	}
	c, err := connect(ns)
	if err != nil {
		return nil, err
	}
	has, err := hasTable(c, nftables.TableFamilyBridge)
	switch {
	case err != nil:
		return nil, err
	case !has && len(in.Zones) == 0:
		return nil, nil
	case !has:
		return []string{fmt.Sprintf("table bridge %s is missing", TableName)}, nil
	case len(in.Zones) == 0:
		return []string{fmt.Sprintf("table bridge %s is there, but no zone isolates its instances", TableName)}, nil
	}
	return verifyChains(c, &nftables.Table{Family: nftables.TableFamilyBridge, Name: TableName}, rs)
}

func hasTable(c *nftables.Conn, family nftables.TableFamily) (bool, error) {
	tables, err := c.ListTablesOfFamily(family)
	if err != nil {
		return false, fmt.Errorf("list tables: %w", err)
	}
	return slices.ContainsFunc(tables, func(t *nftables.Table) bool { return t.Name == TableName }), nil
}

// ipv4Frame restricts a bridge rule to IPv4 frames, which the ip fields
// that follow need.
func (r *rule) ipv4Frame() *rule {
	r.exprs = append(r.exprs,
		&expr.Meta{Key: expr.MetaKeyPROTOCOL, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(unix.ETH_P_IP)})
	r.text = append(r.text, "ether type ip")
	return r
}

func (r *rule) arpFrame() *rule {
	r.exprs = append(r.exprs,
		&expr.Meta{Key: expr.MetaKeyPROTOCOL, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(unix.ETH_P_ARP)})
	r.text = append(r.text, "ether type arp")
	return r
}

func (r *rule) etherDaddr(mac net.HardwareAddr) *rule {
	r.exprs = append(r.exprs,
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseLLHeader, Offset: 0, Len: 6},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: slices.Clone([]byte(mac))})
	r.text = append(r.text, "ether daddr "+mac.String())
	return r
}

// arpTarget matches an ARP packet (of Ethernet and IPv4) asking for
// addr: its target protocol address.
func (r *rule) arpTarget(addr netip.Addr) *rule {
	return r.arpFrame().prefix(24, "arp daddr ip", netip.PrefixFrom(addr, 32))
}

// prefix matches the IPv4 address at offset in the network header against
// p.
func (r *rule) prefix(offset uint32, name string, p netip.Prefix) *rule {
	r.exprs = append(r.exprs, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4})
	a := p.Masked().Addr().As4()
	if p.Bits() < 32 {
		mask := net.CIDRMask(p.Bits(), 32)
		r.exprs = append(r.exprs, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: []byte{0, 0, 0, 0}})
		r.text = append(r.text, name+" "+p.Masked().String())
	} else {
		r.text = append(r.text, name+" "+p.Addr().String())
	}
	r.exprs = append(r.exprs, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a[:]})
	return r
}

func (r *rule) l4proto(proto uint8) *rule {
	r.exprs = append(r.exprs, &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}})
	r.text = append(r.text, "meta l4proto "+printProtos(protoSpan(proto)))
	return r
}

// portRange matches the transport header's port at offset (0 source, 2
// destination) against s.
func (r *rule) portRange(offset uint32, name string, s span) *rule {
	r.exprs = append(r.exprs, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: offset, Len: 2})
	if string(s.lo) == string(s.hi) {
		r.exprs = append(r.exprs, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: slices.Clone(s.lo)})
	} else {
		r.exprs = append(r.exprs,
			&expr.Cmp{Op: expr.CmpOpGte, Register: 1, Data: slices.Clone(s.lo)},
			&expr.Cmp{Op: expr.CmpOpLte, Register: 1, Data: slices.Clone(s.hi)})
	}
	r.text = append(r.text, name+" "+printPorts(s))
	return r
}
