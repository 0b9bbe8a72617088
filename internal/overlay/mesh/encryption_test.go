package mesh_test

import (
	"bytes"
	"encoding/hex"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/internal/nsthread"
	"github.com/holdfast/holdfast/internal/testenv"
)

func contains(b, s []byte) bool { return bytes.Contains(b, s) }

// TestOverlayEncrypted captures the underlay at a member's bridge port
// while a random string crosses the overlay to that member and back: the
// capture sees Nebula's UDP packets and never the string. The same string
// sent over the plain underlay is seen, so the capture does work.
func TestOverlayEncrypted(t *testing.T) {
	testenv.NeedRoot(t, "network namespaces, tun devices and a packet socket")
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	raw := make([]byte, 24)
	for i := range raw {
		raw[i] = byte(rng.Uint32())
	}
	secret := []byte("holdfast-" + hex.EncodeToString(raw))

	m := newMesh(t,
		memberSpec{name: "a", groups: []string{"admin"}, allowFrom: []string{"any"}, lighthouse: true},
		memberSpec{name: "b", groups: []string{"infrastructure"}, allowFrom: []string{"any"}},
	)
	a, b := m.byName["a"], m.byName["b"]
	capt := startCapture(t, m.nsPath(m.underlay), b.port)

	// Over the overlay (the first tries may fall in the handshake).
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := m.echo(a, b, secret, time.Second)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the overlay never carried the string: %v", err)
		}
	}

	// Over the plain underlay: a listener in b's namespace, on its
	// underlay address.
	const plainPort = 7100
	var ln net.Listener
	if err := nsthread.In(m.nsPath(b.ns), func() error {
		var err error
		ln, err = net.Listen("tcp", netip.AddrPortFrom(b.underlay, plainPort).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	go serveEcho(ln)
	c, err := m.dial(a, netip.AddrPortFrom(b.underlay, plainPort), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	if err := roundTrip(c, secret, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	// The plain exchange came after the overlay one: once the capture has
	// it, it has everything before it.
	if !capt.waitFor(secret, 5*time.Second) {
		t.Fatal("the capture never saw the string sent in the clear: it captures nothing")
	}

	nebulaPackets, bigEnough := 0, 0
	for _, p := range capt.packets() {
		if p.proto == unix.IPPROTO_UDP && (p.dstPort == nebulaPort || p.srcPort == nebulaPort) {
			nebulaPackets++
			if len(p.payload) > len(secret) {
				bigEnough++
			}
		}
		if !contains(p.frame, secret) {
			continue
		}
		if p.proto != unix.IPPROTO_TCP || (p.dstPort != plainPort && p.srcPort != plainPort) {
			t.Errorf("the string crossed the underlay in the clear, proto %d port %d→%d", p.proto, p.srcPort, p.dstPort)
		}
	}
	if bigEnough == 0 {
		t.Fatalf("no Nebula packet (UDP %d) large enough to carry the string was captured (%d in all)", nebulaPort, nebulaPackets)
	}
	t.Logf("%d Nebula packets captured, none carrying the string", nebulaPackets)
}
