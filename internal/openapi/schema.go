package openapi

import (
	"encoding"
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Schemer is implemented by types whose JSON form reflection cannot see,
// such as a type with its own MarshalJSON. OpenAPISchema is called on a
// zero value and its result used as the type's schema; a named struct type
// still becomes a component.
type Schemer interface {
	OpenAPISchema() map[string]any
}

var (
	schemerType       = reflect.TypeFor[Schemer]()
	marshalerType     = reflect.TypeFor[json.Marshaler]()
	textMarshalerType = reflect.TypeFor[encoding.TextMarshaler]()
	timeType          = reflect.TypeFor[time.Time]()
	rawMessageType    = reflect.TypeFor[json.RawMessage]()
)

// componentKey is what OpenAPI allows as a key of components/schemas.
var componentKey = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// schemas builds components/schemas from Go types, one component per named
// struct type.
type schemas struct {
	defs  map[string]any          // components/schemas
	names map[string]reflect.Type // which type has each component name
	done  map[reflect.Type]string // the component name of each type seen
}

func newSchemas() *schemas {
	return &schemas{defs: map[string]any{}, names: map[string]reflect.Type{}, done: map[reflect.Type]string{}}
}

// implements reports whether t or *t has the methods of iface, since
// encoding/json uses pointer methods of addressable values too.
func implements(t, iface reflect.Type) bool {
	return t.Implements(iface) || (t.Kind() != reflect.Pointer && reflect.PointerTo(t).Implements(iface))
}

// of returns a schema, owned by the caller, for JSON values of type t.
// where locates t in error messages.
func (g *schemas) of(t reflect.Type, where string) (map[string]any, error) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case implements(t, schemerType):
		s := deepClone(reflect.New(t).Interface().(Schemer).OpenAPISchema())
		if t.Kind() == reflect.Struct && t.Name() != "" {
			return g.ref(t, func() (map[string]any, error) { return s, nil })
		}
		return s, nil
	case t == timeType:
		return map[string]any{"type": "string", "format": "date-time"}, nil
	case t == rawMessageType:
		return map[string]any{}, nil
	case implements(t, marshalerType):
		return nil, fmt.Errorf("%s: %s has its own MarshalJSON, so its JSON form is unknown; give it an OpenAPISchema method (openapi.Schemer)", where, t)
	case implements(t, textMarshalerType):
		return map[string]any{"type": "string"}, nil
	}
	switch t.Kind() {
	case reflect.Bool:
		return map[string]any{"type": "boolean"}, nil
	case reflect.Int8, reflect.Int16, reflect.Int32:
		return map[string]any{"type": "integer", "format": "int32"}, nil
	case reflect.Int, reflect.Int64:
		return map[string]any{"type": "integer", "format": "int64"}, nil
	case reflect.Uint8, reflect.Uint16:
		return map[string]any{"type": "integer", "format": "int32", "minimum": 0}, nil
	case reflect.Uint32:
		return map[string]any{"type": "integer", "format": "int64", "minimum": 0}, nil
	case reflect.Uint, reflect.Uint64, reflect.Uintptr:
		// Beyond int64: OpenAPI has no format for them.
		return map[string]any{"type": "integer", "minimum": 0}, nil
	case reflect.Float32:
		return map[string]any{"type": "number", "format": "float"}, nil
	case reflect.Float64:
		return map[string]any{"type": "number", "format": "double"}, nil
	case reflect.String:
		return map[string]any{"type": "string"}, nil
	case reflect.Interface:
		return map[string]any{}, nil
	case reflect.Slice:
		if e := reflect.PointerTo(t.Elem()); t.Elem().Kind() == reflect.Uint8 &&
			!e.Implements(marshalerType) && !e.Implements(textMarshalerType) {
			return map[string]any{"type": "string", "contentEncoding": "base64"}, nil
		}
		items, err := g.of(t.Elem(), where+"[]")
		if err != nil {
			return nil, err
		}
		return map[string]any{"type": "array", "items": items}, nil
	case reflect.Array:
		items, err := g.of(t.Elem(), where+"[]")
		if err != nil {
			return nil, err
		}
		return map[string]any{"type": "array", "items": items, "minItems": t.Len(), "maxItems": t.Len()}, nil
	case reflect.Map:
		s := map[string]any{"type": "object"}
		k := t.Key()
		switch {
		case k.Kind() == reflect.String, implements(k, textMarshalerType):
		case isInt(k.Kind()):
			s["propertyNames"] = map[string]any{"pattern": `^-?[0-9]+$`}
		case isUint(k.Kind()):
			s["propertyNames"] = map[string]any{"pattern": `^[0-9]+$`}
		default:
			return nil, fmt.Errorf("%s: map key type %s has no JSON form", where, k)
		}
		v, err := g.of(t.Elem(), where+"[key]")
		if err != nil {
			return nil, err
		}
		s["additionalProperties"] = v
		return s, nil
	case reflect.Struct:
		if t.Name() == "" {
			return g.object(t, where)
		}
		s, err := g.ref(t, func() (map[string]any, error) { return g.object(t, t.String()) })
		if err != nil {
			// The trail to the type: where it is used, then where in it.
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		return s, nil
	}
	return nil, fmt.Errorf("%s: type %s is not supported (a %s has no JSON form)", where, t, t.Kind())
}

