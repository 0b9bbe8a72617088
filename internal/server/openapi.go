package server

import (
	"fmt"
	"net/http"
	"reflect"
	"strings"

	"github.com/holdfast/holdfast/api"
	"github.com/holdfast/holdfast/internal/openapi"
	"github.com/holdfast/holdfast/internal/spec"
	"github.com/holdfast/holdfast/internal/tenant"
)

// extraRoutes are routes about the API itself.
func (s *Server) extraRoutes() []*route {
	return []*route{
		{method: http.MethodGet, path: "/v1/openapi.json", id: "openapi", summary: "This API's OpenAPI 3.1 document", tag: "meta", perm: permPublic,
			status: http.StatusOK, h: s.openapiDoc},
	}
}

func (s *Server) openapiDoc(q *request) error {
	doc, err := s.openapi()
	if err != nil {
		return err
	}
	q.status = http.StatusOK
	q.w.Header().Set("Content-Type", "application/json")
	_, _ = q.w.Write(doc) // the client went away
	return nil
}

// OpenAPI is the API's OpenAPI 3.1 document, generated from the route
// table and the wire types; docs/api/openapi.json is a copy a test keeps
// in sync.
func OpenAPI() ([]byte, error) {
	s := &Server{}
	var ops []openapi.Operation
	for _, rt := range append(append(s.routes(), s.extraRoutes()...), s.consoleRoutes()...) {
		op := openapi.Operation{
			Method: rt.method, Path: rt.path, ID: rt.id, Summary: rt.summary, Tags: []string{rt.tag},
			Public: rt.perm == permPublic, Status: rt.status, Stream: rt.stream,
		}
		if rt.perm != permPublic {
			op.Permission = rt.perm.String()
		}
		if rt.in != nil {
			op.Request = reflect.TypeOf(rt.in)
		}
		if rt.out != nil {
			op.Response = reflect.TypeOf(rt.out)
		}
		for _, p := range rt.query {
			op.Query = append(op.Query, openapi.Param{Name: p.name, Description: p.doc, Type: p.typ})
		}
		if rt.ifMatch {
			op.Headers = append(op.Headers, openapi.Param{Name: "If-Match", Description: "Answer 412 unless the object's ETag is still this one."})
			op.Errors = append(op.Errors, http.StatusPreconditionFailed)
		}
		switch rt.status {
		case http.StatusAccepted:
			if _, ok := rt.out.(api.Operation); ok {
				op.ResponseHeaders = append(op.ResponseHeaders, openapi.Param{Name: "Location", Description: "The operation to follow."})
			}
		case http.StatusCreated:
			op.ResponseHeaders = append(op.ResponseHeaders, openapi.Param{Name: "ETag", Description: "Version of the object."})
		case http.StatusFound:
			op.ResponseHeaders = append(op.ResponseHeaders, openapi.Param{Name: "Location", Description: "Where to go next."})
		}
		if strings.Contains(rt.path, "{") {
			op.Errors = append(op.Errors, http.StatusNotFound)
		}
		if rt.in != nil {
			op.Errors = append(op.Errors, http.StatusBadRequest, http.StatusUnprocessableEntity, http.StatusRequestEntityTooLarge)
		}
		if rt.method != http.MethodGet && rt.perm != permPublic {
			op.Errors = append(op.Errors, http.StatusConflict)
		}
		if rt.id == "login" || rt.id == "refresh" || rt.id == "passkeyLogin" {
			op.Errors = append(op.Errors, http.StatusUnauthorized, http.StatusTooManyRequests)
		}
		if rt.id == "passkeyChallenge" || rt.id == "beginPasskeyRegistration" { // ceremonies under way are bounded
			op.Errors = append(op.Errors, http.StatusTooManyRequests, http.StatusConflict)
		}
		if rt.id == "changePassword" { // a wrong current password counts as a failed login
			op.Errors = append(op.Errors, http.StatusTooManyRequests)
		}
		if len(rt.query) > 0 {
			op.Errors = append(op.Errors, http.StatusBadRequest)
		}
		ops = append(ops, op)
	}
	return openapi.Document(openapi.Info{
		Title:   "Holdfast control plane",
		Version: api.Version,
		Description: "Tenants, users, networks and instances of a Holdfast cloud. Every error is an RFC 9457 problem document; " +
			"lists are paginated with an opaque cursor; long work answers 202 with an operation to follow. " +
			"Authenticate with a bearer access token from /v1/auth/login, or sign requests with an API key.",
		Problem: reflect.TypeOf(api.Problem{}),
	}, dedupe(ops))
}

// dedupe removes repeated error statuses.
func dedupe(ops []openapi.Operation) []openapi.Operation {
	for i := range ops {
		seen := map[int]bool{}
		var errs []int
		for _, e := range ops[i].Errors {
			if !seen[e] {
				seen[e] = true
				errs = append(errs, e)
			}
		}
		ops[i].Errors = errs
	}
	return ops
}

// poolOf reads the operator's pool of tenant networks from the spec's
// tenancy block; a spec without one serves tenants no networks.
func poolOf(sp *spec.Spec) (pool, error) {
	t := sp.Tenancy
	if t == nil {
		return pool{}, nil
	}
	n := t.Net
	if !n.Pool.IsValid() {
		return pool{}, fmt.Errorf("tenancy: the pool %q is not a valid IPv4 prefix", t.CIDR)
	}
	return pool{
		Pool:     tenant.Pool{Prefix: n.Pool, Bits: n.Bits, FirstVLAN: t.VLANs.Lo, LastVLAN: t.VLANs.Hi},
		site:     n.Site,
		role:     t.Role,
		zoneType: n.ZoneType,
		access:   n.Access,
	}, nil
}

// RoutesMarkdown is the route table as a Markdown table: each endpoint
// with the permission it requires. docs/api/routes.md is a copy a test
// keeps in sync.
func RoutesMarkdown() string {
	s := &Server{}
	var b strings.Builder
	b.WriteString("# API routes\n\nGenerated from `internal/server/routes.go` (a test keeps this file in sync). ")
	b.WriteString("Permissions: `public` needs nothing; `authenticated` any logged-in caller; `operator` operators only; ")
	b.WriteString("`tenant:read` any member of the tenant in the path (viewer, member, tenant-admin); `tenant:write` members and tenant admins; ")
	b.WriteString("`tenant:admin` tenant admins. Operators may do everything. A caller who is not a member of the tenant in the path is answered 404, as if it did not exist.\n\n")
	b.WriteString("| Method | Path | Permission | Operation | Summary |\n|---|---|---|---|---|\n")
	for _, rt := range append(append(s.routes(), s.extraRoutes()...), s.consoleRoutes()...) {
		fmt.Fprintf(&b, "| %s | `%s` | %s | %s | %s |\n", rt.method, rt.path, rt.perm, rt.id, rt.summary)
	}
	return b.String()
}
