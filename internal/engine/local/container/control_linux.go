package container

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The control socket is a SOCK_SEQPACKET unix socket in the state
// directory: one request message (JSON, with the command's stdin, stdout
// and stderr attached as SCM_RIGHTS for "exec"), one response message.
// Exec's caller closing the connection kills the command.

type request struct {
	Op   string   `json:"op"` // "status" or "exec"
	Argv []string `json:"argv,omitempty"`
	// TTY: the three descriptors are one terminal, which becomes the
	// command's controlling terminal (a console's shell).
	TTY bool `json:"tty,omitempty"`
}

type response struct {
	Error      string `json:"error,omitempty"`
	Exit       int    `json:"exit"`                  // exec
	ServicePID int    `json:"service_pid,omitempty"` // status; pid inside the container
	Restarts   int    `json:"restarts,omitempty"`    // status
	AgentPID   int    `json:"agent_pid,omitempty"`   // status; pid inside the container
}

const maxMessage = 64 << 10

// listenControl binds dir/control.sock, readable and writable by root only
// (and dir itself is 0700).
func listenControl(dir string) (*net.UnixListener, error) {
	path := filepath.Join(dir, socketFile)
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	old := unix.Umask(0o177) // no moment at which the socket is open to others
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	// After pivot_root the path means something else: never unlink it.
	ln.SetUnlinkOnClose(false)
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

func (p *initProc) serveControl(ln *net.UnixListener) {
	for {
		c, err := ln.AcceptUnix()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			time.Sleep(pollEvery) // out of descriptors, say: back off a little
			continue
		}
		go p.handleControl(c)
	}
}

func (p *initProc) handleControl(c *net.UnixConn) {
	defer c.Close()
	reply := func(r response) {
		b, _ := json.Marshal(r)
		_, _ = c.Write(b)
	}
	// The request is read before the peer is judged, so that a refused
	// client reads the refusal rather than a broken pipe.
	buf, oob := make([]byte, maxMessage), make([]byte, unix.CmsgSpace(3*4))
	n, oobn, flags, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		return
	}
	fds := receivedFDs(oob[:oobn])
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	var req request
	switch err := checkPeerRoot(c); {
	case err != nil:
		p.log.Warn("control socket: refused", "err", err)
		reply(response{Error: err.Error()})
		return
	case flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0:
		reply(response{Error: "request too large"})
		return
	case json.Unmarshal(buf[:n], &req) != nil:
		reply(response{Error: "malformed request"})
		return
	}
	switch req.Op {
	case "status":
		p.mu.Lock()
		r := response{ServicePID: p.servicePID, Restarts: p.restarts, AgentPID: p.agentPID}
		p.mu.Unlock()
		reply(r)
	case "exec":
		reply(p.exec(c, req.Argv, req.TTY, fds))
	default:
		reply(response{Error: fmt.Sprintf("unknown operation %q", req.Op)})
	}
}

// exec runs argv with fds as its stdio and waits for it, or kills it when
// the caller hangs up. With tty, fds[0] becomes its controlling terminal:
// job control and ^C then work as on a login, and the terminal's hangup
// reaches the whole session.
func (p *initProc) exec(c *net.UnixConn, argv []string, tty bool, fds []int) response {
	if len(fds) != 3 || len(argv) == 0 {
		return response{Error: "exec needs a command and three descriptors"}
	}
	// A command expects blocking standard streams; the caller's may be
	// non-blocking (Go's pipes are), and a read with nothing written yet
	// would fail with EAGAIN instead of waiting.
	for _, fd := range fds {
		if err := unix.SetNonblock(fd, false); err != nil {
			return response{Error: "exec: " + err.Error()}
		}
	}
	files := []uintptr{uintptr(fds[0]), uintptr(fds[1]), uintptr(fds[2])}
	sys, env := &syscall.SysProcAttr{Setsid: true}, p.env
	if tty {
		// Ctty is the descriptor's number in the child: its stdin.
		sys.Setctty, sys.Ctty = true, 0
		env = append(slices.Clone(p.env), "TERM="+terminalType)
	}
	pid, done, err := p.spawnWith(argv, env, files, sys)
	if err != nil {
		return response{Error: err.Error()}
	}
	p.log.Info("exec", "program", argv[0], "pid", pid) // not the arguments: they may hold secrets
	hangup := make(chan struct{})
	go func() {
		var b [1]byte
		_, _ = c.Read(b[:]) // returns when the caller closes (or we do)
		close(hangup)
	}()
	var ws syscall.WaitStatus
	select {
	case ws = <-done:
	case <-hangup:
		_ = unix.Kill(-pid, unix.SIGKILL) // its session's process group
		_ = unix.Kill(pid, unix.SIGKILL)
		if tty {
			// An interactive shell puts each job in a process group of
			// its own; the whole session goes with the terminal.
			killSession(pid)
		}
		ws = <-done
	}
	return response{Exit: exitCode(ws)}
}

