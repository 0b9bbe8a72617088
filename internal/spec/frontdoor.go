package spec

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Route protocols.
const (
	ProtoHTTPS = "https"
	ProtoHTTP  = "http"
	ProtoTCP   = "tcp"
)

// RouteProto is the route's protocol, https when the spec names none.
func (r *Route) RouteProto() string {
	if r.Proto == "" {
		return ProtoHTTPS
	}
	return r.Proto
}

// RoutePort is the port the route is served on at its front ends: the
// spec's, or the protocol's usual one (0 for a tcp route without one,
// which validation refuses).
func (r *Route) RoutePort() int {
	switch {
	case r.Port != nil:
		return *r.Port
	case r.RouteProto() == ProtoHTTPS:
		return 443
	case r.RouteProto() == ProtoHTTP:
		return 80
	}
	return 0
}

// LetsEncrypt is the ACME directory front ends use when the spec has no
// acme section: as Caddy does, a public hostname gets a certificate from
// Let's Encrypt with no configuration.
const LetsEncrypt = "https://acme-v02.api.letsencrypt.org/directory"

// UsesACME reports whether the route's certificate comes from the cloud's
// ACME directory: an https route without one of its own.
func (r *Route) UsesACME() bool { return r.RouteProto() == ProtoHTTPS && r.Certificate == nil }

// Path resolves a file named in the spec: relative to the directory of
// the file it was written in.
func (m *Meta) Path(name string) string {
	if name == "" || filepath.IsAbs(name) || m.Pos.File == "" {
		return name
	}
	p := filepath.Join(filepath.Dir(m.Pos.File), name)
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return p
}

// DefaultHostPorts are what a site's node keeps on its public address
// when the spec says nothing: its SSH.
var DefaultHostPorts = []int{22}

// KeptPorts are the ports the site's node answers itself on its public
// address.
func (in *Ingress) KeptPorts() []int {
	if in.Has("host-ports") {
		return in.HostPorts
	}
	return DefaultHostPorts
}

// ForwardProto is the forward's protocol, tcp when the spec names none.
func (f *Forward) ForwardProto() string {
	if f.Proto == "" {
		return "tcp"
	}
	return f.Proto
}

// frontDoors checks the acme section and what each site's public address
// forwards (routes' protocols, ports and certificates: routeDoor).
func (v *validator) frontDoors() {
	v.acme()
	for _, name := range SortedNames(v.s.Sites) {
		if site := v.s.Sites[name]; site.Ingress != nil {
			v.ingress(name, site.Ingress)
		}
	}
}

func (v *validator) acme() {
	a := v.s.ACME
	if a == nil {
		return
	}
	if u, err := url.Parse(a.Directory); err != nil || u.Scheme != "https" || u.Host == "" {
		v.diags.Errorf(a.FieldPos("directory"), "acme: directory %q is not an https URL (Let's Encrypt's is https://acme-v02.api.letsencrypt.org/directory)", a.Directory)
	}
	if a.Email != "" && !strings.Contains(a.Email, "@") {
		v.diags.Errorf(a.FieldPos("email"), "acme: email %q is not an address", a.Email)
	}
	if a.CARoots != "" {
		if _, err := ReadCARoots(a.Path(a.CARoots)); err != nil {
			v.diags.Errorf(a.FieldPos("ca-roots"), "acme: ca-roots: %v", err)
		}
	}
}

// ReadCARoots reads a PEM file of CA certificates.
func ReadCARoots(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if !x509.NewCertPool().AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return b, nil
}

func (v *validator) routeDoor(name string, r *Route) {
	proto := r.RouteProto()
	if r.Port == nil && proto == ProtoTCP {
		v.diags.Errorf(r.FieldPos("proto"), "route %q: a tcp route needs its port (the front end's port clients connect to)", name)
	}
	if r.HealthPath != "" {
		switch {
		case proto == ProtoTCP:
			v.diags.Errorf(r.FieldPos("health-path"), "route %q: health-path is for http and https routes; a tcp backend is checked by connecting", name)
		case !strings.HasPrefix(r.HealthPath, "/") || strings.ContainsAny(r.HealthPath, " \t\r\n"):
			v.diags.Errorf(r.FieldPos("health-path"), "route %q: health-path %q is not a path (it starts with /)", name, r.HealthPath)
		}
	}
	switch {
	case r.Certificate != nil && proto != ProtoHTTPS:
		v.diags.Errorf(r.FieldPos("certificate"), "route %q: a certificate is for https routes; this one is %s", name, proto)
	case r.Certificate != nil:
		if msg := CheckCertificate(r.Certificate, r.Host); msg != "" {
			v.diags.Errorf(r.FieldPos("certificate"), "route %q: certificate: %s", name, msg)
		}
	}
}

