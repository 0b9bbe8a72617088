// Package deploy ties the pipeline together for one cloud: it loads the
// spec, compiles it against the stored allocations, creates the engines its
// sites name, and plans, applies, destroys and observes through the
// reconciler. The CLI and the end-to-end tests both drive clouds through it.
package deploy

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/internal/atomicfile"
	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/engine"
	"github.com/holdfast/holdfast/internal/frontdoor"
	"github.com/holdfast/holdfast/internal/guest"
	"github.com/holdfast/holdfast/internal/overlay"
	"github.com/holdfast/holdfast/internal/reconcile"
	"github.com/holdfast/holdfast/internal/spec"
	"github.com/holdfast/holdfast/internal/store"
)

// DefaultStateDir is where state lives unless told otherwise:
// $HOLDFAST_STATE_DIR, else /var/lib/holdfast for root, else the user's
// state directory.
func DefaultStateDir() string {
	if d := os.Getenv("HOLDFAST_STATE_DIR"); d != "" {
		return d
	}
	if os.Geteuid() == 0 {
		return "/var/lib/holdfast"
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "holdfast")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".local", "state", "holdfast")
}

// Cloud is one cloud, loaded and locked for changes.
type Cloud struct {
	Spec    *spec.Spec
	Desired *compile.State
	Dir     string // the cloud's state directory

	next   compile.Allocations
	prev   compile.Allocations
	opts   Options
	store  *store.Store
	engine *multi
	runner *reconcile.Runner
	lock   *os.File
}

// Options tune how a cloud is driven.
type Options struct {
	StateDir string
	// Database is the PostgreSQL database (a postgres:// URL) the cloud's
	// state is kept in; empty keeps it in state.db in the cloud's
	// directory.
	Database string
	// Rename gives the cloud another name than its spec's, so that tests
	// can run an example beside a user's copy of it.
	Rename string
	// LockWait is how long to wait for another holdfast working on the same
	// cloud to finish (default 10s).
	LockWait time.Duration
	Parallel int
	Progress func(reconcile.Event)
	// Fence, when set, is asked before the apply writes its allocations
	// and before each step (reconcile.Runner.Fence).
	Fence func(context.Context) error
}

// ErrSpec is returned (wrapped) when the spec has errors; the diagnostics
// say which.
var ErrSpec = errors.New("the spec has errors")

// TenantsFile is where a cloud's tenants file lives: the zones and
// instances holdfast serve keeps for the cloud's tenants, as a spec file
// (see spec.ParseTenants) that Open and Compile merge into the operator's
// spec. The control plane writes it with WriteTenants.
func TenantsFile(stateDir, cloud string) string {
	return filepath.Join(stateDir, cloud, "tenants.yaml")
}

// WriteTenants replaces the cloud's tenants file with the zones and
// instances of s, atomically, creating the cloud's state directory if
// needed. An empty s leaves an empty file: the cloud has no tenants.
func WriteTenants(stateDir, cloud string, s *spec.Spec) error {
	file := TenantsFile(stateDir, cloud)
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return fmt.Errorf("tenants file: %w", err)
	}
	return spec.WriteFile(s, file)
}

// tenantsSource reads the tenants file of the cloud a spec names (or of
// its new name).
func tenantsSource(stateDir, rename string) spec.TenantsSource {
	return func(cloud string) (string, []byte, error) {
		if rename != "" {
			cloud = rename
		}
		file := TenantsFile(stateDir, cloud)
		data, err := os.ReadFile(file)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return file, nil, nil
		case err != nil:
			return file, nil, fmt.Errorf("tenants file: %w", err)
		case len(data) > spec.MaxFileSize:
			return file, nil, fmt.Errorf("tenants file: larger than %d MiB", spec.MaxFileSize>>20)
		}
		return file, data, nil
	}
}

