package engine_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/engine"
	"github.com/holdfast/holdfast/internal/spec"
)

// A third engine, as a new package would write it: its site block, the
// settings it compiles to, and its factory. Nothing outside this file
// knows it; Register is all it takes.

type kilnBlock struct {
	spec.Meta `yaml:"-"`
	Kiln      string `yaml:"kiln" required:"true" doc:"The kiln's address."`
	Heat      *int   `yaml:"heat" min:"1" max:"9" doc:"How hot (default 5)."`
	Glaze     string `yaml:"glaze" enum:"matte,gloss" doc:"Finish (default matte)."`
}

type kilnSettings struct {
	Kiln  string `json:"kiln"`
	Heat  int    `json:"heat"`
	Glaze string `json:"glaze"`
}

type kilnSpec struct{}

func (kilnSpec) NewBlock() any { return &kilnBlock{} }

func (kilnSpec) CheckSite(_ *spec.Spec, name string, site *spec.Site, diags *spec.Diagnostics) {
	b, _ := site.Block.(*kilnBlock)
	switch {
	case b == nil:
		diags.Errorf(site.FieldPos("engine"), "site %q: engine kiln needs a kiln block", name)
	case !strings.HasPrefix(b.Kiln, "kiln://"):
		diags.Errorf(b.FieldPos("kiln"), "site %q: kiln %q is not a kiln:// address", name, b.Kiln)
	}
}

func (kilnSpec) Settings(_ *spec.Spec, _ string, site *spec.Site) any {
	b := site.Block.(*kilnBlock)
	out := &kilnSettings{Kiln: b.Kiln, Heat: 5, Glaze: "matte"}
	if b.Heat != nil {
		out.Heat = *b.Heat
	}
	if b.Glaze != "" {
		out.Glaze = b.Glaze
	}
	return out
}

func (kilnSpec) NewSettings() any { return &kilnSettings{} }

func (kilnSpec) SiteAttrs(settings any) map[string]string {
	return map[string]string{"kiln": settings.(*kilnSettings).Kiln}
}

// kiln is the engine itself; it makes nothing, the test is about its
// configuration.
type kiln struct{ cfg engine.Config }

func (*kiln) Observe(context.Context) ([]engine.Observed, error) { return nil, nil }
func (*kiln) Ensure(context.Context, compile.Resource) error     { return nil }
func (*kiln) Delete(context.Context, compile.Resource) error     { return nil }
func (*kiln) Close() error                                       { return nil }
func newKiln(cfg engine.Config) (engine.Engine, error)           { return &kiln{cfg: cfg}, nil }

var _ interface {
	Observe(context.Context) ([]engine.Observed, error)
} = (*kiln)(nil)

func init() {
	engine.Register("kiln", engine.Driver{New: newKiln, Site: kilnSpec{}, Compile: kilnSpec{}, Shared: true})
}

func writeSpec(t *testing.T, yaml string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "spec.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestANewEngineIsOnePackage: an engine registered from its own package
// gets its site block decoded and checked with positions, compiled into
// its settings (in the state's JSON under its name, and in the site
// resource), and is created by name, with no other package changed.
func TestANewEngineIsOnePackage(t *testing.T) {
	const cloud = "cloud: {name: pots, domain: pots.example}\n"

	bad := writeSpec(t, cloud+`sites:
  s:
    engine: kiln
    nodes: [n1]
    kiln: {kiln: 'oven', heat: 12, glaze: shiny, colour: red}
`)
	_, _, _, diags := compile.File(bad, compile.Allocations{})
	var got []string
	for _, d := range diags {
		d.Pos.File = filepath.Base(d.Pos.File)
		got = append(got, d.String())
	}
	want := []string{
		`spec.yaml:6:32: site "s".kiln.heat: 12 is out of range 1-9`,
		`spec.yaml:6:43: site "s".kiln.glaze: "shiny" is not one of matte, gloss`,
		`spec.yaml:6:50: site "s".kiln: unknown field "colour" (known fields: kiln, heat, glaze)`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("a bad kiln block:\ngot:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// The engine's own check runs once the block decodes.
	_, _, _, diags = compile.File(writeSpec(t, cloud+"sites: {s: {engine: kiln, nodes: [n1], kiln: {kiln: oven}}}\n"), compile.Allocations{})
	if len(diags) != 1 || !strings.HasSuffix(diags[0].String(), `spec.yaml:2:53: site "s": kiln "oven" is not a kiln:// address`) {
		t.Errorf("the engine's check: %v", diags)
	}

	_, st, _, diags := compile.File(writeSpec(t, cloud+"sites: {s: {engine: kiln, nodes: [n1], kiln: {kiln: 'kiln://k1', glaze: Gloss}}}\n"), compile.Allocations{})
	if diags.HasErrors() {
		t.Fatalf("a good kiln block: %v", diags)
	}
	settings, ok := st.Sites[0].Settings.(*kilnSettings)
	if !ok || *settings != (kilnSettings{Kiln: "kiln://k1", Heat: 5, Glaze: "gloss"}) {
		t.Errorf("settings = %#v, want the block with the engine's defaults", st.Sites[0].Settings)
	}
	b, err := json.Marshal(st.Sites[0])
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"name":"s","engine":"kiln","nodes":["n1"],"kiln":{"kiln":"kiln://k1","heat":5,"glaze":"gloss"}}`; string(b) != want {
		t.Errorf("site JSON:\n got %s\nwant %s", b, want)
	}
	var back compile.Site
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if got, ok := back.Settings.(*kilnSettings); !ok || *got != *settings {
		t.Errorf("settings read back from the site's JSON = %#v, want %#v", back.Settings, settings)
	}
	if r := st.Resources[0]; r.Kind != compile.ResSite || r.Attrs["kiln"] != "kiln://k1" || r.Attrs["engine"] != "kiln" {
		t.Errorf("site resource %+v lacks the engine's attributes", r)
	}

	e, err := engine.New("kiln", engine.Config{Cloud: st.Cloud, Sites: []string{"s"}, Desired: st})
	if err != nil {
		t.Fatal(err)
	}
	if k, ok := e.(*kiln); !ok || k.cfg.Desired.Sites[0].Settings != st.Sites[0].Settings {
		t.Errorf("engine.New gave %T without the compiled settings", e)
	}
	if !engine.Shared("kiln") || engine.Shared("no-such-engine") {
		t.Error("engine.Shared does not answer from the driver")
	}
	if !strings.Contains(string(spec.Schema()), `.kilnBlock"`) {
		t.Error("the spec's JSON schema does not describe the kiln block")
	}
}