// ref returns a $ref to the component of named type t, building it first if
// it is new. The component is entered before it is built, so a type that
// refers to itself refers to its own component.
func (g *schemas) ref(t reflect.Type, build func() (map[string]any, error)) (map[string]any, error) {
	name, ok := g.done[t]
	if !ok {
		name = componentName(t.Name())
		if !componentKey.MatchString(name) {
			return nil, fmt.Errorf("type %s: %q is not a usable schema name (letters, digits, '.', '-' and '_' only)", t, name)
		}
		if other, ok := g.names[name]; ok {
			return nil, fmt.Errorf("types %s and %s would both be components/schemas/%s; rename one", other, t, name)
		}
		g.names[name], g.done[t], g.defs[name] = t, name, map[string]any{}
		s, err := build()
		if err != nil {
			// Forget it, so that every operation using it reports it.
			delete(g.names, name)
			delete(g.done, t)
			delete(g.defs, name)
			return nil, err
		}
		g.defs[name] = s
	}
	return map[string]any{"$ref": "#/components/schemas/" + name}, nil
}

// object is the schema of a struct: its JSON members as properties, those
// always present as required.
func (g *schemas) object(t reflect.Type, where string) (map[string]any, error) {
	props := map[string]any{}
	var required []string
	for _, f := range jsonFields(t) {
		s, err := g.field(f, where+"."+f.goPath)
		if err != nil {
			return nil, err
		}
		props[f.name] = s
		if f.required() {
			required = append(required, f.name)
		}
	}
	s := map[string]any{"type": "object", "properties": props}
	if required != nil {
		s["required"] = required
	}
	return s, nil
}

