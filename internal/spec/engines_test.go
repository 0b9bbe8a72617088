package spec_test

import (
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/spec"
)

// TestEngineBlocks: a site's block belongs to its engine (here the test
// engine "lab"): spec decodes it with the engine's type, so its errors
// point at the field like every other, and lets the engine check it.
func TestEngineBlocks(t *testing.T) {
	runDiagCases(t, []diagCase{
		{
			name: "a good block",
			yaml: `cloud: {name: demo, domain: demo.net}
sites:
  a: {engine: lab, nodes: [n1, n2], lab: {endpoint: here, mode: SLOW, slots: 2, hosts: [n2]}}
`,
		},
		{
			name: "the block's own fields are checked where they are written",
			yaml: `cloud: {name: demo, domain: demo.net}
sites:
  a:
    engine: lab
    nodes: [n1]
    lab: {mode: quick, slots: 9, colour: red}
`,
			want: []string{
				`spec.yaml:6:10: site "a".lab: missing required field "endpoint"`,
				`spec.yaml:6:17: site "a".lab.mode: "quick" is not one of fast, slow`,
				`spec.yaml:6:31: site "a".lab.slots: 9 is out of range 1-8`,
				`spec.yaml:6:34: site "a".lab: unknown field "colour"`,
			},
		},
		{
			name: "the engine checks the site",
			yaml: `cloud: {name: demo, domain: demo.net}
sites:
  a: {engine: lab, nodes: [n1]}
  b: {lab: {endpoint: x, hosts: [n9]}, engine: lab, nodes: [n1]}
  c: {engine: local, nodes: [n1], lab: {endpoint: x}}
`,
			want: []string{
				`spec.yaml:3:15: site "a": engine lab needs a lab block`,
				`spec.yaml:4:33: site "b": lab host "n9" is not a node of the site`,
				`spec.yaml:5:40: site "c": lab is for sites with engine: lab (this one has engine: local)`,
			},
		},
		{
			name: "unknown engines and blocks",
			yaml: `cloud: {name: demo, domain: demo.net}
sites:
  a: {engine: xen, nodes: [n1], xen: {}}
  b: {engine: local, nodes: [n1], local: {x: 1}}
`,
			want: []string{
				`spec.yaml:3:15: site "a".engine: "xen" is not one of ` + strings.Join(spec.EngineNames(), ", "),
				`spec.yaml:3:33: site "a": unknown field "xen"`,
				`spec.yaml:4:42: site "b": engine local takes no local block`,
			},
		},
	})
}

// TestEngineBlockRoundTrip: a site's block is written back under its
// engine's name and reads back the same.
func TestEngineBlockRoundTrip(t *testing.T) {
	s, _ := mustLoad(t, `cloud: {name: demo, domain: demo.net}
sites:
  a: {engine: lab, nodes: [n1], lab: {endpoint: here, hosts: [n1]}, description: first}
`)
	b, err := spec.EncodeFile(s)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "lab:\n      endpoint: here\n      hosts: [n1]\n    description: first") {
		t.Errorf("the block is not written under the engine's name, before the description:\n%s", b)
	}
	back, diags := spec.Parse("back.yaml", b)
	if diags.HasErrors() {
		t.Fatalf("reading back: %v", diags)
	}
	blk, ok := back.Sites["a"].Block.(*spec.LabBlock)
	if !ok || blk.Endpoint != "here" || len(blk.Hosts) != 1 {
		t.Errorf("block read back as %#v", back.Sites["a"].Block)
	}
}
