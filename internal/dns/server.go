package dns

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// Server answers for the cloud's names and forwards the rest.
type Server struct {
	// Upstreams are the resolvers other names are forwarded to
	// ("1.1.1.1:53"); none: other names are refused.
	Upstreams []string
	Log       *slog.Logger

	state atomic.Pointer[view]
	mu    sync.Mutex // serializes Set
	cache *cache
}

// view is one set of records with its serial.
type view struct {
	Records
	serial uint32
}

// NewServer is a server answering from r.
func NewServer(r Records, upstreams []string, log *slog.Logger) *Server {
	s := &Server{Upstreams: upstreams, Log: log, cache: newCache(10000)}
	if s.Log == nil {
		s.Log = slog.New(slog.DiscardHandler)
	}
	s.state.Store(&view{Records: r, serial: serialNow(0)})
	return s
}

// Set replaces the records; every zone's serial moves on.
func (s *Server) Set(r Records) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state.Store(&view{Records: r, serial: serialNow(s.state.Load().serial)})
}

// Serial is the SOA serial now served.
func (s *Server) Serial() uint32 { return s.state.Load().serial }

// serialNow is a serial after prev: the time in seconds (so that a
// restarted server does not go back), or prev+1 when that is not after it.
func serialNow(prev uint32) uint32 {
	now := uint32(time.Now().Unix())
	if now <= prev {
		return prev + 1
	}
	return now
}

// ServeDNS answers one query.
func (s *Server) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	v := s.state.Load()
	m := new(dns.Msg)
	if len(req.Question) != 1 || req.Opcode != dns.OpcodeQuery {
		m.SetRcode(req, dns.RcodeNotImplemented)
		_ = w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	if apex := v.zoneOf(name); apex != "" {
		s.authoritative(w, req, v, apex, name, q.Qtype)
		return
	}
	if !v.client(w.RemoteAddr()) || len(s.Upstreams) == 0 {
		m.SetRcode(req, dns.RcodeRefused)
		_ = w.WriteMsg(m)
		return
	}
	s.forward(w, req)
}

// zoneOf is the apex of the most specific zone holding name, or "".
func (v *view) zoneOf(name string) string {
	best := ""
	for _, z := range v.Zones {
		if dns.IsSubDomain(z, name) && len(z) > len(best) {
			best = z
		}
	}
	return best
}

// client reports whether addr is one of the cloud's own.
func (v *view) client(addr net.Addr) bool {
	var ip netip.Addr
	switch a := addr.(type) {
	case *net.UDPAddr:
		ip, _ = netip.AddrFromSlice(a.IP)
	case *net.TCPAddr:
		ip, _ = netip.AddrFromSlice(a.IP)
	default:
		return false
	}
	ip = ip.Unmap()
	if ip.IsLoopback() {
		return true // the host's own tools, on the server's machine
	}
	for _, p := range v.Clients {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

func (s *Server) authoritative(w dns.ResponseWriter, req *dns.Msg, v *view, apex, name string, qtype uint16) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	soa := v.soa(apex)
	switch {
	case qtype == dns.TypeSOA && name == apex:
		m.Answer = append(m.Answer, soa)
	case qtype == dns.TypeNS && name == apex:
		m.Answer = append(m.Answer, v.ns(apex))
	default:
		rrs, ok := v.Names[name]
		if !ok && name != apex {
			m.Rcode = dns.RcodeNameError
		}
		for _, rr := range rrs {
			if rr.Header().Rrtype == qtype || qtype == dns.TypeANY {
				m.Answer = append(m.Answer, rr)
			}
		}
	}
	if len(m.Answer) == 0 {
		m.Ns = append(m.Ns, soa) // negative answers carry the SOA (RFC 2308)
	}
	_ = w.WriteMsg(m)
}

// nsName is the name the zones give for their server.
const nsName = "ns.holdfast."

func (v *view) soa(apex string) dns.RR {
	return &dns.SOA{Hdr: dns.RR_Header{Name: apex, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: TTL},
		Ns: nsName, Mbox: "hostmaster." + apex, Serial: v.serial,
		Refresh: 3600, Retry: 600, Expire: 86400, Minttl: TTL}
}

func (v *view) ns(apex string) dns.RR {
	return &dns.NS{Hdr: dns.RR_Header{Name: apex, Rrtype: dns.TypeNS, Class: dns.ClassINET, Ttl: TTL}, Ns: nsName}
}

// forward asks the upstreams in turn, answering from the cache when it
// can.
func (s *Server) forward(w dns.ResponseWriter, req *dns.Msg) {
	q := req.Question[0]
	if m, ok := s.cache.get(q); ok {
		m.Id = req.Id
		_ = w.WriteMsg(m)
		return
	}
	c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
	if _, tcp := w.RemoteAddr().(*net.TCPAddr); tcp {
		c.Net = "tcp"
	}
	var err error
	for _, up := range s.Upstreams {
		var in *dns.Msg
		in, _, err = c.Exchange(req, up)
		if err == nil {
			s.cache.put(q, in)
			_ = w.WriteMsg(in)
			return
		}
	}
	s.Log.Warn("dns: no upstream answered", "name", q.Name, "err", err)
	m := new(dns.Msg)
	m.SetRcode(req, dns.RcodeServerFailure)
	_ = w.WriteMsg(m)
}

// ListenAndServe answers on addr over UDP and TCP until ctx ends.
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		pc.Close()
		return err
	}
	return s.Serve(ctx, pc, ln)
}

// Serve answers on pc (UDP) and ln (TCP) until ctx ends.
func (s *Server) Serve(ctx context.Context, pc net.PacketConn, ln net.Listener) error {
	servers := []*dns.Server{{PacketConn: pc, Handler: s}, {Listener: ln, Handler: s}}
	errc := make(chan error, len(servers))
	for _, srv := range servers {
		go func() { errc <- srv.ActivateAndServe() }()
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	for _, srv := range servers {
		_ = srv.Shutdown()
	}
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}
