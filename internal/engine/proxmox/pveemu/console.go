package pveemu

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/coder/websocket"
)

// The stand-in for a VM's serial console, as PVE serves it to its xterm.js
// page: POST termproxy answers a port and a one-time ticket (PVE starts a
// termproxy running `qm terminal`, waiting ten seconds for its client);
// GET vncwebsocket, with the port and the ticket, upgrades to a WebSocket
// (subprotocol "binary") joined to it. termproxy's protocol runs over it
// as one byte stream (messages may split or join anything): the client
// sends "USER:TICKET\n" and is answered "OK", then sends "0:LEN:DATA"
// typed, "1:COLS:ROWS:" resizes and "2" pings; every other byte is
// ignored. What the terminal shows comes back unframed.
//
// Behind it is a fake shell, not a VM's: it echoes what is typed, as a
// terminal does, and runs a line as a command: hostname (the VM's name),
// stty size, echo, exit; anything else is not found. It ends when the
// client leaves or types exit.

var consoleRoutes = []route{
	{"POST", "/nodes/{node}/qemu/{vmid}/termproxy", paramsTermproxy, (*Emulator).postTermproxy},
}

var paramsTermproxy = append(append([]param(nil), paramsVM...), param{name: "serial", kind: kString, enum: []string{"serial0", "serial1", "serial2", "serial3"}})

// TaskVNCProxy is the type of a termproxy's task.
const TaskVNCProxy = "vncproxy"

// termproxyWait is how long a termproxy waits for its client, as PVE's.
const termproxyWait = 10 * time.Second

// pendingConsole is a termproxy waiting for its client.
type pendingConsole struct {
	node    string
	vmid    int
	user    string
	ticket  string
	expires time.Time
}

func (e *Emulator) postTermproxy(c *call) (any, error) {
	v, err := e.lookupVM(c)
	if err != nil {
		return nil, err
	}
	if !v.running {
		return nil, fail("VM %d not running", v.vmid)
	}
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	ticket := "PVEVNC:" + strconv.FormatInt(c.now.Unix(), 16) + "::" + base64.StdEncoding.EncodeToString(b[:])
	if e.consoles == nil {
		e.consoles = map[int]*pendingConsole{}
	}
	port := 5900
	for ; e.consoles[port] != nil && port < 5999; port++ {
	}
	if e.consoles[port] != nil {
		return nil, fail("unable to find free port (5900-5999)")
	}
	e.consoles[port] = &pendingConsole{node: v.node, vmid: v.vmid, user: c.user, ticket: ticket, expires: c.now.Add(termproxyWait)}
	upid := e.startTask(c, v.node, TaskVNCProxy, strconv.Itoa(v.vmid), nil, func(time.Time) error { return nil })
	return map[string]any{"port": strconv.Itoa(port), "ticket": ticket, "user": c.user, "upid": upid}, nil
}

// vncWebsocket joins a client to the termproxy its port and ticket name.
func (e *Emulator) vncWebsocket(w http.ResponseWriter, r *http.Request) {
	user, err := e.authenticate(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	port, _ := strconv.Atoi(r.URL.Query().Get("port"))
	vmid, _ := strconv.Atoi(r.PathValue("vmid"))
	ticket := r.URL.Query().Get("vncticket")
	e.mu.Lock()
	p := e.consoles[port]
	ok := p != nil && p.node == r.PathValue("node") && p.vmid == vmid && p.user == user &&
		time.Now().Before(p.expires) && subtle.ConstantTimeCompare([]byte(ticket), []byte(p.ticket)) == 1
	if ok {
		delete(e.consoles, port) // one client per termproxy
	}
	var name string
	if v := e.vms[vmid]; ok && v != nil {
		name = v.conf["name"]
	}
	e.mu.Unlock()
	if !ok {
		writeError(w, r, &apiError{status: http.StatusUnauthorized, body: none, msg: "permission denied - invalid vncticket\n"})
		return
	}
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{"binary"}})
	if err != nil {
		return // Accept has answered
	}
	ws.SetReadLimit(-1)
	in, feed := io.Pipe()
	go func() { // the WebSocket's messages, as termproxy reads them: one stream
		for {
			_, b, err := ws.Read(context.Background())
			if err != nil {
				feed.CloseWithError(err)
				return
			}
			if _, err := feed.Write(b); err != nil {
				return
			}
		}
	}()
	sh := &fakeShell{name: name, cols: 80, rows: 24, out: func(s string) error {
		return ws.Write(context.Background(), websocket.MessageBinary, []byte(s))
	}}
	err = termproxy(bufio.NewReader(in), p, sh)
	in.Close()
	if err != nil {
		_ = ws.Close(websocket.StatusInternalError, err.Error())
		return
	}
	_ = ws.Close(websocket.StatusNormalClosure, "")
}

