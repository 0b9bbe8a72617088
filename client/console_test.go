package client

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/api"
	"github.com/holdfast/holdfast/internal/engine/proxmox/pvetest"
	"github.com/holdfast/holdfast/internal/server"
)

// consoleEnv is a control plane converging on emulated Proxmox clusters,
// with tenant acme's running instance web, its admin's client and a
// member's.
type consoleEnv struct {
	*testServer
	ctx   context.Context
	admin *Client
	web   *api.Instance
}

func newConsoleEnv(t *testing.T) *consoleEnv {
	t.Helper()
	path, _ := pvetest.Emulated(t, "../examples/tasmanian", 50)
	s, err := server.New(server.Config{SpecPath: path, StateDir: t.TempDir(), Rename: fmt.Sprintf("client%d", clouds.Add(1)), Realize: true, Resync: -1})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	ts := httptest.NewUnstartedServer(s.Handler())
	ts.Config.ErrorLog = log.New(io.Discard, "", 0)
	ts.StartTLS()
	t.Cleanup(func() {
		ts.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	})
	e := &testServer{t: t, s: s, ts: ts, clock: &clock{}, user: s.Bootstrap.User, pass: string(s.Bootstrap.Password.Expose())}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	admin, _ := e.admin()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	wait := func(op *api.Operation, err error) {
		t.Helper()
		must(err)
		op, err = admin.WaitOperation(ctx, op.ID)
		must(err)
		if op.Status != api.OpSucceeded {
			t.Fatalf("operation %+v", op)
		}
	}
	_, err = admin.CreateTenant(ctx, api.TenantCreate{Name: "acme"})
	must(err)
	_, err = admin.CreateTenantUser(ctx, "acme", api.RoleMember, api.UserCreate{Name: "alice", Password: "password-of-alice"})
	must(err)
	wait(admin.CreateNetwork(ctx, "acme", api.NetworkCreate{Name: "net"}))
	wait(admin.CreateInstance(ctx, "acme", api.InstanceCreate{Name: "web", Flavor: "burstable", Template: "debian-12", Network: "net"}))
	web, err := admin.GetInstance(ctx, "acme", "web")
	must(err)
	return &consoleEnv{testServer: e, ctx: ctx, admin: admin, web: web}
}

// A console through the client: a session's, refreshed when its access
// token has expired, and an API key's (the handshake signed); refusals
// come back as problems.
func TestOpenConsole(t *testing.T) {
	e := newConsoleEnv(t)
	ctx, admin, web := e.ctx, e.admin, e.web
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	var err error
	alice := e.client()
	_, err = alice.Login(ctx, api.LoginRequest{User: "alice", Password: "password-of-alice"})
	must(err)
	hostname := func(c *Client) {
		t.Helper()
		con, err := c.OpenConsole(ctx, "acme", "web", 80, 24)
		if err != nil {
			t.Fatalf("OpenConsole: %v", err)
		}
		defer con.Close()
		must(con.Resize(100, 30))
		_, err = io.WriteString(con, "hostname\rstty size\rexit\r")
		must(err)
		out, err := io.ReadAll(con) // to the end: exit ends it
		if err != nil {
			t.Errorf("reading to the end: %v", err)
		}
		if !strings.Contains(string(out), "\r\n"+web.Spec+"\r\n") || !strings.Contains(string(out), "\r\n30 100\r\n") {
			t.Errorf("the console showed %q", out)
		}
		if n, err := con.Read(make([]byte, 1)); n != 0 || err != io.EOF { //nolint:errorlint // Read's own io.EOF, as io.Reader promises
			t.Errorf("a read after the end: %d, %v", n, err)
		}
		if e := con.Ended(); e == nil || e.Status != 1000 || e.Reason == "" {
			t.Errorf("ended: %+v", e)
		}
	}
	hostname(alice)
	key, err := alice.CreateAPIKey(ctx, api.APIKeyCreate{Name: "cli"})
	must(err)
	hostname(e.client(WithAPIKey(key.ID, key.Secret)))

	// An expired access token is refreshed, as for any request.
	alice.mu.Lock()
	alice.sess.AccessToken = "expired." + alice.sess.AccessToken
	alice.mu.Unlock()
	hostname(alice)

	if _, err := admin.OpenConsole(ctx, "acme", "nope", 80, 24); !IsStatus(err, http.StatusNotFound) {
		t.Errorf("no such instance: %v", err)
	}
	if _, err := alice.OpenConsole(ctx, "acme", "web", 0, 24); !IsStatus(err, http.StatusBadRequest) {
		t.Errorf("a zero width: %v", err)
	}
}
