package local_test

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/google/nftables"
	mdnetlink "github.com/mdlayher/netlink"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/engine/enginetest"
	"github.com/holdfast/holdfast/internal/engine/local"
	"github.com/holdfast/holdfast/internal/testenv"
)

func TestMain(m *testing.M) { enginetest.Main(m) }

// The local engine passes the conformance suite, on this host's kernel.
func TestConformance(t *testing.T) {
	testenv.NeedRoot(t, "network namespaces, nftables and cgroups")
	// Clouds named for this process, so that they never meet a user's or
	// another package's test clouds: hf.<prefix>… is all the harness sees.
	prefix := fmt.Sprintf("ct%d", os.Getpid()%100000)
	enginetest.Run(t, enginetest.Harness{
		Engine: local.Name,
		Desired: func(t enginetest.T, cloud string) *compile.State {
			return compiled(t, prefix+cloud)
		},
		Fingerprint: func(t enginetest.T) string { return fingerprint(t, "hf."+prefix) },
		Check:       func(t enginetest.T, clouds ...*compile.State) { check(t, "hf."+prefix, clouds) },
		Drift:       drift,
		Fault: func(t enginetest.T, st *compile.State, permanent bool) (compile.ID, func()) {
			in := &st.Instances[len(st.Instances)-1]
			id := compile.InstanceID(in.Site, in.Name)
			if permanent {
				// A service that does not exist fails to start however
				// often the engine tries.
				cmd := in.Command
				in.Command = []string{"/nonexistent/service"}
				return id, func() { in.Command = cmd }
			}
			// The kernel answering "busy", as it does for a mount or a
			// cgroup in use.
			return id, local.SetStepFault(func(got compile.ID) error {
				if got == id {
					return fmt.Errorf("instance %s: %w", in.Name, unix.EBUSY)
				}
				return nil
			})
		},
	})
}

// compiled is a small cloud for the local engine: an edge, one node, two
// zones, two instances.
func compiled(t enginetest.T, cloud string) *compile.State {
	return enginetest.Compile(t, fmt.Sprintf(`
cloud: {name: %s, domain: ct.example}
sites: {s: {engine: local, nodes: [n1]}}
zones:
  app: {type: service, sub-id: 1, access-to: [internet]}
  db: {type: service, sub-id: 2, pinhole-allowed-from: [app]}
roles: {r: {vmids: 100-199}}
instances:
  a1: {role: r, zone: app, ports: [8080]}
  d1: {role: r, zone: db, ports: [5432], ingress: [{from: app, ports: [5432]}]}
`, cloud))
}

// namespaces lists the named network namespaces starting with prefix.
func namespaces(prefix string) []string {
	var out []string
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	return out
}

// fingerprint sums up everything the engine makes under prefix: each
// namespace (its inode: a namespace made again is another), its links
// (index, flags, master, MTU, address), addresses, routes, nftables
// ruleset with handles (a table written again gets new ones), and the
// processes in it (an init started again is another).
func fingerprint(t enginetest.T, prefix string) string {
	t.Helper()
	var lines []string
	for _, name := range namespaces(prefix) {
		var st syscall.Stat_t
		if err := syscall.Stat("/run/netns/"+name, &st); err != nil {
			t.Fatalf("%v", err)
		}
		lines = append(lines, fmt.Sprintf("ns %s %d", name, st.Ino))
		h, fd := handleIn(t, name)
		links, err := h.LinkList()
		if err != nil {
			t.Fatalf("links in %s: %v", name, err)
		}
		for _, l := range links {
			a := l.Attrs()
			lines = append(lines, fmt.Sprintf("%s link %s %d %s %v master %d mtu %d %s", name, a.Name, a.Index, l.Type(), a.Flags, a.MasterIndex, a.MTU, a.HardwareAddr))
		}
		addrs, err := h.AddrList(nil, unix.AF_UNSPEC)
		if err != nil {
			t.Fatalf("addresses in %s: %v", name, err)
		}
		for _, a := range addrs {
			lines = append(lines, fmt.Sprintf("%s addr %d %s", name, a.LinkIndex, a.IPNet))
		}
		routes, err := h.RouteList(nil, unix.AF_UNSPEC)
		if err != nil {
			t.Fatalf("routes in %s: %v", name, err)
		}
		for _, r := range routes {
			lines = append(lines, fmt.Sprintf("%s route %s", name, r))
		}
		lines = append(lines, nftLines(t, name, fd)...)
		h.Close()
		fd.Close()
		lines = append(lines, fmt.Sprintf("%s pids %v", name, pidsIn(t, &st)))
	}
	return strings.Join(lines, "\n")
}

// nftLines lists the namespace's nftables tables, chains, sets and rules
// with their handles: a table written again gets new ones.
func nftLines(t enginetest.T, name string, fd netns.NsHandle) []string {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(int(fd)))
	if err != nil {
		t.Fatalf("nftables in %s: %v", name, err)
	}
	tables, err := c.ListTables()
	if err != nil {
		t.Fatalf("nftables in %s: %v", name, err)
	}
	lines := []string{fmt.Sprintf("%s nftables generation %d", name, nftGeneration(t, name, fd))}
	for _, tb := range tables {
		lines = append(lines, fmt.Sprintf("%s table %s", name, tb.Name))
		sets, err := c.GetSets(tb)
		if err != nil {
			t.Fatalf("nftables sets in %s: %v", name, err)
		}
		for _, s := range sets {
			lines = append(lines, fmt.Sprintf("%s set %s %d", name, s.Name, s.ID))
		}
		chains, err := c.ListChainsOfTableFamily(tb.Family)
		if err != nil {
			t.Fatalf("nftables chains in %s: %v", name, err)
		}
		for _, ch := range chains {
			if ch.Table.Name != tb.Name {
				continue
			}
			rules, err := c.GetRules(tb, ch)
			if err != nil {
				t.Fatalf("nftables rules in %s: %v", name, err)
			}
			for _, r := range rules {
				lines = append(lines, fmt.Sprintf("%s rule %s %s %d", name, tb.Name, ch.Name, r.Handle))
			}
		}
	}
	return lines
}

