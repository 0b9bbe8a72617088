package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/holdfast/holdfast/api"
	"github.com/holdfast/holdfast/internal/auth"
)

// TestLogin: the bootstrap operator logs in; the session is handed to the
// hook and used for the next request.
func TestLogin(t *testing.T) {
	t.Parallel()
	e := newTestServer(t)
	c, rec := e.admin()
	me, err := c.Me(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if me.User.Name != e.user || !me.User.Operator || me.Via != "session" || !slices.Equal(me.Methods, []string{"pwd"}) {
		t.Fatalf("me = %+v", me)
	}
	if got := rec.all(); len(got) != 1 || got[0] != c.Session() || got[0].RefreshToken == "" {
		t.Fatalf("hook got %d sessions, want the login's", len(got))
	}
	if exp := c.Session().ExpiresAt; exp.Before(time.Now().Add(14*time.Minute)) || exp.After(time.Now().Add(16*time.Minute)) {
		t.Errorf("session expires at %v, want in 15 minutes", exp)
	}

	// A wrong password is a problem, and leaves no session behind.
	bad := e.client()
	_, err = bad.Login(t.Context(), api.LoginRequest{User: e.user, Password: "wrong password!"})
	if p := asProblem(t, err); p.Status != http.StatusUnauthorized || !strings.HasSuffix(p.Type, "/login-failed") {
		t.Fatalf("wrong password: %+v", p)
	}
	if _, err := bad.Me(t.Context()); !IsStatus(err, http.StatusUnauthorized) {
		t.Fatalf("Me without a session: %v", err)
	}
}

func asProblem(t *testing.T, err error) *api.Problem {
	t.Helper()
	var p *api.Problem
	if !errors.As(err, &p) {
		t.Fatalf("error %v (%T) is not a problem", err, err)
	}
	return p
}

// TestRefreshRotationPersisted: a refresh hands the rotated refresh token
// to the hook; a client made later from what the hook saved goes on with
// the session, while the spent token is refused.
func TestRefreshRotationPersisted(t *testing.T) {
	t.Parallel()
	e := newTestServer(t)
	c, rec := e.admin()
	first := c.Session()
	if _, err := c.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	got := rec.all()
	if len(got) != 2 {
		t.Fatalf("hook got %d sessions, want login and refresh", len(got))
	}
	saved := got[1]
	if saved.RefreshToken == first.RefreshToken || saved.AccessToken == first.AccessToken || saved != c.Session() {
		t.Fatal("the refresh did not rotate the tokens, or the hook got other ones than the client uses")
	}

	// What was saved is enough to go on: with only its refresh token, a
	// new client refreshes before its first request, and saves again.
	rec2 := &sessions{}
	c2 := e.client(WithSession(Session{RefreshToken: saved.RefreshToken}), WithSessionHook(rec2.save))
	if _, err := c2.Me(t.Context()); err != nil {
		t.Fatal(err)
	}
	if len(rec2.all()) != 1 || rec2.all()[0].RefreshToken == saved.RefreshToken {
		t.Fatalf("the second client did not save its rotated session: %d", len(rec2.all()))
	}

	// The spent first token is refused (and ends the session: reuse).
	stale := e.client(WithSession(Session{RefreshToken: first.RefreshToken}))
	_, err := stale.Me(t.Context())
	if p := asProblem(t, err); p.Status != http.StatusUnauthorized || !strings.HasSuffix(p.Type, "/refresh-failed") {
		t.Fatalf("spent refresh token: %+v", p)
	}
}

// TestRefreshBeforeExpiry: a client whose access token is about to expire
// refreshes before sending, once.
func TestRefreshBeforeExpiry(t *testing.T) {
	t.Parallel()
	e := newTestServer(t)
	c, rec := e.admin()
	before := c.Session()
	c.now = func() time.Time { return before.ExpiresAt.Add(-20 * time.Second) }
	if _, err := c.Me(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Me(t.Context()); err != nil {
		t.Fatal(err)
	}
	got := rec.all()
	if len(got) != 2 || got[1].AccessToken == before.AccessToken {
		t.Fatalf("hook got %d sessions, want login and one refresh", len(got))
	}
}

// TestRefreshAfter401: when the server refuses an access token the client
// thinks good (the server's clock is ahead), requests refresh once — all
// of them together, since a refresh token is good once — and succeed.
func TestRefreshAfter401(t *testing.T) {
	t.Parallel()
	e := newTestServer(t)
	c, rec := e.admin()
	e.clock.advance(16 * time.Minute) // the access token expired, by the server's clock
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() {
			if _, err := c.Me(t.Context()); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := rec.all(); len(got) != 2 {
		t.Fatalf("hook got %d sessions, want login and exactly one refresh", len(got))
	}
	// The session is intact: a spent token presented by a concurrent
	// second refresh would have revoked it.
	if _, err := c.Me(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// TestSessionHookFailure: a refresh whose session cannot be saved fails
// the request before it is sent.
func TestSessionHookFailure(t *testing.T) {
	t.Parallel()
	e := newTestServer(t)
	c, _ := e.admin()
	s := c.Session()
	full := errors.New("disk full")
	c2 := e.client(WithSession(Session{RefreshToken: s.RefreshToken}), WithSessionHook(func(Session) error { return full }))
	if _, err := c2.Me(t.Context()); !errors.Is(err, full) {
		t.Fatalf("Me with a failing hook: %v", err)
	}
}

// TestAPIKey: a key's client signs every request — reads and writes with
// bodies; rotation replaces the secret; revocation ends it.
func TestAPIKey(t *testing.T) {
	t.Parallel()
	e := newTestServer(t)
	admin, _ := e.admin()
	ctx := t.Context()
	k, err := admin.CreateAPIKey(ctx, api.APIKeyCreate{Name: "ci"})
	if err != nil {
		t.Fatal(err)
	}
	kc := e.client(WithAPIKey(k.ID, k.Secret))
	me, err := kc.Me(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if me.Via != "apikey" || me.APIKey != k.ID || me.User.Name != e.user {
		t.Fatalf("me = %+v", me)
	}
	if _, err := kc.CreateTenant(ctx, api.TenantCreate{Name: "signed", DisplayName: "Signed ünïcode"}); err != nil {
		t.Fatal(err)
	}
	if _, err := kc.ListTenants(ctx, &ListOptions{Limit: 5, Cursor: "c2lnbmVk"}); err != nil {
		t.Fatal(err) // a query is signed too
	}
	keys, err := admin.ListAPIKeys(ctx)
	if err != nil || len(keys) != 1 || keys[0].ID != k.ID {
		t.Fatalf("keys = %+v, %v", keys, err)
	}
	if err := kc.Logout(ctx); err == nil {
		t.Error("Logout with an API key: no error")
	}

	k2, err := admin.RotateAPIKey(ctx, k.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kc.Me(ctx); !IsStatus(err, http.StatusUnauthorized) {
		t.Fatalf("rotated-out key: %v", err)
	}
	kc2 := e.client(WithAPIKey(k2.ID, k2.Secret+"\n"))
	if _, err := kc2.Me(ctx); err != nil {
		t.Fatal(err)
	}
	if err := admin.RevokeAPIKey(ctx, k2.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := kc2.Me(ctx); !IsStatus(err, http.StatusUnauthorized) {
		t.Fatalf("revoked key: %v", err)
	}
	if _, err := New(e.ts.URL, WithAPIKey(k.ID, "not base64!")); err == nil {
		t.Error("a malformed secret was accepted")
	}
}

// TestTLSTrust: the pinned fingerprint is accepted and any other refused;
// the server's certificate works as a CA; without either, the self-signed
// certificate is refused.
func TestTLSTrust(t *testing.T) {
	t.Parallel()
	e := newTestServer(t)
	login := func(c *Client) error {
		_, err := c.Login(t.Context(), api.LoginRequest{User: e.user, Password: e.pass})
		return err
	}
	if err := login(e.client()); err != nil {
		t.Fatalf("right fingerprint: %v", err)
	}
	fp := []byte(e.fingerprint())
	fp[len(fp)-1] ^= 1 // another hex digit
	wrong, err := New(e.ts.URL, WithFingerprint(string(fp)))
	if err != nil {
		t.Fatal(err)
	}
	if err := login(wrong); !errors.Is(err, ErrFingerprint) {
		t.Fatalf("wrong fingerprint: %v", err)
	}
	// Upper case and colons are the same fingerprint.
	colons := "SHA256:" + strings.ToUpper(strings.Join(chunks(strings.TrimPrefix(e.fingerprint(), "sha256:"), 2), ":"))
	ok, err := New(e.ts.URL, WithFingerprint(colons))
	if err != nil {
		t.Fatal(err)
	}
	if err := login(ok); err != nil {
		t.Fatalf("fingerprint with colons: %v", err)
	}

	ca, err := New(e.ts.URL, WithCACertFile(e.caFile()))
	if err != nil {
		t.Fatal(err)
	}
	if err := login(ca); err != nil {
		t.Fatalf("server certificate as CA: %v", err)
	}
	plain, err := New(e.ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	if err := login(plain); err == nil || IsStatus(err, 0) {
		t.Fatal("a self-signed certificate was trusted without a CA or pin")
	}

	for _, bad := range []string{"", "md5:00", "sha256:xyz", "sha256:" + strings.Repeat("0", 62)} {
		if _, err := New(e.ts.URL, WithFingerprint(bad)); err == nil {
			t.Errorf("fingerprint %q accepted", bad)
		}
	}
	if _, err := New(e.ts.URL, WithFingerprint(e.fingerprint()), WithCACertFile(e.caFile())); err == nil {
		t.Error("both a fingerprint and a CA accepted")
	}
	if _, err := New("ftp://x"); err == nil {
		t.Error("an ftp URL accepted")
	}
}

func chunks(s string, n int) []string {
	var out []string
	for len(s) > n {
		out = append(out, s[:n])
		s = s[n:]
	}
	return append(out, s)
}

// TestProblems: refusals come back as *api.Problem with the server's
// detail and field errors.
func TestProblems(t *testing.T) {
	t.Parallel()
	e := newTestServer(t)
	c, _ := e.admin()
	_, err := c.CreateTenant(t.Context(), api.TenantCreate{Name: "Bad Name"})
	p := asProblem(t, err)
	if p.Status != http.StatusUnprocessableEntity || len(p.Errors) != 1 || p.Errors[0].Field != "name" {
		t.Fatalf("bad name: %+v", p)
	}
	if !strings.Contains(err.Error(), "name: must match") {
		t.Errorf("error text %q does not name the field", err)
	}
	_, err = c.GetTenant(t.Context(), "nope")
	if p := asProblem(t, err); p.Status != http.StatusNotFound || p.Instance != "/v1/tenants/nope" {
		t.Fatalf("missing tenant: %+v", p)
	}
	if _, err := c.GetTenant(t.Context(), ""); err == nil || IsStatus(err, http.StatusNotFound) {
		t.Fatalf("an empty name was sent: %v", err)
	}
	// Names are escaped, not interpreted as paths.
	if _, err := c.GetTenant(t.Context(), "../users"); !IsStatus(err, http.StatusNotFound) {
		t.Fatalf("../users: %v", err)
	}
}

// TestPagination: ListAll walks 250 tenants in pages of 100, in order,
// and All stops fetching when the loop stops.
func TestPagination(t *testing.T) {
	t.Parallel()
	e := newTestServer(t)
	c, _ := e.admin()
	ctx := t.Context()
	var want []string
	for i := range 250 {
		name := fmt.Sprintf("t%03d", i)
		want = append(want, name)
		if _, err := c.CreateTenant(ctx, api.TenantCreate{Name: name}); err != nil {
			t.Fatal(err)
		}
	}
	pages := 0
	counted := func(ctx context.Context, o *ListOptions) (*api.Page[api.Tenant], error) {
		pages++
		return c.ListTenants(ctx, o)
	}
	all, err := ListAll(ctx, 100, counted)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, x := range all {
		got = append(got, x.Name)
	}
	if !slices.Equal(got, want) || pages != 3 {
		t.Fatalf("%d pages, %d tenants; first %v", pages, len(got), got[:min(3, len(got))])
	}

	pages = 0
	n := 0
	for _, err := range All(ctx, 100, counted) {
		if err != nil {
			t.Fatal(err)
		}
		if n++; n == 150 {
			break
		}
	}
	if pages != 2 {
		t.Errorf("150 items fetched %d pages, want 2", pages)
	}

	if _, err := c.ListTenants(ctx, &ListOptions{Limit: 5000}); !IsStatus(err, http.StatusBadRequest) {
		t.Errorf("limit 5000: %v", err)
	}
}

// TestIfMatch: an update with the version read succeeds; one with a stale
// version is refused with 412.
func TestIfMatch(t *testing.T) {
	t.Parallel()
	e := newTestServer(t)
	c, _ := e.admin()
	ctx := t.Context()
	if _, err := c.CreateTenant(ctx, api.TenantCreate{Name: "acme"}); err != nil {
		t.Fatal(err)
	}
	v1, err := c.GetTenant(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	name := "Acme Inc."
	v2, err := c.UpdateTenant(ctx, "acme", v1.Version, api.TenantUpdate{DisplayName: &name})
	if err != nil {
		t.Fatal(err)
	}
	if v2.Version == v1.Version || v2.DisplayName != name {
		t.Fatalf("update: %+v", v2)
	}
	other := "Someone else's"
	_, err = c.UpdateTenant(ctx, "acme", v1.Version, api.TenantUpdate{DisplayName: &other})
	if p := asProblem(t, err); p.Status != http.StatusPreconditionFailed {
		t.Fatalf("stale version: %+v", p)
	}
	if now, _ := c.GetTenant(ctx, "acme"); now.DisplayName != name {
		t.Fatalf("the stale update changed the tenant: %+v", now)
	}
	// Version 0: whatever it is.
	if _, err := c.UpdateTenant(ctx, "acme", 0, api.TenantUpdate{DisplayName: &other}); err != nil {
		t.Fatal(err)
	}
}

// TestEvents: the stream delivers a tenant.created event; after the
// connection drops it resumes where it was; LastEventID replays.
func TestEvents(t *testing.T) {
	t.Parallel()
	e := newTestServer(t)
	c, _ := e.admin()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()

	// The tenants are made over fresh connections: closing the stream's
	// connections below must not break a pooled one under a POST.
	maker := e.client(WithHTTPClient(&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}))
	if _, err := maker.Login(t.Context(), api.LoginRequest{User: e.user, Password: e.pass}); err != nil {
		t.Fatal(err)
	}
	create := func(name string) {
		if _, err := maker.CreateTenant(t.Context(), api.TenantCreate{Name: name}); err != nil {
			t.Error(err)
		}
	}
	var connects atomic.Int32
	opts := EventOptions{OnConnect: func() {
		if connects.Add(1) == 1 {
			create("first") // subscribed: the event is the stream's
		}
	}}
	var got []api.Event
	for ev, err := range c.Events(ctx, opts) {
		if err != nil {
			t.Fatal(err)
		}
		if ev.Type != "tenant.created" {
			continue
		}
		got = append(got, ev)
		if len(got) == 1 {
			// Drop every connection, then make an event while the stream
			// is down: the reconnect must resume after the first.
			e.ts.CloseClientConnections()
			create("second")
			continue
		}
		break
	}
	if len(got) != 2 || got[0].Object != "/v1/tenants/first" || got[1].Object != "/v1/tenants/second" || got[0].ID == 0 || got[1].ID <= got[0].ID {
		t.Fatalf("events = %+v", got)
	}
	if connects.Load() < 2 {
		t.Errorf("connected %d times, want a reconnect", connects.Load())
	}

	// Resuming after the second event replays the third, created while
	// nobody listened.
	create("third")
	for ev, err := range c.Events(ctx, EventOptions{LastEventID: got[1].ID}) {
		if err != nil {
			t.Fatal(err)
		}
		if ev.Type != "tenant.created" || ev.Object != "/v1/tenants/third" {
			t.Fatalf("first event after %d: %+v", got[1].ID, ev)
		}
		break
	}

	// Canceling ends the stream with the context's error.
	cancel()
	for _, err := range c.Events(ctx, EventOptions{}) {
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("after cancel: %v", err)
		}
	}
	// A refused stream ends with the problem.
	anon := e.client()
	for _, err := range anon.Events(t.Context(), EventOptions{}) {
		if !IsStatus(err, http.StatusUnauthorized) {
			t.Fatalf("anonymous stream: %v", err)
		}
	}
}

// TestTenantResources walks the tenant-scoped routes: users, members,
// projects, SSH keys, networks, instances and their operations.
func TestTenantResources(t *testing.T) {
	t.Parallel()
	e := newTestServer(t)
	c, _ := e.admin()
	ctx := t.Context()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err := c.CreateTenant(ctx, api.TenantCreate{Name: "acme"})
	must(err)
	u, err := c.CreateTenantUser(ctx, "acme", api.RoleTenantAdmin, api.UserCreate{Name: "alice", Password: "alice's long password"})
	must(err)
	if len(u.Memberships) != 1 || u.Memberships[0].Role != api.RoleTenantAdmin {
		t.Fatalf("tenant user: %+v", u)
	}
	_, err = c.CreateUser(ctx, api.UserCreate{Name: "bob", Password: "bob's long password"})
	must(err)
	_, err = c.SetMember(ctx, "acme", api.MembershipCreate{User: "bob", Role: api.RoleViewer})
	must(err)
	ms, err := c.ListMembers(ctx, "acme")
	must(err)
	if len(ms) != 2 {
		t.Fatalf("members = %+v", ms)
	}
	must(c.RemoveMember(ctx, "acme", "bob"))
	bob, err := c.GetUser(ctx, "bob")
	must(err)
	if len(bob.Memberships) != 0 {
		t.Fatalf("bob still a member: %+v", bob)
	}
	users, err := ListAll(ctx, 0, c.ListUsers)
	must(err)
	if len(users) != 3 {
		t.Fatalf("users = %d", len(users))
	}
	must(c.DeleteUser(ctx, "bob"))

	// Alice works in her tenant with her own session.
	alice := e.client()
	_, err = alice.Login(ctx, api.LoginRequest{User: "alice", Password: "alice's long password"})
	must(err)
	if _, err := alice.CreateTenant(ctx, api.TenantCreate{Name: "mine"}); !IsStatus(err, http.StatusForbidden) {
		t.Fatalf("a tenant admin created a tenant: %v", err)
	}
	_, err = alice.CreateProject(ctx, "acme", api.ProjectCreate{Name: "web", Description: "the shop"})
	must(err)
	p, err := alice.GetProject(ctx, "acme", "web")
	must(err)
	if p.Description != "the shop" {
		t.Fatalf("project = %+v", p)
	}
	projects, err := ListAll(ctx, 0, InTenant("acme", alice.ListProjects))
	must(err)
	if len(projects) < 1 {
		t.Fatalf("projects = %+v", projects)
	}
	key, err := alice.CreateSSHKey(ctx, "acme", api.SSHKeyCreate{Name: "laptop", PublicKey: sshKey("alice@laptop")})
	must(err)
	if !strings.HasPrefix(key.Fingerprint, "SHA256:") {
		t.Fatalf("ssh key = %+v", key)
	}
	_, err = alice.GetSSHKey(ctx, "acme", "laptop")
	must(err)

	op, err := alice.CreateNetwork(ctx, "acme", api.NetworkCreate{Name: "net"})
	must(err)
	if op.Kind != "network.create" || op.Status != api.OpPending || op.ID == "" {
		t.Fatalf("network op = %+v", op)
	}
	n, err := alice.GetNetwork(ctx, "acme", "net")
	must(err)
	if n.CIDR == "" {
		t.Fatalf("network = %+v", n)
	}
	flavors, err := ListAll(ctx, 0, alice.ListFlavors)
	must(err)
	templates, err := ListAll(ctx, 0, alice.ListTemplates)
	must(err)
	if len(flavors) == 0 || len(templates) == 0 {
		t.Fatalf("catalogue: %d flavors, %d templates", len(flavors), len(templates))
	}
	op, err = alice.CreateInstance(ctx, "acme", api.InstanceCreate{Name: "web1", Project: "web", Flavor: flavors[0].Name, Template: templates[0].Name, Network: "net", SSHKeys: []string{"laptop"}})
	must(err)
	got, err := alice.GetOperation(ctx, op.ID)
	must(err)
	if got.Target != "/v1/tenants/acme/instances/web1" {
		t.Fatalf("operation = %+v", got)
	}
	// Nothing realizes it: waiting answers the pending operation.
	pending, err := alice.WaitOperationFor(ctx, op.ID, 50*time.Millisecond)
	must(err)
	if pending.Done() {
		t.Fatalf("operation done without a realizer: %+v", pending)
	}
	in, err := alice.GetInstance(ctx, "acme", "web1")
	must(err)
	if in.Flavor != flavors[0].Name || !slices.Equal(in.SSHKeys, []string{"laptop"}) {
		t.Fatalf("instance = %+v", in)
	}
	stop, err := alice.StopInstance(ctx, "acme", "web1", in.Version)
	must(err)
	if stop.Kind != "instance.stop" {
		t.Fatalf("stop = %+v", stop)
	}
	if _, err := alice.StartInstance(ctx, "acme", "web1", in.Version); !IsStatus(err, http.StatusPreconditionFailed) {
		t.Fatalf("start with a stale version: %v", err)
	}
	_, err = alice.StartInstance(ctx, "acme", "web1", 0)
	must(err)
	_, err = alice.RebootInstance(ctx, "acme", "web1", 0)
	must(err)
	_, err = alice.ResizeInstance(ctx, "acme", "web1", 0, api.InstanceResize{Flavor: flavors[len(flavors)-1].Name})
	must(err)
	_, err = alice.RebuildInstance(ctx, "acme", "web1", 0, api.InstanceRebuild{})
	must(err)
	ops, err := ListAll(ctx, 0, InTenant("acme", alice.ListOperations))
	must(err)
	if len(ops) != 7 || ops[0].Kind != "instance.rebuild" {
		t.Fatalf("%d operations, newest %+v", len(ops), ops[0])
	}
	instances, err := ListAll(ctx, 0, InTenant("acme", alice.ListInstances))
	must(err)
	if len(instances) != 1 {
		t.Fatalf("instances = %+v", instances)
	}
	_, err = alice.DeleteInstance(ctx, "acme", "web1", 0)
	must(err)
	audit, err := ListAll(ctx, 0, InTenant("acme", alice.ListTenantAudit))
	must(err)
	if len(audit) == 0 {
		t.Fatal("no audit entries for the tenant")
	}
	must(alice.DeleteSSHKey(ctx, "acme", "laptop"))
	keys, err := ListAll(ctx, 0, InTenant("acme", alice.ListSSHKeys))
	must(err)
	if len(keys) != 0 {
		t.Fatalf("keys after delete: %+v", keys)
	}
	nets, err := ListAll(ctx, 0, InTenant("acme", alice.ListNetworks))
	must(err)
	if len(nets) != 1 {
		t.Fatalf("networks = %+v", nets)
	}
	if _, err := alice.DeleteNetwork(ctx, "acme", "net"); !IsStatus(err, http.StatusConflict) {
		t.Fatalf("delete a network with an instance: %v", err)
	}
	_, err = ListAll(ctx, 0, c.ListAudit)
	must(err)
}

// TestCatalogue: operators publish and withdraw flavors and templates.
func TestCatalogue(t *testing.T) {
	t.Parallel()
	e := newTestServer(t)
	c, _ := e.admin()
	ctx := t.Context()
	f, err := c.PutFlavor(ctx, api.Flavor{Name: "huge", CPUs: 64, MemoryMiB: 262144, DiskGiB: 1000})
	if err != nil || f.CPUs != 64 {
		t.Fatalf("put flavor: %+v %v", f, err)
	}
	if _, err := c.PutTemplate(ctx, api.Template{Name: "debian-13", Image: "/srv/images/debian-13", OS: "debian"}); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteFlavor(ctx, "huge"); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteTemplate(ctx, "debian-13"); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteTemplate(ctx, "debian-13"); !IsStatus(err, http.StatusNotFound) {
		t.Fatalf("second delete: %v", err)
	}
}

// TestTOTPAndPassword: enrolling TOTP makes logins need a code; changing
// the password ends other sessions; logout ends this one.
func TestTOTPAndPassword(t *testing.T) {
	t.Parallel()
	e := newTestServer(t)
	c, _ := e.admin()
	ctx := t.Context()
	enr, err := c.EnrollTOTP(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(enr.URI, "otpauth://totp/") {
		t.Fatalf("enrollment = %+v", enr)
	}
	secret, err := auth.DecodeTOTPSecret(enr.Secret)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ConfirmTOTP(ctx, auth.TOTPCode(secret, e.clock.now())); err != nil {
		t.Fatal(err)
	}
	e.clock.advance(time.Minute) // a code is good once
	c2 := e.client()
	_, err = c2.Login(ctx, api.LoginRequest{User: e.user, Password: e.pass})
	if p := asProblem(t, err); !strings.HasSuffix(p.Type, "/totp-required") {
		t.Fatalf("login without a code: %+v", p)
	}
	if _, err := c2.Login(ctx, api.LoginRequest{User: e.user, Password: e.pass, TOTP: auth.TOTPCode(secret, e.clock.now())}); err != nil {
		t.Fatal(err)
	}
	me, err := c2.Me(ctx)
	if err != nil || !slices.Equal(me.Methods, []string{"pwd", "otp"}) {
		t.Fatalf("me = %+v, %v", me, err)
	}

	if err := c2.ChangePassword(ctx, api.PasswordChange{Current: "wrong", New: "a new long password"}); !IsStatus(err, http.StatusUnprocessableEntity) {
		t.Fatalf("wrong current password: %v", err)
	}
	if err := c2.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	if c2.Session() != (Session{}) {
		t.Fatal("logout kept the session")
	}
	if _, err := c2.Me(ctx); !IsStatus(err, http.StatusUnauthorized) {
		t.Fatalf("after logout: %v", err)
	}
	if err := c.ChangePassword(ctx, api.PasswordChange{Current: e.pass, New: "a new long password"}); err != nil {
		t.Fatal(err)
	}
}

// TestWaitOperation: WaitOperation long-polls until the operation is
// done, reporting progress, and a failed one is an *OperationError
// wrapping its problem. (The real server here realizes nothing, so a
// stand-in answers the wait endpoint.)
func TestWaitOperation(t *testing.T) {
	t.Parallel()
	for _, final := range []string{api.OpSucceeded, api.OpFailed} {
		t.Run(final, func(t *testing.T) {
			var calls atomic.Int32
			ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/v1/operations/op1/wait" || r.URL.Query().Get("timeout") != "100ms" {
					http.Error(w, "unexpected "+r.URL.String(), http.StatusBadRequest)
					return
				}
				op := api.Operation{ID: "op1", Kind: "instance.create", Target: "/v1/tenants/a/instances/x"}
				switch calls.Add(1) {
				case 1:
					op.Status = api.OpPending
				case 2:
					op.Status, op.Progress, op.Message = api.OpRunning, 50, "booting"
				default:
					op.Status, op.Progress = final, 100
					if final == api.OpFailed {
						op.Error = &api.Problem{Type: "about:blank", Title: "Conflict", Status: 409, Detail: "no capacity"}
					}
				}
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprintf(w, "%s\n", mustJSON(t, op))
			}))
			defer ts.Close()
			c, err := New(ts.URL, WithFingerprint(Fingerprint(ts.Certificate().Raw)))
			if err != nil {
				t.Fatal(err)
			}
			var seen []int
			op, err := c.WaitOperationProgress(t.Context(), "op1", 100*time.Millisecond, func(o *api.Operation) { seen = append(seen, o.Progress) })
			if op == nil || op.Status != final || !slices.Equal(seen, []int{0, 50, 100}) {
				t.Fatalf("op = %+v, progress %v, err %v", op, seen, err)
			}
			if final == api.OpSucceeded && err != nil {
				t.Fatal(err)
			}
			if final == api.OpFailed {
				var oe *OperationError
				if !errors.As(err, &oe) || !IsStatus(err, 409) || !strings.Contains(err.Error(), "no capacity") {
					t.Fatalf("failed operation: %v", err)
				}
			}
		})
	}
}

func TestNetworkErrorsAreWrapped(t *testing.T) {
	t.Parallel()
	ts := httptest.NewTLSServer(http.NotFoundHandler())
	url := ts.URL
	ts.Close()
	c, err := New(url, WithFingerprint(Fingerprint(ts.Certificate().Raw)))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Me(t.Context())
	var p *api.Problem
	if err == nil || errors.As(err, &p) || !strings.Contains(err.Error(), "/v1/me") {
		t.Fatalf("unreachable server: %v", err)
	}
}

func TestNonProblemAnswers(t *testing.T) {
	t.Parallel()
	ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "bad gateway from a proxy", http.StatusBadGateway)
	}))
	defer ts.Close()
	c, err := New(ts.URL, WithFingerprint(Fingerprint(ts.Certificate().Raw)))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Me(t.Context())
	if p := asProblem(t, err); p.Status != http.StatusBadGateway || p.Detail != "bad gateway from a proxy" {
		t.Fatalf("proxy error: %+v", p)
	}
}

func TestCACertErrors(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "x.pem")
	if err := os.WriteFile(p, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New("https://127.0.0.1", WithCACertFile(p)); err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("a file without certificates: %v", err)
	}
}

