package openapi

import (
	"cmp"
	"reflect"
	"slices"
	"strings"
	"unicode"
)

// field is one JSON member of a struct, chosen the way encoding/json
// chooses them, so that the schema describes what the server really sends.
type field struct {
	name   string // JSON member name
	goPath string // Go selector from the struct, e.g. "Meta.Created"
	index  []int
	typ    reflect.Type
	tag    reflect.StructTag
	tagged bool // the name came from a json tag
	omit   bool // omitempty or omitzero
	quoted bool // ",string": a number or boolean sent inside a JSON string
	// viaPointer: reached through an embedded pointer, which encoding/json
	// skips when nil, so the member may be absent.
	viaPointer bool
}

// required reports whether the member is always present. Pointers count
// as optional even without omitempty: a nil one carries no value.
func (f field) required() bool {
	return !f.omit && !f.viaPointer && f.typ.Kind() != reflect.Pointer
}

// jsonFields returns the JSON members of struct type t in field order,
// following encoding/json: exported fields, "-" skipped, embedded structs
// flattened breadth first, and of several fields with one name the
// shallowest wins, then the tagged one, and an unresolved tie drops them all.
func jsonFields(t reflect.Type) []field {
	return dominant(candidates(t))
}

// embedded is a struct whose fields are promoted into the walked one.
type embedded struct {
	typ        reflect.Type
	index      []int
	goPath     string
	viaPointer bool
}

// candidates walks t and its embedded structs breadth first and returns
// every member that could carry each JSON name, before ties are resolved.
func candidates(t reflect.Type) []field {
	var current []embedded
	next := []embedded{{typ: t}}
	var count, nextCount map[reflect.Type]int
	visited := map[reflect.Type]bool{}
	var fields []field

	for len(next) > 0 {
		current, next = next, current[:0]
		count, nextCount = nextCount, map[reflect.Type]int{}
		for _, e := range current {
			if visited[e.typ] {
				continue
			}
			visited[e.typ] = true
			for i := range e.typ.NumField() {
				f, inner, ok := member(e, e.typ.Field(i), i)
				switch {
				case !ok:
				case inner == nil:
					fields = append(fields, f)
					if count[e.typ] > 1 {
						// The same struct embedded twice at this depth: a
						// second copy makes the tie in dominant drop the name.
						fields = append(fields, f)
					}
				default:
					nextCount[inner.typ]++
					if nextCount[inner.typ] == 1 {
						next = append(next, *inner)
					}
				}
			}
		}
	}
	return fields
}

// member reads field i of the struct e: a JSON member, or an embedded
// struct whose fields are promoted (inner), or nothing (ok false).
func member(e embedded, sf reflect.StructField, i int) (f field, inner *embedded, ok bool) {
	if sf.Anonymous {
		ft := sf.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		// An unexported embedded struct still promotes its exported fields.
		if !sf.IsExported() && ft.Kind() != reflect.Struct {
			return field{}, nil, false
		}
	} else if !sf.IsExported() {
		return field{}, nil, false
	}
	tag := sf.Tag.Get("json")
	if tag == "-" {
		return field{}, nil, false
	}
	name, opts, _ := strings.Cut(tag, ",")
	if !validTagName(name) {
		name = ""
	}
	index := append(slices.Clone(e.index), i)
	goPath := sf.Name
	if e.goPath != "" {
		goPath = e.goPath + "." + sf.Name
	}
	ft := sf.Type
	if ft.Name() == "" && ft.Kind() == reflect.Pointer {
		ft = ft.Elem()
	}
	if name == "" && sf.Anonymous && ft.Kind() == reflect.Struct {
		return field{}, &embedded{
			typ:        ft,
			index:      index,
			goPath:     goPath,
			viaPointer: e.viaPointer || sf.Type.Kind() == reflect.Pointer,
		}, true
	}
	f = field{
		name:       name,
		goPath:     goPath,
		index:      index,
		typ:        sf.Type,
		tag:        sf.Tag,
		tagged:     name != "",
		omit:       hasOption(opts, "omitempty") || hasOption(opts, "omitzero"),
		quoted:     hasOption(opts, "string") && quotable(ft.Kind()),
		viaPointer: e.viaPointer,
	}
	if f.name == "" {
		f.name = sf.Name
	}
	return f, nil, true
}

// quotable reports whether ",string" applies to a kind: encoding/json
// honours it only for scalars.
func quotable(k reflect.Kind) bool {
	switch k {
	case reflect.Bool, reflect.String, reflect.Float32, reflect.Float64,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return true
	}
	return false
}

// dominant keeps, of the candidates for each name, the one encoding/json
// uses: the shallowest, then the tagged one; an unresolved tie drops the
// name. The result is in field order.
func dominant(fields []field) []field {
	slices.SortStableFunc(fields, func(a, b field) int {
		if c := strings.Compare(a.name, b.name); c != 0 {
			return c
		}
		if c := cmp.Compare(len(a.index), len(b.index)); c != 0 {
			return c
		}
		if a.tagged != b.tagged {
			if a.tagged {
				return -1
			}
			return 1
		}
		return slices.Compare(a.index, b.index)
	})
	var out []field
	for i := 0; i < len(fields); {
		j := i + 1
		for j < len(fields) && fields[j].name == fields[i].name {
			j++
		}
		group := fields[i:j]
		if len(group) == 1 || len(group[0].index) < len(group[1].index) || group[0].tagged != group[1].tagged {
			out = append(out, group[0])
		}
		i = j
	}
	slices.SortFunc(out, func(a, b field) int { return slices.Compare(a.index, b.index) })
	return out
}

func hasOption(opts, want string) bool {
	for o := range strings.SplitSeq(opts, ",") {
		if o == want {
			return true
		}
	}
	return false
}

// validTagName is encoding/json's rule for a usable json tag name.
func validTagName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		switch {
		case strings.ContainsRune("!#$%&()*+-./:;<=>?@[]^_{|}~ ", c):
		case !unicode.IsLetter(c) && !unicode.IsDigit(c):
			return false
		}
	}
	return true
}
