package overlay

import (
	"bytes"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/slackhq/nebula/cert"
)

func TestIssuedCertificateVerifiesWithNebula(t *testing.T) {
	ca := newCA(t, CAOptions{})
	m := Member{
		Name:    "postgres-01",
		IP:      netip.MustParsePrefix("10.10.10.21/24"),
		Groups:  []string{"infra", "db"},
		Subnets: []netip.Prefix{netip.MustParsePrefix("192.168.50.0/24")},
	}
	now := time.Now()
	h, err := ca.Issue(m, IssueOptions{Now: now})
	if err != nil {
		t.Fatal(err)
	}

	// What a peer does: parse the PEM and verify against the CA's PEM.
	pool, err := cert.NewCAPoolFromPEM(ca.CertPEM())
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := cert.UnmarshalCertificateFromPEM(h.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pool.VerifyCertificate(now, c); err != nil {
		t.Fatalf("nebula refuses the certificate: %v", err)
	}
	if c.Name() != m.Name || !slices.Equal(c.Networks(), []netip.Prefix{m.IP}) ||
		!slices.Equal(c.Groups(), m.Groups) || !slices.Equal(c.UnsafeNetworks(), m.Subnets) || c.IsCA() {
		t.Fatalf("certificate carries %s, want name %s, %s, groups %v, subnets %v", c, m.Name, m.IP, m.Groups, m.Subnets)
	}
	if c.Version() != cert.Version1 || c.Curve() != cert.Curve_CURVE25519 {
		t.Fatalf("version %d curve %s: want v1 Curve25519, which every Nebula client reads", c.Version(), c.Curve())
	}
	fp, _ := c.Fingerprint()
	if fp != h.Fingerprint || !h.NotAfter.Equal(c.NotAfter()) {
		t.Fatalf("HostCert says %s until %s; certificate is %s until %s", h.Fingerprint, h.NotAfter, fp, c.NotAfter())
	}
	if got := c.NotAfter().Sub(now); got > DefaultHostValidity || got < DefaultHostValidity-time.Second {
		t.Fatalf("valid for %s from now, want %s", got, DefaultHostValidity)
	}

	// The key is the certificate's pair, in Nebula's X25519 PEM.
	key, rest, curve, err := cert.UnmarshalPrivateKeyFromPEM(h.Key.Expose())
	if err != nil || len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("key PEM: %v", err)
	}
	if err := c.VerifyPrivateKey(curve, key); err != nil {
		t.Fatalf("key does not match the certificate: %v", err)
	}
	if s := fmt.Sprintf("%v %+v", h, *h); bytes.Contains([]byte(s), h.Key.Expose()) || bytes.Contains([]byte(s), []byte("PRIVATE KEY")) {
		t.Fatalf("printing a HostCert shows its key: %s", s)
	}

	// Each certificate has a key of its own.
	h2, err := ca.Issue(m, IssueOptions{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(h2.Key.Expose(), h.Key.Expose()) || h2.Fingerprint == h.Fingerprint {
		t.Fatal("two issues for one member share a key or a fingerprint")
	}

	// Another CA's pool does not accept it.
	other, _ := cert.NewCAPoolFromPEM(newCA(t, CAOptions{}).CertPEM())
	if _, err := other.VerifyCertificate(now, c); err == nil {
		t.Fatal("another CA accepts the certificate")
	}
}

func TestIssueVersion2CarriesIPv6(t *testing.T) {
	ca := newCA(t, CAOptions{Version: cert.Version2})
	m := Member{Name: "v6", IP: netip.MustParsePrefix("fd00:10::5/64"), Groups: []string{"infra"}}
	h, err := ca.Issue(m, IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pool, _ := cert.NewCAPoolFromPEM(ca.CertPEM())
	if _, err := pool.VerifyCertificate(time.Now(), h.Cert); err != nil || h.Cert.Version() != cert.Version2 {
		t.Fatalf("v2 certificate: version %d, %v", h.Cert.Version(), err)
	}
	if _, err := newCA(t, CAOptions{}).Issue(m, IssueOptions{}); err == nil {
		t.Fatal("a v1 CA issued an IPv6 certificate")
	}
}

func TestIssueRefusesBadMembers(t *testing.T) {
	ca := newCA(t, CAOptions{})
	for name, m := range map[string]Member{
		"no name":     {IP: netip.MustParsePrefix("10.0.0.1/24")},
		"no address":  {Name: "a"},
		"empty group": {Name: "a", IP: netip.MustParsePrefix("10.0.0.1/24"), Groups: []string{""}},
	} {
		if _, err := ca.Issue(m, IssueOptions{}); err == nil {
			t.Errorf("%s: issued", name)
		}
	}
}

func TestHostCertificateNeverOutlivesTheCA(t *testing.T) {
	now := time.Now()
	ca := newCA(t, CAOptions{Validity: 10 * 24 * time.Hour, Now: now})
	h, err := ca.Issue(Member{Name: "a", IP: netip.MustParsePrefix("10.0.0.1/24")}, IssueOptions{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if !h.NotAfter.Equal(ca.Cert().NotAfter()) {
		t.Fatalf("expires %s, CA expires %s", h.NotAfter, ca.Cert().NotAfter())
	}
}

func TestNeedsRenewalAtAThirdOfLifeLeft(t *testing.T) {
	ca := newCA(t, CAOptions{})
	start := time.Now()
	h, err := ca.Issue(Member{Name: "a", IP: netip.MustParsePrefix("10.0.0.1/24")}, IssueOptions{Now: start, Validity: 30 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	life := h.Cert.NotAfter().Sub(h.Cert.NotBefore())
	for _, tc := range []struct {
		at   time.Time
		want bool
	}{
		{start, false},
		{h.Cert.NotAfter().Add(-life/3 - time.Minute), false},
		{h.Cert.NotAfter().Add(-life/3 + time.Minute), true},
		{h.Cert.NotAfter().Add(time.Second), true},   // expired
		{h.Cert.NotBefore().Add(-time.Second), true}, // not valid yet
	} {
		if got := NeedsRenewal(h.Cert, tc.at); got != tc.want {
			t.Errorf("NeedsRenewal at %s (expires %s) = %v, want %v", tc.at, h.Cert.NotAfter(), got, tc.want)
		}
	}
}

func BenchmarkIssue1000(b *testing.B) {
	ca := newCA(b, CAOptions{})
	members := make([]Member, 1000)
	for i := range members {
		members[i] = Member{
			Name:   fmt.Sprintf("member-%04d", i),
			IP:     netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 20, byte(i >> 8), byte(i)}), 16),
			Groups: []string{"infra", "projects"},
		}
	}
	b.ResetTimer()
	for b.Loop() {
		for _, m := range members {
			if _, err := ca.Issue(m, IssueOptions{}); err != nil {
				b.Fatal(err)
			}
		}
	}
}
