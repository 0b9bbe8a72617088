package deploy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/engine"
	"github.com/holdfast/holdfast/internal/store"
)

// Instance is an instance that was made: its cloud, and the site and
// engine it runs on, as the cloud's state recorded them. The CLI reaches
// it through its engine's optional operations, without the spec.
type Instance struct {
	Name, Cloud, Site, Engine string

	stateDir string
}

// ErrNotOffered is returned (wrapped) when the engine of an instance's
// site does not offer an operation.
var ErrNotOffered = errors.New("not offered by the engine")

// FindInstance finds the instance called name among the clouds with state
// under stateDir, or in cloud only when it is given. With database (a
// PostgreSQL URL), the state is there, and cloud must be given.
func FindInstance(ctx context.Context, stateDir, database, cloud, name string) (Instance, error) {
	if stateDir == "" {
		stateDir = DefaultStateDir()
	}
	if database != "" && cloud == "" {
		return Instance{}, errors.New("the state is in a database: say which cloud")
	}
	clouds := []string{cloud}
	if cloud == "" {
		dbs, _ := filepath.Glob(filepath.Join(stateDir, "*", "state.db"))
		clouds = clouds[:0]
		for _, db := range dbs {
			clouds = append(clouds, filepath.Base(filepath.Dir(db)))
		}
	}
	var found []Instance
	for _, cl := range clouds {
		in, ok, err := findIn(ctx, stateDir, database, cl, name)
		if err != nil {
			return Instance{}, fmt.Errorf("cloud %s: %w", cl, err)
		}
		if ok {
			found = append(found, in)
		}
	}
	switch len(found) {
	case 0:
		where := stateDir
		if cloud != "" {
			where = "cloud " + cloud + " under " + stateDir
		}
		return Instance{}, fmt.Errorf("no instance %q in %s", name, where)
	case 1:
		return found[0], nil
	}
	names := make([]string, len(found))
	for i, in := range found {
		names[i] = in.Cloud
	}
	return Instance{}, fmt.Errorf("instance %s exists in clouds %s: say which with --cloud", name, strings.Join(names, ", "))
}

// findIn looks the instance up in one cloud's store: its site from the
// allocations, the site's engine from the site resource that was made.
func findIn(ctx context.Context, stateDir, database, cloud, name string) (Instance, bool, error) {
	if database == "" && !HasState(stateDir, cloud) {
		return Instance{}, false, nil
	}
	db, err := store.Open(store.At(database, filepath.Join(stateDir, cloud)))
	if err != nil {
		return Instance{}, false, err
	}
	defer db.Close()
	allocs, err := db.Allocations(ctx)
	if err != nil {
		return Instance{}, false, err
	}
	a, ok := allocs.Instances[name]
	if !ok {
		return Instance{}, false, nil
	}
	made, err := db.Resources(ctx)
	if err != nil {
		return Instance{}, false, err
	}
	i := slices.IndexFunc(made, func(r compile.Resource) bool { return r.Kind == compile.ResSite && r.Site == a.Site })
	if i < 0 {
		return Instance{}, false, nil // its site was never made: neither was it
	}
	return Instance{Name: name, Cloud: cloud, Site: a.Site, Engine: made[i].Attrs["engine"], stateDir: stateDir}, true, nil
}

// engine makes the instance's engine for an optional operation: without
// a desired state, which such operations do not need.
func (in Instance) engine() (engine.Engine, error) { return in.engineWith(nil) }

// engineWith makes the instance's engine with the cloud's desired state,
// which engines that reach their infrastructure only through it need
// (nil: none).
func (in Instance) engineWith(desired *compile.State) (engine.Engine, error) {
	dir := filepath.Join(in.stateDir, in.Cloud)
	if _, err := os.Stat(dir); err != nil {
		return nil, err
	}
	return engine.New(in.Engine, engine.Config{Cloud: in.Cloud, Sites: []string{in.Site}, StateDir: filepath.Join(dir, in.Engine), Desired: desired})
}

