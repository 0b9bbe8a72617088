package dhcp

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// These tests need no root: the server's answers are taken straight from
// its handler (the same one server4 calls per packet), with messages built
// by the library as a client would build them, and a clock the test moves.

var (
	testGateway = netip.MustParseAddr("10.0.0.1")
	testPeer    = &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort}
)

func testPool() Pool {
	return Pool{
		Zone:      "home",
		Interface: "test0",
		Prefix:    netip.MustParsePrefix("10.0.0.0/24"),
		Gateway:   testGateway,
		Start:     netip.MustParseAddr("10.0.0.10"),
		End:       netip.MustParseAddr("10.0.0.20"),
		DNS:       []netip.Addr{netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.3")},
		Domain:    "home.tappaas.example",
		LeaseTime: 10 * time.Minute,
	}
}

// fakeClock is the server's time, moved by the test.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

// now has no monotonic reading, like a time read back from the lease file.
func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t.Round(0) }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// newTestServer is a server on file whose sockets are loopback sockets
// (no root needed to open them; the tests answer through handle).
func newTestServer(t *testing.T, file string, clock *fakeClock, pools ...Pool) *Server {
	t.Helper()
	s, err := New(file, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.now = clock.now
	s.listen = func(string) (net.PacketConn, error) { return net.ListenPacket("udp4", "127.0.0.1:0") }
	if err := s.Set(pools); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// recorder is the connection handle answers on.
type recorder struct {
	net.PacketConn
	sent []byte
}

func (r *recorder) WriteTo(b []byte, _ net.Addr) (int, error) {
	r.sent = append([]byte(nil), b...)
	return len(b), nil
}

// ask sends req to s's test0 and returns its answer, nil for none.
func ask(t *testing.T, s *Server, req *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	t.Helper()
	return askOn(t, s, "test0", req)
}

func askOn(t *testing.T, s *Server, iface string, req *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	t.Helper()
	r := &recorder{}
	s.handle(iface, r, testPeer, req)
	if r.sent == nil {
		return nil
	}
	resp, err := dhcpv4.FromBytes(r.sent)
	if err != nil {
		t.Fatalf("the server sent what the library cannot parse: %v", err)
	}
	if resp.TransactionID != req.TransactionID {
		t.Fatalf("answer to transaction %v carries %v", req.TransactionID, resp.TransactionID)
	}
	return resp
}

func mac(i int) net.HardwareAddr { return net.HardwareAddr{0x02, 0, 0, 0, byte(i >> 8), byte(i)} }

// msg unwraps the library's constructors, which fail only when the
// system has no randomness for a transaction ID.
func msg(m *dhcpv4.DHCPv4, err error) *dhcpv4.DHCPv4 {
	if err != nil {
		panic(err)
	}
	return m
}

func discover(t *testing.T, hw net.HardwareAddr, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	return msg(dhcpv4.NewDiscovery(hw, mods...))
}

// initReboot is a client asking for the address it remembers (after its
// own reboot, or the server's), naming no server.
func initReboot(t *testing.T, hw net.HardwareAddr, ip netip.Addr) *dhcpv4.DHCPv4 {
	return msg(dhcpv4.New(dhcpv4.WithHwAddr(hw), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip.AsSlice()))))
}

// lease runs DISCOVER→OFFER→REQUEST→ACK and returns the ACK, failing the
// test on anything else.
func lease(t *testing.T, s *Server, hw net.HardwareAddr, name string) *dhcpv4.DHCPv4 {
	t.Helper()
	offer := ask(t, s, discover(t, hw, dhcpv4.WithOption(dhcpv4.OptHostName(name))))
	if offer == nil || offer.MessageType() != dhcpv4.MessageTypeOffer {
		t.Fatalf("%s: DISCOVER answered %v, want an OFFER", hw, offer)
	}
	ack := ask(t, s, msg(dhcpv4.NewRequestFromOffer(offer, dhcpv4.WithOption(dhcpv4.OptHostName(name)))))
	if ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("%s: REQUEST of %v answered %v, want an ACK", hw, offer.YourIPAddr, ack)
	}
	if !ack.YourIPAddr.Equal(offer.YourIPAddr) {
		t.Fatalf("%s: offered %v, acknowledged %v", hw, offer.YourIPAddr, ack.YourIPAddr)
	}
	return ack
}

