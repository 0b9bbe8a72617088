package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/holdfast/holdfast/api"
	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/deploy"
	"github.com/holdfast/holdfast/internal/reconcile"
	"github.com/holdfast/holdfast/internal/spec"
	"github.com/holdfast/holdfast/internal/tenant"
)

// realizer turns the recorded tenant networks and instances into the
// cloud's tenants spec and converges the cloud to it with the reconciler,
// exactly as `holdfast apply` does; then it records what exists and
// finishes the operations that asked for it. One pass runs at a time; a
// pass takes every operation pending when it starts, so a burst of
// requests costs one reconcile, not one each.
type realizer struct {
	s    *Server
	wake chan struct{}
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

func newRealizer(s *Server) *realizer {
	return &realizer{s: s, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
}

// kick asks for a pass soon.
func (r *realizer) kick() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// stopping is closed when the server shuts down.
func (r *realizer) stopping() <-chan struct{} { return r.stop }

// run passes until Shutdown: at start (to pick up operations a previous
// run left), when kicked, and every resync interval to repair drift.
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
		select {
		case <-r.stop:
			return
		case <-r.wake:
		case <-tick:
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

func (r *realizer) pass() {
	s := r.s
	ctx := context.Background() // a pass finishes even during shutdown
	start := time.Now()
	err := r.reconcile(ctx)
	s.met.reconcileTime.Observe(time.Since(start).Seconds())
	if err != nil {
		s.met.reconciles.WithLabelValues("error").Inc()
		s.log.Error("reconcile failed", "err", err)
		return
	}
	s.met.reconciles.WithLabelValues("ok").Inc()
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

func (r *realizer) reconcile(ctx context.Context) error {
	s := r.s
	sn, err := r.snapshot(ctx)
	if err != nil {
		return err
	}
	for _, o := range sn.ops {
		s.emit(api.Event{Type: "operation.running", Tenant: o.Tenant, Object: "/v1/operations/" + o.ID})
	}
	failed := map[string]string{} // spec object -> why
	var mu sync.Mutex             // progress events come from the apply's workers
	progress := func(e reconcile.Event) {
		switch e.Status {
		case "failed", "skipped":
			mu.Lock()
			failed[objectOf(e.Change.ID)] = errText(e.Err)
			mu.Unlock()
		case "done":
			if e.Total > 0 {
				r.progress(ctx, sn.ops, 10+85*e.Done/e.Total, fmt.Sprintf("%d of %d steps", e.Done, e.Total))
			}
		}
	}
	c, err := r.open(sn, failed, progress)
	if err != nil {
		r.finish(ctx, sn, nil, nil, failed, err)
		return err
	}
	defer c.Close()
	plan, err := c.Plan(ctx)
	if err != nil {
		r.finish(ctx, sn, c, nil, failed, err)
		return err
	}
	if len(plan.Changes) > 0 {
		s.log.Info("reconciling", "create", plan.Summary.Create, "update", plan.Summary.Update, "delete", plan.Summary.Delete)
	}
	// Steps that failed are in failed, each charged to its own object: an
	// operator resource that will not converge does not fail the tenants'
	// operations whose objects did.
	_, applyErr := c.Apply(ctx, plan)
	if applyErr != nil && ctx.Err() != nil {
		r.finish(ctx, sn, c, nil, failed, applyErr)
		return applyErr
	}
	st, err := c.Status(ctx)
	if err != nil {
		r.finish(ctx, sn, c, nil, failed, err)
		return err
	}
	r.finish(ctx, sn, c, st, failed, nil)
	return applyErr
}

// objectOf maps a resource id to the spec object an operation names:
// instance/<name> -> <name>, network/<site>/<zone> -> <zone>.
func objectOf(id string) string {
	return id[strings.LastIndexByte(id, '/')+1:]
}

func errText(err error) string {
	if err == nil {
		return "failed"
	}
	return err.Error()
}

// open writes the tenants spec and opens the cloud with it. A spec the
// validator refuses (it should not: the API checks what it records) fails
// the objects of the pending operations and is written again without the
// ones never realized, so that one bad request cannot block the others.
func (r *realizer) open(sn snapshot, failed map[string]string, progress func(reconcile.Event)) (*deploy.Cloud, error) {
	s := r.s
	for attempt := 0; ; attempt++ {
		if err := s.writeTenants(sn, failed); err != nil {
			return nil, err
		}
		c, diags, err := deploy.Open(s.cfg.SpecPath, deploy.Options{StateDir: s.cfg.StateDir, Rename: s.cfg.Rename, LockWait: 5 * time.Minute, Progress: progress})
		if err == nil {
			return c, nil
		}
		if !errors.Is(err, deploy.ErrSpec) || attempt > 0 {
			if errors.Is(err, deploy.ErrSpec) {
				err = fmt.Errorf("%w:\n%s", err, diags.Err().Error())
			}
			return nil, err
		}
		s.log.Error("the tenants spec was refused; failing pending operations", "diagnostics", diags.Err().Error())
		for _, o := range sn.ops {
			failed[o.Object] = "the cloud refused the change: " + firstLine(diags.Err().Error())
		}
	}
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// writeTenants writes the tenants spec; WriteTenants replaces it atomically,
// so a crash leaves the old file or the new one, never half of one.
func (s *Server) writeTenants(sn snapshot, failed map[string]string) error {
	return deploy.WriteTenants(s.cfg.StateDir, s.cloud, s.tenantSpec(sn, failed))
}

// tenantSpec is the spec of every tenant network and instance that should
// exist: those being deleted are left out, so the reconciler removes them,
// and so are instances that failed before they ever existed.
func (s *Server) tenantSpec(sn snapshot, failed map[string]string) *spec.Spec {
	t := s.pool
	ts := &spec.Spec{Zones: map[string]*spec.Zone{}, Instances: map[string]*spec.Instance{}, Templates: map[string]*spec.Template{}}
	for _, n := range sn.nets {
		if n.Status == "deleting" {
			continue
		}
		if _, bad := failed[n.Zone]; bad && n.Status == "creating" {
			continue
		}
		vlan, dhcp := n.VLAN, false // addresses are assigned, not leased: the whole subnet is the pool
		ts.Zones[n.Zone] = &spec.Zone{
			Type: t.zoneType, VLAN: &vlan, CIDR: n.CIDR, Tenant: n.Tenant, DHCP: &dhcp,
			AccessTo: t.access, Sites: []string{t.site},
			Description: fmt.Sprintf("Network %s of tenant %s.", n.Name, n.Tenant),
		}
	}
	for _, in := range sn.insts {
		if in.Status == api.StatusDeleting {
			continue
		}
		if _, bad := failed[in.Spec]; bad && in.VMID == 0 {
			continue
		}
		if in.Status == api.StatusFailed && in.VMID == 0 {
			continue
		}
		cpus, mem := in.CPUs, spec.Size{MiB: in.MemoryMiB}
		si := &spec.Instance{
			Site: t.site, Role: t.role, Zone: tenant.ZoneName(in.Tenant, in.Network), Tenant: in.Tenant,
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
			name := "catalogue--" + in.Template
			ts.Templates[name] = &spec.Template{Image: in.Image, Description: "Published in the catalogue as " + in.Template + "."}
			si.Template = name
		}
		ts.Instances[in.Spec] = si
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
// nil when the pass failed as a whole (passErr).
func (r *realizer) finish(ctx context.Context, sn snapshot, c *deploy.Cloud, st []deploy.Status, failed map[string]string, passErr error) {
	s := r.s
	state := map[string]string{} // resource id -> ok, missing, drifted, unexpected
	for _, x := range st {
		state[x.ID] = x.State
	}
	exists := func(id string) bool { return st != nil && state[id] != "" && state[id] != "missing" }
	healthy := func(id string) bool { return st != nil && state[id] == "ok" }
	var desired map[string]compile.Instance
	if c != nil {
		desired = map[string]compile.Instance{}
		for _, in := range c.Desired.Instances {
			desired[in.Name] = in
		}
	}
	netID := func(zone string) string { return compile.ResNetwork + "/" + s.pool.site + "/" + zone }
	var events []api.Event
	err := s.db.Do(ctx, func(tx *tenant.Tx) error {
		for _, n := range sn.nets {
			id := netID(n.Zone)
			switch {
			case n.Status == "deleting" && st != nil && !exists(id):
				if err := tx.RemoveNetwork(n.Zone); err != nil {
					return err
				}
				events = append(events, api.Event{Type: "network.deleted", Tenant: n.Tenant, Object: networkPath(n.Tenant, n.Name)})
			case n.Status == "deleting":
			case healthy(id):
				if n.Status != "ready" {
					events = append(events, api.Event{Type: "network.ready", Tenant: n.Tenant, Object: networkPath(n.Tenant, n.Name)})
				}
				if err := tx.SetNetworkStatus(n.Zone, "ready"); err != nil {
					return err
				}
			case failed[n.Zone] != "" || (st != nil && n.Status == "creating"):
				if err := tx.SetNetworkStatus(n.Zone, "failed"); err != nil {
					return err
				}
			}
		}
		for _, in := range sn.insts {
			id := compile.ResInstance + "/" + in.Spec
			if in.Status == api.StatusDeleting {
				if st != nil && !exists(id) {
					if err := tx.RemoveInstance(in.Spec); err != nil {
						return err
					}
					events = append(events, api.Event{Type: "instance.deleted", Tenant: in.Tenant, Object: instancePath(in.Tenant, in.Name)})
				}
				continue
			}
			o := tenant.Observed{VMID: in.VMID, IP: in.IP, FQDN: in.FQDN, Node: in.Node, Status: in.Status, Error: in.Error}
			if d, ok := desired[in.Spec]; ok {
				o.VMID, o.IP, o.FQDN, o.Node = d.VMID, d.IP, d.FQDN, d.Node
			}
			switch {
			case failed[in.Spec] != "":
				o.Status, o.Error = api.StatusFailed, failed[in.Spec]
			case healthy(id):
				o.Status, o.Error = api.StatusRunning, ""
				if in.Power == "stopped" {
					o.Status = api.StatusStopped
				}
			case st != nil:
				o.Status, o.Error = api.StatusFailed, "the instance is "+cmpStr(state[id], "missing")+" after reconciling"
			}
			changed, err := tx.SetInstanceObserved(in.Spec, o)
			if err != nil {
				return err
			}
			if changed && o.Status != in.Status {
				events = append(events, api.Event{Type: "instance." + o.Status, Tenant: in.Tenant, Object: instancePath(in.Tenant, in.Name),
					Data: map[string]string{"ip": o.IP, "vmid": fmt.Sprint(o.VMID)}})
			}
		}
		for _, op := range sn.ops {
			status, prob := api.OpSucceeded, (*api.Problem)(nil)
			switch {
			case passErr != nil:
				status, prob = api.OpFailed, problem(http.StatusInternalServerError, "reconcile-failed", "the reconciler could not run: "+firstLine(passErr.Error()))
			case failed[op.Object] != "":
				status, prob = api.OpFailed, problem(http.StatusConflict, "realize-failed", failed[op.Object])
			default:
				id := compile.ResInstance + "/" + op.Object
				if strings.HasPrefix(op.Kind, "network.") {
					id = netID(op.Object)
				}
				wantGone := strings.HasSuffix(op.Kind, ".delete")
				if (wantGone && exists(id)) || (!wantGone && !healthy(id)) {
					status, prob = api.OpFailed, problem(http.StatusConflict, "realize-failed", "the object is "+cmpStr(state[id], "missing")+" after reconciling")
				}
			}
			if err := tx.UpdateOperation(op.ID, status, 100, "", prob); err != nil {
				return err
			}
			events = append(events, api.Event{Type: "operation." + status, Tenant: op.Tenant, Object: "/v1/operations/" + op.ID,
				Data: map[string]string{"target": op.Target, "kind": op.Kind}})
		}
		return nil
	})
	if err != nil {
		s.log.Error("recording the outcome of a reconcile", "err", err)
		return
	}
	for _, e := range events {
		s.emit(e)
	}
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
