package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/term"
)

// EscapeKey leaves an attached console: Ctrl-], as telnet and virsh
// console have it.
const EscapeKey = 0x1d

// Attach joins the terminal in to the console until the console ends,
// ctx ends, or EscapeKey is typed: what is typed goes to the console
// (in raw mode, when in is a terminal: ^C and the like reach the
// instance), what it shows is written to out, and when in's window
// changes size the console is resized. in is restored on return. It
// returns nil when the user left or the shell ended; else why the
// console ended.
func (t *Console) Attach(ctx context.Context, in *os.File, out io.Writer) error {
	fd := int(in.Fd())
	if term.IsTerminal(fd) {
		old, err := term.MakeRaw(fd)
		if err != nil {
			return fmt.Errorf("raw terminal: %w", err)
		}
		defer func() { _ = term.Restore(fd, old) }() // best effort: the terminal may be gone
		if cols, rows, err := term.GetSize(fd); err == nil {
			_ = t.Resize(cols, rows) // the console reports a failed write itself
		}
		resized, stop := windowChanges()
		defer stop()
		go func() {
			for range resized {
				if cols, rows, err := term.GetSize(fd); err == nil {
					_ = t.Resize(cols, rows)
				}
			}
		}()
	}
	left := make(chan error, 2)
	go func() { // typed -> console
		buf := make([]byte, 4096)
		for {
			n, err := in.Read(buf)
			chunk := buf[:n]
			esc := bytes.IndexByte(chunk, EscapeKey)
			if esc >= 0 {
				chunk = chunk[:esc]
			}
			if len(chunk) > 0 {
				if _, werr := t.Write(chunk); werr != nil {
					left <- werr
					return
				}
			}
			if esc >= 0 {
				left <- nil
				return
			}
			if err != nil {
				left <- nil // no more input: leave
				return
			}
		}
	}()
	go func() { // console -> shown
		_, err := io.Copy(out, t)
		if err == nil {
			if e := t.Ended(); e != nil && e.Status != 1000 {
				err = errors.New(e.Error())
			}
		}
		left <- err
	}()
	select {
	case err := <-left:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}
