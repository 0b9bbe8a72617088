package server

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/api"
	"github.com/holdfast/holdfast/internal/auth"
	"github.com/holdfast/holdfast/internal/tenant"
)

// eventStream is an open /v1/events stream, read in the background.
type eventStream struct {
	t      *testing.T
	events chan api.Event
	done   chan struct{} // closed when the server ends the stream
}

// stream opens /v1/events (with query, e.g. "?tenant=acme") as c and
// returns once the server has subscribed it.
func (e *env) stream(t *testing.T, c cred, query string) *eventStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.ts.URL+"/v1/events"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+c.bearer)
	} else if err := auth.SignRequest(req, nil, c.keyID, c.keySecret, e.clock.now()); err != nil {
		t.Fatal(err)
	}
	resp, err := e.ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/events%s: %d", query, resp.StatusCode)
	}
	rd := bufio.NewReader(resp.Body)
	// The first line is sent once the stream is subscribed.
	if line, err := rd.ReadString('\n'); err != nil || !strings.HasPrefix(line, ":") {
		t.Fatalf("stream starts with %q, %v", line, err)
	}
	s := &eventStream{t: t, events: make(chan api.Event, 1000), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			line, err := rd.ReadString('\n')
			if err != nil {
				return
			}
			if data, ok := strings.CutPrefix(line, "data: "); ok {
				var ev api.Event
				if json.Unmarshal([]byte(data), &ev) == nil {
					s.events <- ev
				}
			}
		}
	}()
	return s
}

// streamWait bounds how long a test waits for what a stream must do at
// once; it is never reached when the server works.
const streamWait = 10 * time.Second

// next is the next event; the test fails when the stream ends first.
func (s *eventStream) next() api.Event {
	s.t.Helper()
	select {
	case ev := <-s.events:
		return ev
	case <-s.done:
		select {
		case ev := <-s.events:
			return ev
		default:
		}
		s.t.Fatal("the stream ended; an event was due")
	case <-time.After(streamWait):
		s.t.Fatal("no event")
	}
	return api.Event{}
}

// ends waits for the server to end the stream and returns the events it
// sent meanwhile.
func (s *eventStream) ends() []api.Event {
	s.t.Helper()
	ended := true
	select {
	case <-s.done:
	case <-time.After(streamWait):
		ended = false
	}
	var got []api.Event
	for {
		select {
		case ev := <-s.events:
			got = append(got, ev)
			continue
		default:
		}
		break
	}
	if !ended {
		s.t.Fatalf("the stream goes on; it sent %+v", got)
	}
	return got
}

// TestStreamsEndWithTheRight: an open event stream ends as soon as its
// caller loses the right to it — membership removed, tenant deleted,
// logged out, sessions revoked, user deleted, API key revoked, access
// token expired — and delivers no event of the tenant after the change.
func TestStreamsEndWithTheRight(t *testing.T) {
	e := newEnv(t, Config{})
	n := 0
	for _, c := range []struct {
		name   string
		query  string
		viaKey bool
		change func(alice cred)
	}{
		{name: "membership removed", change: func(cred) {
			e.must(e.admin, http.StatusNoContent, "DELETE", "/v1/tenants/t"+itoa(int64(n))+"/members/alice"+itoa(int64(n)), nil, nil)
		}},
		{name: "membership removed, one tenant streamed", query: "?tenant=", change: func(cred) {
			e.must(e.admin, http.StatusNoContent, "DELETE", "/v1/tenants/t"+itoa(int64(n))+"/members/alice"+itoa(int64(n)), nil, nil)
		}},
		{name: "membership removed, by key", viaKey: true, change: func(cred) {
			e.must(e.admin, http.StatusNoContent, "DELETE", "/v1/tenants/t"+itoa(int64(n))+"/members/alice"+itoa(int64(n)), nil, nil)
		}},
		{name: "tenant deleted", change: func(cred) {
			e.must(e.admin, http.StatusNoContent, "DELETE", "/v1/tenants/t"+itoa(int64(n)), nil, nil)
		}},
		{name: "logged out", change: func(alice cred) {
			e.must(alice, http.StatusNoContent, "POST", "/v1/auth/logout", nil, nil)
		}},
		{name: "sessions revoked", change: func(alice cred) {
			// What a password change and a user deletion do to sessions.
			e.s.sess.revokeUser(context.Background(), userID(t, e, "alice"+itoa(int64(n))))
		}},
		{name: "user deleted", change: func(cred) {
			e.must(e.admin, http.StatusNoContent, "DELETE", "/v1/users/alice"+itoa(int64(n)), nil, nil)
		}},
		{name: "user deleted, by key", viaKey: true, change: func(cred) {
			e.must(e.admin, http.StatusNoContent, "DELETE", "/v1/users/alice"+itoa(int64(n)), nil, nil)
		}},
		{name: "key revoked", viaKey: true, change: func(alice cred) {
			var keys api.Page[api.APIKey]
			e.must(alice, http.StatusOK, "GET", "/v1/me/apikeys", nil, &keys)
			e.must(alice, http.StatusNoContent, "DELETE", "/v1/me/apikeys/"+keys.Items[0].ID, nil, nil)
		}},
		{name: "access token expired", change: func(cred) {
			e.clock.advance(15*time.Minute + time.Second)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			n++
			tn, user := "t"+itoa(int64(n)), "alice"+itoa(int64(n))
			alice := e.tenantWith(tn, nil, map[string]string{user: api.RoleMember})[user]
			by := alice
			if c.viaKey {
				by = e.apiKey(alice)
			}
			query := c.query
			if query != "" {
				query += tn
			}
			s := e.stream(t, by, query)
			e.s.emit(api.Event{Type: "test.before", Tenant: tn, Object: "/v1/tenants/" + tn})
			if ev := s.next(); ev.Type != "test.before" {
				t.Fatalf("first event %+v", ev)
			}
			c.change(alice)
			e.s.emit(api.Event{Type: "test.after", Tenant: tn, Object: "/v1/tenants/" + tn})
			for _, ev := range s.ends() {
				t.Errorf("after the change the stream sent %+v", ev)
			}
		})
	}
}

