package dns_test

import (
	"context"
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/holdfast/holdfast/internal/compile"
	hdns "github.com/holdfast/holdfast/internal/dns"
	_ "github.com/holdfast/holdfast/internal/engine/engines" // the example's engine
)

func arvandor(t *testing.T) *compile.State {
	t.Helper()
	_, st, _, diags := compile.File("../../examples/arvandor", compile.Allocations{})
	if diags.HasErrors() {
		t.Fatal(diags.Err())
	}
	return st
}

// serve runs s on a loopback port (UDP and TCP) for the test.
func serve(t *testing.T, h dns.Handler) string {
	t.Helper()
	// One port for both: the UDP port the kernel picks may be taken for
	// TCP by another test's connection, so pick again then.
	var pc net.PacketConn
	var ln net.Listener
	for try := 0; ln == nil; try++ {
		var err error
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err != nil {
			pc.Close()
			if try == 20 {
				t.Fatal(err)
			}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	if s, ok := h.(*hdns.Server); ok {
		go func() { done <- s.Serve(ctx, pc, ln) }()
	} else {
		srvs := []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: ln, Handler: h}}
		for _, s := range srvs {
			go func() { _ = s.ActivateAndServe() }()
		}
		go func() {
			<-ctx.Done()
			for _, s := range srvs {
				_ = s.Shutdown()
			}
			done <- nil
		}()
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return pc.LocalAddr().String()
}

func ask(t *testing.T, addr, name string, qtype uint16, network string) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	c := &dns.Client{Net: network}
	in, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s %s: %v", name, dns.TypeToString[qtype], err)
	}
	return in
}

func answers(m *dns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		f := strings.Fields(rr.String())
		out = append(out, f[len(f)-1])
	}
	return out
}

func TestAuthoritativeForTheCloudsNames(t *testing.T) {
	st := arvandor(t)
	r, err := hdns.Build(st)
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, hdns.NewServer(r, nil, nil))
	for _, c := range []struct {
		name  string
		qtype uint16
		want  string
	}{
		{"postgres-01.provisioning.internal", dns.TypeA, "192.168.100.30"},
		{"POSTGRES-01.Provisioning.Internal", dns.TypeA, "192.168.100.30"},
		{"postgres-01.nebula", dns.TypeA, "10.10.10.30"},
		{"dns.nebula", dns.TypeA, "10.10.10.11"},
		{"30.100.168.192.in-addr.arpa", dns.TypePTR, "postgres-01.provisioning.internal."},
		{"30.10.10.10.in-addr.arpa", dns.TypePTR, "postgres-01.nebula."},
	} {
		for _, network := range []string{"udp", "tcp"} {
			m := ask(t, addr, c.name, c.qtype, network)
			if got := answers(m); m.Rcode != dns.RcodeSuccess || !m.Authoritative || len(got) != 1 || got[0] != c.want {
				t.Errorf("%s %s over %s: rcode %s aa %v answers %v, want %s", c.name, dns.TypeToString[c.qtype], network,
					dns.RcodeToString[m.Rcode], m.Authoritative, got, c.want)
			}
		}
	}
	m := ask(t, addr, "nobody.provisioning.internal", dns.TypeA, "udp")
	if m.Rcode != dns.RcodeNameError || len(m.Ns) != 1 || m.Ns[0].Header().Rrtype != dns.TypeSOA {
		t.Errorf("an unknown name: %s, authority %v; want NXDOMAIN with the SOA", dns.RcodeToString[m.Rcode], m.Ns)
	}
	m = ask(t, addr, "postgres-01.nebula", dns.TypeAAAA, "udp")
	if m.Rcode != dns.RcodeSuccess || len(m.Answer) != 0 {
		t.Errorf("AAAA of a name with only A: %s %v; want an empty answer", dns.RcodeToString[m.Rcode], m.Answer)
	}
	for _, apex := range []string{"internal", "nebula", "100.168.192.in-addr.arpa", "10.10.10.in-addr.arpa"} {
		if m := ask(t, addr, apex, dns.TypeSOA, "udp"); len(m.Answer) != 1 {
			t.Errorf("SOA of %s: %v", apex, m.Answer)
		}
	}
}

