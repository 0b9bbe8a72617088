// Package proxmox is the engine that realizes a compiled cloud on Proxmox
// VE clusters through the PVE REST API: VMs cloned from templates and
// configured with cloud-init, zones as SDN vnets (or VLAN tags on the
// node bridges), the compiled flows as the PVE firewall (security groups,
// IPsets, per-VM options and rules), and HA resources.
//
// What Holdfast owns on a cluster is marked, so that it never touches what
// it did not make: VMs carry the tag holdfast-<cloud> and the instance's
// name; SDN vnets, security groups and IPsets carry "holdfast <cloud>" in
// their alias or comment; HA resources and rules name Holdfast in their
// comment. Everything else on the cluster is left alone.
//
// Every step is idempotent and safe to repeat after a crash or a lost
// answer: the engine reads what exists first and changes only what
// differs, uses PVE's digests so that a concurrent change is never
// overwritten blindly, and adopts a guest its own earlier attempt made.
package proxmox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/engine"
	"github.com/holdfast/holdfast/internal/engine/proxmox/pve"
)

// Name is the engine's name: sites say engine: proxmox and write its
// block under proxmox:.
const Name = "proxmox"

func init() {
	engine.Register(Name, engine.Driver{New: New, Site: siteSpec{}, Compile: siteSpec{}, Shared: true})
}

// Engine realizes the proxmox sites of one cloud.
type Engine struct {
	cloud   string
	desired *compile.State
	dir     string
	sites   map[string]*site
	agents  engine.Agents // the instances' agent tokens, seeded into VMs; nil: none

	instances map[string]*compile.Instance // by name
	zones     map[string]*compile.Zone     // by name
}

var (
	_ engine.Engine      = (*Engine)(nil)
	_ engine.Inventorier = (*Engine)(nil)
)

// site is one proxmox site: its cluster and what the engine caches of it.
type site struct {
	name  string
	cfg   Config
	nodes []string
	api   *pve.Client

	slots map[string]chan struct{} // per node: tasks at once

	sdn   *coalescer // PUT /cluster/sdn, shared by concurrent changes
	vmsMu sync.Mutex
	vms   *snapshot // the cluster's guest list, shared by concurrent readers

	tplMu     sync.Mutex
	templates map[string][]pve.VM // template VMs by name and by VMID, lowest VMID first
}

// ClientOptions tune the API clients of every engine created from now
// on; tests and benchmarks shorten the waits. The zero value keeps the
// client's defaults.
var ClientOptions struct {
	PollMin, PollMax time.Duration
	RetryWait        time.Duration
	TaskTimeout      time.Duration
}

// New creates the engine for cfg's proxmox sites. It reads each site's
// token secret but makes no request.
func New(cfg engine.Config) (engine.Engine, error) {
	e := &Engine{
		cloud: cfg.Cloud, desired: cfg.Desired, dir: cfg.StateDir, sites: map[string]*site{}, agents: cfg.Agents,
		instances: map[string]*compile.Instance{}, zones: map[string]*compile.Zone{},
	}
	if cfg.Desired == nil {
		// Made for an optional operation (engine.Execer and the like), of
		// which this engine offers none: nothing to reach.
		return e, nil
	}
	for i := range cfg.Desired.Instances {
		in := &cfg.Desired.Instances[i]
		e.instances[in.Name] = in
	}
	for i := range cfg.Desired.Zones {
		z := &cfg.Desired.Zones[i]
		e.zones[z.Name] = z
	}
	for _, name := range cfg.Sites {
		var st *compile.Site
		for i := range cfg.Desired.Sites {
			if cfg.Desired.Sites[i].Name == name {
				st = &cfg.Desired.Sites[i]
			}
		}
		if st == nil || st.Settings == nil {
			return nil, fmt.Errorf("site %q: no proxmox settings", name)
		}
		s, err := newSite(st)
		if err != nil {
			return nil, fmt.Errorf("site %q: %w", name, err)
		}
		e.sites[name] = s
	}
	if err := os.MkdirAll(e.dir, 0o700); err != nil {
		return nil, err
	}
	return e, nil
}