// killSession kills every process of the session sid, as this init's
// /proc (the container's) shows them.
func killSession(sid int) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if s, err := unix.Getsid(pid); err == nil && s == sid {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
	}
}

func receivedFDs(oob []byte) []int {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var fds []int
	for i := range msgs {
		if f, err := unix.ParseUnixRights(&msgs[i]); err == nil {
			fds = append(fds, f...)
		}
	}
	return fds
}

// checkPeerRoot accepts only a peer whose effective uid is 0.
func checkPeerRoot(c *net.UnixConn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return err
	}
	if credErr != nil {
		return fmt.Errorf("peer credentials: %w", credErr)
	}
	if cred.Uid != 0 {
		return fmt.Errorf("uid %d may not use the control socket (root only)", cred.Uid)
	}
	return nil
}

// dialControl connects to the init of the instance in dir.
func dialControl(ctx context.Context, dir string) (*net.UnixConn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unixpacket", filepath.Join(dir, socketFile))
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
		return nil, fmt.Errorf("%s: %w", dir, ErrNotRunning)
	}
	if err != nil {
		return nil, err
	}
	return c.(*net.UnixConn), nil
}

// roundTrip sends req, with files attached, and reads the response. When
// ctx ends first the connection is closed, which makes the init kill an
// Exec'd command.
func roundTrip(ctx context.Context, c *net.UnixConn, req request, files []*os.File, sent func()) (response, error) {
	if err := send(c, req, files); err != nil {
		return response{}, err
	}
	if sent != nil {
		sent()
	}
	return receive(ctx, c)
}

// send sends req with files attached.
func send(c *net.UnixConn, req request, files []*os.File) error {
	b, err := json.Marshal(req)
	if err != nil {
		return err
	}
	err = withFDs(files, func(fds []int) error {
		var oob []byte
		if len(fds) > 0 {
			oob = unix.UnixRights(fds...)
		}
		_, _, err := c.WriteMsgUnix(b, oob, nil)
		return err
	})
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	return nil
}

// receive reads the response, closing the connection if ctx ends first.
func receive(ctx context.Context, c *net.UnixConn) (response, error) {
	var resp response
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	buf := make([]byte, maxMessage)
	n, err := c.Read(buf)
	if err != nil {
		if ctx.Err() != nil {
			return resp, ctx.Err()
		}
		return resp, fmt.Errorf("control socket: %w", err)
	}
	if err := json.Unmarshal(buf[:n], &resp); err != nil {
		return resp, fmt.Errorf("control socket: malformed response: %w", err)
	}
	return resp, nil
}

// withFDs calls fn with the descriptors of files, which stay valid (and in
// their current blocking mode, unlike with File.Fd) until fn returns.
func withFDs(files []*os.File, fn func(fds []int) error) error {
	fds := make([]int, 0, len(files))
	var at func(i int) error
	at = func(i int) error {
		if i == len(files) {
			return fn(fds)
		}
		rc, err := files[i].SyscallConn()
		if err != nil {
			return err
		}
		var inner error
		if err := rc.Control(func(fd uintptr) {
			fds = append(fds, int(fd))
			inner = at(i + 1)
		}); err != nil {
			return err
		}
		return inner
	}
	return at(0)
}

// queryStatus asks the init of the instance in dir about its service.
func queryStatus(ctx context.Context, dir string) (response, error) {
	c, err := dialControl(ctx, dir)
	if err != nil {
		return response{}, err
	}
	defer c.Close()
	resp, err := roundTrip(ctx, c, request{Op: "status"}, nil, nil)
	if err == nil && resp.Error != "" {
		err = errors.New(resp.Error)
	}
	return resp, err
}

// Exec runs argv inside the running container of the instance whose state
// directory is dir — in all its namespaces, its cgroup and its root file
// system — and returns the command's exit code (128+n when signal n killed
// it). The command gets the container's environment and runs as root.
//
// An *os.File is handed to the command itself (a terminal stays a
// terminal, though no new controlling terminal is made); other readers and
// writers are connected through pipes, and Exec returns once the
// command's output has been copied. nil means /dev/null. When ctx ends,
// the command is killed. The error is ErrNotRunning (wrapped) when there is
// no container, and reports a command that could not be started.
func Exec(ctx context.Context, dir string, argv []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	if len(argv) == 0 {
		return -1, errors.New("exec: no command")
	}
	s, err := newStdio(stdin, stdout, stderr)
	if err != nil {
		return -1, err
	}
	defer s.close()
	c, err := dialControl(ctx, dir)
	if err != nil {
		return -1, err
	}
	defer c.Close()
	resp, err := roundTrip(ctx, c, request{Op: "exec", Argv: argv}, s.child[:], s.closeChildEnds)
	if err != nil {
		return -1, fmt.Errorf("exec %s: %w", argv[0], err)
	}
	if resp.Error != "" {
		return -1, fmt.Errorf("exec %s: %s", argv[0], resp.Error)
	}
	if err := s.wait(ctx); err != nil {
		return resp.Exit, fmt.Errorf("exec %s: copying output: %w", argv[0], err)
	}
	return resp.Exit, nil
}

