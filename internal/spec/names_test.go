package spec_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/spec"
)

// TestCheckName: CheckName accepts exactly the names the spec's schema
// promises (its name pattern) and says why it refuses the others.
func TestCheckName(t *testing.T) {
	for _, tc := range []struct{ name, why string }{
		{"a", ""},
		{"web-1", ""},
		{"acme--net", ""},
		{"Mixed-Case9", ""},
		{strings.Repeat("a", 63), ""},
		{"", "must not be empty"},
		{strings.Repeat("a", 64), "is 64 characters long; a name has at most 63"},
		{"9lives", "must start with a letter"},
		{"-a", "must start with a letter"},
		{"w-", "must not end in '-'"},
		{"acme--w-", "must not end in '-'"},
		{"a_b", "may hold only letters, digits and '-', not '_'"},
		{"a.b", "may hold only letters, digits and '-', not '.'"},
		{"aé", "may hold only letters, digits and '-', not 'é'"},
	} {
		err := spec.CheckName(tc.name)
		switch {
		case tc.why == "" && err != nil:
			t.Errorf("CheckName(%q) = %v, want nil", tc.name, err)
		case tc.why != "" && (err == nil || err.Error() != tc.why):
			t.Errorf("CheckName(%q) = %v, want %q", tc.name, err, tc.why)
		}
	}
}

// FuzzCheckName: CheckName and the pattern the JSON Schema publishes agree
// on every string, and every refusal says why.
func FuzzCheckName(f *testing.F) {
	for _, s := range []string{"a", "w-", "acme--net", "9", "a_b", strings.Repeat("x", 64), "", "ü"} {
		f.Add(s)
	}
	pattern := regexp.MustCompile(schemaNamePattern(f))
	f.Fuzz(func(t *testing.T, s string) {
		err := spec.CheckName(s)
		if (err == nil) != pattern.MatchString(s) {
			t.Fatalf("CheckName(%q) = %v, but the schema's pattern says %v", s, err, pattern.MatchString(s))
		}
		if err != nil && (err.Error() == "" || err.Error() == "is not a valid name") {
			t.Fatalf("CheckName(%q) refuses without saying why: %v", s, err)
		}
	})
}

// schemaNamePattern is the pattern the spec's JSON Schema gives names.
func schemaNamePattern(t testing.TB) string {
	t.Helper()
	schema := spec.Schema()
	m := regexp.MustCompile(`"propertyNames":\s*\{\s*"pattern":\s*"([^"]+)"`).FindSubmatch(schema)
	if m == nil {
		t.Fatal("the schema gives names no pattern")
	}
	return strings.ReplaceAll(string(m[1]), `\\`, `\`)
}

// TestDiagnosticObject: a finding about an object names it, whichever
// phase found it; other findings name none.
func TestDiagnosticObject(t *testing.T) {
	for _, tc := range []struct{ msg, kind, name string }{
		{`zone "acme--w-": not a valid name: must not end in '-'`, "zone", "acme--w-"},
		{`instance "acme--web": zone "acme--w-" does not exist`, "instance", "acme--web"},
		{`instance "web".ports[0]: port 0 is out of range`, "instance", "web"},
		{`template "catalogue--a": defined twice (first at spec.yaml:3:3)`, "template", "catalogue--a"},
		{`tenancy: pool 10.0.0.0/8 overlaps zone "mgmt" (10.0.10.0/24)`, "", ""},
		{`zones: expected a mapping of names to objects, got a list`, "", ""},
	} {
		kind, name := spec.Diagnostic{Message: tc.msg}.Object()
		if kind != tc.kind || name != tc.name {
			t.Errorf("Object of %q = %q %q, want %q %q", tc.msg, kind, name, tc.kind, tc.name)
		}
	}
}
