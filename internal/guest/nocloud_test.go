package guest_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/guest"
)

// noCloudServer is a metadata service for two VMs, web (10.0.1.5) and db
// (10.0.2.7), handing out a fake agent binary.
func noCloudServer(t *testing.T) (*guest.Server, *guest.Credentials, []byte) {
	t.Helper()
	dir := t.TempDir()
	creds, err := guest.OpenCredentials(dir, "demo")
	if err != nil {
		t.Fatal(err)
	}
	st := &compile.State{Cloud: "demo", Domain: "demo.example", Instances: []compile.Instance{
		{Name: "web", Site: "dc", VMID: 101, FQDN: "web.demo.example", SSHKeys: []string{"ssh-ed25519 AAAA web"},
			NICs: []compile.NIC{{Index: 0, Zone: "apps", IP: "10.0.1.5", Prefix: 24, Gateway: "10.0.1.1", MAC: "BC:24:11:00:00:01"}}},
		{Name: "db", Site: "dc", VMID: 102,
			NICs: []compile.NIC{{Index: 0, Zone: "data", IP: "10.0.2.7", Prefix: 24, Gateway: "10.0.2.1", MAC: "BC:24:11:00:00:02"}}},
	}}
	bin := []byte("#!/bin/sh\necho not really holdfast\n")
	path := filepath.Join(dir, "holdfast")
	if err := os.WriteFile(path, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	s := &guest.Server{StateDir: dir, Cloud: "demo", Credentials: creds, Reports: guest.NewReports(dir, "demo"),
		State: func() (*compile.State, error) { return st, nil }, AgentBinary: path}
	return s, creds, bin
}

func get(t *testing.T, h http.Handler, from, path string) (int, string) {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "http://192.168.100.1:8442"+path, nil)
	r.RemoteAddr = from
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	b, _ := io.ReadAll(w.Result().Body)
	return w.Code, string(b)
}

func TestNoCloudServesAVMItsOwnSeed(t *testing.T) {
	s, creds, bin := noCloudServer(t)
	h := s.Handler()
	web := compile.InstanceID("dc", "web")
	seed := guest.NoCloudPath(creds.Token(web))
	from := "10.0.1.5:40000"

	code, body := get(t, h, from, seed+"meta-data")
	var md map[string]string
	if err := yaml.Unmarshal([]byte(body), &md); code != 200 || err != nil {
		t.Fatalf("meta-data: %d %v\n%s", code, err, body)
	}
	if md["local-hostname"] != "web" || md["instance-id"] == "" {
		t.Errorf("meta-data = %v", md)
	}

	code, body = get(t, h, from, seed+"network-config")
	var nc struct {
		Version   int
		Ethernets map[string]struct {
			Match     map[string]string
			Addresses []string
			Routes    []struct{ To, Via string }
		}
	}
	if err := yaml.Unmarshal([]byte(body), &nc); code != 200 || err != nil {
		t.Fatalf("network-config: %d %v\n%s", code, err, body)
	}
	eth := nc.Ethernets["eth0"]
	if nc.Version != 2 || eth.Match["macaddress"] != "bc:24:11:00:00:01" || len(eth.Addresses) != 1 || eth.Addresses[0] != "10.0.1.5/24" ||
		len(eth.Routes) != 1 || eth.Routes[0].Via != "10.0.1.1" {
		t.Errorf("network-config:\n%s", body)
	}

	if code, body = get(t, h, from, seed+"vendor-data"); code != 200 || body != "" {
		t.Errorf("vendor-data: %d %q", code, body)
	}

	code, body = get(t, h, from, seed+"user-data")
	if code != 200 || !strings.HasPrefix(body, "#cloud-config\n") {
		t.Fatalf("user-data: %d\n%s", code, body)
	}
	var ud struct {
		SSHKeys    []string                                      `yaml:"ssh_authorized_keys"`
		WriteFiles []struct{ Path, Permissions, Content string } `yaml:"write_files"`
		RunCmd     [][]string                                    `yaml:"runcmd"`
	}
	if err := yaml.Unmarshal([]byte(body), &ud); err != nil {
		t.Fatalf("user-data is not YAML: %v\n%s", err, body)
	}
	files := map[string]struct{ Permissions, Content string }{}
	for _, f := range ud.WriteFiles {
		files[f.Path] = struct{ Permissions, Content string }{f.Permissions, f.Content}
	}
	if tok := files["/etc/holdfast/agent.token"]; strings.TrimSpace(tok.Content) != creds.Token(web) || tok.Permissions != "0600" {
		t.Errorf("the token file is %+v", tok)
	}
	var settings map[string]string
	if err := json.Unmarshal([]byte(files["/etc/holdfast/agent.json"].Content), &settings); err != nil {
		t.Fatal(err)
	}
	if settings["server"] != "http://192.168.100.1:8442" || settings["token_file"] != "/etc/holdfast/agent.token" || settings["state_dir"] != "/var/lib/holdfast-agent" {
		t.Errorf("agent.json = %v", settings)
	}
	sum := sha256.Sum256(bin)
	installer := files["/usr/local/lib/holdfast/install-agent"]
	if !strings.Contains(installer.Content, hex.EncodeToString(sum[:])) || installer.Permissions != "0700" {
		t.Errorf("the installer does not check the binary's SHA-256 or is readable by others:\n%+v", installer)
	}
	if !strings.Contains(files["/etc/systemd/system/holdfast-agent.service"].Content, "Restart=always") {
		t.Errorf("unit:\n%s", files["/etc/systemd/system/holdfast-agent.service"].Content)
	}
	if len(ud.RunCmd) != 1 || ud.RunCmd[0][0] != "/usr/local/lib/holdfast/install-agent" {
		t.Errorf("runcmd = %v", ud.RunCmd)
	}
	if len(ud.SSHKeys) != 1 {
		t.Errorf("the instance's SSH keys are lost: %v", ud.SSHKeys)
	}

	if code, body = get(t, h, from, seed+"holdfast"); code != 200 || body != string(bin) {
		t.Errorf("holdfast: %d, %d bytes, want the binary", code, len(body))
	}
}

