package frontdoor

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
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// backendServer is a real HTTP backend on loopback that names itself.
type backendServer struct {
	name    string
	waiting atomic.Int64 // requests in their sleep
	ln      net.Listener
	srv     *http.Server
	addr    string
}

func startBackend(t *testing.T, name string) *backendServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backendServer{name: name, ln: ln, addr: ln.Addr().String()}
	b.serve(t)
	return b
}

func (b *backendServer) serve(t *testing.T) {
	b.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d := r.URL.Query().Get("sleep"); d != "" {
			dd, _ := time.ParseDuration(d)
			b.waiting.Add(1)
			defer b.waiting.Add(-1)
			select {
			case <-time.After(dd):
			case <-r.Context().Done():
			}
		}
		w.Header().Set("X-Backend", b.name)
		fmt.Fprintf(w, "%s xff=%s proto=%s host=%s", b.name, r.Header.Get("X-Forwarded-For"),
			r.Header.Get("X-Forwarded-Proto"), r.Header.Get("X-Forwarded-Host"))
	})}
	go func() { _ = b.srv.Serve(b.ln) }()
	t.Cleanup(func() { _ = b.srv.Close() })
}

// stop closes the listener and its connections: the backend is gone.
func (b *backendServer) stop() { _ = b.srv.Close() }

// restart listens again on the same address.
func (b *backendServer) restart(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ln, err := net.Listen("tcp", b.addr)
		if err == nil {
			b.ln = ln
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.serve(t)
}

// freeAddr is a loopback address nothing listens on (at the time).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func newServer(t *testing.T) *Server {
	t.Helper()
	s := New(Options{StateDir: t.TempDir(), Log: testLog(t), CheckInterval: 100 * time.Millisecond})
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func set(t *testing.T, s *Server, cfg Config) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.Set(ctx, cfg); err != nil {
		t.Fatalf("Set: %v", err)
	}
}

var client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// get asks addr for http://host/path and returns status and body.
func get(t *testing.T, addr, host, path string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
	req.Host = host
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s%s via %s: %v", host, path, addr, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRoutesByHostWithRoundRobinAndForwardedHeaders(t *testing.T) {
	a1, a2, b := startBackend(t, "a1"), startBackend(t, "a2"), startBackend(t, "b")
	s := newServer(t)
	listen := freeAddr(t)
	set(t, s, Config{Routes: []Route{
		{Name: "app", Proto: "http", Host: "App.Example", Listen: listen, Backends: []string{a1.addr, a2.addr}},
		{Name: "api", Proto: "http", Host: "api.example", Listen: listen, Backends: []string{b.addr}},
	}})
	seen := map[string]int{}
	for range 6 {
		code, body := get(t, listen, "app.example:8080", "/")
		if code != 200 {
			t.Fatalf("app: %d %s", code, body)
		}
		seen[strings.Fields(body)[0]]++
		if !strings.Contains(body, "xff=127.0.0.1") || !strings.Contains(body, "proto=http") || !strings.Contains(body, "host=app.example:8080") {
			t.Errorf("forwarded headers missing: %s", body)
		}
	}
	if seen["a1"] != 3 || seen["a2"] != 3 {
		t.Errorf("round robin over a1, a2: %v", seen)
	}
	if code, body := get(t, listen, "API.example.", "/"); code != 200 || !strings.HasPrefix(body, "b ") {
		t.Errorf("api: %d %s", code, body)
	}
	req, _ := http.NewRequest(http.MethodGet, "http://"+listen+"/", nil)
	req.Host = "nope.example"
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p map[string]any
	if resp.StatusCode != http.StatusNotFound || resp.Header.Get("Content-Type") != "application/problem+json" || json.NewDecoder(resp.Body).Decode(&p) != nil || !strings.Contains(p["detail"].(string), "nope.example") {
		t.Errorf("unknown host: %d %s %v", resp.StatusCode, resp.Header.Get("Content-Type"), p)
	}
}

