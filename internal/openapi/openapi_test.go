package openapi_test

import (
	"bytes"
	"encoding/json"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/openapi"
)

// routes is a small route table using every Operation field.
func routes() []openapi.Operation {
	return []openapi.Operation{
		{
			Method: http.MethodGet, Path: "/v1/tenants/{tenant}/instances", ID: "listInstances",
			Summary: "List instances", Description: "Newest first.", Tags: []string{"instances"},
			Permission: "instance.read",
			Query: []openapi.Param{
				{Name: "limit", Type: "integer", Description: "Page size."},
				{Name: "state", Enum: []string{"running", "stopped"}},
			},
			Response: reflect.TypeFor[Page[Item]](),
			Errors:   []int{http.StatusBadRequest, http.StatusNotFound, http.StatusNotFound},
		},
		{
			Method: http.MethodPut, Path: "/v1/tenants/{tenant}/instances/{instance}", ID: "putInstance",
			Summary: "Replace an instance", Tags: []string{"instances"}, Permission: "instance.write",
			Headers:         []openapi.Param{{Name: "If-Match", Required: true, Description: "The ETag last read."}},
			Request:         reflect.TypeFor[Sample](),
			Response:        reflect.TypeFor[Sample](),
			ResponseHeaders: []openapi.Param{{Name: "ETag", Required: true}},
			Errors:          []int{http.StatusConflict, http.StatusPreconditionFailed, http.StatusUnprocessableEntity},
		},
		{
			Method: http.MethodDelete, Path: "/v1/tenants/{tenant}/instances/{instance}", ID: "deleteInstance",
			Summary: "Delete an instance", Tags: []string{"instances"}, Permission: "instance.write",
		},
		{
			Method: http.MethodPost, Path: "/v1/tenants/{tenant}/instances", ID: "createInstance",
			Summary: "Create an instance", Tags: []string{"instances"}, Permission: "instance.write",
			Request: reflect.TypeFor[Item](), Response: reflect.TypeFor[Item](), Status: http.StatusCreated,
			ResponseHeaders: []openapi.Param{{Name: "Location", Required: true}},
		},
		{
			Method: http.MethodGet, Path: "/v1/events", ID: "watchEvents", Summary: "Watch events",
			Tags: []string{"events"}, Permission: "event.read",
			Stream: "text/event-stream", Response: reflect.TypeFor[Item](),
		},
		{
			Method: http.MethodPost, Path: "/v1/login", ID: "login", Summary: "Log in", Tags: []string{"auth"},
			Public: true, Request: reflect.TypeFor[Item](), Response: reflect.TypeFor[Item](),
			Errors: []int{http.StatusUnauthorized, http.StatusTooManyRequests},
		},
		{
			Method: http.MethodGet, Path: "/v1/{$}", ID: "root", Summary: "API root", Public: true,
			Response: reflect.TypeFor[Item](),
		},
	}
}

