package server

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzRequests sends arbitrary bodies, queries and If-Match headers to
// every route that takes input, as an operator (who passes every
// permission check, so the decoders are reached): whatever arrives, the
// answer is a client error or a success, never a 500, and errors are
// problem documents.
func FuzzRequests(f *testing.F) {
	e := newEnv(f, Config{})
	e.must(e.admin, http.StatusCreated, "POST", "/v1/tenants", map[string]string{"name": "f"}, nil)
	var routes []*route
	for _, rt := range e.s.table {
		if rt.stream != "" {
			continue // the event stream answers until the client leaves: TestEventsAreScoped
		}
		if rt.in != nil || len(rt.query) > 0 || rt.ifMatch {
			routes = append(routes, rt)
		}
	}
	f.Add(uint8(0), []byte(`{"name":"x"}`), "limit=5", `"1"`)
	f.Add(uint8(3), []byte(`{"name":"x","quota":{"instances":1e400}}`), "", "")
	f.Add(uint8(7), []byte(`{"name":"\u0000","flavor":["x"]}`), "cursor=%ff", "W/\"0\"")
	f.Add(uint8(9), []byte(`[`), "role=operator&limit=-1", "*")
	f.Fuzz(func(t *testing.T, i uint8, body []byte, query, ifMatch string) {
		rt := routes[int(i)%len(routes)]
		path := strings.NewReplacer("{tenant}", "f", "{network}", "n", "{instance}", "i", "{sshkey}", "k", "{project}", "p",
			"{user}", "u", "{operation}", "op-x", "{flavor}", "fl", "{template}", "tp", "{key}", "k").Replace(rt.path)
		req := httptest.NewRequestWithContext(t.Context(), rt.method, "https://x"+path, bytes.NewReader(body))
		req.URL.RawQuery = query
		req.Header.Set("Authorization", "Bearer "+e.admin.bearer)
		req.Header.Set("Content-Type", "application/json")
		if ifMatch != "" {
			req.Header.Set("If-Match", ifMatch)
		}
		req.RemoteAddr = "127.0.0.1:1"
		w := httptest.NewRecorder()
		e.s.Handler().ServeHTTP(w, req)
		if w.Code >= 500 {
			t.Fatalf("%s %s?%s with %q: %d %s", rt.method, path, query, body, w.Code, w.Body)
		}
		if w.Code >= 400 && w.Header().Get("Content-Type") != "application/problem+json" {
			t.Fatalf("%s %s: error %d without a problem document", rt.method, path, w.Code)
		}
	})
}
