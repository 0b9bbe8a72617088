package client

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
)

// tlsOptions is how the server's certificate is trusted: the system's
// roots (neither set), a CA, or a pinned certificate.
type tlsOptions struct {
	roots *x509.CertPool
	pin   []byte // SHA-256 of the leaf certificate, DER
}

// WithCACertFile trusts the certificates of a PEM file (and only those)
// as roots, e.g. a self-signed server's own certificate.
func WithCACertFile(path string) Option {
	return func(c *Client) error {
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("CA certificate: %w", err)
		}
		if err := c.tls.addPEM(b); err != nil {
			return fmt.Errorf("CA certificate %s: %w", path, err)
		}
		return nil
	}
}

// WithCACertPEM is WithCACertFile with the PEM bytes themselves.
func WithCACertPEM(pemBytes []byte) Option {
	return func(c *Client) error {
		if err := c.tls.addPEM(pemBytes); err != nil {
			return fmt.Errorf("CA certificate: %w", err)
		}
		return nil
	}
}

func (t *tlsOptions) addPEM(b []byte) error {
	if t.roots == nil {
		t.roots = x509.NewCertPool()
	}
	if !t.roots.AppendCertsFromPEM(b) {
		return errors.New("no PEM certificate in it")
	}
	return nil
}

// WithFingerprint accepts exactly the server certificate whose SHA-256
// fingerprint is fp ("sha256:" and 64 hex digits; colons between the
// bytes are allowed), whoever signed it and whatever names it holds: the
// way to trust a self-signed server without a copy of its certificate.
func WithFingerprint(fp string) Option {
	return func(c *Client) error {
		sum, err := ParseFingerprint(fp)
		if err != nil {
			return err
		}
		c.tls.pin = sum
		return nil
	}
}

// ParseFingerprint parses "sha256:<hex>" into the 32 bytes of the digest.
func ParseFingerprint(fp string) ([]byte, error) {
	h, ok := strings.CutPrefix(strings.ToLower(strings.TrimSpace(fp)), "sha256:")
	if !ok {
		return nil, fmt.Errorf("fingerprint %q: want sha256:<64 hex digits>", fp)
	}
	sum, err := hex.DecodeString(strings.ReplaceAll(h, ":", ""))
	if err != nil || len(sum) != sha256.Size {
		return nil, fmt.Errorf("fingerprint %q: want sha256:<64 hex digits>", fp)
	}
	return sum, nil
}

// Fingerprint is the "sha256:<hex>" fingerprint of a DER certificate, as
// WithFingerprint takes it.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// FingerprintPEM is the fingerprint of the first certificate of a PEM
// file's bytes.
func FingerprintPEM(b []byte) (string, error) {
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return "", errors.New("no PEM certificate in it")
		}
		if blk.Type == "CERTIFICATE" {
			return Fingerprint(blk.Bytes), nil
		}
	}
}

// ErrFingerprint is returned when the server's certificate is not the
// pinned one.
var ErrFingerprint = errors.New("the server's certificate does not have the pinned fingerprint")

func (t *tlsOptions) config() (*tls.Config, error) {
	switch {
	case t.pin != nil && t.roots != nil:
		return nil, errors.New("give either a CA certificate or a fingerprint, not both")
	case t.pin != nil:
		pin := t.pin
		return &tls.Config{
			MinVersion: tls.VersionTLS12,
			// The chain is not verified against roots: the pin replaces
			// that. VerifyConnection runs for every connection, resumed
			// ones included, so no connection escapes the check.
			InsecureSkipVerify: true, // the leaf is checked against the pin below
			VerifyConnection: func(cs tls.ConnectionState) error {
				if len(cs.PeerCertificates) == 0 {
					return ErrFingerprint
				}
				sum := sha256.Sum256(cs.PeerCertificates[0].Raw)
				if subtle.ConstantTimeCompare(sum[:], pin) != 1 {
					return fmt.Errorf("%w (it has %s)", ErrFingerprint, Fingerprint(cs.PeerCertificates[0].Raw))
				}
				return nil
			},
		}, nil
	case t.roots != nil:
		return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: t.roots}, nil
	}
	return nil, nil
}

// apply returns hc (or a new client) with the TLS options in its
// transport.
func (t *tlsOptions) apply(hc *http.Client) (*http.Client, error) {
	conf, err := t.config()
	if err != nil {
		return nil, err
	}
	if hc == nil {
		hc = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	if conf == nil {
		return hc, nil
	}
	rt := hc.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	tr, ok := rt.(*http.Transport)
	if !ok {
		return nil, fmt.Errorf("a CA certificate or fingerprint needs an *http.Transport, not %T", rt)
	}
	tr = tr.Clone()
	tr.TLSClientConfig = conf
	cp := *hc
	cp.Transport = tr
	return &cp, nil
}
