package proxmox_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/engine"
	"github.com/holdfast/holdfast/internal/engine/proxmox/pveemu"
	"github.com/holdfast/holdfast/internal/engine/proxmox/pvetest"
)

// The console of an instance on Proxmox is PVE's own serial console,
// through termproxy and vncwebsocket as PVE's xterm.js page opens it;
// against the emulator's stand-in, its shell knows the VM's name and
// follows the terminal's size, and typing exit ends it.
func TestConsoleRelaysTermproxy(t *testing.T) {
	clusters := clustersFor(t, examplePath("tasmanian"), pveemu.Config{Seed: 11, Durations: fast(5 * time.Millisecond)})
	path := pvetest.Spec(t, examplePath("tasmanian"), clusters, modes["tasmanian"])
	state := t.TempDir()
	converge(t, path, state, false, 2)
	c := open(t, path, state)
	defer c.Close()
	in := c.Desired.Instances[0]

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	con, err := c.Console(ctx, in.Name, engine.TermSize{Cols: 100, Rows: 30})
	if err != nil {
		t.Fatalf("Console: %v", err)
	}
	defer con.Close()
	out := &screen{t: t, r: con}
	out.expect(regexp.MustCompile(`root@` + regexp.QuoteMeta(in.Name) + `:~# $`))
	// Typed in pieces, as a person types: termproxy's messages form one
	// stream.
	for _, part := range []string{"host", "name", "\r"} {
		if _, err := con.Write([]byte(part)); err != nil {
			t.Fatal(err)
		}
	}
	out.expect(regexp.MustCompile(`hostname\r\n` + regexp.QuoteMeta(in.Name) + `\r\n`))
	if _, err := io.WriteString(con, "stty size\r"); err != nil {
		t.Fatal(err)
	}
	out.expect(regexp.MustCompile(`\r\n30 100\r\n`))
	if err := con.Resize(engine.TermSize{Cols: 132, Rows: 43}); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(con, "stty size\r"); err != nil {
		t.Fatal(err)
	}
	out.expect(regexp.MustCompile(`\r\n43 132\r\n`))
	if _, err := io.WriteString(con, "exit\r"); err != nil {
		t.Fatal(err)
	}
	if rest, err := io.ReadAll(con); err != nil || !strings.Contains(string(rest), "logout") {
		t.Errorf("after exit the console reads %q, %v; want logout, then EOF", rest, err)
	}

	// termproxy's answer, as PVE gives it.
	tp, err := clusters[in.Site].API.TermProxy(ctx, in.Node, in.VMID)
	if err != nil {
		t.Fatal(err)
	}
	if tp.Port < 5900 || tp.Ticket == "" || !strings.Contains(tp.User, "@") || tp.UPID == "" {
		t.Errorf("termproxy answered %+v", tp)
	}

	// A stopped VM has no console.
	if err := clusters[in.Site].API.Stop(ctx, in.Node, in.VMID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Console(ctx, in.Name, engine.DefaultTermSize); !errors.Is(err, engine.ErrNoConsole) {
		t.Errorf("the console of a stopped VM: %v, want ErrNoConsole", err)
	}
	if _, err := c.Console(ctx, "no-such-instance", engine.DefaultTermSize); !errors.Is(err, engine.ErrNoConsole) {
		t.Errorf("the console of no instance: %v, want ErrNoConsole", err)
	}
}

// screen reads a console until what it showed matches.
type screen struct {
	t    *testing.T
	r    io.Reader
	seen bytes.Buffer
}

func (s *screen) expect(re *regexp.Regexp) {
	s.t.Helper()
	type result struct {
		seen []byte
		err  error
	}
	got := make(chan result, 1)
	seen := bytes.Clone(s.seen.Bytes())
	go func() {
		buf := make([]byte, 4096)
		for !re.Match(seen) {
			n, err := s.r.Read(buf)
			seen = append(seen, buf[:n]...)
			if err != nil {
				got <- result{seen, err}
				return
			}
		}
		got <- result{seen, nil}
	}()
	select {
	case r := <-got:
		if r.err != nil {
			s.t.Fatalf("waiting for %q: %v; the console showed %q", re, r.err, r.seen)
		}
	case <-time.After(10 * time.Second):
		s.t.Fatalf("after 10s: waiting for %q", re)
	}
	s.seen.Reset()
}