func TestFailoverAndReturn(t *testing.T) {
	local, peer := startBackend(t, "local"), startBackend(t, "peer")
	s := newServer(t)
	listen := freeAddr(t)
	set(t, s, Config{Routes: []Route{{Name: "app", Proto: "http", Host: "app.example", Listen: listen,
		Backends: []string{local.addr}, Failover: []string{peer.addr}}}})
	for range 3 {
		if _, body := get(t, listen, "app.example", "/"); !strings.HasPrefix(body, "local ") {
			t.Fatalf("while local is up: %s", body)
		}
	}
	local.stop()
	start := time.Now()
	// The first request after the kill already gets the peer: the dial
	// failure is retried on the next candidate.
	if code, body := get(t, listen, "app.example", "/"); code != 200 || !strings.HasPrefix(body, "peer ") {
		t.Fatalf("after local stopped: %d %s", code, body)
	}
	h := s.Health()
	if !h[0].FailedOver || h[0].Backends[0].Up || !h[0].Backends[1].Up || !h[0].Backends[1].Failover {
		t.Errorf("health after failover: %+v", h)
	}
	if ok, d := Summary(h); !ok || !strings.Contains(d, "app.example: failed over (0/1 up, 1/1 failover up)") {
		t.Errorf("summary: %v %q", ok, d)
	}
	local.restart(t)
	eventually(t, 3*time.Second, "answers from local again", func() bool {
		_, body := get(t, listen, "app.example", "/")
		return strings.HasPrefix(body, "local ")
	})
	t.Logf("back to local %v after it was stopped", time.Since(start))
	if h := s.Health(); h[0].FailedOver {
		t.Errorf("still failed over: %+v", h)
	}
}

func TestAllDownIs502ProblemAtOnce(t *testing.T) {
	s := newServer(t)
	listen := freeAddr(t)
	set(t, s, Config{Routes: []Route{{Name: "app", Proto: "http", Host: "app.example", Listen: listen,
		Backends: []string{freeAddr(t)}, Failover: []string{freeAddr(t)}}}})
	start := time.Now()
	req, _ := http.NewRequest(http.MethodGet, "http://"+listen+"/", nil)
	req.Host = "app.example"
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	took := time.Since(start)
	var p map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&p)
	if resp.StatusCode != http.StatusBadGateway || resp.Header.Get("Content-Type") != "application/problem+json" ||
		p["type"] == nil || p["title"] == nil || !strings.Contains(fmt.Sprint(p["detail"]), `"app"`) {
		t.Errorf("all down: %d %v", resp.StatusCode, p)
	}
	if took > 1200*time.Millisecond {
		t.Errorf("502 took %v", took)
	}
	if ok, d := Summary(s.Health()); ok || !strings.Contains(d, "down") {
		t.Errorf("summary: %v %q", ok, d)
	}
}

// TestPassiveRetryLosesNoRequest: a client sends requests without pause
// while the preferred backend's listener closes; none fails.
func TestPassiveRetryLosesNoRequest(t *testing.T) {
	a, b := startBackend(t, "a"), startBackend(t, "b")
	s := newServer(t)
	listen := freeAddr(t)
	set(t, s, Config{Routes: []Route{{Name: "app", Proto: "http", Host: "app.example", Listen: listen,
		Backends: []string{a.addr, b.addr}}}})
	var sent, failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest(http.MethodGet, "http://"+listen+"/", nil)
				req.Host = "app.example"
				sent.Add(1)
				resp, err := client.Do(req)
				if err != nil || resp.StatusCode != http.StatusOK {
					failed.Add(1)
					if err == nil {
						b, _ := io.ReadAll(resp.Body)
						t.Logf("failed: %d %s", resp.StatusCode, b)
					} else {
						t.Logf("failed: %v", err)
					}
				}
				if resp != nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		})
	}
	eventually(t, 5*time.Second, "requests flowing", func() bool { return sent.Load() > 100 })
	a.stop()
	before := sent.Load()
	eventually(t, 10*time.Second, "requests after the stop", func() bool { return sent.Load() > before+500 })
	close(stop)
	wg.Wait()
	t.Logf("%d requests, %d failed, backend a stopped after %d", sent.Load(), failed.Load(), before)
	if failed.Load() != 0 {
		t.Errorf("%d of %d requests failed", failed.Load(), sent.Load())
	}
}

