// Command fdbench is the Go half of bench/frontdoor.sh, which measures
// Holdfast's front door (internal/frontdoor) against Debian's HAProxy on
// loopback, and how fast the front door fails over when its local backend
// dies. It has four modes:
//
//	fdbench backend [-name NAME] [-listen 127.0.0.1:0]
//	    a tiny HTTP server answering every request with 200 and the line
//	    "fdbench backend NAME": the one backend both proxies forward to.
//	    Prints "backend ADDR" once it listens.
//	fdbench serve -backend ADDR -dir DIR [-host localhost] [-for 170s]
//	    Holdfast's front door serving one http and one https route for
//	    -host to ADDR, and, in DIR, HAProxy's configuration for the same
//	    two routes (haproxy.cfg, with haproxy.pem: the one self-signed
//	    certificate both present). Prints "haproxy http|https ADDR" when
//	    it wrote the configuration, then "frontdoor http|https ADDR" once
//	    both routes answer with the backend's line. The collector runs at
//	    frontdoor.GCPercent, as in a process serving a front door, unless
//	    GOGC is set.
//	fdbench check -url URL -want TEXT [-wait 10s]
//	    waits until URL answers 200 with a body containing TEXT (TLS not
//	    verified: the certificate is the bench's own), so that nothing is
//	    measured that does not reach the backend.
//	fdbench failover [-runs 10] [-seed N]
//	    the failover time: two backend processes (this program, as
//	    "backend"), the front door preferring one and failing over to the
//	    other, a client asking in a loop, and the preferred one killed
//	    (SIGKILL). Prints a table of the runs and summary lines.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: fdbench backend|serve|check|failover [flags]")
		os.Exit(2)
	}
	mode, args := os.Args[1], os.Args[2:]
	fs := flag.NewFlagSet("fdbench "+mode, flag.ExitOnError)
	var run func() error
	switch mode {
	case "backend":
		name := fs.String("name", "app", "the name the backend answers with")
		listen := fs.String("listen", "127.0.0.1:0", "where it listens")
		run = func() error { return serveBackend(*name, *listen) }
	case "serve":
		var c serveConfig
		fs.StringVar(&c.backend, "backend", "", "the backend's host:port (fdbench backend)")
		fs.StringVar(&c.dir, "dir", "", "write haproxy.cfg and haproxy.pem for the same routes in `DIR`")
		fs.StringVar(&c.host, "host", "localhost", "the routes' hostname (Host, and SNI for https)")
		fs.IntVar(&c.haproxyThreads, "haproxy-threads", 2, "HAProxy's nbthread")
		fs.DurationVar(&c.limit, "for", 0, "stop serving after this long (0: until interrupted)")
		fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write a CPU profile of the front door's serving to `FILE`")
		run = func() error { return serve(c) }
	case "check":
		url := fs.String("url", "", "what to ask")
		want := fs.String("want", "", "text the body must contain")
		wait := fs.Duration("wait", 10*time.Second, "how long URL may take to answer")
		run = func() error { return check(*url, *want, *wait) }
	case "failover":
		var c failoverConfig
		fs.IntVar(&c.runs, "runs", 10, "how many times the preferred backend is killed")
		fs.Int64Var(&c.seed, "seed", 0, "the seed of the kill times (0: from the clock)")
		fs.DurationVar(&c.timeout, "timeout", time.Second, "each request's timeout")
		fs.DurationVar(&c.every, "every", 5*time.Millisecond, "how often the client sends a request")
		fs.DurationVar(&c.giveUp, "give-up", 10*time.Second, "a run with no answer from the failover backend this long after the kill has failed")
		run = func() error { return failover(c) }
	default:
		fmt.Fprintf(os.Stderr, "fdbench: unknown mode %q (backend, serve, check, failover)\n", mode)
		os.Exit(2)
	}
	_ = fs.Parse(args) // ExitOnError
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "fdbench %s: %v\n", mode, err)
		os.Exit(1)
	}
}

// backendLine is what the backend named name answers: the proxies'
// answers are checked for it, and the failover client tells the two
// backends apart by it.
func backendLine(name string) string { return backendPrefix + name + "\n" }

const backendPrefix = "fdbench backend "

// serveBackend answers every request with 200 and backendLine(name), with
// keep-alive (both proxies keep connections to it open), until SIGTERM or
// SIGINT — or SIGKILL, which is what the failover measurement sends.
func serveBackend(name, listen string) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	body := []byte(backendLine(name))
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			_, _ = w.Write(body)
		}),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	fmt.Println("backend", ln.Addr())
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// benchClient asks through a proxy with the bench's own certificate, which
// it does not verify: only wrk's load is measured, and wrk verifies none.
func benchClient(timeout time.Duration) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // the bench's self-signed certificate
	tr.Proxy = nil
	return &http.Client{Transport: tr, Timeout: timeout}
}

// check waits until url answers 200 with a body containing want.
func check(url, want string, wait time.Duration) error {
	c := benchClient(time.Second)
	defer c.CloseIdleConnections()
	deadline := time.Now().Add(wait)
	for {
		err := get(c, url, want)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not answering after %s: %w", url, wait, err)
		}
		time.Sleep(50 * time.Millisecond) // polling a server that is starting
	}
}

// get asks url once, and wants 200 with want in the body.
func get(c *http.Client, url, want string) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
		return fmt.Errorf("%s: %s %q, want 200 with %q", url, resp.Status, body, want)
	}
	return nil
}

// freePort is a loopback TCP port free now: the front door is given
// host:port, not a listener, so the port is picked before it listens.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
