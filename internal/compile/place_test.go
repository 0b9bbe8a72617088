package compile_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/spec"
)

const threeNodes = `
cloud: {name: t, domain: t.example}
sites:
  a: {engine: local, nodes: [n1, n2, n3]}
zones:
  srv: {type: service}
roles:
  app: {vmids: 100-199}
flavors:
  big: {cpus: 1, memory: 8G}
  small: {cpus: 1, memory: 1G}
`

func compileWith(t *testing.T, instances string, prev compile.Allocations, opts compile.Options) (*compile.State, compile.Allocations, spec.Diagnostics) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "cloud.yaml"), []byte(threeNodes+instances), 0o644); err != nil {
		t.Fatal(err)
	}
	s, diags := spec.Check(dir)
	if diags.HasErrors() {
		t.Fatal(diags.Err())
	}
	return compile.CompileWith(s, prev, opts)
}

// Members of a spread group land on distinct nodes, wherever the others go.
func TestSpreadNeverSharesANode(t *testing.T) {
	st, _, diags := compileWith(t, `
instances:
  pg-1: {role: app, zone: srv, spread: pg}
  pg-2: {role: app, zone: srv, spread: pg}
  pg-3: {role: app, zone: srv, spread: pg, node: n1}
  web:  {role: app, zone: srv, node: n2}
  web2: {role: app, zone: srv, node: n2}
`, compile.Allocations{}, compile.Options{})
	if diags.HasErrors() {
		t.Fatal(diags.Err())
	}
	nodes := map[string]string{}
	for _, name := range []string{"pg-1", "pg-2", "pg-3"} {
		n := instance(t, st, name).Node
		if other, dup := nodes[n]; dup {
			t.Errorf("%s and %s share %s", name, other, n)
		}
		nodes[n] = name
	}
	if !instance(t, st, "pg-3").Pinned || instance(t, st, "pg-1").Pinned {
		t.Error("pinned is not what the spec says")
	}
}

// With free memory reported, new instances go where the most is left,
// counting what the same compile placed before them.
func TestPlacementByFreeMemory(t *testing.T) {
	free := map[string]map[string]int64{"a": {"n1": 4 << 10, "n2": 20 << 10, "n3": 12 << 10}}
	st, _, _ := compileWith(t, `
instances:
  a1: {role: app, zone: srv, flavor: big}
  a2: {role: app, zone: srv, flavor: big}
  a3: {role: app, zone: srv, flavor: small}
`, compile.Allocations{}, compile.Options{Free: free})
	// n2 has 20 GiB: a1 (8) leaves 12, tying n3; a2 goes to the node with
	// fewer instances (n3) leaving 4; a3 goes to n2 (12 left).
	for name, want := range map[string]string{"a1": "n2", "a2": "n3", "a3": "n2"} {
		if got := instance(t, st, name).Node; got != want {
			t.Errorf("%s on %s, want %s", name, got, want)
		}
	}
}

// VMIDs others hold are never allocated; an allocation whose guest was
// never made moves off a VMID taken since; an explicit taken VMID is an
// error naming the holder.
func TestTakenVMIDs(t *testing.T) {
	st, alloc, _ := compileWith(t, `
instances:
  a: {role: app, zone: srv}
  b: {role: app, zone: srv}
`, compile.Allocations{}, compile.Options{Taken: map[int]string{100: "guest x", 101: "guest y"}})
	if a, b := instance(t, st, "a").VMID, instance(t, st, "b").VMID; a != 102 || b != 103 {
		t.Errorf("VMIDs %d, %d; want 102, 103", a, b)
	}
	st, _, _ = compileWith(t, `
instances:
  a: {role: app, zone: srv}
  b: {role: app, zone: srv}
`, alloc, compile.Options{Taken: map[int]string{103: "guest z"}})
	if a, b := instance(t, st, "a").VMID, instance(t, st, "b").VMID; a != 102 || b != 100 {
		t.Errorf("VMIDs %d, %d; want 102 kept and b moved to 100", a, b)
	}
	_, _, diags := compileWith(t, `
instances:
  a: {role: app, zone: srv, vmid: 150}
`, compile.Allocations{}, compile.Options{Taken: map[int]string{150: `guest "legacy" on n1`}})
	if err := diags.Err(); err == nil || !strings.Contains(err.Error(), `VMID 150 is taken on the cluster by guest "legacy" on n1`) {
		t.Errorf("explicit taken VMID: %v", err)
	}
}
