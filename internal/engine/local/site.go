package local

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"strings"
)

// nodeLink names the edge's end of a node's underlay veth: derived from the
// node's name (interface names hold 15 bytes; node names up to 63).
func nodeLink(node string) string {
	sum := sha256.Sum256([]byte(node))
	return "u" + hex.EncodeToString(sum[:4])
}

// ensureSite makes the site's plumbing: the internet namespace (shared by
// the cloud's sites), the edge with its uplink and underlay bridge, and a
// namespace per node joined to the underlay.
func (e *Engine) ensureSite(name string) error {
	site, ok := e.site(name)
	if !ok {
		return fmt.Errorf("site %q is not in the desired state", name)
	}
	index, err := e.siteIndex(name)
	if err != nil {
		return err
	}
	e.nsMu.Lock()
	defer e.nsMu.Unlock()
	if err := e.ensureInternet(); err != nil {
		return err
	}
	edge := e.edgeNS(name)
	if err := ensureNS(edge); err != nil {
		return err
	}
	he, err := openHandle(edge)
	if err != nil {
		return err
	}
	defer he.Close()
	hi, err := openHandle(e.inetNS())
	if err != nil {
		return err
	}
	defer hi.Close()
	if err := he.ensureLo(); err != nil {
		return err
	}
	if err := sysctl(edge, "ipv4.ip_forward", "1"); err != nil {
		return fmt.Errorf("%s: ip_forward: %w", edge, err)
	}

	// Uplink: wan0 here, s<index> on the internet's bridge.
	wan, far, err := he.ensureVeth(wanIf, hi, fmt.Sprintf("s%d", index), zoneMTU, nil)
	if err != nil {
		return err
	}
	wanBridge, err := hi.byName("wan")
	if err != nil || wanBridge == nil {
		return fmt.Errorf("%s: bridge wan missing: %w", hi.ns, err)
	}
	if err := hi.ensureMaster(far, wanBridge); err != nil {
		return err
	}
	if err := hi.up(far); err != nil {
		return err
	}
	if err := he.ensureAddr(wan, netip.PrefixFrom(edgeWAN(index), wanNet.Bits())); err != nil {
		return err
	}
	if err := he.up(wan); err != nil {
		return err
	}
	if err := he.ensureRoute(nil, inetAddr); err != nil {
		return err
	}

	// Underlay: a bridge on the edge, one veth per node.
	ul, err := he.ensureBridge("ul", "", underlayMTU)
	if err != nil {
		return err
	}
	if err := he.ensureAddr(ul, netip.PrefixFrom(edgeUnder, underlayNet.Bits())); err != nil {
		return err
	}
	for i, node := range site.Nodes {
		ns := e.nodeNS(name, node)
		if err := ensureNS(ns); err != nil {
			return err
		}
		if err := e.ensureNode(he, ul.Attrs().Name, ns, node, i); err != nil {
			return err
		}
	}
	// Nodes no longer in the site go, with everything on them.
	existing, err := listNS(e.prefix() + "n." + name + ".")
	if err != nil {
		return err
	}
	for _, ns := range existing {
		node := strings.TrimPrefix(ns, e.prefix()+"n."+name+".")
		if !contains(site.Nodes, node) {
			if err := he.deleteLink(nodeLink(node)); err != nil {
				return err
			}
			if err := deleteNS(ns); err != nil {
				return err
			}
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (e *Engine) ensureNode(he *handle, ulName, ns, node string, index int) error {
	hn, err := openHandle(ns)
	if err != nil {
		return err
	}
	defer hn.Close()
	if err := hn.ensureLo(); err != nil {
		return err
	}
	// Bridged traffic inside a node is one zone's own: it must not meet a
	// firewall there (the zones' firewall is the edge).
	if err := sysctl(ns, "bridge.bridge-nf-call-iptables", "0"); err != nil && !strings.Contains(err.Error(), "no such file") {
		return fmt.Errorf("%s: bridge-nf-call-iptables: %w", ns, err)
	}
	near, far, err := he.ensureVeth(nodeLink(node), hn, "ul0", underlayMTU, nil)
	if err != nil {
		return err
	}
	ul, err := he.byName(ulName)
	if err != nil || ul == nil {
		return fmt.Errorf("%s: underlay bridge missing: %w", he.ns, err)
	}
	if err := he.ensureMaster(near, ul); err != nil {
		return err
	}
	if err := he.up(near); err != nil {
		return err
	}
	if err := hn.ensureAddr(far, netip.PrefixFrom(nodeUnder(index), underlayNet.Bits())); err != nil {
		return err
	}
	return hn.up(far)
}

// ensureInternet makes the namespace that plays the internet: a bridge the
// site edges' uplinks join, forwarding between them, and an address that
// stands for a host on the internet. Callers hold nsMu.
func (e *Engine) ensureInternet() error {
	ns := e.inetNS()
	if err := ensureNS(ns); err != nil {
		return err
	}
	h, err := openHandle(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	if err := h.ensureLo(); err != nil {
		return err
	}
	if err := sysctl(ns, "ipv4.ip_forward", "1"); err != nil {
		return fmt.Errorf("%s: ip_forward: %w", ns, err)
	}
	br, err := h.ensureBridge("wan", "", zoneMTU)
	if err != nil {
		return err
	}
	if err := h.ensureAddr(br, netip.PrefixFrom(inetAddr, wanNet.Bits())); err != nil {
		return err
	}
	lo, err := h.byName("lo")
	if err != nil || lo == nil {
		return fmt.Errorf("%s: no lo: %w", ns, err)
	}
	host := netip.PrefixFrom(InternetHost, 32)
	if !h.hasAddr(lo, host) {
		if err := h.link.AddrAdd(lo, toNetlinkAddr(host)); err != nil {
			return fmt.Errorf("%s: address %s: %w", ns, host, err)
		}
	}
	return nil
}

// deleteSite removes the site's edge and nodes (and with them every
// interface there), and the internet namespace once no site is left.
func (e *Engine) deleteSite(name string) error {
	e.nsMu.Lock()
	defer e.nsMu.Unlock()
	nodes, err := listNS(e.prefix() + "n." + name + ".")
	if err != nil {
		return err
	}
	for _, ns := range nodes {
		if err := deleteNS(ns); err != nil {
			return err
		}
	}
	// The edge's services run in its namespace: stopped first, so that
	// nothing holds the namespace once it is deleted.
	if err := e.deleteEdgeServices(context.Background(), name); err != nil {
		return err
	}
	if err := deleteNS(e.edgeNS(name)); err != nil {
		return err
	}
	if err := os.RemoveAll(e.edgeDir(name)); err != nil {
		return err
	}
	edges, err := listNS(e.prefix() + "e.")
	if err != nil {
		return err
	}
	if len(edges) == 0 {
		return deleteNS(e.inetNS())
	}
	return nil
}