func yiaddr(m *dhcpv4.DHCPv4) netip.Addr { return addr(m.YourIPAddr) }

// An exchange gives an address in the range with every option a client
// needs, and the lease (with the client's hostname) is in Leases and in
// the lease file.
func TestLeaseAndOptions(t *testing.T) {
	file := filepath.Join(t.TempDir(), "leases.json")
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := newTestServer(t, file, clock, testPool())
	p := testPool()

	ack := lease(t, s, mac(1), "laptop")
	ip := yiaddr(ack)
	if !p.inRange(ip) {
		t.Errorf("leased %v, outside the range %v-%v", ip, p.Start, p.End)
	}
	if got := ack.SubnetMask().String(); got != "ffffff00" {
		t.Errorf("subnet mask %s, want ffffff00", got)
	}
	if r := ack.Router(); len(r) != 1 || !r[0].Equal(testGateway.AsSlice()) {
		t.Errorf("router %v, want %v", r, testGateway)
	}
	if got := fmt.Sprint(ack.DNS()); got != "[10.0.0.2 10.0.0.3]" {
		t.Errorf("DNS %s, want [10.0.0.2 10.0.0.3]", got)
	}
	if got := ack.DomainName(); got != p.Domain {
		t.Errorf("domain %q, want %q", got, p.Domain)
	}
	if ds := ack.DomainSearch(); ds == nil || fmt.Sprint(ds.Labels) != "["+p.Domain+"]" {
		t.Errorf("domain search %v, want [%s]", ds, p.Domain)
	}
	if got := ack.IPAddressLeaseTime(0); got != p.LeaseTime {
		t.Errorf("lease time %v, want %v", got, p.LeaseTime)
	}
	if got := addr(ack.ServerIdentifier()); got != testGateway {
		t.Errorf("server identifier %v, want %v", got, testGateway)
	}

	want := Lease{Zone: "home", IP: ip, MAC: mac(1).String(), Hostname: "laptop", Expires: clock.now().Add(p.LeaseTime)}
	if got := s.Leases(); len(got) != 1 || got[0] != want {
		t.Errorf("Leases() = %+v, want [%+v]", got, want)
	}
	onDisk, err := readLeaseFile(file)
	if err != nil || len(onDisk) != 1 || onDisk[0].Hostname != "laptop" || onDisk[0].IP != ip || !onDisk[0].Expires.Equal(want.Expires) {
		t.Errorf("lease file holds %+v (%v), want [%+v]", onDisk, err, want)
	}
}

// INFORM (a client with its own address asking for the options) is
// answered with the options and no lease.
func TestInform(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	s := newTestServer(t, filepath.Join(t.TempDir(), "leases.json"), clock, testPool())
	resp := ask(t, s, msg(dhcpv4.NewInform(mac(1), net.IPv4(10, 0, 0, 50))))
	if resp == nil || resp.MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("INFORM answered %v, want an ACK", resp)
	}
	if !resp.YourIPAddr.IsUnspecified() || resp.Options.Has(dhcpv4.OptionIPAddressLeaseTime) {
		t.Errorf("INFORM's ACK gives a lease (yiaddr %v, lease time option %v)", resp.YourIPAddr, resp.Options.Has(dhcpv4.OptionIPAddressLeaseTime))
	}
	if resp.DomainName() != testPool().Domain || len(resp.DNS()) != 2 {
		t.Errorf("INFORM's ACK lacks the options: domain %q, DNS %v", resp.DomainName(), resp.DNS())
	}
	if len(s.Leases()) != 0 {
		t.Errorf("INFORM made leases: %v", s.Leases())
	}
}

