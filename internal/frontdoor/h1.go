package frontdoor

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// A plain HTTP listener serves its connections itself, one goroutine per
// connection reading a request and writing its answer in turn, with
// net/http's own wire code (ReadRequest, Request.Write, ReadResponse,
// Response.Write): for the requests a front door proxies most (GET, HEAD,
// OPTIONS without a body, to a route), net/http's server costs a
// goroutine and a read per request to watch the client while the handler
// runs, and a ResponseWriter and a reverse proxy around each answer: about
// a third of the front door's CPU per request beyond HAProxy's
// (docs/performance.md). Every other request (a body, an upgrade, an ACME
// challenge, a redirect, an unknown host, a request that does not parse)
// hands the connection, from that request on, to net/http's server,
// replaying the bytes already read.

const (
	idleTimeout   = 2 * time.Minute  // waiting for a kept-alive connection's next request
	headerTimeout = 30 * time.Second // reading a request's header once it began
)

// plainConns are a plain listener's connections while they are served
// here (not yet handed to net/http).
type plainConns struct {
	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	closing atomic.Bool
}

func (p *plainConns) add(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closing.Load() {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *plainConns) remove(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// shut ends the connections: waiting ones at once (their read deadline
// passes), busy ones after their answer; now, all at once.
func (p *plainConns) shut(now bool) {
	p.closing.Store(true)
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		if now {
			_ = c.Close()
		} else {
			_ = c.SetReadDeadline(time.Unix(1, 0))
		}
	}
}

// acceptPlain is a plain listener's accept loop.
func (s *Server) acceptPlain(addr string, l *listener) {
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
		if !l.plain.add(c) {
			_ = c.Close()
			continue
		}
		go s.servePlain(addr, l, c)
	}
}

// servePlain serves one connection until it closes, or hands it to
// net/http's server at the first request it does not proxy itself.
func (s *Server) servePlain(addr string, l *listener, c net.Conn) {
	handed := false
	defer func() {
		l.plain.remove(c)
		if !handed {
			_ = c.Close()
		}
	}()
	rec := &recordingReader{r: c}
	br := bufio.NewReader(rec)
	bw := bufio.NewWriter(c)
	// A backend's informational answers (103 Early Hints) go to the
	// client as they come, before the answer.
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
			info := &http.Response{StatusCode: code, ProtoMajor: 1, ProtoMinor: 1, Header: http.Header(h)}
			if err := info.Write(bw); err != nil {
				return err
			}
			return bw.Flush()
		},
	})
	for !l.plain.closing.Load() {
		// The bytes of this request read so far: what br holds already,
		// then whatever ReadRequest reads from the connection.
		if br.Buffered() == 0 {
			_ = c.SetReadDeadline(time.Now().Add(idleTimeout))
			if _, err := br.Peek(1); err != nil {
				return
			}
		}
		_ = c.SetReadDeadline(time.Now().Add(headerTimeout))
		held, _ := br.Peek(br.Buffered())
		rec.start(held)
		if req, err := http.ReadRequest(br); err == nil {
			if handled, closeAfter := s.proxyPlain(addr, c, br, bw, req.WithContext(ctx)); handled {
				if closeAfter {
					_ = bw.Flush()
					return
				}
				if br.Buffered() == 0 && bw.Flush() != nil {
					return
				}
				continue
			}
		}
		// Everything else is net/http's, from this request on (a request
		// that does not parse included: it answers 400).
		if bw.Flush() != nil {
			return
		}
		_ = c.SetReadDeadline(time.Time{})
		replay := &replayConn{Conn: c, r: io.MultiReader(bytes.NewReader(rec.buf), c)}
		handed = true
		l.plain.remove(c)
		if err := l.http.Serve(&oneConn{c: replay}); err != nil && !errors.Is(err, errOneConnDone) {
			_ = c.Close() // the server is shutting down: nobody serves it
		}
		return
	}
}

