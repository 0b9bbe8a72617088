// Package container runs the instances of the local engine as system
// containers: a process tree with its own UTS, PID, mount and IPC
// namespaces, placed in a network namespace the engine has already wired
// (veth, addresses, routes), limited by cgroups, optionally inside a root
// filesystem, running a service that is restarted whenever it exits.
//
// Everything is done from Go through system calls; nothing is shelled out.
//
// # How a container is made
//
// Start re-executes the running binary (/proc/self/exe) with
// HOLDFAST_CONTAINER_INIT=1 in its environment, in new namespaces, from an
// OS thread that has joined the instance's network namespace. A package
// init function sees the marker and runs the container's init instead of
// the program's main (or its tests), so any binary that imports this
// package — holdfast itself, a test binary — can be the init.
//
// The init, PID 1 of its namespace, sets the hostname, makes its mounts
// private, mounts its own /proc (after pivot_root into Rootfs, or into an
// overlay of Rootfs and the container's own layer, when one is given) and
// its Binds, reports "ready" and waits for a "go" byte from Start. All of
// these mounts are in the container's mount namespace only. Start first
// moves it into the instance's cgroups, so that everything it ever runs is
// limited. After "go" the init runs the service (or a built-in responder on
// the instance's ports when there is no service), reaps orphans, restarts
// the service with capped backoff, and serves a root-only control socket
// through which Exec runs commands inside the container and Inspect reads
// the service's state. SIGTERM makes it stop its children and exit.
//
// # State directory
//
// Dir (0700) holds config.json (the configuration the init runs with;
// 0600, as Env may hold secrets), init.pid (written only once the init runs
// its service), console.log (the init's and the service's output, not
// rotated), control.sock and lock. Start and Stop serialize on lock; either
// may be killed at any point and a following Start or Stop converges: an
// init that never got "go" exits by itself when Start dies, and one that
// did is in the instance's cgroup, which Stop and a fresh Start empty.
//
// # Privilege
//
// The service and Exec'd commands run as root inside the container, with
// the host's user namespace: they are isolated from the host's processes,
// hostname and network, not contained as a hostile tenant would need to be.
// Without Rootfs they see the host's file system. A few capabilities no
// container needs (loading modules, raw I/O, setting the clock, reboot,
// MAC policy, audit control, syslog) are removed from the bounding set of
// everything in the container. The control socket accepts only uid 0.
// Environment values are never logged.
package container

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
)

// Config describes one container.
type Config struct {
	Name   string // instance name; the container's hostname
	NetNS  string // path of the network namespace to join, e.g. /run/netns/hf-demo-i-web
	Dir    string // state directory: pid file, control socket, console log (created if missing)
	Cgroup string // cgroup path under each controller, e.g. "holdfast/demo/web"
	// Rootfs, when set, is the directory the container pivots into;
	// otherwise it sees the host's file system with a private /proc.
	Rootfs string
	// Overlay, with Rootfs, keeps the container's writes out of Rootfs:
	// the root is an overlay of Rootfs (read-only, shareable by many
	// containers) and Overlay/upper, so that emptying Overlay while the
	// container is stopped resets it to Rootfs. Overlay/work and
	// Overlay/merged are overlayfs's own.
	Overlay string
	// Binds are directories of the host mounted into the container, in
	// order (a later target may lie inside an earlier one). A target
	// missing inside the container is created.
	Binds []Bind
	// Command is the service, restarted with backoff whenever it exits.
	// Without one, a built-in responder answers on Ports.
	Command []string
	Env     []string // the service's and Exec'd commands' environment (KEY=VALUE)
	// Agent, when set, makes the init also run its own program (the
	// holdfast that started it, /proc/self/exe) beside the service, with
	// these variables (KEY=VALUE) added to the service's environment, and
	// restart it like the service: the local engine runs the Holdfast
	// agent so.
	Agent []string
	// Ports the instance serves. With no Command, on each TCP port the
	// responder writes "holdfast <name> <port>\n" and closes, or, to a
	// client that sends an HTTP request first, answers 200 with that line
	// as the body; on each UDP port it echoes every datagram back.
	Ports     []Port
	CPUs      int   // CFS quota in whole CPUs; 0 = unlimited
	MemoryMiB int64 // memory limit; 0 = unlimited
	PIDs      int   // pids.max; 0 = DefaultPIDs
	// Nameservers and SearchDomain are written to /etc/resolv.conf inside
	// Rootfs; without one, to Dir/resolv.conf, bound over the host's
	// /etc/resolv.conf in the container's mount namespace (never written
	// to the host's file system).
	Nameservers  []string
	SearchDomain string
}

// Bind mounts the host directory Source at Target inside the container.
type Bind struct {
	Source string // absolute path on the host
	Target string // absolute path inside the container
}

// Port is a port the instance serves.
type Port struct {
	Port  int
	Proto string // "tcp" or "udp"
}

// Status is what Inspect observes.
type Status struct {
	Running    bool   // the init is alive, is this instance's, and is in the configured netns
	PID        int    // host pid of the init, when running
	ServicePID int    // host pid of the service, 0 when none is running
	Restarts   int    // how many times the service has been restarted
	AgentPID   int    // host pid of the agent, 0 when none is running
	Cgroup     bool   // the init is in the instance's cgroup under every controller
	CPUs       int    // the CPU limit in force, in whole CPUs (0: none), when running
	MemoryMiB  int64  // the memory limit in force (0: none), when running
	Problem    string // why the instance is not running or not healthy, when something was found
	Config     Config // the configuration the init was started with
}

