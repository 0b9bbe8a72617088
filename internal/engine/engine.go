// Package engine defines what an engine is — the thing that realizes
// compiled resources on real infrastructure — and keeps the registry of
// engines by name. A new engine is one new package that registers itself;
// nothing else changes.
package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/spec"
)

// Engine realizes the resources of the sites it was created for. Every
// method is safe to call concurrently for different resources, and every
// step is idempotent: re-running one whose outcome is unknown (a crash, a
// timeout) converges and never duplicates.
type Engine interface {
	// Observe reports the resources of the engine's sites that really
	// exist, each with the drift found in it. It never changes anything.
	Observe(ctx context.Context) ([]Observed, error)
	// Ensure makes r exist exactly as desired, creating or repairing it.
	Ensure(ctx context.Context, r compile.Resource) error
	// Delete removes r and everything it owns; deleting what is already
	// gone succeeds.
	Delete(ctx context.Context, r compile.Resource) error
	// Close releases what the engine holds (handles, connections).
	Close() error
}

// Observed is a resource as found. Attrs are what can be read back; Drift
// names what is missing or different from how Holdfast made it (empty when
// the resource is intact).
type Observed struct {
	compile.Resource
	Drift []string `json:"drift,omitempty"`
}

// Config is what every engine is created with.
type Config struct {
	Cloud    string   // cloud name: engines prefix what they own with it
	Sites    []string // the sites this engine serves
	StateDir string   // where the engine may keep files
	// Desired is the compiled cloud; Ensure reads details from it. It is
	// nil when the engine is made only for an optional operation on what
	// exists (Execer, Pinger): New must then succeed without it.
	Desired *compile.State
	// Agents are the instances' agent credentials, which the engine
	// delivers into each instance so that its Holdfast agent can fetch
	// its guest configuration. Nil: deliver none.
	Agents Agents
}

// Agents hands out the agent credential of each instance.
type Agents interface {
	// Token is the instance's current agent token.
	Token(id compile.ID) string
	// Equal reports, in constant time, whether token is the instance's
	// current one: an engine reads back what an instance holds with it.
	Equal(id compile.ID, token string) bool
	// SocketDir is the directory holding the guest service's unix
	// socket (SocketName), for instances on this host (the local
	// engine binds it into each); instances elsewhere reach the service
	// over the network.
	SocketDir() string
}

// SocketName is the guest service's socket in Agents.SocketDir.
const SocketName = "agent.sock"

// The operations below are what only some engines can do. The CLI asks an
// engine for them (through deploy) instead of building paths or namespace
// names itself, and says plainly when the engine of an instance's site
// does not offer one.

// Execer is implemented by engines that can run a command inside an
// instance with the caller's standard streams.
type Execer interface {
	// Exec runs argv in the instance and returns its exit status.
	Exec(ctx context.Context, instance string, argv []string, stdin io.Reader, stdout, stderr io.Writer) (int, error)
}

// Pinger is implemented by engines that can send an ICMP echo request
// from inside an instance, as the instance itself would (its zone's
// firewall decides).
type Pinger interface {
	// Ping waits up to timeout for one reply from dst.
	Ping(ctx context.Context, instance string, dst netip.Addr, timeout time.Duration) error
}

// InternetVantage is implemented by engines that play the internet for
// their sites (the local engine): a shell command can be run from there to
// show how the internet reaches a public port.
type InternetVantage interface {
	// FromInternet returns the shell command line that runs command where
	// the internet is.
	FromInternet(command string) string
}

// Factory creates an engine.
type Factory func(Config) (Engine, error)

// Driver is everything an engine registers: how to create it and what the
// layers before it need to know of it. Only New is required.
type Driver struct {
	New Factory
	// Site decodes and checks the engine's site block (spec keeps the
	// block as a raw node under the engine's name); nil: no block.
	Site spec.EngineSpec
	// Compile turns a site's block into the settings New finds in
	// Config.Desired's sites (compile.Site.Settings); nil: no settings.
	Compile compile.EngineSpec
	// Shared says the engine's infrastructure is used by others too (a
	// Proxmox cluster): its Inventory decides allocation even before a
	// cloud's first apply, so plans are always made against it.
	Shared bool
}

var (
	mu       sync.RWMutex
	registry = map[string]Driver{}
)

// Register makes an engine available by name, with its site block and
// settings; engines call it from init. A new engine is one package that
// calls Register, plus its blank import in package engines.
func Register(name string, d Driver) {
	if d.New == nil {
		panic("engine: " + name + " registered without New")
	}
	mu.Lock()
	defer mu.Unlock()
	if _, dup := registry[name]; dup {
		panic("engine: " + name + " registered twice")
	}
	registry[name] = d
	spec.RegisterEngine(name, d.Site)
	compile.RegisterEngine(name, d.Compile)
}

// Shared reports whether the named engine's infrastructure is shared
// with others (Driver.Shared).
func Shared(name string) bool {
	mu.RLock()
	defer mu.RUnlock()
	return registry[name].Shared
}

// New creates the named engine.
func New(name string, cfg Config) (Engine, error) {
	mu.RLock()
	d, ok := registry[name]
	mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("no engine %q (have: %v)", name, Names())
	}
	return d.New(cfg)
}

// Names lists the registered engines.
func Names() []string {
	mu.RLock()
	defer mu.RUnlock()
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// retryable marks errors worth trying again (a busy resource, a timeout).
type retryable struct{ err error }

func (r retryable) Error() string { return r.err.Error() }
func (r retryable) Unwrap() error { return r.err }

// Retryable wraps err so that the reconciler retries the step with backoff.
func Retryable(err error) error {
	if err == nil {
		return nil
	}
	return retryable{err}
}

// IsRetryable reports whether err, or an error it wraps, is retryable.
func IsRetryable(err error) bool {
	var r retryable
	return errors.As(err, &r)
}

// Inventory is what an engine knows about its infrastructure that
// allocation must respect: VMIDs in use by guests it does not manage for
// this cloud, and each node's free memory. Engines that share their
// infrastructure with others (a Proxmox cluster) implement Inventorier;
// deploy compiles with the inventory before planning.
type Inventory struct {
	Taken map[int]string              // VMID -> what holds it
	Free  map[string]map[string]int64 // site -> node -> free MiB
}

// Inventorier is implemented by engines with an Inventory.
type Inventorier interface {
	Inventory(ctx context.Context) (Inventory, error)
}

// TakenError reports that a VMID the compiler allocated was taken by
// someone else between the inventory and the creation (a concurrent apply
// of another cloud, an operator): deploy re-allocates and tries again.
type TakenError struct {
	VMID   int
	Holder string
}

func (e *TakenError) Error() string {
	return fmt.Sprintf("VMID %d was taken meanwhile by %s", e.VMID, e.Holder)
}

// Lease is an address in a zone with a DHCP range: a compiled instance's
// reservation (its MAC always gets its address: on an engine that serves
// no DHCP, the reservations the zone's router must hold), or a lease a DHCP
// server handed out.
type Lease struct {
	Site     string     `json:"site"`
	Zone     string     `json:"zone"`
	IP       netip.Addr `json:"ip"`
	MAC      string     `json:"mac"`
	Hostname string     `json:"hostname"`
	// Expires is when a handed-out lease ends; null for a reservation.
	Expires  *time.Time `json:"expires"`
	Reserved bool       `json:"reserved"`
}

// Leaser is implemented by engines that serve DHCP themselves (the local
// engine, at each site's edge).
type Leaser interface {
	Leases(ctx context.Context) ([]Lease, error)
}
