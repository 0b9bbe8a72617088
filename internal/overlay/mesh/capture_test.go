package mesh_test

import (
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/internal/nsthread"
)

// capture records every frame crossing one interface of a namespace,
// through an AF_PACKET socket: what anyone on the underlay could see.
type capture struct {
	fd     int
	mu     sync.Mutex
	frames [][]byte
	done   chan struct{}
	stop   chan struct{}
}

func startCapture(t testing.TB, nsPath, ifname string) *capture {
	t.Helper()
	c := &capture{fd: -1, done: make(chan struct{}), stop: make(chan struct{})}
	err := nsthread.In(nsPath, func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		proto := htons(unix.ETH_P_ALL)
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(proto))
		if err != nil {
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: ifi.Index}); err != nil {
			_ = unix.Close(fd)
			return err
		}
		c.fd = fd
		// Reads wake up now and then to notice a stop.
		return unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 100_000})
	})
	if err != nil {
		if c.fd >= 0 {
			_ = unix.Close(c.fd)
		}
		t.Fatalf("capture on %s: %v", ifname, err)
	}
	go c.run()
	t.Cleanup(c.close)
	return c
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (c *capture) run() {
	defer close(c.done)
	buf := make([]byte, 65536)
	for {
		select {
		case <-c.stop:
			return
		default:
		}
		n, _, err := unix.Recvfrom(c.fd, buf, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return
		}
		c.mu.Lock()
		c.frames = append(c.frames, append([]byte(nil), buf[:n]...))
		c.mu.Unlock()
	}
}

func (c *capture) close() {
	select {
	case <-c.stop:
		return
	default:
	}
	close(c.stop)
	<-c.done
	_ = unix.Close(c.fd)
}

// packet is an IPv4 frame's transport: protocol, ports and payload.
type packet struct {
	proto            byte // unix.IPPROTO_UDP, unix.IPPROTO_TCP
	srcPort, dstPort uint16
	payload          []byte
	frame            []byte
}

// packets returns the IPv4 UDP and TCP packets captured so far.
func (c *capture) packets() []packet {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ps []packet
	for _, f := range c.frames {
		if len(f) < 14+20 || binary.BigEndian.Uint16(f[12:14]) != unix.ETH_P_IP {
			continue
		}
		ipHdr := f[14:]
		ihl := int(ipHdr[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(ipHdr[2:4]))
		if ihl < 20 || total > len(ipHdr) || total < ihl {
			continue
		}
		l4 := ipHdr[ihl:total]
		p := packet{proto: ipHdr[9], frame: f}
		switch p.proto {
		case unix.IPPROTO_UDP:
			if len(l4) < 8 {
				continue
			}
			p.payload = l4[8:]
		case unix.IPPROTO_TCP:
			if len(l4) < 20 || int(l4[12]>>4)*4 > len(l4) {
				continue
			}
			p.payload = l4[int(l4[12]>>4)*4:]
		default:
			continue
		}
		p.srcPort, p.dstPort = binary.BigEndian.Uint16(l4[0:2]), binary.BigEndian.Uint16(l4[2:4])
		ps = append(ps, p)
	}
	return ps
}

// waitFor polls until a captured frame contains s.
func (c *capture) waitFor(s []byte, deadline time.Duration) bool {
	end := time.Now().Add(deadline)
	for {
		for _, p := range c.packets() {
			if contains(p.frame, s) {
				return true
			}
		}
		if time.Now().After(end) {
			return false
		}
		// A short pause between polls of the capture (not a
		// synchronisation: the loop ends on the condition).
		select {
		case <-time.After(20 * time.Millisecond):
		case <-c.done:
			return false
		}
	}
}
