package local

import (
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/holdfast/holdfast/internal/agent"
	"github.com/holdfast/holdfast/internal/atomicfile"
	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/engine"
	"github.com/holdfast/holdfast/internal/engine/local/container"
	"github.com/holdfast/holdfast/internal/guest"
)

// nicLink names a node's end of an instance interface: v<vmid>n<index>
// fits the 15 bytes of an interface name for any VMID.
func nicLink(vmid, index int) string { return "v" + strconv.Itoa(vmid) + "n" + strconv.Itoa(index) }

// What the engine keeps in an instance's directory beside the container's
// own files (see package container):
//
//	instance.json  the reboot and rebuild generations last realized
//	ssh/           bound at /root/.ssh inside: authorized_keys from the spec
//	agent/         bound at /run/holdfast/agent inside: the agent's settings
//	               (agent.json), its token, and its state (the last
//	               configuration it applied)
//	home/          without a root file system: bound at /root, the
//	               instance's own home on the host's file system
//	overlay/       with a root file system: the instance's writable layer
//	               over the template, which is never written
//
// home/ and overlay/ are the instance's writable state: a rebuild empties
// them. ssh/, agent/ and instance.json are the engine's and survive it.
const (
	recordFile = "instance.json"
	agentDir   = "agent"
	sshDir     = "ssh"
	homeDir    = "home"
	overlayDir = "overlay"
)

// AuthorizedKeys is where the engine keeps an instance's authorized_keys on
// the host; inside the instance it is /root/.ssh/authorized_keys.
func AuthorizedKeys(stateDir, instance string) string {
	return filepath.Join(InstanceDir(stateDir, instance), sshDir, "authorized_keys")
}

// containerConfig is how an instance runs.
func (e *Engine) containerConfig(in compile.Instance) container.Config {
	dir := e.instDir(in.Name)
	cfg := container.Config{
		Name:      in.Name,
		NetNS:     nsPath(e.instNS(in.Name)),
		Dir:       dir,
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
	// nothing here, and the instance sees the host's file system, with a
	// home of its own.
	if fi, err := os.Stat(in.Image); err == nil && fi.IsDir() && filepath.IsAbs(in.Image) {
		cfg.Rootfs = in.Image
		cfg.Overlay = filepath.Join(dir, overlayDir)
	} else {
		cfg.Binds = append(cfg.Binds, container.Bind{Source: filepath.Join(dir, homeDir), Target: "/root"})
	}
	cfg.Binds = append(cfg.Binds, container.Bind{Source: filepath.Join(dir, sshDir), Target: "/root/.ssh"})
	cfg.Nameservers = slices.Clone(in.Resolvers)
	cfg.SearchDomain = strings.TrimPrefix(in.FQDN, in.Name+".")
	if e.agents != nil && e.desired.HasGuest(in.Site, in.Name) && agentRunsIn(cfg.Rootfs) {
		// The guest service's socket directory, not the socket: a
		// service that restarts makes a new socket, which the instance
		// then sees.
		cfg.Binds = append(cfg.Binds,
			container.Bind{Source: filepath.Join(dir, agentDir), Target: agentMount},
			container.Bind{Source: e.agents.SocketDir(), Target: guestMount})
		cfg.Agent = []string{agent.EnvConfig + "=" + agentMount + "/agent.json"}
		if e.desired.DNS != nil && slices.ContainsFunc(e.desired.DNS.Servers, func(d compile.DNSServer) bool { return d.Instance == in.Name }) {
			// Its agent answers on 53, not the built-in responder.
			cfg.Ports = slices.DeleteFunc(cfg.Ports, func(p container.Port) bool { return p.Port == 53 })
		}
		// A front end's agent answers on its routes' ports.
		door := guest.FrontDoorPorts(e.desired, in.Site, in.Name)
		cfg.Ports = slices.DeleteFunc(cfg.Ports, func(p container.Port) bool { return p.Proto == "tcp" && slices.Contains(door, p.Port) })
	}
	return cfg
}

// agentRunsIn reports whether this program, which the init runs as the
// agent, can run inside rootfs ("": the host's file system): a
// dynamically linked holdfast needs its ELF interpreter there. A minimal
// root file system (busybox) lacks it; such an instance runs no agent, and
// holdfast status says it never reported (docs/agent.md).
func agentRunsIn(rootfs string) bool {
	if rootfs == "" {
		return true
	}
	interp, err := selfInterpreter()
	if err != nil {
		return false
	}
	if interp == "" {
		return true // static
	}
	fi, err := os.Stat(filepath.Join(rootfs, interp))
	return err == nil && fi.Mode().IsRegular()
}

// selfInterpreter is the ELF interpreter this program asks for ("" when
// it is linked statically).
var selfInterpreter = sync.OnceValues(func() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	f, err := elf.Open(exe)
	if err != nil {
		return "", err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b, err := io.ReadAll(p.Open())
			if err != nil {
				return "", err
			}
			return strings.TrimRight(string(b), "\x00"), nil
		}
	}
	return "", nil
})

