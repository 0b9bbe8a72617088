package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/holdfast/holdfast/internal/engine"
	"github.com/holdfast/holdfast/internal/engine/local/container"
	"github.com/holdfast/holdfast/internal/probe"
)

// What the CLI asks of the local engine beyond the engine contract: it
// knows where an instance runs (its namespaces and state directory), so
// exec, ping and "reach it from the internet" are its to do.
var (
	_ engine.Execer          = (*Engine)(nil)
	_ engine.Pinger          = (*Engine)(nil)
	_ engine.InternetVantage = (*Engine)(nil)
)

// made returns the instance's state directory, or an error saying it was
// never made (or has been removed) on this host.
func (e *Engine) made(instance string) (string, error) {
	dir := e.instDir(instance)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("no instance %q on the local engine under %s", instance, e.stateDir)
	} else if err != nil {
		return "", err
	}
	return dir, nil
}

// Exec runs argv inside the instance's namespaces (network, hostname,
// processes, mounts).
func (e *Engine) Exec(ctx context.Context, instance string, argv []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	dir, err := e.made(instance)
	if err != nil {
		return 0, err
	}
	return container.Exec(ctx, dir, argv, stdin, stdout, stderr)
}

// Ping sends one echo request from the instance's network namespace.
func (e *Engine) Ping(ctx context.Context, instance string, dst netip.Addr, timeout time.Duration) error {
	if _, err := e.made(instance); err != nil {
		return err
	}
	return probe.ICMP(ctx, filepath.Join("/run/netns", InstanceNS(e.cloud, instance)), dst, timeout)
}

// FromInternet runs command in the namespace that plays the internet.
func (e *Engine) FromInternet(command string) string {
	return "ip netns exec " + e.inetNS() + " " + command
}
