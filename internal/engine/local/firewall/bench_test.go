package firewall_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/engine/local/firewall"
	"github.com/holdfast/holdfast/internal/spec"
	"github.com/holdfast/holdfast/internal/specgen"
)

// ringSpec is a one-site cloud of n zones in a ring: each zone reaches the
// internet and the next zone, and has three instances, one of which opens
// a pinhole (port 443) to the previous zone.
func ringSpec(n int) string {
	var b strings.Builder
	b.WriteString("cloud: {name: ring, domain: ring.example}\nsites: {a: {engine: local, nodes: [n1]}}\nzones:\n")
	for i := range n {
		fmt.Fprintf(&b, "  z%d: {type: service, sub-id: %d, cidr: 10.%d.%d.0/24, access-to: [internet, z%d], pinhole-allowed-from: [z%d]}\n",
			i, i%100, 100+i/250, i%250, (i+1)%n, (i+n-1)%n)
	}
	fmt.Fprintf(&b, "roles: {app: {vmids: 1000-%d}}\ninstances:\n", 1000+3*n)
	for i := range n {
		fmt.Fprintf(&b, "  vm%da: {role: app, zone: z%d, ingress: [{from: z%d, ports: [443]}]}\n", i, i, (i+n-1)%n)
		fmt.Fprintf(&b, "  vm%db: {role: app, zone: z%d}\n  vm%dc: {role: app, zone: z%d}\n", i, i, i, i)
	}
	return b.String()
}

func ringInput(t testing.TB, n int) firewall.Input {
	t.Helper()
	return firewall.FromState(compileSpec(t, ringSpec(n)), "a", "wan0")
}

// specgenInput is the compile benchmark's cloud: 100 zones over 3 sites,
// with pinholes and egress rules on a fifth of its instances.
func specgenInput(b *testing.B, instances int) firewall.Input {
	var buf bytes.Buffer
	if err := specgen.Write(&buf, specgen.Params{Instances: instances, Zones: 100, Sites: 3, Nodes: 3}); err != nil {
		b.Fatal(err)
	}
	s, diags := spec.Parse("gen.yaml", buf.Bytes())
	if diags.HasErrors() {
		b.Fatal(diags.Err())
	}
	if d := spec.Validate(s); d.HasErrors() {
		b.Fatal(d.Err())
	}
	st, _, d := compile.Compile(s, compile.Allocations{})
	if d.HasErrors() {
		b.Fatal(d.Err())
	}
	return firewall.FromState(st, "site0", "wan0")
}

// TestRulesetGrowsLinearly: the rules and chains do not depend on the
// cloud; the set elements grow by the same amount for every zone with its
// instances and pinhole.
func TestRulesetGrowsLinearly(t *testing.T) {
	sizes := []int{10, 50, 100}
	var rules, elems, chains []int
	for _, n := range sizes {
		r, e, c, err := firewall.Stats(ringInput(t, n))
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%3d zones, %3d instances, %3d pinholes: %d rules, %d chains, %4d set elements", n, 3*n, n, r, c, e)
		rules, elems, chains = append(rules, r), append(elems, e), append(chains, c)
	}
	if rules[0] != rules[2] || chains[0] != chains[2] {
		t.Errorf("rules %v and chains %v change with the number of zones", rules, chains)
	}
	perZone := (elems[1] - elems[0]) / (sizes[1] - sizes[0])
	for i, n := range sizes {
		if want := elems[0] + perZone*(n-sizes[0]); elems[i] != want {
			t.Errorf("%d zones: %d set elements, want %d (%d per zone)", n, elems[i], want, perZone)
		}
	}
}

// BenchmarkBuild is the cost of deriving the ruleset (Stats, Verify and
// Apply all start with it).
func BenchmarkBuild(b *testing.B) {
	for _, n := range []int{10, 100} {
		in := ringInput(b, n)
		b.Run(fmt.Sprintf("ring/zones=%d", n), func(b *testing.B) {
			for b.Loop() {
				if _, _, _, err := firewall.Stats(in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	in := specgenInput(b, 10000)
	b.Run("specgen/zones=100/instances=10000", func(b *testing.B) {
		for b.Loop() {
			if _, _, _, err := firewall.Stats(in); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkApply replaces a site edge's table: one transaction.
func BenchmarkApply(b *testing.B) {
	requireRoot(b)
	run := func(name string, in firewall.Input) {
		r, e, c, err := firewall.Stats(in)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(name, func(b *testing.B) {
			ns := newNS(b, "bench")
			for b.Loop() {
				if err := firewall.Apply(ns, in); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(e), "elements")
			b.ReportMetric(float64(r), "rules")
			b.ReportMetric(float64(c), "chains")
		})
	}
	for _, n := range []int{10, 50, 100} {
		run(fmt.Sprintf("ring/zones=%d", n), ringInput(b, n))
	}
	run("specgen/zones=100/instances=10000", specgenInput(b, 10000))
}

// BenchmarkVerify reads a table back and compares it.
func BenchmarkVerify(b *testing.B) {
	requireRoot(b)
	in := specgenInput(b, 10000)
	ns := newNS(b, "bench")
	if err := firewall.Apply(ns, in); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if d, err := firewall.Verify(ns, in); err != nil || len(d) > 0 {
			b.Fatal(err, d)
		}
	}
}
