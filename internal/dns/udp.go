package dns

import (
	"net"
	"net/netip"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// boundToOne reports whether c is bound to one address (not 0.0.0.0 or
// ::), so that its answers leave from the address that was asked.
func boundToOne(c *net.UDPConn) bool {
	a, ok := c.LocalAddr().(*net.UDPAddr)
	return ok && !a.IP.IsUnspecified()
}

// udpLoop reads queries from a UDP socket and answers them in batches
// (recvmmsg, sendmmsg: one system call for all the queries waiting, and
// one for their answers), with buffers of its own; Serve runs one per
// processor on the same socket. Forwarded queries are answered from
// goroutines of their own, so that a slow upstream holds up no one else.
type udpLoop struct {
	s  *Server
	pc *net.UDPConn
}

// batchConn reads and writes several datagrams a system call; ipv4's and
// ipv6's PacketConn both are one (their Message is the same type).
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

// batch is the most datagrams a loop reads at once.
const batch = 32

func (l *udpLoop) run() error {
	var bc batchConn = ipv4.NewPacketConn(l.pc)
	if a, ok := l.pc.LocalAddr().(*net.UDPAddr); ok && a.IP.To4() == nil {
		bc = ipv6.NewPacketConn(l.pc)
	}
	in := make([]ipv4.Message, batch)
	out := make([]ipv4.Message, batch)
	bufs := make([][]byte, batch) // out's buffers, kept as they grow
	for i := range in {
		in[i].Buffers = [][]byte{make([]byte, dns.DefaultMsgSize)}
		out[i].Buffers = make([][]byte, 1)
		bufs[i] = make([]byte, 0, dns.MinMsgSize)
	}
	for {
		n, err := bc.ReadBatch(in, 0)
		if err != nil {
			return err
		}
		k := 0
		for _, msg := range in[:n] {
			from, ok := msg.Addr.(*net.UDPAddr)
			req := new(dns.Msg)
			if !ok || req.Unpack(msg.Buffers[0][:msg.N]) != nil || req.Response {
				continue // not a query: never answered, so never a reflector
			}
			ip, _ := netip.AddrFromSlice(from.IP)
			m := l.s.reply(req, ip)
			if m == nil {
				go l.forward(req, from)
				continue
			}
			b, err := m.PackBuffer(bufs[k])
			if err != nil {
				l.s.Log.Warn("dns: cannot pack an answer", "question", m.Question, "err", err)
				continue
			}
			bufs[k] = b[:0]
			out[k].Buffers[0], out[k].Addr = b, from
			k++
		}
		for sent := 0; sent < k; {
			n, err := bc.WriteBatch(out[sent:k], 0)
			if err != nil {
				// The first unsent answer failed (its client is
				// unreachable, say): the rest still go.
				l.s.Log.Debug("dns: cannot answer", "to", out[sent].Addr, "err", err)
				n = 1
			}
			sent += max(n, 1) // never the same answer forever
		}
	}
}

// forward answers req from the upstreams.
func (l *udpLoop) forward(req *dns.Msg, to *net.UDPAddr) {
	b, err := l.s.forward(req, false).Pack()
	if err != nil {
		l.s.Log.Warn("dns: cannot pack an answer", "question", req.Question, "err", err)
		return
	}
	if _, err := l.pc.WriteToUDP(b, to); err != nil {
		l.s.Log.Debug("dns: cannot answer", "to", to, "err", err)
	}
}
