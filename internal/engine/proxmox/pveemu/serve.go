package pveemu

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"maps"
	"math/big"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Serving the emulator the way pveproxy serves PVE's API on port 8006:
// HTTPS with a self-signed certificate (a fresh node's pve-ssl.pem), and
// HTTP/1.1 only, as pveproxy speaks no HTTP/2 (error answers carry their
// message in the status line, which HTTP/2 does not have).

// SelfSignedCertificate makes a key and a self-signed certificate for
// hosts (names or addresses) and the loopback addresses, valid for a year.
func SelfSignedCertificate(hosts ...string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certificate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certificate serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "pve emulator", Organization: []string{"PVE Cluster Node"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			if !slices.ContainsFunc(tmpl.IPAddresses, ip.Equal) {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			}
		} else if h != "" && !slices.Contains(tmpl.DNSNames, h) {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// NewServer is an HTTP server for emu that speaks HTTP/1.1 only, over TLS
// with cert unless cert is nil. Serve it with ServeTLS(ln, "", "") or, for
// plain HTTP, Serve(ln).
func NewServer(emu *Emulator, cert *tls.Certificate) *http.Server {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	srv := &http.Server{Handler: emu, ReadHeaderTimeout: 10 * time.Second, Protocols: &protocols}
	if cert != nil {
		srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{*cert}}
	}
	return srv
}

// ParseDurations reads task durations as "TYPE=DURATION" entries and an
// optional scale factor, separated by commas: "0.1" makes every task take a
// tenth of its default, "qmclone=200ms,qmstart=100ms" sets two, and
// "0.1,qmclone=2s" both. Types left out keep their default (scaled).
func ParseDurations(spec string) (map[string]time.Duration, error) {
	scale := 1.0
	set := map[string]time.Duration{}
	for _, item := range strings.Split(spec, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		typ, val, ok := strings.Cut(item, "=")
		if !ok {
			f, err := strconv.ParseFloat(item, 64)
			if err != nil || f < 0 {
				return nil, fmt.Errorf("%q is neither TYPE=DURATION nor a scale factor", item)
			}
			scale = f
			continue
		}
		if _, known := DefaultDurations[typ]; !known {
			return nil, fmt.Errorf("unknown task type %q (known: %s)", typ, strings.Join(slices.Sorted(maps.Keys(DefaultDurations)), ", "))
		}
		d, err := time.ParseDuration(val)
		if err != nil || d < 0 {
			return nil, fmt.Errorf("%s=%s: not a duration (like 200ms or 2s)", typ, val)
		}
		set[typ] = d
	}
	out := map[string]time.Duration{}
	for typ, d := range DefaultDurations {
		out[typ] = time.Duration(float64(d) * scale)
	}
	maps.Copy(out, set)
	return out, nil
}
