package reconcile_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/engine"
	"github.com/holdfast/holdfast/internal/reconcile"
	"github.com/holdfast/holdfast/internal/store"
)

// memEngine is an engine whose infrastructure is a map: enough to test the
// runner's ordering, parallelism, retries and bookkeeping.
type memEngine struct {
	mu       sync.Mutex
	have     map[string]bool
	log      []string // "ensure X" / "delete X" in completion order
	active   int
	peak     int
	failOnce map[string]int // id -> retryable failures left
	fail     map[string]bool
	// wait, when set, holds each step it names until two steps have been
	// active at once (or a deadline passes): a runner that starts
	// independent steps together gets past it at once, one that runs them
	// one by one shows a peak of 1, and no timing decides which.
	wait    map[string]bool
	overlap chan struct{} // closed once two steps were active at once
}

func newMem() *memEngine {
	return &memEngine{have: map[string]bool{}, failOnce: map[string]int{}, fail: map[string]bool{}}
}

func (m *memEngine) Observe(context.Context) ([]engine.Observed, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []engine.Observed
	for id := range m.have {
		out = append(out, engine.Observed{Resource: compile.NewResource(compile.InstanceID("s", id), nil, nil)})
	}
	return out, nil
}

func (m *memEngine) act(id, what string, f func()) error {
	m.mu.Lock()
	m.active++
	m.peak = max(m.peak, m.active)
	if m.peak >= 2 && m.overlap != nil {
		select {
		case <-m.overlap:
		default:
			close(m.overlap)
		}
	}
	if m.failOnce[id] > 0 {
		m.failOnce[id]--
		m.active--
		m.mu.Unlock()
		return engine.Retryable(errors.New("busy"))
	}
	if m.fail[id] {
		m.active--
		m.mu.Unlock()
		return errors.New("broken")
	}
	wait := m.wait[id]
	m.mu.Unlock()
	if wait {
		select {
		case <-m.overlap:
		case <-time.After(5 * time.Second):
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.active--
	f()
	m.log = append(m.log, what+" "+id)
	return nil
}

func (m *memEngine) Ensure(_ context.Context, r compile.Resource) error {
	return m.act(r.ID.Name, "ensure", func() { m.have[r.ID.Name] = true })
}

func (m *memEngine) Delete(_ context.Context, r compile.Resource) error {
	return m.act(r.ID.Name, "delete", func() { delete(m.have, r.ID.Name) })
}

func (m *memEngine) Close() error { return nil }

func openStore(t *testing.T) *store.Store {
	t.Helper()
	s, err := store.Open(store.At("", t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// rsrc is an instance at site s, named id, depending on instances deps.
func rsrc(id string, deps ...string) compile.Resource {
	ids := make([]compile.ID, len(deps))
	for i, d := range deps {
		ids[i] = compile.InstanceID("s", d)
	}
	return compile.NewResource(compile.InstanceID("s", id), ids, map[string]string{"v": "1"})
}

func plan(t *testing.T, r *reconcile.Runner, desired []compile.Resource) reconcile.Plan {
	t.Helper()
	obs, err := r.Observe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return reconcile.Diff(desired, obs)
}

func TestApplyOrdersByDependencyAndBoundsParallelism(t *testing.T) {
	m := newMem()
	m.wait, m.overlap = map[string]bool{}, make(chan struct{})
	r := &reconcile.Runner{Engine: m, Store: openStore(t), Parallel: 3}
	desired := []compile.Resource{rsrc("net")}
	for _, n := range []string{"a", "b", "c", "d", "e", "f"} {
		desired = append(desired, rsrc(n, "net"))
		m.wait[n] = true
	}
	desired = append(desired, rsrc("app", "a", "b"))
	res, err := r.Apply(context.Background(), plan(t, r, desired))
	if err != nil || res.Done != 8 {
		t.Fatalf("apply: %+v, %v", res, err)
	}
	pos := map[string]int{}
	for i, l := range m.log {
		pos[l] = i
	}
	for _, d := range desired {
		for _, dep := range d.Deps {
			if pos["ensure "+dep.Name] > pos["ensure "+d.ID.Name] {
				t.Errorf("%s finished before its dependency %s: %v", d.ID, dep, m.log)
			}
		}
	}
	if m.peak > 3 {
		t.Errorf("%d steps ran at once, Parallel is 3", m.peak)
	}
	if m.peak < 2 {
		t.Errorf("independent steps never overlapped (peak %d)", m.peak)
	}
	// Nothing changed: the next plan is empty.
	if p := plan(t, r, desired); len(p.Changes) != 0 {
		t.Errorf("second plan has changes: %+v", p.Changes)
	}
}

func TestRetryableErrorsAreRetriedOthersSkipDependents(t *testing.T) {
	m := newMem()
	m.failOnce["a"] = 2
	m.fail["b"] = true
	s := openStore(t)
	var retries int
	r := &reconcile.Runner{Engine: m, Store: s, Backoff: time.Millisecond, Progress: func(e reconcile.Event) {
		if e.Status == "retry" {
			retries++
		}
	}}
	desired := []compile.Resource{rsrc("a"), rsrc("b"), rsrc("c", "b"), rsrc("d", "a")}
	res, err := r.Apply(context.Background(), plan(t, r, desired))
	if err == nil {
		t.Fatal("apply with a broken step returned no error")
	}
	if res.Done != 2 || res.Failed != 1 || res.Skipped != 1 || retries != 2 {
		t.Errorf("result %+v with %d retries; want a and d done after 2 retries of a, b failed, c skipped", res, retries)
	}
	made, _ := s.Resources(context.Background())
	var ids []string
	for _, r := range made {
		ids = append(ids, r.ID.Name)
	}
	slices.Sort(ids)
	if !slices.Equal(ids, []string{"a", "d"}) {
		t.Errorf("recorded resources %v, want [a d]", ids)
	}
}

func TestDeletesGoFirstDependentsBeforeDependencies(t *testing.T) {
	m := newMem()
	s := openStore(t)
	r := &reconcile.Runner{Engine: m, Store: s}
	ctx := context.Background()
	if _, err := r.Apply(ctx, plan(t, r, []compile.Resource{rsrc("net"), rsrc("vm", "net"), rsrc("vm2", "vm")})); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveAllocations(ctx, compile.Allocations{Instances: map[string]compile.InstanceAlloc{"vm": {VMID: 100}}}); err != nil {
		t.Fatal(err)
	}
	m.log = nil
	if _, err := r.Apply(ctx, plan(t, r, []compile.Resource{rsrc("other")})); err != nil {
		t.Fatal(err)
	}
	want := []string{"delete vm2", "delete vm", "delete net", "ensure other"}
	if !slices.Equal(m.log, want) {
		t.Errorf("order %v, want %v", m.log, want)
	}
}

func TestDeleteReleasesTheAllocation(t *testing.T) {
	m := newMem()
	s := openStore(t)
	r := &reconcile.Runner{Engine: m, Store: s}
	ctx := context.Background()
	vm := compile.NewResource(compile.InstanceID("s", "vm"), nil, map[string]string{})
	if _, err := r.Apply(ctx, plan(t, r, []compile.Resource{vm})); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveAllocations(ctx, compile.Allocations{Instances: map[string]compile.InstanceAlloc{"vm": {VMID: 100, Addrs: map[string]string{}}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Apply(ctx, plan(t, r, nil)); err != nil {
		t.Fatal(err)
	}
	a, _ := s.Allocations(ctx)
	if _, still := a.Instances["vm"]; still {
		t.Error("the allocation of a destroyed instance was kept")
	}
}

func TestObserveClosesIntentsACrashLeftOpen(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	run, _ := s.BeginRun(ctx)
	if _, err := s.Begin(ctx, run, "x", "create"); err != nil { // a crash right after this
		t.Fatal(err)
	}
	m := newMem()
	m.have["x"] = true // the step had made it before the crash
	r := &reconcile.Runner{Engine: m, Store: s}
	obs, err := r.Observe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if open, _ := s.Unfinished(ctx); len(open) != 0 {
		t.Errorf("open intents after observing: %v", open)
	}
	// The half-made resource is observed, unknown to the store: the plan
	// adopts it by updating (its attributes are unknown) rather than
	// making a duplicate.
	p := reconcile.Diff([]compile.Resource{rsrc("x")}, obs)
	if len(p.Changes) != 1 || p.Changes[0].Action != reconcile.Update {
		t.Errorf("plan = %+v, want one update of x", p.Changes)
	}
}

// TestFencedStepsAreNotTaken: once the fence refuses (a replica lost
// the leader lease), no step reaches the engine, none is recorded as
// begun, and the apply says why.
func TestFencedStepsAreNotTaken(t *testing.T) {
	m := newMem()
	s := openStore(t)
	fenced := errors.New("not the leader")
	allowed := 1 // the first step passes; then the lease is lost
	r := &reconcile.Runner{Engine: m, Store: s, Parallel: 1, Fence: func(context.Context) error {
		if allowed == 0 {
			return fenced
		}
		allowed--
		return nil
	}}
	res, err := r.Apply(context.Background(), plan(t, r, []compile.Resource{rsrc("net"), rsrc("a", "net"), rsrc("b", "net")}))
	if res.Done != 1 || err == nil || !errors.Is(err, fenced) {
		t.Errorf("apply: %+v, %v; want one step done and the fence's error", res, err)
	}
	if len(m.log) != 1 || m.log[0] != "ensure net" {
		t.Errorf("the engine was asked %v, want only the step before the fence closed", m.log)
	}
	if n, err := s.Counts(context.Background()); err != nil || n["intents"] != 1 {
		t.Errorf("intents %v (%v), want the one step's", n, err)
	}
}
