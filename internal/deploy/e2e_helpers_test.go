package deploy_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/deploy"
	"github.com/holdfast/holdfast/internal/engine/local"
	"github.com/holdfast/holdfast/internal/probe"
	"github.com/holdfast/holdfast/internal/reconcile"
	"github.com/holdfast/holdfast/internal/spec"
	"github.com/holdfast/holdfast/internal/testenv"
)

func needRoot(t *testing.T) {
	t.Helper()
	testenv.NeedRoot(t, "network namespaces, nftables and cgroups")
}

// testCloud names a cloud uniquely for this test process, so that its
// namespaces never meet a user's copy of the same example.
func testCloud(base string) string {
	return fmt.Sprintf("t%d-%s", os.Getpid()%100000, base)
}

// hostSnapshot is what must look the same before a cloud is applied and
// after it is destroyed.
type hostSnapshot struct {
	namespaces []string
	links      []string
	mounts     []string
	cgroups    []string
}

// engineLink matches every interface name the local engine ever creates,
// so that a leak into the host's namespace would show; other packages'
// tests, which run in parallel, use other names.
var engineLink = regexp.MustCompile(`^(v\d+n\d+|u[0-9a-f]{8}|wan0?|ul0?|br\d+|vx\d+|eth\d+|s\d+)$`)

// snapshot records what the local engine could leave on the host for the
// cloud: its namespaces (named hf.<cloud>.…) and their mounts, links with
// the engine's names in the host's namespace, and the cloud's cgroups.
// Other packages' tests run clouds of other names in parallel.
func snapshot(t *testing.T, cloud string) hostSnapshot {
	t.Helper()
	var s hostSnapshot
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "hf."+cloud+".") {
			s.namespaces = append(s.namespaces, e.Name())
		}
	}
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		if engineLink.MatchString(l.Attrs().Name) {
			s.links = append(s.links, l.Attrs().Name)
		}
	}
	sort.Strings(s.links)
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(mi), "\n") {
		if f := strings.Fields(line); len(f) > 4 && (strings.HasPrefix(f[4], "/run/netns/hf."+cloud+".") || strings.Contains(f[4], "/"+cloud+"/")) {
			s.mounts = append(s.mounts, f[4])
		}
	}
	sort.Strings(s.mounts)
	for _, ctl := range []string{"cpu", "memory", "pids", "unified"} {
		s.cgroups = append(s.cgroups, cgroupDirs(ctl, cloud)...)
	}
	if _, err := os.Stat(filepath.Join("/sys/fs/cgroup/pids/holdfast", cloud)); err == nil {
		s.cgroups = append(s.cgroups, "pids/holdfast/"+cloud)
	}
	return s
}

// cgroupDirs lists the cgroups (directories, not control files) of a
// cloud's instances under one controller.
func cgroupDirs(ctl, cloud string) []string {
	entries, _ := os.ReadDir(filepath.Join("/sys/fs/cgroup", ctl, "holdfast", cloud))
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, ctl+"/"+e.Name())
		}
	}
	return out
}

func (a hostSnapshot) diff(b hostSnapshot) []string {
	var out []string
	cmp := func(what string, x, y []string) {
		if !slices.Equal(x, y) {
			out = append(out, fmt.Sprintf("%s before %v, after %v", what, x, y))
		}
	}
	cmp("namespaces", a.namespaces, b.namespaces)
	cmp("host links", a.links, b.links)
	cmp("mounts", a.mounts, b.mounts)
	cmp("cgroups", a.cgroups, b.cgroups)
	return out
}

// applied opens the spec at path as a renamed cloud, applies it, and
// registers its destruction.
func applied(t *testing.T, path, cloud, stateDir string) *deploy.Cloud {
	t.Helper()
	cleanupAfter(t, path, cloud, stateDir)
	c, diags, err := deploy.Open(path, deploy.Options{StateDir: stateDir, Rename: cloud})
	if err != nil {
		t.Fatalf("open %s: %v\n%v", path, err, spec.ErrorList(diags.Errors()))
	}
	ctx := context.Background()
	p, err := c.Plan(ctx)
	if err != nil {
		c.Close()
		t.Fatal(err)
	}
	if _, err := c.Apply(ctx, p); err != nil {
		c.Close()
		t.Fatalf("apply %s: %v", path, err)
	}
	return c
}

