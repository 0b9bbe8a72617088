// Package nsthread runs code on an OS thread of its own, optionally moved
// into a network namespace first. Namespaces (like credentials and the
// capability bounding set) belong to a thread in Linux, and Go moves
// goroutines between threads; so code that changes its thread runs on a
// thread that ends when it returns and is never handed to another goroutine.
package nsthread

import (
	"errors"
	"fmt"
	"os"
	"runtime"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Run runs fn on a thread of its own that ends when fn returns, so that
// whatever fn changes of its thread never reaches another goroutine.
//
// A goroutine that exits while locked ends its thread — except the main
// thread, which the runtime parks forever instead; a main thread parked in
// another namespace would keep that namespace alive. So when the goroutine
// lands on the main thread, it holds that thread, unchanged, while another
// thread (which the scheduler cannot hand it while it holds this one) does
// the work.
func Run(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if unix.Gettid() == unix.Getpid() {
			errc <- Run(fn)
			runtime.UnlockOSThread()
			return
		}
		errc <- fn() // no UnlockOSThread: the thread ends with this goroutine
	}()
	return <-errc
}

// In runs fn on a thread of its own inside the network namespace at path.
// Sockets fn creates stay in that namespace wherever they are used later.
func In(path string, fn func() error) error {
	target, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("namespace %s: %w", path, err)
	}
	defer target.Close()
	return Run(func() error {
		if err := netns.Set(target); err != nil {
			return fmt.Errorf("enter namespace %s: %w", path, err)
		}
		return fn()
	})
}

// NamedDir is where named network namespaces are mounted (iproute2's
// convention, so that `ip netns` sees them).
const NamedDir = "/run/netns"

// ShareNamedDir makes NamedDir a shared mount point of its own, as
// iproute2 does before it mounts a namespace there. Whoever mounts the
// first namespace must do it: `ip netns add` binds the directory onto
// itself on first use when it is not a mount point yet, and that bind
// covers every namespace mounted in the directory before it, which can
// then be neither reached by its path nor deleted.
func ShareNamedDir() error {
	if err := os.MkdirAll(NamedDir, 0o755); err != nil {
		return err
	}
	err := unix.Mount("", NamedDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if errors.Is(err, unix.EINVAL) { // not a mount point
		if err := unix.Mount(NamedDir, NamedDir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind %s onto itself: %w", NamedDir, err)
		}
		err = unix.Mount("", NamedDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	}
	if err != nil {
		return fmt.Errorf("make %s a shared mount: %w", NamedDir, err)
	}
	return nil
}