// CheckCertificate explains what is wrong with the certificate files for
// host ("" when nothing is): unreadable, not PEM, a key that is not the
// certificate's, or a certificate for other names.
func CheckCertificate(c *Certificate, host string) string {
	certFile, keyFile := c.Path(c.CertFile), c.Path(c.KeyFile)
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return err.Error()
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return err.Error()
	}
	if b, _ := pem.Decode(certPEM); b == nil || b.Type != "CERTIFICATE" {
		return fmt.Sprintf("cert-file %s holds no PEM certificate", c.CertFile)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		if strings.Contains(err.Error(), "does not match") {
			return fmt.Sprintf("key-file %s is not the key of cert-file %s", c.KeyFile, c.CertFile)
		}
		return fmt.Sprintf("cert-file %s and key-file %s: %v", c.CertFile, c.KeyFile, err)
	}
	if err := pair.Leaf.VerifyHostname(host); err != nil {
		return fmt.Sprintf("cert-file %s is for %s, not %s", c.CertFile, strings.Join(pair.Leaf.DNSNames, ", "), host)
	}
	return ""
}

// ingress checks a site's public address and what it forwards: to an
// instance at the site whose zone the internet may reach, each port once,
// none of them one the node keeps.
func (v *validator) ingress(site string, in *Ingress) {
	what := fmt.Sprintf("site %q: ingress", site)
	if in.Address != "" {
		if a, err := netip.ParseAddr(in.Address); err != nil || !a.Is4() {
			v.diags.Errorf(in.FieldPos("address"), "%s: address %q is not an IPv4 address", what, in.Address)
		}
	}
	kept := map[int]bool{}
	for _, p := range in.KeptPorts() {
		if p < 1 || p > 65535 {
			v.diags.Errorf(in.FieldPos("host-ports"), "%s: host port %d is out of range 1-65535", what, p)
		}
		kept[p] = true
	}
	type claim struct {
		proto string
		port  int
	}
	owner := map[claim]string{}
	for _, f := range in.Forward {
		inst := v.s.Instances[f.To]
		switch {
		case inst == nil:
			v.diags.Errorf(f.FieldPos("to"), "%s: forward to unknown instance %q%s", what, f.To, didYouMean(f.To, v.s.Instances))
			continue
		case v.s.SiteOf(inst) != site:
			v.diags.Errorf(f.FieldPos("to"), "%s: forward to %q, which is at site %q; a site's address forwards to its own instances", what, f.To, v.s.SiteOf(inst))
		case len(inst.NICs()) == 0:
			v.diags.Errorf(f.FieldPos("to"), "%s: forward to %q, which has no address in a zone", what, f.To)
		default:
			zn := inst.NICs()[0].Zone
			if z := v.s.Zones[zn]; z != nil && !slices.Contains(z.PinholeAllowedFrom, Internet) {
				v.diags.Errorf(f.FieldPos("to"), "%s: forward to %q in zone %q, which the internet may not reach (add internet to the zone's pinhole-allowed-from)", what, f.To, zn)
			}
		}
		for _, r := range f.Ports {
			if r.Lo < 1 || r.Hi > 65535 {
				v.diags.Errorf(f.FieldPos("ports"), "%s: port %s is out of range 1-65535", what, r)
				continue
			}
			for p := r.Lo; p <= r.Hi; p++ {
				c := claim{f.ForwardProto(), p}
				switch {
				case kept[p] && c.proto == "tcp":
					v.diags.Errorf(f.FieldPos("ports"), "%s: port %d is one the node keeps (host-ports); forwarding it would cut the node's own service", what, p)
				case owner[c] != "":
					v.diags.Errorf(f.FieldPos("ports"), "%s: %d/%s is forwarded to %q already", what, p, c.proto, owner[c])
				default:
					owner[c] = f.To
				}
			}
		}
	}
}
