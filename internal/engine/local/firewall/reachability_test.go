package firewall_test

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/engine/local/firewall"
)

// labSpec is a small site: a management zone reaching the service zone;
// the service zone reaching the internet; a DMZ with a pinhole into one
// service port and one instance allowed out to the internet on port 80
// only; an isolated camera zone that only the service zone may reach, on
// one port.
const labSpec = `
cloud: {name: lab, domain: lab.example}
sites:
  a: {engine: local, nodes: [n1]}
zones:
  mgmt: {type: management, sub-id: 10, access-to: [srv]}
  srv:  {type: service, sub-id: 10, access-to: [internet], pinhole-allowed-from: [dmz, internet]}
  dmz:  {type: dmz, sub-id: 10}
  cams: {type: iot, sub-id: 30, isolated: true, pinhole-allowed-from: [srv]}
roles:
  app: {vmids: 2000-2099}
instances:
  admin: {role: app, zone: mgmt}
  web:   {role: app, zone: srv, ingress: [{from: dmz, ports: [8080]}, {from: internet, ports: [8443]}]}
  web2:  {role: app, zone: srv}
  cam:   {role: app, zone: cams, ingress: [{from: srv, ports: [554]}]}
  proxy: {role: app, zone: dmz, egress: [{to: internet, ports: [80]}]}
`

// A probe and what the flows say of it. to is an instance, "internet",
// "edge" (its uplink address) or "gw:<instance>" (that instance's
// gateway on the edge).
type probe struct {
	from, to string
	proto    string // tcp, udp or icmp
	port     string
	allowed  bool
}

func (p probe) String() string {
	s := fmt.Sprintf("%s > %s %s", p.from, p.to, p.proto)
	if p.port != "" {
		s += " " + p.port
	}
	return s
}

// matrix is the lab's reachability under its flows, written from the spec
// by hand, not derived by the code under test.
var matrix = []probe{
	// mgmt reaches srv: every protocol, every port.
	{"admin", "web", "tcp", "8080", true},
	{"admin", "web", "tcp", "9090", true},
	{"admin", "web", "udp", "5353", true},
	{"admin", "web", "icmp", "", true},
	{"admin", "web2", "tcp", "9090", true},
	{"admin", "cam", "tcp", "554", false},
	{"admin", "cam", "icmp", "", false},
	{"admin", "proxy", "tcp", "22", false},
	{"admin", "internet", "tcp", "80", false}, // mgmt has no internet
	{"admin", "internet", "icmp", "", false},
	{"admin", "gw:admin", "icmp", "", true}, // the edge answers its zones' pings
	{"admin", "gw:admin", "tcp", edgePort, false},
	// srv: internet; one pinhole into cams; not back into mgmt.
	{"web", "admin", "tcp", "22", false},
	{"web", "admin", "icmp", "", false},
	{"web", "web2", "tcp", "9090", true}, // within a zone
	{"web", "web2", "icmp", "", true},
	{"web2", "web", "tcp", "8080", true},
	{"web", "cam", "tcp", "554", true}, // the pinhole's port
	{"web2", "cam", "tcp", "554", true},
	{"web", "cam", "tcp", "22", false},  // not another port of the instance
	{"web", "cam", "udp", "554", false}, // nor another protocol on the port
	{"web", "cam", "icmp", "", false},
	{"web", "proxy", "tcp", "22", false},
	{"web", "internet", "tcp", "80", true},
	{"web", "internet", "tcp", "81", true},
	{"web", "internet", "icmp", "", true},
	// cams is isolated and reaches nothing.
	{"cam", "web", "tcp", "9090", false},
	{"cam", "web", "udp", "5353", false},
	{"cam", "admin", "tcp", "22", false},
	{"cam", "internet", "tcp", "80", false},
	{"cam", "gw:cam", "icmp", "", true},
	// dmz: a pinhole into web:8080 only; proxy out to the internet on 80.
	{"proxy", "web", "tcp", "8080", true},
	{"proxy", "web", "tcp", "8443", false},
	{"proxy", "web", "tcp", "9090", false},
	{"proxy", "web", "icmp", "", false},
	{"proxy", "internet", "tcp", "80", true},
	{"proxy", "internet", "tcp", "81", false},
	{"proxy", "internet", "icmp", "", false},
	{"proxy", "admin", "tcp", "22", false},
	{"proxy", "cam", "tcp", "554", false},
	// The internet: the pinhole into web:8443, nothing else.
	{"internet", "web", "tcp", "8443", true},
	{"internet", "web", "tcp", "8080", false},
	{"internet", "web", "tcp", "9090", false},
	{"internet", "web", "icmp", "", false},
	{"internet", "admin", "tcp", "22", false},
	{"internet", "cam", "tcp", "554", false},
	{"internet", "proxy", "tcp", "22", false},
	{"internet", "edge", "tcp", edgePort, false},
	{"internet", "edge", "icmp", "", false},
}