func TestTCPRoute(t *testing.T) {
	// An echo server that answers after the client's half close, to prove
	// both directions and the half close pass.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				b, _ := io.ReadAll(c)
				_, _ = c.Write(append([]byte("echo: "), b...))
			}()
		}
	}()
	s := newServer(t)
	listen := freeAddr(t)
	metricsAddr := freeAddr(t)
	set(t, s, Config{Metrics: metricsAddr, Routes: []Route{{Name: "ssh", Proto: "tcp", Listen: listen,
		Backends: []string{freeAddr(t), ln.Addr().String()}}}})
	for range 3 {
		c, err := net.DialTimeout("tcp", listen, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = c.Write([]byte("hello"))
		_ = c.(*net.TCPConn).CloseWrite()
		b, err := io.ReadAll(c)
		c.Close()
		if err != nil || string(b) != "echo: hello" {
			t.Fatalf("tcp route: %q %v", b, err)
		}
	}
	m := scrape(t, metricsAddr)
	for _, want := range []string{`holdfast_frontdoor_tcp_connections_total{route="ssh"} 3`,
		`holdfast_frontdoor_backend_up{backend="` + ln.Addr().String() + `",failover="false",route="ssh"} 1`} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s:\n%s", want, m)
		}
	}
}

func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := client.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func TestMetrics(t *testing.T) {
	a := startBackend(t, "a")
	s := newServer(t)
	listen, metricsAddr := freeAddr(t), freeAddr(t)
	set(t, s, Config{Metrics: metricsAddr, Routes: []Route{
		{Name: "app", Proto: "http", Host: "app.example", Listen: listen, Backends: []string{a.addr}},
		{Name: "dead", Proto: "http", Host: "dead.example", Listen: listen, Backends: []string{freeAddr(t)}},
	}})
	get(t, listen, "app.example", "/")
	get(t, listen, "app.example", "/")
	get(t, listen, "dead.example", "/")
	m := scrape(t, metricsAddr)
	for _, want := range []string{
		`holdfast_frontdoor_requests_total{code="200",route="app"} 2`,
		`holdfast_frontdoor_requests_total{code="502",route="dead"} 1`,
		`holdfast_frontdoor_request_duration_seconds_count{route="app"} 2`,
		`holdfast_frontdoor_backend_up{backend="` + a.addr + `",failover="false",route="app"} 1`,
		`,failover="false",route="dead"} 0`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s:\n%s", want, m)
		}
	}
}

