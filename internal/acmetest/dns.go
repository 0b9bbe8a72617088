package acmetest

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// ServeDNS answers A queries for the names in hosts (case-insensitive,
// with or without the final dot) on pc until the test ends. A name in
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
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.ActivateAndServe(); err != nil {
			t.Logf("acmetest DNS: %v", err)
		}
	}()
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("acmetest DNS did not start")
	}
	t.Cleanup(func() {
		_ = srv.Shutdown()
		<-done
	})
}