// Files in the state directory.
const (
	configFile  = "config.json"
	pidFile     = "init.pid"
	lockFile    = "lock"
	socketFile  = "control.sock"
	consoleFile = "console.log"
	resolvFile  = "resolv.conf" // a host-view container's, bound over /etc/resolv.conf
)

// DefaultPIDs is pids.max when Config.PIDs is 0.
const DefaultPIDs = 512

// ErrNotRunning is returned by Exec when the instance's init is not there.
var ErrNotRunning = errors.New("container is not running")

// reservedEnvPrefix marks the variables that make a process an init; they
// never reach a service.
const reservedEnvPrefix = "HOLDFAST_CONTAINER_"

// maxSocketPath is the longest path a unix socket address can hold.
const maxSocketPath = 107

func (c Config) withDefaults() Config {
	if c.PIDs == 0 {
		c.PIDs = DefaultPIDs
	}
	return c
}

// validate refuses a configuration before anything is changed.
func (c Config) validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("container %q: %s: %s", c.Name, field, fmt.Sprintf(format, args...)))
	}
	if err := validHostname(c.Name); err != nil {
		bad("name", "%v", err)
	}
	if !filepath.IsAbs(c.NetNS) {
		bad("netns", "%q is not an absolute path", c.NetNS)
	}
	if !filepath.IsAbs(c.Dir) {
		bad("dir", "%q is not an absolute path", c.Dir)
	} else if n := len(filepath.Join(c.Dir, socketFile)); n > maxSocketPath {
		bad("dir", "%q is too long for a unix socket path (%d > %d bytes)", c.Dir, n, maxSocketPath)
	}
	if err := validCgroup(c.Cgroup); err != nil {
		bad("cgroup", "%v", err)
	}
	if c.Rootfs != "" && !filepath.IsAbs(c.Rootfs) {
		bad("rootfs", "%q is not an absolute path", c.Rootfs)
	}
	if c.Overlay != "" {
		switch {
		case c.Rootfs == "":
			bad("overlay", "an overlay needs a rootfs to lie over")
		case !filepath.IsAbs(c.Overlay):
			bad("overlay", "%q is not an absolute path", c.Overlay)
		case strings.ContainsAny(c.Overlay+c.Rootfs, ",:\\"):
			// overlayfs separates its options and layers with these.
			bad("overlay", "the paths of rootfs and overlay may not contain ',', ':' or '\\'")
		}
	}
	for _, b := range c.Binds {
		switch {
		case !filepath.IsAbs(b.Source):
			bad("binds", "source %q is not an absolute path", b.Source)
		case !filepath.IsAbs(b.Target) || filepath.Clean(b.Target) != b.Target || b.Target == "/":
			bad("binds", "target %q is not a clean absolute path below /", b.Target)
		}
	}
	if len(c.Command) > 0 && c.Command[0] == "" {
		bad("command", "empty program name")
	}
	for _, kv := range slices.Concat(c.Env, c.Agent) {
		k, _, ok := strings.Cut(kv, "=")
		switch {
		case !ok || k == "":
			bad("env", "%q is not KEY=VALUE", k)
		case strings.HasPrefix(k, reservedEnvPrefix):
			bad("env", "%s is reserved", k)
		}
	}
	seen := map[Port]bool{}
	for _, p := range c.Ports {
		if p.Port < 1 || p.Port > 65535 {
			bad("ports", "%d is out of range 1-65535", p.Port)
		}
		if p.Proto != "tcp" && p.Proto != "udp" {
			bad("ports", "%d: protocol %q is neither tcp nor udp", p.Port, p.Proto)
		}
		if seen[p] {
			bad("ports", "%d/%s listed twice", p.Port, p.Proto)
		}
		seen[p] = true
	}
	if c.CPUs < 0 {
		bad("cpus", "%d is negative", c.CPUs)
	}
	if c.MemoryMiB < 0 {
		bad("memory", "%d MiB is negative", c.MemoryMiB)
	}
	if c.PIDs < 0 {
		bad("pids", "%d is negative", c.PIDs)
	}
	for _, ns := range c.Nameservers {
		if _, err := netip.ParseAddr(ns); err != nil {
			bad("nameservers", "%q is not an IP address", ns)
		}
	}
	if strings.ContainsAny(c.SearchDomain, " \t\n") {
		bad("search domain", "%q contains white space", c.SearchDomain)
	}
	return errors.Join(errs...)
}

func validHostname(name string) error {
	if name == "" || len(name) > 63 {
		return fmt.Errorf("%q must be 1-63 characters", name)
	}
	for i, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' && i > 0 && i < len(name)-1
		if !ok {
			return fmt.Errorf("%q is not a valid hostname (letters, digits, inner hyphens)", name)
		}
	}
	return nil
}

// validCgroup accepts a relative, clean path that stays under the
// controller's root.
func validCgroup(p string) error {
	switch {
	case p == "":
		return errors.New("empty")
	case filepath.IsAbs(p):
		return fmt.Errorf("%q must be relative to the controller's root", p)
	case filepath.Clean(p) != p || p == "." || strings.HasPrefix(p, "../") || p == "..":
		return fmt.Errorf("%q is not a clean path below the controller's root", p)
	}
	return nil
}
