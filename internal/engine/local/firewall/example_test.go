package firewall_test

import (
	"fmt"

	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/engine/local/firewall"
)

// A site with two zones on nodes behind the underlay ul: ops reaches srv
// and the internet; web in srv is open to the internet on 443 and may send
// NTP out.
func ExampleRuleset() {
	ops, srv := 10010, 10210
	in := firewall.Input{
		WAN:      "wan0",
		Underlay: "ul",
		Site:     "a",
		Zones: []compile.Zone{
			{Name: "ops", CIDR: "10.0.10.0/24", VNI: &ops, Sites: []string{"a"}},
			{Name: "srv", CIDR: "10.2.10.0/24", VNI: &srv, Sites: []string{"a"}},
		},
		Flows: []compile.Flow{
			{From: "ops", To: "srv", Proto: "any", Kind: compile.KindAccess, FromCIDR: "10.0.10.0/24", ToCIDR: "10.2.10.0/24"},
			{From: "ops", To: "internet", Proto: "any", Kind: compile.KindInternet, FromCIDR: "10.0.10.0/24"},
			{From: "internet", To: "web", Proto: "tcp", Ports: []string{"443"}, Kind: compile.KindPinhole, ToCIDR: "10.2.10.5/32"},
			{From: "web", To: "internet", Proto: "udp", Ports: []string{"123"}, Kind: compile.KindEgress, FromCIDR: "10.2.10.5/32"},
		},
	}
	s, err := firewall.Ruleset(in)
	if err != nil {
		panic(err)
	}
	fmt.Print(s)
	// Output:
	// table inet holdfast {
	// 	set cloud {
	// 		type ipv4_addr
	// 		flags interval
	// 		elements = { 10.0.10.0/24,
	// 			     10.2.10.0/24 }
	// 	}
	//
	// 	set local {
	// 		type ipv4_addr
	// 		flags interval
	// 		elements = { 10.0.10.0/24,
	// 			     10.2.10.0/24 }
	// 	}
	//
	// 	set bridges {
	// 		type ifname
	// 		elements = { "br10010",
	// 			     "br10210" }
	// 	}
	//
	// 	set bridge_src {
	// 		type ifname . ipv4_addr
	// 		flags interval
	// 		elements = { "br10010" . 10.0.10.0/24,
	// 			     "br10210" . 10.2.10.0/24 }
	// 	}
	//
	// 	set from_zone {
	// 		type ipv4_addr . ipv4_addr
	// 		flags interval
	// 		elements = { 10.0.10.0/24 . 10.0.10.0/24,
	// 			     10.0.10.0/24 . 10.2.10.0/24,
	// 			     10.2.10.0/24 . 10.2.10.0/24 }
	// 	}
	//
	// 	set from_zone_proto {
	// 		type ipv4_addr . ipv4_addr . inet_proto
	// 		flags interval
	// 	}
	//
	// 	set from_zone_port {
	// 		type ipv4_addr . ipv4_addr . inet_proto . inet_service
	// 		flags interval
	// 	}
	//
	// 	set from_host {
	// 		type ipv4_addr . ipv4_addr
	// 		flags interval
	// 	}
	//
	// 	set from_host_proto {
	// 		type ipv4_addr . ipv4_addr . inet_proto
	// 		flags interval
	// 	}
	//
	// 	set from_host_port {
	// 		type ipv4_addr . ipv4_addr . inet_proto . inet_service
	// 		flags interval
	// 	}
	//
	// 	set inbound {
	// 		type ipv4_addr
	// 		flags interval
	// 	}
	//
	// 	set inbound_proto {
	// 		type ipv4_addr . inet_proto
	// 		flags interval
	// 	}
	//
	// 	set inbound_port {
	// 		type ipv4_addr . inet_proto . inet_service
	// 		flags interval
	// 		elements = { 10.2.10.5 . tcp . 443 }
	// 	}
	//
	// 	set outbound {
	// 		type ipv4_addr
	// 		flags interval
	// 		elements = { 10.0.10.0/24 }
	// 	}
	//
	// 	set outbound_proto {
	// 		type ipv4_addr . inet_proto
	// 		flags interval
	// 	}
	//
	// 	set outbound_port {
	// 		type ipv4_addr . inet_proto . inet_service
	// 		flags interval
	// 		elements = { 10.2.10.5 . udp . 123 }
	// 	}
	//
	// 	chain prerouting {
	// 		type filter hook prerouting priority raw; policy accept;
	// 		iifname @bridges udp dport 67 accept
	// 		iifname "wan0" ip saddr @local drop
	// 		iifname @bridges iifname . ip saddr != @bridge_src drop
	// 	}
	//
	// 	chain input {
	// 		type filter hook input priority filter; policy drop;
	// 		ct state established,related accept
	// 		ct state invalid drop
	// 		iifname "lo" accept
	// 		iifname "ul" udp dport 4789 accept
	// 		iifname @bridges icmp type echo-request accept
	// 		iifname @bridges udp dport 53 accept
	// 		iifname @bridges tcp dport 53 accept
	// 		iifname @bridges udp dport 67 accept
	// 		drop
	// 	}
	//
	// 	chain forward {
	// 		type filter hook forward priority filter; policy drop;
	// 		ct state established,related accept
	// 		ct state invalid drop
	// 		iifname "ul" oifname "ul" accept
	// 		ip saddr . ip daddr @from_zone accept
	// 		ip saddr . ip daddr . meta l4proto @from_zone_proto accept
	// 		ip saddr . ip daddr . meta l4proto . th dport @from_zone_port accept
	// 		ip saddr . ip daddr @from_host accept
	// 		ip saddr . ip daddr . meta l4proto @from_host_proto accept
	// 		ip saddr . ip daddr . meta l4proto . th dport @from_host_port accept
	// 		iifname "wan0" ip saddr != @cloud jump inbound
	// 		iifname != "wan0" oifname "wan0" ip daddr != @cloud jump outbound
	// 		drop
	// 	}
	//
	// 	chain inbound {
	// 		ip daddr @inbound accept
	// 		ip daddr . meta l4proto @inbound_proto accept
	// 		ip daddr . meta l4proto . th dport @inbound_port accept
	// 	}
	//
	// 	chain outbound {
	// 		ip saddr @outbound accept
	// 		ip saddr . meta l4proto @outbound_proto accept
	// 		ip saddr . meta l4proto . th dport @outbound_port accept
	// 	}
	//
	// 	chain postrouting {
	// 		type nat hook postrouting priority srcnat; policy accept;
	// 		oifname "wan0" ip saddr @cloud ip daddr != @cloud masquerade
	// 	}
	// }
}