// cleanupAfter destroys whatever of the cloud is left when the test ends,
// however it ended, so that a failing test leaves the host clean. (A test
// that destroys its cloud itself finds nothing left here.)
func cleanupAfter(t *testing.T, path, cloud, stateDir string) {
	t.Cleanup(func() {
		c, _, err := deploy.Open(path, deploy.Options{StateDir: stateDir, Rename: cloud})
		if err != nil {
			t.Errorf("cleanup of %s: %v", cloud, err)
			return
		}
		defer c.Close()
		p, err := c.DestroyPlan(context.Background())
		if err == nil && len(p.Changes) > 0 {
			_, err = c.Apply(context.Background(), p)
		}
		if err != nil {
			t.Errorf("cleanup of %s: %v", cloud, err)
		}
	})
}

func destroy(t *testing.T, c *deploy.Cloud) {
	t.Helper()
	ctx := context.Background()
	p, err := c.DestroyPlan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Apply(ctx, p); err != nil {
		t.Fatalf("destroy: %v", err)
	}
	if p, err := c.DestroyPlan(ctx); err != nil || len(p.Changes) != 0 {
		t.Errorf("after destroy, still %d resources (err %v)", len(p.Changes), err)
	}
}

// endpoint is one side of a probe: an instance or the internet.
type endpoint struct {
	name  string // instance name, or "internet"
	zone  string // primary zone
	zones []string
	ip    netip.Addr
	ns    string // namespace path to probe from
}

// allowed is the oracle: may traffic of proto/port go from a to b,
// according to the compiled flows alone? It knows nothing of how the
// firewall is built, so it checks the firewall rather than mirroring it.
func allowed(st *compile.State, a, b endpoint, proto string, port int) bool {
	if a.name != spec.Internet && b.name != spec.Internet && slices.ContainsFunc(st.Zones, func(z compile.Zone) bool {
		return z.Name == b.zone && slices.Contains(a.zones, z.Name) && !z.IsolateInstances
	}) {
		return true // on a shared subnet: bridged, never routed through a firewall
	}
	for _, f := range st.Flows {
		if f.Kind == compile.KindOverlay {
			continue
		}
		src := f.From == a.name || f.From == a.zone && a.name != spec.Internet
		dst := f.To == b.name || f.To == b.zone && b.name != spec.Internet
		if !src || !dst {
			continue
		}
		switch {
		case f.Proto == "any":
			return true
		case f.Proto != proto:
			continue
		case len(f.Ports) == 0:
			return true
		}
		for _, pr := range f.Ports {
			r, _ := spec.ParseRange(pr)
			if r.Contains(port) {
				return true
			}
		}
	}
	return false
}

type probeCase struct {
	from, to endpoint
	proto    string // tcp or icmp
	port     int
	want     bool
}

func (p probeCase) String() string {
	verdict := map[bool]string{true: "allowed", false: "blocked"}[p.want]
	if p.proto == "icmp" {
		return fmt.Sprintf("%s -> %s icmp (%s, should be %s)", p.from.name, p.to.name, p.to.ip, verdict)
	}
	return fmt.Sprintf("%s -> %s tcp/%d (%s, should be %s)", p.from.name, p.to.name, p.port, p.to.ip, verdict)
}

const internetPort = 80

// matrix builds every probe: each ordered pair of instances over each TCP
// port the target serves and ICMP, each instance to the internet, and the
// internet to each instance's ports.
func matrix(st *compile.State, cloud string) []probeCase {
	zonePresent := map[string]bool{}
	for _, z := range st.Zones {
		zonePresent[z.Name] = z.Present
	}
	var eps []endpoint
	for _, in := range st.Instances {
		if len(in.NICs) == 0 || !zonePresent[in.Zone] {
			continue // no network: nothing to probe
		}
		e := endpoint{name: in.Name, zone: in.Zone, ip: netip.MustParseAddr(in.IP), ns: "/run/netns/" + local.InstanceNS(cloud, in.Name)}
		for _, n := range in.NICs {
			if zonePresent[n.Zone] {
				e.zones = append(e.zones, n.Zone)
			}
		}
		eps = append(eps, e)
	}
	inet := endpoint{name: spec.Internet, ip: local.InternetHost, ns: "/run/netns/" + local.InternetNS(cloud)}
	ports := map[string][]int{}
	for _, in := range st.Instances {
		for _, p := range in.Ports {
			if p.Proto == "tcp" {
				ports[in.Name] = append(ports[in.Name], p.Port)
			}
		}
	}
	var cases []probeCase
	for _, a := range eps {
		for _, b := range eps {
			if a.name == b.name {
				continue
			}
			for _, port := range ports[b.name] {
				cases = append(cases, probeCase{from: a, to: b, proto: "tcp", port: port, want: allowed(st, a, b, "tcp", port)})
			}
			cases = append(cases, probeCase{from: a, to: b, proto: "icmp", want: allowed(st, a, b, "icmp", 0)})
		}
		cases = append(cases, probeCase{from: a, to: inet, proto: "tcp", port: internetPort, want: allowed(st, a, inet, "tcp", internetPort)})
		for _, port := range ports[a.name] {
			cases = append(cases, probeCase{from: inet, to: a, proto: "tcp", port: port, want: allowed(st, inet, a, "tcp", port)})
		}
	}
	return cases
}

