package mesh_test

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/overlay"
	"github.com/holdfast/holdfast/internal/testenv"
)

// denied reports whether from cannot reach to although a tunnel between
// them is up (so a slow handshake is not mistaken for the firewall).
func (m *testMesh) denied(ctx context.Context, from, to *member) bool {
	t := m.t
	t.Helper()
	reached := false
	if !eventually(ctx, 100*time.Millisecond, func() bool {
		if m.echo(from, to, []byte("ping"), 500*time.Millisecond) == nil {
			reached = true
			return true
		}
		return from.health(t).Up(to.overlay)
	}) {
		t.Fatalf("%s → %s: no tunnel came up: %s", from.name, to.name, from.health(t))
	}
	return !reached && m.echo(from, to, []byte("ping"), 2*time.Second) != nil
}

// TestReloadCertificateAndFirewall changes a running member's certificate
// (new groups) and another's firewall by reload, with no restart: each
// takes effect on the live tunnels. A certificate for another overlay
// address cannot be hot-swapped, and Reload says so.
func TestReloadCertificateAndFirewall(t *testing.T) {
	testenv.NeedRoot(t, "network namespaces and tun devices")
	t.Parallel()
	m := newMesh(t,
		memberSpec{name: "lighthouse", groups: []string{"infrastructure"}, allowFrom: []string{"any"}, lighthouse: true},
		memberSpec{name: "a", groups: []string{"infrastructure"}, allowFrom: []string{"admin"}},
		memberSpec{name: "b", groups: []string{"games"}, allowFrom: []string{"any"}},
	)
	a, b := m.byName["a"], m.byName["b"]
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if !m.denied(ctx, b, a) {
		t.Fatal("games reached a member that admits only admin")
	}
	t.Logf("games denied (%s)", time.Since(start).Round(time.Millisecond))

	// b's new certificate carries admin: b re-handshakes with it, and a
	// lets it in.
	admin := issue(t, m.ca, "b", netip.PrefixFrom(b.overlay, 24), []string{"admin"})
	cfg := b.cfg
	cfg.PKI.Cert, cfg.PKI.Key = admin.CertPEM, admin.Key
	m.reload(b, cfg)
	if h := b.health(t); !slices.Equal(h.CertGroups, []string{"admin"}) {
		t.Fatalf("b's certificate in use after the reload: %v", h.CertGroups)
	}
	if !eventually(ctx, 100*time.Millisecond, func() bool { return m.echo(b, a, []byte("admin now"), 500*time.Millisecond) == nil }) {
		t.Fatalf("b with its admin certificate never reached a: %s", a.health(t))
	}
	t.Logf("b reaches a with its new certificate (%s)", time.Since(start).Round(time.Millisecond))

	// a's firewall now admits only infrastructure: b is out again.
	fw := a.cfg
	fw.Inbound = []overlay.Rule{{Proto: "any", Group: "infrastructure"}}
	m.reload(a, fw)
	if !m.denied(ctx, b, a) {
		t.Fatal("b reached a after a's firewall stopped admitting admin")
	}
	t.Logf("a's new firewall denies b (%s)", time.Since(start).Round(time.Millisecond))

	// Another overlay address is a restart, not a reload.
	moved := issue(t, m.ca, "b", netip.MustParsePrefix("10.10.10.99/24"), []string{"admin"})
	cfg.PKI.Cert, cfg.PKI.Key = moved.CertPEM, moved.Key
	if got := m.tryReload(b, render(t, cfg)); !strings.Contains(got, "needs a restart") {
		t.Errorf("reload with another address: %q, want a restart-needed error", got)
	}
	if got := m.tryReload(b, []byte("{}\n")); !strings.HasPrefix(got, "error: ") {
		t.Errorf("reload with an empty configuration: %q, want an error", got)
	}
	if h := b.health(t); !h.Running || !slices.Equal(h.CertGroups, []string{"admin"}) {
		t.Errorf("b after refused reloads: %s, want it running on its admin certificate", h)
	}
}
