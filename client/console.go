package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"github.com/coder/websocket"

	"github.com/holdfast/holdfast/api"
)

// Console is an open terminal on an instance: reads are what it shows,
// writes what is typed. It is safe to read in one goroutine while others
// write and resize.
type Console struct {
	ws      *websocket.Conn
	pending []byte
	wmu     sync.Mutex
	ended   *ConsoleEnded // set by Read when the server has closed it
}

// OpenConsole opens a terminal of cols x rows on a running instance
// (GET .../instances/{instance}/console, a WebSocket). ctx bounds the
// opening only. The handshake is authenticated as every request is: a
// bearer token, refreshed once if refused, or the API key's signature.
func (c *Client) OpenConsole(ctx context.Context, tenant, instance string, cols, rows int) (*Console, error) {
	k := call{method: http.MethodGet, path: "/v1/tenants/{}/instances/{}/console", elems: []string{tenant, instance},
		query: url.Values{"cols": {strconv.Itoa(cols)}, "rows": {strconv.Itoa(rows)}}}
	u, err := c.url(k)
	if err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		a := &authorizing{c: c, rt: c.hc.Transport}
		ws, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{
			HTTPClient: &http.Client{Transport: a, CheckRedirect: c.hc.CheckRedirect},
			HTTPHeader: http.Header{"User-Agent": {c.ua}},
		})
		status, problem := answered(resp)
		switch {
		case err == nil:
			ws.SetReadLimit(-1) // the terminal's output comes as it comes
			return &Console{ws: ws}, nil
		case status == http.StatusUnauthorized && a.token != "" && attempt == 0 && c.canRefresh():
			if err := c.refreshAfter(ctx, a.token); err != nil {
				return nil, err
			}
			continue
		case problem != nil:
			return nil, problem
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // it would name the request a second time
		}
		return nil, fmt.Errorf("GET %s: %w", k.path, err)
	}
}

// answered is the status of a WebSocket handshake's answer and, when it
// refused the upgrade, its problem; it closes what is left of the body.
func answered(resp *http.Response) (int, *api.Problem) {
	if resp == nil {
		return 0, nil
	}
	if resp.Body == nil {
		resp.Body = http.NoBody
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return resp.StatusCode, nil
	}
	return resp.StatusCode, problemOf(resp)
}

// authorizing adds the client's credentials to each request it sends:
// the WebSocket handshake is made by the WebSocket library.
type authorizing struct {
	c     *Client
	rt    http.RoundTripper
	token string // the access token sent, if any
}

func (a *authorizing) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	token, err := a.c.authorize(r.Context(), r, nil)
	if err != nil {
		return nil, err
	}
	a.token = token
	rt := a.rt
	if rt == nil {
		rt = http.DefaultTransport
	}
	return rt.RoundTrip(r)
}

// Read reads what the terminal shows; io.EOF once the console has
// ended (the shell exited, the instance stopped, the session ended: Ended
// says which).
func (t *Console) Read(b []byte) (int, error) {
	for len(t.pending) == 0 {
		if t.ended != nil {
			return 0, io.EOF
		}
		typ, msg, err := t.ws.Read(context.Background())
		if err != nil {
			if websocket.CloseStatus(err) != -1 || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				t.ended = &ConsoleEnded{Status: int(websocket.CloseStatus(err)), Reason: closeReason(err)}
				return 0, io.EOF
			}
			return 0, err
		}
		if typ == websocket.MessageBinary {
			t.pending = msg
		}
	}
	n := copy(b, t.pending)
	t.pending = t.pending[n:]
	return n, nil
}

// Ended says how the console ended once Read has returned io.EOF; nil
// before. Call it from the goroutine that reads.
func (t *Console) Ended() *ConsoleEnded { return t.ended }

// ConsoleEnded is how the server closed a console.
type ConsoleEnded struct {
	Status int // the WebSocket close status; -1 when the connection just ended
	Reason string
}

func (e *ConsoleEnded) Error() string {
	if e.Reason == "" {
		return "the console ended"
	}
	return "the console ended: " + e.Reason
}

func closeReason(err error) string {
	var ce websocket.CloseError
	if errors.As(err, &ce) {
		return ce.Reason
	}
	return ""
}

// Write sends what is typed.
func (t *Console) Write(b []byte) (int, error) {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	if err := t.ws.Write(context.Background(), websocket.MessageBinary, b); err != nil {
		return 0, err
	}
	return len(b), nil
}

// Resize tells the terminal its new size.
func (t *Console) Resize(cols, rows int) error {
	b, err := json.Marshal(api.ConsoleControl{Resize: &api.TermSize{Cols: cols, Rows: rows}})
	if err != nil {
		return err
	}
	if errs := api.Check(api.TermSize{Cols: cols, Rows: rows}); len(errs) > 0 {
		return fmt.Errorf("terminal size %dx%d: %s %s", cols, rows, errs[0].Field, strings.TrimSpace(errs[0].Message))
	}
	t.wmu.Lock()
	defer t.wmu.Unlock()
	return t.ws.Write(context.Background(), websocket.MessageText, b)
}

// Close leaves the console; the server ends the session.
func (t *Console) Close() error {
	return t.ws.Close(websocket.StatusNormalClosure, "the client left")
}
