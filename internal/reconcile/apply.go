package reconcile

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/engine"
	"github.com/holdfast/holdfast/internal/store"
)

// Runner observes an engine and carries out plans on it, recording its
// intent before each step and the outcome after it, so that a crash at any
// point leaves a state the next run can resolve.
type Runner struct {
	Engine   engine.Engine
	Store    *store.Store
	Parallel int           // steps at once (default 8)
	Attempts int           // tries of a step that fails with a retryable error (default 5)
	Backoff  time.Duration // wait before the first retry, doubling after (default 100ms)
	Progress func(Event)   // called from many goroutines, one event at a time
	// Fence, when set, is asked before every step and every retry of
	// one: an error refuses the step, untried. Replicas sharing the
	// state set it to their leader lease's check (package leader), so
	// that one that lost the lease changes nothing.
	Fence func(context.Context) error
}

// Event reports progress of one step.
type Event struct {
	Change  Change
	Status  string // start, retry, done, failed, skipped
	Attempt int
	Err     error
	Elapsed time.Duration
	Done    int // steps finished so far, of Total
	Total   int
}

// Result sums up an apply.
type Result struct {
	Done, Failed, Skipped int
	Errors                []error
}

// Unrecorded is the drift of a resource that exists but that the store
// does not know: a crash fell between making it and recording it.
const Unrecorded = "exists but is not recorded (an apply was interrupted)"

// Observe returns what really exists: the engine's observation, with the
// attributes each resource was made with (from the store) so that the plan
// compares like with like. Resources the store knows but the engine cannot
// find are absent (they will be made again); resources the engine finds
// but the store does not know (a crash between making and recording) are
// included, so the plan adopts or removes them. Intents a crash left open
// are closed, since this observation supersedes them.
func (r *Runner) Observe(ctx context.Context) ([]engine.Observed, error) {
	open, err := r.Store.Unfinished(ctx)
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	made, err := r.Store.Resources(ctx)
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	found, err := r.Engine.Observe(ctx)
	if err != nil {
		return nil, fmt.Errorf("observe: %w", err)
	}
	byID := make(map[compile.ID]engine.Observed, len(found))
	for _, o := range found {
		byID[o.ID] = o
	}
	out := make([]engine.Observed, 0, len(found))
	// Unknown resources first: deleting backwards removes them last, after
	// anything made that might sit on them.
	var unknown []engine.Observed
	known := make(map[compile.ID]bool, len(made))
	for _, m := range made {
		known[m.ID] = true
	}
	for _, o := range found {
		if !known[o.ID] {
			// Named as drift, so that a desired resource found this way is
			// updated — and so recorded — even when it looks as desired:
			// otherwise it would stay unrecorded, and the store would not
			// know what exists.
			o.Drift = append(slices.Clip(o.Drift), Unrecorded)
			unknown = append(unknown, o)
		}
	}
	slices.SortFunc(unknown, func(a, b engine.Observed) int { return a.ID.Compare(b.ID) })
	out = append(out, unknown...)
	for _, m := range made {
		if o, ok := byID[m.ID]; ok {
			out = append(out, engine.Observed{Resource: m, Drift: o.Drift})
		}
	}
	if len(open) > 0 {
		ids := make([]int64, len(open))
		for i, in := range open {
			ids[i] = in.ID
		}
		if err := r.Store.Abandon(ctx, ids); err != nil {
			return nil, fmt.Errorf("state: %w", err)
		}
	}
	return out, nil
}

// Apply carries out p. Deletes go first (dependents before what they
// depend on), then creates and updates (dependencies first); independent
// steps run in parallel. A step that fails is not retried unless its error
// is retryable; what depends on it is skipped; everything else goes on.
func (r *Runner) Apply(ctx context.Context, p Plan) (Result, error) {
	run, err := r.Store.BeginRun(ctx)
	if err != nil {
		return Result{}, fmt.Errorf("state: %w", err)
	}
	var deletes, ensures []Change
	for _, c := range p.Changes {
		if c.Action == Delete {
			deletes = append(deletes, c)
		} else {
			ensures = append(ensures, c)
		}
	}
	x := &execution{r: r, run: run, total: len(p.Changes)}
	// A delete waits for the deletes of what depends on it.
	x.phase(ctx, deletes, func(c Change, in map[compile.ID]bool) []compile.ID {
		var waits []compile.ID
		for _, d := range deletes {
			if slices.Contains(d.Deps, c.ID) {
				waits = append(waits, d.ID)
			}
		}
		return waits
	})
	// A create or update waits for the changes of what it depends on.
	x.phase(ctx, ensures, func(c Change, in map[compile.ID]bool) []compile.ID {
		var waits []compile.ID
		for _, d := range c.Deps {
			if in[d] {
				waits = append(waits, d)
			}
		}
		return waits
	})
	outcome := "done"
	if x.res.Failed > 0 || x.res.Skipped > 0 {
		outcome = "failed"
	}
	if ctx.Err() != nil {
		outcome = "interrupted"
	}
	// Recording the end of the run must not depend on the caller's context.
	if err := r.Store.EndRun(context.WithoutCancel(ctx), run, outcome); err != nil {
		x.res.Errors = append(x.res.Errors, err)
	}
	if len(x.res.Errors) > 0 {
		return x.res, errors.Join(x.res.Errors...)
	}
	return x.res, ctx.Err()
}