func TestOperations(t *testing.T) {
	doc := document(t, routes()...)
	equalJSON(t, "header", map[string]any{"openapi": doc["openapi"], "jsonSchemaDialect": doc["jsonSchemaDialect"]},
		`{"openapi":"3.1.0","jsonSchemaDialect":"https://spec.openapis.org/oas/3.1/dialect/base"}`)
	equalJSON(t, "info", doc["info"], `{"title":"Holdfast","version":"1.0.0","description":"Test API."}`)
	equalJSON(t, "servers", doc["servers"], `[{"url":"https://holdfast.example"}]`)
	equalJSON(t, "tags", doc["tags"], `[{"name":"auth"},{"name":"events"},{"name":"instances"}]`)

	const problem = `{"application/problem+json":{"schema":{"$ref":"#/components/schemas/Problem"}}}`
	authenticated := `[{"bearer":[]},{"hmac":[]}]`

	list := at(t, doc, "paths", "/v1/tenants/{tenant}/instances", "get")
	equalJSON(t, "list parameters", at(t, list, "parameters"), `[
		{"name":"tenant","in":"path","required":true,"schema":{"type":"string"}},
		{"name":"limit","in":"query","description":"Page size.","schema":{"type":"integer"}},
		{"name":"state","in":"query","schema":{"type":"string","enum":["running","stopped"]}}]`)
	equalJSON(t, "list security", at(t, list, "security"), authenticated)
	for _, k := range []string{"operationId", "summary", "description", "tags", "x-holdfast-permission"} {
		equalJSON(t, "list "+k, at(t, list, k), map[string]string{
			"operationId": `"listInstances"`, "summary": `"List instances"`, "description": `"Newest first."`,
			"tags": `["instances"]`, "x-holdfast-permission": `"instance.read"`,
		}[k])
	}
	if _, ok := list.(map[string]any)["requestBody"]; ok {
		t.Error("list has a request body")
	}
	listResp := at(t, list, "responses").(map[string]any)
	equalJSON(t, "list 200", listResp["200"],
		`{"description":"OK","content":{"application/json":{"schema":{"$ref":"#/components/schemas/PageItem"}}}}`)
	// The listed errors, 401 and 403 for an authenticated operation, and
	// 500 always; a repeated status once.
	if got, want := slices.Sorted(maps.Keys(listResp)), []string{"200", "400", "401", "403", "404", "500"}; !slices.Equal(got, want) {
		t.Errorf("list responses %q, want %q", got, want)
	}
	equalJSON(t, "list 404", listResp["404"], `{"description":"Not Found","content":`+problem+`}`)
	equalJSON(t, "list 500", listResp["500"], `{"description":"Internal Server Error","content":`+problem+`}`)

	put := at(t, doc, "paths", "/v1/tenants/{tenant}/instances/{instance}", "put")
	equalJSON(t, "put parameters", at(t, put, "parameters"), `[
		{"name":"tenant","in":"path","required":true,"schema":{"type":"string"}},
		{"name":"instance","in":"path","required":true,"schema":{"type":"string"}},
		{"name":"If-Match","in":"header","required":true,"description":"The ETag last read.","schema":{"type":"string"}}]`)
	equalJSON(t, "put body", at(t, put, "requestBody"),
		`{"required":true,"content":{"application/json":{"schema":{"$ref":"#/components/schemas/Sample"}}}}`)
	equalJSON(t, "put 200 headers", at(t, put, "responses", "200", "headers"),
		`{"ETag":{"required":true,"schema":{"type":"string"}}}`)
	if got, want := slices.Sorted(maps.Keys(at(t, put, "responses").(map[string]any))),
		[]string{"200", "401", "403", "409", "412", "422", "500"}; !slices.Equal(got, want) {
		t.Errorf("put responses %q, want %q", got, want)
	}

	// No body and no Status: 204 without content.
	del := at(t, doc, "paths", "/v1/tenants/{tenant}/instances/{instance}", "delete")
	equalJSON(t, "delete 204", at(t, del, "responses", "204"), `{"description":"No Content"}`)

	create := at(t, doc, "paths", "/v1/tenants/{tenant}/instances", "post")
	equalJSON(t, "create 201", at(t, create, "responses", "201"), `{"description":"Created",
		"content":{"application/json":{"schema":{"$ref":"#/components/schemas/Item"}}},
		"headers":{"Location":{"required":true,"schema":{"type":"string"}}}}`)

	watch := at(t, doc, "paths", "/v1/events", "get")
	equalJSON(t, "watch 200", at(t, watch, "responses", "200"), `{"description":"OK","content":{"text/event-stream":{
		"schema":{"type":"string"},"x-holdfast-event-schema":{"$ref":"#/components/schemas/Item"}}}}`)

	// A public operation: no security, no implied 401 and 403.
	login := at(t, doc, "paths", "/v1/login", "post")
	equalJSON(t, "login security", at(t, login, "security"), `[]`)
	if got, want := slices.Sorted(maps.Keys(at(t, login, "responses").(map[string]any))),
		[]string{"200", "401", "429", "500"}; !slices.Equal(got, want) {
		t.Errorf("login responses %q, want %q", got, want)
	}
	if _, ok := login.(map[string]any)["x-holdfast-permission"]; ok {
		t.Error("login has a permission")
	}

	// {$} anchors a ServeMux pattern; the OpenAPI path is exact anyway.
	at(t, doc, "paths", "/v1/", "get")

	schemes := at(t, doc, "components", "securitySchemes")
	equalJSON(t, "bearer", at(t, schemes, "bearer"), `{"type":"http","scheme":"bearer","bearerFormat":"JWT",
		"description":"A session token from the login flow: `+"`Authorization: Bearer <jwt>`"+`."}`)
	hmac := at(t, schemes, "hmac").(map[string]any)
	if hmac["type"] != "apiKey" || hmac["in"] != "header" || hmac["name"] != "Authorization" {
		t.Errorf("hmac scheme %v", hmac)
	}
	if d, _ := hmac["description"].(string); !strings.Contains(d,
		"Authorization: HF-HMAC-SHA256 KeyId=<id>, Timestamp=<unix>, Nonce=<nonce>, Signature=<hex>") {
		t.Errorf("hmac description %q does not give the header", d)
	}
}

