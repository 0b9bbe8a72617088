package overlay

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/slackhq/nebula/cert"
)

// DriftKind names one way a member's certificate differs from what it
// should be. Every kind is repaired the same way — issue a new
// certificate (and revoke the old one unless it merely expires) — but
// status names them so an operator sees why.
type DriftKind string

const (
	DriftInvalid    DriftKind = "invalid"      // does not parse as one Nebula host certificate
	DriftForeign    DriftKind = "foreign"      // not signed by this CA
	DriftExpired    DriftKind = "expired"      // not valid now
	DriftExpiring   DriftKind = "expiring"     // valid, but NeedsRenewal
	DriftRevoked    DriftKind = "revoked"      // on the CA's blocklist
	DriftName       DriftKind = "wrong-name"   // names another member
	DriftIP         DriftKind = "wrong-ip"     // carries another overlay address
	DriftGroups     DriftKind = "wrong-groups" // carries other groups
	DriftSubnets    DriftKind = "wrong-subnets"
	DriftUnverified DriftKind = "unverified" // Nebula's own verification refuses it for another reason
)

// Drift is one difference, with what was found and what was wanted.
type Drift struct {
	Kind   DriftKind
	Detail string
}

func (d Drift) String() string { return string(d.Kind) + ": " + d.Detail }

// Revokes reports whether repairing d should blocklist the old
// certificate: one that carries the wrong identity or access must stop
// working at once, while one that merely runs out does so by itself.
func (d Drift) Revokes() bool {
	switch d.Kind {
	case DriftName, DriftIP, DriftGroups, DriftSubnets:
		return true
	}
	return false
}

// Check compares the certificate a member holds (certPEM) with what it
// should hold for m at now, and names every difference; none means the
// certificate is right. It is what the reconciler asks to decide whether
// to reissue, and what status prints.
func (ca *CA) Check(certPEM []byte, m Member, now time.Time) ([]Drift, error) {
	c, fp, why := parseHost(certPEM)
	if why != "" {
		return []Drift{{DriftInvalid, why}}, nil
	}
	blocklist, err := ca.Blocklist(now)
	if err != nil {
		return nil, err
	}
	var d []Drift
	add := func(k DriftKind, format string, a ...any) { d = append(d, Drift{k, fmt.Sprintf(format, a...)}) }

	signed := ca.signed(c)
	if !signed {
		add(DriftForeign, "issued by %s, not this CA (%s)", short(c.Issuer()), short(ca.fingerprint))
	}
	switch {
	case c.Expired(now):
		add(DriftExpired, "valid from %s until %s", c.NotBefore().UTC().Format(time.RFC3339), c.NotAfter().UTC().Format(time.RFC3339))
	case NeedsRenewal(c, now):
		add(DriftExpiring, "expires %s, less than a third of its life left", c.NotAfter().UTC().Format(time.RFC3339))
	}
	if slices.Contains(blocklist, fp) {
		add(DriftRevoked, "fingerprint %s is blocklisted", fp)
	}
	if c.Name() != m.Name {
		add(DriftName, "names %q, want %q", c.Name(), m.Name)
	}
	if want := []netip.Prefix{m.IP}; !slices.Equal(c.Networks(), want) {
		add(DriftIP, "carries %s, want %s", prefixes(c.Networks()), prefixes(want))
	}
	if !sameGroups(c.Groups(), m.Groups) {
		add(DriftGroups, "carries [%s], want [%s]", strings.Join(setOf(c.Groups()), " "), strings.Join(setOf(m.Groups), " "))
	}
	if !slices.Equal(setOfPrefixes(c.UnsafeNetworks()), setOfPrefixes(m.Subnets)) {
		add(DriftSubnets, "carries %s, want %s", prefixes(c.UnsafeNetworks()), prefixes(m.Subnets))
	}
	// Nebula's verification is the authority on whether peers accept the
	// certificate; when none of the above explains a refusal (a CA
	// constraint, a curve mismatch), say what Nebula says.
	if len(d) == 0 {
		if _, err := ca.pool(blocklist).VerifyCertificate(now, c); err != nil {
			add(DriftUnverified, "%v", err)
		}
	}
	return d, nil
}

// parseHost reads one host certificate and its fingerprint, or says why
// it cannot.
func parseHost(certPEM []byte) (c cert.Certificate, fp, why string) {
	c, rest, err := cert.UnmarshalCertificateFromPEM(certPEM)
	switch {
	case err != nil:
		return nil, "", err.Error()
	case strings.TrimSpace(string(rest)) != "":
		return nil, "", "more than one certificate"
	case c.IsCA():
		return nil, "", "a CA certificate, not a host certificate"
	}
	if fp, err = c.Fingerprint(); err != nil {
		return nil, "", err.Error()
	}
	return c, fp, ""
}

func short(fp string) string {
	if len(fp) > 16 {
		return fp[:16]
	}
	if fp == "" {
		return "nobody"
	}
	return fp
}

func prefixes(ps []netip.Prefix) string {
	if len(ps) == 0 {
		return "none"
	}
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

func setOfPrefixes(ps []netip.Prefix) []netip.Prefix {
	c := slices.Clone(ps)
	slices.SortFunc(c, func(a, b netip.Prefix) int {
		if n := a.Addr().Compare(b.Addr()); n != 0 {
			return n
		}
		return a.Bits() - b.Bits()
	})
	return slices.Compact(c)
}
