package overlay

import (
	"net/netip"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func kinds(d []Drift) []DriftKind {
	var k []DriftKind
	for _, x := range d {
		k = append(k, x.Kind)
	}
	return k
}

func TestCheckNamesEachDrift(t *testing.T) {
	ca := newCA(t, CAOptions{})
	now := time.Now()
	m := Member{Name: "app-01", IP: netip.MustParsePrefix("10.10.10.31/24"), Groups: []string{"projects", "web"}}
	h, err := ca.Issue(m, IssueOptions{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	check := func(certPEM []byte, m Member, at time.Time) []DriftKind {
		t.Helper()
		d, err := ca.Check(certPEM, m, at)
		if err != nil {
			t.Fatal(err)
		}
		return kinds(d)
	}

	if got := check(h.CertPEM, m, now); len(got) != 0 {
		t.Fatalf("the certificate just issued drifts: %v", got)
	}
	// Groups compare as sets.
	if got := check(h.CertPEM, Member{Name: m.Name, IP: m.IP, Groups: []string{"web", "projects", "web"}}, now); len(got) != 0 {
		t.Fatalf("same groups in another order drift: %v", got)
	}

	other := newCA(t, CAOptions{})
	foreign, err := other.Issue(m, IssueOptions{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	life := h.Cert.NotAfter().Sub(h.Cert.NotBefore())

	for _, tc := range []struct {
		name   string
		cert   []byte
		member Member
		at     time.Time
		want   []DriftKind
	}{
		{"renamed", h.CertPEM, Member{Name: "app-02", IP: m.IP, Groups: m.Groups}, now, []DriftKind{DriftName}},
		{"readdressed", h.CertPEM, Member{Name: m.Name, IP: netip.MustParsePrefix("10.10.10.32/24"), Groups: m.Groups}, now, []DriftKind{DriftIP}},
		{"group taken", h.CertPEM, Member{Name: m.Name, IP: m.IP, Groups: []string{"web"}}, now, []DriftKind{DriftGroups}},
		{"group added", h.CertPEM, Member{Name: m.Name, IP: m.IP, Groups: []string{"web", "projects", "admin"}}, now, []DriftKind{DriftGroups}},
		{"subnet added", h.CertPEM, Member{Name: m.Name, IP: m.IP, Groups: m.Groups, Subnets: []netip.Prefix{netip.MustParsePrefix("192.168.9.0/24")}}, now, []DriftKind{DriftSubnets}},
		{"expiring", h.CertPEM, m, h.Cert.NotAfter().Add(-life / 4), []DriftKind{DriftExpiring}},
		{"expired", h.CertPEM, m, h.Cert.NotAfter().Add(time.Hour), []DriftKind{DriftExpired}},
		{"foreign", foreign.CertPEM, m, now, []DriftKind{DriftForeign}},
		{"a CA certificate", ca.CertPEM(), m, now, []DriftKind{DriftInvalid}},
		{"garbage", []byte("not a certificate"), m, now, []DriftKind{DriftInvalid}},
		{"everything", h.CertPEM, Member{Name: "x", IP: netip.MustParsePrefix("10.10.10.99/24")}, h.Cert.NotAfter().Add(time.Hour),
			[]DriftKind{DriftExpired, DriftName, DriftIP, DriftGroups}},
	} {
		if got := check(tc.cert, tc.member, tc.at); !slices.Equal(got, tc.want) {
			t.Errorf("%s: drift %v, want %v", tc.name, got, tc.want)
		}
	}

	if err := ca.Revoke(h.CertPEM, now); err != nil {
		t.Fatal(err)
	}
	if got := check(h.CertPEM, m, now); !slices.Equal(got, []DriftKind{DriftRevoked}) {
		t.Fatalf("revoked: drift %v, want [revoked]", got)
	}
}

func TestDriftThatRevokes(t *testing.T) {
	for k, want := range map[DriftKind]bool{
		DriftGroups: true, DriftIP: true, DriftName: true, DriftSubnets: true,
		DriftExpiring: false, DriftExpired: false, DriftRevoked: false, DriftForeign: false,
	} {
		if got := (Drift{Kind: k}).Revokes(); got != want {
			t.Errorf("%s revokes = %v, want %v", k, got, want)
		}
	}
}

func TestRevocationPersistsAndExpires(t *testing.T) {
	box := newBox(t)
	dir := filepath.Join(t.TempDir(), "overlay")
	ca, err := Create(dir, box, CAOptions{Name: "r"})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	m := Member{Name: "game-01", IP: netip.MustParsePrefix("10.10.10.50/24"), Groups: []string{"games"}}
	h, err := ca.Issue(m, IssueOptions{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	keep, err := ca.Issue(m, IssueOptions{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // twice: harmless
		if err := ca.Revoke(h.CertPEM, now); err != nil {
			t.Fatal(err)
		}
	}
	if err := newCA(t, CAOptions{}).Revoke(h.CertPEM, now); err == nil {
		t.Fatal("another CA revoked a certificate it did not sign")
	}

	reloaded, err := Load(dir, box)
	if err != nil {
		t.Fatal(err)
	}
	bl, err := reloaded.Blocklist(now)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(bl, []string{h.Fingerprint}) {
		t.Fatalf("blocklist after reload = %v, want [%s]", bl, h.Fingerprint)
	}
	if ok, _ := reloaded.IsRevoked(keep.Fingerprint); ok {
		t.Fatal("the certificate not revoked is on the blocklist")
	}
	// Once the certificate has expired it needs no listing.
	if bl, _ := reloaded.Blocklist(h.NotAfter.Add(time.Second)); len(bl) != 0 {
		t.Fatalf("blocklist after expiry = %v, want none", bl)
	}
}