// Open loads the spec at path with the cloud's tenants file merged in,
// takes the cloud's lock (one apply at a time per cloud), and compiles the
// spec against the stored allocations. An error in the tenants file stops
// the open like an error in any spec file.
func Open(path string, opts Options) (*Cloud, spec.Diagnostics, error) {
	if opts.StateDir == "" {
		opts.StateDir = DefaultStateDir()
	}
	s, diags := spec.CheckWith(path, tenantsSource(opts.StateDir, opts.Rename))
	if diags.HasErrors() {
		return nil, diags, ErrSpec
	}
	if opts.Rename != "" {
		s.Cloud.Name = opts.Rename
	}
	dir := filepath.Join(opts.StateDir, s.Cloud.Name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, diags, fmt.Errorf("state dir: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, diags, err
	}
	if err := waitLock(lock, cmp.Or(opts.LockWait, 10*time.Second)); err != nil {
		lock.Close()
		return nil, diags, fmt.Errorf("cloud %q is being changed by another holdfast (lock %s): %w", s.Cloud.Name, lock.Name(), err)
	}
	c := &Cloud{Spec: s, Dir: dir, lock: lock}
	ok := false
	defer func() {
		if !ok {
			c.Close()
		}
	}()
	if c.store, err = store.Open(store.At(opts.Database, dir)); err != nil {
		return nil, diags, err
	}
	prev, err := c.store.Allocations(context.Background())
	if err != nil {
		return nil, diags, fmt.Errorf("state: %w", err)
	}
	st, next, cd := compile.Compile(s, prev)
	diags = append(diags, cd...)
	diags.Sort()
	if diags.HasErrors() {
		return nil, diags, ErrSpec
	}
	c.Desired, c.next, c.prev, c.opts = st, next, prev, opts
	if c.engine, err = newMulti(st, dir); err != nil {
		return nil, diags, err
	}
	c.runner = &reconcile.Runner{Engine: c.engine, Store: c.store, Parallel: opts.Parallel, Progress: opts.Progress, Fence: opts.Fence}
	ctx, cancel := context.WithTimeout(context.Background(), inventoryTimeout)
	defer cancel()
	if err := c.recompile(ctx); err != nil {
		return nil, diags, err
	}
	ok = true
	return c, diags, nil
}

// inventoryTimeout bounds asking engines what their infrastructure holds.
const inventoryTimeout = 2 * time.Minute

// recompile compiles again with what the engines know of their
// infrastructure (VMIDs others hold, free memory per node), when any
// engine knows something, and replaces the engines with ones for the new
// state. Engines that share nothing (local) make this a no-op.
func (c *Cloud) recompile(ctx context.Context) error {
	var inv compile.Options
	for _, e := range c.engine.engines {
		ie, ok := e.(engine.Inventorier)
		if !ok {
			continue
		}
		got, err := ie.Inventory(ctx)
		if err != nil {
			return fmt.Errorf("inventory: %w", err)
		}
		if inv.Taken == nil {
			inv.Taken, inv.Free = map[int]string{}, map[string]map[string]int64{}
		}
		maps.Copy(inv.Taken, got.Taken)
		maps.Copy(inv.Free, got.Free)
	}
	if inv.Taken == nil {
		return nil
	}
	st, next, diags := compile.CompileWith(c.Spec, c.prev, inv)
	if diags.HasErrors() {
		return fmt.Errorf("%w: %w", ErrSpec, diags.Err())
	}
	m, err := newMulti(st, c.Dir)
	if err != nil {
		return err
	}
	c.engine.Close()
	c.Desired, c.next, c.engine = st, next, m
	c.runner = &reconcile.Runner{Engine: m, Store: c.store, Parallel: c.opts.Parallel, Progress: c.opts.Progress, Fence: c.opts.Fence}
	return nil
}

// waitLock takes the cloud's lock, waiting up to wait for its holder. A
// holder may also be short-lived: a process forked by an apply that was
// killed keeps a copy of its descriptors until it has executed its program.
func waitLock(f *os.File, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil || !errors.Is(err, unix.EWOULDBLOCK) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond) // polling the lock; flock has no timed wait
	}
}

// Close releases the engines, the store and the lock.
func (c *Cloud) Close() error {
	var errs []error
	if c.engine != nil {
		errs = append(errs, c.engine.Close())
	}
	if c.store != nil {
		errs = append(errs, c.store.Close())
	}
	if c.lock != nil {
		errs = append(errs, c.lock.Close())
	}
	return errors.Join(errs...)
}

// Observe returns what exists, with drift.
func (c *Cloud) Observe(ctx context.Context) ([]engine.Observed, error) {
	return c.runner.Observe(ctx)
}

