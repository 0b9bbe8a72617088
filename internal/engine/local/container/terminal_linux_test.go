package container

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// A terminal's shell runs in the container with the terminal as its
// controlling terminal, sized as the terminal is; hanging up kills its
// whole session, background jobs included, and the terminal then reads
// EOF.
func TestTerminalShellAndHangup(t *testing.T) {
	cfg := testConfig(t, "tty")
	start(t, cfg)

	ptmx, tty := openPTY(t)
	if err := unix.IoctlSetWinsize(int(tty.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Col: 100, Row: 30}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	term, err := StartTerminal(ctx, cfg.Dir, []string{"/bin/sh"}, tty)
	if err != nil {
		t.Fatalf("StartTerminal: %v", err)
	}
	waited := make(chan error, 1)
	go func() { _, err := term.Wait(); waited <- err }()

	// The markers are built by the shell, so that the echo of the typed
	// line cannot match them.
	type_(t, ptmx, `echo "M""1-$(cat /proc/sys/kernel/hostname)-$(stty size)-$TERM"`+"\n")
	expect(t, ptmx, regexp.MustCompile(`M1-tty-30 100-xterm-256color`))
	// Field 7 of stat is the controlling terminal's device: not 0.
	type_(t, ptmx, `echo "C""T-$(cut -d' ' -f7 /proc/$$/stat)"`+"\n")
	if m := expect(t, ptmx, regexp.MustCompile(`CT-(\d+)`)); m[1] == "0" {
		t.Errorf("the shell has no controlling terminal")
	}
	// A background job in a process group of its own, holding the
	// terminal.
	type_(t, ptmx, `sleep 600 & echo "B""G-$!"`+"\n")
	bg, _ := strconv.Atoi(expect(t, ptmx, regexp.MustCompile(`BG-(\d+)`))[1])
	if bg <= 1 {
		t.Fatalf("background job pid %d", bg)
	}

	if err := term.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	t.Logf("Wait after Kill: %v", <-waited) // the closed socket, or the exit
	// EIO comes only once nothing holds the terminal: the shell and its
	// background job are both gone.
	if err := ptmx.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	for {
		_, err := ptmx.Read(make([]byte, 4096))
		if errors.Is(err, unix.EIO) {
			break
		}
		if err != nil {
			t.Fatalf("after hangup the terminal reads %v, want EIO (something still holds it)", err)
		}
	}
	if _, err := StartTerminal(ctx, filepath.Join(t.TempDir(), "nothing"), []string{"/bin/sh"}, mustTTY(t)); !errors.Is(err, ErrNotRunning) {
		t.Errorf("StartTerminal without a container = %v, want ErrNotRunning", err)
	}
}

func mustTTY(t *testing.T) *os.File {
	t.Helper()
	_, tty := openPTY(t)
	return tty
}

// openPTY opens a pseudo-terminal whose controlling side is on Go's
// poller, so that deadlines work (pty.Open leaves it blocking).
func openPTY(t *testing.T) (ptmx, tty *os.File) {
	t.Helper()
	p, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	fd, err := unix.FcntlInt(p.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	p.Close()
	if err == nil {
		err = unix.SetNonblock(fd, true)
	}
	if err != nil {
		t.Fatal(err)
	}
	ptmx = os.NewFile(uintptr(fd), "ptmx")
	t.Cleanup(func() { ptmx.Close() })
	return ptmx, tty
}

func type_(t *testing.T, w io.Writer, s string) {
	t.Helper()
	if _, err := io.WriteString(w, s); err != nil {
		t.Fatal(err)
	}
}

// expect reads the terminal until re matches what it showed, for at most
// 10 seconds, and returns the match.
func expect(t *testing.T, f *os.File, re *regexp.Regexp) []string {
	t.Helper()
	if err := f.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	var seen bytes.Buffer
	buf := make([]byte, 4096)
	for {
		if m := re.FindStringSubmatch(seen.String()); m != nil {
			return m
		}
		n, err := f.Read(buf)
		seen.Write(buf[:n])
		if err != nil {
			t.Fatalf("waiting for %q: %v; the terminal showed %q", re, err, seen.String())
		}
	}
}
