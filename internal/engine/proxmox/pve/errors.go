package pve

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Error is an answer from PVE other than success.
type Error struct {
	Method, Path string
	StatusCode   int
	// Message is PVE's message (the status line's reason), without the
	// trailing newline PVE keeps.
	Message string
	// Params are PVE's per-parameter errors (HTTP 400 "Parameter
	// verification failed.").
	Params map[string]string
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "pve: %s %s: %d %s", e.Method, e.Path, e.StatusCode, e.Message)
	keys := make([]string, 0, len(e.Params))
	for k := range e.Params {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "; %s: %s", k, strings.TrimSpace(e.Params[k]))
	}
	return b.String()
}

// Retryable reports whether the same request may succeed later: a 5xx
// that is not one of PVE's definite refusals (no such VM, VMID taken, a
// stale digest), or a lock. 4xx never is.
func (e *Error) Retryable() bool {
	if e.StatusCode < 500 {
		return false
	}
	for _, m := range permanent {
		if strings.Contains(e.Message, m) {
			return false
		}
	}
	return true
}

// PVE answers most refusals with a 500; these texts mark the ones that
// retrying the same request cannot cure.
var permanent = []string{
	"does not exist",                  // Configuration file '…/N.conf' does not exist
	"already exists",                  // unable to create VM N: config file already exists
	"checksum mismatch",               // update with a stale digest (PVE 8.3 and later)
	"checksum missmatch",              // the same, as PVE spelled it before
	"detected modified configuration", // the same, from other endpoints
	"no such cluster node",            //
	"you can't start a vm if it's a template",
	"shrinking disks is not supported", //
	"no options specified",             //
	"no such task",                     //
	"is running - destroy failed",      //
	"SSH public key validation error",  // sshkeys holding something else
	// Storage, clones and migration (qemu-server's and pve-storage's).
	"(VM uses local storage)",                   // can't clone VM to node 'pve2' (VM uses local storage)
	"can't clone to non-shared storage",         //
	"not allowed for linked clones",             // parameter 'storage' not allowed for linked clones
	"clone feature is not supported",            // Linked clone feature is not supported for '…' (scsi0)
	"does not support vm images",                // storage 'local' does not support vm images
	"is not available on node",                  // storage 'fast' is not available on node 'pve2'
	"can't migrate running VM without --online", //
	// The firewall's (pve-firewall's texts).
	"no such security group", // no such security group 'web'
	"no such IPSet",          // no such IPSet 'admins'
	"no rule at position",    // no rule at position 3
	"is not empty",           // Security group 'web' is not empty; IPSet 'x' is not empty
	"no such alias",          // an IPSet entry naming an alias that does not exist
	// SDN and HA (pve-network's and pve-ha-manager's texts). Their
	// refusals inside the cluster config lock come back as a 500 that
	// carries the parameter errors.
	"already defined",               // sdn zone object ID 'z' already defined; HA rule 'r' already defined
	"Parameter verification failed", // delete sdn vnet object failed: 400 Parameter verification failed.
	"is invalid.",                   // create ha rule failed: 400 Rule 'r' is invalid.
	"unexpected property",           // an option the zone or rule type does not take
	"missing value for required option",
	"cannot lookup undefined type",     // a vnet in a zone that does not exist
	"is used by vnet",                  // zone z is used by vnet v
	"no such resource",                 // no such resource 'vm:100'
	"not HA managed",                   // cannot delete service 'vm:100', not HA managed!
	"no such ha rule",                  //
	"cannot use unmanaged resource",    // a rule naming a VM that is no HA resource
	"cannot use non-existent node",     //
	"unable to parse service id",       //
	"no such option",                   // delete of an option the type does not have
	"unable to delete required option", //
}

// IsLocked reports whether err is PVE refusing because the VM is busy: its
// config carries a lock ("VM is locked (clone)") or another task holds its
// lock file ("can't lock file … - got timeout"). Such errors are
// retryable, but the client does not retry them itself: a lock may last
// as long as a clone of a large disk, which is for the caller to wait out.
func IsLocked(err error) bool {
	var e *Error
	if !errors.As(err, &e) {
		var t *TaskError
		return errors.As(err, &t) && lockedText(t.ExitStatus)
	}
	return lockedText(e.Message)
}