func userID(t *testing.T, e *env, name string) int64 {
	t.Helper()
	var id int64
	if err := e.s.db.DB().QueryRow(`SELECT id FROM users WHERE name = ?`, name).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}

// TestStreamsFollowRights: a stream goes on through changes that take
// nothing from its caller — a new role in the tenant, someone else
// removed — and streams a tenant its caller joined since it began.
func TestStreamsFollowRights(t *testing.T) {
	e := newEnv(t, Config{})
	users := e.tenantWith("acme", nil, map[string]string{"alice": api.RoleMember, "bob": api.RoleMember})
	e.tenantWith("globex", nil, nil)
	s := e.stream(t, users["alice"], "")
	e.must(e.admin, http.StatusOK, "PUT", "/v1/tenants/acme/members", api.MembershipCreate{User: "alice", Role: api.RoleViewer}, nil)
	e.must(e.admin, http.StatusNoContent, "DELETE", "/v1/tenants/acme/members/bob", nil, nil)
	e.must(e.admin, http.StatusOK, "PUT", "/v1/tenants/globex/members", api.MembershipCreate{User: "alice", Role: api.RoleViewer}, nil)
	for _, tn := range []string{"acme", "globex"} {
		e.s.emit(api.Event{Type: "test", Tenant: tn, Object: "/v1/tenants/" + tn})
		if ev := s.next(); ev.Tenant != tn {
			t.Fatalf("event %+v, want one of %s", ev, tn)
		}
	}
}

// TestStreamsRecheck: a change no notice reports — made by another
// process, or in the database — ends a stream within recheckEvery.
func TestStreamsRecheck(t *testing.T) {
	// Set before the server starts and restored after it stopped (cleanups
	// run last first): its streams read it.
	d := recheckEvery
	t.Cleanup(func() { recheckEvery = d })
	recheckEvery = 50 * time.Millisecond
	e := newEnv(t, Config{})
	alice := e.tenantWith("acme", nil, map[string]string{"alice": api.RoleMember})["alice"]
	s := e.stream(t, alice, "?tenant=acme")
	if _, err := e.s.db.DB().Exec(`DELETE FROM memberships WHERE user_id = ?`, userID(t, e, "alice")); err != nil {
		t.Fatal(err)
	}
	s.ends()
}

// TestOperationWaitAnswersUnderCurrentRights: a wait on an operation is
// one request that can last a minute. Whatever the caller lost while it
// waited — a membership, their session — holds for its answer: the
// operation is not shown to someone no longer allowed to see it.
func TestOperationWaitAnswersUnderCurrentRights(t *testing.T) {
	for _, tc := range []struct {
		name string
		lose func(e *env, alice cred)
		want int
	}{
		{"membership removed", func(e *env, _ cred) {
			e.must(e.admin, http.StatusNoContent, "DELETE", "/v1/tenants/acme/members/alice", nil, nil)
		}, http.StatusNotFound},
		{"logged out", func(e *env, alice cred) {
			// The session ends while a request under it waits.
			e.must(alice, http.StatusNoContent, "POST", "/v1/auth/logout", nil, nil)
		}, http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Config{})
			alice := e.tenantWith("acme", nil, map[string]string{"alice": api.RoleTenantAdmin})["alice"]
			var op api.Operation
			e.must(alice, http.StatusAccepted, "POST", "/v1/tenants/acme/networks", api.NetworkCreate{Name: "net"}, &op)

			type answer struct {
				status int
				body   []byte
			}
			waited := make(chan answer, 1)
			go func() {
				status, _, b := e.do(alice, "GET", "/v1/operations/"+op.ID+"/wait?timeout=60s", nil)
				waited <- answer{status, b}
			}()
			// The wait has subscribed to the hub once there is a
			// subscriber: nothing else streams in this test.
			deadline := time.Now().Add(10 * time.Second)
			for e.s.hub.subscribers() == 0 {
				if time.Now().After(deadline) {
					t.Fatal("the wait never began")
				}
				time.Sleep(time.Millisecond)
			}

			tc.lose(e, alice)
			// The operation finishes, which ends the wait.
			if err := e.s.db.Do(t.Context(), func(tx *tenant.Tx) error {
				return tx.UpdateOperation(op.ID, api.OpSucceeded, 100, "done", nil)
			}); err != nil {
				t.Fatal(err)
			}
			e.s.emit(api.Event{Type: "operation.succeeded", Tenant: "acme", Object: "/v1/operations/" + op.ID})
			if a := <-waited; a.status != tc.want {
				t.Errorf("the wait's answer after the caller lost the right: %d, want %d: %s", a.status, tc.want, a.body)
			}
		})
	}
}

// subscribers counts the open subscriptions (tests).
func (h *hub) subscribers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}