// A client keeps its address: renewing, asking again after a RELEASE, and
// after its lease expired if nobody took the address meanwhile.
func TestSameClientSameAddress(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	s := newTestServer(t, filepath.Join(t.TempDir(), "leases.json"), clock, testPool())
	ip := yiaddr(lease(t, s, mac(1), "a"))
	lease(t, s, mac(2), "b")

	clock.add(5 * time.Minute)
	renew := ask(t, s, msg(dhcpv4.New(dhcpv4.WithHwAddr(mac(1)), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithClientIP(ip.AsSlice()))))
	if renew == nil || renew.MessageType() != dhcpv4.MessageTypeAck || yiaddr(renew) != ip {
		t.Fatalf("renewal of %v answered %v, want an ACK of it", ip, renew)
	}
	if l := s.Leases()[0]; !l.Expires.Equal(clock.now().Add(testPool().LeaseTime)) || l.Hostname != "a" {
		t.Errorf("after renewal the lease is %+v: want it extended, hostname kept", l)
	}

	release := msg(dhcpv4.New(dhcpv4.WithHwAddr(mac(1)), dhcpv4.WithMessageType(dhcpv4.MessageTypeRelease),
		dhcpv4.WithClientIP(ip.AsSlice()), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(testGateway.AsSlice()))))
	if ask(t, s, release) != nil {
		t.Error("RELEASE answered")
	}
	for _, l := range s.Leases() {
		if l.IP == ip {
			t.Errorf("released lease still listed: %+v", l)
		}
	}
	if got := yiaddr(lease(t, s, mac(1), "a")); got != ip {
		t.Errorf("after its release the client got %v, want its address %v back", got, ip)
	}

	clock.add(time.Hour) // every lease expired
	if got := yiaddr(lease(t, s, mac(1), "a")); got != ip {
		t.Errorf("after expiry the client got %v, want its address %v back", got, ip)
	}
}

// A client's previous address goes to another client only once its lease
// expired, and only when no never-used address is left.
func TestExpiredReusedOnlyAfterExpiry(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	p := testPool()
	p.End = netip.MustParseAddr("10.0.0.11") // two addresses
	s := newTestServer(t, filepath.Join(t.TempDir(), "leases.json"), clock, p)
	a := yiaddr(lease(t, s, mac(1), "a"))
	lease(t, s, mac(2), "b")
	if offer := ask(t, s, discover(t, mac(3))); offer != nil {
		t.Fatalf("a full range offered %v", offer.YourIPAddr)
	}
	if nak := ask(t, s, initReboot(t, mac(3), a)); nak == nil || nak.MessageType() != dhcpv4.MessageTypeNak {
		t.Fatalf("a request for another client's leased address answered %v, want a NAK", nak)
	}
	clock.add(p.LeaseTime - time.Second)
	if offer := ask(t, s, discover(t, mac(3))); offer != nil {
		t.Fatalf("an address was offered a second before any lease expired: %v", offer.YourIPAddr)
	}
	// Renew b alone, then let a's lease run out: a's address is the one free.
	clock.add(-time.Minute)
	b := s.Leases()[1].IP
	if ack := ask(t, s, initReboot(t, mac(2), b)); ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("renewal answered %v", ack)
	}
	clock.add(2 * time.Minute)
	if got := yiaddr(lease(t, s, mac(3), "c")); got != a {
		t.Errorf("the new client got %v, want the expired %v", got, a)
	}
}

// Concurrent offers never name the same address twice: an offer holds
// its address until the client answers or the hold passes.
func TestOfferHoldsAddress(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	s := newTestServer(t, filepath.Join(t.TempDir(), "leases.json"), clock, testPool())
	o1 := ask(t, s, discover(t, mac(1)))
	o2 := ask(t, s, discover(t, mac(2)))
	if yiaddr(o1) == yiaddr(o2) {
		t.Fatalf("two clients offered %v", yiaddr(o1))
	}
	// mac(2) asks for mac(1)'s offer: refused while the offer holds.
	if nak := ask(t, s, initReboot(t, mac(2), yiaddr(o1))); nak == nil || nak.MessageType() != dhcpv4.MessageTypeNak {
		t.Errorf("a request for an address offered to another client answered %v, want a NAK", nak)
	}
	// A client that took another server's offer frees ours at once.
	other := msg(dhcpv4.NewRequestFromOffer(o1, dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 0, 0, 254)))))
	if resp := ask(t, s, other); resp != nil {
		t.Errorf("a REQUEST to another server answered %v", resp)
	}
	if ack := ask(t, s, initReboot(t, mac(3), yiaddr(o1))); ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck {
		t.Errorf("the address the client turned down is not free: %v", ack)
	}
}

