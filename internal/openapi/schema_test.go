package openapi_test

import (
	"encoding/json"
	"maps"
	"net/http"
	"net/netip"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/openapi"
)

// The sample wire types cover each rule of the schema generator.

type Problem struct {
	Type     string `json:"type" format:"uri-reference" doc:"A URI naming the kind of problem."`
	Title    string `json:"title"`
	Status   int    `json:"status" min:"400" max:"599"`
	Detail   string `json:"detail,omitempty"`
	Instance string `json:"instance,omitempty"`
}

type Meta struct {
	Created time.Time         `json:"created" doc:"When it was made."`
	Labels  map[string]string `json:"labels,omitempty"`
	_       int               // unexported: not on the wire
}

// Extra is embedded through a pointer, so its members may be absent.
type Extra struct {
	Note string `json:"note"`
}

// Shadow's name loses to the shallower Sample.Name; deep is promoted.
type Shadow struct {
	Name string `json:"name" doc:"shadowed"`
	Deep string `json:"deep"`
}

// Left and Right tie on Tie, which drops it; Left's tagged Both wins.
type Left struct {
	Tie   string
	Alias string `json:"Both" doc:"from Left"`
}

type Right struct {
	Tie  string
	Both string
}

type Item struct {
	ID string `json:"id" format:"uuid"`
}

type Page[T any] struct {
	Items []T    `json:"items"`
	Next  string `json:"next,omitempty"`
}

type Node struct {
	Name     string `json:"name"`
	Children []Node `json:"children,omitempty"`
	Parent   *Node  `json:"parent,omitempty" nullable:"true"`
}

// Custom marshals itself and says how.
type Custom struct{ v string }

func (c Custom) MarshalJSON() ([]byte, error) { return json.Marshal(c.v) }

func (Custom) OpenAPISchema() map[string]any {
	return map[string]any{"type": "string", "description": "custom"}
}

type Sample struct {
	Meta
	*Extra
	Shadow
	Left
	Right
	Item `json:"item"` // tagged, so a member rather than flattened

	Name   string            `json:"name" doc:"Unique within the tenant." minlen:"1" maxlen:"63" pattern:"^[a-z][a-z0-9-]*$"`
	Size   int               `json:"size" min:"1" max:"1024"`
	Ratio  float64           `json:"ratio,omitempty" min:"0" max:"0.5"`
	Small  int32             `json:"small"`
	Count  uint16            `json:"count"`
	Big    uint64            `json:"big"`
	Single float32           `json:"single"`
	State  string            `json:"state" enum:"running,stopped"`
	Prio   int               `json:"prio" enum:"1, 2, 3"`
	Zones  []string          `json:"zones" enum:"a,b" maxlen:"2"`
	Blob   []byte            `json:"blob"`
	Raw    json.RawMessage   `json:"raw"`
	Any    any               `json:"any"`
	Addr   netip.Addr        `json:"addr"`
	Maybe  *string           `json:"maybe" nullable:"true"`
	Mode   *string           `json:"mode,omitempty" enum:"fast,slow" nullable:"true"`
	Opt    *int              `json:"opt"`
	Skip   string            `json:"-"`
	Dash   string            `json:"-,"` //nolint:staticcheck // SA5008: the member named "-" is the point
	Counts map[string]int64  `json:"counts"`
	ByPort map[uint16]string `json:"by_port"`
	Quoted int64             `json:"quoted,string"`
	Pair   [2]int            `json:"pair"`
	Anon   struct {
		X bool `json:"x"`
	} `json:"anon"`
	Page   Page[Item]   `json:"page"`
	Pages  []Page[Item] // untagged: the Go name
	Tree   *Node        `json:"tree,omitempty" doc:"A tree."`
	When   time.Time    `json:"when,omitzero"`
	ID     string       `json:"id" format:"uuid"`
	Custom Custom       `json:"custom"`
}

var info = openapi.Info{
	Title:       "Holdfast",
	Version:     "1.0.0",
	Description: "Test API.",
	Problem:     reflect.TypeFor[Problem](),
	Servers:     []string{"https://holdfast.example"},
}