// Where an instance finds its agent's files and the guest service.
const (
	agentMount = "/run/holdfast/agent"
	guestMount = "/run/holdfast/guest"
)

// writeAgent puts the agent's settings and the instance's current token
// in place. The token file is replaced atomically: the agent reads it again
// when the service refuses the one it holds (after a rotation).
func (e *Engine) writeAgent(dir string, in compile.Instance) error {
	if len(e.containerConfig(in).Agent) == 0 {
		return nil
	}
	d := filepath.Join(dir, agentDir)
	if err := os.MkdirAll(filepath.Join(d, "state"), 0o700); err != nil {
		return err
	}
	if err := os.MkdirAll(e.agents.SocketDir(), 0o700); err != nil {
		return err
	}
	settings, err := json.MarshalIndent(guest.AgentSettings{
		Server:    "unix://" + guestMount + "/" + engine.SocketName,
		TokenFile: agentMount + "/token",
		StateDir:  agentMount + "/state",
	}, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(d, "agent.json"), append(settings, '\n'), 0o600); err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(d, "token"), []byte(e.agents.Token(compile.InstanceID(in.Site, in.Name))+"\n"), 0o600)
}

// agentDrift names an agent token that is not the instance's current one
// (rotated, or tampered with), without printing either.
func (e *Engine) agentDrift(dir string, in compile.Instance) []string {
	if len(e.containerConfig(in).Agent) == 0 {
		return nil
	}
	b, err := os.ReadFile(filepath.Join(dir, agentDir, "token"))
	if err != nil {
		return []string{"agent: no token delivered"}
	}
	if !e.agents.Equal(compile.InstanceID(in.Site, in.Name), strings.TrimSpace(string(b))) {
		return []string{"agent: the token delivered is not the instance's current one"}
	}
	return nil
}

// instanceRecord is what the engine remembers of an instance between
// applies: the generations it last realized, and its site, which names
// it once it is no longer desired.
type instanceRecord struct {
	Site    string `json:"site,omitempty"`
	Reboot  int    `json:"reboot"`
	Rebuild int    `json:"rebuild"`
}

func readRecord(dir string) (instanceRecord, bool) {
	var rec instanceRecord
	b, err := os.ReadFile(filepath.Join(dir, recordFile))
	if err != nil || json.Unmarshal(b, &rec) != nil {
		return rec, false
	}
	return rec, true
}

func writeRecord(dir string, rec instanceRecord) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, recordFile), b, 0o600)
}

