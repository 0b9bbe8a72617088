package mesh_test

import (
	"context"
	"net/netip"
	"os/exec"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/testenv"
)

// Arvandor's policy as each member's inbound firewall (default deny): admin
// reaches all, infrastructure reaches infrastructure, projects reach
// infrastructure, games reach nothing.
var arvandor = []memberSpec{
	{name: "admin", groups: []string{"admin"}, allowFrom: []string{"admin"}},
	{name: "infra-1", groups: []string{"infrastructure"}, allowFrom: []string{"admin", "infrastructure", "projects"}, lighthouse: true},
	{name: "infra-2", groups: []string{"infrastructure"}, allowFrom: []string{"admin", "infrastructure", "projects"}},
	{name: "projects", groups: []string{"projects"}, allowFrom: []string{"admin"}},
	{name: "games", groups: []string{"games"}, allowFrom: []string{"admin"}},
}

// allowed reports whether from may reach to under its inbound rules.
func allowed(from, to *member) bool {
	for _, g := range from.groups {
		if slices.Contains(to.allowFrom, g) || slices.Contains(to.allowFrom, "any") {
			return true
		}
	}
	return false
}

// TestReachabilityByGroup connects, for every ordered pair of members, to
// the other's echo port over the overlay: it succeeds exactly when the
// group policy allows it. A denial counts only once the tunnel between the
// two is up (the dialer's Nebula has the peer in its hostmap) and a connect
// still fails, so a slow handshake is never mistaken for a denial.
func TestReachabilityByGroup(t *testing.T) {
	testenv.NeedRoot(t, "network namespaces and tun devices")
	t.Parallel()
	m := newMesh(t, arvandor...)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, from := range m.members {
		for _, to := range m.members {
			if from == to {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				reached := false
				tunnel := eventually(ctx, 100*time.Millisecond, func() bool {
					if m.echo(from, to, []byte("ping"), 500*time.Millisecond) == nil {
						reached = true
						return true
					}
					return from.health(t).Up(to.overlay)
				})
				if !reached && tunnel {
					// The tunnel came up between two tries: one more
					// try, given time, decides either way.
					reached = m.echo(from, to, []byte("ping"), 2*time.Second) == nil
				}
				switch {
				case allowed(from, to) && !reached:
					t.Errorf("%s → %s: not reached, but the policy allows it (tunnel up: %t)", from.name, to.name, tunnel)
				case !allowed(from, to) && reached:
					t.Errorf("%s → %s: reached, but the policy denies it", from.name, to.name)
				case !allowed(from, to) && !tunnel:
					t.Errorf("%s → %s: no tunnel came up, so the denial proves nothing", from.name, to.name)
				}
			}()
		}
	}
	wg.Wait()
}

// TestLighthouseRestart kills the lighthouse (no goodbye) and starts it
// again with the same configuration: two members that had never talked find
// each other through it, without any change to their configurations.
func TestLighthouseRestart(t *testing.T) {
	testenv.NeedRoot(t, "network namespaces and tun devices")
	t.Parallel()
	m := newMesh(t,
		memberSpec{name: "lighthouse", groups: []string{"infrastructure"}, allowFrom: []string{"any"}, lighthouse: true},
		memberSpec{name: "a", groups: []string{"projects"}, allowFrom: []string{"any"}},
		memberSpec{name: "b", groups: []string{"projects"}, allowFrom: []string{"any"}},
	)
	lh, a, b := m.byName["lighthouse"], m.byName["a"], m.byName["b"]
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// Both have reported to the lighthouse before it dies.
	for _, mb := range []*member{a, b} {
		if !eventually(ctx, 100*time.Millisecond, func() bool { return mb.health(t).Up(lh.overlay) }) {
			t.Fatalf("%s: no tunnel to the lighthouse: %s", mb.name, mb.health(t))
		}
	}
	if a.health(t).Up(b.overlay) {
		t.Fatal("a already has a tunnel to b: the test needs two members that never talked")
	}

	lh.kill()
	m.start(lh)

	if !eventually(ctx, 100*time.Millisecond, func() bool {
		return m.echo(a, b, []byte("after the restart"), 500*time.Millisecond) == nil
	}) {
		t.Fatalf("a did not reach b after the lighthouse restarted: a %s; b %s", a.health(t), b.health(t))
	}
}

