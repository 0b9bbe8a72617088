package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// failoverConfig is what failover's flags say.
type failoverConfig struct {
	runs                   int
	seed                   int64
	timeout, every, giveUp time.Duration
}

// runResult is what one kill of the preferred backend showed.
type runResult struct {
	killAfter time.Duration // from the first answer by the preferred backend to the kill
	// failover is from the kill to the end of the first answer by the
	// failover backend; -1: none came before giveUp.
	failover time.Duration
	requests int            // sent in the run, before and after the kill
	failed   int            // not answered 200 by either backend within the timeout
	failures map[string]int // failed requests by sample.failure
	// window is the longest run of consecutive failed requests, from the
	// first one's start to the last one's end: how long a client saw
	// nothing but failures.
	window time.Duration
}

// failover measures, c.runs times, how long after its preferred backend is
// killed the front door answers from the failover backend, with a client
// asking all along.
func failover(c failoverConfig) error {
	if c.seed == 0 {
		c.seed = time.Now().UnixNano()
	}
	// The seed picks the kill times, which fall anywhere in the front
	// door's health-check interval; it is printed so a run can be redone.
	fmt.Printf("seed %d\n", c.seed)
	rng := rand.New(rand.NewPCG(uint64(c.seed), 0)) //nolint:gosec // timing, not secrets

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	dir, err := os.MkdirTemp("", "fdbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	self, err := os.Executable()
	if err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	listen := fmt.Sprintf("127.0.0.1:%d", port)

	var fd *frontDoor
	defer func() {
		if fd != nil {
			fd.Close()
		}
	}()
	var results []runResult
	for i := range c.runs {
		killAfter := 200*time.Millisecond + time.Duration(rng.Int64N(int64(time.Second)))
		r, err := failoverRun(ctx, c, self, dir, listen, &fd, killAfter)
		if err != nil {
			return fmt.Errorf("run %d: %w", i+1, err)
		}
		results = append(results, r)
	}
	printFailover(os.Stdout, c, results)
	return nil
}

// failoverRun is one run: two fresh backend processes, the front door's
// route set to prefer the one and fail over to the other, a client asking
// every c.every, and the preferred one killed killAfter after it first
// answers. It ends when the failover backend has answered for 300 ms, or
// c.giveUp after the kill.
func failoverRun(ctx context.Context, c failoverConfig, self, dir, listen string, fd **frontDoor, killAfter time.Duration) (runResult, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	preferred, err := startBackend(ctx, self, "preferred")
	if err != nil {
		return runResult{}, err
	}
	defer preferred.stop()
	fallback, err := startBackend(ctx, self, "failover")
	if err != nil {
		return runResult{}, err
	}
	defer fallback.stop()

	const host = "app.example"
	routes := []benchRoute{{name: "app", proto: "http", host: host, listen: listen,
		backends: []string{preferred.addr}, failover: []string{fallback.addr}}}
	if *fd == nil {
		if *fd, err = startFrontDoor(ctx, dir, io.Discard, routes); err != nil {
			return runResult{}, err
		}
	} else if err := (*fd).set(ctx, routes); err != nil {
		return runResult{}, err
	}

	client := benchClient(c.timeout)
	defer client.CloseIdleConnections()
	url := "http://" + listen + "/"
	ask := func() sample {
		s := sample{start: time.Now()}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		req.Host = host
		resp, err := client.Do(req)
		switch {
		case err != nil:
			s.failure = "error"
			if errors.Is(err, context.DeadlineExceeded) || os.IsTimeout(err) {
				s.failure = "timeout"
			}
		default:
			body, rerr := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			name, ok := strings.CutPrefix(string(body), backendPrefix)
			switch {
			case rerr != nil:
				s.failure = "error"
			case resp.StatusCode != http.StatusOK:
				s.failure = strconv.Itoa(resp.StatusCode)
			case !ok:
				s.failure = "other body"
			default:
				s.from = strings.TrimSpace(name)
			}
		}
		s.end = time.Now()
		return s
	}
	// The preferred backend answers before anything is measured: the
	// front door has its new route and counts the backend up.
	var firstPreferred time.Time
	for deadline := time.Now().Add(5 * time.Second); ; {
		if s := ask(); s.from == "preferred" {
			firstPreferred = s.end
			break
		}
		if time.Now().After(deadline) {
			return runResult{}, fmt.Errorf("the preferred backend not answering through the front door after 5 s")
		}
	}

	var (
		mu       sync.Mutex
		samples  []sample
		killAt   atomic.Int64 // unix ns; 0: not yet
		answered = make(chan time.Time, 1)
	)
	loopCtx, stopLoop := context.WithCancel(ctx)
	loopDone := make(chan struct{})
	go func() {
		defer close(loopDone)
		tick := time.NewTicker(c.every)
		defer tick.Stop()
		for {
			s := ask()
			mu.Lock()
			samples = append(samples, s)
			mu.Unlock()
			if k := killAt.Load(); k != 0 && s.from == "failover" && s.end.UnixNano() > k {
				select {
				case answered <- s.end:
				default:
				}
			}
			select {
			case <-loopCtx.Done():
				return
			case <-tick.C:
			}
		}
	}()

	// The kill falls killAfter after the first answer, wherever that is
	// in the front door's health-check cycle.
	select {
	case <-time.After(time.Until(firstPreferred.Add(killAfter))):
	case <-ctx.Done():
		stopLoop()
		<-loopDone
		return runResult{}, ctx.Err()
	}
	kill := time.Now()
	killAt.Store(kill.UnixNano())
	preferred.kill()
	r := runResult{killAfter: kill.Sub(firstPreferred), failover: -1, failures: map[string]int{}}
	select {
	case t := <-answered:
		r.failover = t.Sub(kill)
		// Watch a little longer: failures after the first failover
		// answer (flapping) count too.
		<-time.After(300 * time.Millisecond)
	case <-time.After(c.giveUp):
	case <-ctx.Done():
	}
	stopLoop()
	<-loopDone
	if err := ctx.Err(); err != nil {
		return runResult{}, err
	}

	r.requests = len(samples)
	var runStart time.Time
	for _, s := range samples {
		if s.from != "" {
			runStart = time.Time{}
			continue
		}
		r.failed++
		r.failures[s.failure]++
		if runStart.IsZero() {
			runStart = s.start
		}
		r.window = max(r.window, s.end.Sub(runStart))
	}
	return r, nil
}

// sample is one request of the client.
type sample struct {
	start, end time.Time
	from       string // the backend that answered 200; "": failed
	failure    string // how it failed: "error", "timeout", the status, "other body"
}

// backendProc is a backend running as a child process.
type backendProc struct {
	cmd  *exec.Cmd
	addr string
	once sync.Once
}

// startBackend runs this program as the backend named name, until stopped,
// killed, or ctx ends (or this process dies: it is killed then too).
func startBackend(ctx context.Context, self, name string) (*backendProc, error) {
	cmd := exec.CommandContext(ctx, self, "backend", "-name", name)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	b := &backendProc{cmd: cmd}
	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(out).ReadString('\n')
		line <- l
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case l := <-line:
		if addr, ok := strings.CutPrefix(strings.TrimSpace(l), "backend "); ok {
			b.addr = addr
			return b, nil
		}
		b.stop()
		return nil, fmt.Errorf("backend %s: said %q, want \"backend ADDR\"", name, l)
	case <-time.After(5 * time.Second):
		b.stop()
		return nil, fmt.Errorf("backend %s: not listening after 5 s", name)
	}
}