// nftGeneration is the namespace's nftables ruleset generation, which
// every committed change — even one that writes what was there — moves on.
// The nftables package does not ask for it, so this speaks netlink.
func nftGeneration(t enginetest.T, name string, fd netns.NsHandle) uint32 {
	t.Helper()
	c, err := mdnetlink.Dial(unix.NETLINK_NETFILTER, &mdnetlink.Config{NetNS: int(fd)})
	if err != nil {
		t.Fatalf("netfilter netlink in %s: %v", name, err)
	}
	defer c.Close()
	const getGen = unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETGEN
	msgs, err := c.Execute(mdnetlink.Message{
		Header: mdnetlink.Header{Type: mdnetlink.HeaderType(getGen), Flags: mdnetlink.Request},
		Data:   []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0},
	})
	if err != nil || len(msgs) != 1 || len(msgs[0].Data) < 4 {
		t.Fatalf("nftables generation in %s: %v (%d answers)", name, err, len(msgs))
	}
	ad, err := mdnetlink.NewAttributeDecoder(msgs[0].Data[4:])
	if err != nil {
		t.Fatalf("nftables generation in %s: %v", name, err)
	}
	ad.ByteOrder = binary.BigEndian
	for ad.Next() {
		if ad.Type() == unix.NFTA_GEN_ID {
			return ad.Uint32()
		}
	}
	t.Fatalf("nftables generation in %s: no NFTA_GEN_ID (%v)", name, ad.Err())
	return 0
}

func handleIn(t enginetest.T, name string) (*netlink.Handle, netns.NsHandle) {
	t.Helper()
	fd, err := netns.GetFromName(name)
	if err != nil {
		t.Fatalf("namespace %s: %v", name, err)
	}
	h, err := netlink.NewHandleAt(fd)
	if err != nil {
		fd.Close()
		t.Fatalf("netlink in %s: %v", name, err)
	}
	return h, fd
}

// pidsIn lists the processes in the network namespace ns, and says for
// each whether its parent is in it too (a process tree's root is not).
func pidsIn(t enginetest.T, ns *syscall.Stat_t) []string {
	t.Helper()
	in := map[int]int{}
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		var st syscall.Stat_t
		if syscall.Stat(p+"/ns/net", &st) != nil || st.Ino != ns.Ino || st.Dev != ns.Dev {
			continue
		}
		b, err := os.ReadFile(p + "/stat")
		if err != nil {
			continue // it ended meanwhile
		}
		// pid (comm) state ppid …: comm may hold spaces.
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		pid, _ := strconv.Atoi(filepath.Base(p))
		ppid, _ := strconv.Atoi(f[1])
		in[pid] = ppid
	}
	var out []string
	for pid, ppid := range in {
		kind := "child"
		if _, ok := in[ppid]; !ok {
			kind = "root"
		}
		out = append(out, fmt.Sprintf("%d:%s", pid, kind))
	}
	slices.Sort(out)
	return out
}

// check: the namespaces under prefix are exactly the clouds' — the
// internet, each edge, each node, each instance — and each instance's
// holds one process tree, its init.
func check(t enginetest.T, prefix string, clouds []*compile.State) {
	t.Helper()
	var want []string
	for _, st := range clouds {
		want = append(want, local.InternetNS(st.Cloud))
		for _, s := range st.Sites {
			want = append(want, local.EdgeNS(st.Cloud, s.Name))
			for _, n := range s.Nodes {
				want = append(want, "hf."+st.Cloud+".n."+s.Name+"."+n)
			}
		}
		for _, in := range st.Instances {
			want = append(want, local.InstanceNS(st.Cloud, in.Name))
		}
	}
	slices.Sort(want)
	if got := namespaces(prefix); !slices.Equal(got, want) {
		t.Errorf("namespaces:\n got %v\nwant %v", got, want)
		return
	}
	for _, st := range clouds {
		for _, in := range st.Instances {
			var ns syscall.Stat_t
			if err := syscall.Stat("/run/netns/"+local.InstanceNS(st.Cloud, in.Name), &ns); err != nil {
				t.Fatalf("%v", err)
			}
			roots := 0
			for _, p := range pidsIn(t, &ns) {
				if strings.HasSuffix(p, ":root") {
					roots++
				}
			}
			if roots != 1 {
				t.Errorf("instance %s of %s: %d process trees, want its init alone", in.Name, st.Cloud, roots)
			}
		}
	}
}

// drift removes an instance's interface and a zone's bridge on its node,
// as an operator with a shell might.
func drift(t enginetest.T, st *compile.State) []compile.ID {
	t.Helper()
	in := st.Instances[0]
	var zone compile.Zone
	for _, z := range st.Zones {
		if z.Name == in.Zone {
			zone = z
		}
	}
	del := func(ns, link string) {
		h, fd := handleIn(t, ns)
		defer fd.Close()
		defer h.Close()
		l, err := h.LinkByName(link)
		if err == nil {
			err = h.LinkDel(l)
		}
		if err != nil {
			t.Fatalf("delete %s in %s: %v", link, ns, err)
		}
	}
	del(local.InstanceNS(st.Cloud, in.Name), "eth0")
	del("hf."+st.Cloud+".n."+in.Site+"."+in.Node, fmt.Sprintf("br%d", *zone.VNI))
	return []compile.ID{compile.InstanceID(in.Site, in.Name), compile.NetworkID(in.Site, in.Zone)}
}
