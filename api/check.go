package api

import (
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// Check validates a request value against the constraints in its struct
// tags — pattern, enum, min, max, minlen, maxlen, maxitems — the same tags
// the OpenAPI document is generated from, so what the document promises
// is what the server enforces. Fields without omitempty must be set.
// It returns one FieldError per bad field, named by JSON path.
func Check(v any) []FieldError {
	var errs []FieldError
	check(reflect.ValueOf(v), "", &errs)
	return errs
}

// NamePattern is the shape of every name the control plane writes into the
// cloud's spec: a tenant's, and its networks', instances' and catalogue
// templates'. It is narrower than the spec's own rule (lower case; single
// dashes, since "--" joins a tenant's name to its object's there); the
// server also checks each spec name it derives — with the tenant's name —
// against the spec's rule before it records a request, so that what the
// API accepts the cloud accepts.
const NamePattern = `^[a-z](-?[a-z0-9])*$`

// nameProblem says why s, not empty, does not match NamePattern.
func nameProblem(s string) string {
	why := func() string {
		switch {
		case s[0] < 'a' || s[0] > 'z':
			return "it must start with a lower-case letter"
		case strings.HasSuffix(s, "-"):
			return "it must not end in '-'"
		case strings.Contains(s, "--"):
			return `it must not hold "--", which joins a tenant's name to its object's in the cloud's spec`
		}
		for _, r := range s {
			if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '-' {
				return fmt.Sprintf("it may hold only lower-case letters, digits and '-', not %q", r)
			}
		}
		return ""
	}()
	if why == "" {
		return "must match " + NamePattern
	}
	return "must match " + NamePattern + " (" + why + ")"
}

var patterns sync.Map // pattern -> *regexp.Regexp

func compiled(p string) *regexp.Regexp {
	if re, ok := patterns.Load(p); ok {
		return re.(*regexp.Regexp)
	}
	re := regexp.MustCompile(p)
	patterns.Store(p, re)
	return re
}

func check(v reflect.Value, path string, errs *[]FieldError) {
	for v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return
		}
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return
	}
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		fv := v.Field(i)
		if f.Anonymous {
			check(fv, path, errs)
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		p := name
		if path != "" {
			p = path + "." + name
		}
		bad := func(msg string) { *errs = append(*errs, FieldError{Field: p, Message: msg}) }
		optional := strings.Contains(opts, "omitempty") || f.Type.Kind() == reflect.Pointer
		if fv.Kind() == reflect.Pointer {
			if fv.IsNil() {
				continue
			}
			fv = fv.Elem()
		}
		switch fv.Kind() {
		case reflect.String, reflect.Slice, reflect.Map:
			if fv.Len() == 0 {
				if !optional {
					bad("is required")
				}
				continue
			}
		case reflect.Int, reflect.Int32, reflect.Int64:
			if optional && fv.Int() == 0 {
				continue
			}
		}
		switch fv.Kind() {
		case reflect.String:
			s := fv.String()
			if !utf8.ValidString(s) {
				bad("is not valid UTF-8")
				continue
			}
			n := utf8.RuneCountInString(s)
			if m, ok := intTag(f, "minlen"); ok && int64(n) < m {
				bad("must be at least " + strconv.FormatInt(m, 10) + " characters")
			}
			if m, ok := intTag(f, "maxlen"); ok && int64(n) > m {
				bad("must be at most " + strconv.FormatInt(m, 10) + " characters")
			}
			if e := f.Tag.Get("enum"); e != "" && !slices.Contains(strings.Split(e, ","), s) {
				bad("must be one of " + strings.ReplaceAll(e, ",", ", "))
			}
			if pat := f.Tag.Get("pattern"); pat != "" && !compiled(pat).MatchString(s) {
				if pat == NamePattern {
					bad(nameProblem(s))
				} else {
					bad("must match " + pat)
				}
			}
		case reflect.Int, reflect.Int32, reflect.Int64:
			n := fv.Int()
			if m, ok := intTag(f, "min"); ok && n < m {
				bad("must be at least " + strconv.FormatInt(m, 10))
			}
			if m, ok := intTag(f, "max"); ok && n > m {
				bad("must be at most " + strconv.FormatInt(m, 10))
			}
		case reflect.Slice:
			if m, ok := intTag(f, "maxitems"); ok && int64(fv.Len()) > m {
				bad("must have at most " + strconv.FormatInt(m, 10) + " items")
			}
		case reflect.Struct:
			check(fv, p, errs)
		}
	}
}

func intTag(f reflect.StructField, key string) (int64, bool) {
	s := f.Tag.Get(key)
	if s == "" {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}