// document generates the document of ops and decodes it for inspection.
func document(t *testing.T, ops ...openapi.Operation) map[string]any {
	t.Helper()
	out, err := openapi.Document(info, ops)
	if err != nil {
		t.Fatal(err)
	}
	if err := openapi.Validate(out); err != nil {
		t.Fatalf("Validate of a generated document: %v", err)
	}
	var doc map[string]any
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

// at walks doc by object keys and array indices (given as ints).
func at(t *testing.T, doc any, path ...any) any {
	t.Helper()
	cur := doc
	for i, k := range path {
		switch k := k.(type) {
		case string:
			m, ok := cur.(map[string]any)
			if !ok {
				t.Fatalf("%v: not an object", path[:i])
			}
			if cur, ok = m[k]; !ok {
				t.Fatalf("%v: no %q (have %v)", path[:i], k, slices.Sorted(maps.Keys(m)))
			}
		case int:
			a, ok := cur.([]any)
			if !ok || k >= len(a) {
				t.Fatalf("%v: no element %d", path[:i], k)
			}
			cur = a[k]
		}
	}
	return cur
}

// equalJSON fails unless got is structurally the JSON want.
func equalJSON(t *testing.T, what string, got any, want string) {
	t.Helper()
	var w any
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("%s: bad want: %v", what, err)
	}
	if !reflect.DeepEqual(got, w) {
		g, _ := json.Marshal(got)
		t.Errorf("%s:\n got %s\nwant %s", what, g, want)
	}
}

func sampleDoc(t *testing.T) map[string]any {
	return document(t, openapi.Operation{
		Method: http.MethodPost, Path: "/v1/samples", ID: "createSample", Summary: "Create a sample",
		Request: reflect.TypeFor[*Sample](), Response: reflect.TypeFor[Sample](), Status: http.StatusCreated,
	})
}

func TestSchemaProperties(t *testing.T) {
	doc := sampleDoc(t)
	props := at(t, doc, "components", "schemas", "Sample", "properties").(map[string]any)
	want := map[string]string{
		"created": `{"type":"string","format":"date-time","description":"When it was made."}`,
		"labels":  `{"type":"object","additionalProperties":{"type":"string"}}`,
		"note":    `{"type":"string"}`,
		"deep":    `{"type":"string"}`,
		"Both":    `{"type":"string","description":"from Left"}`,
		"item":    `{"$ref":"#/components/schemas/Item"}`,
		"name":    `{"type":"string","description":"Unique within the tenant.","minLength":1,"maxLength":63,"pattern":"^[a-z][a-z0-9-]*$"}`,
		"size":    `{"type":"integer","format":"int64","minimum":1,"maximum":1024}`,
		"ratio":   `{"type":"number","format":"double","minimum":0,"maximum":0.5}`,
		"small":   `{"type":"integer","format":"int32"}`,
		"count":   `{"type":"integer","format":"int32","minimum":0}`,
		"big":     `{"type":"integer","minimum":0}`,
		"single":  `{"type":"number","format":"float"}`,
		"state":   `{"type":"string","enum":["running","stopped"]}`,
		"prio":    `{"type":"integer","format":"int64","enum":[1,2,3]}`,
		"zones":   `{"type":"array","items":{"type":"string","enum":["a","b"]},"maxItems":2}`,
		"blob":    `{"type":"string","contentEncoding":"base64"}`,
		"raw":     `{}`,
		"any":     `{}`,
		"addr":    `{"type":"string"}`,
		"maybe":   `{"type":["string","null"]}`,
		"mode":    `{"type":["string","null"],"enum":["fast","slow",null]}`,
		"opt":     `{"type":"integer","format":"int64"}`,
		"-":       `{"type":"string"}`,
		"counts":  `{"type":"object","additionalProperties":{"type":"integer","format":"int64"}}`,
		"by_port": `{"type":"object","propertyNames":{"pattern":"^[0-9]+$"},"additionalProperties":{"type":"string"}}`,
		"quoted":  `{"type":"string","pattern":"^-?[0-9]+$"}`,
		"pair":    `{"type":"array","items":{"type":"integer","format":"int64"},"minItems":2,"maxItems":2}`,
		"anon":    `{"type":"object","properties":{"x":{"type":"boolean"}},"required":["x"]}`,
		"page":    `{"$ref":"#/components/schemas/PageItem"}`,
		"Pages":   `{"type":"array","items":{"$ref":"#/components/schemas/PageItem"}}`,
		"tree":    `{"$ref":"#/components/schemas/Node","description":"A tree."}`,
		"when":    `{"type":"string","format":"date-time"}`,
		"id":      `{"type":"string","format":"uuid"}`,
		"custom":  `{"$ref":"#/components/schemas/Custom"}`,
	}
	for name, w := range want {
		got, ok := props[name]
		if !ok {
			t.Errorf("no property %q", name)
			continue
		}
		equalJSON(t, name, got, w)
	}
	for name := range props {
		if _, ok := want[name]; !ok {
			t.Errorf("unexpected property %q (json:\"-\", a tie, or an unexported field leaked)", name)
		}
	}

	var required []string
	for _, r := range at(t, doc, "components", "schemas", "Sample", "required").([]any) {
		required = append(required, r.(string))
	}
	slices.Sort(required)
	wantRequired := []string{
		"-", "Both", "Pages", "addr", "anon", "any", "big", "blob", "by_port", "count", "counts", "created",
		"custom", "deep", "id", "item", "name", "page", "pair", "prio", "quoted", "raw", "single", "size",
		"small", "state", "zones",
	}
	if !slices.Equal(required, wantRequired) {
		t.Errorf("required:\n got %q\nwant %q", required, wantRequired)
	}
}

