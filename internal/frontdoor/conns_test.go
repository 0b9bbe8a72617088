package frontdoor

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// connCounter is a backend recording which connections served requests
// other than its health checks.
type connCounter struct {
	mu    sync.Mutex
	conns map[string]int // remote address -> requests
}

func (c *connCounter) saw(r *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conns == nil {
		c.conns = map[string]int{}
	}
	c.conns[r.RemoteAddr]++
}

func (c *connCounter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.conns)
}

// TestBackendConnectionsKeptAlive: answers of every shape pass intact
// (a large chunked one, a sized one, HEAD, 204), one after the other over
// one backend connection. The client closes its connection after each
// answer (no keep-alive): going away once a streamed answer is complete
// must not spoil the backend connection, which is back in the pool by
// then (this failed about one run in ten when it did).
func TestBackendConnectionsKeptAlive(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	var seen connCounter
	addr := httptestServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			return
		}
		seen.saw(r)
		switch r.URL.Path {
		case "/big": // no length: chunked
			for chunk := range slices.Chunk(big, 100_000) {
				_, _ = w.Write(chunk)
				http.NewResponseController(w).Flush()
			}
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
		default:
			w.Header().Set("Content-Length", "5")
			_, _ = io.WriteString(w, "small")
		}
	})
	s := newServer(t)
	listen := freeAddr(t)
	set(t, s, Config{Routes: []Route{{Name: "app", Proto: "http", Host: "app.example", Listen: listen,
		Backends: []string{addr}, HealthPath: "/health"}}})
	for i := range 5 {
		if code, body := get(t, listen, "app.example", "/big"); code != 200 || body != string(big) {
			t.Fatalf("#%d /big: %d, %d bytes, want %d", i, code, len(body), len(big))
		}
		if code, body := get(t, listen, "app.example", "/small"); code != 200 || body != "small" {
			t.Fatalf("#%d /small: %d %q", i, code, body)
		}
		if code, body := get(t, listen, "app.example", "/empty"); code != http.StatusNoContent || body != "" {
			t.Fatalf("#%d /empty: %d %q", i, code, body)
		}
		req, _ := http.NewRequest(http.MethodHead, "http://"+listen+"/small", nil)
		req.Host = "app.example"
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.ContentLength != 5 {
			t.Fatalf("#%d HEAD: %d, length %d", i, resp.StatusCode, resp.ContentLength)
		}
	}
	if n := seen.count(); n != 1 {
		t.Errorf("20 requests one after the other came over %d backend connections, want 1", n)
	}
}

// TestIdleConnectionClosedByBackend: a backend that closes kept-alive
// connections soon after each answer costs no request a 502, with no
// other backend to turn to.
func TestIdleConnectionClosedByBackend(t *testing.T) {
	closed := make(chan struct{}, 100)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler:     http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }),
		IdleTimeout: 20 * time.Millisecond,
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateClosed {
				closed <- struct{}{}
			}
		},
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	s := newServer(t)
	listen := freeAddr(t)
	set(t, s, Config{Routes: []Route{{Name: "app", Proto: "http", Host: "app.example", Listen: listen,
		Backends: []string{ln.Addr().String()}}}})
	for i := range 5 {
		if code, body := get(t, listen, "app.example", "/"); code != 200 || body != "ok" {
			t.Fatalf("#%d: %d %q", i, code, body)
		}
		// Wait until the backend has closed a connection (the front door's
		// kept one, or a health check's), so the next request may find
		// its kept connection closed.
		select {
		case <-closed:
		case <-time.After(5 * time.Second):
			t.Fatal("the backend closed no connection")
		}
	}
}

// TestStreamingAndClientGone: server-sent events reach the client as the
// backend flushes them, and a client that goes away ends the backend's
// request (its connection is closed, not kept).
func TestStreamingAndClientGone(t *testing.T) {
	release := make(chan struct{})
	ended := make(chan struct{}, 1)
	addr := httptestServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: first\n\n")
		http.NewResponseController(w).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			ended <- struct{}{}
		}
	})
	defer close(release)
	s := newServer(t)
	listen := freeAddr(t)
	set(t, s, Config{Routes: []Route{{Name: "app", Proto: "http", Host: "app.example", Listen: listen,
		Backends: []string{addr}, HealthPath: "/health"}}})
	c, err := net.DialTimeout("tcp", listen, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.WriteString(c, "GET /events HTTP/1.1\r\nHost: app.example\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || !strings.Contains(line, "first") {
		t.Fatalf("the first event did not come while the backend holds the stream: %q %v", line, err)
	}
	_ = c.Close()
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the client went away, and the backend's request did not end")
	}
}

// TestEarlyHintsPassed: a backend's 103 Early Hints reach the client
// before its answer.
func TestEarlyHintsPassed(t *testing.T) {
	addr := httptestServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			return
		}
		w.Header().Set("Link", "</app.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		_, _ = io.WriteString(w, "page")
	})
	s := newServer(t)
	listen := freeAddr(t)
	set(t, s, Config{Routes: []Route{{Name: "app", Proto: "http", Host: "app.example", Listen: listen,
		Backends: []string{addr}, HealthPath: "/health"}}})
	var hints []string
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		hints = append(hints, fmt.Sprint(code, " ", h.Get("Link")))
		return nil
	}}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodGet, "http://"+listen+"/", nil)
	req.Host = "app.example"
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || string(body) != "page" || len(hints) != 1 || hints[0] != "103 </app.css>; rel=preload" {
		t.Errorf("got %d %q after hints %q; want 200 \"page\" after one 103 with its Link", resp.StatusCode, body, hints)
	}
}

// TestPlainConnectionHandedOver: on one client connection, GETs are
// proxied by the front door's own loop, and the first request it does
// not proxy itself (a POST with a body) hands the connection to net/http
// with the bytes already read: the POST's body arrives whole, and the
// requests after it are answered too; a request that does not parse gets
// net/http's 400.
func TestPlainConnectionHandedOver(t *testing.T) {
	addr := httptestServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			return
		}
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.Path, b)
	})
	s := newServer(t)
	listen := freeAddr(t)
	set(t, s, Config{Routes: []Route{{Name: "app", Proto: "http", Host: "app.example", Listen: listen,
		Backends: []string{addr}, HealthPath: "/health"}}})
	c, err := net.DialTimeout("tcp", listen, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	ask := func(raw, want string) {
		t.Helper()
		if _, err := io.WriteString(c, raw); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%q: %v", raw, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if got := fmt.Sprint(resp.StatusCode, " ", string(b)); got != want {
			t.Fatalf("%q: got %q, want %q", raw, got, want)
		}
	}
	ask("GET /one HTTP/1.1\r\nHost: app.example\r\n\r\n", "200 GET /one ")
	ask("POST /two HTTP/1.1\r\nHost: app.example\r\nContent-Length: 5\r\n\r\nhello", "200 POST /two hello")
	ask("GET /three HTTP/1.1\r\nHost: app.example\r\n\r\n", "200 GET /three ")

	c2, err := net.DialTimeout("tcp", listen, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	_ = c2.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.WriteString(c2, "GET /x HTTP/1.1\r\nHost app.example\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c2), nil)
	if err != nil {
		t.Fatalf("a request that does not parse: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("a request that does not parse: %s, want 400", resp.Status)
	}
}
