// Package reconcile compares desired against observed state and says what
// must change. Engines act on the plan; this package decides it.
package reconcile

import (
	"slices"

	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/engine"
)

// Action is what a change does to a resource.
type Action string

const (
	Create Action = "create"
	Update Action = "update"
	Delete Action = "delete"
)

// Change is one step of a plan.
type Change struct {
	Action Action            `json:"action"`
	ID     compile.ID        `json:"id"`
	Kind   string            `json:"kind"`
	Site   string            `json:"site,omitempty"`
	Before map[string]string `json:"before,omitempty"`
	After  map[string]string `json:"after,omitempty"`
	// Fields lists the attributes an update changes, sorted.
	Fields []string `json:"fields,omitempty"`
	// Drift says what was found missing or changed behind Holdfast's back;
	// an update with drift repairs exactly that.
	Drift []string `json:"drift,omitempty"`
	// Deps are the resources this one depends on (desired, or as made).
	Deps []compile.ID `json:"deps,omitempty"`
}

// Plan is an ordered list of changes: creates and updates in dependency
// order, then deletes in reverse dependency order.
type Plan struct {
	Changes []Change `json:"changes"`
	Summary Summary  `json:"summary"`
}

// Summary counts a plan's changes.
type Summary struct {
	Create    int `json:"create"`
	Update    int `json:"update"`
	Delete    int `json:"delete"`
	Unchanged int `json:"unchanged"`
}

// Diff plans the changes that turn observed into desired. desired must be
// in dependency order (as compile produces it); observed is in the order it
// was made, so deleting it backwards removes dependents first. An observed
// resource with drift is updated even when its attributes match.
func Diff(desired []compile.Resource, observed []engine.Observed) Plan {
	have := make(map[compile.ID]*engine.Observed, len(observed))
	for i := range observed {
		have[observed[i].ID] = &observed[i]
	}
	want := make(map[compile.ID]bool, len(desired))
	p := Plan{Changes: []Change{}}
	for _, d := range desired {
		want[d.ID] = true
		o, ok := have[d.ID]
		if !ok {
			p.Changes = append(p.Changes, Change{Action: Create, ID: d.ID, Kind: d.Kind, Site: d.Site, After: d.Attrs, Deps: d.Deps})
			p.Summary.Create++
			continue
		}
		fields := changedFields(o.Attrs, d.Attrs)
		if len(fields) > 0 || len(o.Drift) > 0 {
			p.Changes = append(p.Changes, Change{Action: Update, ID: d.ID, Kind: d.Kind, Site: d.Site, Before: o.Attrs, After: d.Attrs, Fields: fields, Drift: o.Drift, Deps: d.Deps})
			p.Summary.Update++
			continue
		}
		p.Summary.Unchanged++
	}
	for i := len(observed) - 1; i >= 0; i-- {
		o := observed[i]
		if !want[o.ID] {
			p.Changes = append(p.Changes, Change{Action: Delete, ID: o.ID, Kind: o.Kind, Site: o.Site, Before: o.Attrs, Deps: o.Deps})
			p.Summary.Delete++
		}
	}
	return p
}

// Observed turns resources as made into observations without drift, for
// callers that have no engine to ask.
func Observed(rs []compile.Resource) []engine.Observed {
	out := make([]engine.Observed, len(rs))
	for i, r := range rs {
		out[i] = engine.Observed{Resource: r}
	}
	return out
}

func changedFields(before, after map[string]string) []string {
	var fields []string
	for k, v := range after {
		if b, ok := before[k]; !ok || b != v {
			fields = append(fields, k)
		}
	}
	for k := range before {
		if _, ok := after[k]; !ok {
			fields = append(fields, k)
		}
	}
	slices.Sort(fields)
	return fields
}
