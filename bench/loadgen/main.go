// Command loadgen measures the control plane end to end: it starts a built
// `holdfast serve` as a child process on a loopback port, fills a tenant
// with instances through the API, and measures against the control
// plane's targets:
//
//   - (a) listing 10,000 instances, a page of 100 at a time: p99 per page;
//   - (b) a constant rate of HMAC-signed API-key requests (open loop, many
//     keep-alive connections) sustained with no errors;
//   - (c) the server's idle resident memory, after start and after the load.
//
// With -database postgres://… -replicas N it starts N servers on that
// database (replicas, docs/ha.md) and sends each request to the next;
// -p99-request judges the constant load's p99. With -failover N it
// measures instead how long two reconciling replicas take to carry out an
// operation once the leader is killed (failover.go).
//
// It prints a summary, writes every figure as JSON with -json, and exits 1
// when a target is missed. bench/serve.sh (one server, SQLite) and
// bench/ha.sh (two replicas on PostgreSQL) build the binary and run it
// with the issues' parameters.
//
// Usage:
//
//	go run ./bench/loadgen -holdfast ./holdfast [-instances 10000] [-rate 1000 -duration 60s] [-json out.json]
//	go run ./bench/loadgen -holdfast ./holdfast -database postgres://… -replicas 2 -p99-request 20ms
//	go run ./bench/loadgen -holdfast ./holdfast -spec bench/ha -database postgres://… -failover 5   # as root
package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/holdfast/holdfast/api"
)

// config is what the flags say.
type config struct {
	bin, spec     string
	instances     int
	createWorkers int
	walks, limit  int
	rate          float64
	duration      time.Duration
	conns         int
	warmup        time.Duration
	maxInFlight   int
	mix           string
	settle, idle  time.Duration
	jsonOut       string
	keepState     bool
	database      string // "": one server on SQLite
	replicas      int

	failoverRuns int // > 0: measure failover instead (failover.go)

	p99Page     time.Duration
	p99Request  time.Duration // 0: not judged
	minRate     float64
	maxFailover time.Duration
	maxIdleRSS  byteSize
}

func main() { os.Exit(loadgen()) }

// loadgen runs and returns the exit status: 0 when every target is met, 1
// when one is missed or the run failed, 2 for bad usage.
func loadgen() int {
	var c config
	c.maxIdleRSS = 60 << 20
	flag.StringVar(&c.bin, "holdfast", "", "the holdfast binary to serve with (required)")
	flag.StringVar(&c.spec, "spec", "examples/tasmanian", "the cloud spec to serve")
	flag.IntVar(&c.instances, "instances", 10000, "instances to create in the tenant")
	flag.IntVar(&c.createWorkers, "create-workers", 16, "instance creations at once")
	flag.IntVar(&c.walks, "walks", 5, "times to list every instance")
	flag.IntVar(&c.limit, "limit", 100, "instances per page")
	flag.Float64Var(&c.rate, "rate", 1000, "requests a second of the constant-rate load")
	flag.DurationVar(&c.duration, "duration", 60*time.Second, "how long the constant-rate load runs")
	flag.DurationVar(&c.warmup, "warmup", 0, "before the constant-rate load, the same load for this long, its figures printed but not judged (connections opened, statements prepared)")
	flag.IntVar(&c.conns, "conns", 64, "keep-alive connections of the constant-rate load")
	flag.IntVar(&c.maxInFlight, "max-in-flight", 4096, "requests in flight beyond which a due request is dropped (an error)")
	flag.StringVar(&c.mix, "mix", "get=2,list=1,me=1", "weights of the load's requests: get (one instance), list (a page at a random cursor), me (/v1/me)")
	flag.DurationVar(&c.settle, "settle", 2*time.Second, "wait after /readyz before reading the idle memory")
	flag.DurationVar(&c.idle, "idle", 10*time.Second, "wait after the load before reading the idle memory again")
	flag.StringVar(&c.jsonOut, "json", "", "write every figure as JSON to this file")
	flag.BoolVar(&c.keepState, "keep-state", false, "keep the server's state directory (printed)")
	flag.StringVar(&c.database, "database", "", "PostgreSQL URL the servers share (default: one server on SQLite); give it an empty database")
	flag.IntVar(&c.replicas, "replicas", 1, "servers on -database, the load spread over them request by request")
	flag.IntVar(&c.failoverRuns, "failover", 0, "instead of the load: time this many failovers of two reconciling replicas on -database (as root: the local engine)")
	flag.DurationVar(&c.maxFailover, "max-failover", 10*time.Second, "target of -failover: median from kill -9 of the leader to an operation carried out by the other replica")
	flag.DurationVar(&c.p99Request, "p99-request", 0, "target: p99 latency of the constant-rate load's requests (0: not judged)")
	flag.DurationVar(&c.p99Page, "p99-page", 20*time.Millisecond, "target: p99 latency of a page of the list")
	flag.Float64Var(&c.minRate, "min-rate", 1000, "target: requests a second answered OK, with no error")
	flag.Var(&c.maxIdleRSS, "max-idle-rss", "target: idle resident memory, e.g. 60MB (MB = 2^20 bytes)")
	flag.Parse()
	if c.bin == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: loadgen -holdfast PATH [flags]; -h lists them")
		return 2
	}
	if c.replicas < 1 || (c.replicas > 1 && c.database == "") {
		fmt.Fprintln(os.Stderr, "loadgen: -replicas must be 1, or more with -database")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if c.failoverRuns > 0 {
		return failoverMain(ctx, c)
	}
	rep, err := run(ctx, c, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		return 1
	}
	return verdict(rep, rep.Pass, c.jsonOut)
}

