package client

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"github.com/holdfast/holdfast/api"
)

// OperationError is an operation that finished and failed.
type OperationError struct {
	Operation api.Operation
}

func (e *OperationError) Error() string {
	msg := fmt.Sprintf("operation %s (%s of %s) failed", e.Operation.ID, e.Operation.Kind, e.Operation.Target)
	if e.Operation.Error != nil {
		msg += ": " + e.Operation.Error.Error()
	}
	return msg
}

// Unwrap returns the problem the server gave as the reason, if any.
func (e *OperationError) Unwrap() error {
	if e.Operation.Error == nil {
		return nil
	}
	return e.Operation.Error
}

// WaitOperationFor waits up to timeout (at most a minute) on the server for
// an operation to finish and returns it, finished or not.
func (c *Client) WaitOperationFor(ctx context.Context, id string, timeout time.Duration) (*api.Operation, error) {
	q := url.Values{}
	if timeout > 0 {
		q.Set("timeout", min(timeout, time.Minute).String())
	}
	return one[api.Operation](ctx, c, call{method: get, path: "/v1/operations/{}/wait", elems: []string{id}, query: q})
}

// WaitOperation waits until an operation is done, however long that takes
// (bound it with ctx), and returns it. When it failed, the error is an
// *OperationError wrapping the operation's problem.
//
//	op, err := c.CreateInstance(ctx, "acme", api.InstanceCreate{...})
//	if err == nil {
//		op, err = c.WaitOperation(ctx, op.ID)
//	}
func (c *Client) WaitOperation(ctx context.Context, id string) (*api.Operation, error) {
	return c.WaitOperationProgress(ctx, id, 30*time.Second, nil)
}

// WaitOperationProgress is WaitOperation that calls progress (if not nil)
// with the operation at least every interval until it is done, e.g. to
// show its progress and message, and once when it is.
func (c *Client) WaitOperationProgress(ctx context.Context, id string, interval time.Duration, progress func(*api.Operation)) (*api.Operation, error) {
	if interval <= 0 {
		interval = 30 * time.Second
	}
	for {
		start := time.Now()
		op, err := c.WaitOperationFor(ctx, id, interval)
		if err != nil {
			return nil, err
		}
		if progress != nil {
			progress(op)
		}
		if op.Done() {
			if op.Status == api.OpFailed {
				return op, &OperationError{Operation: *op}
			}
			return op, nil
		}
		// A server that answers early without the operation done (it is
		// shutting down) is asked again after a pause, not in a busy loop.
		if time.Since(start) < interval/2 {
			t := time.NewTimer(min(time.Second, interval))
			select {
			case <-ctx.Done():
				t.Stop()
			case <-t.C:
			}
		}
		if err := ctx.Err(); err != nil {
			return op, err
		}
	}
}
