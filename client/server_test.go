package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/holdfast/holdfast/api"
	"github.com/holdfast/holdfast/internal/server"
)

// testServer is the real control plane on a loopback TLS listener, with a
// clock the test moves instead of sleeping. Realize is off: operations
// stay pending, and nothing needs root.
type testServer struct {
	t     *testing.T
	s     *server.Server
	ts    *httptest.Server
	clock *clock
	user  string
	pass  string
}

type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

var clouds atomic.Int64

func newTestServer(t *testing.T) *testServer {
	t.Helper()
	c := &clock{}
	c.ns.Store(time.Now().UnixNano())
	s, err := server.New(server.Config{
		SpecPath: "../examples/tasmanian",
		StateDir: t.TempDir(),
		Rename:   fmt.Sprintf("client%d", clouds.Add(1)),
		Now:      c.now,
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	ts := httptest.NewUnstartedServer(s.Handler())
	ts.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are what some tests do
	ts.StartTLS()
	t.Cleanup(func() {
		ts.Close()
		// Not t.Context(): it is canceled before cleanups run.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	})
	return &testServer{t: t, s: s, ts: ts, clock: c, user: s.Bootstrap.User, pass: string(s.Bootstrap.Password.Expose())}
}

// fingerprint is the server certificate's, as `holdfast serve` prints it.
func (e *testServer) fingerprint() string { return Fingerprint(e.ts.Certificate().Raw) }

// caFile writes the server's certificate as PEM and returns the path.
func (e *testServer) caFile() string {
	p := filepath.Join(e.t.TempDir(), "tls.crt")
	writePEM(e.t, p, e.ts.Certificate())
	return p
}

func writePEM(t *testing.T, path string, cert *x509.Certificate) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
}

// client returns a client that pins the server's certificate.
func (e *testServer) client(opts ...Option) *Client {
	e.t.Helper()
	c, err := New(e.ts.URL, append([]Option{WithFingerprint(e.fingerprint())}, opts...)...)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// sessions records what a session hook was given.
type sessions struct {
	mu   sync.Mutex
	seen []Session
}

func (s *sessions) save(x Session) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seen = append(s.seen, x)
	return nil
}

func (s *sessions) all() []Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Session(nil), s.seen...)
}

// admin returns a client logged in as the bootstrap operator, and the
// record of its sessions.
func (e *testServer) admin(opts ...Option) (*Client, *sessions) {
	e.t.Helper()
	rec := &sessions{}
	c := e.client(append([]Option{WithSessionHook(rec.save)}, opts...)...)
	if _, err := c.Login(e.t.Context(), api.LoginRequest{User: e.user, Password: e.pass}); err != nil {
		e.t.Fatal(err)
	}
	return c, rec
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sshKey is a well-formed ed25519 public key line made from seed.
func sshKey(seed string) string {
	sum := sha256.Sum256([]byte(seed))
	var b bytes.Buffer
	for _, part := range [][]byte{[]byte("ssh-ed25519"), sum[:]} {
		b.Write([]byte{0, 0, 0, byte(len(part))})
		b.Write(part)
	}
	return "ssh-ed25519 " + base64.StdEncoding.EncodeToString(b.Bytes()) + " " + seed
}
