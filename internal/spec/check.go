package spec

import "regexp"

// Check loads and validates the spec at path and returns every finding in
// one list, sorted by position. Validation runs even when loading found
// errors, as long as every file parsed, so that a wrong type and a dangling
// reference elsewhere are reported in the same run; validation findings
// about an object that itself failed to load are dropped, since they would
// only echo the load error.
func Check(path string) (*Spec, Diagnostics) {
	s, diags, whole := load(path)
	if s == nil || !whole {
		diags.Sort()
		return s, diags
	}
	broken := map[string]bool{}
	for _, d := range diags {
		if obj := objectOf(d.Message); obj != "" {
			broken[obj] = true
		}
	}
	for _, d := range Validate(s) {
		if obj := objectOf(d.Message); obj == "" || !broken[obj] {
			diags = append(diags, d)
		}
	}
	diags.Sort()
	return s, diags
}

// objectRef matches the subject of a diagnostic: `zone "mgmt": ...` or
// `instance "web".ports[0]: ...`.
var objectRef = regexp.MustCompile(`^(cloud|site|zone|role|flavor|template|group|instance|route) "([^"]+)"[:.\[]`)

func objectOf(msg string) string {
	m := objectRef.FindStringSubmatch(msg)
	if m == nil {
		return ""
	}
	return m[1] + " " + m[2]
}
