package spec

import (
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"
)

// The decoder walks yaml.v3's node tree instead of using yaml.Unmarshal so
// that it can be strict (unknown keys, wrong types, duplicate keys), keep
// going after an error to report every problem in one run, and remember the
// position of every object and field for later validation messages.

// valueDecoder is implemented by types with their own YAML syntax.
type valueDecoder interface {
	decodeNode(n *yaml.Node) error
}

// shorthandDecoder is implemented by mapping types that also accept a
// scalar shorthand; handled is false when n is not such a shorthand.
type shorthandDecoder interface {
	decodeShorthand(n *yaml.Node) (handled bool, err error)
}

var (
	metaType      = reflect.TypeFor[Meta]()
	namePattern   = regexp.MustCompile(`^[A-Za-z]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)
	domainPattern = regexp.MustCompile(`^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)
)

// fieldInfo is what the decoder and the schema generator know about one
// struct field, read once from its tags.
type fieldInfo struct {
	key      string
	index    int
	required bool
	enum     []string
	pattern  string
	min, max *int
	doc      string
}

type structInfo struct {
	fields []fieldInfo
	byKey  map[string]int // key -> position in fields
	meta   int            // index of the embedded Meta, or -1
}

var structInfos sync.Map // reflect.Type -> *structInfo

func infoFor(t reflect.Type) *structInfo {
	if si, ok := structInfos.Load(t); ok {
		return si.(*structInfo)
	}
	si := &structInfo{byKey: map[string]int{}, meta: -1}
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Type == metaType && f.Anonymous {
			si.meta = i
			continue
		}
		key := f.Tag.Get("yaml")
		if key == "" || key == "-" {
			continue
		}
		fi := fieldInfo{key: key, index: i, required: f.Tag.Get("required") == "true", pattern: f.Tag.Get("pattern"), doc: f.Tag.Get("doc")}
		if e := f.Tag.Get("enum"); e != "" {
			fi.enum = strings.Split(e, ",")
		}
		if v, err := strconv.Atoi(f.Tag.Get("min")); err == nil {
			fi.min = &v
		}
		if v, err := strconv.Atoi(f.Tag.Get("max")); err == nil {
			fi.max = &v
		}
		si.byKey[key] = len(si.fields)
		si.fields = append(si.fields, fi)
	}
	structInfos.Store(t, si)
	return si
}

type decoder struct {
	file  string
	diags *Diagnostics

	// Alias accounting: every alias is decoded again where it is used, so a
	// few kilobytes of nested aliases could expand into billions of values.
	// Like yaml.v3's own decoder, refuse a document in which nearly all of
	// the work is expanding aliases.
	decodes, aliased, aliasDepth int
	aliasBomb                    bool
}

// spend accounts for n decoded values and reports whether decoding may go on.
func (d *decoder) spend(node *yaml.Node, n int) bool {
	if d.aliasBomb {
		return false
	}
	d.decodes += n
	if d.aliasDepth > 0 {
		d.aliased += n
	}
	if d.aliased > 100 && d.decodes > 1000 && float64(d.aliased)/float64(d.decodes) > allowedAliasRatio(d.decodes) {
		d.aliasBomb = true
		d.errorf(node, "the document expands aliases excessively (%d values, %d of them through aliases); write the values out or use fewer nested aliases", d.decodes, d.aliased)
		return false
	}
	return true
}

// allowedAliasRatio is yaml.v3's: up to 99% of small documents may come
// from aliases, falling to 10% at four million decoded values.
func allowedAliasRatio(decodes int) float64 {
	const low, high = 400_000, 4_000_000
	switch {
	case decodes <= low:
		return 0.99
	case decodes >= high:
		return 0.10
	default:
		return 0.99 - 0.89*float64(decodes-low)/float64(high-low)
	}
}

func (d *decoder) pos(n *yaml.Node) Pos { return Pos{File: d.file, Line: n.Line, Col: n.Column} }

func (d *decoder) errorf(n *yaml.Node, format string, args ...any) {
	d.diags.Errorf(d.pos(n), format, args...)
}

// describe names a node's kind and value for error messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!null":
			return "nothing (null)"
		case "!!bool":
			return "boolean " + n.Value
		case "!!int", "!!float":
			return "number " + n.Value
		default:
			return strconv.Quote(n.Value)
		}
	}
	return "an unexpected YAML node"
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