// The document is for people too: no \u003c escapes, indented, one line
// feed at the end.
func TestDocumentReadable(t *testing.T) {
	out, err := openapi.Document(info, routes())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(out, []byte("KeyId=<id>")) {
		t.Error("angle brackets are escaped")
	}
	if !bytes.HasPrefix(out, []byte("{\n  \"")) || !bytes.HasSuffix(out, []byte("}\n")) {
		t.Errorf("not indented JSON ending in a line feed: %.20q...", out)
	}
}

func TestDocumentDeterministic(t *testing.T) {
	first, err := openapi.Document(info, routes())
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		ops := routes()
		if i%2 == 1 {
			slices.Reverse(ops)
		}
		out, err := openapi.Document(info, ops)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, first) {
			t.Fatalf("run %d (reversed %v) differs from the first", i, i%2 == 1)
		}
	}
}

// Local types for the error cases.
type (
	withChan    struct{ C chan int }
	withFunc    struct{ F func() }
	withComplex struct{ Z complex128 }
	marshals    struct{}
	deepBad     struct {
		Inner struct {
			List []withChan `json:"list"`
		} `json:"inner"`
	}
	minOnString struct {
		S string `min:"1"`
	}
	lenOnInt struct {
		N int `maxlen:"3"`
	}
	badPattern struct {
		S string `pattern:"(["`
	}
	enumOnStruct struct {
		I Item `enum:"a"`
	}
	badEnumInt struct {
		N int `enum:"1,x"`
	}
	nullableInt struct {
		N int `nullable:"true"`
	}
	minAboveMax struct {
		N int `min:"5" max:"1"`
	}
	intKeyedStruct struct{ M map[Item]int }
)

func (marshals) MarshalJSON() ([]byte, error) { return []byte(`"x"`), nil }

