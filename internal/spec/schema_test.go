package spec_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/holdfast/holdfast/internal/spec"
)

func schemaDoc(t *testing.T) map[string]any {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(spec.Schema(), &doc); err != nil {
		t.Fatalf("Schema() is not valid JSON: %v", err)
	}
	return doc
}

func TestSchemaHeader(t *testing.T) {
	doc := schemaDoc(t)
	if doc["$schema"] != "https://json-schema.org/draft/2020-12/schema" {
		t.Errorf("$schema = %v", doc["$schema"])
	}
	if _, ok := doc["$defs"].(map[string]any); !ok {
		t.Errorf("no $defs")
	}
	if !slices.Equal(schemaTypes(doc), []string{"object", "null"}) {
		t.Errorf("root type = %v, want object or null (an empty file is an empty spec)", doc["type"])
	}
}

// objectSchema finds the object branch of a schema: the schema itself, or
// the branch of a oneOf (Port is also a number or a "53/udp" string).
func objectSchema(s map[string]any) map[string]any {
	if s["type"] == "object" {
		return s
	}
	for _, alt := range s["oneOf"].([]any) {
		if m := alt.(map[string]any); m["type"] == "object" {
			return m
		}
	}
	return nil
}

func schemaTypes(s map[string]any) []string {
	switch ty := s["type"].(type) {
	case string:
		return []string{ty}
	case []any:
		var out []string
		for _, x := range ty {
			out = append(out, x.(string))
		}
		return out
	}
	return nil
}

// TestSchemaCoversEveryField walks every struct the loader decodes and
// checks its schema object: each yaml key is a property with the field's
// doc, no other property exists, unknown keys are refused and the required
// list is the fields tagged required.
func TestSchemaCoversEveryField(t *testing.T) {
	doc := schemaDoc(t)
	defs := doc["$defs"].(map[string]any)
	seen := map[reflect.Type]bool{}
	var walk func(reflect.Type)
	walk = func(ty reflect.Type) {
		for ty.Kind() == reflect.Pointer || ty.Kind() == reflect.Slice || ty.Kind() == reflect.Map {
			ty = ty.Elem()
		}
		if ty.Kind() != reflect.Struct || seen[ty] || ty.PkgPath() != reflect.TypeFor[spec.Spec]().PkgPath() {
			return
		}
		if ty == reflect.TypeFor[spec.Size]() || ty == reflect.TypeFor[spec.Range]() {
			return // scalars in YAML, with their own schemas
		}
		seen[ty] = true
		s := doc
		if ty != reflect.TypeFor[spec.Spec]() {
			def, ok := defs[ty.Name()].(map[string]any)
			if !ok {
				t.Errorf("no $defs entry for %s", ty.Name())
				return
			}
			s = objectSchema(def)
		}
		props, _ := s["properties"].(map[string]any)
		if s["additionalProperties"] != false {
			t.Errorf("%s: additionalProperties = %v, want false (the loader refuses unknown keys)", ty.Name(), s["additionalProperties"])
		}
		var keys, required []string
		for i := range ty.NumField() {
			f := ty.Field(i)
			key := f.Tag.Get("yaml")
			if f.Anonymous || key == "" || key == "-" {
				continue
			}
			keys = append(keys, key)
			if f.Tag.Get("required") == "true" {
				required = append(required, key)
			}
			p, ok := props[key].(map[string]any)
			switch {
			case !ok:
				t.Errorf("%s: field %s (%q) is missing from the schema", ty.Name(), f.Name, key)
			case p["description"] != f.Tag.Get("doc"):
				t.Errorf("%s.%s: description %q, want the doc tag %q", ty.Name(), key, p["description"], f.Tag.Get("doc"))
			}
			walk(f.Type)
		}
		for key := range props {
			// A site also takes the block of each engine, under its name.
			block := ty == reflect.TypeFor[spec.Site]() && slices.Contains(spec.EngineNames(), key)
			if !slices.Contains(keys, key) && !block {
				t.Errorf("%s: schema property %q is no field", ty.Name(), key)
			}
		}
		var got []string
		if r, ok := s["required"].([]any); ok {
			for _, x := range r {
				got = append(got, x.(string))
			}
		}
		if !slices.Equal(got, required) {
			t.Errorf("%s: required = %v, want %v", ty.Name(), got, required)
		}
	}
	walk(reflect.TypeFor[spec.Spec]())
	reached := map[string]bool{}
	for ty := range seen {
		reached[ty.Name()] = true
	}
	for _, name := range []string{"Spec", "Cloud", "Site", "Zone", "Role", "Flavor", "Template", "Group", "Instance", "NIC", "Port", "Rule", "Route", "Tenancy"} {
		if !reached[name] {
			t.Errorf("the walk never reached %s", name)
		}
	}
}

