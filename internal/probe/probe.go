// Package probe tests reachability from inside a network namespace — a TCP
// connect, an ICMP echo — the way an instance would see it. Sockets belong
// to the namespace they are created in, so only their creation runs on a
// thread of its own moved into the namespace; the caller's never moves.
package probe

import (
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"time"

	"github.com/holdfast/holdfast/internal/nsthread"
)

// in runs f on a thread of its own inside the namespace at path.
func in(path string, f func() error) error { return nsthread.In(path, f) }

// TCP connects from the namespace at nsPath to addr; nil means the
// connection was accepted. When the server says something first, read
// returns its first line.
func TCP(nsPath string, addr netip.AddrPort, timeout time.Duration) (first string, err error) {
	err = in(nsPath, func() error {
		c, err := net.DialTimeout("tcp4", addr.String(), timeout)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(timeout))
		buf := make([]byte, 256)
		n, _ := c.Read(buf) // a server may say nothing; the connect is what counts
		first = string(buf[:n])
		return nil
	})
	return first, err
}

// Listen opens a TCP listener inside the namespace at nsPath.
func Listen(nsPath string, addr netip.AddrPort) (net.Listener, error) {
	var l net.Listener
	err := in(nsPath, func() error {
		var err error
		l, err = net.Listen("tcp4", addr.String())
		return err
	})
	return l, err
}

// ErrNoReply means an echo request got no reply in time.
var ErrNoReply = errors.New("no echo reply")

// ICMP sends one echo request from the namespace at nsPath to dst and
// waits for its reply.
func ICMP(ctx context.Context, nsPath string, dst netip.Addr, timeout time.Duration) error {
	var conn net.PacketConn
	if err := in(nsPath, func() error {
		var err error
		conn, err = net.ListenPacket("ip4:icmp", "0.0.0.0")
		return err
	}); err != nil {
		return err
	}
	defer conn.Close()
	id, seq := uint16(rand.Uint32()), uint16(rand.Uint32())
	msg := make([]byte, 16)
	msg[0] = 8 // echo request
	binary.BigEndian.PutUint16(msg[4:], id)
	binary.BigEndian.PutUint16(msg[6:], seq)
	copy(msg[8:], "holdfast")
	binary.BigEndian.PutUint16(msg[2:], checksum(msg))
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = conn.SetDeadline(deadline)
	if _, err := conn.WriteTo(msg, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
		return err
	}
	buf := make([]byte, 1500)
	for {
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return ErrNoReply
			}
			return err
		}
		// A raw socket sees every ICMP message of the namespace: only the
		// reply to this request counts.
		ip, _ := from.(*net.IPAddr)
		if n >= 8 && buf[0] == 0 && ip != nil && ip.IP.Equal(dst.AsSlice()) &&
			binary.BigEndian.Uint16(buf[4:]) == id && binary.BigEndian.Uint16(buf[6:]) == seq {
			return nil
		}
	}
}

func checksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
