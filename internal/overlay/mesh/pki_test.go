package mesh_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"net/netip"
	"testing"
	"time"

	"github.com/slackhq/nebula/cert"
	"golang.org/x/crypto/curve25519"
)

// The tests' own CA, built on Nebula's cert package directly. (Holdfast's
// production CA lives in package overlay; these tests only need certificates
// Nebula accepts.) Version 1 certificates, because the benchmark runs the
// same certificates in Debian's stock nebula (1.6), which knows no other.

type testCA struct {
	crt cert.Certificate
	key ed25519.PrivateKey
	pem []byte
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Add(-time.Minute)
	tbs := &cert.TBSCertificate{
		Version:   cert.Version1,
		Name:      "holdfast test overlay",
		IsCA:      true,
		NotBefore: now,
		NotAfter:  now.Add(24 * time.Hour),
		PublicKey: pub,
		Curve:     cert.Curve_CURVE25519,
	}
	crt, err := tbs.Sign(nil, cert.Curve_CURVE25519, priv)
	if err != nil {
		t.Fatal(err)
	}
	p, err := crt.MarshalPEM()
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{crt: crt, key: priv, pem: p}
}

// hostCert is a member's certificate and key, PEM, and the certificate's
// fingerprint (what a blocklist names).
type hostCert struct {
	crt, key    []byte
	fingerprint string
}

func (ca *testCA) issue(t testing.TB, name string, addr netip.Prefix, groups []string) hostCert {
	t.Helper()
	priv := make([]byte, curve25519.ScalarSize)
	if _, err := rand.Read(priv); err != nil {
		t.Fatal(err)
	}
	pub, err := curve25519.X25519(priv, curve25519.Basepoint)
	if err != nil {
		t.Fatal(err)
	}
	tbs := &cert.TBSCertificate{
		Version:   cert.Version1,
		Name:      name,
		Networks:  []netip.Prefix{addr},
		Groups:    groups,
		NotBefore: ca.crt.NotBefore(),
		NotAfter:  ca.crt.NotAfter().Add(-time.Minute),
		PublicKey: pub,
		Curve:     cert.Curve_CURVE25519,
	}
	crt, err := tbs.Sign(ca.crt, cert.Curve_CURVE25519, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	p, err := crt.MarshalPEM()
	if err != nil {
		t.Fatal(err)
	}
	fp, err := crt.Fingerprint()
	if err != nil {
		t.Fatal(err)
	}
	return hostCert{crt: p, key: cert.MarshalPrivateKeyToPEM(cert.Curve_CURVE25519, priv), fingerprint: fp}
}
