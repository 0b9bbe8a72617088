package openapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Validate checks the internal consistency of an OpenAPI 3.1 document:
// every $ref resolves within it, each operation declares exactly the path
// parameters of its path template (as required), no two paths differ only
// in parameter names, operationIds are unique, every operation has
// responses and every response a description, and security requirements
// name declared schemes. It is no full validator of the specification; it
// catches what a generator bug or a hand edit would most likely break.
// Each finding names where in the document it is.
func Validate(doc []byte) error {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var root any
	if err := dec.Decode(&root); err != nil {
		return fmt.Errorf("openapi: not JSON: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("openapi: data after the document")
	}
	top, ok := root.(map[string]any)
	if !ok {
		return errors.New("openapi: the document is not a JSON object")
	}
	c := &checker{root: root}
	c.header(top)
	c.refs(root, "")
	c.components(top)
	c.paths(top)
	return errors.Join(c.errs...)
}

type checker struct {
	root any
	errs []error
}

func (c *checker) fail(at, format string, args ...any) {
	if at == "" {
		at = "document"
	}
	c.errs = append(c.errs, fmt.Errorf("openapi: %s: %s", at, fmt.Sprintf(format, args...)))
}

var identifier = regexp.MustCompile(`^[A-Za-z_$][A-Za-z0-9_$-]*$`)

// child is the location of key k under at, e.g. paths["/v1/x"].get.
func child(at, k string) string {
	if identifier.MatchString(k) {
		if at == "" {
			return k
		}
		return at + "." + k
	}
	return fmt.Sprintf("%s[%q]", at, k)
}

func (c *checker) header(top map[string]any) {
	if v, _ := top["openapi"].(string); !strings.HasPrefix(v, "3.1.") {
		c.fail("openapi", "version %q is not 3.1.x", top["openapi"])
	}
	info, ok := top["info"].(map[string]any)
	if !ok {
		c.fail("info", "missing")
		return
	}
	for _, k := range []string{"title", "version"} {
		if _, ok := info[k].(string); !ok {
			c.fail("info", "no %s", k)
		}
	}
}

// refs checks that every $ref under v resolves.
func (c *checker) refs(v any, at string) {
	switch x := v.(type) {
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(x)) {
			if ref, ok := x[k].(string); ok && k == "$ref" {
				if _, err := c.resolve(ref); err != nil {
					c.fail(at, "$ref %q: %v", ref, err)
				}
				continue
			}
			c.refs(x[k], child(at, k))
		}
	case []any:
		for i, e := range x {
			c.refs(e, fmt.Sprintf("%s[%d]", at, i))
		}
	}
}

var unescapePointer = strings.NewReplacer("~1", "/", "~0", "~")

// resolve follows a reference within the document (a URI fragment holding
// a JSON pointer).
func (c *checker) resolve(ref string) (any, error) {
	frag, ok := strings.CutPrefix(ref, "#")
	if !ok {
		return nil, errors.New("not a reference within the document")
	}
	frag, err := url.PathUnescape(frag)
	if err != nil {
		return nil, err
	}
	if frag == "" {
		return c.root, nil
	}
	if !strings.HasPrefix(frag, "/") {
		return nil, errors.New("not a JSON pointer")
	}
	cur := c.root
	for tok := range strings.SplitSeq(frag[1:], "/") {
		tok = unescapePointer.Replace(tok)
		switch x := cur.(type) {
		case map[string]any:
			next, ok := x[tok]
			if !ok {
				return nil, fmt.Errorf("no %q", tok)
			}
			cur = next
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(x) {
				return nil, fmt.Errorf("no element %q", tok)
			}
			cur = x[i]
		default:
			return nil, fmt.Errorf("%q is inside a value that is neither object nor array", tok)
		}
	}
	return cur, nil
}

// object returns v as an object, following $refs (a few deep, so that a
// cycle of them ends).
func (c *checker) object(v any) (map[string]any, bool) {
	for range 32 {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		ref, ok := m["$ref"].(string)
		if !ok {
			return m, true
		}
		if v, ok = c.resolveOK(ref); !ok {
			return m, true // reported by refs
		}
	}
	return nil, false
}

func (c *checker) resolveOK(ref string) (any, bool) {
	v, err := c.resolve(ref)
	return v, err == nil
}

var componentKinds = []string{"schemas", "responses", "parameters", "examples", "requestBodies", "headers", "securitySchemes", "links", "callbacks", "pathItems"}

func (c *checker) components(top map[string]any) {
	comps, _ := top["components"].(map[string]any)
	for _, kind := range componentKinds {
		m, _ := comps[kind].(map[string]any)
		for _, k := range slices.Sorted(maps.Keys(m)) {
			if !componentKey.MatchString(k) {
				c.fail(child("components."+kind, k), "name has characters other than letters, digits, '.', '-' and '_'")
			}
		}
	}
}

var (
	templateParam = regexp.MustCompile(`\{([^{}]*)\}`)
	responseKey   = regexp.MustCompile(`^([1-5][0-9][0-9]|[1-5]XX|default)$`)
	lowerMethods  = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}
)

