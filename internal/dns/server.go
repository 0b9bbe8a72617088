package dns

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"slices"
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
	// zones are what the answers from each zone share, made once: its
	// SOA and NS records, each a slice of one that answers use as their
	// own (Pack only reads them; nothing appends to them: clipped).
	zones map[string]zoneRRs
}

type zoneRRs struct{ soa, ns []dns.RR }

func newView(r Records, serial uint32) *view {
	v := &view{Records: r, serial: serial, zones: make(map[string]zoneRRs, len(r.Zones))}
	for _, z := range r.Zones {
		v.zones[z] = zoneRRs{soa: []dns.RR{v.soa(z)}, ns: []dns.RR{v.ns(z)}}
	}
	return v
}

// NewServer is a server answering from r.
func NewServer(r Records, upstreams []string, log *slog.Logger) *Server {
	s := &Server{Upstreams: upstreams, Log: log, cache: newCache(10000)}
	if s.Log == nil {
		s.Log = slog.New(slog.DiscardHandler)
	}
	s.state.Store(newView(r, serialNow(0)))
	return s
}

// Set replaces the records; every zone's serial moves on.
func (s *Server) Set(r Records) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state.Store(newView(r, serialNow(s.state.Load().serial)))
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
	m := s.reply(req, addrOf(w.RemoteAddr()))
	if m == nil {
		_, tcp := w.RemoteAddr().(*net.TCPAddr)
		m = s.forward(req, tcp)
	}
	_ = w.WriteMsg(m)
}

// reply is the answer to req from remote, or nil when req is to be
// forwarded.
func (s *Server) reply(req *dns.Msg, remote netip.Addr) *dns.Msg {
	v := s.state.Load()
	if len(req.Question) != 1 || req.Opcode != dns.OpcodeQuery {
		m := new(dns.Msg)
		return m.SetRcode(req, dns.RcodeNotImplemented)
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	if apex := v.zoneOf(name); apex != "" {
		return v.authoritative(req, apex, name, q.Qtype)
	}
	if !v.client(remote) || len(s.Upstreams) == 0 {
		m := new(dns.Msg)
		return m.SetRcode(req, dns.RcodeRefused)
	}
	return nil
}

// zoneOf is the apex of the most specific zone holding name, or "": the
// first of name's suffixes, longest first, that is a zone.
func (v *view) zoneOf(name string) string {
	for off, end := 0, false; !end; off, end = dns.NextLabel(name, off) {
		if _, ok := v.zones[name[off:]]; ok {
			return name[off:]
		}
	}
	return ""
}

// client reports whether ip is one of the cloud's own.
func (v *view) client(ip netip.Addr) bool {
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

// addrOf is the IP address of a UDP or TCP peer; the zero Addr (no one's)
// for others.
func addrOf(addr net.Addr) netip.Addr {
	var ip netip.Addr
	switch a := addr.(type) {
	case *net.UDPAddr:
		ip, _ = netip.AddrFromSlice(a.IP)
	case *net.TCPAddr:
		ip, _ = netip.AddrFromSlice(a.IP)
	}
	return ip
}

func (v *view) authoritative(req *dns.Msg, apex, name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	z := v.zones[apex]
	switch {
	case qtype == dns.TypeSOA && name == apex:
		m.Answer = slices.Clip(z.soa)
	case qtype == dns.TypeNS && name == apex:
		m.Answer = slices.Clip(z.ns)
	default:
		rrs, ok := v.Names[name]
		if !ok && name != apex {
			m.Rcode = dns.RcodeNameError
		}
		m.Answer = ofType(rrs, qtype)
	}
	if len(m.Answer) == 0 {
		m.Ns = slices.Clip(z.soa) // negative answers carry the SOA (RFC 2308)
	}
	return m
}

// ofType are the records of rrs of type t (all for ANY): rrs itself,
// clipped, when they all are, as they mostly are (a name's one A record).
func ofType(rrs []dns.RR, t uint16) []dns.RR {
	if t == dns.TypeANY || !slices.ContainsFunc(rrs, func(rr dns.RR) bool { return rr.Header().Rrtype != t }) {
		return slices.Clip(rrs)
	}
	var out []dns.RR
	for _, rr := range rrs {
		if rr.Header().Rrtype == t {
			out = append(out, rr)
		}
	}
	return out
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

// forward asks the upstreams in turn (over TCP when the client asked
// over TCP), answering from the cache when it can.
func (s *Server) forward(req *dns.Msg, tcp bool) *dns.Msg {
	q := req.Question[0]
	if m, ok := s.cache.get(q); ok {
		m.Id = req.Id
		return m
	}
	c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
	if tcp {
		c.Net = "tcp"
	}
	var err error
	for _, up := range s.Upstreams {
		var in *dns.Msg
		in, _, err = c.Exchange(req, up)
		if err == nil {
			s.cache.put(q, in)
			return in
		}
	}
	s.Log.Warn("dns: no upstream answered", "name", q.Name, "err", err)
	m := new(dns.Msg)
	return m.SetRcode(req, dns.RcodeServerFailure)
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
//
// A UDP socket bound to one address is read by a loop of Holdfast's own
// (udpLoop), which answers the cloud's names without miekg/dns's server
// around them: that server starts a goroutine per query and sends every
// answer with a control message, which doubled the cost of a query (see
// docs/performance.md, DNS). A socket bound to every address needs that
// control message to answer from the address asked, and is served by
// miekg/dns's server.
func (s *Server) Serve(ctx context.Context, pc net.PacketConn, ln net.Listener) error {
	servers := []*dns.Server{{Listener: ln, Handler: s}}
	var loops []*udpLoop
	if c, ok := pc.(*net.UDPConn); ok && boundToOne(c) {
		for range runtime.GOMAXPROCS(0) {
			loops = append(loops, &udpLoop{s: s, pc: c})
		}
	} else {
		servers = append(servers, &dns.Server{PacketConn: pc, Handler: s})
	}
	// Buffered for every sender: those after the first are not read.
	errc := make(chan error, len(servers)+len(loops))
	var wg sync.WaitGroup
	// A server stopped before it has started would start after and serve
	// on: each is stopped once it has started, or has failed to.
	ready := make([]chan struct{}, len(servers))
	for i, srv := range servers {
		ready[i] = make(chan struct{})
		once := sync.OnceFunc(func() { close(ready[i]) })
		srv.NotifyStartedFunc = once
		wg.Go(func() {
			defer once()
			errc <- srv.ActivateAndServe()
		})
	}
	for _, l := range loops {
		wg.Go(func() { errc <- l.run() })
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	for i, srv := range servers {
		<-ready[i]
		_ = srv.Shutdown()
	}
	if len(loops) > 0 {
		_ = pc.Close() // ends the loops
	}
	wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}
