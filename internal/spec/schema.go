package spec

import (
	"encoding/json"
	"path"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"unicode"
)

// schemaOf is implemented by types with their own YAML syntax.
type schemaOf interface{ jsonSchema() map[string]any }

func (Size) jsonSchema() map[string]any {
	return map[string]any{
		"description": "Size in MiB, or a number with a unit M, G or T (binary), e.g. 4G.",
		"oneOf": []any{
			map[string]any{"type": "integer", "minimum": 1},
			map[string]any{"type": "string", "pattern": `^\s*0*[1-9][0-9]*\s*([MmGgTt][Ii]?[Bb]?)?\s*$`},
		},
	}
}

func (Range) jsonSchema() map[string]any {
	return map[string]any{
		"description": "Inclusive range lo-hi, e.g. 1000-1999.",
		"oneOf": []any{
			map[string]any{"type": "integer", "minimum": 0},
			map[string]any{"type": "string", "pattern": `^\s*[0-9]+\s*(-\s*[0-9]+\s*)?$`},
		},
	}
}

func (Ports) jsonSchema() map[string]any {
	one := map[string]any{"oneOf": []any{
		map[string]any{"type": "integer", "minimum": 1, "maximum": 65535},
		map[string]any{"type": "string", "pattern": `^\s*[0-9]+\s*(-\s*[0-9]+\s*)?$`},
	}}
	return map[string]any{
		"description": "A port, a range such as 8000-8100, or a list of them.",
		"oneOf":       []any{one, map[string]any{"type": "array", "items": one}},
	}
}

// Schema returns a JSON Schema (draft 2020-12) of the spec file format,
// generated from the same field tags the loader enforces, so the two agree.
func Schema() []byte {
	g := &schemaGen{defs: map[string]any{}}
	root := g.of(reflect.TypeFor[Spec]())
	root["type"] = []any{"object", "null"} // an empty file is an empty spec
	root["$schema"] = "https://json-schema.org/draft/2020-12/schema"
	root["$id"] = "https://holdfast.dev/schema/spec.json"
	root["title"] = "Holdfast cloud spec"
	root["$defs"] = g.defs
	out, err := json.MarshalIndent(root, "", "  ")
	if err != nil {
		panic(err) // maps of strings and numbers always marshal
	}
	return append(out, '\n')
}

type schemaGen struct{ defs map[string]any }

func (g *schemaGen) of(t reflect.Type) map[string]any {
	if t.Kind() == reflect.Pointer {
		// *Size and the like: the pointer only marks the field optional.
		if s, ok := reflect.New(t.Elem()).Elem().Interface().(schemaOf); ok {
			return s.jsonSchema()
		}
	} else if s, ok := reflect.New(t).Elem().Interface().(schemaOf); ok {
		return s.jsonSchema()
	}
	switch t.Kind() {
	case reflect.Pointer:
		if t.Elem().Kind() == reflect.Struct && t.Elem() != reflect.TypeFor[Spec]() {
			if !hasRequired(t.Elem()) {
				// The loader reads a null object as an empty mapping.
				return map[string]any{"anyOf": []any{g.ref(t.Elem()), map[string]any{"type": "null"}}}
			}
			return g.ref(t.Elem())
		}
		return g.of(t.Elem())
	case reflect.Struct:
		return g.object(t)
	case reflect.Map:
		return map[string]any{"type": "object", "propertyNames": map[string]any{"pattern": namePattern.String()}, "additionalProperties": g.of(t.Elem())}
	case reflect.Slice:
		return map[string]any{"type": "array", "items": g.of(t.Elem())}
	case reflect.String:
		// The loader takes any scalar but a boolean or null as a string
		// (image: 9000 is a Proxmox template VMID).
		return map[string]any{"type": []any{"string", "number"}}
	case reflect.Int:
		return map[string]any{"type": "integer"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	}
	return map[string]any{}
}

func (g *schemaGen) ref(t reflect.Type) map[string]any {
	name := t.Name()
	if t.PkgPath() != specPkg {
		// An engine's block type: named with its package, so that two
		// engines' Block types do not collide.
		name = path.Base(t.PkgPath()) + "." + name
	}
	if _, ok := g.defs[name]; !ok {
		g.defs[name] = map[string]any{} // placeholder: breaks recursion
		g.defs[name] = g.object(t)
	}
	return map[string]any{"$ref": "#/$defs/" + name}
}

var specPkg = reflect.TypeFor[Spec]().PkgPath()

func (g *schemaGen) object(t reflect.Type) map[string]any {
	si := infoFor(t)
	props := map[string]any{}
	var required []string
	isSite := t == reflect.TypeFor[Site]()
	for _, fi := range si.fields {
		p := g.of(t.Field(fi.index).Type)
		if isSite && fi.key == "engine" {
			fi.enum = EngineNames() // registered, not tagged
		}
		if fi.enum != nil {
			// The loader matches enums without regard to case.
			p["type"] = "string"
			p["anyOf"] = []any{map[string]any{"enum": fi.enum}, map[string]any{"pattern": caseless(fi.enum)}}
		}
		if fi.min != nil {
			p["minimum"] = *fi.min
		}
		if fi.max != nil {
			p["maximum"] = *fi.max
		}
		switch fi.pattern {
		case "name":
			p["type"], p["pattern"] = "string", namePattern.String()
		case "domain":
			p["type"], p["pattern"] = "string", domainPattern.String()
		}
		if fi.required {
			required = append(required, fi.key)
		} else {
			// The loader reads an optional field given as null as left out.
			p = map[string]any{"anyOf": []any{p, map[string]any{"type": "null"}}}
		}
		if fi.doc != "" {
			p["description"] = fi.doc
		}
		props[fi.key] = p
	}
	if isSite {
		for name, blk := range g.blockSchemas() {
			props[name] = map[string]any{"anyOf": []any{blk, map[string]any{"type": "null"}}, "description": "Settings of the " + name + " engine (engine: " + name + ")."}
		}
	}
	out := map[string]any{"type": "object", "properties": props, "additionalProperties": false}
	if required != nil {
		out["required"] = required
	}
	if t == reflect.TypeFor[Lighthouse]() {
		return map[string]any{"oneOf": []any{map[string]any{"type": "string", "pattern": namePattern.String()}, out}}
	}
	if t == reflect.TypeFor[Port]() {
		return map[string]any{"oneOf": []any{
			map[string]any{"type": "integer", "minimum": 1, "maximum": 65535},
			map[string]any{"type": "string", "pattern": `^[0-9]+(/([Tt][Cc][Pp]|[Uu][Dd][Pp]))?$`},
			out,
		}}
	}
	return out
}

func hasRequired(t reflect.Type) bool {
	return slices.ContainsFunc(infoFor(t).fields, func(fi fieldInfo) bool { return fi.required })
}

// caseless is a pattern matching any of words in any case (ECMA-262 regular
// expressions, which JSON Schema uses, have no case-insensitive flag).
func caseless(words []string) string {
	var b strings.Builder
	b.WriteString("^(")
	for i, w := range words {
		if i > 0 {
			b.WriteByte('|')
		}
		for _, r := range w {
			if u, l := unicode.ToUpper(r), unicode.ToLower(r); u != l {
				b.WriteString("[" + string(u) + string(l) + "]")
			} else {
				b.WriteString(regexp.QuoteMeta(string(r)))
			}
		}
	}
	b.WriteString(")$")
	return b.String()
}
