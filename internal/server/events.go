package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/holdfast/holdfast/api"
	"github.com/holdfast/holdfast/internal/auth"
	"github.com/holdfast/holdfast/internal/tenant"
)

// hub fans lifecycle events out to subscribers and keeps the last ones so
// that a client reconnecting with Last-Event-ID misses nothing recent. It
// also carries the server's own notices that what a user may see may have
// changed, to the event streams of that user, which never reach a client.
type hub struct {
	mu   sync.Mutex
	next int64
	ring []api.Event
	max  int
	subs map[chan api.Event]struct{}
	// watchers are the open streams' wake-up channels, with whom each
	// streams to.
	watchers map[chan struct{}]watcher
	// relay, when set, passes what is published and noticed here on to
	// the other replicas sharing the database (bus.go); they hand it to
	// their hubs with receive.
	relay func(busMsg)
}

// watcher is whom a stream streams to: a user, through a key or not.
type watcher struct {
	user int64
	key  string
}

func newHub(keep int) *hub {
	return &hub{next: 1, max: keep, subs: map[chan api.Event]struct{}{}, watchers: map[chan struct{}]watcher{}}
}

func (h *hub) publish(e api.Event) api.Event {
	if h.relay != nil {
		h.relay(busMsg{Event: &e}) // without the id, which each hub gives
	}
	return h.deliver(e)
}

// deliver publishes e to this hub's subscribers.
func (h *hub) deliver(e api.Event) api.Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	e.ID = h.next
	h.next++
	h.ring = append(h.ring, e)
	if len(h.ring) > h.max {
		h.ring = h.ring[len(h.ring)-h.max:]
	}
	for c := range h.subs {
		select {
		case c <- e:
		default:
			// A subscriber this far behind is cut off rather than slowing
			// everyone; it reconnects with Last-Event-ID.
			delete(h.subs, c)
			close(c)
		}
	}
	return e
}

// subscribe returns a channel of events after id (0: only new ones) and a
// function that ends the subscription.
func (h *hub) subscribe(after int64) (<-chan api.Event, func()) {
	h.mu.Lock()
	var replay []api.Event
	for _, e := range h.ring {
		if after > 0 && e.ID > after {
			replay = append(replay, e)
		}
	}
	// Room for the whole replay and what comes while it is being sent.
	c := make(chan api.Event, len(replay)+256)
	for _, e := range replay {
		c <- e
	}
	h.subs[c] = struct{}{}
	h.mu.Unlock()
	return c, func() {
		h.mu.Lock()
		if _, ok := h.subs[c]; ok {
			delete(h.subs, c)
			close(c)
		}
		h.mu.Unlock()
	}
}

// watch returns a channel that is signalled whenever what w may see may
// have changed, and a function that ends the watch. Signals coalesce: one
// pending signal stands for any number of changes.
func (h *hub) watch(w watcher) (<-chan struct{}, func()) {
	c := make(chan struct{}, 1)
	h.mu.Lock()
	h.watchers[c] = w
	h.mu.Unlock()
	return c, func() {
		h.mu.Lock()
		delete(h.watchers, c)
		h.mu.Unlock()
	}
}

// authChanged tells the streams of users (of every user when none is
// given) that what they may see may have changed: a membership, a role,
// the user, a session or a key. The server calls it after the change is
// committed and before it answers, so that no event published after the
// change can reach a stream before its notice does.
func (h *hub) authChanged(users ...int64) {
	if h.relay != nil {
		h.relay(busMsg{Auth: true, Users: users})
	}
	h.usersChanged(users)
}

func (h *hub) usersChanged(users []int64) {
	h.notify(func(w watcher) bool { return len(users) == 0 || slices.Contains(users, w.user) })
}

// keyChanged tells the streams of an API key that it was revoked.
func (h *hub) keyChanged(id string) {
	if h.relay != nil {
		h.relay(busMsg{Key: id})
	}
	h.notify(func(w watcher) bool { return w.key == id })
}

// receive hands the hub what another replica's published or noticed.
func (h *hub) receive(m busMsg) {
	switch {
	case m.Event != nil:
		h.deliver(*m.Event)
	case m.Auth:
		h.usersChanged(m.Users)
	case m.Key != "":
		h.notify(func(w watcher) bool { return w.key == m.Key })
	}
}

func (h *hub) notify(match func(watcher) bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for c, w := range h.watchers {
		if match(w) {
			select {
			case c <- struct{}{}:
			default: // a signal is already pending
			}
		}
	}
}

func (s *Server) emit(e api.Event) {
	if e.Time.IsZero() {
		e.Time = s.now().UTC()
	}
	s.hub.publish(e)
}