// field is the schema of one struct member, with its tags applied.
func (g *schemas) field(f field, where string) (map[string]any, error) {
	t := f.typ
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var s map[string]any
	if f.quoted && !implements(t, schemerType) && !implements(t, marshalerType) && !implements(t, textMarshalerType) {
		s = quoted(t.Kind())
	} else {
		var err error
		if s, err = g.of(t, where); err != nil {
			return nil, err
		}
	}
	s, err := applyTags(s, f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	return s, nil
}

// quoted is the schema of a number or boolean sent as a string (",string").
func quoted(k reflect.Kind) map[string]any {
	switch {
	case k == reflect.Bool:
		return map[string]any{"type": "string", "enum": []any{"true", "false"}}
	case isInt(k):
		return map[string]any{"type": "string", "pattern": `^-?[0-9]+$`}
	case isUint(k):
		return map[string]any{"type": "string", "pattern": `^[0-9]+$`}
	}
	return map[string]any{"type": "string"}
}

func isInt(k reflect.Kind) bool {
	return k == reflect.Int || k == reflect.Int8 || k == reflect.Int16 || k == reflect.Int32 || k == reflect.Int64
}

func isUint(k reflect.Kind) bool {
	return k == reflect.Uint || k == reflect.Uint8 || k == reflect.Uint16 || k == reflect.Uint32 || k == reflect.Uint64 || k == reflect.Uintptr
}

// applyTags adds the constraints of f's struct tags (listed in the package
// documentation) to its schema s.
func applyTags(s map[string]any, f field) (map[string]any, error) {
	typ, _ := s["type"].(string)
	item, itemType := s, typ
	if typ == "array" {
		if m, ok := s["items"].(map[string]any); ok {
			item = m
			itemType, _ = m["type"].(string)
		}
	}
	tagErr := func(key, format string, args ...any) error {
		return fmt.Errorf("tag %s:%q: %s", key, f.tag.Get(key), fmt.Sprintf(format, args...))
	}
	if v, ok := f.tag.Lookup("format"); ok {
		if v == "" {
			return nil, tagErr("format", "empty")
		}
		item["format"] = v
	}
	if v, ok := f.tag.Lookup("pattern"); ok {
		if itemType != "string" {
			return nil, tagErr("pattern", "a pattern needs a string, and this is %s", describe(item))
		}
		if _, err := regexp.Compile(v); err != nil {
			return nil, tagErr("pattern", "%v", err)
		}
		item["pattern"] = v
	}
	if v, ok := f.tag.Lookup("enum"); ok {
		if itemType == "" || itemType == "array" || itemType == "object" {
			return nil, tagErr("enum", "an enum needs a string, number or boolean, and this is %s", describe(item))
		}
		vals, err := enumValues(v, itemType)
		if err != nil {
			return nil, tagErr("enum", "%v", err)
		}
		item["enum"] = vals
	}
	for _, b := range []struct{ tag, key string }{{"min", "minimum"}, {"max", "maximum"}} {
		v, ok := f.tag.Lookup(b.tag)
		if !ok {
			continue
		}
		if typ != "integer" && typ != "number" {
			return nil, tagErr(b.tag, "min and max need a number, and this is %s (for lengths use minlen and maxlen)", describe(s))
		}
		n, err := number(v, typ)
		if err != nil {
			return nil, tagErr(b.tag, "%v", err)
		}
		s[b.key] = n
	}
	if lo, hi, ok := bounds(s["minimum"], s["maximum"]); ok && lo > hi {
		return nil, tagErr("min", "more than max %v", s["maximum"])
	}
	for _, b := range []struct{ tag, str, arr string }{{"minlen", "minLength", "minItems"}, {"maxlen", "maxLength", "maxItems"}} {
		v, ok := f.tag.Lookup(b.tag)
		if !ok {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return nil, tagErr(b.tag, "not a length (a whole number, 0 or more)")
		}
		switch typ {
		case "string":
			s[b.str] = n
		case "array":
			s[b.arr] = n
		default:
			return nil, tagErr(b.tag, "minlen and maxlen need a string or an array, and this is %s (for numbers use min and max)", describe(s))
		}
	}
	for _, b := range [][2]string{{"minLength", "maxLength"}, {"minItems", "maxItems"}} {
		if lo, hi, ok := bounds(s[b[0]], s[b[1]]); ok && lo > hi {
			return nil, tagErr("minlen", "more than maxlen %v", s[b[1]])
		}
	}
	if v, ok := f.tag.Lookup("nullable"); ok {
		null, err := strconv.ParseBool(v)
		if err != nil {
			return nil, tagErr("nullable", "want true or false")
		}
		if null {
			switch f.typ.Kind() {
			case reflect.Pointer, reflect.Slice, reflect.Map, reflect.Interface:
			default:
				return nil, tagErr("nullable", "a field of type %s is never null; make it a pointer", f.typ)
			}
			s = nullable(s)
		}
	}
	if v, ok := f.tag.Lookup("doc"); ok && v != "" {
		s["description"] = v
	}
	return s, nil
}

// nullable returns s widened to admit null.
func nullable(s map[string]any) map[string]any {
	if t, ok := s["type"].(string); ok {
		s["type"] = []any{t, "null"}
		if e, ok := s["enum"].([]any); ok {
			s["enum"] = append(e, nil)
		}
		return s
	}
	if len(s) == 0 {
		return s // {} admits null already
	}
	return map[string]any{"anyOf": []any{s, map[string]any{"type": "null"}}}
}

// describe names the kind of value schema s admits, for error messages.
func describe(s map[string]any) string {
	if ref, ok := s["$ref"].(string); ok {
		return strings.TrimPrefix(ref, "#/")
	}
	switch t, _ := s["type"].(string); t {
	case "":
		if len(s) == 0 {
			return "any JSON value"
		}
		return "a union"
	case "array", "integer", "object":
		return "an " + t
	default:
		return "a " + t
	}
}

// enumValues parses a comma-separated enum tag as values of jsonType.
func enumValues(tag, jsonType string) ([]any, error) {
	var out []any
	for v := range strings.SplitSeq(tag, ",") {
		v = strings.TrimSpace(v)
		if v == "" {
			return nil, fmt.Errorf("empty value")
		}
		switch jsonType {
		case "string":
			out = append(out, v)
		case "boolean":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return nil, fmt.Errorf("%q is not a boolean", v)
			}
			out = append(out, b)
		case "integer", "number":
			n, err := number(v, jsonType)
			if err != nil {
				return nil, err
			}
			out = append(out, n)
		default:
			return nil, fmt.Errorf("an enum needs a string, number or boolean, not %s", jsonType)
		}
	}
	return out, nil
}