type execution struct {
	r     *Runner
	run   int64
	total int

	mu   sync.Mutex // guards res, done and Progress calls
	res  Result
	done int
}

func (x *execution) report(e Event) {
	x.mu.Lock()
	defer x.mu.Unlock()
	switch e.Status {
	case "done":
		x.res.Done++
		x.done++
	case "failed":
		x.res.Failed++
		x.done++
		x.res.Errors = append(x.res.Errors, fmt.Errorf("%s %s: %w", e.Change.Action, e.Change.ID, e.Err))
	case "skipped":
		x.res.Skipped++
		x.done++
	}
	e.Done, e.Total = x.done, x.total
	if x.r.Progress != nil {
		x.r.Progress(e)
	}
}

// phase runs changes as a dependency graph: each waits for the changes
// waitsOn names, then takes one of Parallel slots.
func (x *execution) phase(ctx context.Context, changes []Change, waitsOn func(Change, map[compile.ID]bool) []compile.ID) {
	if len(changes) == 0 {
		return
	}
	in := make(map[compile.ID]bool, len(changes))
	for _, c := range changes {
		in[c.ID] = true
	}
	type node struct {
		done chan struct{}
		ok   bool
	}
	nodes := make(map[compile.ID]*node, len(changes))
	for _, c := range changes {
		nodes[c.ID] = &node{done: make(chan struct{})}
	}
	slots := make(chan struct{}, cmp.Or(x.r.Parallel, 8))
	var wg sync.WaitGroup
	for _, c := range changes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := nodes[c.ID]
			defer close(n.done)
			var failed []string
			for _, w := range waitsOn(c, in) {
				<-nodes[w].done
				if !nodes[w].ok {
					failed = append(failed, w.String())
				}
			}
			if len(failed) > 0 {
				x.report(Event{Change: c, Status: "skipped", Err: fmt.Errorf("depends on %s, which failed", strings.Join(failed, ", "))})
				return
			}
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				x.report(Event{Change: c, Status: "skipped", Err: ctx.Err()})
				return
			}
			defer func() { <-slots }()
			n.ok = x.step(ctx, c)
		}()
	}
	wg.Wait()
}

func (r *Runner) fence(ctx context.Context) error {
	if r.Fence == nil {
		return nil
	}
	return r.Fence(ctx)
}

// step carries out one change with retries, writing the intent before and
// the outcome after.
func (x *execution) step(ctx context.Context, c Change) bool {
	r := x.r
	start := time.Now()
	if err := r.fence(ctx); err != nil {
		x.report(Event{Change: c, Status: "failed", Err: err})
		return false
	}
	intent, err := r.Store.Begin(ctx, x.run, c.ID.String(), string(c.Action))
	if err != nil {
		x.report(Event{Change: c, Status: "failed", Err: fmt.Errorf("state: %w", err)})
		return false
	}
	res := compile.Resource{ID: c.ID, Kind: c.Kind, Site: c.Site, Deps: c.Deps, Attrs: c.After}
	if c.Action == Delete {
		res.Attrs = c.Before
	}
	x.report(Event{Change: c, Status: "start"})
	backoff := cmp.Or(r.Backoff, 100*time.Millisecond)
	attempts := cmp.Or(r.Attempts, 5)
	for attempt := 1; ; attempt++ {
		if attempt > 1 {
			if err = r.fence(ctx); err != nil {
				break
			}
		}
		if c.Action == Delete {
			err = r.Engine.Delete(ctx, res)
		} else {
			err = r.Engine.Ensure(ctx, res)
		}
		if err == nil || !engine.IsRetryable(err) || attempt >= attempts || ctx.Err() != nil {
			break
		}
		x.report(Event{Change: c, Status: "retry", Attempt: attempt, Err: err})
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
		}
		backoff *= 2
	}
	// The outcome is recorded even if the caller gave up: it is what happened.
	bg := context.WithoutCancel(ctx)
	if err != nil {
		if serr := r.Store.Failed(bg, intent, err); serr != nil {
			err = errors.Join(err, serr)
		}
		x.report(Event{Change: c, Status: "failed", Err: err, Elapsed: time.Since(start)})
		return false
	}
	if c.Action == Delete {
		err = r.Store.Removed(bg, intent, res)
	} else {
		err = r.Store.Made(bg, intent, res)
	}
	if err != nil {
		x.report(Event{Change: c, Status: "failed", Err: fmt.Errorf("state: %w", err), Elapsed: time.Since(start)})
		return false
	}
	x.report(Event{Change: c, Status: "done", Elapsed: time.Since(start)})
	return true
}
