package dns_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/holdfast/holdfast/internal/compile"
	hdns "github.com/holdfast/holdfast/internal/dns"
)

// serveOn runs s on a UDP socket at addr for the test, returning its
// address. (TCP is served on a port of its own: the same number can be
// taken for TCP by another process on a busy machine.)
func serveOn(t testing.TB, s *hdns.Server, addr string) *net.UDPAddr {
	t.Helper()
	pc, err := net.ListenPacket("udp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, pc, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return pc.LocalAddr().(*net.UDPAddr)
}

// A burst of queries on one socket, sent before any answer is read (as a
// busy resolver sends them), is answered in full: every query once, with
// its own ID and its own name's address.
func TestAnswersABurstOfQueries(t *testing.T) {
	r, err := hdns.Build(arvandor(t))
	if err != nil {
		t.Fatal(err)
	}
	addr := serveOn(t, hdns.NewServer(r, nil, nil), "127.0.0.1:0")
	c, err := net.DialUDP("udp4", nil, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	names := map[string]string{
		"postgres-01.provisioning.internal.": "192.168.100.30",
		"postgres-01.nebula.":                "10.10.10.30",
		"dns.nebula.":                        "10.10.10.11",
		"nobody.nebula.":                     "NXDOMAIN",
	}
	var order []string
	for n := range names {
		order = append(order, n)
	}
	// Waves of queries, each more than a batch, and each small enough for
	// the sockets' buffers: UDP drops what does not fit, and the test is
	// of the server, not of the buffers.
	const waves, wave = 8, 64
	buf := make([]byte, dns.MaxMsgSize)
	for w := range waves {
		asked := map[uint16]string{}
		for i := range wave {
			q := new(dns.Msg)
			q.SetQuestion(order[i%len(order)], dns.TypeA)
			q.Id = uint16(w*wave + i)
			b, err := q.Pack()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Write(b); err != nil {
				t.Fatal(err)
			}
			asked[q.Id] = q.Question[0].Name
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		for len(asked) > 0 {
			n, err := c.Read(buf)
			if err != nil {
				t.Fatalf("wave %d: %d of %d queries unanswered: %v", w, len(asked), wave, err)
			}
			m := new(dns.Msg)
			if err := m.Unpack(buf[:n]); err != nil {
				t.Fatal(err)
			}
			name, ok := asked[m.Id]
			if !ok {
				t.Fatalf("an answer with ID %d, not asked or answered twice", m.Id)
			}
			delete(asked, m.Id)
			got := dns.RcodeToString[m.Rcode]
			if m.Rcode == dns.RcodeSuccess {
				got = strings.Join(answers(m), ",")
			}
			if m.Question[0].Name != name || got != names[name] {
				t.Errorf("ID %d (%s): answered %s for %s, want %s", m.Id, name, got, m.Question[0].Name, names[name])
			}
		}
	}
}

// A datagram that is not a query — a response, or no DNS message at all —
// is never answered: the server cannot be made to reflect packets at a
// forged source.
func TestAnswersOnlyQueries(t *testing.T) {
	r, err := hdns.Build(arvandor(t))
	if err != nil {
		t.Fatal(err)
	}
	addr := serveOn(t, hdns.NewServer(r, nil, nil), "127.0.0.1:0")
	c, err := net.DialUDP("udp4", nil, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	resp := new(dns.Msg)
	resp.SetQuestion("dns.nebula.", dns.TypeA)
	resp.Response, resp.Id = true, 1
	b, err := resp.Pack()
	if err != nil {
		t.Fatal(err)
	}
	q := new(dns.Msg)
	q.SetQuestion("dns.nebula.", dns.TypeA)
	q.Id = 2
	qb, err := q.Pack()
	if err != nil {
		t.Fatal(err)
	}
	// The query goes last: its answer, read with a deadline, is the first
	// and only datagram back.
	for _, d := range [][]byte{b, []byte("not dns"), qb} {
		if _, err := c.Write(d); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, dns.MaxMsgSize)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	m := new(dns.Msg)
	if err := m.Unpack(buf[:n]); err != nil || m.Id != 2 {
		t.Fatalf("first datagram back: %v (ID %d), want the answer to query 2", err, m.Id)
	}
	// Nothing else comes: a fresh query's answer is the next datagram.
	q.Id = 3
	if qb, err = q.Pack(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(qb); err != nil {
		t.Fatal(err)
	}
	if n, err = c.Read(buf); err != nil {
		t.Fatal(err)
	}
	if err := m.Unpack(buf[:n]); err != nil || m.Id != 3 {
		t.Fatalf("next datagram back: %v (ID %d), want the answer to query 3", err, m.Id)
	}
}

// A socket bound to every address (0.0.0.0) answers too (through
// miekg/dns's server, which replies from the address asked).
func TestServesOnAWildcardSocket(t *testing.T) {
	r, err := hdns.Build(arvandor(t))
	if err != nil {
		t.Fatal(err)
	}
	port := serveOn(t, hdns.NewServer(r, nil, nil), "0.0.0.0:0").Port
	addr := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}
	m := ask(t, addr.String(), "dns.nebula", dns.TypeA, "udp")
	if got := strings.Join(answers(m), ","); got != "10.10.10.11" {
		t.Errorf("dns.nebula at %s: %v", addr, got)
	}
}

// BenchmarkQueriesUDP is one client keeping 64 queries in flight to the
// server on loopback (A, PTR and NXDOMAIN in turn): the time per query
// answered, client included. bench/dns.sh measures the same against
// unbound with dnsperf.
func BenchmarkQueriesUDP(b *testing.B) {
	_, st, _, diags := compile.File("../../examples/arvandor", compile.Allocations{})
	if diags.HasErrors() {
		b.Fatal(diags.Err())
	}
	r, err := hdns.Build(st)
	if err != nil {
		b.Fatal(err)
	}
	addr := serveOn(b, hdns.NewServer(r, nil, nil), "127.0.0.1:0")
	c, err := net.DialUDP("udp4", nil, addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	var queries [][]byte
	for _, q := range []struct {
		name  string
		qtype uint16
	}{{"postgres-01.provisioning.internal.", dns.TypeA}, {"30.10.10.10.in-addr.arpa.", dns.TypePTR}, {"nobody.nebula.", dns.TypeA}} {
		m := new(dns.Msg)
		m.SetQuestion(q.name, q.qtype)
		p, err := m.Pack()
		if err != nil {
			b.Fatal(err)
		}
		queries = append(queries, p)
	}
	const inFlight = 64
	buf := make([]byte, dns.MaxMsgSize)
	sent, answered := 0, 0
	send := func() {
		if _, err := c.Write(queries[sent%len(queries)]); err != nil {
			b.Fatal(err)
		}
		sent++
	}
	b.ResetTimer()
	for sent < min(inFlight, b.N) {
		send()
	}
	for answered < b.N {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(buf); err != nil {
			b.Fatalf("%d of %d answered: %v", answered, b.N, err)
		}
		answered++
		if sent < b.N {
			send()
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "queries/s")
}
