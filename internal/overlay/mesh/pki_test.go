package mesh_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/overlay"
	"github.com/holdfast/holdfast/internal/overlay/overlaytest"
)

// The tests' certificates and configurations are Holdfast's own: the
// overlay's CA (package overlay) issues them and its renderer writes the
// configuration, so that the real tunnels below prove those too. The
// certificates are version 1 (the CA's default), which the benchmark's
// Debian nebula (1.6) also reads.

func newTestCA(t testing.TB) *overlay.CA { return overlaytest.NewCA(t, "holdfast test overlay") }

func issue(t testing.TB, ca *overlay.CA, name string, addr netip.Prefix, groups []string) *overlay.HostCert {
	t.Helper()
	h, err := ca.Issue(overlay.Member{Name: name, IP: addr, Groups: groups}, overlay.IssueOptions{Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// render is n as Nebula's YAML, through Holdfast's renderer.
func render(t testing.TB, n overlay.NodeConfig) []byte {
	t.Helper()
	b, err := overlay.Config(n)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
