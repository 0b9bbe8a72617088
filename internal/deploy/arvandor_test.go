package deploy_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/auth"
	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/deploy"
	"github.com/holdfast/holdfast/internal/engine/local"
	"github.com/holdfast/holdfast/internal/engine/local/container"
	"github.com/holdfast/holdfast/internal/guest"
	"github.com/holdfast/holdfast/internal/overlay"
	"github.com/holdfast/holdfast/internal/probe"
	"github.com/holdfast/holdfast/internal/spec"
)

// TestArvandorOverlay applies examples/arvandor on the local engine with
// the guest service running, as `holdfast up` serves it: every instance's
// agent fetches its Nebula member config and joins the overlay. Then, for
// every ordered pair of instances and every TCP port the target serves, a
// connection to the target's overlay address gets through exactly when
// the spec's groups say so (the oracle reads can-access, not the compiled
// rules); an operator's workstation with a certificate from the
// workstation issuer (holdfast overlay cert) and the stock Nebula client
// reaches everything; changing groups and applying changes access, the
// old certificates revoked; and a killed lighthouse comes back without an
// apply.
func TestArvandorOverlay(t *testing.T) {
	needRoot(t)
	nebula, err := exec.LookPath("nebula")
	if err != nil {
		if os.Getenv("HOLDFAST_REQUIRE_ROOT") == "1" {
			t.Fatal("the stock Nebula client is needed (Debian's nebula package; .ci/run installs it)")
		}
		t.Skip("no stock nebula client on PATH (Debian's nebula package)")
	}
	specDir := copyExample(t, "../../examples/arvandor")
	cloud, stateDir := testCloud("arv"), t.TempDir()
	c := applied(t, specDir, cloud, stateDir)
	st := c.Desired
	c.Close()
	stopGuest := serveGuest(t, stateDir, cloud)
	waitAgents(t, stateDir, st, time.Now().Add(-time.Minute))

	policy := groupPolicy(t, specDir)
	cases := overlayMatrix(st, cloud, policy)
	if wrong := runOverlay(t, cases); len(wrong) > 0 {
		t.Fatalf("%d of %d overlay probes differ from the groups' policy:\n%s", len(wrong), len(cases), strings.Join(wrong, "\n"))
	}
	t.Logf("overlay: %d probes between %d instances match the groups' policy", len(cases), len(st.Instances))

	t.Run("workstation", func(t *testing.T) { workstation(t, nebula, stateDir, cloud, st) })

	t.Run("groups change", func(t *testing.T) {
		old := map[string]string{}
		for _, name := range []string{"app", "game-01"} {
			old[name] = memberFingerprint(t, stateDir, cloud, name)
		}
		// app loses projects (it becomes a game server); game-01 gains it.
		edit(t, filepath.Join(specDir, "instances.yaml"),
			"groups: [projects]    # reaches", "groups: [games]    # reaches",
			"groups: [games]       # isolated", "groups: [games, projects]       # isolated")
		st := reapply(t, specDir, cloud, stateDir)
		ca := loadCA(t, stateDir, cloud)
		for name, fp := range old {
			if revoked, err := ca.IsRevoked(fp); err != nil || !revoked {
				t.Errorf("%s's old certificate is not revoked (%v)", name, err)
			}
			if memberFingerprint(t, stateDir, cloud, name) == fp {
				t.Errorf("%s still holds its old certificate", name)
			}
		}
		policy := groupPolicy(t, specDir)
		var changed []overlayProbe
		for _, p := range overlayMatrix(st, cloud, policy) {
			if p.from.name == "app" || p.from.name == "game-01" || p.to.name == "app" || p.to.name == "game-01" {
				changed = append(changed, p)
			}
		}
		// The agents take the change at their next poll.
		waitFor(t, 45*time.Second, "the new groups to take effect", func() []string { return runOverlay(t, changed) })
	})

	t.Run("lighthouse restart", func(t *testing.T) {
		killed := time.Now()
		killAgent(t, stateDir, cloud, "dns")
		// The lighthouse comes back with no apply and the members find it
		// again: its agent reports tunnels to all of them.
		reports := guest.NewReports(stateDir, cloud)
		waitFor(t, 30*time.Second, "the lighthouse to know every member again", func() []string {
			rep, ok, err := reports.Get(compile.InstanceID("home", "dns"))
			want := fmt.Sprintf("%d tunnels", len(st.Overlay.Members)-1)
			if err != nil || !ok || rep.Received.Before(killed) || !strings.HasPrefix(rep.Services["overlay"].Detail, want) {
				return []string{fmt.Sprintf("dns reports %+v (%v), want %s", rep.Services, err, want)}
			}
			return nil
		})
		killAgent(t, stateDir, cloud, "postgres-02")
		// postgres-02 lost its tunnels with its Nebula; prometheus finds it
		// again through the lighthouse, which itself came back with no
		// apply.
		pg := addrOf(t, st, "postgres-02")
		waitFor(t, 45*time.Second, "prometheus to reach postgres-02 again", func() []string {
			if _, err := probe.TCP(nsOf(cloud, "prometheus"), netip.AddrPortFrom(pg, 5432), 1500*time.Millisecond); err != nil {
				return []string{err.Error()}
			}
			return nil
		})
	})

	t.Run("token rotation", func(t *testing.T) {
		id := compile.InstanceID("home", "caddy")
		creds, err := guest.OpenCredentials(stateDir, cloud)
		if err != nil {
			t.Fatal(err)
		}
		held := creds.Token(id)
		if err := creds.Rotate(id); err != nil {
			t.Fatal(err)
		}
		// The token caddy holds is refused from the next request on;
		// status names it, and apply delivers the new one.
		c, diags, err := deploy.Open(specDir, deploy.Options{StateDir: stateDir, Rename: cloud})
		if err != nil {
			t.Fatalf("%v\n%v", err, spec.ErrorList(diags.Errors()))
		}
		status, err := c.Status(context.Background())
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		named := false
		for _, s := range status {
			if s.ID == id {
				named = s.State == "drifted" && slices.Contains(s.Drift, "agent: the token delivered is not the instance's current one")
				if strings.Contains(strings.Join(s.Drift, " "), held) {
					t.Fatal("status prints the token")
				}
			}
		}
		if !named {
			t.Fatalf("status does not name caddy's stale token: %+v", status)
		}
		reapply(t, specDir, cloud, stateDir)
		delivered := time.Now()
		reports := guest.NewReports(stateDir, cloud)
		waitFor(t, 30*time.Second, "caddy's agent to report with its new token", func() []string {
			rep, ok, err := reports.Get(id)
			if err != nil || !ok || rep.Received.Before(delivered) || !rep.OK() {
				return []string{fmt.Sprintf("caddy: %+v (%v)", rep, err)}
			}
			return nil
		})
	})

	t.Run("control plane down", func(t *testing.T) {
		// With nothing serving agents, a restarted agent brings its
		// member up again from the configuration it kept.
		stopGuest()
		killAgent(t, stateDir, cloud, "postgres-01")
		pg := addrOf(t, st, "postgres-01")
		waitFor(t, 45*time.Second, "prometheus to reach postgres-01 with the control plane down", func() []string {
			if _, err := probe.TCP(nsOf(cloud, "prometheus"), netip.AddrPortFrom(pg, 5432), 1500*time.Millisecond); err != nil {
				return []string{err.Error()}
			}
			return nil
		})
	})
}

