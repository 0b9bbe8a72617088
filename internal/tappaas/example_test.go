package tappaas_test

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/holdfast/holdfast/internal/spec"
	"github.com/holdfast/holdfast/internal/tappaas"
)

// examples/tappaas is generated from the fixture; this keeps it so.
func TestExampleIsTheImportOfTheFixture(t *testing.T) {
	fixtures := filepath.Join("testdata", "tappaas")
	modules, err := filepath.Glob(filepath.Join(fixtures, "modules", "*.json"))
	if err != nil || len(modules) == 0 {
		t.Fatalf("no TAPPaaS module fixtures under %s: %v", fixtures, err)
	}
	s, _, err := tappaas.Import(filepath.Join(fixtures, "zones.json"), modules, tappaas.Options{Engine: "local"})
	if err != nil {
		t.Fatal(err)
	}
	files, err := spec.Encode(s)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join("..", "..", "examples", "tappaas")
	have, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	var names []string
	for name, want := range files {
		names = append(names, name)
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("examples/tappaas/%s differs from a fresh import (err %v); regenerate it with the command in examples/tappaas/README.md", name, err)
		}
	}
	for _, h := range have {
		if !slices.Contains(names, filepath.Base(h)) {
			t.Errorf("examples/tappaas/%s is not part of the import", filepath.Base(h))
		}
	}
}