// A REQUEST outside the range, for the gateway, or naming another network
// is NAKed.
func TestNak(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	s := newTestServer(t, filepath.Join(t.TempDir(), "leases.json"), clock, testPool())
	for _, ip := range []string{"10.0.0.1", "10.0.0.21", "192.168.1.10", "10.0.0.0"} {
		resp := ask(t, s, initReboot(t, mac(1), netip.MustParseAddr(ip)))
		if resp == nil || resp.MessageType() != dhcpv4.MessageTypeNak {
			t.Errorf("REQUEST for %s answered %v, want a NAK", ip, resp)
		}
	}
	if len(s.Leases()) != 0 {
		t.Errorf("NAKed requests left leases: %v", s.Leases())
	}
}

// A reserved MAC gets its address whatever it asks for; nobody else gets
// that address, even when it lies inside the range.
func TestReservation(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	p := testPool()
	reserved := netip.MustParseAddr("10.0.0.10") // the first address of the range
	outside := netip.MustParseAddr("10.0.0.100")
	p.Reservations = []Reservation{{MAC: mac(100), IP: reserved, Hostname: "web-01"}, {MAC: mac(101), IP: outside}}
	s := newTestServer(t, filepath.Join(t.TempDir(), "leases.json"), clock, p)

	for i := 1; i <= 10; i++ {
		if got := yiaddr(lease(t, s, mac(i), "")); got == reserved {
			t.Fatalf("client %d got the reserved %v", i, got)
		}
	}
	if offer := ask(t, s, discover(t, mac(11))); offer != nil {
		t.Fatalf("the range without its reserved address has 10 addresses; an 11th client was offered %v", offer.YourIPAddr)
	}
	if nak := ask(t, s, initReboot(t, mac(11), reserved)); nak == nil || nak.MessageType() != dhcpv4.MessageTypeNak {
		t.Errorf("another client's request for the reserved address answered %v, want a NAK", nak)
	}

	ack := lease(t, s, mac(100), "whatever-it-says")
	if got := yiaddr(ack); got != reserved {
		t.Errorf("reserved MAC got %v, want %v", got, reserved)
	}
	if nak := ask(t, s, initReboot(t, mac(100), netip.MustParseAddr("10.0.0.20"))); nak == nil || nak.MessageType() != dhcpv4.MessageTypeNak {
		t.Errorf("reserved MAC asking for another address answered %v, want a NAK", nak)
	}
	if got := yiaddr(lease(t, s, mac(101), "")); got != outside {
		t.Errorf("reservation outside the range: got %v, want %v", got, outside)
	}
	var found bool
	for _, l := range s.Leases() {
		if l.MAC == mac(100).String() {
			found = true
			if !l.Reserved || l.Hostname != "web-01" || l.IP != reserved {
				t.Errorf("reserved lease %+v: want reserved, hostname web-01 (the reservation's), %v", l, reserved)
			}
		}
	}
	if !found {
		t.Error("the reserved client's lease is not listed")
	}
}

// A declined address (the client found it in use) is offered to nobody
// until the hold passes.
func TestDecline(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	p := testPool()
	p.End = p.Start // one address
	s := newTestServer(t, filepath.Join(t.TempDir(), "leases.json"), clock, p)
	ip := yiaddr(lease(t, s, mac(1), ""))
	decline := msg(dhcpv4.New(dhcpv4.WithHwAddr(mac(1)), dhcpv4.WithMessageType(dhcpv4.MessageTypeDecline),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip.AsSlice())), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(testGateway.AsSlice()))))
	if ask(t, s, decline) != nil {
		t.Error("DECLINE answered")
	}
	if len(s.Leases()) != 0 {
		t.Errorf("the declined lease is still listed: %v", s.Leases())
	}
	for _, hw := range []net.HardwareAddr{mac(1), mac(2)} {
		if offer := ask(t, s, discover(t, hw)); offer != nil {
			t.Errorf("declined address offered to %s", hw)
		}
	}
	clock.add(declineHold + time.Second)
	if got := yiaddr(lease(t, s, mac(2), "")); got != ip {
		t.Errorf("after the hold got %v, want %v", got, ip)
	}
}

