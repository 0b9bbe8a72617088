package dhcp

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"github.com/insomniacslk/dhcp/rfc1035label"

	"github.com/holdfast/holdfast/internal/atomicfile"
)

// Server answers DHCP on the interfaces of its pools, one server4 socket
// per interface, from one lease table persisted in one file.
type Server struct {
	file string
	log  *slog.Logger
	now  func() time.Time
	// listen opens the socket for an interface; tests without root swap it
	// for a loopback socket.
	listen func(iface string) (net.PacketConn, error)

	setMu     sync.Mutex // one Set (or Close) at a time
	listeners map[string]*listener

	mu       sync.Mutex
	zones    map[string]*zone
	byIface  map[string]string // interface → zone
	version  uint64            // counts changes to what the lease file holds
	closed   bool
	inflight sync.WaitGroup // handlers running; Close waits for them
	onChange []func([]Lease)

	wmu     sync.Mutex // one lease file write at a time
	written uint64     // the version the lease file holds

	changed chan struct{}
	done    chan struct{}
	wg      sync.WaitGroup
}

type listener struct {
	srv  *server4.Server
	done chan struct{}
}

// New returns a server that serves nothing until Set, with the leases
// persisted in leaseFile (which may not exist yet; its directory must).
func New(leaseFile string, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	all, err := readLeaseFile(leaseFile)
	if err != nil {
		return nil, err
	}
	s := &Server{
		file:      leaseFile,
		log:       log,
		now:       time.Now,
		listen:    listenInterface,
		listeners: map[string]*listener{},
		zones:     map[string]*zone{},
		byIface:   map[string]string{},
		changed:   make(chan struct{}, 1),
		done:      make(chan struct{}),
	}
	for _, l := range all {
		z := s.zones[l.Zone]
		if z == nil {
			z = newZone()
			s.zones[l.Zone] = z
		}
		z.put(l.IP, &entry{mac: l.MAC, hostname: l.Hostname, expires: l.Expires, state: bound, reserved: l.Reserved})
	}
	s.wg.Add(1)
	go s.notifyLoop()
	return s, nil
}

// listenInterface is server4's socket: bound to port 67 on iface alone
// (SO_BINDTODEVICE), so each zone's bridge has its own server.
func listenInterface(iface string) (net.PacketConn, error) {
	return server4.NewIPv4UDPConn(iface, &net.UDPAddr{Port: dhcpv4.ServerPort})
}

// Set serves exactly pools: it starts serving interfaces that are new,
// stops those no longer named, and keeps the leases of every zone that
// stays (minus those the new pool no longer allows: outside its range, or
// on an address now reserved for another client). Leases of zones no
// longer served are dropped. Sockets are opened on the calling thread, so
// a caller inside a network namespace (nsthread.In) serves its bridges.
// Nothing changes when a pool is invalid or an interface cannot be served.
func (s *Server) Set(pools []Pool) error {
	if err := validatePools(pools); err != nil {
		return err
	}
	s.setMu.Lock()
	defer s.setMu.Unlock()
	if s.isClosed() {
		return errors.New("dhcp server closed")
	}

	want := map[string]bool{}
	opened := map[string]*listener{}
	for _, p := range pools {
		want[p.Interface] = true
		if s.listeners[p.Interface] != nil {
			continue
		}
		l, err := s.serve(p.Interface)
		if err != nil {
			for _, l := range opened {
				l.stop()
			}
			return fmt.Errorf("dhcp pool %q: serve on %s: %w", p.Zone, p.Interface, err)
		}
		opened[p.Interface] = l
	}

	s.mu.Lock()
	keep := map[string]bool{}
	s.byIface = map[string]string{}
	for _, p := range pools {
		keep[p.Zone] = true
		s.byIface[p.Interface] = p.Zone
		z := s.zones[p.Zone]
		if z == nil {
			z = newZone()
			s.zones[p.Zone] = z
		}
		if n := z.configure(p); n > 0 {
			s.log.Info("dhcp: leases the new pool no longer allows dropped", "zone", p.Zone, "leases", n)
		}
	}
	for name := range s.zones {
		if !keep[name] {
			delete(s.zones, name)
		}
	}
	s.version++
	s.mu.Unlock()

	for iface, l := range s.listeners {
		if !want[iface] {
			l.stop()
			delete(s.listeners, iface)
		}
	}
	for iface, l := range opened {
		s.listeners[iface] = l
	}
	if err := s.persist(); err != nil {
		return err
	}
	s.notify()
	return nil
}

