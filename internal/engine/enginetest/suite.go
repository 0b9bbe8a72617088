// Package enginetest is the conformance suite every engine passes: the
// engine contract of package engine, stated as tests. An engine's own test
// calls Run with a Harness that knows how to compile a small cloud for the
// engine and how to look at, and tamper with, its infrastructure; the
// suite does the rest (docs/conformance.md).
//
// The package also holds the crash harness (Main, DeployApply, KillLoop):
// the test binary re-executes itself as a child that applies and is killed
// with SIGKILL.
package enginetest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/reconcile"
)

// T is what the suite needs of a test: *testing.T, or a recorder when the
// suite's own tests check that a property fails.
type T interface {
	Helper()
	Logf(format string, args ...any)
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Failed() bool
	TempDir() string
	Cleanup(func())
}

// Harness is what the suite knows of one engine.
type Harness struct {
	// Engine is the engine's registered name.
	Engine string
	// Desired compiles a small cloud for the engine (every step kind the
	// engine has, a handful of resources: the kill test applies it once per
	// step). The suite asks for two clouds, a and b, which must be able to
	// live side by side on one infrastructure; the harness may rename them
	// to run beside others.
	Desired func(t T, cloud string) *compile.State
	// Fingerprint sums up the infrastructure: it changes whenever the
	// engine writes anything, even the same thing again.
	Fingerprint func(t T) string
	// Check fails t unless the infrastructure holds exactly the given
	// clouds: every resource once, nothing half-made, nothing orphaned.
	Check func(t T, clouds ...*compile.State)
	// Drift changes the converged cloud st behind the engine's back and
	// returns the IDs of the resources it changed or removed.
	Drift func(t T, st *compile.State) []compile.ID
	// Fault makes the engine's steps on a resource of st fail, with a
	// failure that is transient (busy, try again) or permanent, until
	// clear is called; it returns the resource's ID. The suite clears a
	// transient fault once the step has been retried, and a permanent one
	// when the apply has failed.
	Fault func(t T, st *compile.State, permanent bool) (id compile.ID, clear func())
	// RandomKills is how many applies KillAtEveryStep also kills at random
	// moments, inside engine work (default 4).
	RandomKills int
}

// Property is one thing every engine does.
type Property struct {
	Name  string
	Check func(t T, h Harness)
}

// Properties are the suite, in the order Run runs them.
var Properties = []Property{
	{"EnsureTwiceIsANoOp", ensureTwice},
	{"DeleteWhatIsGone", deleteGone},
	{"KillAtEveryStep", killAtEveryStep},
	{"DriftIsNamedAndRepaired", driftRepaired},
	{"TransientFaultIsRetried", transientRetried},
	{"PermanentFaultFailsAtOnce", permanentFails},
	{"ConcurrentAppliesNeverCollide", concurrentApplies},
}

// Run runs every property as a subtest of t.
func Run(t *testing.T, h Harness) {
	for _, p := range Properties {
		t.Run(p.Name, func(t *testing.T) { p.Check(t, h) })
	}
}

// Failures runs one property against h outside the testing package's
// bookkeeping and returns what it reported as failures; the suite's own
// tests use it to show that a broken engine fails.
func Failures(t *testing.T, h Harness, property string) []string {
	t.Helper()
	i := slices.IndexFunc(Properties, func(p Property) bool { return p.Name == property })
	if i < 0 {
		t.Fatalf("no property %q", property)
	}
	r := &recorder{t: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer r.cleanup()
		Properties[i].Check(r, h)
	}()
	<-done
	return r.failures
}

// recorder is a T that records failures; Fatalf ends the property's
// goroutine as testing.T's does.
type recorder struct {
	t        *testing.T
	mu       sync.Mutex
	failures []string
	cleanups []func()
}