func TestNoCloudAnswersAnythingElseWithOne404(t *testing.T) {
	s, creds, _ := noCloudServer(t)
	h := s.Handler()
	web, db := compile.InstanceID("dc", "web"), compile.InstanceID("dc", "db")
	webToken := creds.Token(web)
	old := creds.Token(db)
	if err := creds.Rotate(db); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ name, from, token string }{
		{"another VM's token from this VM's address", "10.0.1.5:40000", creds.Token(db)},
		{"this VM's token from another VM's address", "10.0.2.7:40000", webToken},
		{"this VM's token from an address of no VM", "10.0.9.9:40000", webToken},
		{"an unknown token", "10.0.1.5:40000", "hfa_" + strings.Repeat("A", 43)},
		{"not a token", "10.0.1.5:40000", "web"},
		{"a rotated token from its VM", "10.0.2.7:40000", old},
	}
	var first string
	for _, c := range cases {
		for _, doc := range []string{"meta-data", "user-data", "vendor-data", "network-config", "holdfast"} {
			code, body := get(t, h, c.from, guest.NoCloudPath(c.token)+doc)
			if code != http.StatusNotFound {
				t.Errorf("%s: %s answered %d, want 404", c.name, doc, code)
			}
			if first == "" {
				first = body
			}
			if body != first {
				t.Errorf("%s: %s's 404 says %q, another says %q: a prober could tell them apart", c.name, doc, body, first)
			}
		}
	}
	// The right token from the right address still works after another's rotation.
	if code, _ := get(t, h, "10.0.1.5:1", guest.NoCloudPath(webToken)+"meta-data"); code != 200 {
		t.Errorf("web's own seed: %d", code)
	}
}

func TestNoCloudSeed(t *testing.T) {
	got := guest.NoCloudSeed("http://192.168.100.1:8442/", "hfa_x")
	if got != "ds=nocloud-net;s=http://192.168.100.1:8442/nocloud/hfa_x/" {
		t.Errorf("seed = %q", got)
	}
	if base, token, ok := guest.ParseNoCloudSeed(got); !ok || base != "http://192.168.100.1:8442" || token != "hfa_x" {
		t.Errorf("ParseNoCloudSeed(%q) = %q, %q, %v", got, base, token, ok)
	}
	for _, s := range []string{"", "ds=nocloud-net;s=http://h/", "ds=nocloud;s=http://h/nocloud/hfa_x/", "ds=nocloud-net;s=http://h/nocloud/x/", "ds=nocloud-net;s=http://h/nocloud/hfa_x"} {
		if _, _, ok := guest.ParseNoCloudSeed(s); ok {
			t.Errorf("ParseNoCloudSeed(%q) takes it for a Holdfast seed", s)
		}
	}
}