// verdict prints a report, keeps it as JSON in jsonOut when that is set,
// and is the exit status: 1 when a target is missed.
func verdict(rep interface{ print(io.Writer) }, pass bool, jsonOut string) int {
	rep.print(os.Stdout)
	if jsonOut != "" {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err == nil {
			err = os.WriteFile(jsonOut, append(b, '\n'), 0o644)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "loadgen:", err)
			return 1
		}
	}
	if !pass {
		return 1
	}
	return 0
}

// report is every figure of a run.
type report struct {
	Machine struct {
		CPUs     int    `json:"cpus"`
		CPU      string `json:"cpu"`
		MemoryMB int64  `json:"memory_mb"`
		Go       string `json:"go"`
	} `json:"machine"`
	Replicas      int     `json:"replicas"`
	Backend       string  `json:"database"` // SQLite or PostgreSQL
	Instances     int     `json:"instances"`
	CreateSeconds float64 `json:"create_s"`
	CreatePerS    float64 `json:"create_per_s"`
	List          struct {
		Walks   int         `json:"walks"`
		Limit   int         `json:"limit"`
		Pages   int         `json:"pages"`
		Latency percentiles `json:"latency"`
	} `json:"list"`
	Warmup *loadResult `json:"warmup,omitempty"` // -warmup: not judged
	Load   loadResult  `json:"load"`
	Memory struct {
		IdleStartMB float64 `json:"idle_after_start_mb"`
		IdleAfterMB float64 `json:"idle_after_load_mb"`
		IdleWaitS   float64 `json:"idle_wait_s"` // how long after the load
		PeakMB      float64 `json:"peak_mb"`
		// What the idle figures are made of: anonymous memory (heaps,
		// stacks) and the binary's file pages; and, after the load, the
		// Go runtime's own view.
		StartAnonMB      float64 `json:"after_start_anon_mb"`
		StartFileMB      float64 `json:"after_start_file_mb"`
		AfterAnonMB      float64 `json:"after_load_anon_mb"`
		AfterFileMB      float64 `json:"after_load_file_mb"`
		GoHeapInUseMB    float64 `json:"go_heap_inuse_mb"`
		GoHeapRetainedMB float64 `json:"go_heap_free_retained_mb"` // free, not yet returned to the OS
		GoStacksMB       float64 `json:"go_stacks_mb"`
		GoRuntimeMB      float64 `json:"go_runtime_mb"` // all the Go runtime holds; the rest of the anonymous memory is SQLite's
	} `json:"memory"`
	Shutdown struct {
		ExitCode int     `json:"exit_code"`
		Seconds  float64 `json:"seconds"`
	} `json:"shutdown"`
	ServerLog []string `json:"server_log,omitempty"` // what it logged at warn and above (the first 100 lines)
	LogLines  int      `json:"server_log_lines"`
	Targets   []target `json:"targets"`
	Pass      bool     `json:"pass"`
}

