package engine

import (
	"context"
	"errors"
	"io"
)

// Consoler is implemented by engines that can open an interactive
// terminal on an instance: a shell on a PTY inside it (local), or a relay
// to the hypervisor's own console (Proxmox). Engines that cannot do not
// implement it, and the API answers that the console is unavailable.
type Consoler interface {
	// Console opens a terminal of the given size on the instance. Reads
	// are what the terminal shows, writes are what is typed. Closing it
	// ends the session (the local engine kills the shell and all it
	// started); a read returns io.EOF, or an error, once the other side
	// has ended it (the shell exited, the instance stopped).
	Console(ctx context.Context, instance string, size TermSize) (Console, error)
}

// Console is an open terminal on an instance.
type Console interface {
	io.ReadWriteCloser
	// Resize tells the terminal its new size, as a window change would.
	Resize(TermSize) error
}

// TermSize is a terminal's size in character cells.
type TermSize struct {
	Cols, Rows uint16
}

// DefaultTermSize is the size of a terminal whose client did not say.
var DefaultTermSize = TermSize{Cols: 80, Rows: 24}

// Valid reports whether the size is usable: neither side zero.
func (t TermSize) Valid() bool { return t.Cols > 0 && t.Rows > 0 }

// ErrNoConsole is returned (wrapped) by Console when the instance has no
// console to open now: it is not running, or does not exist.
var ErrNoConsole = errors.New("no console")