// A new server on the same lease file knows every lease: renewals and
// rediscoveries keep their addresses, and nobody else gets them.
func TestRestartKeepsLeases(t *testing.T) {
	file := filepath.Join(t.TempDir(), "leases.json")
	clock := &fakeClock{t: time.Now()}
	s := newTestServer(t, file, clock, testPool())
	var ips []netip.Addr
	for i := 1; i <= 5; i++ {
		ips = append(ips, yiaddr(lease(t, s, mac(i), fmt.Sprint("host", i))))
	}
	before := s.Leases()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s2 := newTestServer(t, file, clock, testPool())
	if got := s2.Leases(); fmt.Sprint(got) != fmt.Sprint(before) {
		t.Fatalf("after restart Leases() = %v, want %v", got, before)
	}
	if ack := ask(t, s2, initReboot(t, mac(1), ips[0])); ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck {
		t.Errorf("after restart the renewal of %v answered %v, want an ACK", ips[0], ack)
	}
	if offer := ask(t, s2, discover(t, mac(2))); offer == nil || yiaddr(offer) != ips[1] {
		t.Errorf("after restart a DISCOVER from a known client was offered %v, want %v", offer, ips[1])
	}
	if nak := ask(t, s2, initReboot(t, mac(9), ips[2])); nak == nil || nak.MessageType() != dhcpv4.MessageTypeNak {
		t.Errorf("after restart another client's request for %v answered %v, want a NAK", ips[2], nak)
	}
	for i := 10; i < 16; i++ {
		got := yiaddr(lease(t, s2, mac(i), ""))
		for _, ip := range ips {
			if got == ip {
				t.Errorf("after restart a new client got %v, leased before", got)
			}
		}
	}
	if leases, err := ReadLeases(file); err != nil || len(leases) != 11 {
		t.Errorf("ReadLeases: %d leases (%v), want 11", len(leases), err)
	}
}

// The lease is in the file before its ACK leaves: when the file cannot be
// written, no ACK is sent.
func TestNoAckWithoutLeaseFile(t *testing.T) {
	dir := t.TempDir()
	clock := &fakeClock{t: time.Now()}
	if err := os.Mkdir(filepath.Join(dir, "state"), 0o755); err != nil {
		t.Fatal(err)
	}
	s := newTestServer(t, filepath.Join(dir, "state", "leases.json"), clock, testPool())
	offer := ask(t, s, discover(t, mac(1)))
	if err := os.RemoveAll(filepath.Join(dir, "state")); err != nil {
		t.Fatal(err)
	}
	if resp := ask(t, s, msg(dhcpv4.NewRequestFromOffer(offer))); resp != nil {
		t.Fatalf("with no lease file the REQUEST was answered %v", resp)
	}
	if err := os.Mkdir(filepath.Join(dir, "state"), 0o755); err != nil {
		t.Fatal(err)
	}
	if resp := ask(t, s, msg(dhcpv4.NewRequestFromOffer(offer))); resp == nil || resp.MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("the retried REQUEST answered %v, want an ACK", resp)
	}
	if l, err := ReadLeases(filepath.Join(dir, "state", "leases.json")); err != nil || len(l) != 1 {
		t.Errorf("lease file: %v (%v), want the lease", l, err)
	}
}