// TestSchemaRefsAndPatterns: every $ref resolves and every pattern compiles.
func TestSchemaRefsAndPatterns(t *testing.T) {
	doc := schemaDoc(t)
	defs := doc["$defs"].(map[string]any)
	var refs, patterns int
	var walk func(any)
	walk = func(n any) {
		switch n := n.(type) {
		case map[string]any:
			if ref, ok := n["$ref"].(string); ok {
				refs++
				if _, ok := defs[strings.TrimPrefix(ref, "#/$defs/")]; !ok || !strings.HasPrefix(ref, "#/$defs/") {
					t.Errorf("dangling $ref %q", ref)
				}
			}
			if p, ok := n["pattern"].(string); ok {
				patterns++
				if _, err := regexp.Compile(p); err != nil {
					t.Errorf("pattern %q: %v", p, err)
				}
			}
			for _, v := range n {
				walk(v)
			}
		case []any:
			for _, v := range n {
				walk(v)
			}
		}
	}
	walk(doc)
	if refs < 12 || patterns < 5 {
		t.Errorf("only %d refs and %d patterns: the walk missed the schema", refs, patterns)
	}
}

// validator is the part of JSON Schema 2020-12 that Schema uses, enough to
// check that the schema and the loader agree on concrete documents. An
// unknown keyword fails the test, so the schema cannot outgrow it silently.
type validator struct {
	t    *testing.T
	root map[string]any
}

func (v validator) valid(s map[string]any, x any) bool {
	v.t.Helper()
	for kw, arg := range s {
		ok := true
		switch kw {
		case "$schema", "$id", "$defs", "title", "description":
		case "$ref":
			name := strings.TrimPrefix(arg.(string), "#/$defs/")
			ok = v.valid(v.root["$defs"].(map[string]any)[name].(map[string]any), x)
		case "type":
			ok = slices.ContainsFunc(schemaTypes(s), func(ty string) bool { return jsonType(x, ty) })
		case "properties":
			if m, isMap := x.(map[string]any); isMap {
				for name, ps := range arg.(map[string]any) {
					if val, has := m[name]; has && !v.valid(ps.(map[string]any), val) {
						ok = false
					}
				}
			}
		case "additionalProperties":
			if m, isMap := x.(map[string]any); isMap {
				props, _ := s["properties"].(map[string]any)
				for name, val := range m {
					if _, declared := props[name]; declared {
						continue
					}
					if arg == false || arg != true && !v.valid(arg.(map[string]any), val) {
						ok = false
					}
				}
			}
		case "propertyNames":
			if m, isMap := x.(map[string]any); isMap {
				for name := range m {
					ok = ok && v.valid(arg.(map[string]any), name)
				}
			}
		case "required":
			if m, isMap := x.(map[string]any); isMap {
				for _, name := range arg.([]any) {
					_, has := m[name.(string)]
					ok = ok && has
				}
			}
		case "enum":
			ok = slices.Contains(arg.([]any), x)
		case "pattern":
			if str, isStr := x.(string); isStr {
				ok = regexp.MustCompile(arg.(string)).MatchString(str)
			}
		case "minimum":
			if f, isNum := x.(float64); isNum {
				ok = f >= arg.(float64)
			}
		case "maximum":
			if f, isNum := x.(float64); isNum {
				ok = f <= arg.(float64)
			}
		case "items":
			if list, isList := x.([]any); isList {
				for _, it := range list {
					ok = ok && v.valid(arg.(map[string]any), it)
				}
			}
		case "anyOf", "oneOf":
			n := 0
			for _, alt := range arg.([]any) {
				if v.valid(alt.(map[string]any), x) {
					n++
				}
			}
			ok = n > 0 && (kw == "anyOf" || n == 1)
		default:
			v.t.Fatalf("the test's validator does not know JSON Schema keyword %q", kw)
		}
		if !ok {
			return false
		}
	}
	return true
}