// TestSetKeepsInFlight: a long request and a tcp connection in flight
// complete across a Set that changes routes and pools.
func TestSetKeepsInFlight(t *testing.T) {
	a, b := startBackend(t, "a"), startBackend(t, "b")
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	s := newServer(t)
	listen, tcpListen := freeAddr(t), freeAddr(t)
	cfg := Config{Routes: []Route{
		{Name: "app", Proto: "http", Host: "app.example", Listen: listen, Backends: []string{a.addr}},
		{Name: "echo", Proto: "tcp", Listen: tcpListen, Backends: []string{echo.Addr().String()}},
	}}
	set(t, s, cfg)
	type result struct {
		code int
		body string
	}
	done := make(chan result, 1)
	go func() {
		code, body := get(t, listen, "app.example", "/?sleep=1s")
		done <- result{code, body}
	}()
	conn, err := net.DialTimeout("tcp", tcpListen, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	rd := bufio.NewReader(conn)
	_, _ = conn.Write([]byte("one\n"))
	if l, err := rd.ReadString('\n'); err != nil || l != "one\n" {
		t.Fatalf("tcp before Set: %q %v", l, err)
	}
	eventually(t, 2*time.Second, "the long request at its backend", func() bool { return a.waiting.Load() == 1 })
	cfg.Routes[0].Backends = []string{b.addr}
	cfg.Routes = append(cfg.Routes, Route{Name: "other", Proto: "http", Host: "other.example", Listen: listen, Backends: []string{b.addr}})
	set(t, s, cfg)
	if _, body := get(t, listen, "app.example", "/"); !strings.HasPrefix(body, "b ") {
		t.Errorf("after Set, app goes to b: %s", body)
	}
	_, _ = conn.Write([]byte("two\n"))
	if l, err := rd.ReadString('\n'); err != nil || l != "two\n" {
		t.Errorf("tcp across Set: %q %v", l, err)
	}
	select {
	case r := <-done:
		if r.code != 200 || !strings.HasPrefix(r.body, "a ") {
			t.Errorf("long request across Set: %d %s", r.code, r.body)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("long request did not complete")
	}
}

// selfSigned makes a certificate and key for host.
func selfSigned(t *testing.T, host string) (certPEM, keyPEM string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	c, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(c)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})), pool
}

func TestGivenCertificate(t *testing.T) {
	a := startBackend(t, "a")
	cert, key, pool := selfSigned(t, "app.example")
	s := newServer(t)
	listen := freeAddr(t)
	set(t, s, Config{Routes: []Route{{Name: "app", Proto: "https", Host: "app.example", Listen: listen,
		Backends: []string{a.addr}, Certificate: &Certificate{Cert: cert, Key: key}}}})
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool},
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", listen)
		},
	}}
	resp, err := c.Get("https://app.example/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "proto=https") {
		t.Errorf("https with the given certificate: %d %s", resp.StatusCode, body)
	}
	if h := s.Health(); !strings.HasPrefix(h[0].Certificate, "valid until ") {
		t.Errorf("certificate status: %q", h[0].Certificate)
	}
}

func TestMismatchedCertificateIsAnErrorNamingTheRoute(t *testing.T) {
	a := startBackend(t, "a")
	cert, _, _ := selfSigned(t, "app.example")
	_, otherKey, _ := selfSigned(t, "app.example")
	s := newServer(t)
	good, bad := freeAddr(t), freeAddr(t)
	err := s.Set(context.Background(), Config{Routes: []Route{
		{Name: "broken", Proto: "https", Host: "app.example", Listen: bad, Backends: []string{a.addr}, Certificate: &Certificate{Cert: cert, Key: otherKey}},
		{Name: "fine", Proto: "http", Host: "fine.example", Listen: good, Backends: []string{a.addr}},
	}})
	if err == nil || !strings.Contains(err.Error(), `route "broken"`) || !strings.Contains(err.Error(), "private key does not match") {
		t.Fatalf("Set: %v", err)
	}
	// What could be served is served.
	if code, _ := get(t, good, "fine.example", "/"); code != 200 {
		t.Errorf("the good route: %d", code)
	}
}

func TestListenTakenIsAnErrorNamingTheRoute(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	s := newServer(t)
	err = s.Set(context.Background(), Config{Routes: []Route{{Name: "db", Proto: "tcp", Listen: taken.Addr().String(), Backends: []string{freeAddr(t)}}}})
	if err == nil || !strings.Contains(err.Error(), `route "db"`) {
		t.Fatalf("Set: %v", err)
	}
}

// dyingBackend answers its health check, and hangs up on every other
// request once it has read it, without a byte of an answer: a backend
// that dies under a request (with rst, resetting the connection, as a
// killed process does when data was left unread).
func dyingBackend(t *testing.T, rst bool) (addr string, requests *atomic.Int64) {
	return dyingBackendAfter(t, rst, "")
}

