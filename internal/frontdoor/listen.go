package frontdoor

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// listener is one open address: an https, plain http, tcp or metrics
// server. Its routes are looked up in the server's table per request or
// connection, so a Set that keeps the address keeps the listener.
type listener struct {
	kind  string
	ln    net.Listener
	http  *http.Server
	plain *plainConns // a plain listener's connections served here (h1.go)
	done  chan struct{}
}

func (s *Server) listen(addr, kind string) (*listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	l := &listener{kind: kind, ln: ln, done: make(chan struct{})}
	switch kind {
	case "tcp":
		go s.acceptTCP(addr, l)
		return l, nil
	case "metrics":
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
		l.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	default:
		l.http = &http.Server{
			Handler:           s.serveRoutes(addr, kind == "tls"),
			ReadHeaderTimeout: 30 * time.Second,
			IdleTimeout:       2 * time.Minute,
			ErrorLog:          nil,
		}
	}
	if kind == "tls" {
		l.http.TLSConfig = &tls.Config{
			GetCertificate: s.certs.getCertificate,
			// acme-tls/1 lets TLS-ALPN-01 validation reach certmagic;
			// ServeTLS adds h2 and http/1.1.
			NextProtos: []string{"acme-tls/1"},
			MinVersion: tls.VersionTLS12,
		}
	}
	if kind == "plain" {
		l.plain = &plainConns{conns: map[net.Conn]struct{}{}}
		go s.acceptPlain(addr, l)
		return l, nil
	}
	go func() {
		defer close(l.done)
		var err error
		if kind == "tls" {
			err = l.http.ServeTLS(ln, "", "")
		} else {
			err = l.http.Serve(ln)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("listener stopped", "addr", addr, "err", err)
		}
	}()
	return l, nil
}

// close stops accepting; requests and connections in flight complete (an
// address that went away in a Set must not cut them), up to a minute.
func (l *listener) close() {
	if l.plain != nil {
		_ = l.ln.Close()
		l.plain.shut(false)
	}
	if l.http != nil {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_ = l.http.Shutdown(ctx)
			_ = l.http.Close()
		}()
		return
	}
	_ = l.ln.Close()
}

// closeNow stops at once, cutting what is in flight (the server closes).
func (l *listener) closeNow() {
	if l.plain != nil {
		_ = l.ln.Close()
		l.plain.shut(true)
	}
	if l.http != nil {
		_ = l.http.Close()
	} else {
		_ = l.ln.Close()
	}
	<-l.done
}

func (s *Server) acceptTCP(addr string, l *listener) {
	defer close(l.done)
	for {
		c, err := l.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		go s.serveTCP(addr, c)
	}
}

// serveTCP splices one connection to the route's first backend that
// connects, both ways, passing each side's end of stream on as a half
// close.
func (s *Server) serveTCP(addr string, c net.Conn) {
	defer c.Close()
	r, ok := s.table.Load().tcp[addr]
	if !ok {
		return
	}
	s.metrics.tcpConns.WithLabelValues(r.cfg.Name).Inc()
	var up net.Conn
	var buf [maxStackCandidates]*backend
	for _, b := range r.candidates(buf[:0]) {
		var err error
		up, err = net.DialTimeout("tcp", b.addr, dialTimeout)
		if err == nil {
			break
		}
		r.markDown(b, err)
	}
	if up == nil {
		s.metrics.tcpFailed.WithLabelValues(r.cfg.Name).Inc()
		s.log.Info("tcp route: no backend connects", "route", r.cfg.Name)
		return
	}
	defer up.Close()
	stop := context.AfterFunc(s.ctx, func() { _ = c.Close(); _ = up.Close() })
	defer stop()
	s.metrics.tcpActive.WithLabelValues(r.cfg.Name).Inc()
	defer s.metrics.tcpActive.WithLabelValues(r.cfg.Name).Dec()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		} else {
			_ = dst.Close()
		}
		done <- struct{}{}
	}
	go pipe(up, c)
	go pipe(c, up)
	<-done
	<-done
}
