package pve

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// A VM's serial console, as PVE's own xterm.js page reaches it: POST
// termproxy starts a termproxy on the node (running `qm terminal`), which
// waits for one client on a port with a one-time ticket; GET vncwebsocket
// upgrades to a WebSocket that pveproxy joins to that port. Over it:
//
//   - the client's first message is "USER:TICKET\n", which termproxy
//     checks with PVE, answering "OK";
//   - from then on the client sends "0:LEN:DATA" (LEN: DATA's length in
//     bytes) for what is typed, "1:COLS:ROWS:" for a new size and "2" to
//     keep the connection alive (termproxy drops a client idle for five
//     minutes); every other byte is ignored. termproxy reads the
//     messages as one byte stream: message boundaries mean nothing;
//   - the server sends the terminal's output as it is, unframed.
//
// (README and termproxy/src/main.rs of proxmox/pve-xtermjs, and its
// xterm.js client, src/www/main.js.)

// TermProxy is what POST termproxy answers.
type TermProxy struct {
	Port   int
	Ticket string // the one-time VNC ticket: a secret
	User   string // whom the ticket is for
	UPID   string // the termproxy task
}

// TermProxy starts a termproxy for the serial console of VM vmid on node.
func (c *Client) TermProxy(ctx context.Context, node string, vmid int) (TermProxy, error) {
	var w struct {
		Port   number `json:"port"`
		Ticket string `json:"ticket"`
		User   string `json:"user"`
		UPID   string `json:"upid"`
	}
	if err := c.do(ctx, http.MethodPost, vmPath(node, vmid, "/termproxy"), nil, &w); err != nil {
		return TermProxy{}, err
	}
	if w.Port <= 0 || w.Ticket == "" || w.User == "" {
		return TermProxy{}, fmt.Errorf("pve: POST %s: an answer without port, ticket or user", vmPath(node, vmid, "/termproxy"))
	}
	return TermProxy{Port: int(w.Port), Ticket: w.Ticket, User: w.User, UPID: w.UPID}, nil
}

// termPing is how often an open terminal tells termproxy it is alive,
// as PVE's client does: well within its five minutes.
const termPing = 30 * time.Second

// Terminal opens the serial console of VM vmid on node at the given size:
// a termproxy, the WebSocket to it, and the ticket handshake. ctx bounds
// the opening.
func (c *Client) Terminal(ctx context.Context, node string, vmid int, cols, rows int) (*Terminal, error) {
	tp, err := c.TermProxy(ctx, node, vmid)
	if err != nil {
		return nil, err
	}
	path := vmPath(node, vmid, "/vncwebsocket")
	// The ticket goes in the URL because PVE takes it there; it is good
	// for this one connection only, and no error or log shows the URL.
	target := c.base + path + "?" + encodeForm(url.Values{"port": {strconv.Itoa(tp.Port)}, "vncticket": {tp.Ticket}})
	ws, resp, err := websocket.Dial(ctx, target, &websocket.DialOptions{
		HTTPClient:   c.http,
		HTTPHeader:   http.Header{"Authorization": {c.auth}},
		Subprotocols: []string{"binary"},
	})
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its text has the URL, and so the ticket
		}
		status := ""
		if resp != nil {
			status = " (" + resp.Status + ")"
		}
		return nil, fmt.Errorf("pve: GET %s%s: %w", path, status, err)
	}
	ws.SetReadLimit(-1) // the terminal's output comes as it comes
	t := &Terminal{ws: ws, stop: make(chan struct{})}
	if err := t.login(ctx, tp); err != nil {
		_ = ws.CloseNow() // the login failed; nothing to tell termproxy
		return nil, fmt.Errorf("pve: termproxy of VM %d on %s: %w", vmid, node, err)
	}
	if err := t.Resize(cols, rows); err != nil {
		t.Close()
		return nil, err
	}
	go t.keepAlive()
	return t, nil
}

// Terminal is an open termproxy session.
type Terminal struct {
	ws      *websocket.Conn
	pending []byte // output read with the handshake's answer
	wmu     sync.Mutex
	stop    chan struct{}
	once    sync.Once
}

// login sends the ticket line and reads termproxy's "OK".
func (t *Terminal) login(ctx context.Context, tp TermProxy) error {
	if err := t.ws.Write(ctx, websocket.MessageBinary, []byte(tp.User+":"+tp.Ticket+"\n")); err != nil {
		return err
	}
	var got []byte
	for len(got) < 2 {
		_, b, err := t.ws.Read(ctx)
		if err != nil {
			return fmt.Errorf("no answer to the ticket: %w", err)
		}
		got = append(got, b...)
	}
	if string(got[:2]) != "OK" {
		return errors.New("the ticket was refused")
	}
	t.pending = got[2:]
	return nil
}

// Read reads what the terminal shows; io.EOF once termproxy has closed.
func (t *Terminal) Read(b []byte) (int, error) {
	for len(t.pending) == 0 {
		_, msg, err := t.ws.Read(context.Background())
		if err != nil {
			if websocket.CloseStatus(err) != -1 || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				return 0, io.EOF
			}
			return 0, err
		}
		t.pending = msg
	}
	n := copy(b, t.pending)
	t.pending = t.pending[n:]
	return n, nil
}

// Write sends what is typed, as one data message.
func (t *Terminal) Write(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	msg := make([]byte, 0, len(b)+16)
	msg = append(msg, "0:"...)
	msg = strconv.AppendInt(msg, int64(len(b)), 10)
	msg = append(msg, ':')
	msg = append(msg, b...)
	if err := t.send(msg); err != nil {
		return 0, err
	}
	return len(b), nil
}

// Resize sends the terminal's new size.
func (t *Terminal) Resize(cols, rows int) error {
	if cols <= 0 || rows <= 0 {
		return fmt.Errorf("pve: terminal size %dx%d", cols, rows)
	}
	return t.send([]byte("1:" + strconv.Itoa(cols) + ":" + strconv.Itoa(rows) + ":"))
}

func (t *Terminal) send(msg []byte) error {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	return t.ws.Write(context.Background(), websocket.MessageBinary, msg)
}

func (t *Terminal) keepAlive() {
	tick := time.NewTicker(termPing)
	defer tick.Stop()
	for {
		select {
		case <-t.stop:
			return
		case <-tick.C:
			if t.send([]byte("2")) != nil {
				return
			}
		}
	}
}

// Close ends the session: termproxy then ends `qm terminal`.
func (t *Terminal) Close() error {
	var err error
	t.once.Do(func() {
		close(t.stop)
		err = t.ws.Close(websocket.StatusNormalClosure, "")
	})
	return err
}