func (s *Server) serve(iface string) (*listener, error) {
	conn, err := s.listen(iface)
	if err != nil {
		return nil, err
	}
	handler := func(conn net.PacketConn, peer net.Addr, m *dhcpv4.DHCPv4) { s.handle(iface, conn, peer, m) }
	srv, err := server4.NewServer(iface, nil, handler, server4.WithConn(conn))
	if err != nil {
		conn.Close()
		return nil, err
	}
	l := &listener{srv: srv, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		_ = srv.Serve() // returns when stop closes the socket
	}()
	return l, nil
}

func (l *listener) stop() {
	l.srv.Close()
	<-l.done
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// handle answers one message. A lease is in the lease file before its ACK
// leaves: if the write fails the client hears nothing and asks again.
func (s *Server) handle(iface string, conn net.PacketConn, peer net.Addr, req *dhcpv4.DHCPv4) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.inflight.Add(1)
	defer s.inflight.Done()
	resp, changed := s.respond(iface, req)
	if changed {
		s.version++
	}
	s.mu.Unlock()

	if changed {
		if err := s.persist(); err != nil {
			s.log.Error("dhcp: lease file not written; not answering", "file", s.file, "mac", req.ClientHWAddr, "err", err)
			return
		}
	}
	if resp != nil {
		if _, err := conn.WriteTo(resp.ToBytes(), peer); err != nil {
			s.log.Warn("dhcp: reply not sent", "interface", iface, "to", peer, "err", err)
		}
	}
	if changed {
		s.notify()
	}
}

// respond decides the answer to req under s.mu; changed says the lease
// table changed in a way the lease file must record.
func (s *Server) respond(iface string, req *dhcpv4.DHCPv4) (resp *dhcpv4.DHCPv4, changed bool) {
	if req.OpCode != dhcpv4.OpcodeBootRequest || len(req.ClientHWAddr) == 0 {
		return nil, false
	}
	if gi := req.GatewayIPAddr; gi != nil && !gi.IsUnspecified() {
		return nil, false // relayed: the server answers its own bridges only
	}
	name := s.byIface[iface]
	z := s.zones[name]
	if z == nil {
		return nil, false
	}
	p := z.pool
	mac := req.ClientHWAddr.String()
	now := s.now()
	log := s.log.With("zone", name, "mac", mac)
	ours := func() bool { // the message names this server, or none
		sid := req.ServerIdentifier()
		return sid == nil || addr(sid) == p.Gateway
	}

	switch req.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		ip, ok := z.offer(mac, addr(req.RequestedIPAddress()), now)
		if !ok {
			log.Warn("dhcp: no free address in the range", "range", fmt.Sprintf("%v-%v", p.Start, p.End))
			return nil, false
		}
		return s.reply(req, p, dhcpv4.MessageTypeOffer, ip), false

	case dhcpv4.MessageTypeRequest:
		if !ours() {
			z.forget(mac) // it took another server's offer
			return nil, false
		}
		ip := addr(req.RequestedIPAddress()) // SELECTING, INIT-REBOOT
		if !ip.IsValid() {
			ip = addr(req.ClientIPAddr) // RENEWING, REBINDING
		}
		if !ip.IsValid() || !z.bind(mac, ip, hostname(req), now) {
			log.Info("dhcp: request refused", "ip", ip)
			return s.nak(req, p), false
		}
		log.Debug("dhcp: lease", "ip", ip)
		return s.reply(req, p, dhcpv4.MessageTypeAck, ip), true

	case dhcpv4.MessageTypeDecline:
		ip := addr(req.RequestedIPAddress())
		if ours() && z.decline(mac, ip, now) {
			log.Warn("dhcp: client found its address in use; address set aside", "ip", ip, "for", declineHold)
			return nil, true
		}

	case dhcpv4.MessageTypeRelease:
		if ours() && z.release(mac, addr(req.ClientIPAddr), now) {
			return nil, true
		}

	case dhcpv4.MessageTypeInform:
		return s.reply(req, p, dhcpv4.MessageTypeAck, netip.Addr{}), false
	}
	return nil, false
}

// reply is an OFFER or ACK of ip with the pool's options; with no ip, the
// ACK to an INFORM (options only, no lease).
func (s *Server) reply(req *dhcpv4.DHCPv4, p Pool, t dhcpv4.MessageType, ip netip.Addr) *dhcpv4.DHCPv4 {
	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(t),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(p.Gateway.AsSlice())),
		dhcpv4.WithNetmask(net.CIDRMask(p.Prefix.Bits(), 32)),
		dhcpv4.WithRouter(p.Gateway.AsSlice()),
	}
	if ip.IsValid() {
		lt := p.leaseTime()
		mods = append(mods,
			dhcpv4.WithYourIP(ip.AsSlice()),
			dhcpv4.WithLeaseTime(uint32(lt/time.Second)),
			dhcpv4.WithOption(dhcpv4.OptRenewTimeValue(lt/2)),
			dhcpv4.WithOption(dhcpv4.OptRebindingTimeValue(lt*7/8)),
		)
	} else {
		mods = append(mods, dhcpv4.WithClientIP(req.ClientIPAddr))
	}
	if len(p.DNS) > 0 {
		dns := make([]net.IP, len(p.DNS))
		for i, d := range p.DNS {
			dns[i] = d.AsSlice()
		}
		mods = append(mods, dhcpv4.WithDNS(dns...))
	}
	if p.Domain != "" {
		mods = append(mods,
			dhcpv4.WithOption(dhcpv4.OptDomainName(p.Domain)),
			dhcpv4.WithOption(dhcpv4.OptDomainSearch(&rfc1035label.Labels{Labels: []string{p.Domain}})),
		)
	}
	resp, err := dhcpv4.NewReplyFromRequest(req, mods...)
	if err != nil { // only when the system has no randomness for a transaction ID
		s.log.Error("dhcp: reply not built", "err", err)
		return nil
	}
	return resp
}