// writeKeys puts the instance's authorized_keys in place (0700 directory,
// 0600 file, owned by root), replacing the file atomically so that the
// instance, which sees the directory live, never reads half of it. No keys
// is no file.
func writeKeys(dir string, keys []string) error {
	ssh := filepath.Join(dir, sshDir)
	if err := os.MkdirAll(ssh, 0o700); err != nil {
		return err
	}
	if err := os.Chmod(ssh, 0o700); err != nil {
		return err
	}
	file := filepath.Join(ssh, "authorized_keys")
	if len(keys) == 0 {
		if err := os.Remove(file); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	return atomicfile.Write(file, []byte(strings.Join(keys, "\n")+"\n"), 0o600)
}

// keysDigest reads back the authorized_keys an instance has, as
// compile.SSHKeysDigest names them. The instance may have replaced the
// file by anything; a link is not followed.
func keysDigest(dir string) string {
	file := filepath.Join(dir, sshDir, "authorized_keys")
	f, err := os.OpenFile(file, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return ""
	}
	if err != nil {
		return "unreadable"
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return "not a file"
	}
	b, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return "unreadable"
	}
	text := strings.TrimSuffix(string(b), "\n")
	if text == "" {
		return compile.SSHKeysDigest(nil)
	}
	return compile.SSHKeysDigest(strings.Split(text, "\n"))
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
	if err := e.ensureContainer(ctx, in); err != nil {
		return fmt.Errorf("instance %s: %w", name, err)
	}
	return nil
}

// ensureContainer brings the instance's container to its desired power,
// configuration, size, generations and keys, changing no more than it
// must: a resize is done in place, a reboot restarts the container (its
// namespace, interfaces and addresses stay), a rebuild also empties its
// writable state, a stopped instance keeps everything but its processes.
// The generations are recorded last, so a crash before that repeats a
// reboot or rebuild rather than losing it.
func (e *Engine) ensureContainer(ctx context.Context, in compile.Instance) error {
	cfg := e.containerConfig(in)
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return err
	}
	if err := writeKeys(cfg.Dir, in.SSHKeys); err != nil {
		return fmt.Errorf("ssh keys: %w", err)
	}
	if err := e.writeAgent(cfg.Dir, in); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	rec, known := readRecord(cfg.Dir)
	st, err := container.Inspect(cfg.Dir)
	if err != nil {
		return err
	}
	restart := false
	switch {
	case known && rec.Rebuild != in.Rebuild:
		if err := container.Stop(ctx, cfg); err != nil {
			return fmt.Errorf("rebuild: %w", err)
		}
		for _, d := range []string{homeDir, overlayDir} {
			if err := os.RemoveAll(filepath.Join(cfg.Dir, d)); err != nil {
				return fmt.Errorf("rebuild: %w", err)
			}
		}
	case !st.Running:
	case !sameConfig(st.Config, cfg):
		restart = true // a changed command, ports or root file system
	case known && rec.Reboot != in.Reboot:
		restart = true
	case st.CPUs != cfg.CPUs || st.MemoryMiB != cfg.MemoryMiB:
		err := container.Resize(ctx, cfg.Dir, cfg.CPUs, cfg.MemoryMiB)
		restart = errors.Is(err, container.ErrResize) // memory it cannot give back: a restart can
		if err != nil && !restart {
			return err
		}
	}
	if restart || in.Power == compile.PowerStopped {
		if err := container.Stop(ctx, cfg); err != nil {
			return fmt.Errorf("stop: %w", err)
		}
	}
	if in.Power != compile.PowerStopped {
		if cfg.Overlay == "" {
			if err := os.MkdirAll(filepath.Join(cfg.Dir, homeDir), 0o700); err != nil {
				return err
			}
		}
		if _, err := container.Start(ctx, cfg); err != nil {
			return err
		}
	}
	return writeRecord(cfg.Dir, instanceRecord{Site: in.Site, Reboot: in.Reboot, Rebuild: in.Rebuild})
}

// sameConfig reports whether a container runs as cfg would make it, its
// limits aside: those change in place.
func sameConfig(a, b container.Config) bool {
	a.Dir, b.Dir = "", ""
	a.CPUs, b.CPUs, a.MemoryMiB, b.MemoryMiB = 0, 0, 0, 0
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
	if len(c.Binds) == 0 {
		c.Binds = nil
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
	if err := deleteNS(e.instNS(name)); err != nil {
		return err
	}
	// Its keys, its home or writable layer, its record.
	return os.RemoveAll(e.instDir(name))
}