func (in Instance) notOffered(what string) error {
	return fmt.Errorf("instance %s: engine %s (site %s) cannot %s: %w", in.Name, in.Engine, in.Site, what, ErrNotOffered)
}

// Exec runs argv inside the instance with the given streams and returns
// its exit status.
func (in Instance) Exec(ctx context.Context, argv []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	e, err := in.engine()
	if err != nil {
		return 0, err
	}
	defer e.Close()
	x, ok := e.(engine.Execer)
	if !ok {
		return 0, in.notOffered("run commands in an instance")
	}
	return x.Exec(ctx, in.Name, argv, stdin, stdout, stderr)
}

// Ping sends one ICMP echo request from inside the instance to dst and
// waits up to timeout for the reply.
func (in Instance) Ping(ctx context.Context, dst netip.Addr, timeout time.Duration) error {
	e, err := in.engine()
	if err != nil {
		return err
	}
	defer e.Close()
	p, ok := e.(engine.Pinger)
	if !ok {
		return in.notOffered("ping from an instance")
	}
	return p.Ping(ctx, in.Name, dst, timeout)
}

// FromInternet returns the shell command line that runs command where
// the internet is, for the site of instance; false when its engine does
// not play the internet.
func (c *Cloud) FromInternet(instance, command string) (string, bool) {
	for _, in := range c.Desired.Instances {
		if in.Name != instance {
			continue
		}
		if v, ok := c.engine.bySite[in.Site].(engine.InternetVantage); ok {
			return v.FromInternet(command), true
		}
	}
	return "", false
}

// SharesInfrastructure reports whether a cloud has sites on
// infrastructure that others use too (engine.Shared): their inventory
// decides VMIDs and placement even before the first apply.
func SharesInfrastructure(st *compile.State) bool {
	return slices.ContainsFunc(st.Sites, func(s compile.Site) bool { return engine.Shared(s.Engine) })
}

// Console opens a terminal on the instance (engine.Consoler); ctx bounds
// the opening. desired is the cloud's compiled state, which Proxmox
// needs to find its clusters (the local engine needs none: nil). Closing
// the console also releases the engine made for it. The error wraps
// ErrNotOffered when the engine has no console, and engine.ErrNoConsole
// when the instance has none to open now.
func (in Instance) Console(ctx context.Context, desired *compile.State, size engine.TermSize) (engine.Console, error) {
	e, err := in.engineWith(desired)
	if err != nil {
		return nil, err
	}
	x, ok := e.(engine.Consoler)
	if !ok {
		e.Close()
		return nil, in.notOffered("open a console")
	}
	c, err := x.Console(ctx, in.Name, size)
	if err != nil {
		e.Close()
		return nil, err
	}
	return &engineConsole{Console: c, e: e}, nil
}

// engineConsole is a console that holds its engine open.
type engineConsole struct {
	engine.Console
	e engine.Engine
}

func (c *engineConsole) Close() error { return errors.Join(c.Console.Close(), c.e.Close()) }

// Console opens a terminal on an instance of the opened cloud through its
// site's engine (engine.Consoler), which has the cloud's desired state:
// engines that reach their infrastructure only through it (Proxmox) can
// open one this way. ctx bounds the opening. The errors are Instance's.
func (c *Cloud) Console(ctx context.Context, instance string, size engine.TermSize) (engine.Console, error) {
	for _, in := range c.Desired.Instances {
		if in.Name != instance {
			continue
		}
		x, ok := c.engine.bySite[in.Site].(engine.Consoler)
		if !ok {
			return nil, fmt.Errorf("instance %s: the engine of site %s cannot open a console: %w", instance, in.Site, ErrNotOffered)
		}
		return x.Console(ctx, instance, size)
	}
	return nil, fmt.Errorf("%w: no instance %q in cloud %s", engine.ErrNoConsole, instance, c.Desired.Cloud)
}
