package frontdoor

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"
)

// BenchmarkProxy is one GET through the front door's http route to a
// loopback backend answering a short body, from parallel keep-alive
// clients: the per-request cost of the proxy (ns/op, allocs/op), with the
// client and the backend in the same process, so compare runs, not the
// figure with HAProxy's.
func BenchmarkProxy(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	body := []byte("bench backend\n")
	backend := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write(body)
	})}
	go func() { _ = backend.Serve(ln) }()
	b.Cleanup(func() { _ = backend.Close() })

	s := New(Options{StateDir: b.TempDir(), Log: slog.New(slog.DiscardHandler)})
	b.Cleanup(func() { _ = s.Close() })
	lp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	listen := lp.Addr().String()
	_ = lp.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Set(ctx, Config{Routes: []Route{{Name: "app", Proto: "http", Host: "app.example",
		Listen: listen, Backends: []string{ln.Addr().String()}}}}); err != nil {
		b.Fatal(err)
	}
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256, DisableCompression: true}}
	b.Cleanup(c.CloseIdleConnections)
	url := "http://" + listen + "/"
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Host = "app.example"
		for pb.Next() {
			resp, err := c.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
}