func (s *Server) nak(req *dhcpv4.DHCPv4, p Pool) *dhcpv4.DHCPv4 {
	resp, err := dhcpv4.NewReplyFromRequest(req,
		dhcpv4.WithMessageType(dhcpv4.MessageTypeNak),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(p.Gateway.AsSlice())),
	)
	if err != nil {
		s.log.Error("dhcp: reply not built", "err", err)
		return nil
	}
	return resp
}

// addr converts the library's net.IP; unset and 0.0.0.0 are invalid.
func addr(ip net.IP) netip.Addr {
	a, ok := netip.AddrFromSlice(ip.To4())
	if !ok || a.IsUnspecified() {
		return netip.Addr{}
	}
	return a
}

// hostname is the client's hostname option, as far as it is printable
// text (it ends up in logs and, through OnChange, in DNS).
func hostname(req *dhcpv4.DHCPv4) string {
	h := req.HostName()
	for i := 0; i < len(h); i++ {
		if h[i] < 0x21 || h[i] > 0x7e {
			return h[:i]
		}
	}
	return h
}

// persist writes the lease table unless a write since its last change
// already did. Concurrent callers share one write: each waits for the
// one in progress, and the next write covers all of them.
func (s *Server) persist() error {
	s.mu.Lock()
	v := s.version
	s.mu.Unlock()
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.written >= v {
		return nil
	}
	s.mu.Lock()
	v = s.version
	var f leaseFile
	for name, z := range s.zones {
		f.Leases = append(f.Leases, z.leases(name, s.now(), true)...)
	}
	s.mu.Unlock()
	sortLeases(f.Leases)
	if f.Leases == nil {
		f.Leases = []Lease{}
	}
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(s.file, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("lease file: %w", err)
	}
	s.written = v
	return nil
}

// Leases returns the unexpired leases, by zone and address.
func (s *Server) Leases() []Lease {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.leasesLocked()
}

func (s *Server) leasesLocked() []Lease {
	var out []Lease
	now := s.now()
	for name, z := range s.zones {
		out = append(out, z.leases(name, now, false)...)
	}
	sortLeases(out)
	return out
}

// OnChange registers fn, called with the current leases after a lease is
// granted, renewed, released, declined or expires, and after Set. Calls
// come from one goroutine, one at a time; changes that come while one
// runs are reported together by the next.
func (s *Server) OnChange(fn func([]Lease)) {
	s.mu.Lock()
	s.onChange = append(s.onChange, fn)
	s.mu.Unlock()
	s.notify()
}

func (s *Server) notify() {
	select {
	case s.changed <- struct{}{}:
	default: // one is pending: it will see this change too
	}
}

// notifyLoop calls the OnChange functions on each change, and when the
// next lease expires.
func (s *Server) notifyLoop() {
	defer s.wg.Done()
	expiry := time.NewTimer(time.Hour)
	expiry.Stop()
	for {
		select {
		case <-s.done:
			expiry.Stop()
			return
		case <-s.changed:
		case <-expiry.C:
		}
		s.mu.Lock()
		leases := s.leasesLocked()
		fns := slices.Clone(s.onChange)
		now := s.now()
		s.mu.Unlock()
		for _, fn := range fns {
			fn(leases)
		}
		expiry.Stop()
		if len(leases) > 0 {
			next := slices.MinFunc(leases, func(a, b Lease) int { return a.Expires.Compare(b.Expires) }).Expires
			expiry.Reset(next.Sub(now) + time.Millisecond)
		}
	}
}

// Close stops serving and waits for the answers in progress (their leases
// are then in the lease file). The lease file stays for the next Server.
func (s *Server) Close() error {
	s.setMu.Lock()
	defer s.setMu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	for iface, l := range s.listeners {
		l.stop()
		delete(s.listeners, iface)
	}
	s.inflight.Wait()
	close(s.done)
	s.wg.Wait()
	return s.persist()
}
