package client

import (
	"bytes"
	"context"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
	"golang.org/x/term"
)

// lockedBuffer is what the console showed, written by Attach and read by
// the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Attach on a real terminal: raw while attached and restored after, its
// size at the start and after the window changes, what is typed reaching
// the instance, and Ctrl-] leaving.
func TestAttachOnATerminal(t *testing.T) {
	e := newConsoleEnv(t)
	con, err := e.admin.OpenConsole(e.ctx, "acme", "web", 80, 24)
	if err != nil {
		t.Fatal(err)
	}
	defer con.Close()
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	defer tty.Close()
	if err := pty.Setsize(ptmx, &pty.Winsize{Cols: 100, Rows: 30}); err != nil {
		t.Fatal(err)
	}
	before, err := term.GetState(int(tty.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	out := &lockedBuffer{}
	done := make(chan error, 1)
	go func() { done <- con.Attach(context.Background(), tty, out) }()
	shows := func(want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(out.String(), want) {
			if time.Now().After(deadline) {
				t.Fatalf("after 10s the console showed %q, not %q", out.String(), want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	typeIn := func(s string) {
		t.Helper()
		if _, err := ptmx.WriteString(s); err != nil {
			t.Fatal(err)
		}
	}
	// The size at the start; raw mode passes the carriage return as it is.
	typeIn("stty size\r")
	shows("\r\n30 100\r\n")
	if during, err := term.GetState(int(tty.Fd())); err != nil || *during == *before {
		t.Errorf("the terminal is not raw while attached (%v)", err)
	}
	if err := pty.Setsize(ptmx, &pty.Winsize{Cols: 132, Rows: 43}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Kill(os.Getpid(), syscall.SIGWINCH); err != nil { // as the terminal's window would
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "\r\n43 132\r\n") { // the resize races the command: ask again
		if time.Now().After(deadline) {
			t.Fatalf("after 10s the console showed %q", out.String())
		}
		typeIn("stty size\r")
		time.Sleep(20 * time.Millisecond)
	}
	typeIn("hostname\r")
	shows("\r\n" + e.web.Spec + "\r\n")
	typeIn(string([]byte{EscapeKey}))
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Attach after Ctrl-]: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Ctrl-] did not leave")
	}
	after, err := term.GetState(int(tty.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	if *after != *before {
		t.Errorf("the terminal was not restored")
	}
}
