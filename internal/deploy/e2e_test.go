package deploy_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/deploy"
	"github.com/holdfast/holdfast/internal/engine/enginetest"
	"github.com/holdfast/holdfast/internal/engine/local"
	"github.com/holdfast/holdfast/internal/engine/local/container"
	"github.com/holdfast/holdfast/internal/reconcile"
	"github.com/holdfast/holdfast/internal/store"
)

func TestMain(m *testing.M) { enginetest.Main(m) }

var examples = []string{"tasmanian", "arvandor", "tappaas", "zcloud"}

func examplePath(name string) string { return filepath.Join("..", "..", "examples", name) }

// Every example comes up, the observed reachability matrix equals the
// compiled flows exactly, a second apply changes nothing, and destroy
// leaves the host as it was.
func TestExamplesReachability(t *testing.T) {
	needRoot(t)
	for _, ex := range examples {
		t.Run(ex, func(t *testing.T) {
			cloud, stateDir := testCloud(ex), t.TempDir()
			before := snapshot(t, cloud)
			c := applied(t, examplePath(ex), cloud, stateDir)
			defer c.Close()
			internet := serveInternet(t, cloud)
			// DNS servers answer on 53, and front ends on their routes'
			// ports, once their agents have their configuration from
			// the guest service.
			if d := c.Desired.DNS; d != nil || len(c.Desired.Routes) > 0 {
				serveGuest(t, stateDir, cloud)
			}
			if d := c.Desired.DNS; d != nil {
				var names []string
				for _, s := range d.Servers {
					names = append(names, s.Instance)
				}
				waitDNS(t, stateDir, c.Desired, names...)
			}
			waitFrontDoors(t, stateDir, c.Desired)

			if p := planOf(t, c); len(p.Changes) != 0 {
				t.Errorf("second plan is not empty: %d changes, first %+v", len(p.Changes), p.Changes[0])
			}
			cases := matrix(c.Desired, cloud)
			var allowedN, crossNode int
			node := map[string]string{}
			for _, in := range c.Desired.Instances {
				node[in.Name] = in.Site + "/" + in.Node
			}
			for _, pc := range cases {
				if pc.want {
					allowedN++
					if node[pc.from.name] != "" && node[pc.to.name] != "" && node[pc.from.name] != node[pc.to.name] {
						crossNode++
					}
				}
			}
			wrong := run(t, cases)
			t.Logf("%s: %d probes (%d allowed by the flows, %d of them across nodes or sites), %d wrong", ex, len(cases), allowedN, crossNode, len(wrong))
			for _, w := range wrong {
				t.Error(w)
			}
			if allowedN == 0 || allowedN == len(cases) {
				t.Errorf("the matrix is all one verdict (%d of %d allowed): it proves nothing", allowedN, len(cases))
			}
			// Egress to the internet is masqueraded: the internet sees the
			// site edges' uplink addresses only, never a cloud address.
			for _, src := range internet.sources() {
				if !strings.HasPrefix(src, "198.51.100.") {
					t.Errorf("the internet saw source %s, not an edge's uplink address", src)
				}
			}
			destroy(t, c)
			if d := before.diff(snapshot(t, cloud)); len(d) > 0 {
				t.Errorf("destroy left the host changed:\n%s", strings.Join(d, "\n"))
			}
		})
	}
}