// terminalType is the TERM of a terminal's command: what xterm.js and
// the terminals the CLI runs in understand.
const terminalType = "xterm-256color"

// Terminal is a command running inside a container on a terminal
// (StartTerminal).
type Terminal struct {
	c    *net.UnixConn
	argv string
}

// StartTerminal starts argv inside the running container of the instance
// in dir as Exec does, with tty — the subsidiary side of a pseudo-terminal
// — as its standard streams and its controlling terminal. StartTerminal
// takes tty over: it is closed once sent, so that the terminal's
// controlling side reads EOF (EIO) when the command and all it started
// are gone. ctx bounds the start only. The error is ErrNotRunning
// (wrapped) when there is no container.
func StartTerminal(ctx context.Context, dir string, argv []string, tty *os.File) (*Terminal, error) {
	defer tty.Close()
	if len(argv) == 0 {
		return nil, errors.New("terminal: no command")
	}
	c, err := dialControl(ctx, dir)
	if err != nil {
		return nil, err
	}
	if err := send(c, request{Op: "exec", Argv: argv, TTY: true}, []*os.File{tty, tty, tty}); err != nil {
		c.Close()
		return nil, fmt.Errorf("terminal %s: %w", argv[0], err)
	}
	return &Terminal{c: c, argv: argv[0]}, nil
}

// Wait waits for the command to end and returns its exit code; a command
// that could not be started is an error.
func (t *Terminal) Wait() (int, error) {
	resp, err := receive(context.Background(), t.c)
	if err != nil {
		return -1, fmt.Errorf("terminal %s: %w", t.argv, err)
	}
	if resp.Error != "" {
		return -1, fmt.Errorf("terminal %s: %s", t.argv, resp.Error)
	}
	return resp.Exit, nil
}

// Kill hangs up: the container's init kills the command's process group
// (its session: the shell and the jobs it started). Wait then returns.
func (t *Terminal) Kill() error { return t.c.Close() }

// stdio is the three descriptors an Exec'd command gets, and the copying
// between them and readers and writers that are not files.
type stdio struct {
	child  [3]*os.File
	ours   []*os.File // opened here for the child; closed once sent
	pipes  []*os.File // our ends of the pipes
	copies sync.WaitGroup
}

func newStdio(stdin io.Reader, stdout, stderr io.Writer) (*stdio, error) {
	s := &stdio{}
	var err error
	switch in := stdin.(type) {
	case nil:
		s.child[0], err = s.open(os.DevNull, os.O_RDONLY)
	case *os.File:
		s.child[0] = in
	default:
		var r, w *os.File
		if r, w, err = os.Pipe(); err == nil {
			s.child[0], s.ours, s.pipes = r, append(s.ours, r), append(s.pipes, w)
			go func() {
				_, _ = io.Copy(w, in)
				w.Close()
			}()
		}
	}
	if err == nil {
		s.child[1], err = s.output(stdout)
	}
	if err == nil && sameWriter(stdout, stderr) {
		s.child[2] = s.child[1]
	} else if err == nil {
		s.child[2], err = s.output(stderr)
	}
	if err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

func (s *stdio) open(name string, flag int) (*os.File, error) {
	f, err := os.OpenFile(name, flag, 0)
	if err == nil {
		s.ours = append(s.ours, f)
	}
	return f, err
}

func (s *stdio) output(w io.Writer) (*os.File, error) {
	switch out := w.(type) {
	case nil:
		return s.open(os.DevNull, os.O_WRONLY)
	case *os.File:
		return out, nil
	}
	r, wr, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	s.ours, s.pipes = append(s.ours, wr), append(s.pipes, r)
	s.copies.Add(1)
	go func() {
		defer s.copies.Done()
		_, _ = io.Copy(w, r)
	}()
	return wr, nil
}

// sameWriter reports whether stdout and stderr are one writer, which then
// gets one pipe (two copiers would write to it concurrently).
func sameWriter(a, b io.Writer) (same bool) {
	defer func() {
		if recover() != nil { // an incomparable dynamic type
			same = false
		}
	}()
	return a != nil && a == b
}

// closeChildEnds closes our copies of what the command got, so that its
// output pipes reach EOF when it (and whatever inherited them) is done.
func (s *stdio) closeChildEnds() {
	for _, f := range s.ours {
		f.Close()
	}
}

// wait waits for the output to be copied.
func (s *stdio) wait(ctx context.Context) error {
	copied := make(chan struct{})
	go func() {
		s.copies.Wait()
		close(copied)
	}()
	select {
	case <-copied:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *stdio) close() {
	s.closeChildEnds()
	for _, f := range s.pipes {
		f.Close()
	}
}
