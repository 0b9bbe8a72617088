package spec

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Pos is a place in a spec file. Line and Col are 1-based; zero means the
// position is unknown (for example a default applied by the compiler).
type Pos struct {
	File string
	Line int
	Col  int
}

func (p Pos) String() string {
	switch {
	case p.File == "":
		return "<spec>"
	case p.Line == 0:
		return p.File
	default:
		return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col)
	}
}

// Meta is embedded in every named or positioned spec object: where it was
// declared and where each of its fields was written, so that validation
// errors can point at the exact field.
type Meta struct {
	Name   string
	Pos    Pos
	fields map[string]Pos
}

// FieldPos returns where field (its YAML key) was written, or the object's
// own position when the field was not written.
func (m *Meta) FieldPos(field string) Pos {
	if p, ok := m.fields[field]; ok {
		return p
	}
	return m.Pos
}

// Has reports whether field was written in the file.
func (m *Meta) Has(field string) bool {
	_, ok := m.fields[field]
	return ok
}

func (m *Meta) setField(field string, p Pos) {
	if m.fields == nil {
		m.fields = make(map[string]Pos, 8)
	}
	m.fields[field] = p
}

// SetPos records where the object was declared; importers use it to point
// diagnostics at their own input files.
func (m *Meta) SetPos(p Pos) { m.Pos = p }

// Severity says whether a diagnostic stops the spec from being used.
type Severity int

const (
	Error Severity = iota
	Warning
)

// Diagnostic is one finding about a spec, at a position.
type Diagnostic struct {
	Pos      Pos
	Severity Severity
	Message  string
}

// objectRef matches the subject of a finding about one object:
// `zone "mgmt": ...` or `instance "web".ports[0]: ...`.
var objectRef = regexp.MustCompile(`^(cloud|site|zone|role|flavor|template|group|instance|route) "([^"]+)"[:.\[]`)

// Object names the spec object a finding is about — its kind (zone,
// instance, template, ...) and name — or returns empty strings when the
// finding is about no one object (a file, a section, the tenancy block).
// Every finding about an object begins with `<kind> "<name>"`, so a caller
// can set aside the objects a spec refuses: holdfast serve fails those of
// a tenant and converges the rest.
func (d Diagnostic) Object() (kind, name string) {
	m := objectRef.FindStringSubmatch(d.Message)
	if m == nil {
		return "", ""
	}
	return m[1], m[2]
}

func (d Diagnostic) String() string {
	if d.Severity == Warning {
		return fmt.Sprintf("%s: warning: %s", d.Pos, d.Message)
	}
	return fmt.Sprintf("%s: %s", d.Pos, d.Message)
}

// Diagnostics collects findings. As an error it is non-nil only through
// Err, which returns nil when there are only warnings.
type Diagnostics []Diagnostic

// Errorf adds an error at p.
func (ds *Diagnostics) Errorf(p Pos, format string, args ...any) {
	*ds = append(*ds, Diagnostic{Pos: p, Severity: Error, Message: fmt.Sprintf(format, args...)})
}

// Warnf adds a warning at p.
func (ds *Diagnostics) Warnf(p Pos, format string, args ...any) {
	*ds = append(*ds, Diagnostic{Pos: p, Severity: Warning, Message: fmt.Sprintf(format, args...)})
}

// HasErrors reports whether any diagnostic is an error.
func (ds Diagnostics) HasErrors() bool {
	return slices.ContainsFunc(ds, func(d Diagnostic) bool { return d.Severity == Error })
}

// Errors returns only the errors.
func (ds Diagnostics) Errors() Diagnostics {
	return slices.DeleteFunc(slices.Clone(ds), func(d Diagnostic) bool { return d.Severity != Error })
}

// Sort orders diagnostics by file, line and column, keeping the order of
// findings at the same place.
func (ds Diagnostics) Sort() {
	slices.SortStableFunc(ds, func(a, b Diagnostic) int {
		return cmp.Or(cmp.Compare(a.Pos.File, b.Pos.File), cmp.Compare(a.Pos.Line, b.Pos.Line), cmp.Compare(a.Pos.Col, b.Pos.Col))
	})
}

// Err returns the errors as one error value, or nil if there are none.
func (ds Diagnostics) Err() error {
	if !ds.HasErrors() {
		return nil
	}
	return ErrorList(ds.Errors())
}

// ErrorList is the error form of a set of diagnostics: one per line.
type ErrorList Diagnostics

func (el ErrorList) Error() string {
	var b strings.Builder
	for i, d := range el {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(d.String())
	}
	return b.String()
}

// SetFieldPos records where a field was written; importers use it so that
// validation findings point at the exact field in their input files.
func (m *Meta) SetFieldPos(field string, p Pos) { m.setField(field, p) }
