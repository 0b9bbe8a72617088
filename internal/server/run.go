package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"time"

	"github.com/holdfast/holdfast/internal/audit"
	"github.com/holdfast/holdfast/internal/guest"
	"github.com/holdfast/holdfast/internal/session"
)

// TLS says how the server is reached. With no files given, a self-signed
// certificate is made on first start and kept in the server's directory.
type TLS struct {
	CertFile, KeyFile string
	// Hosts are put into a generated certificate besides localhost.
	Hosts []string
	// Disable serves plain HTTP (behind a TLS-terminating proxy only).
	Disable bool
}

// Start runs the realizer and housekeeping in the background; Run calls
// it.
func (s *Server) Start() {
	s.startBus() // first: the realizer tells the others through it
	if s.cfg.Realize {
		ctx, cancel := context.WithCancel(context.Background())
		s.stopLead, s.leadDone = cancel, make(chan struct{})
		go func() { defer close(s.leadDone); s.lead.Run(ctx) }()
		go s.real.run()
	} else {
		close(s.ready)
	}
	go s.maintain()
}

// maintain runs housekeeping every few minutes until shutdown: sessions
// (ended ones forgotten, the signing key rotated when old), login
// throttling state, TOTP steps past every window, and an audit checkpoint so that recent entries are
// anchored by a signature, not only by the chain.
func (s *Server) maintain() {
	t := time.NewTicker(5 * time.Minute)
	defer t.Stop()
	for {
		select {
		case <-s.real.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		for what, err := range map[string]error{
			"sessions":   s.sess.m.Maintain(ctx),
			"throttling": s.sess.l.Maintain(ctx),
			"totp":       s.sess.otp.Maintain(ctx),
			"nonces":     s.maintainNonces(ctx),
			"audit":      s.checkpoint(ctx),
		} {
			if err != nil {
				s.log.Error("housekeeping failed", "what", what, "err", err)
			}
		}
		cancel()
	}
}

// maintainNonces forgets the shared nonces out of the window; the
// in-process cache forgets its own.
func (s *Server) maintainNonces(ctx context.Context) error {
	if n, ok := s.hmac.Nonces.(*session.Nonces); ok {
		return n.Maintain(ctx, s.now())
	}
	return nil
}

// checkpoint signs the audit log's newest entry unless it is signed.
func (s *Server) checkpoint(ctx context.Context) error {
	if es, err := s.audit.List(ctx, audit.Filter{Limit: 1}); err != nil || len(es) == 0 {
		return err // nothing to sign yet
	}
	_, err := s.audit.Checkpoint(ctx)
	return err
}

// Shutdown stops the realizer after the pass under way (work not started
// stays pending for the next start) and closes the databases.
// Calling it again does nothing.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutOnce.Do(func() {
		err := s.real.shutdown(ctx)
		if s.stopLead != nil {
			// After the last pass: another replica may take over now.
			s.stopLead()
			<-s.leadDone
		}
		if s.audit != nil {
			err = errors.Join(err, s.checkpoint(ctx))
		}
		s.shutErr = errors.Join(err, s.Close())
	})
	return s.shutErr
}

// Listening is what Run reports once it accepts connections.
type Listening struct {
	URL         string
	Fingerprint string // SHA-256 of the certificate, for clients to pin
	CertFile    string
}

// Run serves on addr until ctx ends, then shuts down gracefully: no new
// connections, requests under way finish (up to 30 s), event streams end,
// the realizer finishes its pass. ready, if not nil, is told where it
// listens.
func (s *Server) Run(ctx context.Context, addr string, t TLS, ready func(Listening)) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          nil,
	}
	l := Listening{URL: "http://" + ln.Addr().String()}
	if !t.Disable {
		cert, certFile, err := s.certificate(t)
		if err != nil {
			ln.Close()
			return err
		}
		sum := sha256.Sum256(cert.Certificate[0])
		l = Listening{URL: "https://" + ln.Addr().String(), Fingerprint: "sha256:" + hex.EncodeToString(sum[:]), CertFile: certFile}
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	}
	stopGuest, err := s.serveGuest(ctx)
	if err != nil {
		ln.Close()
		return err
	}
	defer stopGuest()
	s.Start()
	// A process serving the API runs its collector less often, unless
	// the operator set GOGC: see GCPercent.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(GCPercent)
	}
	// Start-up hashed the first operator's password (64 MiB of argon2id
	// scratch); hand that back before idling.
	debug.FreeOSMemory()
	go s.releaseWhenIdle(ctx)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	s.log.Info("serving", "url", l.URL, "cloud", s.cloud, "fingerprint", l.Fingerprint)
	if ready != nil {
		ready(l)
	}
	select {
	case err := <-errc:
		return errors.Join(err, s.Shutdown(context.Background()))
	case <-ctx.Done():
	}
	s.log.Info("shutting down: finishing requests and the reconcile under way")
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s.real.once.Do(func() { close(s.real.stop) }) // ends event streams and waits
	err = srv.Shutdown(sctx)
	if err := s.Shutdown(sctx); err != nil {
		return err
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	s.log.Info("stopped")
	return err
}