type target struct {
	Name     string `json:"name"`
	Target   string `json:"target"`
	Measured string `json:"measured"`
	Pass     bool   `json:"pass"`
}

func run(ctx context.Context, c config, log io.Writer) (_ *report, err error) {
	mix, err := parseMix(c.mix)
	if err != nil {
		return nil, err
	}
	if c.rate <= 0 || c.duration <= 0 || c.instances < 1 || c.limit < 1 || c.walks < 1 || c.createWorkers < 1 || c.conns < 1 {
		return nil, errors.New("-rate, -duration, -instances, -limit, -walks, -create-workers and -conns must be positive")
	}
	rep := &report{Instances: c.instances}
	machine(rep)
	state, err := os.MkdirTemp("", "holdfast-loadgen-")
	if err != nil {
		return nil, err
	}
	if c.keepState {
		fmt.Fprintln(log, "state directory:", state)
	} else {
		defer os.RemoveAll(state)
	}
	bin, err := filepath.Abs(c.bin)
	if err != nil {
		return nil, err
	}

	backend := "SQLite"
	if c.database != "" {
		backend = "PostgreSQL"
	}
	rep.Replicas, rep.Backend = c.replicas, backend
	fmt.Fprintf(log, "starting %d × %s serve %s (no reconcile) on %s\n", c.replicas, bin, c.spec, backend)
	srv, err := startFleet(ctx, bin, c.spec, c.database, state, c.replicas, log)
	defer srv.kill() // on error paths; stop below is the measured exit
	defer func() {
		if lines := srv.log(); err != nil && len(lines) > 0 { // what the servers said of the failure
			fmt.Fprintf(log, "the servers logged:\n  %s\n", strings.Join(lines[:min(len(lines), 20)], "\n  "))
		}
	}()
	if err != nil {
		return nil, err
	}
	hc := pinnedClient(srv.fingerprints(), c.conns)
	defer hc.CloseIdleConnections()
	cl := &client{bases: srv.urls(), hc: hc}
	if err := srv.waitReady(ctx, hc, 30*time.Second); err != nil {
		return nil, err
	}
	time.Sleep(c.settle)
	m, err := srv.memory()
	if err != nil {
		return nil, err
	}
	rep.Memory.IdleStartMB, rep.Memory.StartAnonMB, rep.Memory.StartFileMB = mb(m.RSS), mb(m.Anon), mb(m.File)
	fmt.Fprintf(log, "idle resident memory %.1f MB\n", rep.Memory.IdleStartMB)

	// A tenant with room for every instance, its administrator and an
	// API key of theirs: the load is a tenant's automation.
	const tn = "bench"
	admin, err := cl.login(ctx, srv[0].user, srv[0].password)
	if err != nil {
		return nil, err
	}
	n := c.instances
	q := api.Quota{Instances: n, VCPUs: n, MemoryMiB: int64(n) << 10, DiskGiB: int64(n) << 4, Networks: 1}
	if err := cl.call(ctx, admin, http.MethodPost, "/v1/tenants", api.TenantCreate{Name: tn, Quota: &q}, nil, http.StatusCreated); err != nil {
		return nil, err
	}
	pw := rand.Text()
	if err := cl.call(ctx, admin, http.MethodPost, "/v1/tenants/"+tn+"/users?role="+api.RoleTenantAdmin,
		api.UserCreate{Name: "bench-admin", Password: pw}, nil, http.StatusCreated); err != nil {
		return nil, err
	}
	user, err := cl.login(ctx, "bench-admin", pw)
	if err != nil {
		return nil, err
	}
	key, err := cl.apiKey(ctx, user, "loadgen")
	if err != nil {
		return nil, err
	}
	if err := cl.call(ctx, key, http.MethodPost, "/v1/tenants/"+tn+"/networks", api.NetworkCreate{Name: "net"}, nil, http.StatusAccepted); err != nil {
		return nil, err
	}
	fmt.Fprintf(log, "creating %d instances, %d at a time\n", n, c.createWorkers)
	took, err := populate(ctx, cl, key, tn, "net", n, c.createWorkers, log)
	if err != nil {
		return nil, err
	}
	rep.CreateSeconds, rep.CreatePerS = took.Seconds(), float64(n)/took.Seconds()

	// (a) The list, page by page.
	fmt.Fprintf(log, "listing all %d instances %d times, %d a page\n", n, c.walks, c.limit)
	pages, cursors, err := walk(ctx, cl, key, tn, c.limit, c.walks, n)
	if err != nil {
		return nil, err
	}
	rep.List.Walks, rep.List.Limit, rep.List.Pages = c.walks, c.limit, len(pages)
	rep.List.Latency = percentilesOf(pages)

	// (b) The constant-rate load, after its warm-up.
	if c.warmup > 0 {
		fmt.Fprintf(log, "warm-up: %.0f signed requests/s for %s (not judged)\n", c.rate, c.warmup)
		w := openLoop(ctx, cl, key, tn, n, c.limit, cursors, mix, c.rate, c.warmup, c.maxInFlight)
		rep.Warmup = &w
	}
	fmt.Fprintf(log, "constant load: %.0f signed requests/s for %s over %d connections (%s)\n", c.rate, c.duration, c.conns, c.mix)
	cpu0, err := srv.cpuTime()
	if err != nil {
		return nil, err
	}
	self0, _ := procCPU("self")
	busy0, iow0, steal0, _ := cpuTicks()
	start := time.Now()
	rep.Load = openLoop(ctx, cl, key, tn, n, c.limit, cursors, mix, c.rate, c.duration, c.maxInFlight)
	rep.Load.Connections = c.conns
	wall := time.Since(start)
	cpu1, err := srv.cpuTime()
	if err != nil {
		return nil, err
	}
	self1, _ := procCPU("self")
	busy1, iow1, steal1, _ := cpuTicks()
	cores := func(ticks int64) float64 { return float64(ticks) / 100 / wall.Seconds() } // USER_HZ
	rep.Load.MachineCPU = machineCPU{Busy: cores(busy1 - busy0), IOWait: cores(iow1 - iow0), Steal: cores(steal1 - steal0)}
	rep.Load.ServerCPU = float64(cpu1-cpu0) / float64(wall)
	rep.Load.GeneratorCPU = float64(self1-self0) / float64(wall)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}

	// (c) Memory once idle again; the clients' connections are closed
	// first, as an idle server's would be.
	hc.CloseIdleConnections()
	fmt.Fprintf(log, "idle for %s\n", c.idle)
	time.Sleep(c.idle)
	if m, err = srv.memory(); err != nil {
		return nil, err
	}
	rep.Memory.IdleAfterMB, rep.Memory.PeakMB, rep.Memory.IdleWaitS = mb(m.RSS), mb(m.HWM), c.idle.Seconds()
	rep.Memory.AfterAnonMB, rep.Memory.AfterFileMB = mb(m.Anon), mb(m.File)
	gm, err := srv.goMemory(ctx, hc)
	if err != nil {
		return nil, err
	}
	rep.Memory.GoHeapInUseMB, rep.Memory.GoHeapRetainedMB = gm.HeapInUse/(1<<20), gm.Retained/(1<<20)
	rep.Memory.GoStacksMB, rep.Memory.GoRuntimeMB = gm.Stacks/(1<<20), gm.Runtime/(1<<20)

	code, took, err := srv.stop(30 * time.Second)
	if err != nil {
		return nil, err
	}
	rep.Shutdown.ExitCode, rep.Shutdown.Seconds = code, took.Seconds()
	if lines := srv.log(); len(lines) > 0 {
		rep.LogLines, rep.ServerLog = len(lines), lines[:min(len(lines), 100)]
	}
	rep.judge(c)
	return rep, nil
}

