package mesh_test

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/nsthread"
	"github.com/holdfast/holdfast/internal/testenv"
)

// BenchmarkOverlayThroughput measures TCP throughput between two members:
// over the plain underlay bridge, over the overlay with Nebula embedded
// (mesh.Start, in each member's child), and, where Debian's nebula package
// is installed, over the overlay with the stock nebula binary run with the
// same certificates and configuration between the same pair. Each
// iteration sends chunk bytes on one connection; the receiver confirms the
// total at the end, so buffered bytes are not counted as delivered.
func BenchmarkOverlayThroughput(b *testing.B) {
	testenv.NeedRoot(b, "network namespaces and tun devices")
	m := newMesh(b,
		memberSpec{name: "a", groups: []string{"admin"}, allowFrom: []string{"any"}, lighthouse: true},
		memberSpec{name: "b", groups: []string{"infrastructure"}, allowFrom: []string{"any"}},
	)
	src, dst := m.byName["a"], m.byName["b"]
	const chunk = 16 << 20
	const sinkPort = 7200

	b.Run("underlay", func(b *testing.B) {
		m.throughput(b, src, dst, netip.AddrPortFrom(dst.underlay, sinkPort), chunk)
	})
	b.Run("embedded", func(b *testing.B) {
		m.waitOverlay(b, src, dst)
		m.throughput(b, src, dst, netip.AddrPortFrom(dst.overlay, sinkPort), chunk)
	})
	// The stock binaries: Debian's nebula package (the anchor, an
	// older Nebula), and cmd/nebula built from the very module version
	// Holdfast embeds, which separates embedding from version differences.
	type binary struct{ name, path string }
	var stock []binary
	if p, err := exec.LookPath("nebula"); err == nil {
		stock = append(stock, binary{"stock-debian", p})
	} else {
		b.Logf("no stock nebula binary (Debian's nebula package): %v", err)
	}
	if goTool, err := exec.LookPath("go"); err == nil {
		p := filepath.Join(b.TempDir(), "nebula")
		if out, err := exec.Command(goTool, "build", "-o", p, "github.com/slackhq/nebula/cmd/nebula").CombinedOutput(); err != nil {
			b.Logf("building cmd/nebula: %v: %s", err, out)
		} else {
			stock = append(stock, binary{"stock-module", p})
		}
	}
	// The children go, and each stock binary in turn runs the same
	// configurations in the same namespaces (started outside b.Run, which
	// may call its function more than once).
	for _, mb := range []*member{src, dst} {
		mb.kill()
	}
	for _, bin := range stock {
		var cmds []*exec.Cmd
		for _, mb := range []*member{src, dst} {
			cmd := exec.Command("ip", "netns", "exec", mb.ns, bin.path, "-config", mb.cfgPath)
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			cmds = append(cmds, cmd)
		}
		b.Run(bin.name, func(b *testing.B) {
			// No child serves the echo port now: throughput waits for
			// the tunnel with its sink.
			m.throughput(b, src, dst, netip.AddrPortFrom(dst.overlay, sinkPort), chunk)
		})
		for _, cmd := range cmds {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}
}

// waitOverlay waits until from reaches to over the overlay.
func (m *testMesh) waitOverlay(b *testing.B, from, to *member) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if !eventually(ctx, 100*time.Millisecond, func() bool {
		return m.echo(from, to, []byte("up"), 500*time.Millisecond) == nil
	}) {
		b.Fatalf("%s never reached %s over the overlay", from.name, to.name)
	}
}

// throughput sends b.N chunks from one member to a sink at addr in the
// other's namespace.
func (m *testMesh) throughput(b *testing.B, from, to *member, addr netip.AddrPort, chunk int) {
	b.Helper()
	var ln net.Listener
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// The address may not exist yet (a stock nebula creating its tun).
	if !eventually(ctx, 100*time.Millisecond, func() bool {
		return nsthread.In(m.nsPath(to.ns), func() error {
			var err error
			ln, err = net.Listen("tcp", addr.String())
			return err
		}) == nil
	}) {
		b.Fatalf("no sink at %s", addr)
	}
	defer func() { _ = ln.Close() }()
	go sink(ln)

	var c net.Conn
	if !eventually(ctx, 100*time.Millisecond, func() bool {
		var err error
		c, err = m.dial(from, addr, 500*time.Millisecond)
		return err == nil
	}) {
		b.Fatalf("%s: no connection to %s", from.name, addr)
	}
	defer func() { _ = c.Close() }()
	buf := make([]byte, chunk)
	b.SetBytes(int64(chunk))
	b.ResetTimer()
	for range b.N {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		b.Fatal(err)
	}
	var got [8]byte
	if _, err := io.ReadFull(c, got[:]); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if n := binary.BigEndian.Uint64(got[:]); n != uint64(b.N*chunk) {
		b.Fatalf("the sink received %d bytes, sent %d", n, b.N*chunk)
	}
}

// sink counts what each connection sends and, at its end, answers the count.
func sink(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			continue
		}
		go func() {
			defer func() { _ = c.Close() }()
			n, _ := io.Copy(io.Discard, c)
			var out [8]byte
			binary.BigEndian.PutUint64(out[:], uint64(n))
			_, _ = c.Write(out[:])
		}()
	}
}
