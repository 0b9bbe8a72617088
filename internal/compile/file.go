package compile

import "github.com/holdfast/holdfast/internal/spec"

// File loads, validates and compiles the spec at path (a file or a
// directory). The state is nil when the diagnostics hold errors; warnings
// come back either way.
func File(path string, prev Allocations) (*spec.Spec, *State, Allocations, spec.Diagnostics) {
	s, diags := spec.Check(path)
	if diags.HasErrors() {
		return s, nil, prev, diags
	}
	st, next, cd := Compile(s, prev)
	diags = append(diags, cd...)
	diags.Sort()
	if diags.HasErrors() {
		return s, nil, prev, diags
	}
	return s, st, next, diags
}
