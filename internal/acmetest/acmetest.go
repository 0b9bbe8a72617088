// Package acmetest runs a real ACME server, Let's Encrypt's pebble, for
// tests: certificates are issued only after real HTTP-01 or TLS-ALPN-01
// validation against the names' addresses, which pebble resolves with a DNS
// server the test provides (ServeDNS).
package acmetest

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	neturl "net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/nsthread"
)

// Options say where pebble listens and how it validates.
type Options struct {
	Addr      string // its ACME listen host:port; required
	MgmtAddr  string // its management listen host:port (roots at /roots/0); required
	HTTPPort  int    // the port it validates HTTP-01 on (real: 80)
	TLSPort   int    // the port it validates TLS-ALPN-01 on (real: 443)
	DNSServer string // host:port pebble resolves names with
	Netns     string // when set, pebble runs in this named network namespace
}

// Pebble is a running pebble.
type Pebble struct {
	Directory string // https://<Addr>/dir
	TLSRoots  string // PEM of the CA of pebble's own listener certificate

	mgmt  string
	netns string
}

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// binary builds pebble once per test binary (go caches the build).
func binary() (string, error) {
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "acmetest-pebble-")
		if err != nil {
			buildErr = err
			return
		}
		buildPath = filepath.Join(dir, "pebble")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, "go", "build", "-o", buildPath, "github.com/letsencrypt/pebble/v2/cmd/pebble").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("building pebble: %w: %s", err, out)
		}
	})
	return buildPath, buildErr
}

// Start runs pebble until the test ends, and returns once its directory
// answers.
func Start(t testing.TB, o Options) *Pebble {
	t.Helper()
	if o.Addr == "" || o.MgmtAddr == "" {
		t.Fatal("acmetest: Addr and MgmtAddr are required")
	}
	bin, err := binary()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rootsPEM, err := listenerCert(dir, o.Addr, o.MgmtAddr)
	if err != nil {
		t.Fatal(err)
	}
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress":                  o.Addr,
		"managementListenAddress":        o.MgmtAddr,
		"certificate":                    filepath.Join(dir, "cert.pem"),
		"privateKey":                     filepath.Join(dir, "key.pem"),
		"httpPort":                       o.HTTPPort,
		"tlsPort":                        o.TLSPort,
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
		"retryAfter":                     map[string]int{"authz": 1, "order": 1},
		"keyAlgorithm":                   "ecdsa",
		"profiles": map[string]any{
			"default": map[string]any{"description": "default", "validityPeriod": 7776000},
		},
	}}
	b, _ := json.Marshal(cfg)
	cfgPath := filepath.Join(dir, "pebble-config.json")
	if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{bin, "-config", cfgPath}
	if o.DNSServer != "" {
		args = append(args, "-dnsserver", o.DNSServer)
	}
	if o.Netns != "" {
		args = append([]string{"ip", "netns", "exec", o.Netns}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	// Validation is real (never PEBBLE_VA_ALWAYS_VALID); only the waits
	// that make a test slow and the random nonce rejections are off.
	cmd.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting pebble: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			t.Logf("pebble: %s", sc.Text())
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			t.Errorf("pebble (pid %d) did not exit", cmd.Process.Pid)
		}
	})

	p := &Pebble{Directory: "https://" + o.Addr + "/dir", TLSRoots: rootsPEM, mgmt: o.MgmtAddr, netns: o.Netns}
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err := p.get("https://" + o.Addr + "/dir")
		if err == nil {
			return p
		}
		select {
		case <-exited:
			t.Fatalf("pebble exited before answering: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("pebble did not answer within 15 s: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // polling a condition with a deadline
	}
}

// IssuerRoots returns pebble's issuing root (it makes a new one each run).
func (p *Pebble) IssuerRoots(t testing.TB) *x509.CertPool {
	t.Helper()
	b, err := p.get("https://" + p.mgmt + "/roots/0")
	if err != nil {
		t.Fatalf("pebble's roots: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		t.Fatalf("pebble's roots: no certificate in %q", b)
	}
	return pool
}

// get fetches url with pebble's listener CA, from inside its namespace
// when it has one.
func (p *Pebble) get(url string) ([]byte, error) {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(p.TLSRoots))
	var body []byte
	fetch := func() error {
		// The connection is made here, on this thread (in the namespace
		// when there is one): a transport dials on goroutines of its own.
		u, err := neturl.Parse(url)
		if err != nil {
			return err
		}
		conn, err := net.DialTimeout("tcp", u.Host, 2*time.Second)
		if err != nil {
			return err
		}
		defer conn.Close()
		tr := &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: pool},
			DisableKeepAlives: true,
			DialContext:       func(context.Context, string, string) (net.Conn, error) { return conn, nil },
		}
		c := &http.Client{Transport: tr, Timeout: 2 * time.Second}
		resp, err := c.Get(url)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", url, resp.Status)
		}
		body, err = io.ReadAll(resp.Body)
		return err
	}
	if p.netns == "" {
		return body, fetch()
	}
	return body, nsthread.In(filepath.Join("/run/netns", p.netns), fetch)
}

// listenerCert writes a CA and a certificate for pebble's listeners
// (signed by it) to dir, and returns the CA's PEM.
func listenerCert(dir string, addrs ...string) (string, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", err
	}
	now := time.Now()
	ca := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "acmetest pebble listener CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return "", err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return "", err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", err
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "pebble"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost", "pebble"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	for _, a := range addrs {
		host, _, err := net.SplitHostPort(a)
		if err != nil {
			return "", fmt.Errorf("address %q: %w", a, err)
		}
		if ip := net.ParseIP(host); ip != nil {
			leaf.IPAddresses = append(leaf.IPAddresses, ip)
		} else if host != "" {
			leaf.DNSNames = append(leaf.DNSNames, host)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		return "", err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "cert.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return "", err
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})), nil
}

// FreePort returns a TCP port free on 127.0.0.1 at the time of the call,
// for the fixed ports pebble's configuration needs.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	n, _ := strconv.Atoi(port)
	return n
}
