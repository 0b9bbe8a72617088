package enginetest

import (
	"os"
	"path/filepath"

	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/spec"
)

// Compile checks and compiles a spec given as text, as holdfast does a
// spec file, and fails t on any error: what a harness's Desired returns
// for a small cloud written in its test.
func Compile(t T, text string) *compile.State {
	t.Helper()
	file := filepath.Join(t.TempDir(), "cloud.yaml")
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatalf("%v", err)
	}
	s, diags := spec.Check(file)
	if diags.HasErrors() {
		t.Fatalf("%v", diags.Err())
	}
	st, _, diags := compile.Compile(s, compile.Allocations{})
	if diags.HasErrors() {
		t.Fatalf("%v", diags.Err())
	}
	return st
}
