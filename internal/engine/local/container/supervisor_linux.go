package container

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const (
	minBackoff   = 100 * time.Millisecond // first wait before restarting the service
	maxBackoff   = 5 * time.Second        // the wait doubles up to this
	resetBackoff = 10 * time.Second       // a service that ran this long restarts quickly again
	childGrace   = 3 * time.Second        // SIGTERM to SIGKILL for the container's processes
	defaultPath  = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

var errStopping = errors.New("container is stopping")

// initProc is the running init: PID 1 of the container. Every child is
// forked through spawn and reaped by reap, the one place that waits —
// PID 1 also inherits every orphan of the container, and a second waiter
// would steal exit statuses.
type initProc struct {
	cfg     Config
	log     *slog.Logger
	env     []string
	devNull *os.File
	term    chan os.Signal
	chld    chan os.Signal
	done    chan struct{} // closed when stopping

	mu         sync.Mutex
	waiters    map[int]chan syscall.WaitStatus
	stopping   bool
	servicePID int // inside the container
	restarts   int
	agentPID   int
}

// job is a process the init keeps running: the service, or the agent.
type job struct {
	name string
	argv []string
	env  []string
	// started records a new pid (0: exited) and whether it is a restart.
	started func(pid int, restart bool)
	// optional: failing to start it does not fail the container; it is
	// tried again like a restart.
	optional bool
}

func newInitProc(cfg Config, log *slog.Logger) *initProc {
	return &initProc{
		cfg:     cfg,
		log:     log,
		env:     serviceEnv(cfg),
		term:    make(chan os.Signal, 1),
		chld:    make(chan os.Signal, 1),
		done:    make(chan struct{}),
		waiters: map[int]chan syscall.WaitStatus{},
	}
}

// serviceEnv is the environment of the service and of Exec'd commands:
// defaults, overridden by cfg.Env. It never carries the init marker.
func serviceEnv(cfg Config) []string {
	env := []string{"PATH=" + defaultPath, "HOME=/root", "HOSTNAME=" + cfg.Name, "container=holdfast"}
	for _, kv := range cfg.Env {
		k, _, _ := strings.Cut(kv, "=")
		env = slicesDeleteKey(env, k)
		env = append(env, kv)
	}
	return env
}

func slicesDeleteKey(env []string, key string) []string {
	out := env[:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, key+"=") {
			out = append(out, kv)
		}
	}
	return out
}

// begin starts what the container runs: signal handling, the service or
// the responder, and the control socket. An error here (a missing program,
// a port in use) fails the Start.
func (p *initProc) begin(ln *net.UnixListener) error {
	signal.Notify(p.chld, unix.SIGCHLD)
	signal.Notify(p.term, unix.SIGTERM, unix.SIGINT)
	signal.Ignore(unix.SIGHUP)
	go func() {
		for range p.chld {
			p.reap()
		}
	}()
	p.reap() // anything that ended before the handler was installed

	var err error
	if p.devNull, err = os.Open(os.DevNull); err != nil {
		return err
	}
	if len(p.cfg.Command) > 0 {
		service := job{name: "service", argv: p.cfg.Command, env: p.env, started: func(pid int, restart bool) {
			p.servicePID = pid
			if restart {
				p.restarts++
			}
		}}
		if err := p.keep(service); err != nil {
			return err
		}
	} else if err := p.respond(); err != nil {
		return err
	}
	if len(p.cfg.Agent) > 0 {
		// The init's own program, whatever its name on the host (or
		// whether the root file system holds it): /proc/self/exe is
		// resolved by the kernel, not through this mount namespace.
		agent := job{name: "agent", argv: []string{"/proc/self/exe"}, env: append(slices.Clone(p.env), p.cfg.Agent...),
			started: func(pid int, _ bool) { p.agentPID = pid }, optional: true}
		if err := p.keep(agent); err != nil {
			return err
		}
	}
	go p.serveControl(ln)
	return nil
}

