package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/api"
	"github.com/holdfast/holdfast/client"
	"github.com/holdfast/holdfast/internal/server"
)

// cli runs the CLI in-process with stdin and returns stdout, stderr and
// the error.
func cli(t *testing.T, stdin string, args ...string) (string, string, error) {
	t.Helper()
	root := newRoot()
	var out, errOut bytes.Buffer
	root.SetIn(strings.NewReader(stdin))
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), errOut.String(), err
}

// mustCLI runs the CLI and fails the test when the command fails.
func mustCLI(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	out, errOut, err := cli(t, stdin, args...)
	if err != nil {
		t.Fatalf("holdfast %s: %v\n%s", strings.Join(args, " "), err, errOut)
	}
	return out
}

func decodeJSON[T any](t *testing.T, s string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("%v:\n%s", err, s)
	}
	return v
}

// remoteServer runs the real control plane (API only: nothing is
// realized, no root needed) behind a loopback TLS listener, with its
// certificate where a local server keeps it.
func remoteServer(t *testing.T) (url, password string) {
	t.Helper()
	state := t.TempDir()
	s, err := server.New(server.Config{SpecPath: "../../examples/tasmanian", StateDir: state, Rename: "clitest"})
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
	crt := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw})
	if err := os.WriteFile(filepath.Join(server.Dir(state, "clitest"), "tls.crt"), crt, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOLDFAST_STATE_DIR", state)
	return ts.URL, string(s.Bootstrap.Password.Expose())
}