func (c *checker) paths(top map[string]any) {
	schemes := map[string]bool{}
	if comps, ok := top["components"].(map[string]any); ok {
		if m, ok := comps["securitySchemes"].(map[string]any); ok {
			for k := range m {
				schemes[k] = true
			}
		}
	}
	if sec, ok := top["security"]; ok {
		c.security(sec, "security", schemes)
	}
	raw, ok := top["paths"]
	if !ok {
		return // a 3.1 document may have only webhooks or components
	}
	paths, ok := raw.(map[string]any)
	if !ok {
		c.fail("paths", "not an object")
		return
	}
	ids := map[string]string{}    // operationId → where
	shapes := map[string]string{} // path with parameter names blanked → path
	for _, p := range slices.Sorted(maps.Keys(paths)) {
		at := child("paths", p)
		if !strings.HasPrefix(p, "/") {
			c.fail(at, "path does not begin with /")
		}
		var names []string
		for _, m := range templateParam.FindAllStringSubmatch(p, -1) {
			switch {
			case m[1] == "":
				c.fail(at, "a path parameter without a name")
			case slices.Contains(names, m[1]):
				c.fail(at, "path parameter %q twice", m[1])
			default:
				names = append(names, m[1])
			}
		}
		shape := templateParam.ReplaceAllString(p, "{}")
		if other, ok := shapes[shape]; ok {
			c.fail(at, "the same path as %q but for parameter names", other)
		}
		shapes[shape] = p
		item, ok := c.object(paths[p])
		if !ok {
			c.fail(at, "not an object")
			continue
		}
		common := c.params(item["parameters"], child(at, "parameters"))
		for _, method := range lowerMethods {
			raw, ok := item[method]
			if !ok {
				continue
			}
			opAt := child(at, method)
			op, ok := raw.(map[string]any)
			if !ok {
				c.fail(opAt, "not an object")
				continue
			}
			c.operation(op, opAt, names, common, ids, schemes)
		}
	}
}

// params returns the parameters in list by "in" and name, reporting
// malformed and repeated ones.
func (c *checker) params(list any, at string) map[[2]string]map[string]any {
	out := map[[2]string]map[string]any{}
	if list == nil {
		return out
	}
	arr, ok := list.([]any)
	if !ok {
		c.fail(at, "not an array")
		return out
	}
	for i, raw := range arr {
		pAt := fmt.Sprintf("%s[%d]", at, i)
		p, ok := c.object(raw)
		if !ok {
			c.fail(pAt, "not an object")
			continue
		}
		name, _ := p["name"].(string)
		in, _ := p["in"].(string)
		if name == "" {
			c.fail(pAt, "no name")
			continue
		}
		if !slices.Contains([]string{"path", "query", "header", "cookie"}, in) {
			c.fail(pAt, "parameter %q: in is %q, not path, query, header or cookie", name, in)
			continue
		}
		_, schema := p["schema"]
		_, content := p["content"]
		if schema == content {
			c.fail(pAt, "parameter %q: needs exactly one of schema and content", name)
		}
		key := [2]string{in, name}
		if _, dup := out[key]; dup {
			c.fail(pAt, "%s parameter %q twice", in, name)
		}
		out[key] = p
	}
	return out
}

func (c *checker) operation(op map[string]any, at string, names []string, common map[[2]string]map[string]any,
	ids map[string]string, schemes map[string]bool) {
	if raw, ok := op["operationId"]; ok {
		id, _ := raw.(string)
		if other, dup := ids[id]; dup {
			c.fail(at, "operationId %q also used at %s", id, other)
		} else {
			ids[id] = at
		}
	}

	params := maps.Clone(common)
	maps.Copy(params, c.params(op["parameters"], child(at, "parameters")))
	for _, key := range slices.SortedFunc(maps.Keys(params), func(a, b [2]string) int { return slices.Compare(a[:], b[:]) }) {
		p := params[key]
		if key[0] != "path" {
			continue
		}
		if !slices.Contains(names, key[1]) {
			c.fail(at, "path parameter %q is not in the path template", key[1])
		}
		if req, _ := p["required"].(bool); !req {
			c.fail(at, "path parameter %q is not required", key[1])
		}
	}
	for _, n := range names {
		if _, ok := params[[2]string{"path", n}]; !ok {
			c.fail(at, "path parameter %q is not declared", n)
		}
	}

	respAt := child(at, "responses")
	resps, ok := op["responses"].(map[string]any)
	if !ok || len(resps) == 0 {
		c.fail(respAt, "no responses")
	}
	for _, code := range slices.Sorted(maps.Keys(resps)) {
		rAt := child(respAt, code)
		if !responseKey.MatchString(code) {
			c.fail(rAt, "not a status code, a range such as 4XX, or default")
		}
		r, ok := c.object(resps[code])
		if !ok {
			c.fail(rAt, "not an object")
			continue
		}
		if _, ok := r["description"].(string); !ok {
			c.fail(rAt, "no description")
		}
	}

	if sec, ok := op["security"]; ok {
		c.security(sec, child(at, "security"), schemes)
	}
}

func (c *checker) security(sec any, at string, schemes map[string]bool) {
	reqs, ok := sec.([]any)
	if !ok {
		c.fail(at, "not an array")
		return
	}
	for i, raw := range reqs {
		req, ok := raw.(map[string]any)
		if !ok {
			c.fail(fmt.Sprintf("%s[%d]", at, i), "not an object")
			continue
		}
		for _, name := range slices.Sorted(maps.Keys(req)) {
			if !schemes[name] {
				c.fail(fmt.Sprintf("%s[%d]", at, i), "security scheme %q is not in components.securitySchemes", name)
			}
		}
	}
}