func (r *recorder) Helper()                      {}
func (r *recorder) Logf(f string, args ...any)   { r.t.Logf("  (property) "+f, args...) }
func (r *recorder) Errorf(f string, args ...any) { r.fail(fmt.Sprintf(f, args...)) }
func (r *recorder) Fatalf(f string, args ...any) { r.fail(fmt.Sprintf(f, args...)); runtime.Goexit() }
func (r *recorder) Failed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.failures) > 0
}
func (r *recorder) TempDir() string {
	dir, err := os.MkdirTemp("", "enginetest")
	if err != nil {
		r.t.Fatal(err)
	}
	r.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
func (r *recorder) Cleanup(f func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cleanups = append(r.cleanups, f)
}
func (r *recorder) fail(msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.t.Logf("  (property fails) %s", msg)
	r.failures = append(r.failures, msg)
}
func (r *recorder) cleanup() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
}

// open opens a cloud of h for t, closing it and destroying what it made
// when the test ends.
func open(t T, h Harness, name string) (*cloud, *compile.State, string) {
	t.Helper()
	st := h.Desired(t, name)
	dir := t.TempDir()
	c := reopen(t, h, st, dir)
	t.Cleanup(func() {
		c := reopen(t, h, st, dir)
		defer c.Close()
		if _, _, err := c.apply(context.Background(), true); err != nil {
			t.Errorf("destroying %s: %v", st.Cloud, err)
		}
	})
	t.Cleanup(func() { c.Close() })
	return c, st, dir
}

func reopen(t T, h Harness, st *compile.State, dir string) *cloud {
	t.Helper()
	c, err := openCloud(h.Engine, st, dir, nil)
	if err != nil {
		t.Fatalf("open %s: %v", st.Cloud, err)
	}
	return c
}

// converge applies c once, which must succeed and leave nothing to do.
func converge(t T, c *cloud) {
	t.Helper()
	if _, _, err := c.apply(context.Background(), false); err != nil {
		t.Fatalf("apply: %v", err)
	}
	mustBeConverged(t, c)
}

func mustBeConverged(t T, c *cloud) {
	t.Helper()
	p, err := c.plan(context.Background())
	if err != nil {
		t.Fatalf("plan: %v", err)
	}
	if len(p.Changes) > 0 {
		t.Fatalf("not converged after one apply: %d changes remain, first %s %s %v", len(p.Changes), p.Changes[0].Action, p.Changes[0].ID, p.Changes[0].Drift)
	}
}

// recordedOnce fails t unless the store holds every desired resource once
// and no open intent.
func recordedOnce(t T, c *cloud) {
	t.Helper()
	ctx := context.Background()
	made, err := c.store.Resources(ctx)
	if err != nil {
		t.Fatalf("state: %v", err)
	}
	n := map[compile.ID]int{}
	for _, r := range made {
		n[r.ID]++
	}
	for _, r := range c.st.Resources {
		if n[r.ID] != 1 {
			t.Errorf("%s is recorded %d times, want once", r.ID, n[r.ID])
		}
		delete(n, r.ID)
	}
	for id := range n {
		t.Errorf("%s is recorded but not desired", id)
	}
	if open, _ := c.store.Unfinished(ctx); len(open) > 0 {
		t.Errorf("%d intents left open", len(open))
	}
}

// ensureTwice: once converged, ensuring every resource again writes
// nothing, and the plan is empty.
func ensureTwice(t T, h Harness) {
	c, st, _ := open(t, h, "a")
	converge(t, c)
	before := h.Fingerprint(t)
	ctx := context.Background()
	for _, r := range st.Resources {
		if err := c.eng.Ensure(ctx, r); err != nil {
			t.Fatalf("ensure %s again: %v", r.ID, err)
		}
		if after := h.Fingerprint(t); after != before {
			t.Fatalf("ensuring %s again changed the infrastructure:\n%s", r.ID, diffLines(before, after))
		}
	}
	if _, _, err := c.apply(ctx, false); err != nil {
		t.Fatalf("second apply: %v", err)
	}
	if after := h.Fingerprint(t); after != before {
		t.Errorf("a second apply changed the infrastructure:\n%s", diffLines(before, after))
	}
	recordedOnce(t, c)
}