// TestRemoteCLI: an operator logs in (trusting the local server's
// certificate), makes a tenant, lists it as JSON, makes an API key saved
// to a file; the key then logs in elsewhere and lists instances; a tenant
// admin gets their tenant as the default; problems are reported with
// their fields; logout forgets the session.
func TestRemoteCLI(t *testing.T) {
	url, password := remoteServer(t)
	dir := t.TempDir()
	adminCfg := filepath.Join(dir, "admin.json")
	t.Setenv("HOLDFAST_CONFIG", adminCfg)

	out := mustCLI(t, password+"\n", "login", url, "--user", "admin", "--password-stdin")
	for _, want := range []string{"Trusting the local server's certificate", "Logged in to " + url + " as admin (operator) with a session.", adminCfg} {
		if !strings.Contains(out, want) {
			t.Errorf("login output lacks %q:\n%s", want, out)
		}
	}
	st, err := os.Stat(adminCfg)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("config file: %v %v", st, err)
	}
	cfg, err := client.LoadConfig(adminCfg)
	if err != nil || cfg.Session == nil || cfg.Session.RefreshToken == "" || !strings.HasPrefix(cfg.Fingerprint, "sha256:") {
		t.Fatalf("config = %+v, %v", cfg, err)
	}

	out = mustCLI(t, "", "tenant", "create", "acme", "--display-name", "Acme Inc.")
	if !strings.Contains(out, "Acme Inc.") {
		t.Errorf("tenant create:\n%s", out)
	}
	tenants := decodeJSON[[]api.Tenant](t, mustCLI(t, "", "tenant", "list", "-o", "json"))
	if len(tenants) != 1 || tenants[0].Name != "acme" || tenants[0].DisplayName != "Acme Inc." || tenants[0].Quota.Instances == 0 {
		t.Fatalf("tenant list = %+v", tenants)
	}

	// An update changes only what is given (read, then If-Match).
	updated := decodeJSON[api.Tenant](t, mustCLI(t, "", "tenant", "update", "acme", "--instances", "25", "-o", "json"))
	if updated.Quota.Instances != 25 || updated.Quota.VCPUs != tenants[0].Quota.VCPUs || updated.DisplayName != "Acme Inc." || updated.Version == tenants[0].Version {
		t.Fatalf("tenant update = %+v", updated)
	}

	// A refused request: the problem's detail and bad field, exit 1.
	_, stderr, err := cli(t, "", "tenant", "create", "Bad_Name")
	if !errors.Is(err, errReported) || !strings.Contains(stderr, "the request has invalid fields (422") || !strings.Contains(stderr, "  name: must match") {
		t.Fatalf("bad tenant name: %v\n%s", err, stderr)
	}
	// An operator is in no tenant: tenant commands need --tenant.
	if _, stderr, err := cli(t, "", "instance", "list"); err == nil || !strings.Contains(stderr, "--tenant") {
		t.Fatalf("instance list without a tenant: %v\n%s", err, stderr)
	}

	// A network and an instance; nothing realizes them here, so --no-wait.
	op := decodeJSON[api.Operation](t, mustCLI(t, "", "network", "create", "net", "--tenant", "acme", "--no-wait", "-o", "json"))
	if op.Kind != "network.create" || op.Status != api.OpPending {
		t.Fatalf("network create = %+v", op)
	}
	flavors := decodeJSON[[]api.Flavor](t, mustCLI(t, "", "flavor", "list", "-o", "json"))
	templates := decodeJSON[[]api.Template](t, mustCLI(t, "", "template", "list", "-o", "json"))
	if len(flavors) == 0 || len(templates) == 0 {
		t.Fatal("empty catalogue")
	}
	mustCLI(t, "", "instance", "create", "web", "--tenant", "acme", "--flavor", flavors[0].Name, "--template", templates[0].Name, "--network", "net", "--no-wait")
	shown := mustCLI(t, "", "operation", "show", op.ID)
	if !strings.Contains(shown, op.ID) || !strings.Contains(shown, "pending") {
		t.Errorf("operation show:\n%s", shown)
	}

	// An API key, saved to a file, logs in with a config of its own.
	keyFile := filepath.Join(dir, "ci.key")
	out = mustCLI(t, "", "apikey", "create", "ci", "--save", keyFile)
	if !strings.Contains(out, "saved with its secret in "+keyFile) {
		t.Errorf("apikey create --save:\n%s", out)
	}
	if st, err := os.Stat(keyFile); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", st, err)
	}
	t.Setenv("HOLDFAST_CONFIG", filepath.Join(dir, "ci.json"))
	out = mustCLI(t, "", "login", url, "--api-key-secret-file", keyFile)
	if !strings.Contains(out, "with API key hk_") {
		t.Errorf("login with a key:\n%s", out)
	}
	instances := decodeJSON[[]api.Instance](t, mustCLI(t, "", "instance", "list", "--tenant", "acme", "-o", "json"))
	if len(instances) != 1 || instances[0].Name != "web" || instances[0].Tenant != "acme" {
		t.Fatalf("instance list with the key = %+v", instances)
	}
	if me := decodeJSON[api.Me](t, mustCLI(t, "", "whoami", "-o", "json")); me.Via != "apikey" {
		t.Fatalf("whoami with the key = %+v", me)
	}

	// A tenant admin's only tenant becomes the default.
	t.Setenv("HOLDFAST_CONFIG", adminCfg)
	mustCLI(t, "a long password of alice\n", "user", "create", "alice", "--tenant", "acme", "--role", "tenant-admin", "--password-stdin")
	t.Setenv("HOLDFAST_CONFIG", filepath.Join(dir, "alice.json"))
	out = mustCLI(t, "a long password of alice\n", "login", url, "--user", "alice", "--password-stdin")
	if !strings.Contains(out, "Default tenant: acme.") {
		t.Errorf("alice's login:\n%s", out)
	}
	table := mustCLI(t, "", "instance", "list")
	if !strings.HasPrefix(table, "NAME ") || !strings.Contains(table, "\nweb ") {
		t.Errorf("instance list (table):\n%s", table)
	}
	members := decodeJSON[[]api.Membership](t, mustCLI(t, "", "member", "list", "-o", "json"))
	if len(members) != 1 || members[0].User != "alice" || members[0].Role != api.RoleTenantAdmin {
		t.Fatalf("members = %+v", members)
	}

	// A new password ends alice's sessions; the CLI logs in anew.
	before, _ := client.LoadConfig(filepath.Join(dir, "alice.json"))
	out = mustCLI(t, "a long password of alice\nalice's new long password\n", "user", "passwd", "--password-stdin")
	if !strings.Contains(out, "Password changed.") {
		t.Errorf("passwd:\n%s", out)
	}
	after, _ := client.LoadConfig(filepath.Join(dir, "alice.json"))
	if after.Session == nil || after.Session.RefreshToken == before.Session.RefreshToken {
		t.Fatal("passwd did not renew the session")
	}
	mustCLI(t, "", "whoami")

	// The event stream, replayed from the first event (the tenant's).
	events := streamEvents(t, "--since", "1")
	if events.Type != "tenant.updated" || events.Tenant != "acme" {
		t.Fatalf("first event after 1 = %+v", events)
	}

	mustCLI(t, "", "logout")
	if cfg, _ := client.LoadConfig(filepath.Join(dir, "alice.json")); cfg.Session != nil {
		t.Fatal("logout kept the session")
	}
	if _, stderr, err := cli(t, "", "instance", "list"); err == nil || !strings.Contains(stderr, "not logged in") {
		t.Fatalf("after logout: %v\n%s", err, stderr)
	}
}

