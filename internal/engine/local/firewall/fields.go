package firewall

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// A field is one part of a set key: what it reads from the packet, its
// width in bytes, and how nft names and prints it.
type field struct {
	name  string // as nft writes it in a rule: "ip saddr"
	width int
	typ   nftables.SetDatatype
	load  func(reg uint32) expr.Any
	print func(span) string
}

var (
	ipSaddr = field{name: "ip saddr", width: 4, typ: nftables.TypeIPAddr, load: payload(expr.PayloadBaseNetworkHeader, 12, 4), print: printAddrs}
	ipDaddr = field{name: "ip daddr", width: 4, typ: nftables.TypeIPAddr, load: payload(expr.PayloadBaseNetworkHeader, 16, 4), print: printAddrs}
	l4proto = field{name: "meta l4proto", width: 1, typ: nftables.TypeInetProto, load: meta(expr.MetaKeyL4PROTO), print: printProtos}
	thDport = field{name: "th dport", width: 2, typ: nftables.TypeInetService, load: payload(expr.PayloadBaseTransportHeader, 2, 2), print: printPorts}
	iifname = field{name: "iifname", width: ifNameSize, typ: nftables.TypeIFName, load: meta(expr.MetaKeyIIFNAME), print: printIfnames}
)

// ifNameSize is IFNAMSIZ: interface names are compared as 16 NUL-padded bytes.
const ifNameSize = 16

func payload(base expr.PayloadBase, offset, length uint32) func(uint32) expr.Any {
	return func(reg uint32) expr.Any {
		return &expr.Payload{DestRegister: reg, Base: base, Offset: offset, Len: length}
	}
}

func meta(key expr.MetaKey) func(uint32) expr.Any {
	return func(reg uint32) expr.Any { return &expr.Meta{Key: key, Register: reg} }
}

// registers places the fields of a key one after another in the 32-bit
// registers, as nft does for a concatenation: each field starts on a
// register boundary. It returns the register of each field, named as the
// kernel reports it back: a field starting a 16-byte register by that
// register (NFT_REG_1..4), any other by its 32-bit one (NFT_REG32_xx).
func registers(fields []field) []uint32 {
	regs := make([]uint32, len(fields))
	words := uint32(0)
	for i, f := range fields {
		if words%4 == 0 {
			regs[i] = 1 + words/4 // NFT_REG_1 + n
		} else {
			regs[i] = 8 + words // NFT_REG32_00 + words
		}
		words += uint32(f.width+3) / 4
	}
	return regs
}

// keyType is the set key datatype of fields; a concatenation pads each
// field to whole registers.
func keyType(fields []field) nftables.SetDatatype {
	if len(fields) == 1 {
		return fields[0].typ
	}
	types := make([]nftables.SetDatatype, len(fields))
	for i, f := range fields {
		types[i] = f.typ
	}
	return nftables.MustConcatSetType(types...)
}

// keyBytes encodes one end of a box as the kernel stores a key: fields in
// order, each padded with zeros to whole registers when concatenated.
func keyBytes(b box, end bool, concat bool) []byte {
	var out []byte
	for _, s := range b {
		v := s.lo
		if end {
			v = s.hi
		}
		out = append(out, v...)
		if concat {
			out = append(out, make([]byte, (4-len(v)%4)%4)...)
		}
	}
	return out
}

// splitKey is keyBytes reversed.
func splitKey(key []byte, fields []field, concat bool) ([][]byte, error) {
	out := make([][]byte, len(fields))
	for i, f := range fields {
		if len(key) < f.width {
			return nil, fmt.Errorf("key %x too short for %s", key, f.name)
		}
		out[i] = key[:f.width]
		key = key[f.width:]
		if pad := (4 - f.width%4) % 4; concat && pad > 0 {
			if len(key) < pad {
				return nil, fmt.Errorf("key too short for padding after %s", f.name)
			}
			key = key[pad:]
		}
	}
	if len(key) != 0 {
		return nil, fmt.Errorf("key has %d bytes too many", len(key))
	}
	return out, nil
}

func prefixSpan(p netip.Prefix) span {
	p = p.Masked()
	lo := p.Addr().As4()
	hi := lo
	for i := p.Bits(); i < 32; i++ {
		hi[i/8] |= 0x80 >> (i % 8)
	}
	return span{lo: lo[:], hi: hi[:]}
}

func exact(b []byte) span { return span{lo: b, hi: b} }

func protoSpan(p uint8) span { return exact([]byte{p}) }

func portSpan(lo, hi uint16) span {
	return span{lo: binary.BigEndian.AppendUint16(nil, lo), hi: binary.BigEndian.AppendUint16(nil, hi)}
}

func ifnameSpan(name string) span {
	b := make([]byte, ifNameSize)
	copy(b, name)
	return exact(b)
}

// printAddrs writes an address range as nft does: an address, a prefix
// when the range is one, otherwise first-last.
func printAddrs(s span) string {
	lo, hi := netip.AddrFrom4([4]byte(s.lo)), netip.AddrFrom4([4]byte(s.hi))
	if lo == hi {
		return lo.String()
	}
	for bits := 0; bits < 32; bits++ {
		if p := netip.PrefixFrom(lo, bits); p.Masked().Addr() == lo && bytes.Equal(prefixSpan(p).hi, s.hi) {
			return p.String()
		}
	}
	return lo.String() + "-" + hi.String()
}

var protoNames = map[uint8]string{1: "icmp", 6: "tcp", 17: "udp", 58: "ipv6-icmp", 132: "sctp"}

func protoName(p uint8) string {
	if n, ok := protoNames[p]; ok {
		return n
	}
	return strconv.Itoa(int(p))
}

func printProtos(s span) string {
	if s.lo[0] == s.hi[0] {
		return protoName(s.lo[0])
	}
	return protoName(s.lo[0]) + "-" + protoName(s.hi[0])
}

func printPorts(s span) string {
	lo, hi := binary.BigEndian.Uint16(s.lo), binary.BigEndian.Uint16(s.hi)
	if lo == hi {
		return strconv.Itoa(int(lo))
	}
	return strconv.Itoa(int(lo)) + "-" + strconv.Itoa(int(hi))
}

func printIfnames(s span) string {
	name := strconv.Quote(string(bytes.TrimRight(s.lo, "\x00")))
	if !bytes.Equal(s.lo, s.hi) {
		return name + "-" + strconv.Quote(string(bytes.TrimRight(s.hi, "\x00")))
	}
	return name
}
