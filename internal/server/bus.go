package server

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"sync"
	"time"

	"github.com/holdfast/holdfast/api"
	"github.com/holdfast/holdfast/internal/sqldb"
)

// Replicas sharing a PostgreSQL database tell each other what their hubs
// publish and notice through LISTEN/NOTIFY on this channel, so that an
// event caused through one reaches the streams open on every other, and
// a revocation ends them there too.
const busChannel = "holdfast_bus"

// busMsg is one thing a hub passes on: an event, a notice that users'
// rights may have changed (Auth; every user's when Users is empty), that
// a key was revoked, or that there is work for the realizer (Kick).
type busMsg struct {
	From  string     `json:"from"`
	Kick  bool       `json:"kick,omitempty"`
	Event *api.Event `json:"event,omitempty"`
	Auth  bool       `json:"auth,omitempty"`
	Users []int64    `json:"users,omitempty"`
	Key   string     `json:"key,omitempty"`
}

// startBus connects the hub to the other replicas when the control
// database is PostgreSQL; on SQLite there are none.
func (s *Server) startBus() {
	db := s.db.DB()
	if sqldb.DialectOf(db) != sqldb.Postgres {
		return
	}
	self := rand.Text()
	s.hub.relay = func(m busMsg) {
		m.From = self
		if m.Event != nil {
			e := *m.Event
			e.ID = 0
			m.Event = &e
		}
		b, _ := json.Marshal(m) // plain data always marshals
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := sqldb.Notify(ctx, db, busChannel, string(b)); err != nil {
			s.log.Error("telling the other replicas", "err", err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.stopBus = cancel
	s.busDone = make(chan struct{})
	first := make(chan struct{})
	var once sync.Once
	started := func() { once.Do(func() { close(first) }) }
	go func() {
		defer close(s.busDone)
		sqldb.Listen(ctx, sqldb.In(s.cfg.Database, "", "control"), busChannel, func(payload string) {
			var m busMsg
			if err := json.Unmarshal([]byte(payload), &m); err != nil || m.From == self {
				return // our own, already delivered
			}
			if m.Kick {
				s.real.wakeUp()
				return
			}
			s.hub.receive(m)
		}, started, func(err error) {
			started()
			// What the others said meanwhile is lost: streams here may
			// miss events (clients read the state again when they
			// reconnect) and learn of a revocation at their next recheck.
			s.log.Error("lost the other replicas' notices; listening again", "err", err)
			s.hub.usersChanged(nil)
		})
	}()
	// Serve once listening, so that nothing another replica says after
	// this one answers its first request is missed; or once that failed,
	// which the log says.
	<-first
}