// Plan compares the desired state with what exists.
func (c *Cloud) Plan(ctx context.Context) (reconcile.Plan, error) {
	obs, err := c.Observe(ctx)
	if err != nil {
		return reconcile.Plan{}, err
	}
	return reconcile.Diff(c.Desired.Resources, obs), nil
}

// DestroyPlan is the plan that removes everything that exists.
func (c *Cloud) DestroyPlan(ctx context.Context) (reconcile.Plan, error) {
	obs, err := c.Observe(ctx)
	if err != nil {
		return reconcile.Plan{}, err
	}
	return reconcile.Diff(nil, obs), nil
}

// Apply carries out a plan. The allocations this compile made are stored
// first, so that a crash during the apply cannot hand them out again.
//
// When an engine finds that a VMID allocated to a new instance was taken
// meanwhile (another cloud's apply on the same cluster), the cloud is
// compiled again with a fresh inventory, which gives the instance another
// VMID, and the new plan is applied; up to maxReallocations times.
func (c *Cloud) Apply(ctx context.Context, p reconcile.Plan) (reconcile.Result, error) {
	var done int
	for attempt := 0; ; attempt++ {
		if c.opts.Fence != nil {
			if err := c.opts.Fence(ctx); err != nil {
				return reconcile.Result{}, err
			}
		}
		if err := c.store.SaveAllocations(ctx, c.next); err != nil {
			return reconcile.Result{}, fmt.Errorf("state: %w", err)
		}
		if err := writeApplied(c.Dir, c.Desired); err != nil {
			return reconcile.Result{}, fmt.Errorf("state: %w", err)
		}
		res, err := c.runner.Apply(ctx, p)
		res.Done += done
		if attempt == maxReallocations || !slices.ContainsFunc(res.Errors, isTaken) {
			return res, err
		}
		// What this attempt allocated is saved and partly made: keep it,
		// so that only the instances whose VMID was taken move.
		done, c.prev = res.Done, c.next
		if err := c.recompile(ctx); err != nil {
			return res, err
		}
		if p, err = c.Plan(ctx); err != nil {
			return res, err
		}
	}
}

// writeApplied writes the state the apply sets out to make where the
// guest service hands configurations out from (guest.AppliedFile), before
// the apply's first step, so that an instance made by the apply finds its
// configuration when it boots.
func writeApplied(dir string, st *compile.State) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return atomicfile.Write(guest.AppliedFile(filepath.Dir(dir), st.Cloud), b, 0o600)
}

// maxReallocations bounds how often Apply re-allocates VMIDs that were
// taken under it.
const maxReallocations = 5

func isTaken(err error) bool {
	var t *engine.TakenError
	return errors.As(err, &t)
}

// Status is one resource as desired and as found.
type Status struct {
	ID    compile.ID `json:"id"`
	Kind  string     `json:"kind"`
	Site  string     `json:"site,omitempty"`
	State string     `json:"state"` // ok, missing, drifted, unexpected (exists but is not desired)
	Drift []string   `json:"drift,omitempty"`
	// Agent is the health its agent last reported, for an instance.
	Agent *AgentStatus `json:"agent,omitempty"`
	// Frontends are a route's health at each of its front ends, as their
	// agents last reported it.
	Frontends []FrontendStatus `json:"frontends,omitempty"`
}

// FrontendStatus is one front end's view of a route: which backends are
// up, whether it has failed over, its certificate.
type FrontendStatus struct {
	Frontend string `json:"frontend"`
	// State is ok, down (no backend up), failed-over, or the agent's
	// state when it has not reported the route (unknown, silent).
	State  string                 `json:"state"`
	Detail string                 `json:"detail"`
	Route  *frontdoor.RouteHealth `json:"route,omitempty"`
}

// AgentStatus is an instance's agent as its last report has it.
type AgentStatus struct {
	State  string        `json:"state"` // ok, unhealthy, silent (no report for a while), unknown (never reported)
	Detail string        `json:"detail"`
	Report *guest.Report `json:"report,omitempty"`
}