// Set keeps the leases of the zones that stay, drops those the new pool
// no longer allows, and those of zones no longer served; each zone answers
// on its own interface.
func TestSetKeepsLeases(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	home, iot := testPool(), testPool()
	iot.Zone, iot.Interface = "iot", "test1"
	iot.Prefix, iot.Gateway = netip.MustParsePrefix("10.0.1.0/24"), netip.MustParseAddr("10.0.1.1")
	iot.Start, iot.End = netip.MustParseAddr("10.0.1.10"), netip.MustParseAddr("10.0.1.20")
	s := newTestServer(t, filepath.Join(t.TempDir(), "leases.json"), clock, home, iot)
	a := yiaddr(lease(t, s, mac(1), "a"))
	b := yiaddr(lease(t, s, mac(2), "b"))
	offer := askOn(t, s, "test1", discover(t, mac(3)))
	if offer == nil || !iot.inRange(yiaddr(offer)) {
		t.Fatalf("the iot bridge offered %v, want an iot address", offer)
	}
	askOn(t, s, "test1", msg(dhcpv4.NewRequestFromOffer(offer)))

	home.DNS = home.DNS[:1]
	if !a.Less(b) {
		t.Fatalf("addresses given out of order: %v then %v", a, b)
	}
	home.End = a // b falls outside the new range
	if err := s.Set([]Pool{home, iot}); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, l := range s.Leases() {
		got[l.MAC] = true
	}
	if !got[mac(1).String()] || got[mac(2).String()] || !got[mac(3).String()] {
		t.Errorf("after Set the leases are %v: want a's and the iot client's, not b's (outside the new range)", s.Leases())
	}
	if ack := lease(t, s, mac(1), "a"); len(ack.DNS()) != 1 {
		t.Errorf("after Set the options still name %v DNS servers", ack.DNS())
	}

	if err := s.Set([]Pool{home}); err != nil {
		t.Fatal(err)
	}
	for _, l := range s.Leases() {
		if l.Zone == "iot" {
			t.Errorf("zone no longer served still has leases: %+v", l)
		}
	}
	if resp := askOn(t, s, "test1", discover(t, mac(4))); resp != nil {
		t.Error("an interface no longer served answered")
	}
}

// OnChange reports every grant and release, from one goroutine.
func TestOnChange(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	s := newTestServer(t, filepath.Join(t.TempDir(), "leases.json"), clock, testPool())
	got := make(chan []Lease, 100)
	s.OnChange(func(l []Lease) { got <- l })
	wait := func(want int) {
		t.Helper()
		deadline := time.After(5 * time.Second)
		for {
			select {
			case l := <-got:
				if len(l) == want {
					return
				}
			case <-deadline:
				t.Fatalf("OnChange never reported %d leases", want)
			}
		}
	}
	ip := yiaddr(lease(t, s, mac(1), "a"))
	wait(1)
	ask(t, s, msg(dhcpv4.New(dhcpv4.WithHwAddr(mac(1)), dhcpv4.WithMessageType(dhcpv4.MessageTypeRelease), dhcpv4.WithClientIP(ip.AsSlice()))))
	wait(0)
}

