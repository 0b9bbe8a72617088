package dns

import (
	"net/netip"
	"slices"
	"testing"
)

func TestReverseZones(t *testing.T) {
	for _, c := range []struct {
		prefix string
		want   []string
	}{
		{"192.168.100.0/24", []string{"100.168.192.in-addr.arpa."}},
		{"10.2.10.0/23", []string{"10.2.10.in-addr.arpa.", "11.2.10.in-addr.arpa."}},
		{"10.10.0.0/16", []string{"10.10.in-addr.arpa."}},
		{"192.168.1.128/25", []string{"1.168.192.in-addr.arpa."}},
		{"fd00:1:2::/48", []string{"2.0.0.0.1.0.0.0.0.0.d.f.ip6.arpa."}},
	} {
		if got := reverseZones(netip.MustParsePrefix(c.prefix)); !slices.Equal(got, c.want) {
			t.Errorf("%s: %v, want %v", c.prefix, got, c.want)
		}
	}
	// Tasmanian's 100.64.0.0/10: one zone per /16 it covers.
	got := reverseZones(netip.MustParsePrefix("100.64.0.0/10"))
	if len(got) != 64 || got[0] != "64.100.in-addr.arpa." || got[63] != "127.100.in-addr.arpa." {
		t.Errorf("100.64.0.0/10: %d zones, %v … %v", len(got), got[0], got[len(got)-1])
	}
}