// listeners serve every port the matrix probes.
var listeners = map[string][]string{
	"admin": {"tcp/22"},
	"web":   {"tcp/8080", "tcp/8443", "tcp/9090", "udp/5353"},
	"web2":  {"tcp/9090"},
	"cam":   {"tcp/554", "tcp/22", "udp/554"},
	"proxy": {"tcp/22"},
}

func (l *lab) serve() {
	for name, ports := range listeners {
		for _, p := range ports {
			proto, port, _ := strings.Cut(p, "/")
			if proto == "udp" {
				l.listenUDP(name, port)
			} else {
				l.listenTCP(l.ns(name), l.addrOf(name)+":"+port)
			}
		}
	}
	l.listenTCP(l.inet, inetHost+":80")
	l.listenTCP(l.inet, inetHost+":81")
	l.listenTCP(l.edge, "0.0.0.0:"+edgePort)
}

// run sends every probe at once (a blocked one waits out its timeout) and
// returns what happened to each.
func (l *lab) run(probes []probe) []string {
	got := make([]string, len(probes))
	var wg sync.WaitGroup
	for i, p := range probes {
		wg.Go(func() { got[i] = l.probe(p) })
	}
	wg.Wait()
	// A first packet can be lost while neighbours are resolved on a loaded
	// machine, which looks like a block; a path that is really blocked is
	// blocked on a second try too.
	for i, p := range probes {
		if got[i] == blocked {
			wg.Go(func() { got[i] = l.probe(p) })
		}
	}
	wg.Wait()
	return got
}

func (l *lab) probe(p probe) string {
	var got string
	switch p.proto {
	case "tcp":
		got, _ = l.tcp(p.from, p.to, p.port)
	case "udp":
		got = l.udpEcho(p.from, p.to, p.port)
	case "icmp":
		got = l.ping(p.from, p.to)
	}
	return got
}

// TestReachabilityIsExactlyTheFlows builds the lab, checks that without
// the firewall everything reaches everything (so each probe can tell open
// from blocked), applies the compiled flows, and checks every probe of the
// matrix against them, the source the internet sees, and forged sources.
func TestReachabilityIsExactlyTheFlows(t *testing.T) {
	requireRoot(t)
	st := compileSpec(t, labSpec)
	l := newLab(t, st, "a")
	l.serve()
	in := firewall.FromState(st, "a", "wan0")
	admin := l.hosts["admin"].ip

	// Without a firewall every probe passes, masquerading does not
	// happen, and forged sources arrive: what follows is the firewall's.
	for i, got := range l.run(matrix) {
		if got != open {
			t.Errorf("without firewall: %v: %s, want open (the lab is broken)", matrix[i], got)
		}
	}
	if _, seen := l.tcp("web2", "internet", "80"); !strings.HasPrefix(seen, l.hosts["web2"].ip.String()+":") {
		t.Errorf("without firewall the internet saw %q, want web2's own address", seen)
	}
	l.spoof("proxy", admin, "web", "5353", "forged-by-proxy-0")
	if src, ok := l.udp["web:5353"].waitFor("forged-by-proxy-0", 2*time.Second); !ok || src != admin.String() {
		t.Fatalf("without firewall a forged datagram did not arrive (%q, %v): the spoofing probe is broken", src, ok)
	}
	if t.Failed() {
		t.FailNow()
	}

	if err := firewall.Apply(l.edge, in); err != nil {
		t.Fatal(err)
	}
	got := l.run(matrix)
	for i, p := range matrix {
		want := blocked
		if p.allowed {
			want = open
		}
		if got[i] != want {
			t.Errorf("%v: %s, want %s", p, got[i], want)
		}
	}

	t.Run("internet egress is masqueraded", func(t *testing.T) {
		result, seen := l.tcp("web2", "internet", "80")
		if result != open || !strings.HasPrefix(seen, edgeWAN+":") {
			t.Errorf("web2 > internet: %s, server saw %q, want the edge's uplink address %s", result, seen, edgeWAN)
		}
	})

	t.Run("forged sources are dropped", func(t *testing.T) {
		// mgmt reaches srv, so a datagram from admin's address to web
		// passes the flows: only the anti-spoofing rules stop a dmz
		// instance, or the internet, that claims admin's address.
		l.spoof("proxy", admin, "web", "5353", "forged-by-proxy-1")
		l.spoof("internet", admin, "web", "5353", "forged-from-internet")
		if got := l.udpEcho("admin", "web", "5353"); got != open {
			t.Fatalf("admin > web udp: %s, want open", got)
		}
		for _, payload := range []string{"forged-by-proxy-1", "forged-from-internet"} {
			if src, ok := l.udp["web:5353"].waitFor(payload, probeTTL); ok {
				t.Errorf("datagram %q with forged source %s reached web", payload, src)
			}
		}
	})

	t.Run("the table is intact", func(t *testing.T) {
		drift, err := firewall.Verify(l.edge, in)
		if err != nil || len(drift) > 0 {
			t.Errorf("Verify after Apply: %v, %q", err, drift)
		}
	})

	t.Run("replacing the ruleset opens no window", func(t *testing.T) {
		replaceUnderTraffic(t, l, in)
	})
}

