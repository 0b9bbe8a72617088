package enginetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/engine"
	"github.com/holdfast/holdfast/internal/reconcile"
	"github.com/holdfast/holdfast/internal/store"
)

// cloud is one compiled cloud driven through one engine, with its own
// store: the pipeline below deploy (which adds the spec, allocation and
// the lock), so that any engine can be driven from a compiled state.
type cloud struct {
	st     *compile.State
	dir    string
	store  *store.Store
	eng    engine.Engine
	runner *reconcile.Runner
	// onEvent, if set, sees every event of apply as it happens.
	onEvent func(reconcile.Event)
}

// openCloud opens the cloud st of engine name, keeping its state in dir.
func openCloud(name string, st *compile.State, dir string, wrap func(engine.Engine) engine.Engine) (*cloud, error) {
	db, err := store.Open(store.At("", dir))
	if err != nil {
		return nil, err
	}
	var sites []string
	for _, s := range st.Sites {
		sites = append(sites, s.Name)
	}
	e, err := engine.New(name, engine.Config{Cloud: st.Cloud, Sites: sites, StateDir: filepath.Join(dir, name), Desired: st})
	if err != nil {
		db.Close()
		return nil, err
	}
	if wrap != nil {
		e = wrap(e)
	}
	// Retries are quick: the suite proves that they happen, not how long
	// they wait.
	r := &reconcile.Runner{Engine: e, Store: db, Parallel: 1, Attempts: 5, Backoff: time.Millisecond}
	return &cloud{st: st, dir: dir, store: db, eng: e, runner: r}, nil
}

func (c *cloud) Close() error { return errors.Join(c.eng.Close(), c.store.Close()) }

func (c *cloud) plan(ctx context.Context) (reconcile.Plan, error) {
	obs, err := c.runner.Observe(ctx)
	if err != nil {
		return reconcile.Plan{}, err
	}
	return reconcile.Diff(c.st.Resources, obs), nil
}

func (c *cloud) destroyPlan(ctx context.Context) (reconcile.Plan, error) {
	obs, err := c.runner.Observe(ctx)
	if err != nil {
		return reconcile.Plan{}, err
	}
	return reconcile.Diff(nil, obs), nil
}

// apply plans and applies once, recording the events.
func (c *cloud) apply(ctx context.Context, destroy bool) (reconcile.Plan, []reconcile.Event, error) {
	plan := c.plan
	if destroy {
		plan = c.destroyPlan
	}
	p, err := plan(ctx)
	if err != nil {
		return p, nil, err
	}
	var mu sync.Mutex
	var events []reconcile.Event
	c.runner.Progress = func(e reconcile.Event) {
		mu.Lock()
		defer mu.Unlock()
		events = append(events, e)
		if c.onEvent != nil {
			c.onEvent(e)
		}
	}
	defer func() { c.runner.Progress = nil }()
	_, err = c.runner.Apply(ctx, p)
	return p, events, err
}

// Environment of an engine child.
const (
	envEngine  = "HOLDFAST_CRASH_ENGINE"
	envDesired = "HOLDFAST_CRASH_DESIRED" // the compiled cloud, as JSON
	envDir     = "HOLDFAST_CRASH_DIR"
)

// engineChild applies a compiled cloud through one engine, killing itself
// at a step (killer).
func engineChild() error {
	k, err := killerFromEnv()
	if err != nil {
		return err
	}
	data, err := os.ReadFile(os.Getenv(envDesired))
	if err != nil {
		return err
	}
	var st compile.State
	if err := json.Unmarshal(data, &st); err != nil {
		return fmt.Errorf("desired state: %w", err)
	}
	c, err := openCloud(os.Getenv(envEngine), &st, os.Getenv(envDir), func(e engine.Engine) engine.Engine { return &killing{Engine: e, k: k} })
	if err != nil {
		return err
	}
	defer c.Close()
	c.runner.Progress = k.progress
	p, err := c.plan(context.Background())
	if err != nil {
		return err
	}
	_, err = c.runner.Apply(context.Background(), p)
	return err
}

// engineApply is a child applying st through engine name, with state in
// dir, killed at step killAt on point (never if killAt < 0).
func engineApply(t T, name string, st *compile.State, dir string, killAt int, point string) error {
	t.Helper()
	cmd := engineCommand(t, name, st, dir, killAt, point)
	out, err := cmd.CombinedOutput()
	if Killed(cmd) {
		return errKilled
	}
	if err != nil {
		return fmt.Errorf("%w\n%s", err, out)
	}
	return nil
}

// engineCommand is the command of such a child, not started.
func engineCommand(t T, name string, st *compile.State, dir string, killAt int, point string) *exec.Cmd {
	t.Helper()
	file := filepath.Join(dir, "desired.json")
	data, err := json.Marshal(st)
	if err != nil {
		t.Fatalf("desired state: %v", err)
	}
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatalf("desired state: %v", err)
	}
	return command(t, childEngine, envEngine+"="+name, envDesired+"="+file, envDir+"="+dir,
		envKillAt+"="+strconv.Itoa(killAt), envKillOn+"="+point)
}

var errKilled = errors.New("killed")

// killing kills the process once the engine has acted on the chosen step,
// before the runner records the outcome. Steps run one at a time
// (Parallel 1), so the step whose start was last counted is the one that
// acted.
type killing struct {
	engine.Engine
	k *killer
}

func (e *killing) Ensure(ctx context.Context, r compile.Resource) error {
	err := e.Engine.Ensure(ctx, r)
	e.acted()
	return err
}

func (e *killing) Delete(ctx context.Context, r compile.Resource) error {
	err := e.Engine.Delete(ctx, r)
	e.acted()
	return err
}

func (e *killing) acted() {
	e.k.mu.Lock()
	n := e.k.started - 1
	e.k.mu.Unlock()
	e.k.step(killActed, n)
}
