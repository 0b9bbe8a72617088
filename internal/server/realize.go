package server

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/holdfast/holdfast/api"
	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/deploy"
	"github.com/holdfast/holdfast/internal/reconcile"
	"github.com/holdfast/holdfast/internal/spec"
	"github.com/holdfast/holdfast/internal/store"
	"github.com/holdfast/holdfast/internal/tenant"
)

// realizer turns the recorded tenant networks and instances into the
// cloud's tenants spec and converges the cloud to it with the reconciler,
// exactly as `holdfast apply` does; then it records what exists and
// finishes the operations that asked for it. One pass runs at a time; a
// pass takes every operation pending when it starts, so a burst of
// requests costs one reconcile, not one each.
//
// One tenant's object cannot stop the others: an object the cloud's spec
// refuses fails its own operation and is left out of the pass (or, if the
// cloud already has it, kept as it was), and the rest is converged.
type realizer struct {
	s      *Server
	wake   chan struct{}
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once
	health health
	// desired is the cloud's compiled state as the last pass opened it:
	// what engines need to reach an instance outside a pass (console.go).
	desired atomic.Pointer[compile.State]
}

// health is what /readyz and the metrics say about the realizer.
type health struct {
	mu          sync.Mutex
	failures    int       // passes in a row that failed as a whole
	lastErr     string    // why the last of them failed
	lastSuccess time.Time // when the last pass that ran through ended
}

// unreadyAfter is how many passes in a row must fail as a whole before
// /readyz says the realizer cannot converge: one failure may be passing
// (the cloud's lock held by an operator's apply), and failed passes are
// retried within seconds (passAgainAfter), so three take a few seconds.
const unreadyAfter = 3

// passAgainAfter is how long the realizer waits to pass again after failures
// passes in a row failed as a whole: 1s, doubling, at most the resync
// interval (or 5 minutes).
func passAgainAfter(failures int, every time.Duration) time.Duration {
	most := 5 * time.Minute
	if every > 0 {
		most = min(most, every)
	}
	return min(time.Second<<min(failures-1, 16), most)
}