// replaceUnderTraffic applies two rulesets in turn while cam and the
// internet, which no flow lets reach web over UDP, send it datagrams as
// fast as they can. Had any moment of a replacement let an undecided
// packet through — no table, or a chain whose rules or drop were not live
// — some would pass. (Without the chains' final drop rule they do, within
// a few applies: the kernel arms a new chain's drop policy only after it
// has unhooked the old chains.) The other ruleset has thousands of pinhole
// elements, committed one by one, which stretches every moment of the
// commit.
func replaceUnderTraffic(t *testing.T, l *lab, in firewall.Input) {
	other := in
	other.Flows = slices.Clone(in.Flows)
	for port := 10000; port < 16000; port += 2 {
		other.Flows = append(other.Flows, compile.Flow{From: "internet", To: "web", Proto: "tcp", Ports: []string{strconv.Itoa(port)},
			Kind: compile.KindPinhole, ToCIDR: l.hosts["web"].ip.String() + "/32"})
	}
	stop := make(chan struct{})
	flood := func(from string) <-chan int {
		sent := make(chan int, 1)
		go func() {
			n := 0
			err := inNS(l.ns(from), func() error {
				c, err := net.DialUDP("udp4", &net.UDPAddr{IP: l.local(from)}, &net.UDPAddr{IP: net.ParseIP(l.addrOf("web")), Port: 5353})
				if err != nil {
					return err
				}
				defer c.Close()
				for {
					select {
					case <-stop:
						return nil
					default:
					}
					if _, err := c.Write([]byte("flood-from-" + from)); err == nil {
						n++
					}
				}
			})
			if err != nil {
				t.Errorf("flood from %s: %v", from, err)
			}
			sent <- n
		}()
		return sent
	}
	senders := map[string]<-chan int{"cam": flood("cam"), "internet": flood("internet")}
	const applies = 20
	for i := range applies {
		next := in
		if i%2 == 0 {
			next = other
		}
		if err := firewall.Apply(l.edge, next); err != nil {
			t.Fatal(err)
		}
		if drift, err := firewall.Verify(l.edge, next); err != nil || len(drift) > 0 {
			t.Fatalf("apply %d: Verify: %v %q", i, err, drift)
		}
	}
	close(stop)
	for from, sent := range senders {
		n := <-sent
		if n == 0 {
			t.Fatalf("%s sent nothing: the probe did not run", from)
		}
		t.Logf("%d applies while %s sent %d datagrams", applies, from, n)
	}
	// web's server reads its socket in order: once a round trip through
	// it returns, every datagram that arrived before has been logged.
	if got := l.udpEcho("admin", "web", "5353"); got != open {
		t.Fatalf("admin > web udp after the applies: %s", got)
	}
	for from := range senders {
		if src, ok := l.udp["web:5353"].contains("flood-from-" + from); ok {
			t.Errorf("a datagram from %s (%s) reached web while rulesets were replaced", from, src)
		}
	}
	// The last apply was in's: the other ruleset's pinholes are not there.
	if drift, err := firewall.Verify(l.edge, other); err != nil || len(drift) == 0 {
		t.Errorf("Verify against the other ruleset: %v, no drift: it does not see set elements", err)
	}
}