// streamEvents runs holdfast events -o json with args until its first
// event, then interrupts it.
func streamEvents(t *testing.T, args ...string) api.Event {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	root := newRoot()
	pr, pw := io.Pipe()
	var errOut bytes.Buffer
	root.SetOut(pw)
	root.SetErr(&errOut)
	root.SetArgs(append([]string{"events", "-o", "json"}, args...))
	done := make(chan error, 1)
	go func() {
		err := root.ExecuteContext(ctx)
		pw.Close()
		done <- err
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("events: %v\n%s", err, errOut.String())
	}
	cancel()
	go func() { _, _ = io.Copy(io.Discard, pr) }() // drain until the command ends
	if err := <-done; err != nil {
		t.Fatalf("events ended with %v\n%s", err, errOut.String())
	}
	return decodeJSON[api.Event](t, line)
}

// TestInvitationCLI: a tenant admin invites a user (adding them is
// refused, saying so), lists and withdraws invitations; the user lists
// theirs and accepts or declines.
func TestInvitationCLI(t *testing.T) {
	url, password := remoteServer(t)
	dir := t.TempDir()
	as := func(user string) { t.Setenv("HOLDFAST_CONFIG", filepath.Join(dir, user+".json")) }
	as("admin")
	mustCLI(t, password+"\n", "login", url, "--user", "admin", "--password-stdin")
	mustCLI(t, "", "tenant", "create", "acme")
	mustCLI(t, "", "tenant", "create", "globex")
	mustCLI(t, "a long password of alice\n", "user", "create", "alice", "--tenant", "acme", "--role", "tenant-admin", "--password-stdin")
	mustCLI(t, "a long password of bob\n", "user", "create", "bob", "--tenant", "globex", "--role", "tenant-admin", "--password-stdin")
	for _, u := range []string{"alice", "bob"} {
		as(u)
		mustCLI(t, "a long password of "+u+"\n", "login", url, "--user", u, "--password-stdin")
	}

	as("alice")
	if _, stderr, err := cli(t, "", "member", "add", "bob"); err == nil || !strings.Contains(stderr, "not a member of acme: invite them") {
		t.Fatalf("member add of an outsider: %v\n%s", err, stderr)
	}
	out := mustCLI(t, "", "member", "invite", "bob", "--role", "viewer")
	if !strings.Contains(out, "Invited bob to acme as a viewer") {
		t.Errorf("member invite:\n%s", out)
	}
	nobody := decodeJSON[api.Invitation](t, mustCLI(t, "", "member", "invite", "nobody", "-o", "json"))
	if open := decodeJSON[[]api.Invitation](t, mustCLI(t, "", "member", "invitations", "-o", "json")); len(open) != 2 {
		t.Fatalf("member invitations = %+v", open)
	}
	mustCLI(t, "", "member", "uninvite", itoa(nobody.ID))

	as("bob")
	mine := decodeJSON[[]api.Invitation](t, mustCLI(t, "", "invitation", "list", "-o", "json"))
	if len(mine) != 1 || mine[0].Tenant != "acme" || mine[0].Role != api.RoleViewer {
		t.Fatalf("invitation list = %+v", mine)
	}
	if out := mustCLI(t, "", "invitation", "accept", itoa(mine[0].ID)); !strings.Contains(out, "You are a viewer of acme.") {
		t.Errorf("invitation accept:\n%s", out)
	}
	if _, stderr, err := cli(t, "", "invitation", "decline", "x"); err == nil || !strings.Contains(stderr, "not an invitation ID") {
		t.Errorf("decline x: %v %s", err, stderr)
	}

	as("alice")
	members := decodeJSON[[]api.Membership](t, mustCLI(t, "", "member", "list", "-o", "json"))
	if len(members) != 2 {
		t.Fatalf("members = %+v", members)
	}
	mustCLI(t, "", "member", "add", "bob", "--role", "member") // a member's role: direct
}
