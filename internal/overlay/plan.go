package overlay

import (
	"fmt"
	"net/netip"

	"github.com/holdfast/holdfast/internal/compile"
)

// Plan is what a compiled cloud says of one overlay member: the identity
// its certificate must carry, and its Nebula config but for the PKI, which
// the caller adds once the certificate is issued (NodeConfig.PKI).
func Plan(o *compile.Overlay, name string) (Member, NodeConfig, error) {
	if o == nil {
		return Member{}, NodeConfig{}, fmt.Errorf("overlay member %q: the cloud has no overlay", name)
	}
	var m *compile.Member
	for i := range o.Members {
		if o.Members[i].Name == name {
			m = &o.Members[i]
		}
	}
	if m == nil {
		return Member{}, NodeConfig{}, fmt.Errorf("%q is not a member of the overlay (an instance joins it by having groups)", name)
	}
	ip, err := netip.ParsePrefix(m.OverlayIP)
	if err != nil {
		return Member{}, NodeConfig{}, fmt.Errorf("overlay member %q: address %q: %w", name, m.OverlayIP, err)
	}
	n := NodeConfig{AmLighthouse: m.Lighthouse, ListenPort: o.Port}
	for _, lh := range o.Lighthouses {
		a, err := netip.ParseAddr(lh.OverlayIP)
		if err != nil {
			return Member{}, NodeConfig{}, fmt.Errorf("overlay lighthouse %q: address %q: %w", lh.Instance, lh.OverlayIP, err)
		}
		n.Lighthouses = append(n.Lighthouses, Lighthouse{IP: a, Underlay: []string{lh.Underlay}})
	}
	for _, r := range m.Inbound {
		n.Inbound = append(n.Inbound, Rule{Port: r.Port, Proto: r.Proto, Host: r.Host, Group: r.Group})
	}
	// The certificate is named for the instance: Nebula's host rules and
	// its logs name peers by it.
	return Member{Name: m.Name, IP: ip, Groups: m.Groups}, n, nil
}
