package agent_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/agent"
	"github.com/holdfast/holdfast/internal/compile"
	_ "github.com/holdfast/holdfast/internal/engine/engines" // the spec's engine
	"github.com/holdfast/holdfast/internal/engine/enginetest"
	"github.com/holdfast/holdfast/internal/guest"
)

const spec = `
cloud: {name: agt, domain: example}
sites: {s: {engine: local, nodes: [n1]}}
zones: {app: {type: service, sub-id: 1, cidr: 10.9.1.0/24}}
roles: {r: {vmids: 100-199}}
instances:
  web: {role: r, zone: app, ports: [80]}
`

// The agent asks for its configuration and reports what it applied; when
// its token is rotated it is refused, reads its token file again, and
// reports again once the new token is there. (Its overlay needs root and
// is proven with real tunnels in internal/deploy.)
func TestAgentReportsAndFollowsARotatedToken(t *testing.T) {
	st := enginetest.Compile(t, spec)
	stateDir := t.TempDir()
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	applied := filepath.Join(stateDir, "applied.json")
	if err := os.WriteFile(applied, b, 0o600); err != nil {
		t.Fatal(err)
	}
	creds, err := guest.OpenCredentials(stateDir, st.Cloud)
	if err != nil {
		t.Fatal(err)
	}
	reports := guest.NewReports(stateDir, st.Cloud)
	srv := &guest.Server{StateDir: stateDir, Cloud: st.Cloud, Credentials: creds, State: guest.FileState(applied), Reports: reports}
	sock, err := os.MkdirTemp("", "hfagent") // a socket path has 107 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sock) })
	ln, err := guest.ListenSocket(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()

	id := compile.InstanceID("s", "web")
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(creds.Token(id)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	settings := guest.AgentSettings{Server: "unix://" + ln.Addr().String(), TokenFile: tokenFile,
		StateDir: filepath.Join(dir, "state"), Interval: guest.Duration(50 * time.Millisecond)}
	ran := make(chan error, 1)
	go func() { ran <- agent.Run(ctx, settings, "test", slog.New(slog.DiscardHandler)) }()
	t.Cleanup(func() {
		cancel()
		if err := <-ran; err != nil {
			t.Errorf("agent: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("guest service: %v", err)
		}
	})

	want, err := guest.Build(stateDir, st, id, nil)
	if err != nil {
		t.Fatal(err)
	}
	reported := func(after time.Time) guest.Report {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			rep, ok, err := reports.Get(id)
			if err != nil {
				t.Fatal(err)
			}
			if ok && rep.Received.After(after) && rep.OK() {
				return rep
			}
			if time.Now().After(deadline) {
				t.Fatalf("no good report since %s; last %+v", after, rep)
			}
			time.Sleep(20 * time.Millisecond) // polling the report file
		}
	}
	rep := reported(time.Time{})
	if rep.Config != want.Version() || rep.Version != "test" {
		t.Fatalf("report %+v, want config %s", rep.Health, want.Version())
	}

	if err := creds.Rotate(id); err != nil {
		t.Fatal(err)
	}
	rotated := time.Now()
	if err := os.WriteFile(tokenFile, []byte(creds.Token(id)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	reported(rotated)
}