// TestRevocationByReload reloads a member's configuration with a blocklist
// naming a peer's certificate. Nebula refuses new tunnels from it, and also
// tears down the tunnel that exists (at its next check of that tunnel,
// timers.connection_alive_interval), so a connection open across the
// reload stops carrying data too.
func TestRevocationByReload(t *testing.T) {
	testenv.NeedRoot(t, "network namespaces and tun devices")
	t.Parallel()
	m := newMesh(t,
		memberSpec{name: "lighthouse", groups: []string{"infrastructure"}, allowFrom: []string{"any"}, lighthouse: true},
		memberSpec{name: "a", groups: []string{"admin"}, allowFrom: []string{"any"}},
		memberSpec{name: "b", groups: []string{"infrastructure"}, allowFrom: []string{"any"}},
	)
	a, b := m.byName["a"], m.byName["b"]
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if !eventually(ctx, 100*time.Millisecond, func() bool { return m.echo(a, b, []byte("hello"), 500*time.Millisecond) == nil }) {
		t.Fatalf("a never reached b: %s", a.health(t))
	}
	open, err := m.dial(a, netip.AddrPortFrom(b.overlay, echoPort), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = open.Close() }()
	if err := roundTrip(open, []byte("before"), 2*time.Second); err != nil {
		t.Fatal(err)
	}

	// a is revoked at the CA, and b's configuration gets the CA's
	// blocklist, as the agent delivers it.
	if err := m.ca.Revoke(a.cert.CertPEM, time.Now()); err != nil {
		t.Fatal(err)
	}
	blocklist, err := m.ca.Blocklist(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cfg := b.cfg
	cfg.PKI.Blocklist = blocklist
	m.reload(b, cfg)

	// The existing tunnel goes: b drops a from its hostmap.
	if !eventually(ctx, 100*time.Millisecond, func() bool { return !b.health(t).Up(a.overlay) }) {
		t.Fatalf("b kept its tunnel to the blocklisted a: %s", b.health(t))
	}
	if err := roundTrip(open, []byte("after"), 2*time.Second); err == nil {
		t.Error("a connection open across the revocation still carries data")
	}
	// New tunnels are refused: a keeps trying to handshake, and b never
	// takes it (nor reaches a itself).
	for range 2 {
		if err := m.echo(a, b, []byte("again"), time.Second); err == nil {
			t.Fatal("the blocklisted a reached b")
		}
		if err := m.echo(b, a, []byte("again"), time.Second); err == nil {
			t.Fatal("b reached the blocklisted a")
		}
	}
	if b.health(t).Up(a.overlay) {
		t.Errorf("b has a tunnel to the blocklisted a: %s", b.health(t))
	}
	// The rest of the mesh is untouched.
	if err := m.echo(b, m.byName["lighthouse"], []byte("still"), 5*time.Second); err != nil {
		t.Errorf("b lost the lighthouse: %v", err)
	}
}

// TestStop stops a member the way the agent does (Node.Stop): its peers
// learn at once that its tunnels are closed, rather than after Nebula's
// dead-tunnel timeouts, and its tun device is gone from its namespace.
func TestStop(t *testing.T) {
	testenv.NeedRoot(t, "network namespaces and tun devices")
	t.Parallel()
	m := newMesh(t,
		memberSpec{name: "a", groups: []string{"admin"}, allowFrom: []string{"any"}, lighthouse: true},
		memberSpec{name: "b", groups: []string{"infrastructure"}, allowFrom: []string{"any"}},
	)
	a, b := m.byName["a"], m.byName["b"]
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if !eventually(ctx, 100*time.Millisecond, func() bool { return m.echo(b, a, []byte("hi"), 500*time.Millisecond) == nil }) {
		t.Fatalf("b never reached a: %s", b.health(t))
	}
	b.stop(t)
	// Nebula's own timeouts would take over 10 s (pending deletion).
	gone, cancelGone := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancelGone()
	if !eventually(gone, 50*time.Millisecond, func() bool { return !a.health(t).Up(b.overlay) }) {
		t.Errorf("a still has a tunnel to the stopped b: %s", a.health(t))
	}
	if out, err := exec.Command("ip", "-n", b.ns, "link", "show", "nebula1").CombinedOutput(); err == nil {
		t.Errorf("b's tun device outlived Nebula: %s", out)
	}
}
