package local

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/internal/engine"
)

// The reconciler retries exactly the failures the kernel means as "not
// now", however deeply the engine wrapped them.
func TestClassify(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("instance web: veth v100n0: %w", err) }
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{wrap(unix.EBUSY), true},
		{wrap(unix.EAGAIN), true},
		{wrap(unix.EWOULDBLOCK), true},
		{wrap(unix.EINTR), true},
		{wrap(unix.ETIMEDOUT), true},
		{wrap(unix.ENOBUFS), true},
		{wrap(&os.PathError{Op: "mount", Path: "/run/netns/x", Err: unix.EBUSY}), true},
		{wrap(netlink.ErrDumpInterrupted), true},
		{wrap(os.ErrDeadlineExceeded), true},
		{wrap(unix.EPERM), false},
		{wrap(unix.EEXIST), false},
		{wrap(unix.ENOENT), false},
		{wrap(unix.EINVAL), false},
		{wrap(errors.New("instance web: exec /nonexistent/service: no such file")), false},
		{wrap(context.Canceled), false},
		{wrap(context.DeadlineExceeded), false},
		{errors.Join(wrap(unix.EBUSY), context.Canceled), false},
	} {
		got := classify(tc.err)
		if engine.IsRetryable(got) != tc.want {
			t.Errorf("classify(%v) retryable = %v, want %v", tc.err, engine.IsRetryable(got), tc.want)
		}
		if !errors.Is(got, tc.err) {
			t.Errorf("classify(%v) lost the error", tc.err)
		}
	}
	if classify(nil) != nil {
		t.Error("classify(nil) is not nil")
	}
	if got := classify(classify(unix.EBUSY)); !engine.IsRetryable(got) || got.Error() != unix.EBUSY.Error() {
		t.Errorf("classified twice: %v, retryable %v", got, engine.IsRetryable(got))
	}
}
