package pveemu_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/holdfast/holdfast/internal/engine/proxmox/pveemu"
)

// The console stand-in: termproxy's answer, vncwebsocket's checks of the
// ticket (right VM, right port, once), termproxy's login line and its
// stream of messages, split and joined anyhow, with bytes it ignores.
func TestTermproxyStandIn(t *testing.T) {
	_, srv := newServer(t, pveemu.Config{Seed: 1, Durations: map[string]time.Duration{pveemu.TaskClone: time.Millisecond, pveemu.TaskStart: time.Millisecond}})
	if st, body := call(t, srv, "POST", "/nodes/pve1/qemu/9000/clone", "newid=100&name=web"); st != 200 {
		t.Fatalf("clone: %d %v", st, body)
	}
	until(t, func() bool {
		_, body := call(t, srv, "GET", "/nodes/pve1/qemu/100/config", "")
		d, _ := body["data"].(map[string]any)
		return d != nil && d["lock"] == nil
	})
	if st, _, b := send(t, srv, "POST", "/nodes/pve1/qemu/100/termproxy", ""); st != 500 || !strings.Contains(string(b), "VM 100 not running") {
		t.Errorf("termproxy of a stopped VM: %d %s", st, b)
	}
	if st, body := call(t, srv, "POST", "/nodes/pve1/qemu/100/status/start", ""); st != 200 {
		t.Fatalf("start: %d %v", st, body)
	}
	until(t, func() bool {
		_, body := call(t, srv, "GET", "/nodes/pve1/qemu/100/status/current", "")
		d, _ := body["data"].(map[string]any)
		return d != nil && d["status"] == "running"
	})
	termproxy := func() (port, ticket, user string) {
		t.Helper()
		st, body := call(t, srv, "POST", "/nodes/pve1/qemu/100/termproxy", "")
		d, _ := body["data"].(map[string]any)
		if st != 200 || d == nil {
			t.Fatalf("termproxy: %d %v", st, body)
		}
		port, _ = d["port"].(string)
		ticket, _ = d["ticket"].(string)
		user, _ = d["user"].(string)
		if port == "" || ticket == "" || user != "root@pam!t" || !strings.Contains(d["upid"].(string), ":vncproxy:100:") {
			t.Fatalf("termproxy answered %v", d)
		}
		return port, ticket, user
	}
	dial := func(vmid, port, ticket string) (*websocket.Conn, int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		q := url.Values{"port": {port}, "vncticket": {ticket}}
		ws, resp, err := websocket.Dial(ctx, srv.URL+pveemu.APIPrefix+"/nodes/pve1/qemu/"+vmid+"/vncwebsocket?"+q.Encode(),
			&websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {auth}}, Subprotocols: []string{"binary"}})
		status := 0
		if resp != nil {
			status = resp.StatusCode
			if resp.Body != nil {
				resp.Body.Close()
			}
		}
		if err == nil {
			t.Cleanup(func() { _ = ws.CloseNow() })
			if ws.Subprotocol() != "binary" {
				t.Errorf("subprotocol %q", ws.Subprotocol())
			}
		}
		return ws, status
	}
	port, ticket, user := termproxy()
	if _, st := dial("100", port, ticket+"x"); st != http.StatusUnauthorized {
		t.Errorf("a wrong ticket: %d", st)
	}
	if _, st := dial("9000", port, ticket); st != http.StatusUnauthorized {
		t.Errorf("another VM's ticket: %d", st)
	}
	ws, st := dial("100", port, ticket)
	if ws == nil {
		t.Fatalf("the right ticket: %d", st)
	}
	if _, st := dial("100", port, ticket); st != http.StatusUnauthorized {
		t.Errorf("a ticket used again: %d", st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	write := func(ws *websocket.Conn, typ websocket.MessageType, s string) {
		t.Helper()
		if err := ws.Write(ctx, typ, []byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	var seen strings.Builder
	expect := func(ws *websocket.Conn, want string) {
		t.Helper()
		for !strings.Contains(seen.String(), want) {
			_, b, err := ws.Read(ctx)
			if err != nil {
				t.Fatalf("waiting for %q: %v; seen %q", want, err, seen.String())
			}
			seen.Write(b)
		}
		seen.Reset()
	}
	// The login line in two messages; text and binary alike, as
	// browsers send strings.
	write(ws, websocket.MessageText, user+":"+ticket[:5])
	write(ws, websocket.MessageBinary, ticket[5:]+"\n")
	expect(ws, "OK")
	expect(ws, "root@web:~# ")
	// A stray byte and a ping are ignored; a data message split across
	// three WebSocket messages, and a resize joined to the next one.
	write(ws, websocket.MessageText, "x20:9:hos")
	write(ws, websocket.MessageText, "tn")
	write(ws, websocket.MessageText, "ame\r1:120:40:0:10:stty size\r")
	expect(ws, "hostname\r\nweb\r\n")
	expect(ws, "stty size\r\n40 120\r\n")
	write(ws, websocket.MessageBinary, "0:5:exit\r")
	expect(ws, "logout\r\n")
	if _, _, err := ws.Read(ctx); websocket.CloseStatus(err) != websocket.StatusNormalClosure {
		t.Errorf("after exit: %v, want a normal closure", err)
	}

	// A wrong login line: no OK, the connection ends.
	port, ticket, _ = termproxy()
	ws, _ = dial("100", port, ticket)
	write(ws, websocket.MessageBinary, "root@pam!t:not-the-ticket\n")
	if _, b, err := ws.Read(ctx); err == nil || strings.HasPrefix(string(b), "OK") {
		t.Errorf("a wrong login line was answered %q, %v", b, err)
	}
}

// until polls cond, at most 5 seconds.
func until(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("not after 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