// Instances of one zone on two nodes reach each other over VXLAN, and the
// zone's firewall still holds for traffic between the nodes.
func TestMultiNode(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	specFile := filepath.Join(dir, "cloud.yaml")
	if err := os.WriteFile(specFile, []byte(`
cloud: {name: mn, domain: mn.example}
sites: {s: {engine: local, nodes: [n1, n2]}}
zones:
  app: {type: service, sub-id: 1, access-to: [internet]}
  db: {type: service, sub-id: 2, pinhole-allowed-from: [app]}
roles: {r: {vmids: 100-199}}
instances:
  a1: {role: r, zone: app, node: n1, ports: [8080]}
  a2: {role: r, zone: app, node: n2, ports: [8080]}
  d1: {role: r, zone: db, node: n1, ports: [5432, 22], ingress: [{from: app, ports: [5432]}]}
  d2: {role: r, zone: db, node: n2, ports: [5432, 22], ingress: [{from: app, ports: [5432]}]}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	cloud := testCloud("mn")
	c := applied(t, specFile, cloud, t.TempDir())
	defer c.Close()
	defer destroy(t, c)
	by := map[string]endpoint{}
	for _, pc := range matrix(c.Desired, cloud) {
		by[pc.from.name] = pc.from
	}
	cases := []probeCase{
		{from: by["a1"], to: by["a2"], proto: "tcp", port: 8080, want: true},  // same zone, other node
		{from: by["a2"], to: by["a1"], proto: "icmp", want: true},             // and back
		{from: by["d1"], to: by["d2"], proto: "tcp", port: 22, want: true},    // same zone, other node
		{from: by["a1"], to: by["d2"], proto: "tcp", port: 5432, want: true},  // pinhole, across nodes
		{from: by["a1"], to: by["d2"], proto: "tcp", port: 22, want: false},   // not the pinhole's port
		{from: by["a2"], to: by["d1"], proto: "icmp", want: false},            // pinhole is tcp only
		{from: by["d2"], to: by["a1"], proto: "tcp", port: 8080, want: false}, // db has no access to app
	}
	for _, w := range run(t, cases) {
		t.Error(w)
	}
}

// What is removed behind Holdfast's back is named by status and repaired,
// exactly, by the next apply.
func TestDriftIsNamedAndRepaired(t *testing.T) {
	needRoot(t)
	cloud := testCloud("drift")
	state := t.TempDir()
	c := applied(t, examplePath("arvandor"), cloud, state)
	defer c.Close()
	defer destroy(t, c)
	victim := c.Desired.Instances[0]
	vni := 0
	for _, z := range c.Desired.Zones {
		if z.Name == victim.Zone {
			vni = *z.VNI
		}
	}
	// Remove a veth, kill an instance's init, delete a zone's bridge on a node.
	mustRun(t, "ip", "netns", "exec", local.InstanceNS(cloud, victim.Name), "ip", "link", "del", "eth0")
	st, err := container.Inspect(local.InstanceDir(filepath.Join(state, cloud, local.Name), c.Desired.Instances[1].Name))
	if err != nil || !st.Running {
		t.Fatalf("instance %s not running before the test: %v %+v", c.Desired.Instances[1].Name, err, st)
	}
	if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, st.PID)
	other := c.Desired.Instances[2]
	mustRun(t, "ip", "netns", "exec", "hf."+cloud+".n."+other.Site+"."+other.Node, "ip", "link", "del", fmt.Sprintf("br%d", vni))

	status, err := c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	drifted := map[compile.ID]bool{}
	for _, s := range status {
		if s.State != "ok" {
			drifted[s.ID] = true
			t.Logf("status: %s %s %v", s.ID, s.State, s.Drift)
		}
	}
	second := c.Desired.Instances[1]
	for _, id := range []compile.ID{compile.InstanceID(victim.Site, victim.Name), compile.InstanceID(second.Site, second.Name), compile.NetworkID(other.Site, victim.Zone)} {
		if !drifted[id] {
			t.Errorf("status does not name %s", id)
		}
	}
	p := planOf(t, c)
	for _, ch := range p.Changes {
		if ch.Action != reconcile.Update || !drifted[ch.ID] {
			t.Errorf("the repair plan touches %s %s, which did not drift", ch.Action, ch.ID)
		}
	}
	if _, err := c.Apply(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	if p := planOf(t, c); len(p.Changes) != 0 {
		t.Errorf("after the repair, %d changes remain: %+v", len(p.Changes), p.Changes)
	}
}

func mustRun(t *testing.T, name string, args ...string) {
	t.Helper()
	// Only tests reach behind the engine's back with iproute2: the point is
	// to change the system the way an operator with a shell would.
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("process %d did not die", pid)
		}
		time.Sleep(10 * time.Millisecond) // polling a condition, bounded by the deadline
	}
}

// Killing the apply at 20 points — right after an intent is written, and
// at random moments in the middle of engine work — and applying again
// converges, with nothing left over or duplicated; destroy then leaves the
// host as it was.
func TestCrashResume(t *testing.T) {
	needRoot(t)
	cloud := testCloud("crash")
	state := t.TempDir()
	path := examplePath("tasmanian")
	before := snapshot(t, cloud)
	cleanupAfter(t, path, cloud, state)
	child := func(killAt int) *exec.Cmd {
		return enginetest.DeployApply{Spec: path, State: state, Rename: cloud, KillAt: killAt}.Command(t)
	}
	// How long a whole apply takes, for picking random moments in it.
	start := time.Now()
	if out, err := child(-1).CombinedOutput(); err != nil {
		t.Fatalf("first apply: %v\n%s", err, out)
	}
	full := time.Since(start)
	c := openCloud(t, path, cloud, state)
	destroy(t, c)
	c.Close()

	atBoundary, inFlight := enginetest.KillLoop{Kills: 20, Full: full,
		Remaining: func() int {
			c := openCloud(t, path, cloud, state)
			defer c.Close()
			return len(planOf(t, c).Changes)
		},
		// Converged before the kills ran out: start over from nothing so
		// that kills land in every phase of an apply.
		Restart: func() {
			c := openCloud(t, path, cloud, state)
			defer c.Close()
			destroy(t, c)
		},
		Child: child,
	}.Run(t, enginetest.Rand(t))
	t.Logf("%d applies killed: %d right after an intent was written, %d at random moments", atBoundary+inFlight, atBoundary, inFlight)
	if out, err := child(-1).CombinedOutput(); err != nil {
		t.Fatalf("final apply: %v\n%s", err, out)
	}
	c = openCloud(t, path, cloud, state)
	defer c.Close()
	if p := planOf(t, c); len(p.Changes) != 0 {
		t.Errorf("after resuming, %d changes remain: %+v", len(p.Changes), p.Changes[0])
	}
	checkExactly(t, c, cloud, state)
	destroy(t, c)
	if d := before.diff(snapshot(t, cloud)); len(d) > 0 {
		t.Errorf("destroy left the host changed:\n%s", strings.Join(d, "\n"))
	}
}

func openCloud(t *testing.T, path, cloud, state string) *deploy.Cloud {
	t.Helper()
	c, _, err := deploy.Open(path, deploy.Options{StateDir: state, Rename: cloud})
	if err != nil {
		t.Fatalf("%v; holders of the lock: %s", err, holders(filepath.Join(state, cloud, "lock")))
	}
	return c
}

// holders names the processes that have a file open, for diagnosing a
// lock that outlives its apply.
func holders(file string) string {
	var out []string
	fds, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fd := range fds {
		if target, err := os.Readlink(fd); err == nil && target == file {
			pid := strings.Split(fd, "/")[2]
			cmd, _ := os.ReadFile("/proc/" + pid + "/cmdline")
			env, _ := os.ReadFile("/proc/" + pid + "/environ")
			marker := ""
			if strings.Contains(string(env), "HOLDFAST_CONTAINER_INIT") {
				marker = " (a container init)"
			}
			out = append(out, fmt.Sprintf("pid %s %q%s", pid, strings.ReplaceAll(string(cmd), "\x00", " "), marker))
		}
	}
	return strings.Join(out, "; ")
}

// checkExactly asserts that what exists is exactly what the spec makes:
// the namespaces, the links in every node and edge, one init per
// instance, the cgroups, the firewall table, and the state rows.
func checkExactly(t *testing.T, c *deploy.Cloud, cloud, state string) {
	t.Helper()
	st := c.Desired
	want := []string{local.InternetNS(cloud)}
	nodeLinks := map[string][]string{}
	for _, s := range st.Sites {
		want = append(want, local.EdgeNS(cloud, s.Name))
		for _, n := range s.Nodes {
			ns := "hf." + cloud + ".n." + s.Name + "." + n
			want = append(want, ns)
			nodeLinks[ns] = []string{"lo", "ul0"}
			for _, z := range st.Zones {
				if z.Present && z.VNI != nil && slices.Contains(z.Sites, s.Name) {
					nodeLinks[ns] = append(nodeLinks[ns], fmt.Sprintf("br%d", *z.VNI), fmt.Sprintf("vx%d", *z.VNI))
				}
			}
		}
	}
	present := map[string]bool{}
	for _, z := range st.Zones {
		present[z.Name] = z.Present
	}
	for _, in := range st.Instances {
		want = append(want, local.InstanceNS(cloud, in.Name))
		ns := "hf." + cloud + ".n." + in.Site + "." + in.Node
		for _, n := range in.NICs {
			if present[n.Zone] {
				nodeLinks[ns] = append(nodeLinks[ns], fmt.Sprintf("v%dn%d", in.VMID, n.Index))
			}
		}
	}
	slices.Sort(want)
	var got []string
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "hf."+cloud+".") {
			got = append(got, e.Name())
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("namespaces:\n got %v\nwant %v", got, want)
	}
	for ns, links := range nodeLinks {
		slices.Sort(links)
		if have := nsLinks(t, ns); !slices.Equal(have, links) {
			t.Errorf("links in %s:\n got %v\nwant %v", ns, have, links)
		}
	}
	// One init per instance, each the only process that is not a child of
	// another process in its namespace.
	engineDir := filepath.Join(state, cloud, local.Name)
	for _, in := range st.Instances {
		s, err := container.Inspect(local.InstanceDir(engineDir, in.Name))
		if err != nil || !s.Running {
			t.Errorf("instance %s: not running (%v, %+v)", in.Name, err, s)
			continue
		}
		if roots := nsRoots(t, "/run/netns/"+local.InstanceNS(cloud, in.Name)); len(roots) != 1 || roots[0] != s.PID {
			t.Errorf("instance %s: process trees in its namespace %v, want only its init %d", in.Name, roots, s.PID)
		}
	}
	for _, ctl := range []string{"memory", "pids"} {
		dirs := cgroupDirs(ctl, cloud)
		// One per instance, and one per site for its edge's services
		// (edge.<site>: no instance's name holds a dot).
		if len(dirs) != 0 && len(dirs) != len(st.Instances)+len(st.Sites) {
			t.Errorf("%d %s cgroups for %d instances and %d sites' edges: %v", len(dirs), ctl, len(st.Instances), len(st.Sites), dirs)
		}
	}
	db, err := store.Open(store.At("", filepath.Join(state, cloud)))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	counts, err := db.Counts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if counts["resources"] != len(st.Resources) || counts["allocations"] != len(st.Instances) {
		t.Errorf("state rows %v, want %d resources and %d allocations", counts, len(st.Resources), len(st.Instances))
	}
	if open, _ := db.Unfinished(context.Background()); len(open) != 0 {
		t.Errorf("%d intents left open after the final apply", len(open))
	}
	made, _ := db.Resources(context.Background())
	ids := map[compile.ID]int{}
	for _, r := range made {
		ids[r.ID]++
	}
	for _, r := range st.Resources {
		if ids[r.ID] != 1 {
			t.Errorf("resource %s recorded %d times", r.ID, ids[r.ID])
		}
	}
}

// nsRoots lists the processes in a network namespace whose parent is not in it.
func nsRoots(t *testing.T, nsPath string) []int {
	t.Helper()
	var target syscall.Stat_t
	if err := syscall.Stat(nsPath, &target); err != nil {
		t.Fatal(err)
	}
	inNS := map[int]int{} // pid -> ppid
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		var st syscall.Stat_t
		if syscall.Stat(p+"/ns/net", &st) != nil || st.Ino != target.Ino {
			continue
		}
		var pid, ppid int
		b, err := os.ReadFile(p + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so parse after ')'.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if _, err := fmt.Sscan(s, &pid); err != nil || i < 0 {
			continue
		}
		var state string
		if _, err := fmt.Sscan(s[i+1:], &state, &ppid); err != nil {
			continue
		}
		inNS[pid] = ppid
	}
	var roots []int
	for pid, ppid := range inNS {
		if _, ok := inNS[ppid]; !ok {
			roots = append(roots, pid)
		}
	}
	slices.Sort(roots)
	return roots
}

// A create that fails half-way is reverted: nothing of it is left, the
// failure is reported, and the rest of the cloud is made.
func TestFailedCreateIsReverted(t *testing.T) {
	needRoot(t)
	specFile := filepath.Join(t.TempDir(), "cloud.yaml")
	if err := os.WriteFile(specFile, []byte(`
cloud: {name: rv, domain: rv.example}
sites: {s: {engine: local, nodes: [n1]}}
zones: {app: {type: service, sub-id: 1}}
roles: {r: {vmids: 100-199}}
instances:
  good: {role: r, zone: app, ports: [80]}
  broken: {role: r, zone: app, command: [/nonexistent/service]}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	cloud, state := testCloud("rv"), t.TempDir()
	cleanupAfter(t, specFile, cloud, state)
	c := openCloud(t, specFile, cloud, state)
	defer c.Close()
	res, err := c.Apply(context.Background(), planOf(t, c))
	if err == nil || res.Failed != 1 || !strings.Contains(err.Error(), "instance/s/broken") {
		t.Fatalf("apply = %+v, %v; want instance/s/broken to fail", res, err)
	}
	if _, err := os.Stat("/run/netns/" + local.InstanceNS(cloud, "broken")); !os.IsNotExist(err) {
		t.Errorf("the failed instance's namespace was left behind (%v)", err)
	}
	if _, err := os.Stat(local.InstanceDir(filepath.Join(state, cloud, local.Name), "broken")); !os.IsNotExist(err) {
		t.Errorf("the failed instance's state directory was left behind (%v)", err)
	}
	status, err := c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range status {
		want := "ok"
		if s.ID == compile.InstanceID("s", "broken") {
			want = "missing"
		}
		if s.State != want {
			t.Errorf("%s is %s, want %s", s.ID, s.State, want)
		}
	}
}
