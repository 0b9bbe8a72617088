package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// server is a `holdfast serve` child process and what its first start
// printed: where it listens, the certificate to pin, the operator's
// one-time password.
type server struct {
	cmd         *exec.Cmd
	url         string
	fingerprint string
	user        string
	password    string
	stderr      *syncBuffer // the server's log (level warn: should stay empty)
	exited      chan struct{}
	waitErr     error // Wait's result, once exited is closed
	// wantPassword: the banner must hold the operator's password (the
	// first start on a database).
	wantPassword bool
}

// serveArgs say how to run one `holdfast serve`.
type serveArgs struct {
	bin, spec, stateDir string
	database            string // "": SQLite in stateDir
	reconcile           bool   // without it, --no-reconcile
	// first: the first start on this database, which prints the
	// operator's one-time password; a replica joining it prints none.
	first bool
}

// startServer runs a serve on a free loopback port and returns once it
// has printed its banner.
func startServer(ctx context.Context, a serveArgs) (*server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &server{stderr: &syncBuffer{}, exited: make(chan struct{}), wantPassword: a.first}
	args := []string{"serve", a.spec, "--state-dir", a.stateDir,
		"--listen", "127.0.0.1:" + strconv.Itoa(port), "--log-level", "warn"}
	if !a.reconcile {
		args = append(args, "--no-reconcile")
	}
	if a.database != "" {
		args = append(args, "--database", a.database)
	}
	s.cmd = exec.Command(a.bin, args...)
	s.cmd.Stderr = s.stderr
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s serve: %w", a.bin, err)
	}
	go func() {
		s.waitErr = s.cmd.Wait()
		close(s.exited)
	}()
	banner := make(chan error, 1)
	go func() { banner <- s.readBanner(out) }()
	select {
	case err = <-banner:
	case <-s.exited:
		err = fmt.Errorf("exited before serving (%w): %s", s.waitErr, s.stderr.String())
	case <-time.After(30 * time.Second):
		err = errors.New("printed no banner within 30 s")
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		s.kill()
		return nil, fmt.Errorf("holdfast serve: %w", err)
	}
	return s, nil
}

// readBanner parses what serve prints on first start, then keeps reading
// stdout so that the child never blocks on a full pipe.
func (s *server) readBanner(r io.Reader) error {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		f := strings.Fields(line)
		switch {
		case strings.HasPrefix(line, "Control plane of ") && len(f) > 0:
			s.url = f[len(f)-1]
		case strings.HasPrefix(line, "fingerprint ") && len(f) == 2:
			s.fingerprint = f[1]
		case strings.HasPrefix(line, "user ") && len(f) == 2:
			s.user = f[1]
		case strings.HasPrefix(line, "password ") && len(f) == 2:
			s.password = f[1]
		case strings.HasPrefix(line, "Serving until interrupted"):
			go func() { _, _ = io.Copy(io.Discard, r) }()
			if s.url == "" || s.fingerprint == "" || (s.wantPassword && s.password == "") {
				return fmt.Errorf("banner without URL, fingerprint or password (a state directory used before?)")
			}
			return nil
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading stdout: %w", err)
	}
	return errors.New("stdout ended before the banner was complete")
}

// waitReady polls /readyz until it answers 200.
func (s *server) waitReady(ctx context.Context, hc *http.Client, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url+"/readyz", nil)
		if err != nil {
			return err
		}
		resp, err := hc.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("/readyz not ready within %s: %w", within, err)
		}
		select {
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		case <-s.exited:
			return fmt.Errorf("server exited (%w): %s", s.waitErr, s.stderr.String())
		}
	}
}

// memory is what /proc says of the process's resident memory, in bytes:
// VmRSS now, of which RssAnon (heap, stacks) and RssFile (the binary's
// pages), and VmHWM, the peak.
type memory struct {
	RSS, Anon, File, HWM int64
}

func (s *server) memory() (memory, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		return memory{}, err
	}
	var m memory
	fields := map[string]*int64{"VmRSS": &m.RSS, "RssAnon": &m.Anon, "RssFile": &m.File, "VmHWM": &m.HWM}
	for line := range strings.SplitSeq(string(b), "\n") {
		name, val, ok := strings.Cut(line, ":")
		field := fields[name]
		if !ok || field == nil {
			continue
		}
		f := strings.Fields(val) // "12345 kB"
		if len(f) != 2 || f[1] != "kB" {
			return m, fmt.Errorf("/proc status %s: unexpected %q", name, val)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return m, fmt.Errorf("/proc status %s: %w", name, err)
		}
		*field = kb << 10
	}
	if m.RSS == 0 {
		return m, errors.New("/proc status has no VmRSS")
	}
	return m, nil
}

