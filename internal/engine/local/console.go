package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/internal/engine"
	"github.com/holdfast/holdfast/internal/engine/local/container"
)

var _ engine.Consoler = (*Engine)(nil)

// loginShell is what a console runs: every instance has a POSIX shell
// (its image's, or the host's file system), and a login shell reads the
// profile a person expects.
var loginShell = []string{"/bin/sh", "-l"}

// Console opens a pseudo-terminal on this host whose subsidiary side is
// the controlling terminal of a login shell run inside the instance
// exactly as Exec runs commands there: in all its namespaces (so
// `hostname` prints the instance's name), its cgroup and its root.
func (e *Engine) Console(ctx context.Context, instance string, size engine.TermSize) (engine.Console, error) {
	dir, err := e.made(instance)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", engine.ErrNoConsole, err)
	}
	if !size.Valid() {
		size = engine.DefaultTermSize
	}
	ptmx, tty, err := openPTY()
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	// The size is set before the shell starts, so that its first prompt
	// is laid out for it.
	if err := setSize(ptmx, size); err != nil {
		ptmx.Close()
		tty.Close()
		return nil, fmt.Errorf("console: %w", err)
	}
	t, err := container.StartTerminal(ctx, dir, loginShell, tty) // closes tty
	if errors.Is(err, container.ErrNotRunning) {
		ptmx.Close()
		return nil, fmt.Errorf("instance %s: %w: it is not running", instance, engine.ErrNoConsole)
	}
	if err != nil {
		ptmx.Close()
		return nil, err
	}
	c := &ptyConsole{ptmx: ptmx, t: t, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		_, _ = t.Wait() // the exit code means nothing to a console
	}()
	return c, nil
}

// ptyConsole is the controlling side of a console's pseudo-terminal.
type ptyConsole struct {
	ptmx *os.File
	t    *container.Terminal
	done chan struct{} // closed when the shell has ended
	once sync.Once
}

// Read reads what the terminal shows. Once the shell and everything that
// held the terminal are gone, Linux answers EIO: that is the end of the
// console, and reads as io.EOF, as does a read after Close.
func (c *ptyConsole) Read(b []byte) (int, error) {
	n, err := c.ptmx.Read(b)
	if err != nil && (errors.Is(err, syscall.EIO) || errors.Is(err, os.ErrClosed)) {
		err = io.EOF
	}
	return n, err
}

func (c *ptyConsole) Write(b []byte) (int, error) { return c.ptmx.Write(b) }

func (c *ptyConsole) Resize(size engine.TermSize) error {
	if !size.Valid() {
		return fmt.Errorf("console: terminal size %dx%d", size.Cols, size.Rows)
	}
	return setSize(c.ptmx, size)
}

// Close hangs up: the instance's init kills the shell's process group,
// and the terminal is released once the shell is gone.
func (c *ptyConsole) Close() error {
	var err error
	c.once.Do(func() {
		err = c.t.Kill()
		<-c.done
		err = errors.Join(err, c.ptmx.Close())
	})
	return err
}

// openPTY opens a pseudo-terminal whose controlling side is in
// non-blocking mode, on Go's poller: pty.Open hands it back blocking (it
// takes the descriptor with File.Fd), and a blocking read could be ended
// neither by Close nor by a deadline.
func openPTY() (ptmx, tty *os.File, err error) {
	p, t, err := pty.Open()
	if err != nil {
		return nil, nil, err
	}
	fd, err := unix.FcntlInt(p.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	name := p.Name()
	p.Close()
	if err == nil {
		err = unix.SetNonblock(fd, true) // the open file's flag: the copy's too
	}
	if err != nil {
		t.Close()
		return nil, nil, err
	}
	return os.NewFile(uintptr(fd), name), t, nil
}

// setSize sets the terminal's window size (TIOCSWINSZ; the shell gets
// SIGWINCH). Not pty.Setsize: it takes the descriptor with File.Fd, which
// makes it blocking, and then Close could no longer end a pending Read.
func setSize(ptmx *os.File, s engine.TermSize) error {
	rc, err := ptmx.SyscallConn()
	if err != nil {
		return err
	}
	var ioctlErr error
	if err := rc.Control(func(fd uintptr) {
		ioctlErr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Col: s.Cols, Row: s.Rows})
	}); err != nil {
		return err
	}
	return ioctlErr
}
