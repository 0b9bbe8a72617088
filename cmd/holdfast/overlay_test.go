package main

import (
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/slackhq/nebula"
	"github.com/slackhq/nebula/cert"
	"github.com/slackhq/nebula/config"

	"github.com/holdfast/holdfast/internal/overlay"
	"github.com/holdfast/holdfast/internal/server"
)

// TestOverlayCertForAWorkstation issues an operator's certificate twice
// from one cloud's CA and checks what the stock client would read.
func TestOverlayCertForAWorkstation(t *testing.T) {
	state := t.TempDir()
	if err := os.MkdirAll(filepath.Join(state, "arvandor"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(state, "arvandor", "state.db"), nil, 0o600); err != nil {
		t.Fatal(err) // an applied cloud, as far as finding it goes
	}
	dir := filepath.Join(t.TempDir(), "laptop")
	out, errOut, err := run(t, "overlay", "cert", "laptop", "--state-dir", state,
		"--groups", "admin,ops", "--ip", "10.10.10.200/24", "-o", dir, "--json",
		"--lighthouse", "10.10.10.1=192.168.100.11:4242")
	if err != nil {
		t.Fatalf("overlay cert: %v\n%s", err, errOut)
	}
	var w struct {
		Cloud, Name, IP, CA, Cert, Key, Config, Fingerprint string
		Groups                                              []string
		NotAfter                                            time.Time `json:"not_after"`
		CACreated                                           bool      `json:"ca_created"`
	}
	if err := json.Unmarshal([]byte(out), &w); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	if w.Cloud != "arvandor" || w.Name != "laptop" || w.IP != "10.10.10.200/24" || !slices.Equal(w.Groups, []string{"admin", "ops"}) || !w.CACreated {
		t.Fatalf("output = %s", out)
	}
	if d := time.Until(w.NotAfter); d < 29*24*time.Hour || d > 31*24*time.Hour {
		t.Fatalf("expires in %s, want 30 days", d)
	}
	for path, mode := range map[string]os.FileMode{w.CA: 0o644, w.Cert: 0o644, w.Key: 0o600, w.Config: 0o600} {
		if filepath.Dir(path) != dir {
			t.Fatalf("%s written outside %s", path, dir)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode().Perm(), mode)
		}
	}
	if strings.Contains(out, "PRIVATE KEY") || strings.Contains(errOut, "PRIVATE KEY") {
		t.Fatal("the command printed the key")
	}

	// host.crt verifies against ca.crt and carries what was asked.
	caPEM, _ := os.ReadFile(w.CA)
	hostPEM, _ := os.ReadFile(w.Cert)
	pool, err := cert.NewCAPoolFromPEM(caPEM)
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := cert.UnmarshalCertificateFromPEM(hostPEM)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pool.VerifyCertificate(time.Now(), c); err != nil {
		t.Fatalf("host.crt does not verify against ca.crt: %v", err)
	}
	if fp, _ := c.Fingerprint(); fp != w.Fingerprint || c.Name() != "laptop" || !slices.Equal(c.Groups(), []string{"admin", "ops"}) {
		t.Fatalf("host.crt is %s", c)
	}

	// config.yml is one the nebula binary starts with (its -test mode).
	quiet := slog.New(slog.DiscardHandler)
	cfg := config.NewC(quiet)
	if err := cfg.Load(w.Config); err != nil {
		t.Fatal(err)
	}
	if _, err := nebula.Main(cfg, true, "test", quiet, nil); err != nil {
		t.Fatalf("nebula refuses config.yml: %v", err)
	}
	if got := cfg.GetStringSlice("lighthouse.hosts", nil); !slices.Equal(got, []string{"10.10.10.1"}) {
		t.Fatalf("lighthouse.hosts = %v", got)
	}

	// A second workstation: same CA, not created again; text output.
	desk := filepath.Join(t.TempDir(), "desk")
	out, errOut, err = run(t, "overlay", "cert", "ops-desk", "--state-dir", state,
		"--groups", "ops", "--ip", "10.10.10.201/24", "-o", desk)
	if err != nil {
		t.Fatalf("second cert: %v\n%s", err, errOut)
	}
	if strings.Contains(out, "created the overlay CA") || !strings.Contains(out, "issued ops-desk 10.10.10.201/24 groups [ops]") ||
		!strings.Contains(out, "sudo nebula -config") {
		t.Fatalf("second cert printed:\n%s", out)
	}
	ca2, _ := os.ReadFile(filepath.Join(desk, "ca.crt"))
	if string(ca2) != string(caPEM) {
		t.Fatal("the second certificate came with another CA")
	}
}

// The overlay CA is sealed under the control plane's master key, so that
// `holdfast serve` opens it; the two packages must agree on where it is.
func TestOverlayCAUsesTheControlPlanesMasterKey(t *testing.T) {
	if got, want := overlay.MasterKeyPath("/s", "c"), filepath.Join(server.Dir("/s", "c"), "master.key"); got != want {
		t.Fatalf("overlay seals under %s, the control plane's master key is %s", got, want)
	}
}

func TestOverlayCertRefusesBadInput(t *testing.T) {
	state := t.TempDir()
	two := t.TempDir()
	for _, c := range []string{"a", "b"} {
		if err := os.MkdirAll(filepath.Join(two, c), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(two, c, "state.db"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{
		{"overlay", "cert", "laptop", "--state-dir", state, "--cloud", "c", "--ip", "10.10.10.200/24"},                 // no -o
		{"overlay", "cert", "laptop", "--state-dir", state, "--cloud", "c", "--ip", "10.10.10.200", "-o", t.TempDir()}, // no prefix length
		{"overlay", "cert", "laptop", "--state-dir", state, "--ip", "10.10.10.200/24", "-o", t.TempDir()},              // no cloud at all
		{"overlay", "cert", "laptop", "--state-dir", two, "--ip", "10.10.10.200/24", "-o", t.TempDir()},                // which of two clouds?
		{"overlay", "cert", "laptop", "--state-dir", state, "--cloud", "../x", "--ip", "10.10.10.200/24", "-o", t.TempDir()},
		{"overlay", "cert", "laptop", "--state-dir", state, "--cloud", "c", "--ip", "10.10.10.200/24", "-o", t.TempDir(), "--lighthouse", "10.10.10.1"},
	} {
		if _, _, err := run(t, args...); err == nil {
			t.Errorf("holdfast %s: succeeded", strings.Join(args, " "))
		}
	}
}