// deleteGone: deleting what was never made, or is already deleted,
// succeeds and writes nothing.
func deleteGone(t T, h Harness) {
	c, st, _ := open(t, h, "a")
	ctx := context.Background()
	before := h.Fingerprint(t)
	back := slices.Clone(st.Resources)
	slices.Reverse(back) // dependents first
	for _, r := range back {
		if err := c.eng.Delete(ctx, r); err != nil {
			t.Errorf("deleting %s, never made: %v", r.ID, err)
		}
	}
	if after := h.Fingerprint(t); after != before {
		t.Errorf("deleting what was never made changed the infrastructure:\n%s", diffLines(before, after))
	}
	converge(t, c)
	for _, r := range back {
		if err := c.eng.Delete(ctx, r); err != nil {
			t.Fatalf("delete %s: %v", r.ID, err)
		}
	}
	h.Check(t)
	gone := h.Fingerprint(t)
	for _, r := range back {
		if err := c.eng.Delete(ctx, r); err != nil {
			t.Errorf("deleting %s again: %v", r.ID, err)
		}
	}
	if after := h.Fingerprint(t); after != gone {
		t.Errorf("deleting what is gone changed the infrastructure:\n%s", diffLines(gone, after))
	}
	if obs, err := c.eng.Observe(ctx); err != nil || len(obs) > 0 {
		t.Errorf("after deleting everything, observe finds %d resources (%v)", len(obs), err)
	}
}

// killAtEveryStep: applies killed with SIGKILL at every step — right
// after the step's intent is written, and again right after the engine
// acted but before the outcome is recorded — and at random moments; each
// next apply resumes, and one last apply converges with every resource
// made once and recorded once.
func killAtEveryStep(t T, h Harness) {
	c, st, dir := open(t, h, "a")
	c.Close() // the children hold the cloud; the parent looks between them
	ctx := context.Background()
	for _, point := range []string{killStart, killActed} {
		total := len(st.Resources)
		kills := 0
		for k := 0; ; k++ {
			if k > total+2 {
				t.Fatalf("kill on %s: still applying after %d kills, for %d resources", point, kills, total)
			}
			// The first child dies at its first step; each next one
			// finishes the step its predecessor died in and dies at the
			// one after, so that every step of the apply sees a kill.
			at := min(k, 1)
			err := engineApply(t, h.Engine, st, dir, at, point)
			if errors.Is(err, errKilled) {
				kills++
				continue
			}
			if err != nil {
				t.Fatalf("kill on %s: apply %d failed on its own: %v", point, k, err)
			}
			break
		}
		t.Logf("kill on %s: %d applies killed", point, kills)
		c := reopen(t, h, st, dir)
		mustBeConverged(t, c)
		recordedOnce(t, c)
		h.Check(t, st)
		if _, _, err := c.apply(ctx, true); err != nil {
			t.Fatalf("destroy: %v", err)
		}
		c.Close()
		h.Check(t)
		if t.Failed() {
			return
		}
	}
	n := h.RandomKills
	if n == 0 {
		n = 4
	}
	rng := Rand(t)
	start := time.Now()
	if err := engineApply(t, h.Engine, st, dir, -1, killStart); err != nil {
		t.Fatalf("apply: %v", err)
	}
	full := time.Since(start)
	kl := KillLoop{Kills: n, Full: full,
		Remaining: func() int {
			c := reopen(t, h, st, dir)
			defer c.Close()
			p, err := c.plan(ctx)
			if err != nil {
				t.Fatalf("plan: %v", err)
			}
			return len(p.Changes)
		},
		Restart: func() {
			c := reopen(t, h, st, dir)
			defer c.Close()
			if _, _, err := c.apply(ctx, true); err != nil {
				t.Fatalf("destroy: %v", err)
			}
		},
		Child: func(killAt int) *exec.Cmd { return engineCommand(t, h.Engine, st, dir, killAt, killStart) },
	}
	b, f := kl.Run(t, rng)
	t.Logf("random kills: %d at a step's start, %d at a random moment", b, f)
	c = reopen(t, h, st, dir)
	defer c.Close()
	converge(t, c)
	recordedOnce(t, c)
	h.Check(t, st)
}

