package spec

import "net/netip"

// PrefixSize is the number of addresses in an IPv4 prefix.
func PrefixSize(p netip.Prefix) int64 { return int64(1) << (32 - p.Bits()) }

// AddrAt returns the address at offset off from p's network address.
func AddrAt(p netip.Prefix, off int64) netip.Addr {
	return U32Addr(AddrU32(p.Addr()) + uint32(off))
}

// AddrU32 and U32Addr convert IPv4 addresses to and from integers.
func AddrU32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func U32Addr(u uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(u >> 24), byte(u >> 16), byte(u >> 8), byte(u)})
}

// InRange reports whether a lies in [lo, hi].
func InRange(a, lo, hi netip.Addr) bool { return a.Compare(lo) >= 0 && a.Compare(hi) <= 0 }