func newSite(st *compile.Site) (*site, error) {
	p, ok := st.Settings.(*Config)
	if !ok {
		return nil, fmt.Errorf("settings are %T, not the proxmox engine's", st.Settings)
	}
	secret, err := readSecret(p)
	if err != nil {
		return nil, err
	}
	api, err := pve.New(pve.Config{
		URL: p.Endpoint, TokenID: p.TokenID, Secret: secret, Fingerprint: p.Fingerprint,
		PollMin: ClientOptions.PollMin, PollMax: ClientOptions.PollMax,
		RetryWait: ClientOptions.RetryWait, TaskTimeout: ClientOptions.TaskTimeout,
	})
	if err != nil {
		return nil, err
	}
	s := &site{name: st.Name, cfg: *p, nodes: st.Nodes, api: api, slots: map[string]chan struct{}{}}
	for _, n := range st.Nodes {
		s.slots[n] = make(chan struct{}, max(p.Parallel, 1))
	}
	s.sdn = &coalescer{run: func(ctx context.Context) error { return api.ApplySDN(ctx) }}
	return s, nil
}

// readSecret reads the API token's secret from its file or variable. The
// file must not be readable by others: it is a credential.
func readSecret(p *Config) (string, error) {
	if p.SecretEnv != "" {
		v := strings.TrimSpace(os.Getenv(p.SecretEnv))
		if v == "" {
			return "", fmt.Errorf("the API token secret: environment variable %s is empty or not set", p.SecretEnv)
		}
		return v, nil
	}
	fi, err := os.Stat(p.SecretFile)
	if err != nil {
		return "", fmt.Errorf("the API token secret: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("the API token secret: %s is readable by others (mode %04o); chmod 600 it", p.SecretFile, fi.Mode().Perm())
	}
	b, err := os.ReadFile(p.SecretFile)
	if err != nil {
		return "", fmt.Errorf("the API token secret: %w", err)
	}
	v := strings.TrimSpace(string(b))
	if v == "" {
		return "", fmt.Errorf("the API token secret: %s is empty", p.SecretFile)
	}
	return v, nil
}

// Close releases nothing: the clients hold only idle connections.
func (e *Engine) Close() error { return nil }

func (e *Engine) site(name string) (*site, error) {
	s, ok := e.sites[name]
	if !ok {
		return nil, fmt.Errorf("site %q is not a proxmox site of cloud %q", name, e.cloud)
	}
	return s, nil
}

// slot takes one of node's task slots, bounding the tasks Holdfast runs
// at once on a node; release it with the returned function.
func (s *site) slot(ctx context.Context, node string) (func(), error) {
	ch, ok := s.slots[node]
	if !ok {
		return func() {}, nil // a node no longer listed: HA moved a guest there
	}
	select {
	case ch <- struct{}{}:
		return func() { <-ch }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Ensure makes r exist as desired.
func (e *Engine) Ensure(ctx context.Context, r compile.Resource) error {
	err := e.ensure(ctx, r)
	return classify(err)
}

func (e *Engine) ensure(ctx context.Context, r compile.Resource) error {
	switch r.Kind {
	case compile.ResSite:
		return e.ensureSite(ctx, r)
	case compile.ResNetwork:
		return e.ensureNetwork(ctx, r)
	case compile.ResFirewall:
		return e.ensureFirewall(ctx, r)
	case compile.ResInstance:
		return e.ensureInstance(ctx, r)
	case compile.ResRoute:
		return e.mark(r.ID, true)
	}
	return fmt.Errorf("%s: the proxmox engine has no resources of kind %q", r.ID, r.Kind)
}

// Delete removes r; what is gone already is fine.
func (e *Engine) Delete(ctx context.Context, r compile.Resource) error {
	var err error
	switch r.Kind {
	case compile.ResSite:
		err = e.mark(r.ID, false)
	case compile.ResNetwork:
		err = e.deleteNetwork(ctx, r)
	case compile.ResFirewall:
		err = e.deleteFirewall(ctx, r)
	case compile.ResInstance:
		err = e.deleteInstance(ctx, r)
	case compile.ResRoute:
		err = e.mark(r.ID, false)
	default:
		err = fmt.Errorf("%s: the proxmox engine has no resources of kind %q", r.ID, r.Kind)
	}
	return classify(err)
}

// classify marks the failures worth another try for the reconciler: what
// the client gave up on for now (no answer, locks, timeouts) and a
// concurrent change found through a digest.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var taken *engine.TakenError
	if errors.As(err, &taken) {
		return err
	}
	if pve.IsRetryable(err) || pve.IsDigestMismatch(err) || errors.Is(err, errConflict) {
		return engine.Retryable(err)
	}
	return err
}

// errConflict marks a change that lost a race (another writer got there
// first); the step is retried against the new state.
var errConflict = errors.New("changed concurrently")

// ensureSite checks that the cluster answers with the token and has the
// site's nodes, and records the site as made. Holdfast creates nothing on
// the cluster for a site: its networks, firewall and guests are their own
// resources.
func (e *Engine) ensureSite(ctx context.Context, r compile.Resource) error {
	s, err := e.site(r.Site)
	if err != nil {
		return err
	}
	if drift := s.nodeDrift(ctx); len(drift) > 0 {
		return fmt.Errorf("site %s: %s", s.name, strings.Join(drift, "; "))
	}
	return e.mark(r.ID, true)
}

// nodeDrift reports the site's nodes that the cluster does not have or
// that are not online.
func (s *site) nodeDrift(ctx context.Context) []string {
	nodes, err := s.api.Nodes(ctx)
	if err != nil {
		return []string{"cluster " + s.cfg.Endpoint + " does not answer: " + err.Error()}
	}
	status := map[string]string{}
	for _, n := range nodes {
		status[n.Node] = n.Status
	}
	var drift []string
	for _, n := range s.nodes {
		switch st, ok := status[n]; {
		case !ok:
			drift = append(drift, "node "+n+" is not in the cluster")
		case st != "online":
			drift = append(drift, "node "+n+" is "+st)
		}
	}
	return drift
}

// Inventory reports the VMIDs of guests on the engine's clusters that are
// not this cloud's, and each node's free memory.
func (e *Engine) Inventory(ctx context.Context) (engine.Inventory, error) {
	inv := engine.Inventory{Taken: map[int]string{}, Free: map[string]map[string]int64{}}
	ours := map[int]string{}
	for _, in := range e.desired.Instances {
		ours[in.VMID] = in.Name
	}
	for _, s := range e.sites {
		vms, err := s.guests(ctx, true)
		if err != nil {
			return inv, fmt.Errorf("site %s: %w", s.name, err)
		}
		for _, vm := range vms {
			switch {
			case e.owns(vm):
			case ours[vm.VMID] != "" && vm.Name == "":
				// A clone under way at one of our VMIDs: ours if our own
				// earlier attempt started it; creating the instance finds
				// out.
			case ours[vm.VMID] == vm.Name && e.describedAsOurs(ctx, s, vm):
				// Cloned but not yet tagged (an apply stopped between the
				// two): the clone's description names the cloud.
			default:
				inv.Taken[vm.VMID] = describe(vm)
			}
		}
		nodes, err := s.api.Nodes(ctx)
		if err != nil {
			return inv, fmt.Errorf("site %s: %w", s.name, err)
		}
		free := map[string]int64{}
		for _, n := range nodes {
			free[n.Node] = (n.MaxMem - n.Mem) >> 20
		}
		inv.Free[s.name] = free
	}
	return inv, nil
}

// describedAsOurs reads a guest's description to tell whether a clone of
// this cloud made it. A guest gone from the node it was listed on has been
// migrated meanwhile (a clone moved to its node): it is read where the
// cluster lists it now.
func (e *Engine) describedAsOurs(ctx context.Context, s *site, vm pve.VM) bool {
	cfg, err := s.api.Config(ctx, vm.Node, vm.VMID)
	if pve.IsNotFound(err) {
		vms, lerr := s.guests(ctx, true)
		if i := slices.IndexFunc(vms, func(o pve.VM) bool { return o.VMID == vm.VMID }); lerr == nil && i >= 0 && vms[i].Node != vm.Node {
			cfg, err = s.api.Config(ctx, vms[i].Node, vm.VMID)
		}
	}
	return err == nil && e.ours(guest{cfg: cfg}, vm.Name)
}

func describe(vm pve.VM) string {
	switch {
	case vm.Type == "lxc":
		return fmt.Sprintf("container %q on %s", vm.Name, vm.Node)
	case vm.Template:
		return fmt.Sprintf("template %q on %s", vm.Name, vm.Node)
	case vm.Name == "":
		return fmt.Sprintf("a guest being created on %s", vm.Node)
	}
	return fmt.Sprintf("guest %q on %s", vm.Name, vm.Node)
}

// mark records (or forgets) that Holdfast made a resource that has no
// object of its own on the cluster (a site, a route), in the engine's
// state directory, so that Observe reports exactly what was made.
func (e *Engine) mark(id compile.ID, made bool) error {
	path := e.markPath(id)
	if !made {
		for _, p := range []string{path, e.legacyMarkPath(id)} {
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
		return nil
	}
	return os.WriteFile(path, []byte(id.String()+"\n"), 0o600)
}

func (e *Engine) marked(id compile.ID) bool {
	for _, p := range []string{e.markPath(id), e.legacyMarkPath(id)} {
		if _, err := os.Stat(p); err == nil {
			return true
		}
	}
	return false
}

func (e *Engine) markPath(id compile.ID) string {
	return e.dir + "/" + strings.ReplaceAll(id.String(), "/", "_") + ".made"
}

// legacyMarkPath is where a route was marked before IDs carried every
// resource's site (route/<name>); such a mark still counts, so that an
// upgrade does not see its routes as missing.
func (e *Engine) legacyMarkPath(id compile.ID) string {
	if id.Kind != compile.ResRoute {
		return e.markPath(id)
	}
	return e.dir + "/" + id.Kind + "_" + id.Name + ".made"
}

// coalescer runs an action on behalf of every caller that asks for it,
// once for all callers that asked while it was not yet running: many
// networks changed at once need one SDN apply, not one each. A caller
// returns only after a run that started after its request.
type coalescer struct {
	run func(context.Context) error

	mu      sync.Mutex
	waiting *flight // the run that will start next, collecting callers
	running bool
}

type flight struct {
	done chan struct{}
	err  error
}

func (c *coalescer) do(ctx context.Context) error {
	c.mu.Lock()
	f := c.waiting
	if f == nil {
		f = &flight{done: make(chan struct{})}
		c.waiting = f
	}
	if !c.running {
		c.startLocked(ctx)
	}
	c.mu.Unlock()
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// startLocked runs the waiting flight; when it ends, the flight that
// gathered meanwhile (if any) runs next.
func (c *coalescer) startLocked(ctx context.Context) {
	f := c.waiting
	c.waiting, c.running = nil, true
	go func() {
		// Detached from the first caller's cancellation: others wait on
		// the same run. The client's own timeouts bound it.
		f.err = c.run(context.WithoutCancel(ctx))
		close(f.done)
		c.mu.Lock()
		c.running = false
		if c.waiting != nil {
			c.startLocked(ctx)
		}
		c.mu.Unlock()
	}()
}
