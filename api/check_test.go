package api

import (
	"reflect"
	"strings"
	"testing"
)

// TestSpecNamesShareOnePattern: every name the control plane writes into
// the cloud's spec is bounded by NamePattern and a length, as the OpenAPI
// document (made from these tags) promises.
func TestSpecNamesShareOnePattern(t *testing.T) {
	for _, tc := range []struct {
		typ    reflect.Type
		maxlen string
	}{
		{reflect.TypeFor[TenantCreate](), "32"},
		{reflect.TypeFor[NetworkCreate](), "31"},
		{reflect.TypeFor[InstanceCreate](), "31"},
		{reflect.TypeFor[Template](), "52"},
	} {
		f, _ := tc.typ.FieldByName("Name")
		if f.Tag.Get("pattern") != NamePattern || f.Tag.Get("maxlen") != tc.maxlen {
			t.Errorf("%s.Name: pattern %q maxlen %q, want %q and %s", tc.typ, f.Tag.Get("pattern"), f.Tag.Get("maxlen"), NamePattern, tc.maxlen)
		}
	}
}

// TestNameProblems: a name that does not fit NamePattern is refused with
// the pattern and the reason, naming the field.
func TestNameProblems(t *testing.T) {
	for name, why := range map[string]string{
		"w-":       "it must not end in '-'",
		"a--b":     `it must not hold "--"`,
		"Web":      "it must start with a lower-case letter",
		"9":        "it must start with a lower-case letter",
		"a.b":      "it may hold only lower-case letters, digits and '-', not '.'",
		"a_b":      "it may hold only lower-case letters, digits and '-', not '_'",
		"web-1":    "",
		"a1-b2-c3": "",
	} {
		errs := Check(NetworkCreate{Name: name})
		switch {
		case why == "" && len(errs) != 0:
			t.Errorf("%q: %+v, want accepted", name, errs)
		case why != "" && (len(errs) != 1 || errs[0].Field != "name" ||
			!strings.HasPrefix(errs[0].Message, "must match "+NamePattern) || !strings.Contains(errs[0].Message, why)):
			t.Errorf("%q: %+v, want name: must match %s (%s)", name, errs, NamePattern, why)
		}
	}
}
