package compile_test

import (
	"cmp"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/holdfast/holdfast/internal/compile"
)

// underlayFlowsWanted derives, from members' interfaces alone, which
// underlay flows the overlay needs: from every zone holding members'
// interfaces to each member's address there (or, when it has none there,
// to each of its addresses), unless traffic passes anyway (the same zone,
// not isolating its instances).
func underlayFlowsWanted(st *compile.State) []compile.Flow {
	zones := exZones(st)
	nics := map[string][]compile.NIC{}
	var from []string
	for _, in := range st.Instances {
		if in.OverlayIP == "" {
			continue
		}
		for _, nic := range in.NICs {
			if zones[nic.Zone].Present && nic.IP != "" {
				nics[in.Name] = append(nics[in.Name], nic)
				if !slices.Contains(from, nic.Zone) {
					from = append(from, nic.Zone)
				}
			}
		}
	}
	var want []compile.Flow
	port := strconv.Itoa(st.Overlay.Port)
	for _, m := range st.Overlay.Members {
		for _, zs := range from {
			for _, nic := range nics[m.Name] {
				hasHere := slices.ContainsFunc(nics[m.Name], func(n compile.NIC) bool { return n.Zone == zs })
				switch {
				case nic.Zone == zs && !zones[zs].IsolateInstances:
				case nic.Zone != zs && hasHere:
				default:
					want = append(want, compile.Flow{From: zs, To: m.Name, Proto: "udp", Ports: []string{port}, Kind: compile.KindUnderlay,
						FromCIDR: zones[zs].CIDR, ToCIDR: nic.IP + "/32", EnforcedBy: compile.EnforcedByZoneFirewall})
				}
			}
		}
	}
	slices.SortFunc(want, func(a, b compile.Flow) int {
		return cmp.Or(cmp.Compare(a.From, b.From), cmp.Compare(a.To, b.To), cmp.Compare(a.ToCIDR, b.ToCIDR))
	})
	return want
}

func underlayFlows(st *compile.State) []compile.Flow {
	var got []compile.Flow
	for _, f := range st.Flows {
		if f.Kind == compile.KindUnderlay {
			got = append(got, f)
		}
	}
	return got
}

// TestUnderlayFlowsArvandor: the provisioning bridge isolates its VMs, and
// is Nebula's underlay, so every member is reached there on UDP 4242 from
// the bridge, and by nothing else within it.
func TestUnderlayFlowsArvandor(t *testing.T) {
	_, st, _, diags := compile.File(filepath.Join(examplesDir, "arvandor"), compile.Allocations{})
	if diags.HasErrors() {
		t.Fatal(diagText(diags))
	}
	if z := exZones(st)["provisioning"]; !z.IsolateInstances {
		t.Fatalf("zone provisioning does not isolate its instances: %+v", z)
	}
	got := underlayFlows(st)
	if len(got) != len(st.Overlay.Members) || len(got) != 15 {
		t.Errorf("%d underlay flows, want one per member (%d, and 15 VMs)", len(got), len(st.Overlay.Members))
	}
	for _, f := range got {
		in := exInstance(t, st, f.To)
		if f.From != "provisioning" || f.FromCIDR != "192.168.100.0/24" || f.ToCIDR != in.IP+"/32" || f.Proto != "udp" || !slices.Equal(f.Ports, []string{"4242"}) {
			t.Errorf("flow %+v, want provisioning (192.168.100.0/24) -> %s/32 udp 4242", f, in.IP)
		}
	}
	if !slices.EqualFunc(got, underlayFlowsWanted(st), flowsEqual) {
		t.Errorf("underlay flows\n%v\nwant\n%v", got, underlayFlowsWanted(st))
	}
	// Nothing else passes between two VMs on the bridge but DNS to the
	// DNS server (TestDNSArvandor).
	for _, f := range st.Flows {
		if f.Kind != compile.KindUnderlay && f.Kind != compile.KindOverlay && f.Kind != compile.KindDNS && f.ToCIDR != "" && exContains(t, "192.168.100.0/24", firstAddr(f.ToCIDR)) {
			t.Errorf("flow %+v reaches into the bridge", f)
		}
	}
}

// TestUnderlayFlowsTasmanian: the mesh spans zones, which do not pass
// traffic to each other, so members are reached across zones on the
// overlay's port; within a zone (not isolating) no flow is needed.
func TestUnderlayFlowsTasmanian(t *testing.T) {
	_, st, _, diags := compile.File(filepath.Join(examplesDir, "tasmanian"), compile.Allocations{})
	if diags.HasErrors() {
		t.Fatal(diagText(diags))
	}
	got, want := underlayFlows(st), underlayFlowsWanted(st)
	if len(got) == 0 || !slices.EqualFunc(got, want, flowsEqual) {
		t.Errorf("underlay flows\n%v\nwant\n%v", got, want)
	}
	// The lighthouse is reached from the customers' zone.
	lh := exInstance(t, st, st.Overlay.Lighthouses[0].Instance)
	if !slices.ContainsFunc(got, func(f compile.Flow) bool {
		return f.From == "customer" && f.To == lh.Name && f.ToCIDR == lh.IP+"/32"
	}) {
		t.Errorf("no underlay flow from customer to the lighthouse %s at %s", lh.Name, lh.IP)
	}
	for _, f := range got {
		if z := exInstance(t, st, f.To); z.Zone == f.From && len(z.NICs) == 1 {
			t.Errorf("flow %+v within a zone that passes its traffic anyway", f)
		}
	}
}

func flowsEqual(a, b compile.Flow) bool {
	return a.From == b.From && a.To == b.To && a.Proto == b.Proto && slices.Equal(a.Ports, b.Ports) &&
		a.Kind == b.Kind && a.FromCIDR == b.FromCIDR && a.ToCIDR == b.ToCIDR && a.EnforcedBy == b.EnforcedBy
}

func firstAddr(cidr string) string {
	if i := len(cidr) - 3; i > 0 && cidr[i] == '/' {
		return cidr[:i]
	}
	return cidr
}
