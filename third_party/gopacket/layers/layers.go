// Package layers holds the constants Nebula (outside.go, v1.11.0) uses
// from github.com/google/gopacket/layers, with their IANA values, so
// that Holdfast does not link gopacket's decoder tables (see ../README.md).
package layers

// IPProtocol is an IP protocol number (IANA "Assigned Internet Protocol
// Numbers"), as in an IPv4 header's protocol or an IPv6 next header.
type IPProtocol uint8

// The IP protocol numbers Nebula matches.
const (
	IPProtocolTCP          IPProtocol = 6
	IPProtocolUDP          IPProtocol = 17
	IPProtocolIPv6Fragment IPProtocol = 44
	IPProtocolESP          IPProtocol = 50
	IPProtocolAH           IPProtocol = 51
	IPProtocolICMPv6       IPProtocol = 58
	IPProtocolNoNextHeader IPProtocol = 59
)

// ICMPv6 message types (IANA "ICMPv6 Parameters") Nebula matches:
// untyped, as Nebula compares them with a byte.
const (
	ICMPv6TypeEchoRequest = 128
	ICMPv6TypeEchoReply   = 129
)
