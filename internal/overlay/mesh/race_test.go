package mesh_test

import (
	"fmt"
	"strings"
	"testing"
)

// TestRaceReportsSorted: a race whose accesses are all in Nebula is
// upstream's even though Holdfast started the goroutines; one with a
// Holdfast frame where memory was accessed is ours (and fails the test
// that sees its child exit with it).
func TestRaceReportsSorted(t *testing.T) {
	report := func(access string) string {
		return strings.Join([]string{
			"==================",
			"WARNING: DATA RACE",
			"Read at 0x00c00016b530 by goroutine 21:",
			"  github.com/slackhq/nebula.(*HandshakeManager).continueHandshake()",
			"      /root/go/pkg/mod/github.com/slackhq/nebula@v1.11.0/handshake_manager.go:963 +0x1d7a",
			"",
			"Previous write at 0x00c00016b530 by goroutine 20:",
			"  " + access,
			"",
			"Goroutine 21 (running) created at:",
			"  github.com/holdfast/holdfast/internal/overlay/mesh.Start()",
			"      /src/internal/overlay/mesh/mesh.go:63 +0x537",
			"==================",
			"",
		}, "\n")
	}
	w := &prefixWriter{t: t, prefix: "child"}
	fmt.Fprint(w, report("github.com/slackhq/nebula.(*HandshakeHostInfo).cachePacket()"))
	if ours, upstream := w.races(); ours != 0 || upstream != 1 {
		t.Fatalf("a race inside Nebula: ours %d, upstream %d; want 0, 1", ours, upstream)
	}
	fmt.Fprint(w, report("github.com/holdfast/holdfast/internal/overlay/mesh.(*Node).Stop()"))
	if ours, upstream := w.races(); ours != 1 || upstream != 1 {
		t.Fatalf("then a race in Holdfast's code: ours %d, upstream %d; want 1, 1", ours, upstream)
	}
}
