//go:build !unix

package client

import "os"

// windowChanges: no signal tells a window's new size here.
func windowChanges() (<-chan os.Signal, func()) {
	c := make(chan os.Signal)
	return c, func() { close(c) }
}