// TestServerMeta: the OpenAPI document, health, readiness, and a session
// obtained outside the client (as the OIDC callback answers it).
func TestServerMeta(t *testing.T) {
	t.Parallel()
	e := newTestServer(t)
	c := e.client()
	ctx := t.Context()
	doc, err := c.OpenAPI(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		OpenAPI string         `json:"openapi"`
		Paths   map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(doc, &d); err != nil || !strings.HasPrefix(d.OpenAPI, "3.1") || d.Paths["/v1/tenants"] == nil {
		t.Fatalf("openapi: %v %.200s", err, doc)
	}
	if h, err := c.Health(ctx); err != nil || h.Status != "ok" {
		t.Fatalf("health: %+v %v", h, err)
	}
	if h, err := c.Ready(ctx); err != nil || h.Status != "ok" {
		t.Fatalf("ready: %+v %v", h, err)
	}

	// Tokens from elsewhere.
	body := strings.NewReader(fmt.Sprintf(`{"user":%q,"password":%q}`, e.user, e.pass))
	resp, err := e.ts.Client().Post(e.ts.URL+"/v1/auth/login", "application/json", body)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok api.Tokens
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil {
		t.Fatal(err)
	}
	rec := &sessions{}
	c2 := e.client(WithSessionHook(rec.save))
	if _, err := c2.UseTokens(tok); err != nil {
		t.Fatal(err)
	}
	if _, err := c2.Me(ctx); err != nil || len(rec.all()) != 1 {
		t.Fatalf("me with tokens from elsewhere: %v (hook got %d)", err, len(rec.all()))
	}
	// No OpenID Connect provider is configured: the login URL says so.
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.OIDCLoginURL(), nil)
	r2, err := e.ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if r2.StatusCode != http.StatusNotFound {
		t.Fatalf("OIDC login without a provider: %d", r2.StatusCode)
	}
}