// proxyPlain proxies req itself when it is one of the front door's usual
// requests to a route of this listener, and writes the answer to bw;
// handled is false (nothing written) for any other request. closeAfter:
// the client's connection ends with this answer.
func (s *Server) proxyPlain(addr string, c net.Conn, br *bufio.Reader, bw *bufio.Writer, req *http.Request) (handled, closeAfter bool) {
	if !direct(req) || !req.ProtoAtLeast(1, 1) || req.Header.Get("Expect") != "" || strings.HasPrefix(req.URL.Path, challengePrefix) {
		return false, false
	}
	r, ok := s.table.Load().byListen[addr][hostOf(req.Host)]
	if !ok {
		return false, false
	}
	start := time.Now()
	// The client's wish to close is about its connection; the backend's
	// is kept alive.
	closeAfter, req.Close = req.Close, false
	req.RequestURI = ""
	req.URL.Scheme = "http"
	removeHopHeaders(req.Header)
	client, _, _ := net.SplitHostPort(c.RemoteAddr().String())
	if prior := req.Header.Values("X-Forwarded-For"); len(prior) > 0 {
		client = strings.Join(prior, ", ") + ", " + client
	}
	req.Header.Set("X-Forwarded-For", client)
	req.Header.Set("X-Forwarded-Host", req.Host)
	req.Header.Set("X-Forwarded-Proto", "http")
	resp, err := r.proxy.Transport.RoundTrip(req)
	code := http.StatusBadGateway
	if err != nil {
		typ, title, detail := problemBadResponse, "Bad answer from the backend", fmt.Sprintf("route %q: the backend did not answer the request", r.cfg.Name)
		if errors.Is(err, errNoBackend) {
			typ, title, detail = problemNoBackend, "No backend available", fmt.Sprintf("route %q: no backend of %s is up", r.cfg.Name, r.cfg.Host)
		} else {
			s.log.Info("proxying failed", "route", r.cfg.Name, "err", err)
		}
		resp = problemResponse(req, typ, title, detail)
	} else {
		code = resp.StatusCode
		removeHopHeaders(resp.Header)
	}
	resp.Close = false // the backend's connection is not the client's
	var w io.Writer = bw
	stop := func() {}
	if resp.ContentLength < 0 {
		// Unknown length (a stream, server-sent events): each piece goes
		// out as it comes, and a client that goes away ends the
		// backend's request.
		w = flushWriter{bw}
		if pb, ok := resp.Body.(*pooledBody); ok {
			stop = watchClient(c, br, pb.abort)
		}
	}
	err = resp.Write(w)
	stop()
	if err == nil {
		// Read to its end (Write reads a sized body to its length only),
		// the backend's connection goes back to the pool.
		_, err = io.Copy(io.Discard, resp.Body)
	}
	resp.Body.Close()
	if err != nil || resp.Close {
		// Write could not frame the answer but by closing (or failed):
		// the connection ends with it.
		closeAfter = true
	}
	r.requests(code).Inc()
	r.duration.Observe(time.Since(start).Seconds())
	return true, closeAfter
}

// watchClient calls gone when the client's connection ends while an
// answer streams to it; stop ends the watch (before the connection's next
// request is read). A byte the client sends meanwhile (a pipelined
// request) stays in br.
func watchClient(c net.Conn, br *bufio.Reader, gone func()) (stop func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		var ne net.Error
		if _, err := br.Peek(1); err != nil && (!errors.As(err, &ne) || !ne.Timeout()) {
			gone()
		}
	}()
	return func() {
		_ = c.SetReadDeadline(time.Unix(1, 0))
		<-done
		_ = c.SetReadDeadline(time.Time{})
	}
}

// hopHeaders are a connection's, not the message's (RFC 9110 7.6.1).
var hopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

func removeHopHeaders(h http.Header) {
	for _, v := range h["Connection"] {
		for _, f := range strings.Split(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				h.Del(f)
			}
		}
	}
	for _, name := range hopHeaders {
		delete(h, name)
	}
}

// problemResponse is a problem document (RFC 9457) as an answer to req.
func problemResponse(req *http.Request, typ, title, detail string) *http.Response {
	b, _ := json.Marshal(map[string]any{"type": typ, "title": title, "status": http.StatusBadGateway, "detail": detail})
	b = append(b, '\n')
	return &http.Response{
		StatusCode: http.StatusBadGateway, ProtoMajor: 1, ProtoMinor: 1, Request: req,
		Header:        http.Header{"Content-Type": {"application/problem+json"}, "Cache-Control": {"no-store"}},
		ContentLength: int64(len(b)), Body: io.NopCloser(bytes.NewReader(b)),
	}
}

// flushWriter sends every write at once.
type flushWriter struct{ w *bufio.Writer }

func (f flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if err == nil {
		err = f.w.Flush()
	}
	return n, err
}

// recordingReader keeps what it reads since start, so that a request read
// here can be read again by net/http's server: held (what the bufio.Reader
// on it had already when the request began), then every byte read from the
// connection since, which includes what that reader still holds. Replaying
// those and then the connection gives net/http the stream from the
// request's first byte.
type recordingReader struct {
	r   io.Reader
	buf []byte
}

func (r *recordingReader) start(held []byte) { r.buf = append(r.buf[:0], held...) }

func (r *recordingReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.buf = append(r.buf, p[:n]...)
	return n, err
}

// replayConn is a connection whose first bytes are given again.
type replayConn struct {
	net.Conn
	r io.Reader
}

func (c *replayConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// oneConn is a listener of one connection, for net/http's server.
type oneConn struct {
	c    net.Conn
	once sync.Once
}

var errOneConnDone = errors.New("frontdoor: the connection was handed over")

func (l *oneConn) Accept() (net.Conn, error) {
	var c net.Conn
	l.once.Do(func() { c = l.c })
	if c == nil {
		return nil, errOneConnDone
	}
	return c, nil
}

func (l *oneConn) Close() error   { return nil }
func (l *oneConn) Addr() net.Addr { return l.c.LocalAddr() }
