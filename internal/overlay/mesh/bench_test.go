package mesh_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
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
		m.throughput(b, src, dst, netip.AddrPortFrom(dst.underlay, sinkPort), chunk, nil)
	})
	b.Run("embedded", func(b *testing.B) {
		m.waitOverlay(b, src, dst)
		m.throughput(b, src, dst, netip.AddrPortFrom(dst.overlay, sinkPort), chunk,
			[]int{src.cmd.Process.Pid, dst.cmd.Process.Pid})
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
		var pids []int
		for _, mb := range []*member{src, dst} {
			cmd := exec.Command("ip", "netns", "exec", mb.ns, bin.path, "-config", mb.cfgPath)
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			cmds = append(cmds, cmd)
			pids = append(pids, cmd.Process.Pid) // ip netns exec execs the binary
		}
		b.Run(bin.name, func(b *testing.B) {
			// No child serves the echo port now: throughput waits for
			// the tunnel with its sink.
			m.throughput(b, src, dst, netip.AddrPortFrom(dst.overlay, sinkPort), chunk, pids)
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
// other's namespace. With the pids of the two Nebula processes it also
// reports the CPU time they spent per byte (nebula-cpu-ns/B): on a machine
// shared with other work, throughput swings with the load, while the CPU
// a byte costs is what embedding could change.
func (m *testMesh) throughput(b *testing.B, from, to *member, addr netip.AddrPort, chunk int, pids []int) {
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
	cpu0 := cpuTime(b, pids)
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
	if pids != nil {
		b.ReportMetric(float64(cpuTime(b, pids)-cpu0)/float64(b.N*chunk), "nebula-cpu-ns/B")
	}
	if n := binary.BigEndian.Uint64(got[:]); n != uint64(b.N*chunk) {
		b.Fatalf("the sink received %d bytes, sent %d", n, b.N*chunk)
	}
}

// sink counts what each connection sends and, at its end, answers the count.
func sink(ln net.Listener) {
	serve(ln, func(c net.Conn) {
		n, _ := io.Copy(io.Discard, c)
		var out [8]byte
		binary.BigEndian.PutUint64(out[:], uint64(n))
		_, _ = c.Write(out[:])
	})
}

// cpuTime is the user and system CPU time the processes have used.
func cpuTime(b *testing.B, pids []int) time.Duration {
	b.Helper()
	var total time.Duration
	for _, pid := range pids {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			b.Fatal(err)
		}
		// The command name may hold spaces; the fields after it don't.
		fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		// utime and stime are fields 14 and 15 of the line, 12 and 13
		// after the name, in clock ticks (USER_HZ, 100 on Linux).
		for _, f := range fields[11:13] {
			ticks, err := strconv.ParseInt(f, 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			total += time.Duration(ticks) * 10 * time.Millisecond
		}
	}
	return total
}
