package local

import "github.com/holdfast/holdfast/internal/compile"

// SetStepFault makes every step on a resource fail as f says until the
// returned restore is called; for the conformance suite's fault properties.
func SetStepFault(f func(id compile.ID) error) (restore func()) {
	prev := injectedFault.Swap(&f)
	return func() { injectedFault.Store(prev) }
}