func TestSchemaComponents(t *testing.T) {
	schemas := at(t, sampleDoc(t), "components", "schemas").(map[string]any)
	want := map[string]string{
		"Problem": `{"type":"object","properties":{
			"type":{"type":"string","format":"uri-reference","description":"A URI naming the kind of problem."},
			"title":{"type":"string"},
			"status":{"type":"integer","format":"int64","minimum":400,"maximum":599},
			"detail":{"type":"string"},
			"instance":{"type":"string"}},
			"required":["type","title","status"]}`,
		"Item": `{"type":"object","properties":{"id":{"type":"string","format":"uuid"}},"required":["id"]}`,
		// A generic instantiation is named without package paths.
		"PageItem": `{"type":"object","properties":{
			"items":{"type":"array","items":{"$ref":"#/components/schemas/Item"}},
			"next":{"type":"string"}},"required":["items"]}`,
		// Recursion refers back to the component; nullable wraps a $ref.
		"Node": `{"type":"object","properties":{
			"name":{"type":"string"},
			"children":{"type":"array","items":{"$ref":"#/components/schemas/Node"}},
			"parent":{"anyOf":[{"$ref":"#/components/schemas/Node"},{"type":"null"}]}},
			"required":["name"]}`,
		"Custom": `{"type":"string","description":"custom"}`,
	}
	for name, w := range want {
		equalJSON(t, name, schemas[name], w)
	}
	got := slices.Sorted(maps.Keys(schemas))
	if wantNames := []string{"Custom", "Item", "Node", "PageItem", "Problem", "Sample"}; !slices.Equal(got, wantNames) {
		t.Errorf("components: got %q, want %q", got, wantNames)
	}
}

// A top-level body need not be a named struct.
func TestSchemaInlineBodies(t *testing.T) {
	doc := document(t, openapi.Operation{
		Method: http.MethodPut, Path: "/v1/labels", ID: "setLabels", Summary: "Set labels",
		Request:  reflect.TypeFor[map[string]string](),
		Response: reflect.TypeFor[[]Item](),
	})
	op := at(t, doc, "paths", "/v1/labels", "put")
	equalJSON(t, "request", at(t, op, "requestBody"),
		`{"required":true,"content":{"application/json":{"schema":{"type":"object","additionalProperties":{"type":"string"}}}}}`)
	equalJSON(t, "response", at(t, op, "responses", "200", "content"),
		`{"application/json":{"schema":{"type":"array","items":{"$ref":"#/components/schemas/Item"}}}}`)
}

// The members the schema lists are the ones encoding/json writes, and those
// it calls required are written even for a zero value.
func TestSchemaMatchesEncodingJSON(t *testing.T) {
	schema := at(t, sampleDoc(t), "components", "schemas", "Sample").(map[string]any)
	props := slices.Sorted(maps.Keys(schema["properties"].(map[string]any)))

	s, n := "x", 1
	full := Sample{
		Extra: &Extra{Note: "n"}, Ratio: 0.5, Maybe: &s, Mode: &s, Opt: &n, Tree: &Node{}, When: time.Now(),
		Meta: Meta{Labels: map[string]string{"a": "b"}}, Raw: json.RawMessage(`{}`),
	}
	if got := members(t, full); !slices.Equal(got, props) {
		t.Errorf("encoding/json writes %q\nthe schema lists %q", got, props)
	}

	zero := members(t, Sample{Raw: json.RawMessage(`null`)})
	for _, r := range schema["required"].([]any) {
		if !slices.Contains(zero, r.(string)) {
			t.Errorf("%q is required, yet a zero Sample has no such member", r)
		}
	}
}

func members(t *testing.T, v any) []string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return slices.Sorted(maps.Keys(m))
}