// kill is kill -9: the backend has no chance to close its connections.
func (b *backendProc) kill() {
	b.once.Do(func() {
		_ = b.cmd.Process.Kill()
		_ = b.cmd.Wait()
	})
}

func (b *backendProc) stop() { b.kill() }

// printFailover prints the runs as a table, then the summary lines
// bench/frontdoor.sh reads: "failover median MS max MS", "failed
// requests N window-max MS", "no-failover RUNS".
func printFailover(w io.Writer, c failoverConfig, rs []runResult) {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.0f", float64(d)/float64(time.Millisecond)) }
	fmt.Fprintf(w, "a client asking every %s (timeout %s); the preferred backend killed (SIGKILL) 0.2-1.2 s after it first answers\n", c.every, c.timeout)
	fmt.Fprintf(w, "%4s %14s %16s %9s %9s %22s\n", "run", "kill after ms", "failover ms", "requests", "failed", "longest failing ms")
	var times []float64
	var failed int
	var window time.Duration
	none := 0
	for i, r := range rs {
		ft := "none"
		if r.failover >= 0 {
			ft = ms(r.failover)
			times = append(times, float64(r.failover)/float64(time.Millisecond))
		} else {
			none++
			times = append(times, math.Inf(1))
		}
		failed += r.failed
		window = max(window, r.window)
		fmt.Fprintf(w, "%4d %14s %16s %9d %9d %22s\n", i+1, ms(r.killAfter), ft, r.requests, r.failed, ms(r.window))
	}
	all := map[string]int{}
	for _, r := range rs {
		for k, n := range r.failures {
			all[k] += n
		}
	}
	kinds := ""
	for _, k := range slices.Sorted(maps.Keys(all)) {
		kinds += fmt.Sprintf(" %s %d", k, all[k])
	}
	if kinds == "" {
		kinds = " none"
	}
	slices.Sort(times)
	median := times[len(times)/2]
	if len(times)%2 == 0 {
		median = (times[len(times)/2-1] + median) / 2
	}
	fmtMS := func(v float64) string {
		if math.IsInf(v, 1) {
			return "none"
		}
		return fmt.Sprintf("%.0f", v)
	}
	fmt.Fprintf(w, "failover median %s max %s\n", fmtMS(median), fmtMS(times[len(times)-1]))
	fmt.Fprintf(w, "failed requests %d window-max %s\n", failed, ms(window))
	fmt.Fprintf(w, "failures by kind:%s\n", kinds)
	fmt.Fprintf(w, "no-failover %d\n", none)
}
