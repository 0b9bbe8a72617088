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

// Attach joins in to the console until the console ends, ctx ends, or
// EscapeKey is typed: what is typed goes to the console, what it shows is
// written to out. When in is a terminal it is put in raw mode (^C and the
// like reach the instance) and restored on return, and when its window
// changes size the console is resized. The end of in (a pipe, a file)
// sends nothing more but leaves the console to end by itself (a script
// ending in exit). It returns nil when the user left or the shell ended;
// else why the console ended.
func (t *Console) Attach(ctx context.Context, in io.Reader, out io.Writer) error {
	if f, ok := in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fd := int(f.Fd())
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
				return // no more input: the console ends by itself, or by ctx
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