// visible reports whether the caller may see things of tenant t: operators
// everything, others their tenants only ("" is operator business).
func (s *Server) visible(q *request, t string) bool {
	return mayRead(q.caller.user, t)
}

// mayRead reports whether u may see things of tenant t.
func mayRead(u tenant.UserRecord, t string) bool {
	if u.Operator {
		return true
	}
	if t == "" {
		return false
	}
	return slices.ContainsFunc(u.Memberships, func(m api.Membership) bool { return m.Tenant == t })
}

// narrowed reports whether after may see less than before: a tenant
// before saw and after does not, or operator rights lost. A role change
// within a tenant narrows nothing here: every role reads its tenant.
func narrowed(before, after tenant.UserRecord) bool {
	if before.Operator {
		return !after.Operator
	}
	return slices.ContainsFunc(before.Memberships, func(m api.Membership) bool { return !mayRead(after, m.Tenant) })
}

// recheckEvery bounds how long a stream goes on under rights it lost
// through a change no notice reported (another process, the database
// itself). A variable for tests.
var recheckEvery = time.Minute

// errStreamEnds ends a stream whose caller lost the right to it.
var errStreamEnds = errors.New("the caller may no longer read this stream")

// recheck reads the caller's rights again, as the next request would
// find them: the session or key still live, the user still there, and
// seeing at least what they saw when the stream began (the caller is
// updated, so tenants joined since are streamed too).
func (s *Server) recheck(q *request) error {
	c, err := s.current(q)
	if errors.Is(err, errUnauthenticated) {
		return errStreamEnds // logged out, revoked, expired or deleted
	}
	if err != nil {
		return err
	}
	if narrowed(q.caller.user, c.user) {
		return errStreamEnds
	}
	q.caller = c
	return nil
}

// current reads a long request's caller again, as a new request with the
// same credential would find them; errUnauthenticated when the session or
// key is no longer live or the user is gone.
func (s *Server) current(q *request) (*caller, error) {
	c := *q.caller
	var userID int64
	if c.via == "session" {
		cl, err := s.sess.verify(sessionToken(q))
		if err != nil || cl.family != c.family {
			return nil, errUnauthenticated
		}
		userID = cl.userID
	}
	if err := s.load(q.r.Context(), &c, userID, auth.Signed{}); err != nil {
		return nil, err
	}
	return &c, nil
}

// events streams the events the caller may see until the client leaves,
// the server stops, or the caller loses the right: their credential
// expires, their session is logged out or revoked, their key revoked,
// they are deleted, or a tenant they saw is no longer theirs. The stream
// then ends, and a client that reconnects is answered by the rights it
// has then. Changes made through this server are noticed at once (the
// hub's notices); others within recheckEvery.
func (s *Server) events(q *request) error {
	only := q.r.URL.Query().Get("tenant")
	if only != "" && !s.visible(q, only) {
		return notFound("tenant", only)
	}
	fl, ok := q.w.(http.Flusher)
	if !ok {
		return errors.New("response cannot stream")
	}
	var after int64
	if id := q.r.Header.Get("Last-Event-ID"); id != "" {
		n, err := strconv.ParseInt(id, 10, 64)
		if err != nil || n < 0 {
			return pageProblem("Last-Event-ID", "must be an event id")
		}
		after = n
	}
	// Watch before subscribing: a change made while the stream starts is
	// not missed.
	changed, unwatch := s.hub.watch(watcher{user: q.caller.user.ID, key: q.caller.keyID})
	defer unwatch()
	c, stop := s.hub.subscribe(after)
	defer stop()
	h := q.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	q.status = http.StatusOK
	q.w.WriteHeader(http.StatusOK)
	fmt.Fprint(q.w, ": holdfast events\n\n")
	fl.Flush()
	keep := time.NewTicker(25 * time.Second) // proxies drop idle streams
	defer keep.Stop()
	again := time.NewTicker(recheckEvery)
	defer again.Stop()
	var expiry <-chan time.Time
	if !q.caller.until.IsZero() {
		t := time.NewTimer(q.caller.until.Sub(s.now()))
		defer t.Stop()
		expiry = t.C
	}
	// end ends the stream. A re-check that failed (the database) ends it
	// too: a stream goes on only under rights just confirmed. The answer
	// has begun, so no problem document can follow; the client
	// reconnects and is answered by the rights it has then.
	end := func(err error) error {
		if errors.Is(err, errStreamEnds) {
			s.log.Info("event stream ended", "actor", q.caller.user.Name, "reason", err.Error())
		} else {
			s.log.Error("event stream ended: re-checking the caller failed", "actor", q.caller.user.Name, "err", err)
		}
		fmt.Fprint(q.w, ": the stream ends: log in again or reconnect\n\n")
		fl.Flush()
		return nil
	}
	// expired is checked against the server's clock before every event,
	// so that none is sent under a credential past its time, whatever the
	// timer says.
	expired := func() bool { return !q.caller.until.IsZero() && !s.now().Before(q.caller.until) }
	for {
		select {
		case <-q.r.Context().Done():
			return nil
		case <-s.real.stopping():
			return nil
		case <-keep.C:
			fmt.Fprint(q.w, ": keep-alive\n\n")
			fl.Flush()
		case <-expiry:
			return end(errStreamEnds)
		case <-changed:
			if err := s.recheck(q); err != nil {
				return end(err)
			}
		case <-again.C:
			if err := s.recheck(q); err != nil {
				return end(err)
			}
		case e, ok := <-c:
			if !ok {
				return nil // cut off as too slow: the client reconnects
			}
			// A change of rights noticed before this event was published
			// is honoured before it is sent.
			select {
			case <-changed:
				if err := s.recheck(q); err != nil {
					return end(err)
				}
			default:
			}
			if expired() {
				return end(errStreamEnds)
			}
			if !s.visible(q, e.Tenant) || (only != "" && e.Tenant != only) {
				continue
			}
			b, err := json.Marshal(e)
			if err != nil {
				return err
			}
			fmt.Fprintf(q.w, "id: %d\nevent: %s\ndata: %s\n\n", e.ID, e.Type, b)
			fl.Flush()
		}
	}
}

