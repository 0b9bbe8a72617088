package local

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"

	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/engine/local/container"
)

// nicLink names a node's end of an instance interface: v<vmid>n<index>
// fits the 15 bytes of an interface name for any VMID.
func nicLink(vmid, index int) string { return "v" + strconv.Itoa(vmid) + "n" + strconv.Itoa(index) }

// containerConfig is how an instance runs.
func (e *Engine) containerConfig(in compile.Instance) container.Config {
	cfg := container.Config{
		Name:      in.Name,
		NetNS:     nsPath(e.instNS(in.Name)),
		Dir:       e.instDir(in.Name),
		Cgroup:    e.cgroup(in.Name),
		Command:   in.Command,
		CPUs:      in.CPUs,
		MemoryMiB: in.MemoryMiB,
	}
	for _, p := range in.Ports {
		cfg.Ports = append(cfg.Ports, container.Port{Port: p.Port, Proto: p.Proto})
	}
	// On this engine a template's image is a root file system directory;
	// images of other engines (a Proxmox template VMID, a file name) mean
	// nothing here, and the instance sees the host's file system.
	if fi, err := os.Stat(in.Image); err == nil && fi.IsDir() && filepath.IsAbs(in.Image) {
		cfg.Rootfs = in.Image
		if len(in.NICs) > 0 {
			cfg.Nameservers = []string{in.NICs[0].Gateway}
		}
		cfg.SearchDomain = strings.TrimPrefix(in.FQDN, in.Name+".")
	}
	return cfg
}

// ensureInstance makes the instance's namespace and interfaces and runs
// it. Interfaces in zones that are not present are left out.
func (e *Engine) ensureInstance(ctx context.Context, name string) error {
	in, ok := e.instance(name)
	if !ok {
		return fmt.Errorf("instance %q is not in the desired state", name)
	}
	ns := e.instNS(name)
	if err := ensureNS(ns); err != nil {
		return err
	}
	hi, err := openHandle(ns)
	if err != nil {
		return err
	}
	defer hi.Close()
	if err := hi.ensureLo(); err != nil {
		return err
	}
	hn, err := openHandle(e.nodeNS(in.Site, in.Node))
	if err != nil {
		return fmt.Errorf("instance %s: node %s: %w", name, in.Node, err)
	}
	defer hn.Close()
	want := map[string]bool{}
	for _, nic := range in.NICs {
		z, ok := e.zone(nic.Zone)
		if !ok || !z.Present || z.VNI == nil {
			continue
		}
		link := nicLink(in.VMID, nic.Index)
		want[link] = true
		if err := e.ensureNIC(hn, hi, link, nic, *z.VNI); err != nil {
			return fmt.Errorf("instance %s: %w", name, err)
		}
	}
	// Interfaces the instance no longer has.
	links, err := hn.links()
	if err != nil {
		return err
	}
	for _, l := range links {
		n := l.Attrs().Name
		if strings.HasPrefix(n, "v"+strconv.Itoa(in.VMID)+"n") && !want[n] {
			if err := hn.deleteLink(n); err != nil {
				return err
			}
		}
	}
	if len(in.NICs) > 0 && want[nicLink(in.VMID, 0)] {
		gw, err := netip.ParseAddr(in.NICs[0].Gateway)
		if err != nil {
			return err
		}
		if err := hi.ensureRoute(nil, gw); err != nil {
			return err
		}
	}
	cfg := e.containerConfig(in)
	st, err := container.Inspect(cfg.Dir)
	if err == nil && st.Running && !sameConfig(st.Config, cfg) {
		// Changed command, ports or limits: restart with the new ones.
		if err := container.Stop(ctx, st.Config); err != nil {
			return fmt.Errorf("instance %s: restart: %w", name, err)
		}
	}
	if _, err := container.Start(ctx, cfg); err != nil {
		return fmt.Errorf("instance %s: %w", name, err)
	}
	return nil
}

func sameConfig(a, b container.Config) bool {
	a.Dir, b.Dir = "", ""
	return reflect.DeepEqual(normalize(a), normalize(b))
}

// normalize makes configurations comparable after a JSON round trip
// (nil and empty lists read alike).
func normalize(c container.Config) container.Config {
	if len(c.Command) == 0 {
		c.Command = nil
	}
	if len(c.Ports) == 0 {
		c.Ports = nil
	}
	if len(c.Env) == 0 {
		c.Env = nil
	}
	if len(c.Nameservers) == 0 {
		c.Nameservers = nil
	}
	if c.PIDs == 0 {
		c.PIDs = container.DefaultPIDs
	}
	return c
}

// ensureNIC makes one interface: a veth from the node's zone bridge into
// the instance, with the compiled MAC and address.
func (e *Engine) ensureNIC(hn, hi *handle, link string, nic compile.NIC, vni int) error {
	mac, err := net.ParseMAC(nic.MAC)
	if err != nil {
		return err
	}
	near, far, err := hn.ensureVeth(link, hi, "eth"+strconv.Itoa(nic.Index), zoneMTU, mac)
	if err != nil {
		return err
	}
	br, err := hn.byName(bridgeName(vni))
	if err != nil || br == nil {
		return fmt.Errorf("zone %s has no bridge on this node (is the network made?): %w", nic.Zone, err)
	}
	if err := hn.ensureMaster(near, br); err != nil {
		return err
	}
	if err := hn.up(near); err != nil {
		return err
	}
	if far.Attrs().HardwareAddr.String() != mac.String() {
		if err := hi.link.LinkSetHardwareAddr(far, mac); err != nil {
			return fmt.Errorf("mac of %s: %w", far.Attrs().Name, err)
		}
	}
	ip, err := netip.ParseAddr(nic.IP)
	if err != nil {
		return err
	}
	if err := hi.ensureAddr(far, netip.PrefixFrom(ip, nic.Prefix)); err != nil {
		return err
	}
	return hi.up(far)
}

// deleteInstance stops the instance and removes its namespace and its
// interfaces on the node.
func (e *Engine) deleteInstance(ctx context.Context, name string) error {
	cfg := container.Config{Name: name, NetNS: nsPath(e.instNS(name)), Dir: e.instDir(name), Cgroup: e.cgroup(name)}
	if err := container.Stop(ctx, cfg); err != nil {
		return fmt.Errorf("instance %s: stop: %w", name, err)
	}
	// The node's ends of the veths would go with the namespace, but only
	// once the kernel gets round to it; remove them now so that a new
	// instance with the same VMID finds the names free.
	if in, ok := e.instance(name); ok && nsExists(e.nodeNS(in.Site, in.Node)) {
		hn, err := openHandle(e.nodeNS(in.Site, in.Node))
		if err != nil {
			return err
		}
		for _, nic := range in.NICs {
			if err := hn.deleteLink(nicLink(in.VMID, nic.Index)); err != nil {
				hn.Close()
				return err
			}
		}
		hn.Close()
	}
	return deleteNS(e.instNS(name))
}
