package spec_test

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/spec"
)

func TestCheckReportsLoadAndReferenceErrorsTogether(t *testing.T) {
	dir := writeFiles(t, map[string]string{"spec.yaml": header + `zones: {srv: {type: service}}
roles: {r: {vmids: 1000-1999}}
instances:
  a: {role: r, zone: [srv]}
  b: {role: nope, zone: srv}
`})
	_, diags := spec.Check(dir)
	var got []string
	for _, d := range diags {
		got = append(got, strings.TrimPrefix(d.String(), filepath.Join(dir, "")+"/"))
	}
	want := []string{
		// The wrong type is reported; validation's "missing zone" for the
		// same instance would only echo it, so it is dropped.
		`spec.yaml:6:22: instance "a".zone: expected a string, got a list`,
		`spec.yaml:7:13: instance "b": role "nope" does not exist`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("Check:\n got %q\nwant %q", got, want)
	}
}

func TestCheckStopsAtSyntaxErrors(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"a.yaml": header + "instances:\n  x: {role: nope, zone: z}\n",
		"b.yaml": "zones: {z: [\n",
	})
	_, diags := spec.Check(dir)
	if len(diags) != 1 || !strings.Contains(diags[0].Message, "YAML syntax") {
		t.Errorf("want only the syntax error (references into an unparsed file would be noise), got %v", diags)
	}
}
