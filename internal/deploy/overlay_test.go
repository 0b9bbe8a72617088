package deploy_test

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/slackhq/nebula/cert"

	"github.com/holdfast/holdfast/internal/auth"
	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/deploy"
	"github.com/holdfast/holdfast/internal/overlay"
)

const overlaySpec = `cloud: {name: mesh, domain: mesh.example}
sites: {s: {engine: ledger, nodes: [n1]}}
zones: {srv: {type: service, sub-id: 1}}
roles: {app: {vmids: 2000-2099}}
groups:
  infra: {can-access: [infra]}
  apps: {can-access: [infra]}
overlay: {cidr: 10.10.10.0/24, lighthouses: [lh]}
instances:
  lh: {zone: srv, role: app, groups: [infra]}
  web: {zone: srv, role: app, groups: [%s]}
`

// TestOverlayMembersConverge: apply gives every overlay member a
// certificate from the cloud's CA; status names a certificate that is
// expired, revoked, or carries other groups than the spec's, and one apply
// repairs each (revoking the replaced one when its groups were wrong); a
// member that leaves has its certificate revoked.
func TestOverlayMembersConverge(t *testing.T) {
	ctx := context.Background()
	dir, stateDir := t.TempDir(), t.TempDir()
	path := filepath.Join(dir, "spec.yaml")
	write := func(groups string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(strings.Replace(overlaySpec, "%s", groups, 1)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	open := func() *deploy.Cloud {
		t.Helper()
		c, diags, err := deploy.Open(path, deploy.Options{StateDir: stateDir})
		if err != nil {
			t.Fatal(err, diags)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	apply := func(c *deploy.Cloud) {
		t.Helper()
		p, err := c.Plan(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Apply(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	status := func(c *deploy.Cloud, name string) deploy.Status {
		t.Helper()
		st, err := c.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range st {
			if s.ID == compile.MemberID("s", name) {
				return s
			}
		}
		t.Fatalf("status has no member %s: %+v", name, st)
		return deploy.Status{}
	}
	members := overlay.NewMembers(stateDir, "mesh", nil)
	held := func(name string) []byte {
		t.Helper()
		pem, _, err := members.Credentials(compile.MemberID("s", name))
		if err != nil {
			t.Fatal(err)
		}
		return pem
	}
	ca := func() *overlay.CA {
		t.Helper()
		key, err := auth.LoadOrCreateMasterKey(overlay.MasterKeyPath(stateDir, "mesh"))
		if err != nil {
			t.Fatal(err)
		}
		box, err := auth.NewBox(key)
		if err != nil {
			t.Fatal(err)
		}
		ca, err := overlay.Load(overlay.Dir(stateDir, "mesh"), box)
		if err != nil {
			t.Fatal(err)
		}
		return ca
	}

	write("apps")
	c := open()
	apply(c)
	for _, name := range []string{"lh", "web"} {
		if s := status(c, name); s.State != "ok" {
			t.Errorf("member %s after apply: %+v", name, s)
		}
	}
	first := held("web")
	if drift, err := ca().Check(first, overlay.Member{Name: "web", IP: netipPrefix(t, c, "web"), Groups: []string{"apps"}}, time.Now()); err != nil || len(drift) > 0 {
		t.Errorf("web's certificate: %v %v", drift, err)
	}
	apply(c)
	if !slices.Equal(held("web"), first) {
		t.Error("a second apply reissued a certificate that was right")
	}

	// Revoked behind Holdfast's back: named, and replaced by one apply.
	if err := ca().Revoke(first, time.Now()); err != nil {
		t.Fatal(err)
	}
	if s := status(c, "web"); s.State != "drifted" || !strings.Contains(strings.Join(s.Drift, ";"), "revoked") {
		t.Errorf("a revoked certificate: %+v", s)
	}
	apply(c)
	if s := status(c, "web"); s.State != "ok" || slices.Equal(held("web"), first) {
		t.Errorf("after repairing a revoked certificate: %+v", s)
	}

	// Expired: a certificate that ran out is named and replaced.
	expired, err := ca().Issue(overlay.Member{Name: "web", IP: netipPrefix(t, c, "web"), Groups: []string{"apps"}},
		overlay.IssueOptions{Now: time.Now().Add(-48 * time.Hour), Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	replaceCert(t, stateDir, "web", expired.CertPEM)
	if s := status(c, "web"); s.State != "drifted" || !strings.Contains(strings.Join(s.Drift, ";"), "expired") {
		t.Errorf("an expired certificate: %+v", s)
	}
	apply(c)
	if s := status(c, "web"); s.State != "ok" {
		t.Errorf("after repairing an expired certificate: %+v", s)
	}
	c.Close()

	// The spec gives web another group: the plan changes its member, and
	// the apply revokes the certificate that carried the old one.
	before := held("web")
	write("infra")
	c = open()
	apply(c)
	if s := status(c, "web"); s.State != "ok" {
		t.Errorf("after changing web's groups: %+v", s)
	}
	if drift, _ := ca().Check(before, overlay.Member{Name: "web", IP: netipPrefix(t, c, "web"), Groups: []string{"apps"}}, time.Now()); !slices.ContainsFunc(drift, func(d overlay.Drift) bool { return d.Kind == overlay.DriftRevoked }) {
		t.Errorf("the certificate with the old groups is not revoked: %v", drift)
	}
	c.Close()

	// web leaves the overlay: its certificate is revoked and removed.
	last := held("web")
	if err := os.WriteFile(path, []byte(strings.Replace(strings.Replace(overlaySpec, "groups: [%s]", "", 1), "%s", "", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	c = open()
	apply(c)
	if revoked, err := ca().IsRevoked(fingerprint(t, last)); err != nil || !revoked {
		t.Errorf("a member that left keeps a valid certificate (revoked %v, %v)", revoked, err)
	}
	if _, _, err := members.Credentials(compile.MemberID("s", "web")); !os.IsNotExist(err) {
		t.Errorf("the certificate of a member that left is still held: %v", err)
	}
}

func netipPrefix(t *testing.T, c *deploy.Cloud, name string) (p netip.Prefix) {
	t.Helper()
	for _, m := range c.Desired.Overlay.Members {
		if m.Name == name {
			return netip.MustParsePrefix(m.OverlayIP)
		}
	}
	t.Fatalf("%s is not an overlay member", name)
	return p
}

// replaceCert puts certPEM where the member's certificate is kept, as an
// operator restoring an old backup would.
func replaceCert(t *testing.T, stateDir, name string, certPEM []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(overlay.Dir(stateDir, "mesh"), "members", "s", name+".crt"), certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
}

func fingerprint(t *testing.T, certPEM []byte) string {
	t.Helper()
	c, _, err := cert.UnmarshalCertificateFromPEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	fp, err := c.Fingerprint()
	if err != nil {
		t.Fatal(err)
	}
	return fp
}