func lockedText(s string) bool {
	return strings.Contains(s, "is locked (") || strings.Contains(s, "can't lock file")
}

// IsNotFound reports whether err says the VM (its config file) does not
// exist, or the firewall's security group, IPSet or rule, or the SDN
// object, HA resource or HA rule.
func IsNotFound(err error) bool {
	var e *Error
	if !errors.As(err, &e) {
		return false
	}
	for _, m := range notFound {
		if strings.Contains(e.Message, m) {
			return true
		}
	}
	return false
}

var notFound = []string{"does not exist", "no such security group", "no such IPSet", "no rule at position",
	"no such resource", "not HA managed", "no such ha rule"}

// IsExists reports whether err says the VMID is already taken, or the
// SDN or HA object's ID ("already defined"), or (a parameter error) the
// firewall's security group, IPSet or IPSet entry.
func IsExists(err error) bool {
	var e *Error
	if !errors.As(err, &e) {
		return false
	}
	if strings.Contains(e.Message, "already exists") || strings.Contains(e.Message, "already defined") {
		return true
	}
	for _, m := range e.Params {
		if strings.Contains(m, "already exists") {
			return true
		}
	}
	return false
}

// IsDigestMismatch reports whether an update was refused because the
// config changed since its digest was read.
func IsDigestMismatch(err error) bool {
	var e *Error
	return errors.As(err, &e) && (strings.Contains(e.Message, "checksum mismatch") ||
		strings.Contains(e.Message, "checksum missmatch") || strings.Contains(e.Message, "detected modified configuration"))
}

// IsUnauthorized reports whether PVE refused the token.
func IsUnauthorized(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.StatusCode == http.StatusUnauthorized
}

// TaskError is a task that ended with an exit status other than "OK".
type TaskError struct {
	UPID       string
	ExitStatus string
}

func (e *TaskError) Error() string {
	return fmt.Sprintf("pve: task %s failed: %s", e.UPID, e.ExitStatus)
}

// TaskTimeoutError is a task still running when the client stopped
// waiting. Its outcome is unknown: the task may yet finish.
type TaskTimeoutError struct {
	UPID  string
	After time.Duration
}

func (e *TaskTimeoutError) Error() string {
	return fmt.Sprintf("pve: task %s still running after %s", e.UPID, e.After)
}

// ConnError is a request that got no answer: the connection failed, was
// dropped, or timed out. Whether PVE acted on it is unknown.
type ConnError struct {
	Method, Path string
	Err          error
}

func (e *ConnError) Error() string {
	return fmt.Sprintf("pve: %s %s: %v", e.Method, e.Path, e.Err)
}
func (e *ConnError) Unwrap() error { return e.Err }

// IsRetryable reports whether retrying the operation may succeed: no
// answer (ConnError), a retryable Error (5xx, locks), a task that did not
// finish in time, or a task that failed on a lock or timeout.
func IsRetryable(err error) bool {
	var (
		e  *Error
		ce *ConnError
		te *TaskError
		tt *TaskTimeoutError
	)
	switch {
	case errors.As(err, &ce), errors.As(err, &tt):
		return true
	case errors.As(err, &e):
		return e.Retryable()
	case errors.As(err, &te):
		return lockedText(te.ExitStatus) || strings.Contains(te.ExitStatus, "got timeout")
	}
	return false
}

// transient is what the client retries by itself: failures of the moment
// (no answer, a 5xx that is neither a refusal nor a lock), never a lock
// and never the caller's own cancellation.
func transient(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	var ce *ConnError
	if errors.As(err, &ce) {
		return true
	}
	var e *Error
	return errors.As(err, &e) && e.Retryable() && !lockedText(e.Message)
}

// errPinMismatch is the handshake failing on the pinned fingerprint: a
// wrong server (or a configuration error), never worth a retry.
var errPinMismatch = errors.New("pve: server certificate does not match the pinned fingerprint")

// connFailure reports whether a transport error is the connection failing
// or timing out, as opposed to a refused certificate or a malformed URL.
func connFailure(err error) bool {
	if errors.Is(err, errPinMismatch) {
		return false
	}
	var tlsErr *tls.CertificateVerificationError
	if errors.As(err, &tlsErr) {
		return false
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // url.Error is a net.Error whatever it wraps
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE)
}