// A lease's expiry is reported too, so the names of clients gone stop
// resolving (this one uses the real clock: the expiry timer is real).
func TestOnChangeAtExpiry(t *testing.T) {
	s, err := New(filepath.Join(t.TempDir(), "leases.json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.listen = func(string) (net.PacketConn, error) { return net.ListenPacket("udp4", "127.0.0.1:0") }
	p := testPool()
	p.LeaseTime = 300 * time.Millisecond
	if err := s.Set([]Pool{p}); err != nil {
		t.Fatal(err)
	}
	got := make(chan int, 100)
	s.OnChange(func(l []Lease) { got <- len(l) })
	lease(t, s, mac(1), "a")
	seen := false
	deadline := time.After(5 * time.Second)
	for {
		select {
		case n := <-got:
			if n == 1 {
				seen = true
			}
			if n == 0 && seen {
				return
			}
		case <-deadline:
			t.Fatal("the lease's expiry was never reported")
		}
	}
}

// Random clients doing random things never get an address another client
// holds, a reserved address not theirs, the gateway, or one outside the
// range; a reserved client always gets its own.
func TestRandomNoDuplicates(t *testing.T) {
	seed := time.Now().UnixNano()
	if e := os.Getenv("DHCP_TEST_SEED"); e != "" { // replay a failure
		if _, err := fmt.Sscan(e, &seed); err != nil {
			t.Fatalf("DHCP_TEST_SEED: %v", err)
		}
	}
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	clock := &fakeClock{t: time.Now()}
	p := testPool()
	p.Start, p.End = netip.MustParseAddr("10.0.0.10"), netip.MustParseAddr("10.0.0.29")
	p.LeaseTime = time.Minute
	p.Reservations = []Reservation{{MAC: mac(0), IP: netip.MustParseAddr("10.0.0.15")}, {MAC: mac(1), IP: netip.MustParseAddr("10.0.0.200")}}
	file := filepath.Join(t.TempDir(), "leases.json")
	s := newTestServer(t, file, clock, p)

	type held struct {
		mac     string
		expires time.Time
	}
	acked := map[netip.Addr]held{} // the test's own record of every ACK
	known := map[string]netip.Addr{}
	for step := range 3000 {
		i := rng.IntN(40)
		hw := mac(i)
		var req *dhcpv4.DHCPv4
		switch op := rng.IntN(10); {
		case op < 4:
			offer := ask(t, s, discover(t, hw))
			if offer == nil {
				continue
			}
			req = msg(dhcpv4.NewRequestFromOffer(offer))
		case op < 6:
			ip := netip.AddrFrom4([4]byte{10, 0, 0, byte(rng.IntN(35))})
			if a, ok := known[hw.String()]; ok && rng.IntN(2) == 0 {
				ip = a
			}
			req = initReboot(t, hw, ip)
		case op < 7:
			if a, ok := known[hw.String()]; ok {
				ask(t, s, msg(dhcpv4.New(dhcpv4.WithHwAddr(hw), dhcpv4.WithMessageType(dhcpv4.MessageTypeRelease), dhcpv4.WithClientIP(a.AsSlice()))))
				if h := acked[a]; h.mac == hw.String() {
					delete(acked, a)
				}
			}
			continue
		case op < 8:
			clock.add(time.Duration(rng.IntN(20)) * time.Second)
			continue
		case op < 9:
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = newTestServer(t, file, clock, p)
			continue
		default:
			ask(t, s, discover(t, hw)) // an offer never taken up
			continue
		}
		resp := ask(t, s, req)
		if os.Getenv("DHCP_TEST_TRACE") != "" {
			t.Logf("step %d %s %v -> %v", step, hw, req, resp)
		}
		if resp == nil || resp.MessageType() != dhcpv4.MessageTypeAck {
			continue
		}
		ip, now := yiaddr(resp), clock.now()
		if h, ok := acked[ip]; ok && h.mac != hw.String() && h.expires.After(now) {
			t.Fatalf("step %d: %v acknowledged to %s while %s holds it until %v", step, ip, hw, h.mac, h.expires)
		}
		switch {
		case i == 0 && ip != p.Reservations[0].IP, i == 1 && ip != p.Reservations[1].IP:
			t.Fatalf("step %d: reserved client %s got %v", step, hw, ip)
		case i > 1 && (!p.inRange(ip) || ip == p.Reservations[0].IP):
			t.Fatalf("step %d: client %s got %v: outside the range or reserved", step, hw, ip)
		}
		if prev, ok := known[hw.String()]; ok && acked[prev].mac == hw.String() {
			delete(acked, prev) // a client holds one address: moving frees the old one
		}
		acked[ip] = held{hw.String(), now.Add(p.LeaseTime)}
		known[hw.String()] = ip
	}
}

// Bad pools are refused, naming the zone and what is wrong, and Set then
// changes nothing.
func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		change func(*Pool)
		want   string
	}{
		{func(p *Pool) { p.Start = netip.MustParseAddr("10.0.1.10") }, "range start 10.0.1.10 is outside the zone's CIDR 10.0.0.0/24"},
		{func(p *Pool) { p.End = netip.MustParseAddr("10.0.0.255") }, "range end 10.0.0.255 is the network or broadcast address"},
		{func(p *Pool) { p.End = netip.MustParseAddr("10.0.0.5") }, "range end 10.0.0.5 comes before its start 10.0.0.10"},
		{func(p *Pool) { p.Gateway = netip.MustParseAddr("10.0.0.12") }, "gateway 10.0.0.12 is inside the range"},
		{func(p *Pool) { p.Gateway = netip.Addr{} }, "gateway invalid IP is not an IPv4 address"},
		{func(p *Pool) { p.Interface = "" }, "no interface"},
		{func(p *Pool) { p.Prefix = netip.MustParsePrefix("fd00::/64") }, "is not an IPv4 CIDR"},
		{func(p *Pool) { p.DNS = []netip.Addr{netip.MustParseAddr("fd00::1")} }, "DNS server fd00::1 is not an IPv4 address"},
		{func(p *Pool) {
			p.Reservations = []Reservation{{MAC: mac(1), IP: netip.MustParseAddr("192.168.0.5")}}
		}, "reservation for 02:00:00:00:00:01: reserved address 192.168.0.5 is outside the zone's CIDR"},
		{func(p *Pool) { p.Reservations = []Reservation{{MAC: mac(1), IP: testGateway}} }, "is the gateway's address"},
		{func(p *Pool) {
			p.Reservations = []Reservation{{MAC: mac(1), IP: netip.MustParseAddr("10.0.0.50")}, {MAC: mac(1), IP: netip.MustParseAddr("10.0.0.51")}}
		}, "MAC 02:00:00:00:00:01 is reserved twice"},
		{func(p *Pool) {
			p.Reservations = []Reservation{{MAC: mac(1), IP: netip.MustParseAddr("10.0.0.50")}, {MAC: mac(2), IP: netip.MustParseAddr("10.0.0.50")}}
		}, "address 10.0.0.50 is reserved twice"},
	} {
		p := testPool()
		tc.change(&p)
		err := p.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), `"home"`) {
			t.Errorf("got %v, want an error naming zone \"home\" and containing %q", err, tc.want)
		}
	}
	if err := testPool().Validate(); err != nil {
		t.Errorf("a good pool refused: %v", err)
	}
	twice := testPool()
	twice.Zone = "other"
	if err := validatePools([]Pool{testPool(), twice}); err == nil || !strings.Contains(err.Error(), "interface test0 already serves zone \"home\"") {
		t.Errorf("two zones on one interface: %v", err)
	}

	clock := &fakeClock{t: time.Now()}
	s := newTestServer(t, filepath.Join(t.TempDir(), "leases.json"), clock, testPool())
	lease(t, s, mac(1), "")
	bad := testPool()
	bad.Gateway = bad.Start
	if err := s.Set([]Pool{bad}); err == nil {
		t.Fatal("Set took a bad pool")
	}
	if len(s.Leases()) != 1 || ask(t, s, discover(t, mac(2))) == nil {
		t.Error("a refused Set changed the server")
	}
}

