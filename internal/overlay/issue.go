package overlay

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/slackhq/nebula/cert"
	"golang.org/x/crypto/curve25519"

	"github.com/holdfast/holdfast/internal/auth"
)

// DefaultHostValidity is how long a host certificate is valid unless told
// otherwise: short, so that a certificate that leaks stops working soon
// even if nobody revokes it, and long enough that renewal (at a third of
// its life left, see NeedsRenewal) has days to succeed.
const DefaultHostValidity = 30 * 24 * time.Hour

// Member is one host of the overlay, as its certificate names it.
type Member struct {
	Name string
	// IP is the member's overlay address with the overlay's prefix length,
	// e.g. 10.10.10.5/24: Nebula routes the whole prefix into the tunnel.
	IP     netip.Prefix
	Groups []string
	// Subnets are networks behind this member that it routes for the
	// overlay (Nebula's unsafe networks); usually none.
	Subnets []netip.Prefix
}

// IssueOptions tune Issue; the zero value is the defaults.
type IssueOptions struct {
	Validity time.Duration // zero: DefaultHostValidity
	Now      time.Time     // zero: time.Now()
}

// HostCert is an issued host certificate and its private key.
type HostCert struct {
	Cert        cert.Certificate
	CertPEM     []byte
	Key         auth.Secret // the X25519 private key in Nebula's PEM; prints as [redacted]
	Fingerprint string
	NotAfter    time.Time
}

// Issue signs a host certificate for m with a fresh X25519 key pair (the
// key Nebula's handshake uses with Curve25519 CAs). The certificate never
// outlives the CA: its expiry is cut at the CA's.
func (ca *CA) Issue(m Member, opts IssueOptions) (*HostCert, error) {
	if err := m.check(ca.cert.Version()); err != nil {
		return nil, err
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	validity := opts.Validity
	if validity == 0 {
		validity = DefaultHostValidity
	}
	if validity < 0 {
		return nil, fmt.Errorf("overlay member %s: validity %s is negative", m.Name, validity)
	}
	notBefore := now.Add(-clockSkew).Truncate(time.Second)
	if notBefore.Before(ca.cert.NotBefore()) {
		notBefore = ca.cert.NotBefore()
	}
	notAfter := now.Add(validity).Truncate(time.Second)
	if notAfter.After(ca.cert.NotAfter()) {
		notAfter = ca.cert.NotAfter()
	}

	priv := make([]byte, curve25519.ScalarSize)
	if _, err := rand.Read(priv); err != nil {
		return nil, fmt.Errorf("overlay member %s: key: %w", m.Name, err)
	}
	defer clear(priv)
	pub, err := curve25519.X25519(priv, curve25519.Basepoint)
	if err != nil {
		return nil, fmt.Errorf("overlay member %s: key: %w", m.Name, err)
	}
	tbs := &cert.TBSCertificate{
		Version:        ca.cert.Version(),
		Name:           m.Name,
		Networks:       []netip.Prefix{m.IP},
		UnsafeNetworks: m.Subnets,
		Groups:         m.Groups,
		NotBefore:      notBefore,
		NotAfter:       notAfter,
		PublicKey:      pub,
		Curve:          cert.Curve_CURVE25519,
	}
	c, err := tbs.Sign(ca.cert, cert.Curve_CURVE25519, ca.key.Expose())
	if err != nil {
		return nil, fmt.Errorf("overlay member %s: %w", m.Name, err)
	}
	certPEM, err := c.MarshalPEM()
	if err != nil {
		return nil, fmt.Errorf("overlay member %s: %w", m.Name, err)
	}
	fp, err := c.Fingerprint()
	if err != nil {
		return nil, fmt.Errorf("overlay member %s: %w", m.Name, err)
	}
	keyPEM := cert.MarshalPrivateKeyToPEM(cert.Curve_CURVE25519, priv)
	key := auth.NewSecret(keyPEM)
	clear(keyPEM)
	return &HostCert{Cert: c, CertPEM: certPEM, Key: key, Fingerprint: fp, NotAfter: c.NotAfter()}, nil
}

// check refuses a member Nebula could not carry, with the member's name.
func (m Member) check(v cert.Version) error {
	var errs []error
	if strings.TrimSpace(m.Name) == "" {
		errs = append(errs, errors.New("a name is required"))
	}
	if !m.IP.IsValid() {
		errs = append(errs, errors.New("an overlay address (address/prefix length) is required"))
	} else if v == cert.Version1 && !m.IP.Addr().Is4() {
		errs = append(errs, fmt.Errorf("overlay address %s: version 1 certificates carry IPv4 only", m.IP))
	}
	for _, s := range m.Subnets {
		if v == cert.Version1 && !s.Addr().Is4() {
			errs = append(errs, fmt.Errorf("subnet %s: version 1 certificates carry IPv4 only", s))
		}
	}
	for _, g := range m.Groups {
		if strings.TrimSpace(g) == "" {
			errs = append(errs, errors.New("a group name is empty"))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("overlay member %q: %w", m.Name, errors.Join(errs...))
	}
	return nil
}

// NeedsRenewal reports whether c should be replaced at now: when less than
// a third of its life is left (10 days of a 30-day certificate), or it is
// not valid at all. A third leaves time for renewal to fail and be retried
// long before peers start refusing the certificate.
func NeedsRenewal(c cert.Certificate, now time.Time) bool {
	if c.Expired(now) {
		return true
	}
	life := c.NotAfter().Sub(c.NotBefore())
	return c.NotAfter().Sub(now) < life/3
}

// sameGroups compares groups as sets: Nebula matches a rule on any one of
// a certificate's groups, so order and repeats mean nothing.
func sameGroups(a, b []string) bool {
	return slices.Equal(setOf(a), setOf(b))
}

func setOf(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return slices.Compact(c)
}
