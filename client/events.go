package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/holdfast/holdfast/api"
)

// EventOptions says which events to stream and from where.
type EventOptions struct {
	// Tenant, if set, streams only that tenant's events.
	Tenant string
	// LastEventID resumes after the event with this id: events the
	// server still holds that came after it are sent first. 0 streams
	// only new events.
	LastEventID int64
	// OnConnect, if set, is called each time the stream is established
	// (the server then sends every event from that moment on).
	OnConnect func()
}

// maxEventLine bounds one line of the stream.
const maxEventLine = 1 << 20

// Events streams the lifecycle events the caller may see, as they happen.
// When the connection drops it reconnects by itself, resuming after the
// last event received (Last-Event-ID), so none the server still holds is
// missed. It ends when the loop stops, when ctx is done (yielding
// ctx.Err()), or when the server refuses the stream (yielding the problem,
// e.g. 401 for a session that ended).
//
//	for e, err := range c.Events(ctx, client.EventOptions{Tenant: "acme"}) {
//		if err != nil {
//			return err
//		}
//		fmt.Println(e.Type, e.Object)
//	}
func (c *Client) Events(ctx context.Context, opts EventOptions) iter.Seq2[api.Event, error] {
	return func(yield func(api.Event, error) bool) {
		last := opts.LastEventID
		backoff := time.Duration(0)
		connected := false // at least once: a later failure to reconnect is retried
		for {
			if backoff > 0 {
				t := time.NewTimer(backoff)
				select {
				case <-ctx.Done():
					t.Stop()
					yield(api.Event{}, ctx.Err())
					return
				case <-t.C:
				}
			}
			err := c.stream(ctx, opts, &last, &connected, yield)
			if errors.Is(err, errStop) {
				return
			}
			if ctx.Err() != nil {
				yield(api.Event{}, ctx.Err())
				return
			}
			var p *api.Problem
			if errors.As(err, &p) || !connected {
				yield(api.Event{}, err)
				return
			}
			// The stream broke (the server restarted, a proxy timed out):
			// reconnect at once, then back off while that keeps failing.
			switch {
			case errors.Is(err, errStreamed):
				backoff = 0
			case backoff == 0:
				backoff = 500 * time.Millisecond
			default:
				backoff = min(2*backoff, 30*time.Second)
			}
		}
	}
}

var (
	errStop     = errors.New("the loop stopped")
	errStreamed = errors.New("the stream ended")
)

// stream runs one connection: it yields events until the stream ends.
// It returns errStop when yield said to stop, errStreamed when an
// established stream ended after a while or some events, other errors
// when it could not connect or the stream ended at once (which is retried
// after a pause, not in a busy loop).
func (c *Client) stream(ctx context.Context, opts EventOptions, last *int64, connected *bool, yield func(api.Event, error) bool) error {
	q := url.Values{}
	if opts.Tenant != "" {
		q.Set("tenant", opts.Tenant)
	}
	h := http.Header{"Accept": {"text/event-stream"}}
	if *last > 0 {
		h.Set("Last-Event-ID", strconv.FormatInt(*last, 10))
	}
	resp, err := c.send(ctx, call{method: get, path: "/v1/events", query: q, header: h}, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return problemOf(resp)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		return fmt.Errorf("GET /v1/events: answered %q, not an event stream", ct)
	}
	*connected = true
	start, got := time.Now(), false
	if opts.OnConnect != nil {
		opts.OnConnect()
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 4096), maxEventLine)
	var id, data string
	var hasData bool
	for sc.Scan() {
		line := strings.TrimSuffix(sc.Text(), "\r")
		if line == "" {
			if hasData {
				var e api.Event
				if err := json.Unmarshal([]byte(data), &e); err != nil {
					yield(api.Event{}, fmt.Errorf("GET /v1/events: event %s is not an api.Event: %w", id, err))
					return errStop
				}
				if n, err := strconv.ParseInt(id, 10, 64); err == nil && n > 0 {
					if e.ID == 0 {
						e.ID = n
					}
					*last = n
				}
				got = true
				if !yield(e, nil) {
					return errStop
				}
			}
			id, data, hasData = "", "", false
			continue
		}
		if strings.HasPrefix(line, ":") {
			continue // a comment: keep-alive
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			id = value
		case "data":
			if hasData {
				data += "\n"
			}
			data += value
			hasData = true
		}
	}
	if !got && time.Since(start) < 10*time.Second {
		return errors.New("GET /v1/events: the stream ended at once")
	}
	return errStreamed
}
