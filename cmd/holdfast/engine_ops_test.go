package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/deploy"
	"github.com/holdfast/holdfast/internal/engine"
)

// inert is an engine that makes nothing and offers no optional operation.
type inert struct{}

func (inert) Observe(context.Context) ([]engine.Observed, error) { return nil, nil }
func (inert) Ensure(context.Context, compile.Resource) error     { return nil }
func (inert) Delete(context.Context, compile.Resource) error     { return nil }
func (inert) Close() error                                       { return nil }

func init() {
	engine.Register("inert", engine.Driver{New: func(engine.Config) (engine.Engine, error) { return inert{}, nil }})
}

// TestExecAndPingNameTheEngine: exec and ping on an instance whose engine
// cannot do them say so, naming the engine, instead of failing on a path.
func TestExecAndPingNameTheEngine(t *testing.T) {
	dir, state := t.TempDir(), t.TempDir()
	path := filepath.Join(dir, "spec.yaml")
	if err := os.WriteFile(path, []byte(`cloud: {name: still, domain: still.example}
sites: {s: {engine: inert, nodes: [n1]}}
zones: {srv: {type: service, sub-id: 1}}
roles: {app: {vmids: 2000-2099}}
instances: {web: {zone: srv, role: app}}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	c, diags, err := deploy.Open(path, deploy.Options{StateDir: state})
	if err != nil {
		t.Fatal(err, diags)
	}
	p, err := c.Plan(context.Background())
	if err == nil {
		_, err = c.Apply(context.Background(), p)
	}
	if cerr := c.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"exec", "web", "--state-dir", state, "--", "true"},
		{"ping", "web", "10.2.1.1", "--state-dir", state, "-c", "1"},
	} {
		_, _, err := cli(t, "", args...)
		if err == nil || !strings.Contains(err.Error(), "instance web: engine inert (site s) cannot ") {
			t.Errorf("holdfast %s: %v", strings.Join(args, " "), err)
		}
	}
}
