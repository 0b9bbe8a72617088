package compile_test

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/reconcile"
	"github.com/holdfast/holdfast/internal/spec"
	"github.com/holdfast/holdfast/internal/specgen"
)

func generated(b *testing.B, instances int) []byte {
	b.Helper()
	var buf bytes.Buffer
	if err := specgen.Write(&buf, specgen.Params{Instances: instances, Zones: 100, Sites: 3, Nodes: 3}); err != nil {
		b.Fatal(err)
	}
	return buf.Bytes()
}

// BenchmarkCompilePlan measures what `holdfast plan` does once the spec is
// read: validate, compile, diff against (empty) observed state.
func BenchmarkCompilePlan(b *testing.B) {
	for _, n := range []int{1000, 10000, 50000} {
		data := generated(b, n)
		b.Run(fmt.Sprintf("instances=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				s, diags := spec.Parse("gen.yaml", data)
				if diags.HasErrors() {
					b.Fatal(diags.Err())
				}
				b.StartTimer()
				if d := spec.Validate(s); d.HasErrors() {
					b.Fatal(d.Err())
				}
				st, _, d := compile.Compile(s, compile.Allocations{})
				if d.HasErrors() {
					b.Fatal(d.Err())
				}
				reconcile.Diff(st.Resources, nil)
			}
		})
	}
}

// BenchmarkLoadCompilePlan adds reading the YAML: the whole of `holdfast plan`.
func BenchmarkLoadCompilePlan(b *testing.B) {
	for _, n := range []int{1000, 10000, 50000} {
		data := generated(b, n)
		b.Run(fmt.Sprintf("instances=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				s, diags := spec.Parse("gen.yaml", data)
				diags = append(diags, spec.Validate(s)...)
				if diags.HasErrors() {
					b.Fatal(diags.Err())
				}
				st, _, d := compile.Compile(s, compile.Allocations{})
				if d.HasErrors() {
					b.Fatal(d.Err())
				}
				reconcile.Diff(st.Resources, nil)
			}
		})
	}
}