// Status observes every desired resource and anything unexpected.
func (c *Cloud) Status(ctx context.Context) ([]Status, error) {
	obs, err := c.Observe(ctx)
	if err != nil {
		return nil, err
	}
	found := make(map[compile.ID]engine.Observed, len(obs))
	for _, o := range obs {
		found[o.ID] = o
	}
	var out []Status
	reports := guest.NewReports(filepath.Dir(c.Dir), c.Desired.Cloud)
	now := time.Now()
	for _, r := range c.Desired.Resources {
		s := Status{ID: r.ID, Kind: r.Kind, Site: r.Site, State: "ok"}
		if r.ID.Kind == compile.ResInstance {
			rep, ok, err := reports.Get(r.ID)
			if err != nil {
				return nil, err
			}
			// An instance with nothing for an agent to do may run none
			// (the local engine's): it has an agent column only once
			// one reported.
			if ok || c.Desired.HasGuest(r.ID.Site, r.ID.Name) {
				s.Agent = &AgentStatus{}
				s.Agent.State, s.Agent.Detail = guest.Summary(rep, ok, now)
				if ok {
					s.Agent.Report = &rep
				}
			}
		}
		if r.ID.Kind == compile.ResRoute {
			if s.Frontends, err = routeHealth(c.Desired, r.ID, reports, now); err != nil {
				return nil, err
			}
		}
		o, ok := found[r.ID]
		switch {
		case !ok:
			s.State = "missing"
		case len(o.Drift) > 0:
			s.State, s.Drift = "drifted", o.Drift
		}
		delete(found, r.ID)
		out = append(out, s)
	}
	var extra []compile.ID
	for id := range found {
		extra = append(extra, id)
	}
	slices.SortFunc(extra, compile.ID.Compare)
	for _, id := range extra {
		o := found[id]
		out = append(out, Status{ID: id, Kind: o.Kind, Site: o.Site, State: "unexpected"})
	}
	return out, nil
}

// multi dispatches each resource to the engine of its site, and overlay
// memberships, which are Holdfast's own (its CA), to the overlay's members.
type multi struct {
	bySite  map[string]engine.Engine
	engines []engine.Engine
	members *overlay.Members

	mu sync.Mutex
	// observer is the engine that last reported each resource: it alone
	// can remove a resource of a site no longer in the spec.
	observer map[compile.ID]engine.Engine
}

func newMulti(st *compile.State, dir string) (*multi, error) {
	m := &multi{bySite: map[string]engine.Engine{}, members: overlay.NewMembers(filepath.Dir(dir), st.Cloud, st)}
	agents, err := guest.OpenCredentials(filepath.Dir(dir), st.Cloud)
	if err != nil {
		return nil, fmt.Errorf("agent credentials: %w", err)
	}
	byKind := map[string][]string{}
	for _, s := range st.Sites {
		byKind[s.Engine] = append(byKind[s.Engine], s.Name)
	}
	for _, kind := range slices.Sorted(func(yield func(string) bool) {
		for k := range byKind {
			if !yield(k) {
				return
			}
		}
	}) {
		e, err := engine.New(kind, engine.Config{Cloud: st.Cloud, Sites: byKind[kind], StateDir: filepath.Join(dir, kind), Desired: st, Agents: agents})
		if err != nil {
			m.Close()
			return nil, fmt.Errorf("engine %s for sites %s: %w", kind, strings.Join(byKind[kind], ", "), err)
		}
		m.engines = append(m.engines, e)
		for _, s := range byKind[kind] {
			m.bySite[s] = e
		}
	}
	return m, nil
}

// pick is the engine of the resource's site. A site no longer in the
// spec has no engine of its own: its resources go to the engine that
// reported them.
func (m *multi) pick(r compile.Resource) (engine.Engine, error) {
	if r.ID.Kind == compile.ResMember {
		return m.members, nil
	}
	site := r.ID.Site
	if site == "" {
		return nil, fmt.Errorf("%s has no site, so no engine can be told to act on it", r.ID)
	}
	if e, ok := m.bySite[site]; ok {
		return e, nil
	}
	m.mu.Lock()
	e, ok := m.observer[r.ID]
	m.mu.Unlock()
	if ok {
		return e, nil
	}
	return nil, fmt.Errorf("no engine for %s: site %q is not in the spec, and no engine reports the resource", r.ID, site)
}