// judge compares the figures with the targets.
func (r *report) judge(c config) {
	idle := max(r.Memory.IdleStartMB, r.Memory.IdleAfterMB)
	l := r.Load
	r.Targets = []target{
		{"(a) list page p99", fmt.Sprintf("< %s", c.p99Page), fmt.Sprintf("%.2f ms (%d pages of %d)", r.List.Latency.P99, r.List.Pages, r.List.Limit),
			r.List.Latency.P99 < ms(c.p99Page)},
		{"(b) signed requests", fmt.Sprintf(">= %.0f/s for %s, 0 errors", c.minRate, c.duration),
			fmt.Sprintf("%.1f/s, %d errors, drain %.0f ms", l.Achieved, l.errors(), l.DrainMs),
			l.errors() == 0 && l.Achieved >= c.minRate && l.DrainMs < 1000},
	}
	if c.p99Request > 0 {
		r.Targets = append(r.Targets, target{"(b) request p99", fmt.Sprintf("< %s", c.p99Request), fmt.Sprintf("%.2f ms (%d requests)", l.Latency.P99, l.Latency.Count),
			l.Latency.P99 < ms(c.p99Request)})
	}
	r.Targets = append(r.Targets,
		target{"(c) idle RSS", fmt.Sprintf("< %s", c.maxIdleRSS), fmt.Sprintf("%.1f MB after start, %.1f MB after load", r.Memory.IdleStartMB, r.Memory.IdleAfterMB),
			idle < mb(int64(c.maxIdleRSS))},
		target{"SIGTERM", "exit 0 within 30 s", fmt.Sprintf("exit %d in %.2f s", r.Shutdown.ExitCode, r.Shutdown.Seconds), r.Shutdown.ExitCode == 0})
	r.Pass = true
	for _, t := range r.Targets {
		r.Pass = r.Pass && t.Pass
	}
}

