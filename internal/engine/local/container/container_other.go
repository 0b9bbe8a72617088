//go:build !linux

package container

import (
	"context"
	"errors"
	"io"
	"os"
)

var errUnsupported = errors.New("containers need Linux")

// ErrResize is what Resize returns when a limit cannot change in place.
var ErrResize = errors.New("cannot resize in place")

// Start is only implemented on Linux.
func Start(ctx context.Context, cfg Config) (int, error) { return 0, errUnsupported }

// Stop is only implemented on Linux.
func Stop(ctx context.Context, cfg Config) error { return errUnsupported }

// Inspect is only implemented on Linux.
func Inspect(dir string) (Status, error) { return Status{}, errUnsupported }

// Exec is only implemented on Linux.
func Exec(ctx context.Context, dir string, argv []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	return -1, errUnsupported
}

// Resize is only implemented on Linux.
func Resize(ctx context.Context, dir string, cpus int, memoryMiB int64) error { return errUnsupported }

// Terminal is only implemented on Linux.
type Terminal struct{}

// StartTerminal is only implemented on Linux.
func StartTerminal(ctx context.Context, dir string, argv []string, tty *os.File) (*Terminal, error) {
	tty.Close()
	return nil, errUnsupported
}

// Wait is only implemented on Linux.
func (t *Terminal) Wait() (int, error) { return -1, errUnsupported }

// Kill is only implemented on Linux.
func (t *Terminal) Kill() error { return errUnsupported }
