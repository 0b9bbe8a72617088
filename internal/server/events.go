package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/holdfast/holdfast/api"
	"github.com/holdfast/holdfast/internal/tenant"
)

// hub fans lifecycle events out to subscribers and keeps the last ones so
// that a client reconnecting with Last-Event-ID misses nothing recent.
type hub struct {
	mu   sync.Mutex
	next int64
	ring []api.Event
	max  int
	subs map[chan api.Event]struct{}
}

func newHub(keep int) *hub {
	return &hub{next: 1, max: keep, subs: map[chan api.Event]struct{}{}}
}

func (h *hub) publish(e api.Event) api.Event {
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

func (s *Server) emit(e api.Event) {
	if e.Time.IsZero() {
		e.Time = s.now().UTC()
	}
	s.hub.publish(e)
}

// visible reports whether the caller may see things of tenant t: operators
// everything, others their tenants only ("" is operator business).
func (s *Server) visible(q *request, t string) bool {
	if q.caller.user.Operator {
		return true
	}
	if t == "" {
		return false
	}
	for _, m := range q.caller.user.Memberships {
		if m.Tenant == t {
			return true
		}
	}
	return false
}

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
	for {
		select {
		case <-q.r.Context().Done():
			return nil
		case <-s.real.stopping():
			return nil
		case <-keep.C:
			fmt.Fprint(q.w, ": keep-alive\n\n")
			fl.Flush()
		case e, ok := <-c:
			if !ok {
				return nil // cut off as too slow: the client reconnects
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
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for !op.Done() {
		select {
		case <-q.r.Context().Done():
			return nil
		case <-deadline.C:
			return q.ok(op.Operation)
		case <-s.real.stopping():
			return q.ok(op.Operation)
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
	return q.ok(op.Operation)
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
