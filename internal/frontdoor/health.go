package frontdoor

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// backend is one upstream address with its health, shared by every route
// naming the same address (and, for http, the same check path).
type backend struct {
	addr string
	tcp  bool
	path string

	up      atomic.Bool
	started bool          // under checker.mu
	stop    chan struct{} // closed when no route names it any more
	// streak counts consecutive results that disagree with up; the state
	// flips at two.
	mu     sync.Mutex
	streak int
}

func (b *backend) isUp() bool { return b.up.Load() }

// record applies one check result: two in a row flip the state.
func (b *backend) record(ok bool) (changed bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if ok == b.up.Load() {
		b.streak = 0
		return false
	}
	b.streak++
	if b.streak < 2 {
		return false
	}
	b.streak = 0
	b.up.Store(ok)
	return true
}

// failed is the passive check: proxying could not connect, so no later
// request waits on this backend until the active check sees it up twice.
func (b *backend) failed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.streak = 0
	return b.up.Swap(false)
}

type checker struct {
	interval time.Duration
	log      *slog.Logger
	metrics  *metrics
	client   *http.Client

	mu  sync.Mutex
	all map[string]*backend
}

func newChecker(interval time.Duration, log *slog.Logger, m *metrics) *checker {
	return &checker{
		interval: interval, log: log, metrics: m, all: map[string]*backend{},
		client: &http.Client{
			Timeout: checkTimeout,
			Transport: &http.Transport{
				DialContext:       (&net.Dialer{Timeout: dialTimeout}).DialContext,
				DisableKeepAlives: true, // a check proves a new connection works
			},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

func backendKey(tcp bool, addr, path string) string {
	if tcp {
		return "tcp " + addr
	}
	return "http " + addr + " " + path
}

// backend returns the shared backend for the key, made if new (its checks
// start in set).
func (c *checker) backend(tcp bool, addr, path string) *backend {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := backendKey(tcp, addr, path)
	if b, ok := c.all[k]; ok {
		return b
	}
	b := &backend{addr: addr, tcp: tcp, path: path, stop: make(chan struct{})}
	c.all[k] = b
	return b
}

// set starts checking the routes' new backends — after one check each, so
// a route's state is known before it serves — and stops the checks of
// backends no route names any more.
func (c *checker) set(ctx context.Context, routes []*route) {
	used := map[*backend]bool{}
	for _, r := range routes {
		for _, b := range r.all() {
			used[b] = true
		}
	}
	c.mu.Lock()
	var fresh []*backend
	for k, b := range c.all {
		switch {
		case !used[b]:
			if b.started {
				close(b.stop)
			}
			delete(c.all, k)
		case !b.started:
			b.started = true
			fresh = append(fresh, b)
		}
	}
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, b := range fresh {
		wg.Go(func() { b.up.Store(c.check(ctx, b)) })
	}
	wg.Wait()
	for _, b := range fresh {
		go c.loop(b)
	}
}

func (c *checker) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, b := range c.all {
		if b.started {
			close(b.stop)
		}
		delete(c.all, k)
	}
}

func (c *checker) loop(b *backend) {
	tick := time.NewTicker(c.interval)
	defer tick.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-b.stop
		cancel()
	}()
	for {
		select {
		case <-b.stop:
			return
		case <-tick.C:
		}
		ok := c.check(ctx, b)
		if ctx.Err() != nil {
			return
		}
		if b.record(ok) {
			c.log.Info("backend health changed", "backend", b.addr, "up", ok)
		}
	}
}

// check is one active check: a connection for tcp, a GET of the path
// answered below 500 for http.
func (c *checker) check(ctx context.Context, b *backend) bool {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	if b.tcp {
		conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", b.addr)
		if err != nil {
			return false
		}
		_ = conn.Close()
		return true
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+b.addr+b.path, nil)
	if err != nil {
		return false
	}
	req.Header.Set("User-Agent", "holdfast-frontdoor-check")
	resp, err := c.client.Do(req)
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.StatusCode < 500
}
