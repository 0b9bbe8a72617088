package deploy_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/deploy"
	"github.com/holdfast/holdfast/internal/engine/local"
	"github.com/holdfast/holdfast/internal/engine/local/container"
	"github.com/holdfast/holdfast/internal/spec"
)

// TestTappaasDHCP applies examples/tappaas and plugs machines into its
// home zone, a client zone with a DHCP range, as laptops and phones are:
// busybox's udhcpc, a real client, gets an address in the range with the
// zone's router, DNS server and domain, and the name it gave resolves from
// the cloud's instances; 50 clients at once get 50 distinct addresses; after
// the edge's DHCP server is killed and restarted, clients keep their
// addresses; a compiled instance's MAC gets its compiled address, never a
// pool address; holdfast show leases lists them.
func TestTappaasDHCP(t *testing.T) {
	needRoot(t)
	if _, err := exec.LookPath("busybox"); err != nil {
		if os.Getenv("HOLDFAST_REQUIRE_ROOT") == "1" {
			t.Fatal("busybox (udhcpc, the DHCP client) is needed; .ci/run installs it")
		}
		t.Skip("no busybox (udhcpc)")
	}
	specDir := copyExample(t, "../../examples/tappaas")
	// A printer the cloud knows, switched off: its MAC is reserved.
	f := filepath.Join(specDir, "instances.yaml")
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	b = append(b, "\n  printer:\n    role: app\n    zone: home\n    template: clone-8080\n    power: stopped\n"...)
	if err := os.WriteFile(f, b, 0o600); err != nil {
		t.Fatal(err)
	}
	cloud, stateDir := testCloud("tdh"), t.TempDir()
	c := applied(t, specDir, cloud, stateDir)
	st := c.Desired
	c.Close()

	home := zoneOf(t, st, "home")
	start, end := netip.MustParseAddr(home.DHCPStart), netip.MustParseAddr(home.DHCPEnd)
	inRange := func(s string) bool {
		a, err := netip.ParseAddr(s)
		return err == nil && a.Compare(start) >= 0 && a.Compare(end) <= 0
	}
	lan := newClients(t, cloud, st, "home", 51)

	env := lan.udhcpc(0, "laptop")
	if env == nil {
		t.Fatal("udhcpc got no lease")
	}
	for k, want := range map[string]string{"router": home.Gateway, "dns": home.Gateway, "domain": "home." + st.Domain, "search": "home." + st.Domain} {
		if got := env[k]; got != want {
			t.Errorf("udhcpc's %s = %q, want %q", k, got, want)
		}
	}
	if !inRange(env["ip"]) {
		t.Errorf("leased %s, outside the range %s-%s", env["ip"], start, end)
	}
	// The name the laptop gave resolves from an instance, through its own
	// resolver configuration (the mgmt zone's gateway, the edge).
	engineDir := filepath.Join(stateDir, cloud, "local")
	waitFor(t, 5*time.Second, "laptop to resolve", func() []string {
		if out, code := getent(t, engineDir, "firewall", "laptop.home."+st.Domain); code != 0 || !strings.HasPrefix(out, env["ip"]+" ") {
			return []string{fmt.Sprintf("getent hosts laptop.home.%s = %q (exit %d), want %s", st.Domain, out, code, env["ip"])}
		}
		return nil
	})

	t.Run("50 clients at once", func(t *testing.T) {
		envs := make([]map[string]string, 50)
		var wg sync.WaitGroup
		for i := range envs {
			wg.Go(func() { envs[i] = lan.udhcpc(i+1, fmt.Sprintf("phone-%d", i)) })
		}
		wg.Wait()
		seen := map[string]int{env["ip"]: 0}
		for i, e := range envs {
			switch {
			case e == nil:
				t.Errorf("client %d got no lease", i+1)
			case !inRange(e["ip"]):
				t.Errorf("client %d got %s, outside the range", i+1, e["ip"])
			default:
				if j, dup := seen[e["ip"]]; dup {
					t.Errorf("clients %d and %d both got %s", j, i+1, e["ip"])
				}
				seen[e["ip"]] = i + 1
			}
		}
	})

	t.Run("restart keeps addresses", func(t *testing.T) {
		before := map[int]string{}
		for i := range 4 {
			if e := lan.event(i, "bound"); e != nil {
				before[i] = e["ip"]
			}
		}
		killEdgeAgent(t, engineDir, st.Sites[0].Name)
		for i, ip := range before {
			if e := lan.udhcpc(i, ""); e == nil || e["ip"] != ip {
				t.Errorf("client %d: %v after the restart, had %s", i, e, ip)
			}
		}
	})

	t.Run("reservation", func(t *testing.T) {
		printer := instanceOf(t, st, "printer")
		mac, err := net.ParseMAC(printer.MAC)
		if err != nil {
			t.Fatal(err)
		}
		lan.setMAC(50, mac)
		if e := lan.udhcpc(50, "printer"); e == nil || e["ip"] != printer.IP {
			t.Errorf("the printer's MAC got %v, want its compiled %s", e, printer.IP)
		}
	})

	c, diags, err := deploy.Open(specDir, deploy.Options{StateDir: stateDir, Rename: cloud})
	if err != nil {
		t.Fatalf("%v\n%v", err, spec.ErrorList(diags.Errors()))
	}
	defer c.Close()
	leases, err := c.Leases(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	dynamic, reserved := 0, false
	for _, l := range leases {
		if l.Zone == "home" && l.Reserved && l.Hostname == "printer" && l.IP.String() == instanceOf(t, st, "printer").IP {
			reserved = true
		}
		if l.Zone == "home" && !l.Reserved {
			dynamic++
		}
	}
	if dynamic < 51 || !reserved {
		t.Errorf("show leases lists %d dynamic leases on home (want 51) and the printer's reservation: %v", dynamic, reserved)
	}
}

func zoneOf(t *testing.T, st *compile.State, name string) compile.Zone {
	t.Helper()
	for _, z := range st.Zones {
		if z.Name == name {
			return z
		}
	}
	t.Fatalf("no zone %s", name)
	return compile.Zone{}
}

// killEdgeAgent kills the site edge's agent and waits for its init to
// start it again.
func killEdgeAgent(t *testing.T, engineDir, site string) {
	t.Helper()
	dir := filepath.Join(engineDir, "e", site)
	st, err := container.Inspect(dir)
	if err != nil || st.AgentPID == 0 {
		t.Fatalf("edge %s: no agent running (%+v, %v)", site, st, err)
	}
	if err := syscall.Kill(st.AgentPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the edge's init to start its agent again", func() []string {
		now, err := container.Inspect(dir)
		if err != nil || now.AgentPID == 0 || now.AgentPID == st.AgentPID {
			return []string{fmt.Sprintf("agent pid %d (%v)", now.AgentPID, err)}
		}
		return nil
	})
}