func newRealizer(s *Server) *realizer {
	return &realizer{s: s, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
}

// leading reports whether this replica reconciles now: it may, and it
// holds the lease.
func (s *Server) leading() bool {
	if s.lead == nil {
		return false
	}
	_, ok := s.lead.Leading()
	return ok
}

// kick asks for a pass soon, of whichever replica reconciles.
func (r *realizer) kick() {
	if relay := r.s.hub.relay; relay != nil {
		relay(busMsg{Kick: true})
	}
	r.wakeUp()
}

// wakeUp asks this replica's realizer for a pass soon.
func (r *realizer) wakeUp() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// stopping is closed when the server shuts down.
func (r *realizer) stopping() <-chan struct{} { return r.stop }

// run passes until Shutdown: at start (to pick up operations a previous
// run left), when kicked, every resync interval to repair drift, and soon
// again after a pass that failed as a whole.
func (r *realizer) run() {
	defer close(r.done)
	every := r.s.cfg.Resync
	if every == 0 {
		every = 5 * time.Minute
	}
	var tick <-chan time.Time
	if every > 0 {
		t := time.NewTicker(every)
		defer t.Stop()
		tick = t.C
	}
	r.kick()
	first := true
	for {
		var retry *time.Timer
		var again <-chan time.Time
		if n := r.failures(); n > 0 {
			retry = time.NewTimer(passAgainAfter(n, every))
			again = retry.C
		}
		select {
		case <-r.stop:
			return
		case <-r.wake:
		case <-tick:
		case <-again:
		}
		if retry != nil {
			retry.Stop()
		}
		if !r.s.leading() {
			// Another replica reconciles; this one passes once it
			// leads (the lease's OnChange wakes it).
			if first {
				close(r.s.ready)
				first = false
			}
			continue
		}
		r.pass()
		if first {
			close(r.s.ready)
			first = false
		}
	}
}

// shutdown stops after the pass under way: a pass is never cut short,
// because the reconciler's steps are what an operation promised; anything
// not started stays pending in the database for the next start.
func (r *realizer) shutdown(ctx context.Context) error {
	r.once.Do(func() { close(r.stop) })
	if !r.s.cfg.Realize {
		return nil
	}
	select {
	case <-r.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *realizer) failures() int {
	r.health.mu.Lock()
	defer r.health.mu.Unlock()
	return r.health.failures
}

// unready says why the realizer cannot converge, or "" while it can.
func (r *realizer) unready() string {
	h := &r.health
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.failures < unreadyAfter {
		return ""
	}
	since := "it has never converged"
	if !h.lastSuccess.IsZero() {
		since = "the last pass that converged ended " + h.lastSuccess.UTC().Format(time.RFC3339)
	}
	return fmt.Sprintf("cannot converge: the last %d passes failed (%s): %s", h.failures, since, h.lastErr)
}

func (r *realizer) pass() {
	start := time.Now()
	if err := r.reconcile(context.Background()); err != nil { // a pass finishes even during shutdown
		r.s.log.Error("reconcile failed", "err", err, "failures in a row", r.failures())
	}
	r.s.met.reconcileTime.Observe(time.Since(start).Seconds())
}

// record keeps the outcome of a pass for /readyz and the metrics. It runs
// before the pass's operations end, so that a client who saw its
// operation end sees the pass's outcome too.
func (r *realizer) record(p *pass, passErr error) {
	s, h := r.s, &r.health
	h.mu.Lock()
	defer h.mu.Unlock()
	s.met.refused.Set(float64(len(p.refused)))
	if passErr != nil {
		h.failures++
		h.lastErr = firstLine(passErr.Error())
		s.met.reconciles.WithLabelValues("error").Inc()
		s.met.failures.Set(float64(h.failures))
		return
	}
	h.failures, h.lastErr, h.lastSuccess = 0, "", s.now()
	s.met.failures.Set(0)
	s.met.lastSuccess.Set(float64(h.lastSuccess.UnixNano()) / 1e9)
	result := "ok"
	if len(p.refused) > 0 || p.applyErr != nil {
		result = "partial"
	}
	s.met.reconciles.WithLabelValues(result).Inc()
}

// snapshot is the records one pass works from.
type snapshot struct {
	ops   []tenant.Op
	nets  []tenant.NetworkRecord
	insts []tenant.InstanceRecord
}

func (r *realizer) snapshot(ctx context.Context) (snapshot, error) {
	var sn snapshot
	err := r.s.db.Do(ctx, func(tx *tenant.Tx) error {
		var err error
		if sn.ops, err = tx.OpenOperations(); err != nil {
			return err
		}
		for _, o := range sn.ops {
			if err := tx.UpdateOperation(o.ID, api.OpRunning, 5, "planning", nil); err != nil {
				return err
			}
		}
		if sn.nets, err = tx.AllNetworks(); err != nil {
			return err
		}
		sn.insts, err = tx.AllInstances()
		return err
	})
	r.s.met.openOps.Set(float64(len(sn.ops)))
	return sn, err
}

// object is a tenant's object as the spec names it: a zone (a tenant
// network) or an instance. A network and an instance may share a name.
type object struct{ kind, name string }

const (
	kindZone     = "zone"
	kindInstance = "instance"
)

func (o object) String() string { return o.kind + " " + o.name }

func zoneObject(n tenant.NetworkRecord) object       { return object{kindZone, n.Zone} }
func instanceObject(in tenant.InstanceRecord) object { return object{kindInstance, in.Spec} }

// opObject is the object an operation changes.
func opObject(op tenant.Op) object {
	if strings.HasPrefix(op.Kind, "network.") {
		return object{kindZone, op.Object}
	}
	return object{kindInstance, op.Object}
}

// resourceObject is the object a resource belongs to: network/<site>/<zone>
// to its zone, instance/<name> to its instance; other resources to none.
func resourceObject(id compile.ID) (object, bool) {
	switch id.Kind {
	case compile.ResNetwork:
		return object{kindZone, id.Name}, true
	case compile.ResInstance:
		return object{kindInstance, id.Name}, true
	}
	return object{}, false
}

// pass is one run of the realizer: the records it works from and what the
// cloud made of them.
type pass struct {
	r  *realizer
	s  *Server
	sn snapshot
	// accepted is the tenants file as the cloud last accepted it, and
	// made what the cloud's state says it has made: a refused object the
	// cloud has is kept as accepted, never deleted for the refusal. Either
	// is nil when it cannot be read; then the pass sets nothing aside and
	// fails rather than guess.
	accepted *spec.Spec
	made     map[object]bool
	// written are the objects the last attempt wrote into the tenants file.
	written map[object]bool
	// refused holds why the cloud's spec refuses an object; kept, which of
	// those the pass writes as they were accepted. The others are left out.
	refused map[object]string
	kept    map[object]bool
	// failed holds why the step of an object failed; progress events of
	// the apply's workers fill it. applyErr is every failed step's error.
	mu       sync.Mutex
	failed   map[object]string
	applyErr error
}

func newPass(r *realizer, sn snapshot) *pass {
	return &pass{r: r, s: r.s, sn: sn, refused: map[object]string{}, kept: map[object]bool{}, failed: map[object]string{}}
}

func (r *realizer) reconcile(ctx context.Context) error {
	s := r.s
	p := newPass(r, snapshot{})
	var err error
	if p.sn, err = r.snapshot(ctx); err != nil {
		p.finish(ctx, nil, nil, err)
		return err
	}
	for _, o := range p.sn.ops {
		s.emit(api.Event{Type: "operation.running", Tenant: o.Tenant, Object: "/v1/operations/" + o.ID})
	}
	if p.accepted, err = s.acceptedTenants(); err != nil {
		s.log.Error("the tenants file the cloud accepted last cannot be read; refused objects will fail the pass", "err", err)
	}
	if p.made, err = s.madeObjects(ctx); err != nil {
		s.log.Error("the cloud's state cannot be read; refused objects will fail the pass", "err", err)
	}
	progress := func(e reconcile.Event) {
		switch e.Status {
		case "failed", "skipped":
			if o, ok := resourceObject(e.Change.ID); ok {
				p.mu.Lock()
				p.failed[o] = errText(e.Err)
				p.mu.Unlock()
			}
		case "done":
			if e.Total > 0 {
				r.progress(ctx, p.sn.ops, 10+85*e.Done/e.Total, fmt.Sprintf("%d of %d steps", e.Done, e.Total))
			}
		}
	}
	c, err := p.open(progress)
	if err != nil {
		p.finish(ctx, nil, nil, err)
		return err
	}
	defer c.Close()
	r.desired.Store(c.Desired)
	plan, err := c.Plan(ctx)
	if err != nil {
		p.finish(ctx, c, nil, err)
		return err
	}
	if len(plan.Changes) > 0 {
		s.log.Info("reconciling", "create", plan.Summary.Create, "update", plan.Summary.Update, "delete", plan.Summary.Delete)
	}
	// Steps that failed are in p.failed, each charged to its own object:
	// a resource that will not converge fails the operations of its
	// object, not the others'.
	_, p.applyErr = c.Apply(ctx, plan)
	if p.applyErr != nil && ctx.Err() != nil {
		p.finish(ctx, c, nil, p.applyErr)
		return p.applyErr
	}
	if p.applyErr != nil {
		s.log.Warn("some steps failed; their objects' operations fail", "err", p.applyErr)
	}
	st, err := c.Status(ctx)
	if err != nil {
		p.finish(ctx, c, nil, err)
		return err
	}
	p.finish(ctx, c, st, nil)
	return nil
}

func errText(err error) string {
	if err == nil {
		return "failed"
	}
	return err.Error()
}

// acceptedTenants reads the tenants file the cloud accepted last: open
// keeps the file it writes only once the cloud has accepted it. No file is
// an empty spec (the cloud has no tenants' objects).
func (s *Server) acceptedTenants() (*spec.Spec, error) {
	file := deploy.TenantsFile(s.cfg.StateDir, s.cloud)
	data, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return &spec.Spec{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("tenants file: %w", err)
	}
	ts, diags := spec.ParseTenants(file, data)
	if ts == nil {
		return nil, fmt.Errorf("tenants file: %w", diags.Err())
	}
	return ts, nil
}

// madeObjects names the zones and instances the cloud's state says were
// made and not removed since.
func (s *Server) madeObjects(ctx context.Context) (map[object]bool, error) {
	made := map[object]bool{}
	if s.cfg.Database == "" && !deploy.HasState(s.cfg.StateDir, s.cloud) {
		return made, nil // never applied: nothing made
	}
	st, err := store.Open(store.At(s.cfg.Database, filepath.Join(s.cfg.StateDir, s.cloud)))
	if err != nil {
		return nil, err
	}
	defer st.Close()
	rs, err := st.Resources(ctx)
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	for _, r := range rs {
		if o, ok := resourceObject(r.ID); ok {
			made[o] = true
		}
	}
	return made, nil
}

// open writes the tenants spec and opens the cloud with it. When the
// cloud's spec refuses tenants' objects, each is set aside — left out, or
// written as the cloud accepted it last — and the spec written again
// without them, until the cloud accepts it: the objects' operations fail,
// the others go on. What cannot be set aside fails the pass as a whole,
// and the tenants file the cloud accepted last is put back: an error in
// the operator's spec, or an object the cloud refuses even as it was made
// (deleting it is no realizer's call).
func (p *pass) open(progress func(reconcile.Event)) (*deploy.Cloud, error) {
	s := p.s
	for {
		if err := deploy.WriteTenants(s.cfg.StateDir, s.cloud, p.tenantSpec()); err != nil {
			return nil, err
		}
		c, diags, err := deploy.Open(s.cfg.SpecPath, deploy.Options{StateDir: s.cfg.StateDir, Database: s.cfg.Database, Rename: s.cfg.Rename, LockWait: 5 * time.Minute, Progress: progress,
			Fence: s.lead.Fence})
		if err == nil {
			for _, o := range p.refusedObjects() {
				s.log.Warn("the cloud refused a tenant's object; it is set aside", "object", o.String(), "kept as it was", p.kept[o], "why", p.refused[o])
			}
			return c, nil
		}
		if errors.Is(err, deploy.ErrSpec) {
			var more spec.ErrorList // a recompile's findings come in the error
			if errors.As(err, &more) {
				diags = append(diags, more...)
			}
			errs := diags.Errors()
			if p.setAside(errs) {
				continue
			}
			if len(errs) > 0 {
				// The first line is what /readyz and the operations say.
				more := ""
				if len(errs) > 1 {
					more = fmt.Sprintf(" (and %d more)", len(errs)-1)
				}
				err = fmt.Errorf("%w: %s%s\n%w", err, errs[0], more, diags.Err())
			}
		}
		p.restore()
		return nil, err
	}
}

// setAside charges every finding to the tenant objects it is about and
// reports whether any was newly set aside (so the next attempt differs).
// A finding about no tenant object, or about one that cannot be set aside
// (refuse), changes nothing.
func (p *pass) setAside(errs spec.Diagnostics) bool {
	if p.accepted == nil || p.made == nil {
		return false
	}
	var objs []object
	why := map[object][]string{}
	for _, d := range errs {
		for _, o := range p.objectsOf(d) {
			if why[o] == nil {
				objs = append(objs, o)
			}
			if !slices.Contains(why[o], d.Message) {
				why[o] = append(why[o], d.Message)
			}
		}
	}
	// An instance in a refused network is refused for that, whatever else
	// its findings say (that its zone does not exist).
	for _, in := range p.sn.insts {
		o, zone := instanceObject(in), object{kindZone, tenant.ZoneName(in.Tenant, in.Network)}
		if why[o] == nil {
			continue
		}
		if r := cmpStr(p.refused[zone], strings.Join(why[zone], "; ")); r != "" {
			why[o] = []string{fmt.Sprintf("its network %q was refused: %s", in.Network, r)}
		}
	}
	moved := false
	for _, o := range objs {
		moved = p.refuse(o, strings.Join(why[o], "; ")) || moved
	}
	return moved
}

// objectsOf names the objects of the tenants file a finding is about: the
// zone or instance it names, or the instances made from the catalogue
// template it names.
func (p *pass) objectsOf(d spec.Diagnostic) []object {
	kind, name := d.Object()
	switch kind {
	case kindZone, kindInstance:
		if o := (object{kind, name}); p.written[o] {
			return []object{o}
		}
	case "template":
		var objs []object
		for _, in := range p.sn.insts {
			if o := instanceObject(in); p.written[o] && !p.kept[o] && in.Image != "" && catalogueTemplate(in.Template) == name {
				objs = append(objs, o)
			}
		}
		return objs
	}
	return nil
}

// refuse sets o aside because of why, and reports whether that changes
// the next attempt: an object the cloud never made is left out; one it
// made is kept as the cloud accepted it. One already set aside, or made
// but without an accepted definition to keep, cannot be: leaving it out
// would delete it.
func (p *pass) refuse(o object, why string) bool {
	if _, ok := p.refused[o]; ok {
		return false
	}
	keep := p.made[o]
	if keep && p.acceptedZone(o) == nil && p.acceptedInstance(o) == nil {
		return false
	}
	p.refused[o], p.kept[o] = why, keep
	return true
}

func (p *pass) acceptedZone(o object) *spec.Zone {
	if p.accepted == nil || o.kind != kindZone {
		return nil
	}
	return p.accepted.Zones[o.name]
}

func (p *pass) acceptedInstance(o object) *spec.Instance {
	if p.accepted == nil || o.kind != kindInstance {
		return nil
	}
	return p.accepted.Instances[o.name]
}

// refusedObjects lists the objects set aside, in order, for logs.
func (p *pass) refusedObjects() []object {
	out := make([]object, 0, len(p.refused))
	for o := range p.refused {
		out = append(out, o)
	}
	slices.SortFunc(out, func(a, b object) int { return strings.Compare(a.String(), b.String()) })
	return out
}

// restore puts back the tenants file the cloud accepted last, so that the
// file on disk is always one the cloud accepted (an operator's plan and
// apply read it too).
func (p *pass) restore() {
	if p.accepted == nil {
		return
	}
	if err := deploy.WriteTenants(p.s.cfg.StateDir, p.s.cloud, p.accepted); err != nil {
		p.s.log.Error("putting back the tenants file the cloud accepted", "err", err)
	}
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// catalogueTemplate is the name in the spec of a template of the
// operator's catalogue; api.Template's name pattern and length keep it a
// valid spec name.
func catalogueTemplate(name string) string { return "catalogue--" + name }

// tenantSpec is the spec of every tenant network and instance that should
// exist: those being deleted are left out, so the reconciler removes them;
// so are those the cloud refused and never made; those it refused but
// made are written as it accepted them.
func (p *pass) tenantSpec() *spec.Spec {
	t := p.s.pool
	ts := &spec.Spec{Zones: map[string]*spec.Zone{}, Instances: map[string]*spec.Instance{}, Templates: map[string]*spec.Template{}}
	p.written = map[object]bool{}
	for _, n := range p.sn.nets {
		o := zoneObject(n)
		switch {
		case n.Status == "deleting", p.refused[o] != "" && !p.kept[o]:
			continue
		case p.kept[o]:
			ts.Zones[n.Zone] = p.acceptedZone(o)
			p.written[o] = true
			continue
		case n.Status == "failed" && p.accepted != nil && p.accepted.Zones[n.Zone] == nil:
			continue // refused by an earlier pass: never accepted
		}
		vlan, dhcp := n.VLAN, false // addresses are assigned, not leased: the whole subnet is the pool
		ts.Zones[n.Zone] = &spec.Zone{
			Type: t.zoneType, VLAN: &vlan, CIDR: n.CIDR, Tenant: n.Tenant, DHCP: &dhcp,
			AccessTo: t.access, Sites: []string{t.site},
			Description: fmt.Sprintf("Network %s of tenant %s.", n.Name, n.Tenant),
		}
		p.written[o] = true
	}
	keep := func(o object) {
		in := p.acceptedInstance(o)
		ts.Instances[o.name] = in
		p.written[o] = true
		// made from the template it was made from
		if tp := in.Template; tp != "" && ts.Templates[tp] == nil && p.accepted.Templates[tp] != nil {
			ts.Templates[tp] = p.accepted.Templates[tp]
		}
	}
	for _, in := range p.sn.insts {
		o := instanceObject(in)
		switch {
		case in.Status == api.StatusDeleting, p.refused[o] != "" && !p.kept[o]:
			continue
		case p.kept[o]:
			keep(o)
			continue
		case in.Status == api.StatusFailed && in.VMID == 0:
			continue // failed before it ever existed
		}
		zone := tenant.ZoneName(in.Tenant, in.Network)
		if ts.Zones[zone] == nil {
			why := fmt.Sprintf("its network %q is not in the cloud", in.Network)
			if r := p.refused[object{kindZone, zone}]; r != "" {
				why = fmt.Sprintf("its network %q was refused: %s", in.Network, r)
			}
			if p.refuse(o, why) && p.kept[o] {
				keep(o)
			}
			continue
		}
		cpus, mem := in.CPUs, spec.Size{MiB: in.MemoryMiB}
		si := &spec.Instance{
			Site: t.site, Role: t.role, Zone: zone, Tenant: in.Tenant,
			CPUs: &cpus, Memory: &mem, Power: in.Power, Reboot: in.Reboot, Rebuild: in.Rebuild,
			Description: fmt.Sprintf("Instance %s of tenant %s.", in.Name, in.Tenant),
		}
		if in.DiskGiB > 0 {
			si.Disk = &spec.Size{MiB: in.DiskGiB << 10}
		}
		for _, k := range in.Keys {
			si.SSHKeys = append(si.SSHKeys, k.Key)
		}
		if in.Image != "" {
			name := catalogueTemplate(in.Template)
			ts.Templates[name] = &spec.Template{Image: in.Image, Description: "Published in the catalogue as " + in.Template + "."}
			si.Template = name
		}
		ts.Instances[in.Spec] = si
		p.written[o] = true
	}
	return ts
}

// progress records how far the pass is, for every operation in it.
func (r *realizer) progress(ctx context.Context, ops []tenant.Op, pct int, msg string) {
	err := r.s.db.Do(ctx, func(tx *tenant.Tx) error {
		for _, o := range ops {
			if err := tx.UpdateOperation(o.ID, api.OpRunning, pct, msg, nil); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		r.s.log.Error("recording progress", "err", err)
	}
}

// finish records what exists after a pass and ends its operations. st is
// nil when the pass failed as a whole (passErr); then no record changes,
// since nothing was decided about any object.
func (p *pass) finish(ctx context.Context, c *deploy.Cloud, st []deploy.Status, passErr error) {
	s := p.s
	if err := s.lead.Fence(ctx); err != nil {
		// Another replica leads now: it records what it finds.
		s.log.Warn("not recording a reconcile's outcome", "err", err)
		return
	}
	p.r.record(p, passErr)
	o := p.outcome(c, st, passErr)
	err := s.db.Do(ctx, func(tx *tenant.Tx) error {
		if err := p.finishNetworks(tx, o); err != nil {
			return err
		}
		if err := p.finishInstances(tx, o); err != nil {
			return err
		}
		return p.finishOperations(tx, o)
	})
	if err != nil {
		s.log.Error("recording the outcome of a reconcile", "err", err)
		return
	}
	for _, e := range o.events {
		s.emit(e)
	}
}

// outcome is what a pass found, as finish records it.
type outcome struct {
	st      []deploy.Status
	passErr error
	state   map[compile.ID]string // resource id -> ok, missing, drifted, unexpected
	desired map[string]compile.Instance
	// refused and kept are the refusals recorded: only when the pass went
	// on without the refused objects; a pass that failed as a whole
	// decided nothing.
	refused map[object]string
	kept    map[object]bool
	site    string
	events  []api.Event // to emit once recorded
}

func (p *pass) outcome(c *deploy.Cloud, st []deploy.Status, passErr error) *outcome {
	o := &outcome{st: st, passErr: passErr, state: map[compile.ID]string{}, refused: p.refused, kept: p.kept, site: p.s.pool.site}
	for _, x := range st {
		o.state[x.ID] = x.State
	}
	if c != nil {
		o.desired = map[string]compile.Instance{}
		for _, in := range c.Desired.Instances {
			o.desired[in.Name] = in
		}
	}
	if passErr != nil {
		o.refused, o.kept = map[object]string{}, map[object]bool{}
	}
	return o
}

func (o *outcome) exists(id compile.ID) bool {
	return o.st != nil && o.state[id] != "" && o.state[id] != "missing"
}

func (o *outcome) healthy(id compile.ID) bool { return o.st != nil && o.state[id] == "ok" }

func (o *outcome) netID(zone string) compile.ID {
	return compile.NetworkID(o.site, zone)
}

// finishNetworks removes the tenant networks found deleted and sets the
// others ready or failed.
func (p *pass) finishNetworks(tx *tenant.Tx, o *outcome) error {
	for _, n := range p.sn.nets {
		id, ob := o.netID(n.Zone), zoneObject(n)
		switch {
		case n.Status == "deleting" && o.st != nil && !o.exists(id):
			if err := tx.RemoveNetwork(n.Zone); err != nil {
				return err
			}
			o.events = append(o.events, api.Event{Type: "network.deleted", Tenant: n.Tenant, Object: networkPath(n.Tenant, n.Name)})
		case n.Status == "deleting":
		case o.healthy(id):
			if n.Status != "ready" {
				o.events = append(o.events, api.Event{Type: "network.ready", Tenant: n.Tenant, Object: networkPath(n.Tenant, n.Name)})
			}
			if err := tx.SetNetworkStatus(n.Zone, "ready"); err != nil {
				return err
			}
		case o.refused[ob] != "" && !o.kept[ob], p.failed[ob] != "", o.st != nil && n.Status == "creating":
			if n.Status != "failed" {
				o.events = append(o.events, api.Event{Type: "network.failed", Tenant: n.Tenant, Object: networkPath(n.Tenant, n.Name)})
			}
			if err := tx.SetNetworkStatus(n.Zone, "failed"); err != nil {
				return err
			}
		}
	}
	return nil
}

// finishInstances removes the instances found deleted and records what
// was found of the others: addresses, node, status and why it failed.
func (p *pass) finishInstances(tx *tenant.Tx, o *outcome) error {
	for _, in := range p.sn.insts {
		id, ob := compile.InstanceID(o.site, in.Spec), instanceObject(in)
		if in.Status == api.StatusDeleting {
			if o.st != nil && !o.exists(id) {
				if err := tx.RemoveInstance(in.Spec); err != nil {
					return err
				}
				o.events = append(o.events, api.Event{Type: "instance.deleted", Tenant: in.Tenant, Object: instancePath(in.Tenant, in.Name)})
			}
			continue
		}
		seen := tenant.Observed{VMID: in.VMID, IP: in.IP, FQDN: in.FQDN, Node: in.Node, Status: in.Status, Error: in.Error}
		if d, ok := o.desired[in.Spec]; ok {
			seen.VMID, seen.IP, seen.FQDN, seen.Node = d.VMID, d.IP, d.FQDN, d.Node
		}
		power := in.Power
		if o.kept[ob] {
			power = cmpStr(p.acceptedInstance(ob).Power, "running") // what it runs as
		}
		switch {
		case o.refused[ob] != "" && !o.kept[ob]:
			seen.Status, seen.Error = api.StatusFailed, "the cloud refused it: "+o.refused[ob]
		case p.failed[ob] != "":
			seen.Status, seen.Error = api.StatusFailed, p.failed[ob]
		case o.healthy(id):
			seen.Status, seen.Error = api.StatusRunning, ""
			if power == "stopped" {
				seen.Status = api.StatusStopped
			}
		case o.st != nil:
			seen.Status, seen.Error = api.StatusFailed, "the instance is "+cmpStr(o.state[id], "missing")+" after reconciling"
		}
		if o.kept[ob] {
			seen.Error = "the cloud refused the last change, and the instance stays as it was: " + o.refused[ob]
		}
		changed, err := tx.SetInstanceObserved(in.Spec, seen)
		if err != nil {
			return err
		}
		if changed && seen.Status != in.Status {
			o.events = append(o.events, api.Event{Type: "instance." + seen.Status, Tenant: in.Tenant, Object: instancePath(in.Tenant, in.Name),
				Data: map[string]string{"ip": seen.IP, "vmid": fmt.Sprint(seen.VMID)}})
		}
	}
	return nil
}

// finishOperations ends the pass's operations, each failed or succeeded by
// what the pass found of its object.
func (p *pass) finishOperations(tx *tenant.Tx, o *outcome) error {
	for _, op := range p.sn.ops {
		ob := opObject(op)
		status, prob := api.OpSucceeded, (*api.Problem)(nil)
		switch {
		case o.passErr != nil:
			status, prob = api.OpFailed, problem(http.StatusInternalServerError, "reconcile-failed", "the reconciler could not run: "+firstLine(o.passErr.Error()))
		case o.kept[ob]:
			status, prob = api.OpFailed, problem(http.StatusUnprocessableEntity, "refused", "the cloud refused the change, and nothing was changed: "+o.refused[ob])
		case o.refused[ob] != "":
			status, prob = api.OpFailed, problem(http.StatusUnprocessableEntity, "refused", "the cloud refused it: "+o.refused[ob])
		case p.failed[ob] != "":
			status, prob = api.OpFailed, problem(http.StatusConflict, "realize-failed", p.failed[ob])
		default:
			id := compile.InstanceID(o.site, op.Object)
			if ob.kind == kindZone {
				id = o.netID(op.Object)
			}
			wantGone := strings.HasSuffix(op.Kind, ".delete")
			if (wantGone && o.exists(id)) || (!wantGone && !o.healthy(id)) {
				status, prob = api.OpFailed, problem(http.StatusConflict, "realize-failed", "the object is "+cmpStr(o.state[id], "missing")+" after reconciling")
			}
		}
		if err := tx.UpdateOperation(op.ID, status, 100, "", prob); err != nil {
			return err
		}
		o.events = append(o.events, api.Event{Type: "operation." + status, Tenant: op.Tenant, Object: "/v1/operations/" + op.ID,
			Data: map[string]string{"target": op.Target, "kind": op.Kind}})
	}
	return nil
}

func cmpStr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// pool is the operator's pool of tenant networks, from the spec's tenancy.
type pool struct {
	tenant.Pool
	site, role, zoneType string
	access               []string
}