// dyingBackendAfter is dyingBackend writing partial (the start of an
// answer) before it hangs up.
func dyingBackendAfter(t *testing.T, rst bool, partial string) (addr string, requests *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	requests = new(atomic.Int64)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			return
		}
		requests.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		c, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		if partial != "" {
			_, _ = c.Write([]byte(partial))
		}
		if rst {
			_ = c.(*net.TCPConn).SetLinger(0)
		}
		_ = c.Close()
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String(), requests
}

// TestIdempotentRequestRetriedWhenBackendDies: a GET, HEAD or OPTIONS
// whose backend connection breaks before any answer is answered by the
// next backend; a POST, which must not run twice, is not sent again.
func TestIdempotentRequestRetriedWhenBackendDies(t *testing.T) {
	for _, rst := range []bool{false, true} {
		t.Run(fmt.Sprintf("rst=%v", rst), func(t *testing.T) {
			dying, dyingSaw := dyingBackend(t, rst)
			var posts atomic.Int64
			good := httptestServer(t, func(w http.ResponseWriter, r *http.Request) {
				if r.Method == http.MethodPost {
					posts.Add(1)
				}
				fmt.Fprint(w, "good")
			})
			s := newServer(t)
			listen := freeAddr(t)
			set(t, s, Config{Routes: []Route{{Name: "app", Proto: "http", Host: "app.example", Listen: listen,
				Backends: []string{dying, good}, HealthPath: "/health"}}})
			// Round robin: every other request goes to the dying backend first.
			for i, method := range []string{"GET", "GET", "HEAD", "HEAD", "OPTIONS", "OPTIONS"} {
				req, _ := http.NewRequest(method, "http://"+listen+"/", nil)
				req.Host = "app.example"
				resp, err := client.Do(req)
				if err != nil {
					t.Fatalf("%s #%d: %v", method, i, err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Errorf("%s #%d: %s, want 200 from the next backend", method, i, resp.Status)
				}
			}
			if dyingSaw.Load() == 0 {
				t.Fatal("no request reached the dying backend: the test proves nothing")
			}
			var ok, failed int
			for i := range 4 {
				req, _ := http.NewRequest(http.MethodPost, "http://"+listen+"/", strings.NewReader("pay once"))
				req.Host = "app.example"
				resp, err := client.Do(req)
				if err != nil {
					t.Fatalf("POST #%d: %v", i, err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				switch resp.StatusCode {
				case http.StatusOK:
					ok++
				case http.StatusBadGateway:
					failed++
				default:
					t.Errorf("POST #%d: %s", i, resp.Status)
				}
			}
			if failed == 0 || int(posts.Load()) != ok {
				t.Errorf("POSTs: %d answered, %d 502, the good backend saw %d: want some 502 and none sent twice", ok, failed, posts.Load())
			}
		})
	}
}

// TestNotRetriedOnceTheAnswerBegan: a backend that began to answer a GET
// and then died is not asked again through another: the 502 says so.
func TestNotRetriedOnceTheAnswerBegan(t *testing.T) {
	dying, dyingSaw := dyingBackendAfter(t, false, "HTTP/1.1 200 OK\r\nContent-")
	var gets atomic.Int64
	good := httptestServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/health" {
			gets.Add(1)
		}
	})
	s := newServer(t)
	listen := freeAddr(t)
	set(t, s, Config{Routes: []Route{{Name: "app", Proto: "http", Host: "app.example", Listen: listen,
		Backends: []string{dying, good}, HealthPath: "/health"}}})
	codes := map[int]int{}
	for range 4 {
		code, _ := get(t, listen, "app.example", "/")
		codes[code]++
	}
	if dyingSaw.Load() == 0 || codes[http.StatusBadGateway] != int(dyingSaw.Load()) || codes[http.StatusOK] != int(gets.Load()) {
		t.Errorf("answers %v; the dying backend saw %d, the good one %d: want a 502 for each the dying one began",
			codes, dyingSaw.Load(), gets.Load())
	}
}

// httptestServer is a loopback HTTP server with handler h; its address.
func httptestServer(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}
