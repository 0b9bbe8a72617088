package agent

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync"

	hdns "github.com/holdfast/holdfast/internal/dns"
	"github.com/holdfast/holdfast/internal/guest"
)

// dnsService is the DNS server the agent runs.
type dnsService struct {
	srv       *hdns.Server
	listen    []string
	upstreams []string
	names     int
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	mu        sync.Mutex
	err       error // why a listener stopped
}

// applyDNS brings the DNS server to c: its records are swapped in place
// (no query is dropped, the zones' serials move on); a change of where it
// listens or forwards starts it anew.
func (a *Agent) applyDNS(ctx context.Context, c *guest.DNSConfig) error {
	if c == nil {
		a.stopDNS()
		return nil
	}
	t := a.dnsTable(c)
	r, err := t.Records()
	if err != nil {
		return err
	}
	if d := a.dns; d != nil && slices.Equal(d.listen, c.Listen) && slices.Equal(d.upstreams, c.Upstreams) && d.failed() == nil {
		d.srv.Set(r)
		d.names = len(t.Hosts)
		return nil
	}
	a.stopDNS()
	if len(c.Listen) == 0 {
		return fmt.Errorf("no address to listen on")
	}
	srv := hdns.NewServer(r, c.Upstreams, a.log.With("service", "dns"))
	type pair struct {
		pc net.PacketConn
		ln net.Listener
	}
	var ls []pair
	closeAll := func() {
		for _, p := range ls {
			p.pc.Close()
			p.ln.Close()
		}
	}
	for _, addr := range c.Listen {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			closeAll()
			return err
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			pc.Close()
			closeAll()
			return err
		}
		ls = append(ls, pair{pc, ln})
	}
	sctx, cancel := context.WithCancel(ctx)
	d := &dnsService{srv: srv, listen: slices.Clone(c.Listen), upstreams: slices.Clone(c.Upstreams), names: len(t.Hosts), cancel: cancel}
	for _, p := range ls {
		d.wg.Go(func() {
			if err := srv.Serve(sctx, p.pc, p.ln); err != nil {
				d.mu.Lock()
				d.err = err
				d.mu.Unlock()
			}
		})
	}
	a.dns = d
	a.log.Info("serving DNS", "listen", c.Listen, "names", len(t.Hosts))
	return nil
}

// dnsTable is the table the agent serves: the configuration's.
func (a *Agent) dnsTable(c *guest.DNSConfig) hdns.Table {
	return c.Table
}

func (d *dnsService) failed() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.err
}

func (a *Agent) stopDNS() {
	if a.dns == nil {
		return
	}
	a.dns.cancel()
	a.dns.wg.Wait()
	a.dns = nil
}

func (a *Agent) dnsHealth() guest.Service {
	if a.dns == nil {
		return guest.Service{Detail: "the DNS server is not running"}
	}
	if err := a.dns.failed(); err != nil {
		return guest.Service{Detail: "the DNS server stopped: " + err.Error()}
	}
	return guest.Service{OK: true, Detail: fmt.Sprintf("%d names, serial %d", a.dns.names, a.dns.srv.Serial())}
}