// run waits for SIGTERM, then stops every process of the container and
// returns the init's exit code.
func (p *initProc) run() int {
	sig := <-p.term
	p.log.Info("stopping", "signal", sig.String())
	p.mu.Lock()
	p.stopping = true
	p.mu.Unlock()
	close(p.done)
	// kill(-1) from PID 1 of a namespace reaches every other process in it.
	_ = unix.Kill(-1, unix.SIGTERM)
	noneLeft := func() bool { return errors.Is(unix.Kill(-1, 0), unix.ESRCH) }
	if !pollUntil(childGrace, noneLeft) {
		p.log.Warn("processes ignored SIGTERM; killing them")
		_ = unix.Kill(-1, unix.SIGKILL)
		pollUntil(childGrace, noneLeft)
	}
	p.log.Info("stopped")
	return 0
}

// pollUntil polls cond until it holds (true) or d passes (false).
func pollUntil(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pollEvery)
	}
	return true
}

// spawn forks argv in a session of its own with files as its stdin,
// stdout and stderr. The channel receives its exit status.
func (p *initProc) spawn(argv, env []string, files []uintptr) (int, <-chan syscall.WaitStatus, error) {
	return p.spawnWith(argv, env, files, &syscall.SysProcAttr{Setsid: true})
}

// spawnWith is spawn with the child's session attributes given: a
// terminal's shell also makes its standard input its controlling
// terminal (Setctty).
func (p *initProc) spawnWith(argv, env []string, files []uintptr, sys *syscall.SysProcAttr) (int, <-chan syscall.WaitStatus, error) {
	path, err := lookPath(argv[0], env)
	if err != nil {
		return 0, nil, err
	}
	// Held across the fork: the reaper cannot hand out the status of a
	// child that exits at once before it is registered.
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopping {
		return 0, nil, errStopping
	}
	pid, err := syscall.ForkExec(path, argv, &syscall.ProcAttr{
		Dir:   "/",
		Env:   env,
		Files: files,
		Sys:   sys,
	})
	if err != nil {
		return 0, nil, fmt.Errorf("starting %s: %w", argv[0], err)
	}
	ch := make(chan syscall.WaitStatus, 1)
	p.waiters[pid] = ch
	return pid, ch, nil
}

// reap collects every child that has exited, passing each status to its
// waiter; orphans inherited from the container have none.
func (p *initProc) reap() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
		p.mu.Lock()
		if ch, ok := p.waiters[pid]; ok {
			ch <- ws
			delete(p.waiters, pid)
		}
		p.mu.Unlock()
	}
}

// keep starts j and restarts it whenever it exits (supervise).
func (p *initProc) keep(j job) error {
	pid, done, err := p.spawn(j.argv, j.env, []uintptr{p.devNull.Fd(), 1, 2})
	if err != nil && j.optional {
		p.log.Error("starting "+j.name, "err", err)
		failed := make(chan syscall.WaitStatus, 1)
		failed <- 0
		go p.supervise(j, 0, failed)
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: %w", j.name, err)
	}
	p.mu.Lock()
	j.started(pid, false)
	p.mu.Unlock()
	p.log.Info(j.name+" started", "program", j.argv[0], "pid", pid)
	go p.supervise(j, pid, done)
	return nil
}

// supervise restarts j whenever it exits, waiting minBackoff, doubling up
// to maxBackoff, back to minBackoff after a long run.
func (p *initProc) supervise(j job, pid int, done <-chan syscall.WaitStatus) {
	backoff := minBackoff
	for {
		started := time.Now()
		ws := <-done
		ran := time.Since(started)
		p.mu.Lock()
		j.started(0, false)
		p.mu.Unlock()
		p.log.Info(j.name+" exited", "pid", pid, "status", describeStatus(ws), "ran", ran.Round(time.Millisecond))
		if ran > resetBackoff {
			backoff = minBackoff
		}
		for {
			select {
			case <-p.done:
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, maxBackoff)
			var err error
			pid, done, err = p.spawn(j.argv, j.env, []uintptr{p.devNull.Fd(), 1, 2})
			if errors.Is(err, errStopping) {
				return
			}
			if err == nil {
				break
			}
			p.log.Error("restarting "+j.name, "err", err)
		}
		p.mu.Lock()
		j.started(pid, true)
		p.mu.Unlock()
		p.log.Info(j.name+" restarted", "pid", pid)
	}
}