// decode stores n into v, reporting problems instead of stopping at them.
// what names the thing being decoded for messages ("zone \"mgmt\"").
func (d *decoder) decode(n *yaml.Node, v reflect.Value, what string) {
	at := n // an alias is blamed where it is used
	if n.Kind == yaml.AliasNode {
		for n.Kind == yaml.AliasNode {
			n = n.Alias
		}
		d.aliasDepth++
		defer func() { d.aliasDepth-- }()
	}
	if !d.spend(at, 1) {
		return
	}
	if v.CanAddr() {
		if sd, ok := v.Addr().Interface().(shorthandDecoder); ok {
			handled, err := sd.decodeShorthand(n)
			if err != nil {
				d.errorf(n, "%s: %v", what, err)
			}
			if handled {
				d.setMeta(n, v)
				return
			}
		}
		if vd, ok := v.Addr().Interface().(valueDecoder); ok {
			if n.Kind == yaml.SequenceNode && !d.spend(n, len(n.Content)) {
				return
			}
			if err := vd.decodeNode(n); err != nil {
				d.errorf(n, "%s: %v", what, err)
			}
			return
		}
	}
	switch v.Kind() {
	case reflect.Pointer:
		if isNull(n) && v.Type().Elem().Kind() != reflect.Struct {
			return
		}
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(n, v.Elem(), what)
	case reflect.Struct:
		d.decodeStruct(n, v, what)
	case reflect.Map:
		d.decodeMap(n, v, what)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.errorf(n, "%s: expected a list, got %s", what, describe(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, it := range n.Content {
			d.decode(it, s.Index(i), fmt.Sprintf("%s[%d]", what, i))
		}
		v.Set(s)
	case reflect.String:
		if n.Kind != yaml.ScalarNode || n.Tag == "!!bool" || n.Tag == "!!null" {
			d.errorf(n, "%s: expected a string, got %s", what, describe(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Int:
		var i int
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || n.Decode(&i) != nil {
			d.errorf(n, "%s: expected an integer, got %s", what, describe(n))
			return
		}
		v.SetInt(int64(i))
	case reflect.Bool:
		// Decode, not a comparison with "true": an explicit "!!bool yes"
		// must be refused, not silently read as false.
		var b bool
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" || n.Decode(&b) != nil {
			d.errorf(n, "%s: expected true or false, got %s", what, describe(n))
			return
		}
		v.SetBool(b)
	default:
		panic(fmt.Sprintf("spec: no YAML decoding for %s", v.Type()))
	}
}

func (d *decoder) setMeta(n *yaml.Node, v reflect.Value) {
	if v.Kind() != reflect.Struct {
		return
	}
	if si := infoFor(v.Type()); si.meta >= 0 {
		m := v.Field(si.meta).Addr().Interface().(*Meta)
		if m.Pos.Line == 0 {
			m.Pos = d.pos(n)
		}
	}
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, what string) {
	si := infoFor(v.Type())
	var meta *Meta
	if si.meta >= 0 {
		meta = v.Field(si.meta).Addr().Interface().(*Meta)
		if meta.Pos.Line == 0 {
			meta.Pos = d.pos(n)
		}
	}
	if isNull(n) {
		n = &yaml.Node{Kind: yaml.MappingNode, Line: n.Line, Column: n.Column}
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, "%s: expected a mapping, got %s", what, describe(n))
		return
	}
	seen := make(map[string]*yaml.Node, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if first, dup := seen[k.Value]; dup {
			d.errorf(k, "%s: field %q given twice (first at line %d)", what, k.Value, first.Line)
			continue
		}
		seen[k.Value] = k
		idx, ok := si.byKey[k.Value]
		if !ok && !isNull(val) {
			if bh, isBH := v.Addr().Interface().(blockHolder); isBH && bh.takeBlock(d, k, val, what) {
				if meta != nil {
					meta.setField(k.Value, d.pos(val))
				}
				continue
			}
		}
		if !ok {
			d.errorf(k, "%s: unknown field %q%s", what, k.Value, suggest(k.Value, si))
			continue
		}
		fi := si.fields[idx]
		if isNull(val) {
			continue // an empty value is the same as leaving the field out
		}
		if meta != nil {
			meta.setField(fi.key, d.pos(val))
		}
		fv := v.Field(fi.index)
		before := len(*d.diags)
		child := what + "." + fi.key
		if what == "spec" {
			child = fi.key
		}
		d.decode(val, fv, child)
		if len(*d.diags) == before {
			d.checkField(val, fv, fi, what)
		}
	}
	for _, fi := range si.fields {
		if !fi.required {
			continue
		}
		if k := seen[fi.key]; k == nil {
			d.errorf(n, "%s: missing required field %q", what, fi.key)
		} else if isNullOrMissing(n, fi.key) {
			d.errorf(k, "%s: field %q is empty", what, fi.key)
		}
	}
	if ad, ok := v.Addr().Interface().(afterDecoder); ok {
		ad.afterDecode(d, n, what)
	}
}

func isNullOrMissing(n *yaml.Node, key string) bool {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return isNull(n.Content[i+1])
		}
	}
	return true
}

// checkField applies a field's enum, pattern and bounds; enums are matched
// without regard to case and stored in their canonical spelling.
func (d *decoder) checkField(n *yaml.Node, fv reflect.Value, fi fieldInfo, what string) {
	if fv.Kind() == reflect.String {
		s := fv.String()
		if fi.enum != nil {
			i := slices.IndexFunc(fi.enum, func(e string) bool { return strings.EqualFold(e, s) })
			if i < 0 {
				d.errorf(n, "%s.%s: %q is not one of %s", what, fi.key, s, strings.Join(fi.enum, ", "))
				return
			}
			fv.SetString(fi.enum[i])
		}
		if err := checkPattern(fi.pattern, s); err != nil {
			d.errorf(n, "%s.%s: %v", what, fi.key, err)
		}
	}
	if fv.Kind() == reflect.Int || (fv.Kind() == reflect.Pointer && fv.Elem().Kind() == reflect.Int) {
		i := int(reflect.Indirect(fv).Int())
		if fi.min != nil && i < *fi.min || fi.max != nil && i > *fi.max {
			d.errorf(n, "%s.%s: %d is out of range%s", what, fi.key, i, bounds(fi))
		}
	}
}

func bounds(fi fieldInfo) string {
	switch {
	case fi.min != nil && fi.max != nil:
		return fmt.Sprintf(" %d-%d", *fi.min, *fi.max)
	case fi.min != nil:
		return fmt.Sprintf(" (at least %d)", *fi.min)
	case fi.max != nil:
		return fmt.Sprintf(" (at most %d)", *fi.max)
	}
	return ""
}

func checkPattern(pattern, s string) error {
	switch pattern {
	case "name":
		if err := CheckName(s); err != nil {
			return fmt.Errorf("%q is not a valid name: %w", s, err)
		}
	case "domain":
		if len(s) > 253 || !domainPattern.MatchString(s) {
			return fmt.Errorf("%q is not a valid DNS name", s)
		}
	}
	return nil
}

func (d *decoder) decodeMap(n *yaml.Node, v reflect.Value, what string) {
	if n.Kind != yaml.MappingNode {
		d.errorf(n, "%s: expected a mapping of names to objects, got %s", what, describe(n))
		return
	}
	if v.IsNil() {
		v.Set(reflect.MakeMapWithSize(v.Type(), len(n.Content)/2))
	}
	elem := v.Type().Elem()
	seen := make(map[string]int, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.errorf(k, "%s: names must be strings, got %s", what, describe(k))
			continue
		}
		if line, dup := seen[k.Value]; dup {
			d.errorf(k, "%s: %q defined twice (first at line %d)", what, k.Value, line)
			continue
		}
		seen[k.Value] = k.Line
		if err := CheckName(k.Value); err != nil {
			// Named as the object it would have been, so that the finding is
			// charged to it (Diagnostic.Object).
			d.errorf(k, "%s %q: not a valid name: %v", singular(what), k.Value, err)
			continue
		}
		ev := reflect.New(elem).Elem()
		if elem.Kind() == reflect.Pointer {
			ev.Set(reflect.New(elem.Elem()))
			if si := infoFor(elem.Elem()); si.meta >= 0 {
				m := ev.Elem().Field(si.meta).Addr().Interface().(*Meta)
				m.Name, m.Pos = k.Value, d.pos(k)
			}
		}
		d.decode(val, ev, fmt.Sprintf("%s %q", singular(what), k.Value))
		v.SetMapIndex(reflect.ValueOf(k.Value), ev)
	}
}

// singular turns a section name into the name of one of its entries.
func singular(section string) string {
	switch section {
	case "flavors", "templates", "groups", "instances", "routes", "roles", "sites", "zones":
		return strings.TrimSuffix(section, "s")
	}
	return section
}

// suggest proposes the closest known field for a misspelt one.
func suggest(key string, si *structInfo) string {
	best, bestD := "", 3
	for _, fi := range si.fields {
		if dist := editDistance(strings.ToLower(key), fi.key); dist < bestD {
			best, bestD = fi.key, dist
		}
	}
	if best != "" {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	keys := make([]string, len(si.fields))
	for i, fi := range si.fields {
		keys[i] = fi.key
	}
	return " (known fields: " + strings.Join(keys, ", ") + ")"
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// ValidDomain reports whether s is a valid DNS name.
func ValidDomain(s string) bool { return len(s) <= 253 && domainPattern.MatchString(s) }
