package server

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/holdfast/holdfast/api"
	"github.com/holdfast/holdfast/internal/sqldb"
	"github.com/holdfast/holdfast/internal/tenant"
)

// maxBody bounds a request body; no request of this API is near it.
const maxBody = 1 << 20

// request is one call as a handler sees it: who called, which tenant the
// path names (already checked: the caller may see it), and the body.
type request struct {
	w      http.ResponseWriter
	r      *http.Request
	route  *route
	body   []byte
	caller *caller
	tenant *tenant.TenantRecord // set on routes under /v1/tenants/{tenant}
	role   string               // the caller's role in tenant; "operator" for operators
	status int                  // what was answered, for logs, metrics and audit
	audit  map[string]string    // what the audit entry needs beyond the path (e.g. whom a body names)
}

// problem builds a problem document.
func problem(status int, typ, detail string) *api.Problem {
	return &api.Problem{Type: problemType(typ), Title: http.StatusText(status), Status: status, Detail: detail}
}

func problemType(typ string) string {
	if typ == "" {
		return "about:blank"
	}
	return "https://holdfast.dev/problems/" + typ
}

func notFound(what, name string) *api.Problem {
	return problem(http.StatusNotFound, "not-found", fmt.Sprintf("%s %q not found", what, name))
}

func badField(field, msg string) *api.Problem {
	p := problem(http.StatusUnprocessableEntity, "invalid", "the request has invalid fields")
	p.Errors = []api.FieldError{{Field: field, Message: msg}}
	return p
}

// toProblem maps an error to what the client is told. Errors that are not
// a client's mistake become a 500 whose detail says nothing internal.
func toProblem(err error) *api.Problem {
	var p *api.Problem
	if errors.As(err, &p) {
		return p
	}
	var q *tenant.QuotaError
	switch {
	case errors.As(err, &q):
		pr := problem(http.StatusConflict, "quota-exceeded", q.Error())
		pr.Errors = []api.FieldError{{Field: "quota." + q.Resource, Message: q.Error()}}
		return pr
	case errors.Is(err, tenant.ErrNotFound):
		return problem(http.StatusNotFound, "not-found", "not found")
	case errors.Is(err, tenant.ErrRetired):
		return problem(http.StatusConflict, "name-retired", "that name belonged to a deleted tenant, and a tenant name is never given again: its audit trail, operations and events stay its own; choose another name")
	case errors.Is(err, tenant.ErrExists):
		return problem(http.StatusConflict, "exists", "an object of that name already exists")
	case errors.Is(err, tenant.ErrConflict):
		return problem(http.StatusPreconditionFailed, "version-mismatch", "the object changed since it was read (If-Match)")
	case errors.Is(err, tenant.ErrInUse):
		return problem(http.StatusConflict, "in-use", "the object is still in use")
	case errors.Is(err, tenant.ErrPoolFull):
		return problem(http.StatusServiceUnavailable, "pool-full", "the operator's network pool is exhausted")
	case sqldb.Unavailable(err):
		// Not the request's fault; the server goes on once the
		// database is back (the pool connects again).
		return problem(http.StatusServiceUnavailable, "database-unavailable", "the database is out of reach; try again shortly (read before repeating a change: it may have been made)")
	}
	return problem(http.StatusInternalServerError, "", "internal error; the server log has the details")
}

