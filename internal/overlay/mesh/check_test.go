package mesh_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/overlay"
	"github.com/holdfast/holdfast/internal/overlay/mesh"
)

// Check accepts a configuration Nebula runs and refuses one it would not,
// without root and without touching the machine.
func TestCheck(t *testing.T) {
	ca := newTestCA(t)
	hc := issue(t, ca, "a", netip.MustParsePrefix("10.10.10.10/24"), []string{"admin"})
	n := overlay.NodeConfig{
		PKI:        overlay.InlinePKI(ca, hc, nil),
		ListenPort: nebulaPort,
		Inbound:    []overlay.Rule{{Proto: "any", Group: "admin"}},
	}
	good := render(t, n)
	if err := mesh.Check(good); err != nil {
		t.Fatalf("a good configuration: %v", err)
	}

	// What Holdfast's renderer would refuse itself is written here by
	// hand, from the good configuration.
	wrongCA := n
	wrongCA.PKI.CA = newTestCA(t).CertPEM()
	i := bytes.LastIndex(good, []byte("proto: any")) // the inbound rule, last
	if i < 0 {
		t.Fatalf("the rendered configuration has no rule to spoil:\n%s", good)
	}
	badRule := slices.Concat(good[:i], []byte("proto: smoke"), good[i+len("proto: any"):])
	noKey := bytes.Replace(good, []byte("PRIVATE KEY"), []byte("PRIVATE KAY"), 2)
	for name, c := range map[string][]byte{
		"a certificate of another CA": render(t, wrongCA), "a bad firewall rule": badRule, "a broken key": noKey,
	} {
		if err := mesh.Check(c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	zero := append(slices.Clone(good), []byte("timers:\n  connection_alive_interval: 0\n")...)
	if err := mesh.Check(zero); err == nil {
		t.Error("a zero connection_alive_interval: accepted")
	}
	if err := mesh.Check([]byte("pki: [")); err == nil {
		t.Error("broken YAML: accepted")
	}
}

// Start logs nothing of Nebula's at info level: its chatter is debug.
func TestStartQuietAndFailsOnBadConfig(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	// A configuration that fails before Nebula touches the machine (no
	// PKI): Start reports it, and Nebula's info lines stay out of the log.
	_, err := mesh.Start(context.Background(), []byte("listen:\n  port: 0\n"), log)
	if err == nil {
		t.Fatal("Start with no PKI: no error")
	}
	if strings.Contains(buf.String(), "level=INFO") {
		t.Errorf("Nebula logged at info:\n%s", buf.String())
	}
}
