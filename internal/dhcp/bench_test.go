package dhcp_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"

	"github.com/holdfast/holdfast/internal/dhcp"
	"github.com/holdfast/holdfast/internal/nsthread"
)

// BenchmarkExchanges: 1,000 clients (distinct MACs) each run
// DISCOVER→OFFER→REQUEST→ACK against the server on the lab's bridge, 64
// at a time, through the library's own client (nclient4, raw sockets in
// the client namespace). An nclient4 client takes only replies to its own
// MAC, so each exchange has a client and socket of its own (opening them
// is inside the measured time). Each iteration is a fresh server and lease
// file; every ACK is on disk before it is sent. Reports exchanges/s, and
// fails if any address is acknowledged twice.
func BenchmarkExchanges(b *testing.B) {
	const clients, concurrency = 1000, 64
	l := newLab(b, 1)
	pool := labPool()
	pool.End = netip.MustParseAddr("10.77.15.250")
	open := rawOpener(b, nsPath(l.cliName), l.clients[0])

	var total time.Duration
	for iter := 0; iter < b.N; iter++ {
		b.StopTimer()
		s, err := dhcp.New(filepath.Join(b.TempDir(), "leases.json"), nil)
		if err != nil {
			b.Fatal(err)
		}
		if err := nsthread.In(nsPath(l.srvName), func() error { return s.Set([]dhcp.Pool{pool}) }); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()

		var next atomic.Int64
		var mu sync.Mutex
		acked := map[netip.Addr]string{}
		var errs []error
		var lat []time.Duration
		var wg sync.WaitGroup
		for range concurrency {
			wg.Go(func() {
				for k := int(next.Add(1)) - 1; k < clients; k = int(next.Add(1)) - 1 {
					mac := net.HardwareAddr{0x02, 0x78, byte(iter >> 8), byte(iter), byte(k >> 8), byte(k)}
					t0 := time.Now()
					lease, err := exchange(open, mac)
					mu.Lock()
					lat = append(lat, time.Since(t0))
					if err != nil {
						errs = append(errs, fmt.Errorf("client %s: %w", mac, err))
					} else {
						ip, _ := netip.AddrFromSlice(lease.ACK.YourIPAddr.To4())
						if other, dup := acked[ip]; dup {
							errs = append(errs, fmt.Errorf("%v acknowledged to %s and %s", ip, other, mac))
						}
						acked[ip] = mac.String()
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		total += time.Since(start)
		b.StopTimer()
		for _, err := range errs {
			b.Error(err)
		}
		if len(acked) != clients || len(s.Leases()) != clients {
			b.Fatalf("%d addresses acknowledged, %d leases; want %d each", len(acked), len(s.Leases()), clients)
		}
		s.Close()
		slices.Sort(lat)
		b.Logf("latency p50 %v p99 %v max %v", lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1])
		b.StartTimer()
	}
	b.ReportMetric(float64(clients*b.N)/total.Seconds(), "exchanges/s")
}

// exchange runs one client's DISCOVER→OFFER→REQUEST→ACK.
func exchange(open func() (net.PacketConn, error), mac net.HardwareAddr) (*nclient4.Lease, error) {
	conn, err := open()
	if err != nil {
		return nil, err
	}
	c, err := nclient4.NewWithConn(conn, mac, nclient4.WithTimeout(2*time.Second), nclient4.WithRetry(3))
	if err != nil {
		conn.Close()
		return nil, err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return c.Request(ctx, dhcpv4.WithHwAddr(mac))
}

// rawOpener opens nclient4's raw sockets on iface inside the namespace at
// path, from one thread that stays there until the benchmark ends.
func rawOpener(b *testing.B, path, iface string) func() (net.PacketConn, error) {
	type result struct {
		conn net.PacketConn
		err  error
	}
	reqs := make(chan chan result)
	ready := make(chan error, 1)
	go func() {
		err := nsthread.In(path, func() error {
			ready <- nil
			for r := range reqs {
				conn, err := nclient4.NewRawUDPConn(iface, dhcpv4.ClientPort)
				r <- result{conn, err}
			}
			return nil
		})
		if err != nil { // the namespace was not entered: nothing was sent
			ready <- err
		}
	}()
	if err := <-ready; err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { close(reqs) })
	return func() (net.PacketConn, error) {
		r := make(chan result, 1)
		reqs <- r
		res := <-r
		return res.conn, res.err
	}
}