// reapply applies the spec again to the cloud applied() made (whose
// cleanup destroys it), and returns the state it applied.
func reapply(t *testing.T, path, cloud, stateDir string) *compile.State {
	t.Helper()
	c, diags, err := deploy.Open(path, deploy.Options{StateDir: stateDir, Rename: cloud})
	if err != nil {
		t.Fatalf("open %s: %v\n%v", path, err, spec.ErrorList(diags.Errors()))
	}
	defer c.Close()
	p, err := c.Plan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Apply(context.Background(), p); err != nil {
		t.Fatalf("apply %s: %v", path, err)
	}
	return c.Desired
}

// copyExample copies an example's files into a temporary directory, so a
// test may edit them.
func copyExample(t *testing.T, dir string) string {
	t.Helper()
	out := t.TempDir()
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("%s: no yaml (%v)", dir, err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(out, filepath.Base(f)), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func edit(t *testing.T, file string, pairs ...string) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for i := 0; i < len(pairs); i += 2 {
		if !strings.Contains(s, pairs[i]) {
			t.Fatalf("%s has no %q", file, pairs[i])
		}
		s = strings.Replace(s, pairs[i], pairs[i+1], 1)
	}
	if err := os.WriteFile(file, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

// serveGuest runs the cloud's guest service, as holdfast serve does, until
// the test ends or the returned function stops it.
func serveGuest(t *testing.T, stateDir, cloud string) (stop func()) {
	t.Helper()
	creds, err := guest.OpenCredentials(stateDir, cloud)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := guest.ListenSocket(guest.SocketDir(stateDir, cloud))
	if err != nil {
		t.Fatal(err)
	}
	srv := &guest.Server{StateDir: stateDir, Cloud: cloud, Credentials: creds,
		State: guest.FileState(guest.AppliedFile(stateDir, cloud)), Reports: guest.NewReports(stateDir, cloud),
		// Members report to the lighthouses every 2 s rather than every
		// minute, so that a restarted lighthouse knows them again soon.
		Tune: func(n *overlay.NodeConfig) { n.LighthouseInterval = 2 * time.Second }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("guest service: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// waitAgents waits until every instance's agent has reported, since
// since, an overlay that runs.
func waitAgents(t *testing.T, stateDir string, st *compile.State, since time.Time) {
	t.Helper()
	reports := guest.NewReports(stateDir, st.Cloud)
	waitFor(t, 60*time.Second, "every agent to report its overlay up", func() []string {
		var missing []string
		for _, in := range st.Instances {
			rep, ok, err := reports.Get(compile.InstanceID(in.Site, in.Name))
			switch {
			case err != nil:
				missing = append(missing, in.Name+": "+err.Error())
			case !ok || rep.Received.Before(since):
				missing = append(missing, in.Name+": no report")
			case !rep.Services["overlay"].OK:
				missing = append(missing, fmt.Sprintf("%s: %+v", in.Name, rep.Health))
			}
		}
		return missing
	})
}

// waitFor polls check, which returns what is still wrong, until it
// returns nothing or d passes.
func waitFor(t *testing.T, d time.Duration, what string, check func() []string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		wrong := check()
		if len(wrong) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s; still:\n%s", d, what, strings.Join(wrong, "\n"))
		}
		time.Sleep(250 * time.Millisecond) // polling a condition that has no event to wait on
	}
}

// groupPolicy reads the spec's groups: may a member of groups from reach
// a member of groups to? Arvandor's table, as can-access says it.
func groupPolicy(t *testing.T, dir string) func(from, to []string) bool {
	t.Helper()
	s, diags := spec.Check(dir)
	if diags.HasErrors() {
		t.Fatal(diags.Err())
	}
	return func(from, to []string) bool {
		for _, g := range from {
			for _, may := range s.Groups[g].CanAccess {
				if may == "all" || slices.Contains(to, may) {
					return true
				}
			}
		}
		return false
	}
}

type overlayEnd struct {
	name   string
	groups []string
	ip     netip.Addr // overlay address
	ns     string
}

type overlayProbe struct {
	from, to overlayEnd
	port     int
	want     bool
}

func (p overlayProbe) String() string {
	return fmt.Sprintf("%s %v -> %s %v %s:%d (should be %s)", p.from.name, p.from.groups, p.to.name, p.to.groups, p.to.ip, p.port,
		map[bool]string{true: "allowed", false: "blocked"}[p.want])
}

func nsOf(cloud, instance string) string { return "/run/netns/" + local.InstanceNS(cloud, instance) }

func overlayMatrix(st *compile.State, cloud string, may func(from, to []string) bool) []overlayProbe {
	var ends []overlayEnd
	for _, m := range st.Overlay.Members {
		ends = append(ends, overlayEnd{name: m.Name, groups: m.Groups, ip: netip.MustParsePrefix(m.OverlayIP).Addr(), ns: nsOf(cloud, m.Name)})
	}
	var out []overlayProbe
	for _, a := range ends {
		for _, b := range ends {
			if a.name == b.name {
				continue
			}
			for _, in := range st.Instances {
				if in.Name != b.name {
					continue
				}
				for _, p := range in.Ports {
					if p.Proto == "tcp" {
						out = append(out, overlayProbe{from: a, to: b, port: p.Port, want: may(a.groups, b.groups)})
					}
				}
			}
		}
	}
	return out
}

// runOverlay probes, many at once, and returns the probes whose outcome
// is not the policy's. A first packet to a peer waits for Nebula's
// handshake (through the lighthouse): an allowed probe that fails is tried
// again before it counts.
func runOverlay(t *testing.T, cases []overlayProbe) []string {
	t.Helper()
	return parallel(len(cases), 32, func(i int) string {
		c := cases[i]
		var err error
		for try := 0; try < 3; try++ {
			if _, err = probe.TCP(c.from.ns, netip.AddrPortFrom(c.to.ip, uint16(c.port)), 1500*time.Millisecond); err == nil || !c.want {
				break
			}
		}
		if got := err == nil; got != c.want {
			return fmt.Sprintf("%s: got %v", c, map[bool]string{true: "through", false: fmt.Sprint("blocked: ", err)}[got])
		}
		return ""
	})
}

// workstation joins the overlay as an operator would: a certificate with
// the admin group from the workstation issuer, the stock Nebula client, on
// a machine on the provisioning bridge; it reaches every instance's ports.
func workstation(t *testing.T, nebula, stateDir, cloud string, st *compile.State) {
	var lhs []overlay.Lighthouse
	for _, lh := range st.Overlay.Lighthouses {
		lhs = append(lhs, overlay.Lighthouse{IP: netip.MustParseAddr(lh.OverlayIP), Underlay: []string{lh.Underlay}})
	}
	dir := t.TempDir()
	w, err := overlay.IssueWorkstation(overlay.WorkstationOptions{StateDir: stateDir, Cloud: cloud, Dir: dir, Lighthouses: lhs,
		Member: overlay.Member{Name: "admin-ws", IP: netip.MustParsePrefix("10.10.10.200/24"), Groups: []string{"admin"}}})
	if err != nil {
		t.Fatal(err)
	}
	ns := plugIntoZone(t, cloud, st, "provisioning", "192.168.100.250/24")
	cmd := exec.Command("ip", "netns", "exec", ns, nebula, "-config", w.Config)
	log, err := os.Create(filepath.Join(t.TempDir(), "nebula.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		log.Close()
		if t.Failed() {
			b, _ := os.ReadFile(log.Name())
			t.Logf("stock nebula's log:\n%s", b)
		}
	})
	admin := overlayEnd{name: "admin-ws", groups: []string{"admin"}, ns: "/run/netns/" + ns}
	var cases []overlayProbe
	for _, p := range overlayMatrix(st, cloud, func(_, _ []string) bool { return true }) {
		if !slices.ContainsFunc(cases, func(c overlayProbe) bool { return c.to.name == p.to.name && c.port == p.port }) {
			p.from = admin
			cases = append(cases, p)
		}
	}
	waitFor(t, 45*time.Second, "the workstation to reach every instance", func() []string { return runOverlay(t, cases) })
	t.Logf("workstation: reached %d ports on %d instances through the stock client", len(cases), len(st.Overlay.Members))
}

// plugIntoZone makes a namespace with a leg on the zone's bridge (on the
// site's first node) at addr, as a machine cabled to that network.
func plugIntoZone(t *testing.T, cloud string, st *compile.State, zone, addr string) string {
	t.Helper()
	var z compile.Zone
	for _, zz := range st.Zones {
		if zz.Name == zone {
			z = zz
		}
	}
	if z.VNI == nil {
		t.Fatalf("zone %s has no bridge", zone)
	}
	site := st.Sites[0]
	node := local.NodeNS(cloud, site.Name, site.Nodes[0])
	ns := fmt.Sprintf("hft%d-ws", os.Getpid()%100000)
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	host := fmt.Sprintf("ws%d", os.Getpid()%100000)
	run("link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", ns)
	run("link", "set", host, "netns", node)
	run("-n", node, "link", "set", host, "master", local.ZoneBridge(*z.VNI), "up")
	run("-n", ns, "addr", "add", addr, "dev", "eth0")
	run("-n", ns, "link", "set", "eth0", "up")
	run("-n", ns, "link", "set", "lo", "up")
	return ns
}

func loadCA(t *testing.T, stateDir, cloud string) *overlay.CA {
	t.Helper()
	key, err := auth.LoadOrCreateMasterKey(overlay.MasterKeyPath(stateDir, cloud))
	if err != nil {
		t.Fatal(err)
	}
	box, err := auth.NewBox(key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := overlay.Load(overlay.Dir(stateDir, cloud), box)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func memberFingerprint(t *testing.T, stateDir, cloud, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(overlay.Dir(stateDir, cloud), "members", "home", name+".crt"))
	if err != nil {
		t.Fatal(err)
	}
	return fingerprint(t, b)
}

func addrOf(t *testing.T, st *compile.State, name string) netip.Addr {
	t.Helper()
	for _, m := range st.Overlay.Members {
		if m.Name == name {
			return netip.MustParsePrefix(m.OverlayIP).Addr()
		}
	}
	t.Fatalf("%s is not a member", name)
	return netip.Addr{}
}

// killAgent kills an instance's agent (and with it its Nebula) and waits
// for its init to start a new one.
func killAgent(t *testing.T, stateDir, cloud, name string) {
	t.Helper()
	dir := local.InstanceDir(filepath.Join(stateDir, cloud, "local"), name)
	st, err := container.Inspect(dir)
	if err != nil || st.AgentPID == 0 {
		t.Fatalf("%s: no agent running (%+v, %v)", name, st, err)
	}
	if err := syscall.Kill(st.AgentPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, name+"'s init to start its agent again", func() []string {
		now, err := container.Inspect(dir)
		if err != nil {
			return []string{err.Error()}
		}
		if now.AgentPID == 0 || now.AgentPID == st.AgentPID {
			return []string{fmt.Sprintf("agent pid %d", now.AgentPID)}
		}
		return nil
	})
}
