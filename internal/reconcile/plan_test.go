package reconcile_test

import (
	"slices"
	"testing"

	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/engine"
	"github.com/holdfast/holdfast/internal/reconcile"
)

func res(id string, attrs ...string) compile.Resource {
	m := map[string]string{}
	for i := 0; i+1 < len(attrs); i += 2 {
		m[attrs[i]] = attrs[i+1]
	}
	parsed, err := compile.ParseID(id)
	if err != nil {
		panic(err)
	}
	return compile.NewResource(parsed, nil, m)
}

func TestDiff(t *testing.T) {
	observed := []compile.Resource{
		res("network/a/z"),
		res("instance/a/keep", "vmid", "100"),
		res("instance/a/resize", "cpus", "1", "vmid", "101"),
		res("instance/a/gone-1"),
		res("instance/a/gone-2"),
	}
	desired := []compile.Resource{
		res("network/a/z"),
		res("instance/a/keep", "vmid", "100"),
		res("instance/a/resize", "cpus", "2", "vmid", "101"),
		res("instance/a/new", "vmid", "102"),
	}
	p := reconcile.Diff(desired, reconcile.Observed(observed))
	var got []string
	for _, c := range p.Changes {
		got = append(got, string(c.Action)+" "+c.ID.String())
	}
	// Creates and updates follow the desired (dependency) order; deletes come
	// last, newest first, so dependents go before what they depend on.
	want := []string{"update instance/a/resize", "create instance/a/new", "delete instance/a/gone-2", "delete instance/a/gone-1"}
	if !slices.Equal(got, want) {
		t.Errorf("changes = %q, want %q", got, want)
	}
	if s := p.Summary; s.Create != 1 || s.Update != 1 || s.Delete != 2 || s.Unchanged != 2 {
		t.Errorf("summary = %+v", s)
	}
	if f := p.Changes[0].Fields; !slices.Equal(f, []string{"cpus"}) {
		t.Errorf("update fields = %q, want [cpus]", f)
	}
}

func TestDiffOfEqualStatesIsEmpty(t *testing.T) {
	rs := []compile.Resource{res("network/a/z", "vlan", "10"), res("instance/a/x", "vmid", "100")}
	p := reconcile.Diff(rs, reconcile.Observed(rs))
	if len(p.Changes) != 0 || p.Summary.Unchanged != 2 {
		t.Errorf("plan of identical states = %+v, want no changes", p)
	}
}

func TestRemovedAttributeIsAnUpdate(t *testing.T) {
	p := reconcile.Diff([]compile.Resource{res("instance/a/x")}, reconcile.Observed([]compile.Resource{res("instance/a/x", "template", "deb")}))
	if len(p.Changes) != 1 || p.Changes[0].Action != reconcile.Update || !slices.Equal(p.Changes[0].Fields, []string{"template"}) {
		t.Errorf("plan = %+v, want one update of template", p)
	}
}

func TestDriftIsRepairedEvenWithEqualAttributes(t *testing.T) {
	r := res("network/a/z", "vlan", "10")
	obs := []engine.Observed{{Resource: r, Drift: []string{"bridge br10010 missing on node n2"}}}
	p := reconcile.Diff([]compile.Resource{r}, obs)
	if len(p.Changes) != 1 || p.Changes[0].Action != reconcile.Update || len(p.Changes[0].Drift) != 1 {
		t.Errorf("plan = %+v, want one repair", p)
	}
}