func jsonType(x any, ty string) bool {
	switch x := x.(type) {
	case nil:
		return ty == "null"
	case bool:
		return ty == "boolean"
	case string:
		return ty == "string"
	case float64:
		return ty == "number" || ty == "integer" && x == float64(int64(x))
	case []any:
		return ty == "array"
	case map[string]any:
		return ty == "object"
	}
	return false
}

// asJSON turns YAML into the JSON value an editor's language server checks.
func asJSON(t *testing.T, data []byte) any {
	t.Helper()
	var y any
	if err := yaml.Unmarshal(data, &y); err != nil {
		t.Fatalf("yaml: %v", err)
	}
	j, err := json.Marshal(y)
	if err != nil {
		t.Fatalf("json: %v", err)
	}
	var x any
	if err := json.Unmarshal(j, &x); err != nil {
		t.Fatal(err)
	}
	return x
}

// TestSchemaAgreesWithLoader: for each document the schema accepts exactly
// when the loader (Parse; references are Validate's business) does.
//
// Known gaps, where the schema is looser than the loader because JSON
// Schema cannot say it: numeric bounds inside strings ("0-10", "0/tcp",
// reversed ranges "10-5"), integers written as 5.0, sizes that overflow,
// and numbers in name or domain fields that happen to match the pattern
// as text (domain: 123).
func TestSchemaAgreesWithLoader(t *testing.T) {
	doc := schemaDoc(t)
	v := validator{t: t, root: doc}
	for _, tc := range []struct {
		name, yaml string
		ok         bool // both accept
	}{
		{"minimal", `zones: {a: {type: iot}}`, true},
		{"enum in any case", `zones: {a: {type: Management, state: ACTIVE}}`, true},
		{"enum misspelt", `zones: {a: {type: managment}}`, false}, //nolint:misspell // the misspelling is the test
		{"number as a string", `templates: {t: {image: 9000}}`, true},
		{"number as free text", `zones: {a: {type: iot, description: 5, uplink: 3}}`, true},
		{"bool as a string", `zones: {a: {type: iot, description: true}}`, false},
		{"number as a name", "cloud: {name: 5, domain: x.net}\nsites: {s: {engine: local, nodes: [n]}}", false},
		{"number as an enum", `zones: {a: {type: 7}}`, false},
		{"null optional field", `zones: {a: {type: iot, description: , vlan: ~}}`, true},
		{"null required field", `zones: {a: {type: }}`, false},
		{"null object without required fields", `groups: {g: }`, true},
		{"null object with required fields", `zones: {a: }`, false},
		{"null section", "zones:", true},
		{"empty document", "", true},
		{"unknown field", `zones: {a: {type: iot, colour: red}}`, false},
		{"unknown section", `tenants: {}`, false},
		{"invalid name", `zones: {1a: {type: iot}}`, false},
		{"list for map", `zones: [a]`, false},
		{"map for list", `zones: {a: {type: iot, access-to: {b: 1}}}`, false},
		{"null in a string list", `zones: {a: {type: iot, access-to: [~]}}`, false},
		{"string for int", `zones: {a: {type: iot, vlan: "5"}}`, false},
		{"string for bool", `zones: {a: {type: iot, isolated: "true"}}`, false},
		{"int below min", `flavors: {f: {cpus: 0, memory: 1}}`, false},
		{"sizes", `flavors: {f: {cpus: 1, memory: 4Gi, disk: " 32 GiB "}, g: {cpus: 1, memory: 512MB, disk: 1t}}`, true},
		{"zero size", `flavors: {f: {cpus: 1, memory: "0G"}}`, false},
		{"zero size number", `flavors: {f: {cpus: 1, memory: 0}}`, false},
		{"fractional size", `flavors: {f: {cpus: 1, memory: 4.5G}}`, false},
		{"size with unknown unit", `flavors: {f: {cpus: 1, memory: 4K}}`, false},
		{"ranges", `roles: {a: {vmids: " 1000 - 1999 "}, b: {vmids: 7000}}`, true},
		{"negative range", `roles: {a: {vmids: -5}}`, false},
		{"range as list", `roles: {a: {vmids: [1, 2]}}`, false},
		{"ports", `instances: {i: {ingress: [{ports: [80, "8000 - 8100"]}, {ports: 443}, {ports: "1-65535"}]}}`, true},
		{"port out of range", `instances: {i: {ingress: [{ports: 65536}]}}`, false},
		{"nested port list", `instances: {i: {ingress: [{ports: [[80]]}]}}`, false},
		{"null rule", `instances: {i: {ingress: [~]}}`, true},
		{"served ports", `instances: {i: {ports: [22, "53/UDP", "443/tcp", {port: 80, proto: TCP}]}}`, true},
		{"served port 0", `instances: {i: {ports: [0]}}`, false},
		{"served port proto", `instances: {i: {ports: ["53/sctp"]}}`, false},
		{"served port trailing slash", `instances: {i: {ports: ["443/"]}}`, false},
		{"served port without number", `instances: {i: {ports: [{proto: udp}]}}`, false},
		{"nic without zone", `instances: {i: {networks: [{ip: 10.0.0.1}]}}`, false},
		{"null instance", `instances: {i: }`, true},
		{"route", `routes: {r: {host: a.example.net, frontends: [x], backends: [y], backend-port: 80}}`, true},
		{"route missing backend-port", `routes: {r: {host: a.example.net, frontends: [x], backends: [y]}}`, false},
		{"bad host", `routes: {r: {host: "-a.net", frontends: [x], backends: [y], backend-port: 80}}`, false},
		{"tenancy", `tenancy: {site: s, role: t, zone-type: Guest, cidr: 10.128.0.0/12, prefix: 24, vlans: 3000-3999, access: [internet]}`, true},
		{"tenancy without access", `tenancy: {role: t, cidr: 10.128.0.0/12, vlans: 3000-3999, access: []}`, true},
		{"tenancy without role", `tenancy: {cidr: 10.128.0.0/12, vlans: 3000-3999}`, false},
		{"tenancy prefix too long", `tenancy: {role: t, cidr: 10.128.0.0/12, vlans: 3000-3999, prefix: 30}`, false},
		{"tenancy of overlay zones", `tenancy: {role: t, cidr: 10.128.0.0/12, vlans: 3000-3999, zone-type: overlay}`, false},
		{"tenant zone and instance", `zones: {a: {tenant: acme, type: guest}}
instances: {i: {tenant: acme, zone: a, power: Stopped, reboot: 2, rebuild: 0, ssh-keys: ["ssh-ed25519 AAAA x"]}}`, true},
		{"invalid tenant name", `zones: {a: {tenant: "acme corp", type: guest}}`, false},
		{"power enum", `instances: {i: {power: paused}}`, false},
		{"negative generation", `instances: {i: {reboot: -1}}`, false},
		{"keys as a string", `instances: {i: {ssh-keys: "ssh-ed25519 AAAA"}}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := []byte(tc.yaml)
			if tc.yaml != "" && !strings.HasPrefix(tc.yaml, "cloud:") {
				data = []byte(header + tc.yaml + "\n")
			}
			_, diags := spec.Parse("spec.yaml", data)
			schemaOK := v.valid(doc, asJSON(t, data))
			if loaderOK := !diags.HasErrors(); loaderOK != tc.ok || schemaOK != tc.ok {
				t.Errorf("loader accepts: %v, schema accepts: %v, want both %v\nloader: %v", loaderOK, schemaOK, tc.ok, diags)
			}
		})
	}
}

// TestSchemaAcceptsExamples: every spec in the repository that loads also
// passes the schema an editor would check it against.
func TestSchemaAcceptsExamples(t *testing.T) {
	doc := schemaDoc(t)
	v := validator{t: t, root: doc}
	files, _ := filepath.Glob("../../examples/*/*.yaml")
	files = append(files, "testdata/full.yaml")
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, diags := spec.Parse(f, data); diags.HasErrors() {
			continue // someone else's work in progress; not the schema's business
		}
		if !v.valid(doc, asJSON(t, data)) {
			t.Errorf("%s: the loader accepts it, the schema does not", f)
		}
	}
	if len(files) < 2 {
		t.Errorf("found only %v", files)
	}
}
