package local

import (
	"context"
	"errors"
	"os"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/internal/engine"
)

// transientErrnos are the kernel's ways of saying "not now": a resource
// busy, a buffer full, a call interrupted or timed out. The same call
// may succeed a moment later.
var transientErrnos = []unix.Errno{
	unix.EBUSY,     // a device or mount in use, a cgroup with a process leaving it
	unix.EAGAIN,    // also EWOULDBLOCK: a lock held, a resource momentarily short
	unix.EINTR,     // a system call interrupted by a signal
	unix.ETIMEDOUT, // a netlink or socket operation timed out
	unix.ENOBUFS,   // a netlink socket's receive buffer overflowed
	unix.ENOMEM,    // the kernel could not allocate right now (netlink reports it for pressure)
}

// retryable reports whether err is worth trying again: a transient errno,
// an interrupted netlink dump, or an I/O deadline. A step's own context
// ending is not: the caller gave up.
func retryable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	for _, e := range transientErrnos {
		if errors.Is(err, e) {
			return true
		}
	}
	return errors.Is(err, netlink.ErrDumpInterrupted) || errors.Is(err, os.ErrDeadlineExceeded)
}

// classify marks err retryable for the reconciler when it is transient
// (DESIGN.md: engines say which failures are worth retrying).
func classify(err error) error {
	if retryable(err) && !engine.IsRetryable(err) {
		return engine.Retryable(err)
	}
	return err
}
