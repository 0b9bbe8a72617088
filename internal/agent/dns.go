package agent

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	hdns "github.com/holdfast/holdfast/internal/dns"
	"github.com/holdfast/holdfast/internal/guest"
)

// dnsService is the DNS server the agent runs.
type dnsService struct {
	srv       *hdns.Server
	base      hdns.Table // the configuration's
	domain    string
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
	a.dnsMu.Lock()
	defer a.dnsMu.Unlock()
	if c == nil {
		a.stopDNSLocked()
		return nil
	}
	if d := a.dns; d != nil && slices.Equal(d.listen, c.Listen) && slices.Equal(d.upstreams, c.Upstreams) && d.failed() == nil {
		d.base, d.domain = c.Table, c.Domain
		return a.refreshDNSLocked()
	}
	a.stopDNSLocked()
	t := a.dnsTable(c.Table, c.Domain)
	r, err := t.Records()
	if err != nil {
		return err
	}
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
	// IP_FREEBIND: an address not there yet (the overlay's, until Nebula
	// has its interface up) is bound all the same, and answered on as soon
	// as it appears.
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_FREEBIND, 1)
		}); err != nil {
			return err
		}
		return serr
	}}
	for _, addr := range c.Listen {
		pc, err := lc.ListenPacket(ctx, "udp", addr)
		if err != nil {
			closeAll()
			return err
		}
		ln, err := lc.Listen(ctx, "tcp", addr)
		if err != nil {
			pc.Close()
			closeAll()
			return err
		}
		ls = append(ls, pair{pc, ln})
	}
	sctx, cancel := context.WithCancel(ctx)
	d := &dnsService{srv: srv, base: c.Table, domain: c.Domain, listen: slices.Clone(c.Listen), upstreams: slices.Clone(c.Upstreams), names: len(t.Hosts), cancel: cancel}
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

// dnsTable is the table the agent serves: the configuration's, and the
// names of the DHCP clients it serves under domain, where the cloud does
// not use the name already.
func (a *Agent) dnsTable(base hdns.Table, domain string) hdns.Table {
	if len(a.leaseHosts) == 0 || domain == "" {
		return base
	}
	t := base
	t.Hosts = slices.Clone(base.Hosts)
	taken := make(map[string]bool, len(base.Hosts))
	for _, h := range base.Hosts {
		taken[h.Name] = true
	}
	for _, l := range a.leaseHosts {
		name := hdns.InstanceName(l.host, l.zone, domain)
		if !taken[name] {
			taken[name] = true
			t.Hosts = append(t.Hosts, hdns.Host{Name: name, Addr: l.addr})
		}
	}
	return t
}

// refreshDNSLocked swaps the running server's records for the table now
// (a.dnsMu held).
func (a *Agent) refreshDNSLocked() error {
	d := a.dns
	t := a.dnsTable(d.base, d.domain)
	r, err := t.Records()
	if err != nil {
		return err
	}
	d.srv.Set(r)
	d.names = len(t.Hosts)
	return nil
}

func (d *dnsService) failed() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.err
}

func (a *Agent) stopDNS() {
	a.dnsMu.Lock()
	defer a.dnsMu.Unlock()
	a.stopDNSLocked()
}

func (a *Agent) stopDNSLocked() {
	if a.dns == nil {
		return
	}
	a.dns.cancel()
	a.dns.wg.Wait()
	a.dns = nil
}

func (a *Agent) dnsHealth() guest.Service {
	a.dnsMu.Lock()
	defer a.dnsMu.Unlock()
	if a.dns == nil {
		return guest.Service{Detail: "the DNS server is not running"}
	}
	if err := a.dns.failed(); err != nil {
		return guest.Service{Detail: "the DNS server stopped: " + err.Error()}
	}
	return guest.Service{OK: true, Detail: fmt.Sprintf("%d names, serial %d", a.dns.names, a.dns.srv.Serial())}
}

// dnsUp reports whether the DNS server is serving.
func (a *Agent) dnsUp() bool {
	a.dnsMu.Lock()
	defer a.dnsMu.Unlock()
	return a.dns != nil && a.dns.failed() == nil
}