func describeStatus(ws syscall.WaitStatus) string {
	if ws.Signaled() {
		return "killed by " + ws.Signal().String()
	}
	return "exit " + strconv.Itoa(ws.ExitStatus())
}

// exitCode is a shell's view of a status: the exit code, or 128 + the
// number of the signal that killed the process.
func exitCode(ws syscall.WaitStatus) int {
	switch {
	case ws.Exited():
		return ws.ExitStatus()
	case ws.Signaled():
		return 128 + int(ws.Signal())
	}
	return -1
}

// lookPath finds file in the PATH of env, inside the container.
func lookPath(file string, env []string) (string, error) {
	if strings.Contains(file, "/") {
		if !isExecutable(file) {
			return "", fmt.Errorf("%s: not an executable file", file)
		}
		return file, nil
	}
	path := defaultPath
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		if p := filepath.Join(dir, file); isExecutable(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: not found in PATH %s", file, path)
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// respond runs the built-in responder on the instance's ports: TCP gets
// one line and is closed, UDP is echoed.
func (p *initProc) respond() error {
	for _, port := range p.cfg.Ports {
		addr := ":" + strconv.Itoa(port.Port)
		switch port.Proto {
		case "tcp":
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return fmt.Errorf("responder: %w", err)
			}
			go p.serveTCP(ln, port.Port)
		case "udp":
			pc, err := net.ListenPacket("udp", addr)
			if err != nil {
				return fmt.Errorf("responder: %w", err)
			}
			go p.echoUDP(pc)
		}
	}
	p.log.Info("responder listening", "ports", len(p.cfg.Ports))
	return nil
}

func (p *initProc) serveTCP(ln net.Listener, port int) {
	line := fmt.Sprintf("holdfast %s %d\n", p.cfg.Name, port)
	for {
		c, err := ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			time.Sleep(pollEvery) // out of descriptors, say: back off a little
			continue
		}
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			answerTCP(c, line)
		}()
	}
}

// httpWait is how long the responder waits for a client to speak first:
// an HTTP client sends its request at once, a client that waits for the
// server's line gets it after this.
const httpWait = 150 * time.Millisecond

// answerTCP answers one connection: an HTTP request gets 200 with line as
// its body (so that a route's front end and its health checks find a
// backend that answers), anything else line.
func answerTCP(c net.Conn, line string) {
	br := bufio.NewReader(c)
	_ = c.SetReadDeadline(time.Now().Add(httpWait))
	first, _ := br.Peek(4)
	if !looksHTTP(first) {
		_, _ = c.Write([]byte(line))
		return
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	resp := &http.Response{StatusCode: http.StatusOK, ProtoMajor: 1, ProtoMinor: 1, Request: req, Close: true,
		Header:        http.Header{"Content-Type": {"text/plain; charset=utf-8"}},
		ContentLength: int64(len(line)), Body: io.NopCloser(strings.NewReader(line))}
	_ = resp.Write(c)
}

// looksHTTP reports whether a connection's first bytes start an HTTP/1
// request line.
func looksHTTP(b []byte) bool {
	for _, m := range []string{"GET ", "HEAD", "POST", "PUT ", "DELE", "OPTI", "PATC"} {
		if string(b) == m {
			return true
		}
	}
	return false
}

func (p *initProc) echoUDP(pc net.PacketConn) {
	buf := make([]byte, 65535)
	for {
		n, addr, err := pc.ReadFrom(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			continue
		}
		_, _ = pc.WriteTo(buf[:n], addr)
	}
}