func (m *multi) Observe(ctx context.Context) ([]engine.Observed, error) {
	var out []engine.Observed
	observer := map[compile.ID]engine.Engine{}
	for _, e := range slices.Concat(m.engines, []engine.Engine{m.members}) {
		obs, err := e.Observe(ctx)
		if err != nil {
			return nil, err
		}
		for _, o := range obs {
			observer[o.ID] = e
		}
		out = append(out, obs...)
	}
	m.mu.Lock()
	m.observer = observer
	m.mu.Unlock()
	return out, nil
}

func (m *multi) Ensure(ctx context.Context, r compile.Resource) error {
	e, err := m.pick(r)
	if err != nil {
		return err
	}
	return e.Ensure(ctx, r)
}

func (m *multi) Delete(ctx context.Context, r compile.Resource) error {
	e, err := m.pick(r)
	if err != nil {
		return err
	}
	return e.Delete(ctx, r)
}

func (m *multi) Close() error {
	var errs []error
	for _, e := range m.engines {
		errs = append(errs, e.Close())
	}
	return errors.Join(errs...)
}

// HasState reports whether the cloud of the spec at path has state under
// stateDir, i.e. has been applied.
func HasState(stateDir, cloud string) bool {
	_, err := os.Stat(filepath.Join(stateDir, cloud, "state.db"))
	return err == nil
}

// Compile loads the spec at path, with the cloud's tenants file, and
// compiles it against the allocations stored for its cloud, if it has been
// applied — so that what `show` prints is what exists — without taking the
// lock or asking any engine.
func Compile(path, stateDir string) (*compile.State, spec.Diagnostics, error) {
	if stateDir == "" {
		stateDir = DefaultStateDir()
	}
	s, diags := spec.CheckWith(path, tenantsSource(stateDir, ""))
	if diags.HasErrors() {
		return nil, diags, ErrSpec
	}
	var prev compile.Allocations
	if HasState(stateDir, s.Cloud.Name) {
		db, err := store.Open(store.At("", filepath.Join(stateDir, s.Cloud.Name)))
		if err != nil {
			return nil, diags, err
		}
		prev, err = db.Allocations(context.Background())
		db.Close()
		if err != nil {
			return nil, diags, fmt.Errorf("state: %w", err)
		}
	}
	st, _, cd := compile.Compile(s, prev)
	diags = append(diags, cd...)
	diags.Sort()
	if diags.HasErrors() {
		return nil, diags, ErrSpec
	}
	return st, diags, nil
}

// routeHealth is route id's health at each front end, from their agents'
// last reports.
func routeHealth(st *compile.State, id compile.ID, reports *guest.Reports, now time.Time) ([]FrontendStatus, error) {
	var route *compile.Route
	for i := range st.Routes {
		if st.Routes[i].Site == id.Site && st.Routes[i].Name == id.Name {
			route = &st.Routes[i]
		}
	}
	if route == nil {
		return nil, nil
	}
	var out []FrontendStatus
	for _, fe := range route.Frontends {
		rep, ok, err := reports.Get(compile.InstanceID(route.Site, fe))
		if err != nil {
			return nil, err
		}
		fs := FrontendStatus{Frontend: fe}
		state, detail := guest.Summary(rep, ok, now)
		var h *frontdoor.RouteHealth
		if state != "unknown" && state != "silent" {
			for i := range rep.Routes {
				if rep.Routes[i].Name == route.Name {
					h = &rep.Routes[i]
				}
			}
		}
		if h == nil {
			if state == "ok" || state == "unhealthy" {
				state, detail = "unknown", "its agent does not report the route (yet)"
			}
			fs.State, fs.Detail = state, detail
			out = append(out, fs)
			continue
		}
		fs.Route = h
		_, fs.Detail = frontdoor.Summary([]frontdoor.RouteHealth{*h})
		fs.Detail = strings.TrimPrefix(fs.Detail, "1 route; ")
		fs.State = "ok"
		switch {
		case h.FailedOver:
			fs.State = "failed-over"
		case !slices.ContainsFunc(h.Backends, func(b frontdoor.BackendHealth) bool { return b.Up }):
			fs.State = "down"
		}
		out = append(out, fs)
	}
	return out, nil
}
