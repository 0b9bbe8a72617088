package frontdoor

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"sync"
	"time"
)

// connPool sends the requests a front door may repeat (GET, HEAD, OPTIONS
// without a body: nearly all of its traffic) over kept-alive HTTP/1.1
// connections to backends, in the request's own goroutine: the request is
// written and the answer read with net/http's own Request.Write and
// ReadResponse, one after the other. http.Transport does the same work
// with two goroutines per connection and a hand-off through channels at
// every step, which under load cost the front door a third of its CPU
// beyond HAProxy's; it still carries everything else (bodies, upgrades),
// where writing and reading at once matters.
type connPool struct {
	dial        func(ctx context.Context, network, addr string) (net.Conn, error)
	maxIdle     int           // per backend address
	idleTimeout time.Duration // an idle connection older than this is closed, not used

	mu     sync.Mutex
	idle   map[string][]*backendConn // by address, most recently used last
	closed bool                      // the server closed: nothing is kept
}

// backendConn is one connection to a backend, with its buffers.
type backendConn struct {
	net.Conn
	addr string
	br   *bufio.Reader
	bw   *bufio.Writer
	used time.Time // when it went idle
}

// errNoAnswer: the backend's connection broke before a byte of its answer
// came (the backend died, or closed a kept-alive connection as the
// request went out).
type errNoAnswer struct{ err error }

func (e errNoAnswer) Error() string {
	return fmt.Sprintf("backend connection broke before an answer: %v", e.err)
}
func (e errNoAnswer) Unwrap() error { return e.err }

// direct: whether req goes through the pool: a method that may be repeated,
// no body, no protocol upgrade.
func direct(req *http.Request) bool {
	return replayable(req.Method) && (req.Body == nil || req.Body == http.NoBody) && req.Header.Get("Upgrade") == ""
}

// roundTrip sends req to req.URL.Host on a kept-alive connection, or a new
// one when none is idle. A kept-alive connection the backend closed while
// it was idle is found out by the first read and replaced by a new one.
func (p *connPool) roundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	addr := req.URL.Host
	for {
		c := p.get(addr)
		reused := c != nil
		if !reused {
			nc, err := p.dial(ctx, "tcp", addr)
			if err != nil {
				return nil, err
			}
			c = &backendConn{Conn: nc, addr: addr, br: bufio.NewReader(nc), bw: bufio.NewWriter(nc)}
		}
		resp, err := p.exchange(ctx, c, req)
		if err == nil {
			return resp, nil
		}
		_ = c.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var na errNoAnswer
		if reused && errors.As(err, &na) {
			continue // closed while idle: the next connection, or a new one
		}
		return nil, err
	}
}

// exchange writes req on c and reads the answer's header; the answer's
// body gives c back to the pool when read to its end.
func (p *connPool) exchange(ctx context.Context, c *backendConn, req *http.Request) (*http.Response, error) {
	// The client going away ends the exchange: a read or write waiting
	// on the backend returns at once.
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	err := req.Write(c.bw)
	if err == nil {
		err = c.bw.Flush()
	}
	if err != nil {
		stop()
		return nil, errNoAnswer{err}
	}
	for {
		if _, err := c.br.Peek(1); err != nil {
			stop()
			return nil, errNoAnswer{err}
		}
		resp, err := http.ReadResponse(c.br, req)
		if err != nil {
			stop()
			return nil, err
		}
		// An informational answer (103 Early Hints) is passed on as
		// http.Transport does, to the reverse proxy's trace, which sends
		// it to the client; the real answer follows.
		if resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
			if trace := httptrace.ContextClientTrace(ctx); trace != nil && trace.Got1xxResponse != nil {
				if err := trace.Got1xxResponse(resp.StatusCode, textproto.MIMEHeader(resp.Header)); err != nil {
					stop()
					return nil, err
				}
			}
			continue
		}
		resp.Body = &pooledBody{r: resp.Body, c: c, p: p, stop: stop, keep: !resp.Close}
		return resp, nil
	}
}

// pooledBody is an answer's body: read to its end, its connection goes
// back to the pool; closed before, the connection is closed (draining an
// answer nobody reads could take forever).
type pooledBody struct {
	r    io.ReadCloser
	c    *backendConn
	p    *connPool
	stop func() bool
	keep bool

	mu      sync.Mutex // done and aborted: abort comes from another goroutine
	done    bool
	aborted bool
}

// abort ends an answer whose client went away: a read waiting on the
// backend returns at once, and the connection is not kept. Once the body
// was read to its end, the connection is back in the pool (maybe serving
// another request already), and abort leaves it alone.
func (b *pooledBody) abort() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.done {
		b.aborted = true
		_ = b.c.SetDeadline(time.Unix(1, 0))
	}
}

func (b *pooledBody) Read(buf []byte) (int, error) {
	b.mu.Lock()
	done := b.done
	b.mu.Unlock()
	if done {
		return 0, io.EOF
	}
	n, err := b.r.Read(buf)
	if err != nil {
		b.finish(errors.Is(err, io.EOF))
	}
	return n, err
}

func (b *pooledBody) Close() error {
	// An answer without a body (to HEAD, a 204, a 304) is complete
	// unread.
	b.finish(b.r == http.NoBody)
	return nil
}

func (b *pooledBody) finish(complete bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		return
	}
	b.done = true
	// stop is false when the request's context ended and the deadline was
	// set; aborted, the client went away: either way the connection is
	// spoilt.
	if b.stop() && !b.aborted && complete && b.keep && b.c.br.Buffered() == 0 {
		b.p.put(b.c)
		return
	}
	_ = b.c.Close()
}

// get is the most recently idle connection to addr that is fresh enough,
// or nil.
func (p *connPool) get(addr string) *backendConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	conns := p.idle[addr]
	for len(conns) > 0 {
		c := conns[len(conns)-1]
		conns[len(conns)-1] = nil
		conns = conns[:len(conns)-1]
		if time.Since(c.used) < p.idleTimeout {
			p.idle[addr] = conns
			return c
		}
		_ = c.Close()
	}
	p.idle[addr] = conns
	return nil
}

func (p *connPool) put(c *backendConn) {
	c.used = time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || len(p.idle[c.addr]) >= p.maxIdle {
		_ = c.Close()
		return
	}
	p.idle[c.addr] = append(p.idle[c.addr], c)
}

// close closes the idle connections, and those given back after.
func (p *connPool) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.closeIdle(0)
}

// closeIdle closes the connections idle for longer than the timeout (all
// with 0), so a backend's closed connections do not linger here.
func (p *connPool) closeIdle(older time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for addr, conns := range p.idle {
		keep := conns[:0]
		for _, c := range conns {
			if time.Since(c.used) >= older {
				_ = c.Close()
			} else {
				keep = append(keep, c)
			}
		}
		clear(conns[len(keep):])
		if len(keep) == 0 {
			delete(p.idle, addr)
		} else {
			p.idle[addr] = keep
		}
	}
}