// number parses s as a JSON integer or number.
func number(s, jsonType string) (any, error) {
	if jsonType == "integer" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%q is not an integer", s)
		}
		return n, nil
	}
	n, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return nil, fmt.Errorf("%q is not a number", s)
	}
	return n, nil
}

// bounds returns lo and hi as float64 when both are set.
func bounds(lo, hi any) (float64, float64, bool) {
	l, ok1 := toFloat(lo)
	h, ok2 := toFloat(hi)
	return l, h, ok1 && ok2
}

func toFloat(v any) (float64, bool) {
	switch n := v.(type) {
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case float64:
		return n, true
	}
	return 0, false
}

// componentName makes a components/schemas key of a Go type name, dropping
// package paths from the type arguments of a generic instantiation:
// "Page[github.com/x/api.Instance]" is "PageInstance", "Page[[]api.Item]"
// is "PageListItem" and "Set[map[string]int]" is "SetMapStringInt".
func componentName(goName string) string {
	var b strings.Builder
	word := func(s string) {
		if i := strings.LastIndexByte(s, '/'); i >= 0 {
			s = s[i+1:]
		}
		if i := strings.LastIndexByte(s, '.'); i >= 0 {
			s = s[i+1:]
		}
		if s == "" {
			return
		}
		if b.Len() > 0 {
			r, n := utf8.DecodeRuneInString(s)
			s = string(unicode.ToUpper(r)) + s[n:]
		}
		b.WriteString(s)
	}
	start := 0
	for i := 0; i < len(goName); i++ {
		switch goName[i] {
		case '[':
			word(goName[start:i])
			if i+1 < len(goName) && goName[i+1] == ']' {
				word("List")
				i++
			}
			start = i + 1
		case ']', ',', ' ', '*':
			word(goName[start:i])
			start = i + 1
		}
	}
	word(goName[start:])
	return b.String()
}

// deepClone copies the maps and slices of a schema so that tags applied
// to one field do not change another's.
func deepClone(v map[string]any) map[string]any {
	out := make(map[string]any, len(v))
	for k, x := range v {
		out[k] = cloneValue(x)
	}
	return out
}

func cloneValue(v any) any {
	switch x := v.(type) {
	case map[string]any:
		return deepClone(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = cloneValue(e)
		}
		return out
	}
	return v
}
