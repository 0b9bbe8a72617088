package pveemu_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/engine/proxmox/pveemu"
)

const auth = "PVEAPIToken=root@pam!t=s3cret"

func newServer(t *testing.T, cfg pveemu.Config) (*pveemu.Emulator, *httptest.Server) {
	t.Helper()
	cfg.Tokens = map[string]string{"root@pam!t": "s3cret"}
	emu := pveemu.New(cfg)
	if err := emu.AddNode(pveemu.Node{Name: "pve1"}); err != nil {
		t.Fatal(err)
	}
	if err := emu.AddTemplate(pveemu.Template{Node: "pve1", VMID: 9000, Name: "tmpl"}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)
	return emu, srv
}

// call sends one request on a fresh connection (so that Go's transport
// never retries a dropped one by itself) and returns the status (0 when
// the connection was dropped) and the decoded body (nil when it is not
// JSON). The form goes in the body of a POST or PUT and in the query
// string otherwise, as PVE clients send it.
func call(t *testing.T, srv *httptest.Server, method, path, form string) (int, map[string]any) {
	t.Helper()
	st, _, b := send(t, srv, method, path, form)
	if st == 0 {
		return 0, nil
	}
	var body map[string]any
	if err := json.Unmarshal(b, &body); err != nil && len(b) > 0 && strings.HasPrefix(string(b), "{") {
		t.Fatalf("%s %s: %d %q is not JSON", method, path, st, b)
	}
	return st, body
}

// send is call answering the raw status line and body.
func send(t *testing.T, srv *httptest.Server, method, path, form string) (status int, statusLine string, body []byte) {
	t.Helper()
	target := srv.URL + pveemu.APIPrefix + path
	var rd io.Reader
	if method == "POST" || method == "PUT" {
		rd = strings.NewReader(form)
	} else if form != "" {
		target += "?" + form
	}
	req, _ := http.NewRequest(method, target, rd)
	req.Header.Set("Authorization", auth)
	if rd != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Status, b
}

func TestFaultsAreRepeatable(t *testing.T) {
	run := func() []int {
		_, srv := newServer(t, pveemu.Config{Seed: 7, Faults: pveemu.Faults{ErrorRate: 0.3, DropRate: 0.1}})
		var statuses []int
		for range 60 {
			st, _ := call(t, srv, "GET", "/version", "")
			statuses = append(statuses, st)
		}
		return statuses
	}
	a, b := run(), run()
	seen := map[int]int{}
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("request %d: %d then %d with the same seed", i, a[i], b[i])
		}
		seen[a[i]]++
	}
	if seen[200] == 0 || seen[0] == 0 || seen[500]+seen[595] == 0 {
		t.Fatalf("want successes, drops and errors, got %v", seen)
	}
}

func TestTasksTakeTime(t *testing.T) {
	_, srv := newServer(t, pveemu.Config{Seed: 1, Durations: map[string]time.Duration{pveemu.TaskClone: 50 * time.Millisecond}})
	st, body := call(t, srv, "POST", "/nodes/pve1/qemu/9000/clone", "newid=100&name=a")
	if st != 200 {
		t.Fatalf("clone: %d %v", st, body)
	}
	upid, _ := body["data"].(string)
	if !strings.HasPrefix(upid, "UPID:pve1:") || !strings.HasSuffix(upid, ":qmclone:9000:root@pam!t:") {
		t.Fatalf("UPID %q", upid)
	}
	_, body = call(t, srv, "GET", "/nodes/pve1/tasks/"+upid+"/status", "")
	if d := body["data"].(map[string]any); d["status"] != "running" || d["exitstatus"] != nil {
		t.Fatalf("task right after the clone: %v", d)
	}
	_, body = call(t, srv, "GET", "/nodes/pve1/qemu/100/config", "")
	if d := body["data"].(map[string]any); d["lock"] != "clone" {
		t.Fatalf("config during the clone: %v", d)
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		_, body = call(t, srv, "GET", "/nodes/pve1/tasks/"+upid+"/status", "")
		if d := body["data"].(map[string]any); d["status"] == "stopped" {
			if d["exitstatus"] != "OK" {
				t.Fatalf("task ended with %v", d["exitstatus"])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the clone never finished")
		}
		time.Sleep(5 * time.Millisecond)
	}
	_, body = call(t, srv, "GET", "/nodes/pve1/qemu/100/config", "")
	if d := body["data"].(map[string]any); d["lock"] != nil || d["name"] != "a" {
		t.Fatalf("config after the clone: %v", d)
	}
}

func TestErrorShapes(t *testing.T) {
	_, srv := newServer(t, pveemu.Config{Seed: 1})
	for _, tc := range []struct {
		method, path, form string
		status             int
		message            string
		param, paramErr    string
	}{
		{"GET", "/nodes/pve1/qemu/100/config", "", 500, "Configuration file 'nodes/pve1/qemu-server/100.conf' does not exist\n", "", ""},
		{"POST", "/nodes/pve1/qemu/9000/config", "bogus=1", 400, "Parameter verification failed.\n",
			"bogus", "property is not defined in schema and the schema does not allow additional properties"},
		{"POST", "/nodes/pve1/qemu/9000/clone", "", 400, "Parameter verification failed.\n", "newid", "property is missing and it is not optional"},
		{"PUT", "/nodes/pve1/qemu/9000/resize", "disk=scsi0&size=huge", 400, "Parameter verification failed.\n", "size", "value does not match the regex pattern"},
		{"POST", "/nodes/pve1/qemu/9000/config", "cores=0", 400, "Parameter verification failed.\n", "cores", "value must have a minimum value of 1"},
		{"POST", "/nodes/pve1/qemu/9000/config", "ipconfig0=ip%3D10.0.0.5%2F24%2Cgw%3Dnope", 400, "Parameter verification failed.\n",
			"ipconfig0", "invalid format - gw: value does not look like a valid IPv4 address"},
		{"POST", "/nodes/pve1/qemu/9000/config", "skiplock=1&cores=2", 400, "Parameter verification failed.\n", "skiplock", "Only root may use this option."},
		{"GET", "/nodes/pve1/lxc", "", 501, "Method 'GET /nodes/pve1/lxc' not implemented", "", ""},
	} {
		st, body := call(t, srv, tc.method, tc.path, tc.form)
		if st != tc.status || body["message"] != tc.message || body["data"] != nil {
			t.Errorf("%s %s: %d %v", tc.method, tc.path, st, body)
			continue
		}
		if tc.param != "" {
			errs, _ := body["errors"].(map[string]any)
			if errs[tc.param] != tc.paramErr {
				t.Errorf("%s %s: errors %v, want %s: %s", tc.method, tc.path, errs, tc.param, tc.paramErr)
			}
		}
	}
}
