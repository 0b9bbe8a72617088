package mesh_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/overlay/mesh"
)

// Check accepts a configuration Nebula runs and refuses one it would not,
// without root and without touching the machine.
func TestCheck(t *testing.T) {
	ca := newTestCA(t)
	hc := ca.issue(t, "a", netip.MustParsePrefix("10.10.10.10/24"), []string{"admin"})
	good := nebulaConfig{
		PKI:    pkiConfig{CA: string(ca.pem), Cert: string(hc.crt), Key: string(hc.key)},
		Listen: listenConfig{Host: "0.0.0.0", Port: nebulaPort},
		Tun:    tunConfig{Dev: "nebula1"},
		Firewall: firewallConfig{
			Inbound: []firewallRule{{Port: "any", Proto: "any", Group: "admin"}},
		},
	}
	if err := mesh.Check(good.yaml(t)); err != nil {
		t.Fatalf("a good configuration: %v", err)
	}

	other := newTestCA(t)
	wrongCA := good
	wrongCA.PKI.CA = string(other.pem)
	badRule := good
	badRule.Firewall.Inbound = []firewallRule{{Port: "any", Proto: "smoke", Group: "admin"}}
	noKey := good
	noKey.PKI.Key = ""
	for name, c := range map[string]nebulaConfig{
		"a certificate of another CA": wrongCA, "a bad firewall rule": badRule, "no key": noKey,
	} {
		if err := mesh.Check(c.yaml(t)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	zero := append(good.yaml(t), []byte("timers:\n  connection_alive_interval: 0\n")...)
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
