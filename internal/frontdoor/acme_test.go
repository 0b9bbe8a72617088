package frontdoor

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/acmetest"
)

// acmeLab is pebble on loopback, resolving the test's names to 127.0.0.1,
// validating HTTP-01 and TLS-ALPN-01 at the given loopback ports.
func acmeLab(t *testing.T, httpPort, tlsPort int, names ...string) *acmetest.Pebble {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hosts := map[string]netip.Addr{}
	for _, n := range names {
		hosts[n] = netip.MustParseAddr("127.0.0.1")
	}
	acmetest.ServeDNS(t, pc, hosts)
	return acmetest.Start(t, acmetest.Options{
		Addr:      "127.0.0.1:" + strconv.Itoa(acmetest.FreePort(t)),
		MgmtAddr:  "127.0.0.1:" + strconv.Itoa(acmetest.FreePort(t)),
		HTTPPort:  httpPort,
		TLSPort:   tlsPort,
		DNSServer: pc.LocalAddr().String(),
	})
}

// fetchHTTPS asks listen for https://host/ verifying against roots, and
// returns the body and the leaf's issuer.
func fetchHTTPS(t *testing.T, listen, host string, roots *x509.CertPool) (string, *x509.Certificate) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots},
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", listen)
		},
	}}
	resp, err := c.Get("https://" + host + "/")
	if err != nil {
		t.Fatalf("https://%s/ via %s: %v", host, listen, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b), resp.TLS.PeerCertificates[0]
}

func port(t *testing.T, addr string) int {
	_, p, _ := net.SplitHostPort(addr)
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestACME(t *testing.T) {
	for _, tc := range []struct {
		name             string
		noHTTP01, noALPN bool
	}{
		{name: "HTTP-01", noALPN: true},
		{name: "TLS-ALPN-01", noHTTP01: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const host = "app.zcloud.test"
			a := startBackend(t, "zpod-a")
			httpListen, httpsListen := freeAddr(t), freeAddr(t)
			if tc.noHTTP01 {
				httpListen = freeAddr(t) // pebble's HTTP port is elsewhere: only TLS-ALPN-01 can pass
			}
			peb := acmeLab(t, port(t, httpListen), port(t, httpsListen), host)
			s := newServer(t)
			s.certs.noHTTP01, s.certs.noTLSALPN01 = tc.noHTTP01, tc.noALPN
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			start := time.Now()
			err := s.Set(ctx, Config{
				ACME:   &ACME{Directory: peb.Directory, Roots: peb.TLSRoots, HTTPListen: httpListen, Email: "ops@zcloud.test"},
				Routes: []Route{{Name: "app", Proto: "https", Host: host, Listen: httpsListen, Backends: []string{a.addr}}},
			})
			if err != nil {
				t.Fatalf("Set: %v", err)
			}
			t.Logf("certificate obtained in %v", time.Since(start))
			body, leaf := fetchHTTPS(t, httpsListen, host, peb.IssuerRoots(t))
			if !strings.HasPrefix(body, "zpod-a ") || !strings.Contains(body, "proto=https") {
				t.Errorf("body: %s", body)
			}
			if leaf.VerifyHostname(host) != nil {
				t.Errorf("leaf for %v", leaf.DNSNames)
			}
			if h := s.Health(); !strings.HasPrefix(h[0].Certificate, "valid until ") {
				t.Errorf("certificate status: %q", h[0].Certificate)
			}
			// Plain HTTP for an https host is redirected.
			if !tc.noHTTP01 {
				code, _ := get(t, httpListen, host, "/x?y=1")
				if code != http.StatusPermanentRedirect {
					t.Errorf("plain http: %d", code)
				}
			}
		})
	}
}

// TestChallengePeers: pebble validates HTTP-01 at front door A, which does
// not hold the token; A asks its peer B, which obtains the certificate.
func TestChallengePeers(t *testing.T) {
	const host = "app.zcloud.test"
	be := startBackend(t, "zpod-b")
	aListen, bHTTP, bHTTPS := freeAddr(t), freeAddr(t), freeAddr(t)
	peb := acmeLab(t, port(t, aListen), port(t, freeAddr(t)), host)

	a := newServer(t)
	set(t, a, Config{Routes: []Route{{Name: "app", Proto: "http", Host: host, Listen: aListen,
		Backends: []string{be.addr}, ChallengePeers: []string{freeAddr(t), bHTTP}}}})

	b := newServer(t)
	b.certs.noTLSALPN01 = true
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := b.Set(ctx, Config{
		ACME:   &ACME{Directory: peb.Directory, Roots: peb.TLSRoots, HTTPListen: bHTTP},
		Routes: []Route{{Name: "app", Proto: "https", Host: host, Listen: bHTTPS, Backends: []string{be.addr}}},
	})
	if err != nil {
		t.Fatalf("B's Set: %v", err)
	}
	if body, _ := fetchHTTPS(t, bHTTPS, host, peb.IssuerRoots(t)); !strings.HasPrefix(body, "zpod-b ") {
		t.Errorf("body: %s", body)
	}
	// A token no front door holds goes to the route like any request.
	if code, body := get(t, aListen, host, "/.well-known/acme-challenge/nosuchtoken"); code != http.StatusOK || !strings.HasPrefix(body, "zpod-b ") {
		t.Errorf("unknown token: %d %s", code, body)
	}
}