// A change is served at once, with a new serial.
func TestSetChangesTheRecordsAndTheSerial(t *testing.T) {
	st := arvandor(t)
	r, err := hdns.Build(st)
	if err != nil {
		t.Fatal(err)
	}
	s := hdns.NewServer(r, nil, nil)
	addr := serve(t, s)
	before := s.Serial()
	// game-01 is gone.
	st.Instances = slices.DeleteFunc(st.Instances, func(in compile.Instance) bool { return in.Name == "game-01" })
	st.Overlay.Members = slices.DeleteFunc(st.Overlay.Members, func(m compile.Member) bool { return m.Name == "game-01" })
	r2, err := hdns.Build(st)
	if err != nil {
		t.Fatal(err)
	}
	s.Set(r2)
	if s.Serial() <= before {
		t.Fatalf("serial %d after a change, was %d", s.Serial(), before)
	}
	if m := ask(t, addr, "game-01.provisioning.internal", dns.TypeA, "udp"); m.Rcode != dns.RcodeNameError {
		t.Errorf("a removed instance: %s, want NXDOMAIN", dns.RcodeToString[m.Rcode])
	}
	soa := ask(t, addr, "internal", dns.TypeSOA, "udp").Answer[0].(*dns.SOA)
	if soa.Serial != s.Serial() {
		t.Errorf("SOA serial %d, want %d", soa.Serial, s.Serial())
	}
}

// Other names go to the upstreams, for the cloud's clients only.
func TestForwardsForItsClientsOnly(t *testing.T) {
	upstream := serve(t, dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		rr, _ := dns.NewRR(req.Question[0].Name + " 60 IN A 203.0.113.5")
		m.Answer = append(m.Answer, rr)
		_ = w.WriteMsg(m)
	}))
	r, err := hdns.Build(arvandor(t))
	if err != nil {
		t.Fatal(err)
	}
	s := hdns.NewServer(r, []string{upstream}, nil)
	addr := serve(t, s)
	if m := ask(t, addr, "example.com", dns.TypeA, "udp"); strings.Join(answers(m), ",") != "203.0.113.5" || m.Authoritative {
		t.Errorf("forwarded: %v aa %v", answers(m), m.Authoritative)
	}
	// From an address outside the cloud, the same question is refused.
	w := &recorder{remote: &net.UDPAddr{IP: net.ParseIP("198.51.100.7"), Port: 5353}}
	q := new(dns.Msg)
	q.SetQuestion("example.com.", dns.TypeA)
	s.ServeDNS(w, q)
	if w.msg == nil || w.msg.Rcode != dns.RcodeRefused {
		t.Errorf("a stranger's recursive query: %v, want REFUSED", w.msg)
	}
	// A client of the cloud (an instance on the bridge) is answered.
	w = &recorder{remote: &net.UDPAddr{IP: net.ParseIP("192.168.100.30"), Port: 5353}}
	s.ServeDNS(w, q)
	if w.msg == nil || w.msg.Rcode != dns.RcodeSuccess {
		t.Errorf("an instance's recursive query: %v", w.msg)
	}
	// The cloud's own names are answered to anyone: they are its zones.
	w = &recorder{remote: &net.UDPAddr{IP: net.ParseIP("198.51.100.7"), Port: 5353}}
	q.SetQuestion("dns.nebula.", dns.TypeA)
	s.ServeDNS(w, q)
	if w.msg == nil || strings.Join(answers(w.msg), ",") != "10.10.10.11" {
		t.Errorf("the cloud's name from outside: %v", w.msg)
	}
}

// recorder is a ResponseWriter for calling ServeDNS from a given address.
type recorder struct {
	dns.ResponseWriter
	remote net.Addr
	msg    *dns.Msg
}

func (r *recorder) RemoteAddr() net.Addr      { return r.remote }
func (r *recorder) LocalAddr() net.Addr       { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53} }
func (r *recorder) WriteMsg(m *dns.Msg) error { r.msg = m; return nil }