func TestDocumentErrors(t *testing.T) {
	ok := func(id string) openapi.Operation {
		return openapi.Operation{Method: http.MethodGet, Path: "/v1/" + id, ID: id, Summary: id}
	}
	with := func(id string, edit func(*openapi.Operation)) openapi.Operation {
		op := ok(id)
		edit(&op)
		return op
	}
	body := func(id string, t reflect.Type) openapi.Operation {
		return with(id, func(o *openapi.Operation) { o.Method, o.Request = http.MethodPost, t })
	}
	type Thing struct{ A int }
	thing1 := reflect.TypeFor[Thing]()
	thing2 := func() reflect.Type {
		type Thing struct{ B int }
		return reflect.TypeFor[Thing]()
	}()

	tests := []struct {
		name string
		info openapi.Info
		ops  []openapi.Operation
		want []string // each must be in the error
	}{
		{"duplicate id", info, []openapi.Operation{ok("a"), with("a", func(o *openapi.Operation) { o.Path = "/v1/b" })},
			[]string{`operation "a" (GET /v1/b): operationId also used by operation "a" (GET /v1/a)`}},
		{"duplicate route", info, []openapi.Operation{
			with("a", func(o *openapi.Operation) { o.Path = "/v1/x/{id}" }),
			with("b", func(o *openapi.Operation) { o.Path = "/v1/x/{name}" }),
		}, []string{`operation "b" (GET /v1/x/{name}): the same route as operation "a" (GET /v1/x/{id})`}},
		{"same path, other parameter names", info, []openapi.Operation{
			with("a", func(o *openapi.Operation) { o.Path = "/v1/x/{id}" }),
			with("b", func(o *openapi.Operation) { o.Path, o.Method = "/v1/x/{name}", http.MethodDelete }),
		}, []string{`operation "b"`, "differs from /v1/x/{id} only in parameter names"}},
		{"unnamed parameter", info, []openapi.Operation{with("a", func(o *openapi.Operation) { o.Path = "/v1/{}" })},
			[]string{`operation "a" (GET /v1/{})`, "a parameter without a name"}},
		{"rest wildcard", info, []openapi.Operation{with("a", func(o *openapi.Operation) { o.Path = "/v1/files/{path...}" })},
			[]string{"{path...} matches the rest of the path"}},
		{"partial segment", info, []openapi.Operation{with("a", func(o *openapi.Operation) { o.Path = "/v1/x{id}" })},
			[]string{`segment "x{id}" is not a parameter`}},
		{"parameter twice", info, []openapi.Operation{with("a", func(o *openapi.Operation) { o.Path = "/v1/{id}/{id}" })},
			[]string{`parameter "id" twice`}},
		{"relative path", info, []openapi.Operation{with("a", func(o *openapi.Operation) { o.Path = "v1/a" })},
			[]string{"does not begin with /"}},
		{"method", info, []openapi.Operation{with("a", func(o *openapi.Operation) { o.Method = "get" })},
			[]string{`method "get" is not one of`}},
		{"no id", info, []openapi.Operation{ok("a"), with("", func(o *openapi.Operation) { o.Path = "/v1/b" })},
			[]string{"operation #1 (GET /v1/b): no ID"}},
		{"no summary", info, []openapi.Operation{with("a", func(o *openapi.Operation) { o.Summary = "" })},
			[]string{`operation "a" (GET /v1/a): no Summary`}},
		{"public with permission", info, []openapi.Operation{with("a", func(o *openapi.Operation) {
			o.Public, o.Permission = true, "x.read"
		})}, []string{`public, yet needs permission "x.read"`}},
		{"chan", info, []openapi.Operation{body("a", reflect.TypeFor[withChan]())},
			[]string{`operation "a" (POST /v1/a): request body: openapi_test.withChan.C: type chan int is not supported`}},
		{"func", info, []openapi.Operation{body("a", reflect.TypeFor[withFunc]())},
			[]string{"openapi_test.withFunc.F: type func() is not supported"}},
		{"complex", info, []openapi.Operation{body("a", reflect.TypeFor[withComplex]())},
			[]string{"openapi_test.withComplex.Z: type complex128 is not supported"}},
		{"nested", info, []openapi.Operation{
			with("a", func(o *openapi.Operation) { o.Response = reflect.TypeFor[deepBad]() }),
		}, []string{`operation "a"`, "response body: openapi_test.deepBad.Inner.List[]: openapi_test.withChan.C: type chan int is not supported"}},
		{"MarshalJSON without a schema", info, []openapi.Operation{body("a", reflect.TypeFor[[]marshals]())},
			[]string{"request body[]: openapi_test.marshals has its own MarshalJSON", "OpenAPISchema"}},
		{"min on a string", info, []openapi.Operation{body("a", reflect.TypeFor[minOnString]())},
			[]string{`openapi_test.minOnString.S: tag min:"1"`, "use minlen and maxlen"}},
		{"maxlen on an int", info, []openapi.Operation{body("a", reflect.TypeFor[lenOnInt]())},
			[]string{`tag maxlen:"3"`, "use min and max"}},
		{"bad pattern", info, []openapi.Operation{body("a", reflect.TypeFor[badPattern]())},
			[]string{`tag pattern:"(["`, "missing closing"}},
		{"enum on a struct", info, []openapi.Operation{body("a", reflect.TypeFor[enumOnStruct]())},
			[]string{`tag enum:"a"`, "an enum needs a string, number or boolean, and this is components/schemas/Item"}},
		{"enum not integers", info, []openapi.Operation{body("a", reflect.TypeFor[badEnumInt]())},
			[]string{`"x" is not an integer`}},
		{"nullable int", info, []openapi.Operation{body("a", reflect.TypeFor[nullableInt]())},
			[]string{"a field of type int is never null; make it a pointer"}},
		{"min above max", info, []openapi.Operation{body("a", reflect.TypeFor[minAboveMax]())},
			[]string{"more than max 1"}},
		{"map key", info, []openapi.Operation{body("a", reflect.TypeFor[intKeyedStruct]())},
			[]string{"intKeyedStruct.M: map key type openapi_test.Item has no JSON form"}},
		{"schema name clash", info, []openapi.Operation{body("a", thing1), body("b", thing2)},
			[]string{"would both be components/schemas/Thing"}},
		{"body with 204", info, []openapi.Operation{with("a", func(o *openapi.Operation) {
			o.Status, o.Response = http.StatusNoContent, reflect.TypeFor[Item]()
		})}, []string{"status 204 has no body"}},
		{"success status", info, []openapi.Operation{with("a", func(o *openapi.Operation) { o.Status = 404 })},
			[]string{"success status 404"}},
		{"error status", info, []openapi.Operation{with("a", func(o *openapi.Operation) { o.Errors = []int{200} })},
			[]string{"error status 200"}},
		{"bad stream type", info, []openapi.Operation{with("a", func(o *openapi.Operation) { o.Stream = "text/" })},
			[]string{`stream media type "text/"`}},
		{"param type", info, []openapi.Operation{with("a", func(o *openapi.Operation) {
			o.Query = []openapi.Param{{Name: "n", Type: "int"}}
		})}, []string{`query parameter "n": type "int"`}},
		{"param enum", info, []openapi.Operation{with("a", func(o *openapi.Operation) {
			o.Query = []openapi.Param{{Name: "n", Type: "boolean", Enum: []string{"yes"}}}
		})}, []string{`"yes" is not a boolean`}},
		{"query twice", info, []openapi.Operation{with("a", func(o *openapi.Operation) {
			o.Query = []openapi.Param{{Name: "n"}, {Name: "n"}}
		})}, []string{`query parameter "n" twice`}},
		{"authorization header", info, []openapi.Operation{with("a", func(o *openapi.Operation) {
			o.Headers = []openapi.Param{{Name: "authorization"}}
		})}, []string{`header "authorization" is implied`}},
		{"response header twice", info, []openapi.Operation{with("a", func(o *openapi.Operation) {
			o.ResponseHeaders = []openapi.Param{{Name: "ETag"}, {Name: "Etag"}}
		})}, []string{`response header "Etag" twice`}},
		{"no problem type", openapi.Info{Title: "t", Version: "1"}, []openapi.Operation{ok("a")},
			[]string{"info: Problem type is nil"}},
		{"problem not a struct", openapi.Info{Title: "t", Version: "1", Problem: reflect.TypeFor[string]()}, nil,
			[]string{"Problem type string is not a named struct"}},
		{"no title", openapi.Info{Version: "1", Problem: info.Problem}, nil,
			[]string{"Title and Version are required"}},
		// Every broken operation is reported, not just the first.
		{"all reported", info, []openapi.Operation{
			body("a", reflect.TypeFor[withChan]()), ok("fine"), with("b", func(o *openapi.Operation) { o.Summary = "" }),
		}, []string{`operation "a"`, `operation "b"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := openapi.Document(tt.info, tt.ops)
			if err == nil {
				t.Fatalf("no error; document:\n%s", out)
			}
			t.Log(err)
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}
}

// A type that fails is reported by every operation using it, not only the
// first.
func TestDocumentErrorEachUse(t *testing.T) {
	op := func(id string) openapi.Operation {
		return openapi.Operation{Method: http.MethodPost, Path: "/v1/" + id, ID: id, Summary: id, Request: reflect.TypeFor[withChan]()}
	}
	_, err := openapi.Document(info, []openapi.Operation{op("a"), op("b")})
	if err == nil || !strings.Contains(err.Error(), `operation "a"`) || !strings.Contains(err.Error(), `operation "b"`) {
		t.Errorf("error %v, want both operations named", err)
	}
}

// An empty route table is still a valid document, with the problem type.
func TestDocumentEmpty(t *testing.T) {
	doc := document(t)
	equalJSON(t, "paths", doc["paths"], `{}`)
	at(t, doc, "components", "schemas", "Problem")
	if _, err := json.Marshal(doc); err != nil {
		t.Fatal(err)
	}
}
