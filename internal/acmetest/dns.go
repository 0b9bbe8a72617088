package acmetest

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/internal/nsthread"
)

// ServeDNS answers A queries for the names in hosts (case-insensitive,
// with or without the final dot) on pc until the test ends, and over TCP
// on the same address (pebble asks its -dnsserver over TCP), in pc's
// network namespace. A name in
// hosts asked for another type gets an empty answer (it exists, without
// that record: AAAA must not fail a lookup that has an A); any other name
// is NXDOMAIN.
func ServeDNS(t testing.TB, pc net.PacketConn, hosts map[string]netip.Addr) {
	t.Helper()
	names := make(map[string]netip.Addr, len(hosts))
	for n, a := range hosts {
		names[dns.CanonicalName(n)] = a
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		m.Authoritative = true
		if len(req.Question) != 1 {
			m.Rcode = dns.RcodeFormatError
			_ = w.WriteMsg(m)
			return
		}
		q := req.Question[0]
		addr, ok := names[strings.ToLower(dns.CanonicalName(q.Name))]
		switch {
		case !ok:
			m.Rcode = dns.RcodeNameError
		case q.Qtype == dns.TypeA && addr.Is4():
			m.Answer = append(m.Answer, &dns.A{
				Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 1},
				A:   addr.AsSlice(),
			})
		}
		_ = w.WriteMsg(m)
	})}
	ln, err := listenBeside(pc)
	if err != nil {
		t.Fatalf("acmetest DNS over TCP: %v", err)
	}
	tcp := &dns.Server{Listener: ln, Handler: srv.Handler}
	for _, s := range []*dns.Server{srv, tcp} {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := s.ActivateAndServe(); err != nil {
				t.Logf("acmetest DNS: %v", err)
			}
		}()
		select {
		case <-started:
		case <-time.After(5 * time.Second):
			t.Fatal("acmetest DNS did not start")
		}
		t.Cleanup(func() {
			_ = s.Shutdown()
			<-done
		})
	}
}

// listenBeside opens a TCP listener at pc's address in pc's network
// namespace (which the kernel tells: SIOCGSKNS), so a test may make pc
// inside a namespace and hand it over.
func listenBeside(pc net.PacketConn) (net.Listener, error) {
	addr := pc.LocalAddr().String()
	sc, ok := pc.(syscall.Conn)
	if !ok {
		return net.Listen("tcp", addr)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil, err
	}
	nsfd := -1
	_ = raw.Control(func(fd uintptr) {
		nsfd, _ = unix.IoctlRetInt(int(fd), unix.SIOCGSKNS)
	})
	if nsfd < 0 {
		return net.Listen("tcp", addr) // not allowed to ask: ours, then
	}
	defer unix.Close(nsfd)
	var theirs, ours unix.Stat_t
	if unix.Fstat(nsfd, &theirs) == nil && unix.Stat("/proc/thread-self/ns/net", &ours) == nil && theirs.Ino == ours.Ino {
		return net.Listen("tcp", addr)
	}
	var ln net.Listener
	err = nsthread.In(fmt.Sprintf("/proc/self/fd/%d", nsfd), func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	})
	return ln, err
}
