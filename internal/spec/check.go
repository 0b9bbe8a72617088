package spec

// Check loads and validates the spec at path and returns every finding in
// one list, sorted by position. Validation runs even when loading found
// errors, as long as every file parsed, so that a wrong type and a dangling
// reference elsewhere are reported in the same run; validation findings
// about an object that itself failed to load are dropped, since they would
// only echo the load error.
func Check(path string) (*Spec, Diagnostics) { return CheckWith(path, nil) }

// TenantsSource finds a cloud's tenants file once the spec has been loaded
// and names the cloud: it returns the file's name (for messages) and its
// content, or nil content when the cloud has none.
type TenantsSource func(cloud string) (file string, data []byte, err error)

// CheckWith is Check for a cloud whose tenants' zones and instances live
// in a file of their own (written by holdfast serve): the spec at path is
// loaded, then the tenants file that tenants finds is parsed with
// ParseTenants and merged in, then the whole is validated. tenants may be
// nil; it is not called when the spec names no cloud.
func CheckWith(path string, tenants TenantsSource) (*Spec, Diagnostics) {
	s, diags, whole := load(path)
	if s != nil && s.Cloud != nil && tenants != nil {
		file, data, err := tenants(s.Cloud.Name)
		switch {
		case err != nil:
			diags.Errorf(Pos{File: file}, "%v", err)
			whole = false
		case data != nil:
			part, ds := ParseTenants(file, data)
			diags = append(diags, ds...)
			if part == nil {
				whole = false
			} else {
				s.merge(part, &diags)
			}
		}
	}
	if s == nil || !whole {
		diags.Sort()
		return s, diags
	}
	type object struct{ kind, name string }
	broken := map[object]bool{}
	for _, d := range diags {
		if kind, name := d.Object(); kind != "" {
			broken[object{kind, name}] = true
		}
	}
	for _, d := range Validate(s) {
		if kind, name := d.Object(); kind == "" || !broken[object{kind, name}] {
			diags = append(diags, d)
		}
	}
	diags.Sort()
	return s, diags
}

// ParseTenants parses a tenants file: the zones and instances holdfast
// serve keeps for the cloud's tenants, and the templates of the operator's
// catalogue they are made from (published through the API, so not in the
// operator's spec). It may hold nothing else, and each of its zones and
// instances names its tenant; anything else is an error at its place in
// the file.
func ParseTenants(file string, data []byte) (*Spec, Diagnostics) {
	s, diags := Parse(file, data)
	if s == nil {
		return nil, diags
	}
	refuse := func(p Pos, section string) {
		diags.Errorf(p, "%s: a tenants file holds only tenants' zones and instances and catalogue templates; %s belongs in the operator's spec", section, section)
	}
	// What is refused is also left out, so that it neither passes for the
	// operator's nor echoes the error through every check it would fail.
	if s.Cloud != nil {
		refuse(s.Cloud.Pos, "cloud")
		s.Cloud = nil
	}
	if s.Tenancy != nil {
		refuse(s.Tenancy.Pos, "tenancy")
		s.Tenancy = nil
	}
	refuseAll(&s.Sites, "sites", refuse)
	refuseAll(&s.Roles, "roles", refuse)
	refuseAll(&s.Flavors, "flavors", refuse)
	refuseAll(&s.Groups, "groups", refuse)
	refuseAll(&s.Routes, "routes", refuse)
	for _, name := range SortedNames(s.Zones) {
		if z := s.Zones[name]; z.Tenant == "" {
			diags.Errorf(z.Pos, "zone %q: a tenants file holds only tenants' zones; it has no tenant", name)
			delete(s.Zones, name)
		}
	}
	for _, name := range SortedNames(s.Instances) {
		if in := s.Instances[name]; in.Tenant == "" {
			diags.Errorf(in.Pos, "instance %q: a tenants file holds only tenants' instances; it has no tenant", name)
			delete(s.Instances, name)
		}
	}
	return s, diags
}

func refuseAll[T positioned](m *map[string]T, section string, refuse func(Pos, string)) {
	for _, name := range SortedNames(*m) {
		refuse((*m)[name].meta().Pos, section)
	}
	*m = nil
}