// driftRepaired: what the harness changes behind the engine's back is
// named by Observe, the plan touches exactly that, and one apply repairs
// it.
func driftRepaired(t T, h Harness) {
	c, st, _ := open(t, h, "a")
	converge(t, c)
	changed := h.Drift(t, st)
	ctx := context.Background()
	obs, err := c.runner.Observe(ctx)
	if err != nil {
		t.Fatalf("observe: %v", err)
	}
	found := map[compile.ID][]string{}
	for _, o := range obs {
		found[o.ID] = o.Drift
	}
	for _, id := range changed {
		if d, ok := found[id]; ok && len(d) == 0 {
			t.Errorf("%s was changed behind the engine's back, but observe names no drift", id)
		}
	}
	for id, d := range found {
		if len(d) > 0 && !slices.Contains(changed, id) {
			t.Errorf("%s is named as drifted (%v) but was not touched", id, d)
		}
	}
	p, err := c.plan(ctx)
	if err != nil {
		t.Fatalf("plan: %v", err)
	}
	for _, ch := range p.Changes {
		if !slices.Contains(changed, ch.ID) || ch.Action == reconcile.Delete {
			t.Errorf("the repair plan would %s %s, which was not touched", ch.Action, ch.ID)
		}
	}
	for _, id := range changed {
		if !slices.ContainsFunc(p.Changes, func(ch reconcile.Change) bool { return ch.ID == id }) {
			t.Errorf("the repair plan leaves %s as it was changed", id)
		}
	}
	converge(t, c)
	h.Check(t, st)
}

// transientRetried: a step that fails with a transient fault is retried
// (its error is engine.Retryable) and the apply succeeds once the fault
// clears.
func transientRetried(t T, h Harness) {
	c, st, _ := open(t, h, "a")
	id, clear := h.Fault(t, st, false)
	var once sync.Once
	c.onEvent = func(e reconcile.Event) {
		if e.Change.ID == id && e.Status == "retry" {
			once.Do(clear)
		}
	}
	_, events, err := c.apply(context.Background(), false)
	once.Do(clear)
	if err != nil {
		t.Fatalf("apply with a transient fault on %s: %v", id, err)
	}
	if !slices.ContainsFunc(events, func(e reconcile.Event) bool { return e.Change.ID == id && e.Status == "retry" }) {
		t.Errorf("%s met a transient fault but was not retried", id)
	}
	mustBeConverged(t, c)
	h.Check(t, st)
}

// permanentFails: a step that fails for good fails at once, without
// retries, and the apply reports it; once the cause is gone, the next
// apply converges.
func permanentFails(t T, h Harness) {
	c, st, _ := open(t, h, "a")
	id, clear := h.Fault(t, st, true)
	_, events, err := c.apply(context.Background(), false)
	clear()
	if err == nil || !strings.Contains(err.Error(), id.String()) {
		t.Errorf("apply with a permanent fault on %s = %v, want an error naming it", id, err)
	}
	for _, e := range events {
		if e.Change.ID == id && e.Status == "retry" {
			t.Errorf("%s failed for good but was retried (%v)", id, e.Err)
		}
	}
	converge(t, c)
	h.Check(t, st)
}

// concurrentApplies: two clouds applied at once to one infrastructure
// both converge, each with exactly its own resources.
func concurrentApplies(t T, h Harness) {
	a, sa, _ := open(t, h, "a")
	b, sb, _ := open(t, h, "b")
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, c := range []*cloud{a, b} {
		wg.Go(func() {
			// Steps of each cloud run in parallel too.
			c.runner.Parallel = 8
			_, _, errs[i] = c.apply(context.Background(), false)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("apply %d: %v", i, err)
		}
	}
	mustBeConverged(t, a)
	mustBeConverged(t, b)
	recordedOnce(t, a)
	recordedOnce(t, b)
	h.Check(t, sa, sb)
}

// diffLines shows how two fingerprints differ, line by line.
func diffLines(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	var out []string
	for _, l := range al {
		if !slices.Contains(bl, l) {
			out = append(out, "- "+l)
		}
	}
	for _, l := range bl {
		if !slices.Contains(al, l) {
			out = append(out, "+ "+l)
		}
	}
	if len(out) == 0 {
		return "(the same lines, in another order or count)"
	}
	return strings.Join(out, "\n")
}
