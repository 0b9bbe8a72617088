package pveemu

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
)

// Property strings ("[file=]local-lvm:vm-100-disk-0,size=8G,ssd=1") are how
// PVE packs structured options into one value. Their formats are schemas
// of their own, checked by pve-common's parse_property_string; this file
// is that check, shared by every option that names such a format.

// propFormat is the schema of a property string: its keys.
type propFormat map[string]param

// A key of a propFormat may be the default key (the value given without
// "key=") or an alias of another key.
func (p param) defaultKey() param                { p.isDefault = true; return p }
func alias(target string) param                  { return param{alias: target} }
func (p param) oneOf(values ...string) param     { p.enum = values; return p }
func (p param) matching(re *regexp.Regexp) param { p.pattern = re; return p }
func (p param) needs(key string) param           { p.requires = key; return p }

// withProps makes p a property string of format f.
func (p param) withProps(f propFormat) param { p.props = f; return p }

// parsePropertyString is parse_property_string: it splits v into its keys
// (resolving the default key and aliases, and reading booleans as 1 or 0
// the way parse_boolean does) and checks them against f as check_object
// does. path names the option in errors ("smbios1.serial").
func parsePropertyString(f propFormat, path, v string) (map[string]string, error) {
	res := map[string]string{}
	var defaultKey string
	for _, part := range strings.Split(v, ",") {
		if strings.TrimSpace(part) == "" {
			continue
		}
		k, val, hasEq := strings.Cut(part, "=")
		switch {
		case hasEq && k != "" && val != "":
			if _, dup := res[k]; dup {
				return nil, fmt.Errorf("duplicate key in comma-separated list property: %s", k)
			}
			schema, known := f[k]
			if schema.alias != "" {
				k = schema.alias
				schema, known = f[k]
				if _, dup := res[k]; dup {
					return nil, fmt.Errorf("key '%s' is already defined (via alias)", k)
				}
			}
			if !known {
				return nil, fmt.Errorf("invalid key in comma-separated list property: %s", k)
			}
			if schema.kind == kBoolean {
				val = perlBoolean(val)
			}
			res[k] = val
		case !hasEq:
			if defaultKey != "" {
				return nil, fmt.Errorf("duplicate key in comma-separated list property: %s", defaultKey)
			}
			for _, key := range slices.Sorted(maps.Keys(f)) {
				if !f[key].isDefault {
					continue
				}
				defaultKey = key
				if _, set := res[key]; set {
					return nil, fmt.Errorf("duplicate key in comma-separated list property: %s", key)
				}
				if f[key].kind == kBoolean {
					part = perlBoolean(part)
				}
				res[key] = part
				break
			}
			if defaultKey == "" {
				return nil, fmt.Errorf("value without key, but schema does not define a default key")
			}
		default:
			return nil, fmt.Errorf("missing key in comma-separated list property")
		}
	}
	errs := map[string]string{}
	for key, schema := range f {
		if schema.alias != "" {
			continue
		}
		sub := key
		if path != "" {
			sub = path + "." + key
		}
		val, set := res[key]
		if !set {
			if schema.required {
				errs[sub] = "property is missing and it is not optional"
			}
			continue
		}
		if msg := schema.checkValue(sub, val); msg != "" {
			errs[sub] = msg
			continue
		}
		if r := schema.requires; r != "" {
			if _, ok := res[r]; !ok {
				rp := r
				if path != "" {
					rp = path + "." + r
				}
				errs[rp] = fmt.Sprintf("missing property required by '%s'", sub)
			}
		}
	}
	if len(errs) > 0 {
		// PVE raises "format error" with the errors, which its exception
		// prints one a line after the message.
		var b strings.Builder
		b.WriteString("format error\n")
		for _, k := range slices.Sorted(maps.Keys(errs)) {
			fmt.Fprintf(&b, "%s: %s\n", k, strings.TrimSuffix(errs[k], "\n"))
		}
		return nil, fmt.Errorf("%s", strings.TrimSuffix(b.String(), "\n"))
	}
	return res, nil
}

// perlBoolean is parse_boolean: the spellings of true and false become 1
// and 0, anything else stays for the type check to refuse.
func perlBoolean(v string) string {
	if b, ok := parseBool(v); ok {
		return fmt.Sprint(boolInt(b))
	}
	return v
}

// propFormats are the property-string formats registered by name
// (PVE::JSONSchema::register_format with a hash), with their validators.
var propFormats = map[string]struct {
	format   propFormat
	validate func(map[string]string) error
}{}

// registerPropFormat adds a named property-string format.
func registerPropFormat(name string, f propFormat, validate func(map[string]string) error) {
	propFormats[name] = struct {
		format   propFormat
		validate func(map[string]string) error
	}{f, validate}
}
