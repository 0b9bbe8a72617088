package agent

import (
	"context"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	"github.com/holdfast/holdfast/internal/frontdoor"
	"github.com/holdfast/holdfast/internal/guest"
)

// frontDoorDir is where, under the agent's state directory, the front
// door keeps its ACME account and certificates: on the instance, never
// handed back.
const frontDoorDir = "frontdoor"

// applyFrontDoor brings the front door to c: started on the first
// configuration with routes, changed in place after that (listeners that
// stay keep their connections), closed when the instance fronts nothing.
func (a *Agent) applyFrontDoor(ctx context.Context, c *frontdoor.Config) error {
	if c == nil {
		a.stopFrontDoor()
		return nil
	}
	if a.door == nil {
		// A process serving a front door runs its collector less often
		// (measured in docs/performance.md), unless the operator set GOGC.
		if os.Getenv("GOGC") == "" {
			debug.SetGCPercent(frontdoor.GCPercent)
		}
		a.door = frontdoor.New(frontdoor.Options{
			StateDir: filepath.Join(a.s.StateDir, frontDoorDir),
			Log:      a.log.With("service", "frontdoor"),
		})
	}
	// A certificate the ACME server has not issued within obtainWait is
	// left to the front door's own retries, in the background: the
	// agent's loop (and its health reports) must go on.
	ctx, cancel := context.WithTimeout(ctx, obtainWait)
	defer cancel()
	return a.door.Set(ctx, *c)
}

// obtainWait bounds how long applying a configuration waits for new
// certificates; well under guest.StaleAfter.
const obtainWait = 20 * time.Second

func (a *Agent) stopFrontDoor() {
	if a.door != nil {
		_ = a.door.Close()
		a.door = nil
	}
}

// frontDoorHealth is the front door's line in the health report, and
// each route's state for holdfast status.
func (a *Agent) frontDoorHealth() (guest.Service, []frontdoor.RouteHealth) {
	if a.door == nil {
		return guest.Service{Detail: "the front door is not running"}, nil
	}
	routes := a.door.Health()
	ok, detail := frontdoor.Summary(routes)
	return guest.Service{OK: ok, Detail: detail}, routes
}
