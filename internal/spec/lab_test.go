package spec

import "slices"

// lab is an engine that exists only in spec's tests. It proves that a
// site block is its engine's own — decoded, checked, encoded and described
// in the schema through the registry — with nothing in spec knowing it.
func init() { RegisterEngine("lab", labEngine{}) }

// LabBlock is the lab engine's site block (lab: under a site).
type LabBlock struct {
	Meta     `yaml:"-"`
	Endpoint string   `yaml:"endpoint" required:"true" doc:"Where the lab is reached."`
	Mode     string   `yaml:"mode" enum:"fast,slow" doc:"How it runs (default fast)."`
	Slots    *int     `yaml:"slots" min:"1" max:"8" doc:"Tasks at once."`
	Hosts    []string `yaml:"hosts" doc:"Nodes of the site it runs on."`
}

type labEngine struct{}

func (labEngine) NewBlock() any { return &LabBlock{} }

func (labEngine) CheckSite(_ *Spec, name string, site *Site, diags *Diagnostics) {
	b, _ := site.Block.(*LabBlock)
	if b == nil {
		diags.Errorf(site.FieldPos("engine"), "site %q: engine lab needs a lab block", name)
		return
	}
	for _, h := range b.Hosts {
		if !slices.Contains(site.Nodes, h) {
			diags.Errorf(b.FieldPos("hosts"), "site %q: lab host %q is not a node of the site", name, h)
		}
	}
}
