// Command dnsbench serves a compiled example cloud's names with Holdfast's
// DNS server (internal/dns) for bench/dns.sh, and writes the same names as
// an unbound configuration and a dnsperf query file, so that unbound and
// Holdfast answer the same zones to the same load.
//
// It prints "unbound ADDR" when it wrote unbound's configuration, and
// "holdfast ADDR" once its own server answers every name; it serves until
// interrupted (or -for ends). With -check ADDR it serves nothing, and
// checks that the server at ADDR (unbound) answers every name the same.
//
// Usage:
//
//	go run ./bench/dnsbench -spec examples/arvandor -listen 127.0.0.1:0 \
//	    [-unbound DIR [-unbound-port N] [-unbound-threads N]] [-queries FILE]
//	go run ./bench/dnsbench -spec examples/arvandor -check 127.0.0.1:N
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/miekg/dns"

	"github.com/holdfast/holdfast/internal/compile"
	hdns "github.com/holdfast/holdfast/internal/dns"
	_ "github.com/holdfast/holdfast/internal/engine/engines" // the examples' engines
)

// config is what the flags say.
type config struct {
	spec, listen   string
	unboundDir     string
	unboundPort    int
	unboundThreads int
	queries        string
	nx             int
	limit          time.Duration
	check          string
	wait           time.Duration
}

func main() {
	var c config
	flag.StringVar(&c.spec, "spec", "examples/arvandor", "the cloud whose names are served")
	flag.StringVar(&c.listen, "listen", "127.0.0.1:0", "where Holdfast's server answers over UDP (TCP: on a port of its own, unmeasured)")
	flag.StringVar(&c.unboundDir, "unbound", "", "write unbound.conf for the same names in `DIR` (unbound runs in it)")
	flag.IntVar(&c.unboundPort, "unbound-port", 0, "the loopback port unbound is to answer on (0: a free one)")
	flag.IntVar(&c.unboundThreads, "unbound-threads", 1, "unbound's num-threads")
	flag.StringVar(&c.queries, "queries", "", "write a dnsperf query file to `FILE`")
	flag.IntVar(&c.nx, "nxdomain", 10, "the percentage of queries for names that do not exist")
	flag.DurationVar(&c.limit, "for", 0, "stop serving after this long (0: until interrupted)")
	flag.StringVar(&c.check, "check", "", "serve nothing: check that the server at `ADDR` answers every name as Holdfast does, and exit")
	flag.DurationVar(&c.wait, "wait", 10*time.Second, "with -check, how long ADDR may take to start answering")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the serving to `FILE`")
	flag.Parse()

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "dnsbench:", err)
			os.Exit(1)
		}
		defer func() {
			pprof.StopCPUProfile()
			f.Close()
		}()
	}

	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "dnsbench:", err)
		os.Exit(1) //nolint:gocritic // the profile of a failed run is not wanted
	}
}

func run(c config) error {
	_, st, _, diags := compile.File(c.spec, compile.Allocations{})
	if diags.HasErrors() {
		return diags.Err()
	}
	srv, z, err := holdfastServer(st)
	if err != nil {
		return err
	}
	if c.check != "" {
		if err := waitAnswering(c.check, z, c.wait); err != nil {
			return err
		}
		return answers(c.check, z)
	}
	if c.unboundDir != "" {
		if c.unboundPort == 0 {
			if c.unboundPort, err = freePort(); err != nil {
				return err
			}
		}
		if err := writeFile(filepath.Join(c.unboundDir, "unbound.conf"), func(w io.Writer) error {
			return writeUnbound(w, z, c.unboundDir, c.unboundPort, c.unboundThreads)
		}); err != nil {
			return err
		}
		fmt.Printf("unbound 127.0.0.1:%d\n", c.unboundPort)
	}
	if c.queries != "" {
		if err := writeFile(c.queries, func(w io.Writer) error { return writeQueries(w, z, c.nx) }); err != nil {
			return err
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if c.limit > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.limit)
		defer cancel()
	}
	pc, err := net.ListenPacket("udp", c.listen)
	if err != nil {
		return err
	}
	host, _, _ := net.SplitHostPort(pc.LocalAddr().String())
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		pc.Close()
		return err
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, pc, ln) }()
	if err := answers(pc.LocalAddr().String(), z); err != nil {
		return err
	}
	fmt.Println("holdfast", pc.LocalAddr())
	return <-done
}