// run carries out the probes, many at once (a blocked probe waits for its
// timeout), and returns those whose outcome differs from the oracle.
func run(t *testing.T, cases []probeCase) []string {
	t.Helper()
	check := func(c probeCase, timeout time.Duration) string {
		var err error
		if c.proto == "icmp" {
			err = probe.ICMP(context.Background(), c.from.ns, c.to.ip, timeout)
		} else {
			_, err = probe.TCP(c.from.ns, netip.AddrPortFrom(c.to.ip, uint16(c.port)), timeout)
		}
		if got := err == nil; got != c.want {
			return fmt.Sprintf("%s: got %v", c, map[bool]string{true: "through", false: "blocked: " + fmt.Sprint(err)}[got])
		}
		return ""
	}
	var again []probeCase
	var mu sync.Mutex
	parallel(len(cases), 48, func(i int) string {
		if check(cases[i], 700*time.Millisecond) != "" {
			mu.Lock()
			again = append(again, cases[i])
			mu.Unlock()
		}
		return ""
	})
	// A flow that is dropped stays dropped; one allowed may have lost its
	// first packet on a loaded machine (TCP sends the next after a
	// second): what differs is tried once more, alone, with time for that.
	var wrong []string
	for _, c := range again {
		if w := check(c, 3*time.Second); w != "" {
			wrong = append(wrong, w)
		}
	}
	if n := len(again) - len(wrong); n > 0 {
		t.Logf("%d probes differed at first and not when tried again", n)
	}
	slices.Sort(wrong)
	return wrong
}

// parallel runs check(0..n-1), at most slots at once, and returns what the
// checks found wrong (their non-empty answers), sorted.
func parallel(n, slots int, check func(i int) string) []string {
	var (
		mu    sync.Mutex
		wrong []string
		wg    sync.WaitGroup
		sem   = make(chan struct{}, slots)
	)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if w := check(i); w != "" {
				mu.Lock()
				wrong = append(wrong, w)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	sort.Strings(wrong)
	return wrong
}

// serveInternet answers on the internet's host address, as a server on the
// internet would; it records who connected (to show masquerading).
func serveInternet(t *testing.T, cloud string) *peers {
	t.Helper()
	l, err := probe.Listen("/run/netns/"+local.InternetNS(cloud), netip.AddrPortFrom(local.InternetHost, internetPort))
	if err != nil {
		t.Fatalf("internet listener: %v", err)
	}
	p := &peers{}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			p.add(c.RemoteAddr())
			_, _ = c.Write([]byte("internet\n"))
			c.Close()
		}
	}()
	t.Cleanup(func() { l.Close() })
	return p
}

type peers struct {
	mu   sync.Mutex
	seen map[string]bool
}

func (p *peers) add(a net.Addr) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.seen == nil {
		p.seen = map[string]bool{}
	}
	host, _, _ := net.SplitHostPort(a.String())
	p.seen[host] = true
}

func (p *peers) sources() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for s := range p.seen {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// nsLinks lists the links of a named namespace.
func nsLinks(t *testing.T, name string) []string {
	t.Helper()
	fd, err := netns.GetFromName(name)
	if err != nil {
		t.Fatalf("namespace %s: %v", name, err)
	}
	defer fd.Close()
	h, err := netlink.NewHandleAt(fd)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range links {
		out = append(out, l.Attrs().Name)
	}
	sort.Strings(out)
	return out
}

func planOf(t *testing.T, c *deploy.Cloud) reconcile.Plan {
	t.Helper()
	p, err := c.Plan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return p
}