// A missing lease file is no leases; a damaged one is an error naming it.
func TestReadLeases(t *testing.T) {
	dir := t.TempDir()
	if l, err := ReadLeases(filepath.Join(dir, "none.json")); err != nil || l != nil {
		t.Errorf("missing file: %v, %v; want none, no error", l, err)
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadLeases(bad); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("damaged file: %v, want an error naming it", err)
	}
	if _, err := New(bad, nil); err == nil {
		t.Error("New took a damaged lease file")
	}
}

// server4 serves the handler over a real socket: a DISCOVER over loopback
// is answered with an OFFER (no root: port and interface are the test's).
func TestServesSocket(t *testing.T) {
	s, err := New(filepath.Join(t.TempDir(), "leases.json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	serverAddr := make(chan net.Addr, 1)
	s.listen = func(string) (net.PacketConn, error) {
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err == nil {
			serverAddr <- c.LocalAddr()
		}
		return c, err
	}
	if err := s.Set([]Pool{testPool()}); err != nil {
		t.Fatal(err)
	}
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := discover(t, mac(1))
	if _, err := c.WriteTo(req.ToBytes(), <-serverAddr); err != nil {
		t.Fatal(err)
	}
	if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	n, _, err := c.ReadFrom(buf)
	if err != nil {
		t.Fatalf("no answer over the socket: %v", err)
	}
	resp, err := dhcpv4.FromBytes(buf[:n])
	if err != nil || resp.MessageType() != dhcpv4.MessageTypeOffer || resp.TransactionID != req.TransactionID {
		t.Fatalf("answer %v (%v), want the OFFER for %v", resp, err, req.TransactionID)
	}
}
