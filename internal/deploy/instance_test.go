package deploy_test

import (
	"context"
	"errors"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/deploy"
	"github.com/holdfast/holdfast/internal/engine"
)

// ledger is an engine that only keeps a list of what it was asked to
// make, in memory: it offers none of the optional operations (exec, ping,
// internet vantage), which is what the tests below need of it.
type ledger struct{}

var (
	ledgerMu   sync.Mutex
	ledgerMade = map[compile.ID]compile.Resource{}
)

func (ledger) Observe(context.Context) ([]engine.Observed, error) {
	ledgerMu.Lock()
	defer ledgerMu.Unlock()
	out := make([]engine.Observed, 0, len(ledgerMade))
	for _, r := range ledgerMade {
		out = append(out, engine.Observed{Resource: r})
	}
	return out, nil
}

func (ledger) Ensure(_ context.Context, r compile.Resource) error {
	ledgerMu.Lock()
	defer ledgerMu.Unlock()
	ledgerMade[r.ID] = r
	return nil
}

func (ledger) Delete(_ context.Context, r compile.Resource) error {
	ledgerMu.Lock()
	defer ledgerMu.Unlock()
	delete(ledgerMade, r.ID)
	return nil
}

func (ledger) Close() error { return nil }

func init() {
	engine.Register("ledger", engine.Driver{New: func(engine.Config) (engine.Engine, error) { return ledger{}, nil }})
}

// TestOptionalOperationsAskTheEngine: exec and ping find an instance by
// its name in the state of the clouds applied, and ask its site's engine;
// an engine that does not offer them answers so, naming itself.
func TestOptionalOperationsAskTheEngine(t *testing.T) {
	ctx := context.Background()
	dir, stateDir := t.TempDir(), t.TempDir()
	path := filepath.Join(dir, "spec.yaml")
	if err := os.WriteFile(path, []byte(`cloud: {name: books, domain: books.example}
sites: {s: {engine: ledger, nodes: [n1]}}
zones: {srv: {type: service, sub-id: 1}}
roles: {app: {vmids: 2000-2099}}
instances: {web: {zone: srv, role: app}}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	c, diags, err := deploy.Open(path, deploy.Options{StateDir: stateDir})
	if err != nil {
		t.Fatal(err, diags)
	}
	p, err := c.Plan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Apply(ctx, p); err != nil {
		t.Fatal(err)
	}
	if line, ok := c.FromInternet("web", "true"); ok {
		t.Errorf("the ledger engine plays no internet, yet FromInternet says %q", line)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}

	in, err := deploy.FindInstance(ctx, stateDir, "", "", "web")
	if err != nil {
		t.Fatal(err)
	}
	if in.Cloud != "books" || in.Site != "s" || in.Engine != "ledger" {
		t.Errorf("found %+v, want web of cloud books at site s on engine ledger", in)
	}
	_, err = in.Exec(ctx, []string{"true"}, strings.NewReader(""), io.Discard, io.Discard)
	if !errors.Is(err, deploy.ErrNotOffered) || !strings.Contains(err.Error(), "engine ledger (site s) cannot run commands") {
		t.Errorf("exec on an engine without it: %v", err)
	}
	err = in.Ping(ctx, netip.MustParseAddr("10.2.1.1"), time.Second)
	if !errors.Is(err, deploy.ErrNotOffered) || !strings.Contains(err.Error(), "engine ledger (site s) cannot ping") {
		t.Errorf("ping on an engine without it: %v", err)
	}

	if _, err := deploy.FindInstance(ctx, stateDir, "", "", "db"); err == nil || !strings.Contains(err.Error(), `no instance "db"`) {
		t.Errorf("an instance that was never made: %v", err)
	}
	if _, err := deploy.FindInstance(ctx, stateDir, "", "other", "web"); err == nil || !strings.Contains(err.Error(), `no instance "web" in cloud other`) {
		t.Errorf("an instance of another cloud: %v", err)
	}
}