// freePort is a loopback port free for both UDP and TCP now.
func freePort() (int, error) {
	for range 10 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		pc.Close()
		if err == nil {
			ln.Close()
			return port, nil
		}
	}
	return 0, fmt.Errorf("no loopback port free for both UDP and TCP")
}

// waitAnswering waits until the server at addr answers, for at most d.
func waitAnswering(addr string, z zones, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		_, err := ask(addr, z.apexes[0], dns.TypeSOA, 200*time.Millisecond)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not answering after %s: %w", d, err)
		}
	}
}

// zones are the names a server is to answer for: the apexes it is
// authoritative for, each with its SOA and NS, and every record.
type zones struct {
	apexes []string
	soa    map[string]dns.RR
	ns     map[string]dns.RR
	rrs    []dns.RR // sorted by name, then type
}

// holdfastServer is internal/dns's server for st, and what it serves as
// zones. All this program knows of internal/dns's API is here.
func holdfastServer(st *compile.State) (*hdns.Server, zones, error) {
	r, err := hdns.Build(st)
	if err != nil {
		return nil, zones{}, err
	}
	s := hdns.NewServer(r, nil, nil)
	z := zones{apexes: slices.Clone(r.Zones), soa: map[string]dns.RR{}, ns: map[string]dns.RR{}}
	for _, rrs := range r.Names {
		z.rrs = append(z.rrs, rrs...)
	}
	slices.SortFunc(z.rrs, func(a, b dns.RR) int {
		if c := strings.Compare(a.Header().Name, b.Header().Name); c != 0 {
			return c
		}
		return int(a.Header().Rrtype) - int(b.Header().Rrtype)
	})
	// The SOA and NS Holdfast serves are asked of it, so that unbound is
	// given exactly the same.
	addr, stop, err := serveBriefly(s)
	if err != nil {
		return nil, zones{}, err
	}
	defer stop()
	for _, apex := range z.apexes {
		for _, t := range []uint16{dns.TypeSOA, dns.TypeNS} {
			m, err := ask(addr, apex, t, 2*time.Second)
			if err != nil {
				return nil, zones{}, err
			}
			if len(m.Answer) != 1 {
				return nil, zones{}, fmt.Errorf("%s %s: %d answers, want 1", apex, dns.TypeToString[t], len(m.Answer))
			}
			if t == dns.TypeSOA {
				z.soa[apex] = m.Answer[0]
			} else {
				z.ns[apex] = m.Answer[0]
			}
		}
	}
	return s, z, nil
}

// serveBriefly runs s on a loopback UDP port until stop is called.
func serveBriefly(s *hdns.Server) (string, func(), error) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &dns.Server{PacketConn: pc, Handler: s}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go func() { _ = srv.ActivateAndServe() }()
	<-started
	return pc.LocalAddr().String(), func() { _ = srv.Shutdown() }, nil
}

func ask(addr, name string, qtype uint16, timeout time.Duration) (*dns.Msg, error) {
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	m, _, err := (&dns.Client{Timeout: timeout}).Exchange(q, addr)
	if err != nil {
		return nil, fmt.Errorf("%s %s at %s: %w", name, dns.TypeToString[qtype], addr, err)
	}
	return m, nil
}