// goMemory is the Go runtime's view of the server's memory, in bytes.
type goMemory struct {
	HeapInUse float64 // spans holding objects, live or not yet collected
	Retained  float64 // free heap not yet returned to the operating system
	Stacks    float64
	Runtime   float64 // everything the runtime holds from the OS (heap, stacks, its own structures)
}

// goMemory reads the Go runtime's view of the server's memory from its
// /metrics. What the process holds beyond Runtime is not Go's: SQLite's
// allocations (modernc.org/libc) above all.
func (s *server) goMemory(ctx context.Context, hc *http.Client) (m goMemory, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url+"/metrics", nil)
	if err != nil {
		return m, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return m, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return m, err
	}
	v := map[string]float64{}
	for line := range strings.SplitSeq(string(b), "\n") {
		if name, val, ok := strings.Cut(line, " "); ok && strings.HasPrefix(name, "go_memstats_") {
			v[name], _ = strconv.ParseFloat(val, 64)
		}
	}
	inuse, ok := v["go_memstats_heap_inuse_bytes"]
	if !ok {
		return m, errors.New("/metrics has no go_memstats_heap_inuse_bytes")
	}
	released := v["go_memstats_heap_released_bytes"]
	return goMemory{HeapInUse: inuse, Retained: v["go_memstats_heap_idle_bytes"] - released,
		Stacks: v["go_memstats_stack_inuse_bytes"], Runtime: v["go_memstats_sys_bytes"] - released}, nil
}

// cpuTime is the CPU time (user + system) the process has used.
func (s *server) cpuTime() (time.Duration, error) {
	return procCPU(strconv.Itoa(s.cmd.Process.Pid))
}

// procCPU reads utime + stime of /proc/<pid>/stat.
func procCPU(pid string) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name, field 2, is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("/proc stat: no command name")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("/proc stat: too few fields")
	}
	// Fields 14 and 15 (utime, stime) are the 12th and 13th after the name.
	var ticks int64
	for _, v := range f[11:13] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc stat: %w", err)
		}
		ticks += n
	}
	const clockTicks = 100 // USER_HZ, 100 on every Linux architecture Go supports
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// machineCPU is how busy the whole machine was, in cores: every process
// (user and system time), time waiting for I/O, and time the hypervisor
// gave to other guests (steal). Others' work on a shared machine shows
// here and not in the server's or the load generator's CPU.
type machineCPU struct {
	Busy   float64 `json:"busy_cores"`
	IOWait float64 `json:"iowait_cores"`
	Steal  float64 `json:"steal_cores"`
}

// cpuTicks reads the machine's first /proc/stat line: busy, iowait and
// steal ticks.
func cpuTicks() (busy, iowait, steal int64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, 0, errors.New("/proc/stat: no cpu line")
	}
	var v [8]int64
	for i := range v {
		if v[i], err = strconv.ParseInt(f[i+1], 10, 64); err != nil {
			return 0, 0, 0, fmt.Errorf("/proc/stat: %w", err)
		}
	}
	return v[0] + v[1] + v[2] + v[5] + v[6], v[4], v[7], nil
}

// stop sends SIGTERM and waits up to within for the exit. It returns the
// exit code (-1 when killed) and how long the exit took.
func (s *server) stop(within time.Duration) (code int, took time.Duration, err error) {
	start := time.Now()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return -1, 0, err
	}
	select {
	case <-s.exited:
	case <-time.After(within):
		s.kill()
		return -1, time.Since(start), fmt.Errorf("did not exit within %s of SIGTERM; killed", within)
	}
	took = time.Since(start)
	var ee *exec.ExitError
	switch {
	case s.waitErr == nil:
		return 0, took, nil
	case errors.As(s.waitErr, &ee):
		return ee.ExitCode(), took, nil
	}
	return -1, took, s.waitErr
}

// kill ends the child at once (error paths).
func (s *server) kill() {
	select {
	case <-s.exited:
		return
	default:
	}
	_ = s.cmd.Process.Kill() // already gone is fine
	<-s.exited
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// syncBuffer is a bytes.Buffer that the child's stderr copier and the
// main goroutine may use at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
