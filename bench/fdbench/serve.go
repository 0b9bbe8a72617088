package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"
)

// serveConfig is what serve's flags say.
type serveConfig struct {
	backend, dir, host string
	haproxyThreads     int
	limit              time.Duration
	cpuProfile         string
}

// serve writes HAProxy's configuration for the bench's two routes, then
// serves the same two routes with Holdfast's front door until interrupted.
func serve(c serveConfig) error {
	if c.backend == "" || c.dir == "" {
		return fmt.Errorf("-backend and -dir are required")
	}
	certPEM, keyPEM, err := selfSigned(c.host)
	if err != nil {
		return err
	}
	var ports [4]int // haproxy http, https; front door http, https
	for i := range ports {
		if ports[i], err = freePort(); err != nil {
			return err
		}
	}
	addr := func(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }
	// HAProxy reads the certificate and its key from one file.
	pemPath := filepath.Join(c.dir, "haproxy.pem")
	if err := os.WriteFile(pemPath, append(append([]byte{}, certPEM...), keyPEM...), 0o600); err != nil {
		return err
	}
	cfg := haproxyConfig(c.host, addr(ports[0]), addr(ports[1]), pemPath, c.backend, c.haproxyThreads)
	if err := os.WriteFile(filepath.Join(c.dir, "haproxy.cfg"), []byte(cfg), 0o600); err != nil {
		return err
	}
	fmt.Println("haproxy http", addr(ports[0]))
	fmt.Println("haproxy https", addr(ports[1]))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if c.limit > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.limit)
		defer cancel()
	}
	fd, err := startFrontDoor(ctx, c.dir, os.Stderr, []benchRoute{
		{name: "plain", proto: "http", host: c.host, listen: addr(ports[2]), backends: []string{c.backend}},
		{name: "tls", proto: "https", host: c.host, listen: addr(ports[3]), backends: []string{c.backend}, cert: string(certPEM), key: string(keyPEM)},
	})
	if err != nil {
		return err
	}
	defer fd.Close()
	// The backend's line through both routes, or nothing is measured.
	want := strings.TrimSpace(backendLine("app"))
	for _, u := range []string{fmt.Sprintf("http://%s:%d/", c.host, ports[2]), fmt.Sprintf("https://%s:%d/", c.host, ports[3])} {
		if err := check(u, want, 10*time.Second); err != nil {
			return err
		}
	}
	if c.cpuProfile != "" {
		f, err := os.Create(c.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	fmt.Println("frontdoor http", addr(ports[2]))
	fmt.Println("frontdoor https", addr(ports[3]))
	<-ctx.Done()
	return nil
}

// haproxyConfig is HAProxy's configuration for the routes the front door
// serves: Host (port ignored) selects the one backend, over plain HTTP on
// httpAddr and TLS terminated on httpsAddr with the certificate and key in
// pemPath; anything else is refused (503). As for the front door:
// keep-alive to the backend (HAProxy's default, http-reuse safe), a 1 s
// connect timeout, and an active check of the backend every 500 ms. It
// runs in the foreground (-db) as whoever starts it, logging nothing.
func haproxyConfig(host, httpAddr, httpsAddr, pemPath, backend string, threads int) string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	p("# Written by bench/fdbench: the routes Holdfast's front door serves, for HAProxy.")
	p("global")
	p("  nbthread %d", threads)
	p("  maxconn 1000")
	p("defaults")
	p("  mode http")
	p("  option http-keep-alive")
	p("  http-reuse safe")
	p("  timeout connect 1s")
	p("  timeout client 30s")
	p("  timeout server 30s")
	p("  timeout http-request 10s")
	p("  timeout http-keep-alive 30s")
	for _, fe := range []struct{ name, bind string }{
		{"plain", httpAddr},
		{"tls", httpsAddr + " ssl crt " + pemPath},
	} {
		p("frontend %s", fe.name)
		p("  bind %s", fe.bind)
		p("  acl route req.hdr(host),field(1,:) -i %s", host)
		p("  use_backend app if route")
	}
	p("backend app")
	p("  server app %s check inter 500ms", backend)
	return b.String()
}

// selfSigned is one certificate for host (and 127.0.0.1), ECDSA P-256, and
// its key, in PEM: both proxies present it in the https runs.
func selfSigned(host string) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: host},
		DNSNames:     []string{host},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}