// answers checks that the server at addr answers every record of z, and
// NXDOMAIN for a missing name in every zone, so that the benchmark never
// measures a server answering something else.
func answers(addr string, z zones) error {
	for _, rr := range z.rrs {
		h := rr.Header()
		m, err := ask(addr, h.Name, h.Rrtype, 2*time.Second)
		if err != nil {
			return err
		}
		if m.Rcode != dns.RcodeSuccess || !slices.ContainsFunc(m.Answer, func(a dns.RR) bool { return dns.IsDuplicate(a, rr) }) {
			return fmt.Errorf("%s %s at %s: %s %v, want %v", h.Name, dns.TypeToString[h.Rrtype], addr, dns.RcodeToString[m.Rcode], m.Answer, rr)
		}
	}
	for i, apex := range z.apexes {
		name := missing(i, apex)
		m, err := ask(addr, name, dns.TypeA, 2*time.Second)
		if err != nil {
			return err
		}
		if m.Rcode != dns.RcodeNameError {
			return fmt.Errorf("%s A at %s: %s %v, want NXDOMAIN", name, addr, dns.RcodeToString[m.Rcode], m.Answer)
		}
	}
	return nil
}

// missing is the i-th name in apex that does not exist.
func missing(i int, apex string) string { return fmt.Sprintf("missing-%d.%s", i, apex) }

// writeUnbound writes an unbound configuration answering z on loopback
// port, from local-zone/local-data: unbound's way of serving names of its
// own, answered before its cache and resolver. It runs in the foreground
// in dir, alone: no chroot, no user change, no remote control, no
// validator (the zones are unsigned), logging to stderr.
func writeUnbound(w io.Writer, z zones, dir string, port, threads int) error {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	p("# Written by bench/dnsbench: the names Holdfast's server answers, for unbound.")
	p("server:")
	p("  interface: 127.0.0.1@%d", port)
	p("  port: %d", port)
	p("  do-ip6: no")
	p("  num-threads: %d", threads)
	p("  so-reuseport: yes")
	p("  chroot: \"\"")
	p("  username: \"\"")
	p("  directory: %q", dir)
	p("  pidfile: %q", filepath.Join(dir, "unbound.pid"))
	p("  use-syslog: no")
	p("  logfile: \"\"")
	p("  verbosity: 0")
	p("  do-daemonize: no")
	p("  module-config: \"iterator\"")
	p("  access-control: 127.0.0.0/8 allow")
	for _, apex := range z.apexes {
		p("  local-zone: %q static", apex)
		p("  local-data: %q", rrText(z.soa[apex]))
		p("  local-data: %q", rrText(z.ns[apex]))
	}
	for _, rr := range z.rrs {
		p("  local-data: %q", rrText(rr))
	}
	p("remote-control:")
	p("  control-enable: no")
	_, err := io.WriteString(w, b.String())
	return err
}

// rrText is rr in zone-file form on one line, with spaces (unbound's
// local-data).
func rrText(rr dns.RR) string { return strings.Join(strings.Fields(rr.String()), " ") }

// writeQueries writes dnsperf's input: every record's name and type (A,
// PTR), in turn, and names that do not exist in the cloud's zones for nx
// percent of the lines.
func writeQueries(w io.Writer, z zones, nx int) error {
	if len(z.rrs) == 0 {
		return fmt.Errorf("no records to ask for")
	}
	// Enough lines that nx percent is a whole number of them.
	lines := max(100, len(z.rrs)*100/max(1, 100-nx))
	nxs := 0
	for i := range lines {
		if nxs*100 < nx*(i+1) {
			apex := z.apexes[nxs%len(z.apexes)]
			if _, err := fmt.Fprintf(w, "%s A\n", missing(nxs, apex)); err != nil {
				return err
			}
			nxs++
			continue
		}
		h := z.rrs[(i-nxs)%len(z.rrs)].Header()
		if _, err := fmt.Fprintf(w, "%s %s\n", h.Name, dns.TypeToString[h.Rrtype]); err != nil {
			return err
		}
	}
	return nil
}

func writeFile(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	return f.Close()
}
