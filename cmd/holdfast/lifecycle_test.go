package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/testenv"
)

// TestMain gives the CLI tests a state directory of their own, so that
// they never see (or touch) a real cloud's state.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "holdfast-cli-test-")
	if err != nil {
		panic(err)
	}
	os.Setenv("HOLDFAST_STATE_DIR", dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// The commands a user runs, in order, on a real (local-engine) cloud:
// apply, plan (nothing to do), status (all ok), show (the stored
// identities), destroy.
func TestLifecycle(t *testing.T) {
	testenv.NeedRoot(t, "the local engine makes namespaces")
	p := writeSpec(t, strings.Replace(good, "cloud: {name: t,", fmt.Sprintf("cloud: {name: cli%d,", os.Getpid()%100000), 1))
	state := t.TempDir()
	t.Cleanup(func() { _, _, _ = run(t, "destroy", p, "--yes", "--state-dir", state) })
	if out, stderr, err := run(t, "apply", p, "--yes", "--state-dir", state); err != nil || !strings.Contains(out, "5 done, 0 failed") {
		t.Fatalf("apply: %v\n%s%s", err, out, stderr)
	}
	out, _, err := run(t, "plan", p, "-o", "json", "--state-dir", state)
	if err != nil {
		t.Fatal(err)
	}
	var plan struct{ Changes []any }
	if err := json.Unmarshal([]byte(out), &plan); err != nil || len(plan.Changes) != 0 {
		t.Errorf("plan after apply: %d changes (%v), want none:\n%s", len(plan.Changes), err, out)
	}
	if out, stderr, err := run(t, "status", p, "--state-dir", state); err != nil || strings.Count(out, " ok ") != 5 {
		t.Errorf("status: %v\n%s%s", err, out, stderr)
	}
	if out, _, err := run(t, "destroy", p, "--yes", "--state-dir", state); err != nil || !strings.Contains(out, "5 done") {
		t.Errorf("destroy: %v\n%s", err, out)
	}
	if out, _, _ := run(t, "status", p, "--state-dir", state); strings.Count(out, "missing") != 5 {
		t.Errorf("status after destroy should say everything is missing:\n%s", out)
	}
}