func (r *report) print(w io.Writer) {
	fmt.Fprintf(w, "\nholdfast serve, loopback TLS, %d × %s, %d MB, %s\n", r.Machine.CPUs, r.Machine.CPU, r.Machine.MemoryMB, r.Machine.Go)
	if r.Replicas > 1 {
		fmt.Fprintf(w, "%d replicas on one %s database, each request to the next replica in turn; memory figures are the largest replica's, CPU all of theirs\n", r.Replicas, r.Backend)
	}
	fmt.Fprintf(w, "\n%d instances created through the API in %.1f s (%.0f/s)\n", r.Instances, r.CreateSeconds, r.CreatePerS)
	p := r.List.Latency
	fmt.Fprintf(w, "\n(a) list, %d walks = %d pages of %d: p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  max %.2f ms\n",
		r.List.Walks, r.List.Pages, r.List.Limit, p.P50, p.P90, p.P99, p.Max)
	if u := r.Warmup; u != nil {
		p := u.Latency
		fmt.Fprintf(w, "\nwarm-up (not judged): %.0f requests/s for %.0f s: %d sent, %d OK, %d errors; p50 %.2f ms  p99 %.2f ms  max %.2f ms\n",
			u.Rate, u.Duration, u.Sent, u.OK, u.errors(), p.P50, p.P99, p.Max)
	}
	l := r.Load
	fmt.Fprintf(w, "\n(b) %.0f signed requests/s for %.0f s over %d connections: %d sent, %d OK, %.1f OK/s\n",
		l.Rate, l.Duration, l.Connections, l.Sent, l.OK, l.Achieved)
	fmt.Fprintf(w, "    errors: %d non-2xx %v, %d without an answer, %d dropped; last answer %.0f ms after the window; max send lag %.1f ms\n",
		l.nonOK(), l.NonOK, l.Transport, l.Dropped, l.DrainMs, l.MaxLagMs)
	for _, e := range l.FirstErrors {
		fmt.Fprintf(w, "      %s\n", e)
	}
	p = l.Latency
	fmt.Fprintf(w, "    latency (from when due): p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  p99.9 %.2f ms  max %.2f ms\n", p.P50, p.P90, p.P99, p.P999, p.Max)
	for _, k := range kindNames {
		if p, ok := l.ByKind[k]; ok {
			fmt.Fprintf(w, "      %-13s %6d  p50 %.2f ms  p99 %.2f ms  max %.2f ms\n", k, p.Count, p.P50, p.P99, p.Max)
		}
	}
	mc := l.MachineCPU
	fmt.Fprintf(w, "    CPU: server %.2f cores, load generator %.2f, whole machine %.2f of %d (others %.2f); iowait %.2f, steal %.2f\n",
		l.ServerCPU, l.GeneratorCPU, mc.Busy, r.Machine.CPUs, max(mc.Busy-l.ServerCPU-l.GeneratorCPU, 0), mc.IOWait, mc.Steal)
	fmt.Fprintf(w, "    slowest seconds:")
	for _, s := range l.slowest(5) {
		fmt.Fprintf(w, "  t=%ds %.0f ms (%d OK)", s.At, s.MaxMs, s.OK)
	}
	fmt.Fprintln(w)
	m := r.Memory
	fmt.Fprintf(w, "\n(c) resident memory: %.1f MB idle after start, %.1f MB idle %.0f s after the load, %.1f MB peak\n",
		m.IdleStartMB, m.IdleAfterMB, m.IdleWaitS, m.PeakMB)
	fmt.Fprintf(w, "    after start: %.1f MB anonymous + %.1f MB file (the binary); after the load: %.1f MB anonymous + %.1f MB file\n",
		m.StartAnonMB, m.StartFileMB, m.AfterAnonMB, m.AfterFileMB)
	fmt.Fprintf(w, "    Go runtime after the load: %.1f MB in all: heap in use %.1f MB, free heap not yet returned to the OS %.1f MB, stacks %.1f MB\n",
		m.GoRuntimeMB, m.GoHeapInUseMB, m.GoHeapRetainedMB, m.GoStacksMB)
	fmt.Fprintf(w, "\nSIGTERM: exit %d in %.2f s\n", r.Shutdown.ExitCode, r.Shutdown.Seconds)
	if r.LogLines > 0 {
		fmt.Fprintf(w, "\nthe server logged %d lines at warn or above; the first:\n", r.LogLines)
		for _, l := range r.ServerLog[:min(len(r.ServerLog), 10)] {
			fmt.Fprintf(w, "  %s\n", l)
		}
	}
	fmt.Fprintln(w)
	for _, t := range r.Targets {
		verdict := "ok  "
		if !t.Pass {
			verdict = "MISS"
		}
		fmt.Fprintf(w, "%s %-22s target %-28s measured %s\n", verdict, t.Name, t.Target, t.Measured)
	}
}

// machine describes where the run happened.
func machine(r *report) {
	r.Machine.CPUs, r.Machine.Go = runtime.NumCPU(), runtime.Version()
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				r.Machine.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				r.Machine.MemoryMB = kb >> 10
			}
		}
	}
}

func mb(b int64) float64 { return float64(b) / (1 << 20) }

// byteSize is a flag such as 60MB; MB and MiB both mean 2^20 bytes here.
type byteSize int64

func (b byteSize) String() string { return fmt.Sprintf("%gMB", float64(b)/(1<<20)) }

func (b *byteSize) Set(s string) error {
	units := []struct {
		suffix string
		shift  uint
	}{{"GiB", 30}, {"GB", 30}, {"G", 30}, {"MiB", 20}, {"MB", 20}, {"M", 20}, {"KiB", 10}, {"KB", 10}, {"K", 10}, {"B", 0}}
	for _, u := range units {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			f, err := strconv.ParseFloat(num, 64)
			if err != nil || f <= 0 {
				return fmt.Errorf("%q: want a size such as 60MB", s)
			}
			*b = byteSize(f * float64(int64(1)<<u.shift))
			return nil
		}
	}
	return fmt.Errorf("%q: want a size with a unit, such as 60MB", s)
}
