package compile_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/spec"
)

// TestInvalidSpecIsRefused: a spec whose loading found errors (here an
// engine no binary has) is refused with a diagnostic, never compiled
// half-validated, which would read defaults that were never filled in.
func TestInvalidSpecIsRefused(t *testing.T) {
	file := filepath.Join(t.TempDir(), "cloud.yaml")
	if err := os.WriteFile(file, []byte(`cloud: {name: demo, domain: demo.net}
sites: {s: {engine: no-such-engine, nodes: [n1]}}
zones: {srv: {type: service, sub-id: 1}}
roles: {app: {vmids: 2000-2099}}
flavors: {small: {cpus: 1, memory: 512M}}
templates: {base: {image: rootfs}}
instances: {web: {role: app, site: s, zone: srv, flavor: small, template: base}}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	s, diags := spec.Load(file)
	if !diags.HasErrors() {
		t.Fatal("a site of an unknown engine loaded without errors")
	}
	st, _, diags := compile.Compile(s, compile.Allocations{})
	if !diags.HasErrors() || !strings.Contains(diags.Err().Error(), file+":1:1") {
		t.Errorf("compiling a spec with errors: %v, want an error at %s:1:1", diags.Err(), file)
	}
	if st == nil || len(st.Resources) != 0 {
		t.Errorf("compiling a spec with errors gave %+v, want an empty state", st)
	}
}