// writeProblem answers a problem document.
func writeProblem(w http.ResponseWriter, r *http.Request, p *api.Problem) {
	if p.Instance == "" && r != nil {
		p.Instance = r.URL.Path
	}
	if p.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="holdfast", HF-HMAC-SHA256 realm="holdfast"`)
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p) // the client went away; nothing to do
}

// decode reads the body into v strictly: one JSON object, no unknown
// fields, then the constraints of v's tags.
func (q *request) decode(v any) error {
	if len(bytes.TrimSpace(q.body)) == 0 {
		return problem(http.StatusBadRequest, "bad-json", "a JSON body is required")
	}
	if ct := q.r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return problem(http.StatusUnsupportedMediaType, "bad-content-type", "send application/json")
	}
	dec := json.NewDecoder(bytes.NewReader(q.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonProblem(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return problem(http.StatusBadRequest, "bad-json", "the body holds more than one JSON value")
	}
	if errs := api.Check(v); len(errs) > 0 {
		p := problem(http.StatusUnprocessableEntity, "invalid", "the request has invalid fields")
		p.Errors = errs
		return p
	}
	return nil
}

// jsonProblem says where a body fails to decode, in the client's terms.
func jsonProblem(err error) *api.Problem {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return problem(http.StatusBadRequest, "bad-json", fmt.Sprintf("malformed JSON at byte %d", syn.Offset))
	case errors.As(err, &typ):
		p := problem(http.StatusUnprocessableEntity, "invalid", "the request has invalid fields")
		p.Errors = []api.FieldError{{Field: typ.Field, Message: "must be " + jsonKind(typ.Type.Kind().String())}}
		return p
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		f := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		p := problem(http.StatusUnprocessableEntity, "invalid", "the request has invalid fields")
		p.Errors = []api.FieldError{{Field: f, Message: "unknown field"}}
		return p
	case errors.Is(err, io.ErrUnexpectedEOF):
		return problem(http.StatusBadRequest, "bad-json", "truncated JSON")
	}
	return problem(http.StatusBadRequest, "bad-json", "the body is not valid JSON")
}

func jsonKind(k string) string {
	switch k {
	case "int", "int32", "int64", "uint", "uint32", "uint64", "float64":
		return "a number"
	case "slice":
		return "an array"
	case "struct", "map":
		return "an object"
	}
	return "a " + k
}

// reply answers v as JSON with status.
func (q *request) reply(status int, v any) error {
	q.status = status
	h := q.w.Header()
	h.Set("Cache-Control", "no-store")
	if v == nil {
		q.w.WriteHeader(status)
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	h.Set("Content-Type", "application/json")
	// With its length, a page of instances goes out in one piece rather
	// than chunked (net/http chunks what it has not seen the end of past
	// 2 KiB), and a client can tell a cut answer from a whole one.
	h.Set("Content-Length", strconv.Itoa(len(b)))
	q.w.WriteHeader(status)
	_, _ = q.w.Write(b) // a client that went away does not make the request fail
	return nil
}

// ok answers 200 with v, with its version as ETag.
func (q *request) ok(v any) error { return q.reply(http.StatusOK, v) }

// versioned answers 200 or 201 with v and its ETag.
func (q *request) versioned(status int, v any, version int64) error {
	q.w.Header().Set("ETag", etag(version))
	return q.reply(status, v)
}

// accepted answers 202 with an operation to follow.
func (q *request) accepted(op api.Operation) error {
	q.w.Header().Set("Location", "/v1/operations/"+op.ID)
	return q.reply(http.StatusAccepted, op)
}

func etag(version int64) string { return `"` + strconv.FormatInt(version, 10) + `"` }

// ifMatch is the version If-Match asks for; 0 when absent or "*".
func (q *request) ifMatch() (int64, error) {
	h := strings.TrimSpace(q.r.Header.Get("If-Match"))
	if h == "" || h == "*" {
		return 0, nil
	}
	h = strings.TrimPrefix(h, "W/")
	v, err := strconv.ParseInt(strings.Trim(h, `"`), 10, 64)
	if err != nil || v <= 0 {
		return 0, &api.Problem{Type: problemType("invalid"), Title: http.StatusText(http.StatusBadRequest), Status: http.StatusBadRequest,
			Detail: "If-Match must be an ETag this server sent", Errors: []api.FieldError{{Field: "If-Match", Message: "not an ETag of this server"}}}
	}
	return v, nil
}

// Pagination: the cursor is the last key of the page, opaque to clients.
const (
	defaultLimit = 100
	maxLimit     = 1000
)

func (q *request) page() (after string, limit int, err error) {
	v := q.r.URL.Query()
	limit = defaultLimit
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxLimit {
			return "", 0, pageProblem("limit", fmt.Sprintf("must be a number from 1 to %d", maxLimit))
		}
		limit = n
	}
	if c := v.Get("cursor"); c != "" {
		b, err := base64.RawURLEncoding.DecodeString(c)
		if err != nil || len(b) == 0 || len(b) > 256 {
			return "", 0, pageProblem("cursor", "not a cursor this server gave out")
		}
		after = string(b)
	}
	return after, limit, nil
}

func pageProblem(field, msg string) *api.Problem {
	p := problem(http.StatusBadRequest, "invalid", "bad query parameter")
	p.Errors = []api.FieldError{{Field: field, Message: msg}}
	return p
}

// pageOf makes a page from items fetched with limit+1: the extra item
// says there is a next page.
func pageOf[T any](items []T, limit int, key func(T) string) api.Page[T] {
	p := api.Page[T]{Items: items}
	if p.Items == nil {
		p.Items = []T{}
	}
	if len(items) > limit {
		p.Items = items[:limit]
		p.Next = base64.RawURLEncoding.EncodeToString([]byte(key(items[limit-1])))
	}
	return p
}

func jsonEncoder(w io.Writer) *json.Encoder { return json.NewEncoder(w) }
