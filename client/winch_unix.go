//go:build unix

package client

import (
	"os"
	"os/signal"
	"syscall"
)

// windowChanges signals each change of the terminal's window size.
func windowChanges() (<-chan os.Signal, func()) {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGWINCH)
	return c, func() { signal.Stop(c); close(c) }
}