// GCPercent is the collector's setting (GOGC) of a process serving the
// API. A request leaves tens of kilobytes of garbage (a page of 100
// instances, its JSON) while the live heap stays near 10 MB, so at the
// default of 100 the collector runs several times a second under load.
// Two replicas on one PostgreSQL serving 1,000 requests/s used about
// 0.72 cores at 200 against 0.84 at 100, and 400 saved no more. The heap
// may grow to three times the live one instead of twice while requests
// come (a login's 64 MiB of argon2id scratch counts while it is live:
// the peak went from 165 to 231 MB, 367 MB at 400), and releaseWhenIdle
// hands it back once they stop (docs/performance.md, issue 16).
const GCPercent = 200

// idleAfter is how long without a request makes the server idle.
const idleAfter = 3 * time.Second

// releaseWhenIdle hands the memory a burst of requests grew back to the
// operating system once the burst is over: Go's scavenger returns it only
// gradually, and a control plane spends most of its life idle beside the
// cloud it serves. One collection per burst, none while requests come.
func (s *Server) releaseWhenIdle(ctx context.Context) {
	t := time.NewTicker(idleAfter)
	defer t.Stop()
	var released int64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		last := s.lastRequest.Load()
		if last > released && time.Since(time.Unix(0, last)) >= idleAfter {
			debug.FreeOSMemory()
			released = last
		}
	}
}

// serveGuest serves the cloud's agents (package guest) on the unix socket
// the local engine binds into its instances, and on GuestListen when set.
// The returned function stops it.
func (s *Server) serveGuest(ctx context.Context) (func(), error) {
	creds, err := guest.OpenCredentials(s.cfg.StateDir, s.cloud)
	if err != nil {
		return nil, fmt.Errorf("guest service: %w", err)
	}
	g := &guest.Server{StateDir: s.cfg.StateDir, Cloud: s.cloud, Credentials: creds,
		State:   guest.FileState(guest.AppliedFile(s.cfg.StateDir, s.cloud)),
		Reports: guest.NewReports(s.cfg.StateDir, s.cloud), Log: s.log.With("service", "guest"), Now: s.now}
	lns := []net.Listener{}
	sock, err := guest.ListenSocket(guest.SocketDir(s.cfg.StateDir, s.cloud))
	if err != nil {
		return nil, fmt.Errorf("guest service: %w", err)
	}
	lns = append(lns, sock)
	if s.cfg.GuestListen != "" {
		tcp, err := net.Listen("tcp", s.cfg.GuestListen)
		if err != nil {
			sock.Close()
			return nil, fmt.Errorf("guest service: %w", err)
		}
		lns = append(lns, tcp)
	}
	gctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, ln := range lns {
		s.log.Info("serving agents", "address", ln.Addr().String())
		wg.Go(func() {
			if err := g.Serve(gctx, ln); err != nil {
				s.log.Error("guest service", "address", ln.Addr().String(), "err", err)
			}
		})
	}
	return func() { cancel(); wg.Wait() }, nil
}

// certificate loads the given certificate, or the one generated before,
// or generates one: ECDSA P-256, valid a year, for localhost and Hosts.
func (s *Server) certificate(t TLS) (tls.Certificate, string, error) {
	if t.CertFile != "" {
		c, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		return c, t.CertFile, err
	}
	certFile, keyFile := filepath.Join(s.dir, "tls.crt"), filepath.Join(s.dir, "tls.key")
	if c, err := tls.LoadX509KeyPair(certFile, keyFile); err == nil {
		if leaf, err := x509.ParseCertificate(c.Certificate[0]); err == nil && time.Until(leaf.NotAfter) > 7*24*time.Hour {
			return c, certFile, nil
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, "", err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "holdfast " + s.cloud, Organization: []string{"Holdfast"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true, // so clients can trust it as its own root
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	if h, err := os.Hostname(); err == nil {
		tmpl.DNSNames = append(tmpl.DNSNames, h)
	}
	for _, h := range t.Hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return tls.Certificate{}, "", err
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return tls.Certificate{}, "", err
	}
	s.log.Info("generated a self-signed TLS certificate", "file", certFile)
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return c, "", fmt.Errorf("generated certificate: %w", err)
	}
	return c, certFile, nil
}