// termproxy checks the ticket line, answers OK, and feeds the shell the
// client's messages until either ends.
func termproxy(in *bufio.Reader, p *pendingConsole, sh *fakeShell) error {
	line, err := in.ReadString('\n')
	if err != nil {
		return fmt.Errorf("failed reading ticket: %w", err)
	}
	user, ticket, ok := strings.Cut(strings.TrimSuffix(line, "\n"), ":")
	if !ok || user != p.user || subtle.ConstantTimeCompare([]byte(ticket), []byte(p.ticket)) != 1 {
		return errors.New("invalid authentication")
	}
	if err := sh.out("OK"); err != nil {
		return err
	}
	if err := sh.prompt(); err != nil {
		return err
	}
	for {
		typ, err := in.ReadByte()
		if err != nil {
			return nil //nolint:nilerr // the client left: termproxy ends without an error
		}
		switch typ {
		case '0':
			if !skipColon(in) {
				continue
			}
			n, ok := termNumber(in)
			if !ok {
				continue
			}
			data := make([]byte, n)
			if _, err := io.ReadFull(in, data); err != nil {
				return nil //nolint:nilerr // the client left mid-message
			}
			if done, err := sh.typed(data); done || err != nil {
				return err
			}
		case '1':
			if !skipColon(in) {
				continue
			}
			cols, ok1 := termNumber(in)
			rows, ok2 := termNumber(in)
			if ok1 && ok2 {
				sh.cols, sh.rows = cols, rows
			}
		default:
			// A ping ("2"), or a byte of nothing: ignored.
		}
	}
}

func skipColon(in *bufio.Reader) bool {
	b, err := in.ReadByte()
	return err == nil && b == ':'
}

// termNumber reads digits up to a colon, as termproxy's remove_number (which
// gives up after 20 bytes without one).
func termNumber(in *bufio.Reader) (int, bool) {
	var digits []byte
	for len(digits) <= 20 {
		b, err := in.ReadByte()
		if err != nil {
			return 0, false
		}
		if b == ':' {
			n, err := strconv.Atoi(string(digits))
			return n, err == nil && n >= 0
		}
		digits = append(digits, b)
	}
	return 0, false
}

// fakeShell is the console's stand-in program: a line discipline that
// echoes, and a few commands.
type fakeShell struct {
	name       string
	cols, rows int
	line       []byte
	out        func(string) error
}

func (s *fakeShell) prompt() error { return s.out("root@" + s.name + ":~# ") }

// typed takes what the client typed; done once the shell has exited.
func (s *fakeShell) typed(b []byte) (done bool, err error) {
	for _, c := range b {
		switch c {
		case '\r', '\n':
			if err := s.out("\r\n"); err != nil {
				return true, err
			}
			cmd := strings.TrimSpace(string(s.line))
			s.line = s.line[:0]
			if cmd == "exit" || cmd == "logout" {
				return true, s.out("logout\r\n")
			}
			if err := s.run(cmd); err != nil {
				return true, err
			}
			if err := s.prompt(); err != nil {
				return true, err
			}
		case 0x7f, '\b':
			if len(s.line) > 0 {
				s.line = s.line[:len(s.line)-1]
				if err := s.out("\b \b"); err != nil {
					return true, err
				}
			}
		case 0x03: // ^C
			s.line = s.line[:0]
			if err := s.out("^C\r\n"); err != nil {
				return true, err
			}
			if err := s.prompt(); err != nil {
				return true, err
			}
		default:
			s.line = append(s.line, c)
			if err := s.out(string(c)); err != nil {
				return true, err
			}
		}
	}
	return false, nil
}

func (s *fakeShell) run(cmd string) error {
	name, args, _ := strings.Cut(cmd, " ")
	switch name {
	case "":
		return nil
	case "hostname":
		return s.out(s.name + "\r\n")
	case "stty":
		if args == "size" {
			return s.out(fmt.Sprintf("%d %d\r\n", s.rows, s.cols))
		}
		return s.out("stty: only 'stty size' is emulated\r\n")
	case "echo":
		return s.out(args + "\r\n")
	}
	return s.out("-bash: " + name + ": command not found\r\n")
}
