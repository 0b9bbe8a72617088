package openapi_test

import (
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/openapi"
)

// doc is a minimal document around the given paths object.
func doc(paths string) string {
	return `{"openapi":"3.1.0","info":{"title":"t","version":"1"},"paths":` + paths + `,
		"components":{
			"schemas":{"A":{"type":"object"}},
			"responses":{"Bare":{"content":{}}},
			"securitySchemes":{"bearer":{"type":"http","scheme":"bearer"}}}}`
}

const (
	idParam = `{"name":"id","in":"path","required":true,"schema":{"type":"string"}}`
	okResp  = `{"200":{"description":"OK","content":{"application/json":{"schema":{"$ref":"#/components/schemas/A"}}}}}`
)

func TestValidateAccepts(t *testing.T) {
	tests := map[string]string{
		"operation": `{"/a/{id}":{"get":{"operationId":"x","parameters":[` + idParam + `],"responses":` + okResp + `,
			"security":[{"bearer":[]}]}}}`,
		// Path parameters may be declared once for the whole path.
		"path-level parameter": `{"/a/{id}":{"parameters":[` + idParam + `],
			"get":{"operationId":"x","responses":` + okResp + `},
			"delete":{"operationId":"y","responses":{"204":{"description":"No Content"}}}}}`,
		// A JSON pointer escapes "/" as ~1, and a URI fragment "{" as %7B.
		"escaped reference": `{"/a/{id}":{"get":{"parameters":[` + idParam + `],"responses":` + okResp + `},
			"put":{"parameters":[` + idParam + `],"responses":{"200":{"$ref":"#/paths/~1a~1%7Bid%7D/get/responses/200"}}}}}`,
		"no paths": `{}`,
	}
	for name, paths := range tests {
		t.Run(name, func(t *testing.T) {
			if err := openapi.Validate([]byte(doc(paths))); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestValidateRejects(t *testing.T) {
	get := func(op string) string { return `{"/a/{id}":{"get":` + op + `}}` }
	tests := []struct {
		name, doc, want string
	}{
		{"not JSON", `{`, "not JSON"},
		{"trailing data", doc(`{}`) + `{}`, "data after the document"},
		{"not an object", `[]`, "not a JSON object"},
		{"version", strings.Replace(doc(`{}`), "3.1.0", "3.0.3", 1), `openapi: version "3.0.3" is not 3.1.x`},
		{"dangling schema ref", doc(get(`{"parameters":[` + idParam + `],"responses":{"200":{"description":"OK",
			"content":{"application/json":{"schema":{"$ref":"#/components/schemas/B"}}}}}}`)),
			`paths["/a/{id}"].get.responses["200"].content["application/json"].schema: $ref "#/components/schemas/B": no "B"`},
		{"external ref", doc(get(`{"parameters":[{"$ref":"other.json#/p"}],"responses":` + okResp + `}`)),
			"not a reference within the document"},
		{"undeclared path parameter", doc(get(`{"responses":` + okResp + `}`)),
			`paths["/a/{id}"].get: path parameter "id" is not declared`},
		{"parameter not in template", doc(`{"/a":{"get":{"parameters":[` + idParam + `],"responses":` + okResp + `}}}`),
			`path parameter "id" is not in the path template`},
		{"optional path parameter", doc(get(`{"parameters":[{"name":"id","in":"path","schema":{}}],"responses":` + okResp + `}`)),
			`path parameter "id" is not required`},
		{"parameter twice", doc(get(`{"parameters":[` + idParam + `,` + idParam + `],"responses":` + okResp + `}`)),
			`path parameter "id" twice`},
		{"parameter without schema", doc(get(`{"parameters":[` + idParam + `,{"name":"q","in":"query"}],"responses":` + okResp + `}`)),
			`parameter "q": needs exactly one of schema and content`},
		{"parameter location", doc(get(`{"parameters":[` + idParam + `,{"name":"q","in":"body","schema":{}}],"responses":` + okResp + `}`)),
			`in is "body"`},
		{"unnamed template parameter", doc(`{"/a/{}":{}}`), "a path parameter without a name"},
		{"same path, other names", doc(`{"/a/{id}":{},"/a/{name}":{}}`),
			`paths["/a/{name}"]: the same path as "/a/{id}" but for parameter names`},
		{"duplicate operationId", doc(`{"/a":{"get":{"operationId":"x","responses":` + okResp + `}},
			"/b":{"get":{"operationId":"x","responses":` + okResp + `}}}`),
			`paths["/b"].get: operationId "x" also used at paths["/a"].get`},
		{"no responses", doc(`{"/a":{"get":{"responses":{}}}}`), `paths["/a"].get.responses: no responses`},
		{"response without description", doc(`{"/a":{"get":{"responses":{"200":{"content":{}}}}}}`),
			`paths["/a"].get.responses["200"]: no description`},
		{"referenced response without description", doc(`{"/a":{"get":{"responses":{"200":{"$ref":"#/components/responses/Bare"}}}}}`),
			`paths["/a"].get.responses["200"]: no description`},
		{"response key", doc(`{"/a":{"get":{"responses":{"2xx":{"description":"OK"}}}}}`),
			"not a status code"},
		{"unknown security scheme", doc(`{"/a":{"get":{"responses":` + okResp + `,"security":[{"apikey":[]}]}}}`),
			`security scheme "apikey" is not in components.securitySchemes`},
		{"component name", strings.Replace(doc(`{}`), `"A":`, `"A/B":`, 1),
			`components.schemas["A/B"]: name has characters other than`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := openapi.Validate([]byte(tt.doc))
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q\ndoes not contain %q", err, tt.want)
			}
		})
	}
}

// Validate reports every finding at once, in a stable order.
func TestValidateAllFindings(t *testing.T) {
	bad := doc(`{"/a/{id}":{"get":{"operationId":"x","responses":{"200":{}}}},
		"/b":{"get":{"operationId":"x","responses":{"200":{"$ref":"#/nowhere"}}}}}`)
	first := openapi.Validate([]byte(bad))
	if first == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{"is not declared", "no description", "also used", `"#/nowhere"`} {
		if !strings.Contains(first.Error(), want) {
			t.Errorf("error %q\ndoes not contain %q", first, want)
		}
	}
	for range 10 {
		if err := openapi.Validate([]byte(bad)); err.Error() != first.Error() {
			t.Fatalf("findings differ between runs:\n%v\n%v", err, first)
		}
	}
}