// clients are machines on a zone: one namespace with a veth per client,
// plugged into the zone's bridge on the site's first node.
type clients struct {
	t   *testing.T
	ns  string
	ifs []string
	dir string // the udhcpc script and what it records
}

func newClients(t *testing.T, cloud string, st *compile.State, zone string, n int) *clients {
	t.Helper()
	z := zoneOf(t, st, zone)
	site := st.Sites[0]
	node := local.NodeNS(cloud, site.Name, site.Nodes[0])
	c := &clients{t: t, ns: fmt.Sprintf("hft%d-cl", os.Getpid()%100000), dir: t.TempDir()}
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("netns", "add", c.ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", c.ns).Run() })
	for i := range n {
		host, name := fmt.Sprintf("cl%d-%d", os.Getpid()%10000, i), fmt.Sprintf("eth%d", i)
		run("link", "add", host, "type", "veth", "peer", "name", name, "netns", c.ns)
		run("link", "set", host, "netns", node)
		run("-n", node, "link", "set", host, "master", local.ZoneBridge(*z.VNI), "up")
		run("-n", c.ns, "link", "set", name, "up")
		c.ifs = append(c.ifs, name)
	}
	run("-n", c.ns, "link", "set", "lo", "up")
	script := `#!/bin/sh
# udhcpc runs this on each event; it records what the client was told.
f="$LEASE_DIR/$interface.$1"
{
	echo "ip=$ip"; echo "mask=$mask"; echo "router=$router"; echo "dns=$dns"
	echo "domain=$domain"; echo "search=$search"; echo "lease=$lease"
} >"$f.tmp" && mv "$f.tmp" "$f"
`
	if err := os.WriteFile(filepath.Join(c.dir, "script"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return c
}

// setMAC gives client i's interface mac.
func (c *clients) setMAC(i int, mac net.HardwareAddr) {
	if out, err := exec.Command("ip", "-n", c.ns, "link", "set", c.ifs[i], "address", mac.String()).CombinedOutput(); err != nil {
		c.t.Fatalf("set mac: %v\n%s", err, out)
	}
}

// udhcpc runs busybox udhcpc on client i until it has a lease (or gives up
// after 5 tries a second apart), and returns what its script was told at
// "bound" (nil when it got no lease).
func (c *clients) udhcpc(i int, hostname string) map[string]string {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_ = os.Remove(filepath.Join(c.dir, c.ifs[i]+".bound"))
	args := []string{"netns", "exec", c.ns, "busybox", "udhcpc", "-i", c.ifs[i], "-n", "-q", "-f", "-t", "5", "-T", "1", "-s", filepath.Join(c.dir, "script")}
	if hostname != "" {
		args = append(args, "-x", "hostname:"+hostname)
	}
	cmd := exec.CommandContext(ctx, "ip", args...)
	cmd.Env = append(os.Environ(), "LEASE_DIR="+c.dir)
	if out, err := cmd.CombinedOutput(); err != nil && ctx.Err() != nil {
		c.t.Errorf("udhcpc on %s: still running after a minute:\n%s", c.ifs[i], out)
	}
	return c.event(i, "bound")
}

// event is what client i's script recorded at its last event ev.
func (c *clients) event(i int, ev string) map[string]string {
	f, err := os.Open(filepath.Join(c.dir, c.ifs[i]+"."+ev))
	if err != nil {
		return nil
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), "=")
		env[k] = v
	}
	return env
}