// Operations.

func (s *Server) operation(q *request) (tenant.Op, error) {
	id := q.r.PathValue("operation")
	var op tenant.Op
	err := q.do(s, func(tx *tenant.Tx) error {
		var err error
		op, err = tx.Operation(id)
		return err
	})
	if errors.Is(err, tenant.ErrNotFound) || (err == nil && !s.visible(q, op.Tenant)) {
		return op, notFound("operation", id)
	}
	return op, err
}

func (s *Server) getOperation(q *request) error {
	op, err := s.operation(q)
	if err != nil {
		return err
	}
	return q.ok(op.Operation)
}

func (s *Server) waitOperation(q *request) error {
	timeout := 30 * time.Second
	if t := q.r.URL.Query().Get("timeout"); t != "" {
		d, err := time.ParseDuration(t)
		if err != nil || d < 0 || d > time.Minute {
			return pageProblem("timeout", "must be a duration of at most 60s, e.g. 30s")
		}
		timeout = d
	}
	// Subscribe before reading, so that finishing in between is not missed.
	c, stop := s.hub.subscribe(0)
	defer stop()
	op, err := s.operation(q)
	if err != nil {
		return err
	}
	// answer answers under the caller's rights as they are now, not as
	// they were when the wait began: a membership removed, a session
	// ended or a key revoked meanwhile holds for this answer too.
	answer := func(op tenant.Op) error {
		c, err := s.current(q)
		if err != nil {
			return err
		}
		q.caller = c
		if !s.visible(q, op.Tenant) {
			return notFound("operation", op.ID)
		}
		return q.ok(op.Operation)
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for !op.Done() {
		select {
		case <-q.r.Context().Done():
			return nil
		case <-deadline.C:
			return answer(op)
		case <-s.real.stopping():
			return answer(op)
		case e, ok := <-c:
			if !ok {
				c, stop = s.hub.subscribe(0)
				defer stop()
			} else if e.Object != "/v1/operations/"+op.ID {
				continue
			}
			if op, err = s.operation(q); err != nil {
				return err
			}
		}
	}
	return answer(op)
}

func (s *Server) listOperations(q *request) error {
	after, limit, err := q.page()
	if err != nil {
		return err
	}
	var before int64
	if after != "" {
		if before, err = strconv.ParseInt(after, 10, 64); err != nil || before <= 0 {
			return pageProblem("cursor", "not a cursor this server gave out")
		}
	}
	var ops []tenant.Op
	err = q.do(s, func(tx *tenant.Tx) error {
		ops, err = tx.Operations(q.tenant.Name, before, limit+1)
		return err
	})
	if err != nil {
		return err
	}
	p := pageOf(ops, limit, func(o tenant.Op) string { return strconv.FormatInt(o.Seq, 10) })
	out := api.Page[api.Operation]{Items: make([]api.Operation, len(p.Items)), Next: p.Next}
	for i, o := range p.Items {
		out.Items[i] = o.Operation
	}
	return q.ok(out)
}
