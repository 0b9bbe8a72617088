package overlay_test

import (
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/compile"
	_ "github.com/holdfast/holdfast/internal/engine/engines" // the examples' sites name engines
	"github.com/holdfast/holdfast/internal/overlay"
	"github.com/holdfast/holdfast/internal/overlay/mesh"
	"github.com/holdfast/holdfast/internal/overlay/overlaytest"
	"github.com/holdfast/holdfast/internal/spec"
)

// TestPlanArvandor: every member of the compiled Arvandor overlay gets a
// certificate from Holdfast's CA with its name, address and groups, and a
// config that Nebula itself accepts with that certificate, whose inbound
// rules are exactly the groups that may reach it.
func TestPlanArvandor(t *testing.T) {
	s, diags := spec.Check(filepath.Join("..", "..", "examples", "arvandor"))
	if diags.HasErrors() {
		t.Fatal(diags.Err())
	}
	st, _, diags := compile.Compile(s, compile.Allocations{})
	if diags.HasErrors() {
		t.Fatal(diags.Err())
	}
	if st.Overlay == nil || len(st.Overlay.Members) == 0 {
		t.Fatal("arvandor compiles without overlay members")
	}
	ca := overlaytest.NewCA(t, "arvandor overlay CA")
	lighthouses := 0
	for _, cm := range st.Overlay.Members {
		m, n, err := overlay.Plan(st.Overlay, cm.Name)
		if err != nil {
			t.Fatal(err)
		}
		if m.Name != cm.Name || m.IP.String() != cm.OverlayIP || !slices.Equal(m.Groups, cm.Groups) {
			t.Errorf("%s: member %+v, compiled %+v", cm.Name, m, cm)
		}
		if n.AmLighthouse {
			lighthouses++
		}
		var from []string
		for _, r := range n.Inbound {
			from = append(from, r.Group+r.Host)
		}
		var want []string
		for _, r := range cm.Inbound {
			want = append(want, r.Group+r.Host)
		}
		if !slices.Equal(from, want) {
			t.Errorf("%s: inbound from %v, compiled %v", cm.Name, from, want)
		}
		h, err := ca.Issue(m, overlay.IssueOptions{Now: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		n.PKI = overlay.InlinePKI(ca, h, nil)
		cfg, err := overlay.Config(n)
		if err != nil {
			t.Fatalf("%s: %v", cm.Name, err)
		}
		if err := mesh.Check(cfg); err != nil {
			t.Errorf("%s: Nebula refuses the rendered config: %v", cm.Name, err)
		}
	}
	if lighthouses != len(st.Overlay.Lighthouses) {
		t.Errorf("%d members are lighthouses, the overlay has %d", lighthouses, len(st.Overlay.Lighthouses))
	}
	if _, _, err := overlay.Plan(st.Overlay, "no-such-instance"); err == nil {
		t.Error("Plan of an instance outside the overlay succeeded")
	}
}
