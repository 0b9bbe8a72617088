package tappaas

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Report tells the operator what the import could not carry over and
// which decisions it took, so nothing is dropped silently.
type Report struct {
	// NotMapped lists input the spec has no place for, or that the spec
	// would reject; none of it is in the imported spec.
	NotMapped []Entry `json:"not-mapped"`
	// Notes records decisions: isolated zones detected, roles derived,
	// defaults applied.
	Notes []Entry `json:"notes"`
}

// Entry is one finding about one place in an input file.
type Entry struct {
	File   string `json:"file"`
	Path   string `json:"path"` // JSON path of the key, e.g. config.cluster:vm.bios; empty for the whole file
	Reason string `json:"reason"`
}

func (e Entry) String() string {
	if e.Path == "" {
		return e.File + ": " + e.Reason
	}
	return e.File + ": " + e.Path + ": " + e.Reason
}

// String renders one line per entry, the unmapped input first; note lines
// start with "note: " so the two can be told apart with grep.
func (r *Report) String() string {
	var b strings.Builder
	for _, e := range r.NotMapped {
		b.WriteString(e.String())
		b.WriteByte('\n')
	}
	for _, e := range r.Notes {
		b.WriteString("note: ")
		b.WriteString(e.String())
		b.WriteByte('\n')
	}
	return b.String()
}

func (r *Report) notMapped(file, path, format string, args ...any) {
	r.NotMapped = append(r.NotMapped, Entry{File: file, Path: path, Reason: fmt.Sprintf(format, args...)})
}

func (r *Report) note(file, path, format string, args ...any) {
	r.Notes = append(r.Notes, Entry{File: file, Path: path, Reason: fmt.Sprintf(format, args...)})
}

// sortByFile groups the entries by input file, in input order, keeping
// each file's entries in the order they were found: the import visits the
// files more than once (modules are read before dependencies are resolved).
func (r *Report) sortByFile(files []string) {
	rank := func(e Entry) int {
		if i := slices.Index(files, e.File); i >= 0 {
			return i
		}
		return len(files)
	}
	for _, es := range [][]Entry{r.NotMapped, r.Notes} {
		slices.SortStableFunc(es, func(a, b Entry) int { return cmp.Compare(rank(a), rank(b)) })
	}
}