// TestInvitations: a tenant admin invites a user instead of adding them;
// the user lists the invitation and accepts it, or declines; the admin
// lists and withdraws invitations.
func TestInvitations(t *testing.T) {
	t.Parallel()
	e := newTestServer(t)
	op, _ := e.admin()
	ctx := t.Context()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err := op.CreateTenant(ctx, api.TenantCreate{Name: "acme"})
	must(err)
	_, err = op.CreateTenantUser(ctx, "acme", api.RoleTenantAdmin, api.UserCreate{Name: "ann", Password: "ann's long password"})
	must(err)
	for _, name := range []string{"bob", "carl"} {
		_, err = op.CreateUser(ctx, api.UserCreate{Name: name, Password: name + "'s long password"})
		must(err)
	}
	login := func(name string) *Client {
		c := e.client()
		_, err := c.Login(ctx, api.LoginRequest{User: name, Password: name + "'s long password"})
		must(err)
		return c
	}
	ann, bob, carl := login("ann"), login("bob"), login("carl")

	if _, err := ann.SetMember(ctx, "acme", api.MembershipCreate{User: "bob", Role: api.RoleMember}); !IsStatus(err, http.StatusConflict) {
		t.Fatalf("a tenant admin adds a user: %v", err)
	}
	for _, name := range []string{"bob", "carl"} {
		inv, err := ann.Invite(ctx, "acme", api.InvitationCreate{User: name, Role: api.RoleViewer})
		must(err)
		if inv.Tenant != "acme" || inv.User != name || inv.Role != api.RoleViewer || inv.InvitedBy != "ann" || inv.ID == 0 {
			t.Fatalf("invitation %+v", inv)
		}
	}
	open, err := ann.ListInvitations(ctx, "acme")
	must(err)
	if len(open) != 2 {
		t.Fatalf("open invitations %+v", open)
	}
	mine, err := bob.MyInvitations(ctx)
	must(err)
	if len(mine) != 1 || mine[0].Tenant != "acme" {
		t.Fatalf("bob's invitations %+v", mine)
	}
	m, err := bob.AcceptInvitation(ctx, mine[0].ID)
	must(err)
	if *m != (api.Membership{Tenant: "acme", User: "bob", Role: api.RoleViewer}) {
		t.Fatalf("membership %+v", m)
	}
	if _, err := bob.GetTenant(ctx, "acme"); err != nil {
		t.Fatalf("bob reads acme after accepting: %v", err)
	}
	mine, err = carl.MyInvitations(ctx)
	must(err)
	must(carl.DeclineInvitation(ctx, mine[0].ID))
	inv, err := ann.Invite(ctx, "acme", api.InvitationCreate{User: "nobody", Role: api.RoleMember})
	must(err)
	must(ann.WithdrawInvitation(ctx, "acme", inv.ID))
	open, err = ann.ListInvitations(ctx, "acme")
	must(err)
	if len(open) != 0 {
		t.Fatalf("open invitations at the end %+v", open)
	}
	// Role changes of members stay direct.
	_, err = ann.SetMember(ctx, "acme", api.MembershipCreate{User: "bob", Role: api.RoleMember})
	must(err)
}
