package frontdoor

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
)

// certs holds the certificates of https routes: the operator's, given in
// the config, and ACME's, obtained and renewed by certmagic with its
// storage (account, keys, certificates) under the state directory.
type certs struct {
	dir  string
	log  *slog.Logger
	zlog *zap.Logger

	given atomic.Pointer[map[string]*tls.Certificate]
	magic atomic.Pointer[certmagic.Config] // nil: no ACME
	iss   atomic.Pointer[certmagic.ACMEIssuer]

	ctx    context.Context // ends at stop: background obtains and renewals
	cancel context.CancelFunc

	mu      sync.Mutex
	cache   *certmagic.Cache
	acmeKey string // the ACME settings magic was made for
	managed map[string]bool
	errs    map[string]error // a host's last failure to obtain

	// noHTTP01 and noTLSALPN01 make tests use one challenge type.
	noHTTP01, noTLSALPN01 bool
}

func newCerts(dir string, log *slog.Logger) *certs {
	c := &certs{dir: dir, log: log, zlog: zap.New(slogCore{l: log.With("component", "certmagic")}),
		managed: map[string]bool{}, errs: map[string]error{}}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	empty := map[string]*tls.Certificate{}
	c.given.Store(&empty)
	return c
}

// parseCertificate checks an operator's certificate: it parses, and its
// key is the leaf's.
func parseCertificate(pc *Certificate) (*tls.Certificate, error) {
	c, err := tls.X509KeyPair([]byte(pc.Cert), []byte(pc.Key))
	if err != nil {
		return nil, err
	}
	if c.Leaf == nil {
		if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return nil, err
		}
	}
	return &c, nil
}

// set installs the given certificates and makes certmagic's config for
// the ACME settings (kept while they do not change).
func (c *certs) set(_ context.Context, a *ACME, given map[string]*tls.Certificate, t *table) error {
	c.given.Store(&given)
	c.mu.Lock()
	defer c.mu.Unlock()
	var acmeHosts []string
	tlsPort := ""
	for _, r := range t.routes {
		if r.acme {
			acmeHosts = append(acmeHosts, r.host)
			if tlsPort == "" {
				_, tlsPort, _ = net.SplitHostPort(r.cfg.Listen)
			}
		}
	}
	// Hosts no longer from ACME: certmagic stops renewing them.
	var gone []certmagic.SubjectIssuer
	for h := range c.managed {
		if !slices.Contains(acmeHosts, h) {
			gone = append(gone, certmagic.SubjectIssuer{Subject: h})
			delete(c.managed, h)
			delete(c.errs, h)
		}
	}
	if c.cache != nil && len(gone) > 0 {
		c.cache.RemoveManaged(gone)
	}
	if a == nil {
		c.magic.Store(nil)
		c.iss.Store(nil)
		c.acmeKey = ""
		return nil
	}
	key := strings.Join([]string{a.Directory, a.Email, a.Roots, a.HTTPListen, tlsPort}, "\x00")
	if key == c.acmeKey {
		return nil
	}
	if c.dir == "" {
		return errors.New("ACME: the front door has no state directory")
	}
	httpHost, httpPort, err := net.SplitHostPort(cmp.Or(a.HTTPListen, ":80"))
	if err != nil {
		return fmt.Errorf("ACME: http_listen: %w", err)
	}
	hp, _ := strconv.Atoi(httpPort)
	tp, _ := strconv.Atoi(cmp.Or(tlsPort, "443"))
	var roots *x509.CertPool
	if a.Roots != "" {
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM([]byte(a.Roots)) {
			return errors.New("ACME: roots: no PEM certificate")
		}
	}
	if c.cache == nil {
		c.cache = certmagic.NewCache(certmagic.CacheOptions{
			GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) {
				if m := c.magic.Load(); m != nil {
					return m, nil
				}
				return nil, errors.New("ACME is off")
			},
			Logger: c.zlog,
		})
	}
	magic := certmagic.New(c.cache, certmagic.Config{
		Storage: &certmagic.FileStorage{Path: filepath.Join(c.dir, "certmagic")},
		Logger:  c.zlog,
	})
	// The challenge ports are our own listeners': certmagic finds them
	// taken and leaves the answering to them (the plain HTTP listener for
	// HTTP-01, the https listener, with acme-tls/1, for TLS-ALPN-01).
	iss := certmagic.NewACMEIssuer(magic, certmagic.ACMEIssuer{
		CA:                      a.Directory,
		Email:                   a.Email,
		Agreed:                  true,
		TrustedRoots:            roots,
		ListenHost:              httpHost,
		AltHTTPPort:             hp,
		AltTLSALPNPort:          tp,
		DisableHTTPChallenge:    c.noHTTP01,
		DisableTLSALPNChallenge: c.noTLSALPN01,
		Logger:                  c.zlog,
	})
	magic.Issuers = []certmagic.Issuer{iss}
	c.magic.Store(magic)
	c.iss.Store(iss)
	c.acmeKey = key
	return nil
}

// obtain gets (or loads from storage) each host's certificate before Set
// returns, so a route is ready before its clients come; a host that fails
// is retried in the background by certmagic, and reported by status.
func (c *certs) obtain(ctx context.Context, hosts []string, t *table) error {
	magic := c.magic.Load()
	if magic == nil {
		return nil
	}
	var errs []error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, h := range hosts {
		wg.Go(func() {
			err := magic.ManageSync(ctx, []string{h})
			mu.Lock()
			defer mu.Unlock()
			c.managed[h] = true
			if err != nil {
				c.errs[h] = err
				name := h
				for _, r := range t.routes {
					if r.acme && r.host == h {
						name = r.cfg.Name
					}
				}
				errs = append(errs, fmt.Errorf("route %q: certificate for %s: %w", name, h, err))
				if aerr := magic.ManageAsync(c.ctx, []string{h}); aerr != nil {
					c.log.Warn("ACME: retrying in the background failed", "host", h, "err", aerr)
				}
				return
			}
			delete(c.errs, h)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// status is an ACME host's certificate state for Health.
func (c *certs) status(host string) string {
	if c.cache != nil {
		var best time.Time
		for _, cert := range c.cache.AllMatchingCertificates(host) {
			if cert.Leaf != nil && cert.Leaf.NotAfter.After(best) {
				best = cert.Leaf.NotAfter
			}
		}
		if !best.IsZero() {
			return "valid until " + best.UTC().Format(time.DateOnly)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.errs[host]; err != nil {
		return "obtaining: " + err.Error()
	}
	return "obtaining"
}

// getCertificate picks an https connection's certificate by SNI: the
// operator's, else certmagic's (which also answers TLS-ALPN-01).
func (c *certs) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
	if cert, ok := (*c.given.Load())[name]; ok {
		return cert, nil
	}
	if magic := c.magic.Load(); magic != nil {
		return magic.GetCertificate(hello)
	}
	return nil, fmt.Errorf("no certificate for %q", name)
}

// handleChallenge answers an HTTP-01 challenge this front door holds.
func (c *certs) handleChallenge(w http.ResponseWriter, r *http.Request) bool {
	iss := c.iss.Load()
	return iss != nil && iss.HandleHTTPChallenge(w, r)
}

func (c *certs) stop() {
	c.cancel()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cache != nil {
		c.cache.Stop()
	}
}
