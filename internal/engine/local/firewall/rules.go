package firewall

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

func newRule() *rule { return &rule{} }

// ipv4 restricts the rule to IPv4, which the ip fields that follow need in
// an inet table. nft adds and hides the same dependency.
func (r *rule) ipv4() *rule {
	r.exprs = append(r.exprs,
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}})
	return r
}

func (r *rule) ifname(key expr.MetaKey, name string, eq bool) *rule {
	b := make([]byte, ifNameSize)
	copy(b, name)
	op, text := expr.CmpOpEq, " "
	if !eq {
		op, text = expr.CmpOpNeq, " != "
	}
	word := "iifname"
	if key == expr.MetaKeyOIFNAME {
		word = "oifname"
	}
	r.exprs = append(r.exprs, &expr.Meta{Key: key, Register: 1}, &expr.Cmp{Op: op, Register: 1, Data: b})
	r.text = append(r.text, fmt.Sprintf("%s%s%q", word, text, name))
	return r
}

func (r *rule) ctState(bits uint32, names string) *rule {
	r.exprs = append(r.exprs,
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(bits), Xor: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)})
	r.text = append(r.text, "ct state "+names)
	return r
}

// lookup matches the packet's fields, concatenated, against set s.
func (r *rule) lookup(fields []field, s *set, invert bool) *rule {
	regs := registers(fields)
	names := make([]string, len(fields))
	for i, f := range fields {
		r.exprs = append(r.exprs, f.load(regs[i]))
		names[i] = f.name
	}
	r.exprs = append(r.exprs, &expr.Lookup{SourceRegister: regs[0], SetName: s.name, Invert: invert})
	op := " @"
	if invert {
		op = " != @"
	}
	r.text = append(r.text, strings.Join(names, " . ")+op+s.name)
	return r
}

func (r *rule) udpDport(port uint16) *rule { return r.dport(unix.IPPROTO_UDP, "udp", port) }
func (r *rule) tcpDport(port uint16) *rule { return r.dport(unix.IPPROTO_TCP, "tcp", port) }

func (r *rule) dport(proto byte, name string, port uint16) *rule {
	r.exprs = append(r.exprs,
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(port)})
	r.text = append(r.text, fmt.Sprintf("%s dport %d", name, port))
	return r
}

func (r *rule) icmpEcho() *rule {
	r.exprs = append(r.exprs,
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_ICMP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{8}})
	r.text = append(r.text, "icmp type echo-request")
	return r
}

func (r *rule) verdict(v expr.Verdict) *rule {
	r.exprs = append(r.exprs, &v)
	switch v.Kind {
	case expr.VerdictAccept:
		r.text = append(r.text, "accept")
	case expr.VerdictDrop:
		r.text = append(r.text, "drop")
	case expr.VerdictJump:
		r.text = append(r.text, "jump "+v.Chain)
	default:
		panic(fmt.Sprintf("firewall: verdict %d has no text", v.Kind))
	}
	return r
}

func (r *rule) masquerade() *rule {
	r.exprs = append(r.exprs, &expr.Masq{})
	r.text = append(r.text, "masquerade")
	return r
}

// ipDaddr matches one IPv4 destination address; after ipv4().
func (r *rule) ipDaddr(a netip.Addr) *rule {
	b := a.As4()
	r.exprs = append(r.exprs,
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: b[:]})
	r.text = append(r.text, "ip daddr "+a.String())
	return r
}

// dnat sends the packet on to IPv4 address to, on the same port.
func (r *rule) dnat(to netip.Addr) *rule {
	b := to.As4()
	r.exprs = append(r.exprs,
		&expr.Immediate{Register: 1, Data: b[:]},
		// The kernel reports the address range's both ends (one
		// register here); naming both keeps Verify's comparison exact.
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegAddrMax: 1})
	r.text = append(r.text, "dnat ip to "+to.String())
	return r
}

func (r *rule) String() string { return strings.Join(r.text, " ") }

// String prints the ruleset as `nft list table inet holdfast` would.
func (rs *ruleset) String() string {
	var b strings.Builder
	family := "inet"
	if rs.family == nftables.TableFamilyBridge {
		family = "bridge"
	}
	fmt.Fprintf(&b, "table %s %s {\n", family, TableName)
	for _, s := range rs.sets {
		types := make([]string, len(s.key))
		for i, f := range s.key {
			types[i] = f.typ.Name
		}
		fmt.Fprintf(&b, "\tset %s {\n\t\ttype %s\n", s.name, strings.Join(types, " . "))
		if s.interval {
			b.WriteString("\t\tflags interval\n")
		}
		if len(s.elems) > 0 {
			b.WriteString("\t\telements = { ")
			for i, e := range s.elems {
				if i > 0 {
					b.WriteString(",\n\t\t\t     ")
				}
				b.WriteString(s.format(e))
			}
			b.WriteString(" }\n")
		}
		b.WriteString("\t}\n\n")
	}
	for i, c := range rs.chains {
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "\tchain %s {\n", c.name)
		if h := c.base; h != nil {
			fmt.Fprintf(&b, "\t\ttype %s hook %s priority %s; policy %s;\n", h.typ, h.hookName, h.prioName, policyName(h.policy))
		}
		for _, r := range c.rules {
			fmt.Fprintf(&b, "\t\t%s\n", r)
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
	return b.String()
}

// format prints one element as nft does: its fields joined by " . ".
func (s *set) format(e box) string {
	parts := make([]string, len(e))
	for i, sp := range e {
		parts[i] = s.key[i].print(sp)
	}
	return strings.Join(parts, " . ")
}

func policyName(p nftables.ChainPolicy) string {
	if p == nftables.ChainPolicyAccept {
		return "accept"
	}
	return "drop"
}
