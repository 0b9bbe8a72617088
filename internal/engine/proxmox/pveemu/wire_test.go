package pveemu_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptrace"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/engine/proxmox/pveemu"
)

// answer is a response as a client sees it, its body read.
type answer struct {
	Status string // the status line's code and reason
	Close  bool   // the server closes the connection
	Body   []byte
}

// request sends one API request with the given body and content type over
// client.
func request(t *testing.T, client *http.Client, method, url, contentType, body string) answer {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", auth)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", method, url, err)
	}
	return answer{resp.Status, resp.Close, b}
}

// TestJSONBodies: PVE reads a body sent as application/json like a form,
// with JSON's booleans and numbers taken as PVE's schema takes them, and
// query parameters over the body's.
func TestJSONBodies(t *testing.T) {
	_, srv := newServer(t, pveemu.Config{Seed: 1})
	api := srv.URL + pveemu.APIPrefix
	cfgURL := api + "/nodes/pve1/qemu/9000/config"
	config := func() map[string]any {
		t.Helper()
		st, body := call(t, srv, "GET", "/nodes/pve1/qemu/9000/config", "")
		if st != 200 {
			t.Fatalf("config: %d %v", st, body)
		}
		return body["data"].(map[string]any)
	}

	a := request(t, srv.Client(), http.MethodPut, cfgURL+"?sockets=2", "application/json",
		`{"cores": 3, "sockets": 1, "onboot": true, "tablet": false, "description": "from JSON", "delete": ["agent", "vga"]}`)
	if a.Status != "200 OK" {
		t.Fatalf("JSON update: %s %s", a.Status, a.Body)
	}
	got := config()
	if got["cores"] != 3.0 || got["sockets"] != 2.0 || got["onboot"] != 1.0 || got["tablet"] != 0.0 ||
		got["description"] != "from JSON" || got["agent"] != nil || got["vga"] != nil {
		t.Fatalf("config after a JSON update: %v", got)
	}

	for _, tc := range []struct{ body, param, want string }{
		{`{"onboot": "true"}`, "onboot", "type check ('boolean') failed - got 'true'"},
		{`{"cores": true}`, "cores", "type check ('integer') failed - got JSON::PP::Boolean"},
		{`{"name": ["a", "b"]}`, "name", "type check ('string') failed - got ARRAY"},
		{`{"cores": 1.5}`, "cores", "type check ('integer') failed - got '1.5'"},
	} {
		a := request(t, srv.Client(), http.MethodPut, cfgURL, "application/json", tc.body)
		var env struct {
			Errors map[string]string `json:"errors"`
		}
		_ = json.Unmarshal(a.Body, &env)
		if a.Status != "400 Parameter verification failed." || env.Errors[tc.param] != tc.want {
			t.Errorf("PUT %s: %s %s, want 400 with %s: %s", tc.body, a.Status, a.Body, tc.param, tc.want)
		}
	}

	// A form sends booleans as 1 or 0: PVE refuses "true" there too.
	st, body := call(t, srv, "PUT", "/nodes/pve1/qemu/9000/config", "onboot=true")
	if errs, _ := body["errors"].(map[string]any); st != 400 || errs["onboot"] != "type check ('boolean') failed - got 'true'" {
		t.Fatalf("onboot=true in a form: %d %v", st, body)
	}

	for _, tc := range []struct{ contentType, body, status string }{
		{"text/plain", "cores=2", "506 upload 'Content-Type 'text/plain' not implemented"},
		{"application/json", `{"cores": `, "500 malformed JSON string: unexpected EOF"},
		{"application/json", `[1, 2]`, "500 Not a HASH reference"},
	} {
		a := request(t, srv.Client(), http.MethodPut, cfgURL, tc.contentType, tc.body)
		if a.Status != tc.status {
			t.Errorf("PUT %s %s: %s %q, want %s", tc.contentType, tc.body, a.Status, a.Body, tc.status)
		}
	}
}

// TestErrorStatusLine: PVE puts its message in the status line, where
// clients read it, closes the connection after an error, and keeps it
// alive otherwise.
func TestErrorStatusLine(t *testing.T) {
	_, srv := newServer(t, pveemu.Config{Seed: 1})
	api := srv.URL + pveemu.APIPrefix
	for _, tc := range []struct {
		method, path, body, status string
		json                       bool
	}{
		{http.MethodGet, "/nodes/pve1/qemu/100/config", "", "500 Configuration file 'nodes/pve1/qemu-server/100.conf' does not exist", true},
		{"PUT", "/nodes/pve1/qemu/9000/config", "cores=0", "400 Parameter verification failed.", true},
		{"GET", "/nodes/pve1/lxc", "", "501 Method 'GET /nodes/pve1/lxc' not implemented", true},
		{"DELETE", "/nodes/pve1/qemu/9000", "purge=1", "501 Unexpected content for method 'DELETE'", false},
		{"DELETE", "/version", "", "501 Method 'DELETE /version' not implemented", true},
		{"PATCH", "/version", "", "501 method 'PATCH' not available", false},
	} {
		ct := ""
		if tc.body != "" {
			ct = "application/x-www-form-urlencoded"
		}
		a := request(t, srv.Client(), tc.method, api+tc.path, ct, tc.body)
		if a.Status != tc.status || !a.Close {
			t.Errorf("%s %s: %s (connection closed: %v), want %s and the connection closed", tc.method, tc.path, a.Status, a.Close, tc.status)
		}
		var env map[string]any
		if err := json.Unmarshal(a.Body, &env); (err == nil) != tc.json {
			t.Errorf("%s %s: body %q, want JSON: %v", tc.method, tc.path, a.Body, tc.json)
		}
		if msg, _ := env["message"].(string); tc.json && (env["data"] != nil || !strings.HasPrefix(msg, strings.SplitN(tc.status, " ", 2)[1])) {
			t.Errorf("%s %s: body %s", tc.method, tc.path, a.Body)
		}
	}

	// A refused login has no body: the status line is all.
	req, _ := http.NewRequest(http.MethodGet, api+"/version", nil)
	req.Header.Set("Authorization", "PVEAPIToken=root@pam!t=wrong")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Status != "401 Authentication failed!" || len(b) != 0 {
		t.Fatalf("wrong secret: %s %q", resp.Status, b)
	}

	// Successes keep the connection; an error closes it, and the next
	// request gets a new one.
	var conns []bool // reused, per request
	client := srv.Client()
	get := func(path string) string {
		req, _ := http.NewRequest(http.MethodGet, api+path, nil)
		req.Header.Set("Authorization", auth)
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(info httptrace.GotConnInfo) { conns = append(conns, info.Reused) },
		}))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.Status
	}
	statuses := []string{get("/version"), get("/version"), get("/nodes/pve1/qemu/100/config"), get("/version")}
	if statuses[0] != "200 OK" || statuses[1] != "200 OK" || statuses[3] != "200 OK" ||
		len(conns) != 4 || !conns[1] || !conns[2] || conns[3] {
		t.Fatalf("statuses %v, connections reused %v: want the second and third on the first connection, the fourth on a new one", statuses, conns)
	}
}
