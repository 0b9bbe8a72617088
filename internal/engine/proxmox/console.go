package proxmox

import (
	"context"
	"fmt"

	"github.com/holdfast/holdfast/internal/engine"
	"github.com/holdfast/holdfast/internal/engine/proxmox/pve"
)

var _ engine.Consoler = (*Engine)(nil)

// Console relays to PVE's own console of the instance's VM: its serial
// console through termproxy, as PVE's xterm.js page opens it (pve's
// Terminal). The VM needs a serial port (serial0: socket, as cloud
// images are made) for `qm terminal` to attach to.
func (e *Engine) Console(ctx context.Context, instance string, size engine.TermSize) (engine.Console, error) {
	in, ok := e.instances[instance]
	if !ok {
		return nil, fmt.Errorf("%w: no instance %q in cloud %s", engine.ErrNoConsole, instance, e.cloud)
	}
	s, err := e.site(in.Site)
	if err != nil {
		return nil, err
	}
	g, found, err := s.find(ctx, in.VMID, in.Node)
	if err != nil {
		return nil, err
	}
	if !found || !e.ours(g, in.Name) {
		return nil, fmt.Errorf("instance %s: %w: its VM %d is not there", instance, engine.ErrNoConsole, in.VMID)
	}
	st, err := s.api.Status(ctx, g.node, g.vmid)
	if err != nil {
		return nil, err
	}
	if st.Status != "running" {
		return nil, fmt.Errorf("instance %s: %w: its VM %d is %s", instance, engine.ErrNoConsole, g.vmid, st.Status)
	}
	if !size.Valid() {
		size = engine.DefaultTermSize
	}
	t, err := s.api.Terminal(ctx, g.node, g.vmid, int(size.Cols), int(size.Rows))
	if err != nil {
		return nil, err
	}
	return terminal{t}, nil
}

// terminal is a pve.Terminal as an engine.Console.
type terminal struct{ *pve.Terminal }

func (t terminal) Resize(size engine.TermSize) error {
	return t.Terminal.Resize(int(size.Cols), int(size.Rows))
}
