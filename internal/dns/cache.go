package dns

import (
	"sync"
	"time"

	"github.com/miekg/dns"
)

// cache keeps forwarded answers for their TTL (the smallest in the
// answer), up to max entries; a full cache drops an arbitrary entry.
type cache struct {
	max int
	mu  sync.Mutex
	m   map[dns.Question]cached
}

type cached struct {
	msg     *dns.Msg
	expires time.Time
}

func newCache(max int) *cache { return &cache{max: max, m: map[dns.Question]cached{}} }

func (c *cache) get(q dns.Question) (*dns.Msg, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[q]
	if !ok {
		return nil, false
	}
	if time.Now().After(e.expires) {
		delete(c.m, q)
		return nil, false
	}
	return e.msg.Copy(), true
}

func (c *cache) put(q dns.Question, m *dns.Msg) {
	if m.Rcode != dns.RcodeSuccess && m.Rcode != dns.RcodeNameError || m.Truncated {
		return
	}
	ttl := uint32(300)
	for _, rr := range append(append([]dns.RR{}, m.Answer...), m.Ns...) {
		ttl = min(ttl, rr.Header().Ttl)
	}
	if ttl == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		for k := range c.m {
			delete(c.m, k)
			break
		}
	}
	c.m[q] = cached{msg: m.Copy(), expires: time.Now().Add(time.Duration(ttl) * time.Second)}
}
