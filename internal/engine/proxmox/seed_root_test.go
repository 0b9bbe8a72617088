package proxmox_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/guest"
	"github.com/holdfast/holdfast/internal/nsthread"
	"github.com/holdfast/holdfast/internal/testenv"
)

// The metadata service's address in the test: its own namespace, so any
// port will do.
const (
	playMetadataIP  = "192.0.2.1"
	playMetadataURL = "http://" + playMetadataIP + ":8442"
	// strangerIP is an address on the VM's network that is no instance's.
	strangerIP = "10.30.0.250"
)

// systemctlStandIn plays systemd, which does not run in the test: it
// starts a unit's ExecStart in the background, as restart would, and
// keeps its PID where the test finds it.
const systemctlStandIn = `#!/bin/sh
# systemctl stand-in for the cloud-init test: systemd does not run here.
case "$1" in
daemon-reload|enable) exit 0 ;;
start|restart)
	cmd=$(sed -n 's/^ExecStart=//p' "/etc/systemd/system/$2")
	[ -n "$cmd" ] || { echo "systemctl stand-in: $2 has no ExecStart" >&2; exit 1; }
	if [ -f "$UNIT_PIDFILE" ]; then kill "$(cat "$UNIT_PIDFILE")" 2>/dev/null || true; fi
	setsid sh -c "exec $cmd" >"$UNIT_LOG" 2>&1 </dev/null &
	echo $! >"$UNIT_PIDFILE"
	;;
*) echo "systemctl stand-in: $*: not played" >&2; exit 1 ;;
esac
`

// TestCloudInitPlaysTheSeed plays cloud-init in a Proxmox VM: the seed
// read from the VM's smbios1 through the PVE API leads, from a network
// namespace holding the VM's address, to its meta-data, network-config and
// user-data on the metadata service (guest.Server, in a namespace of its
// own); the user-data's own commands (bootcmd, write_files, runcmd) run
// there, in a mount namespace whose /etc, /usr/local and /var/lib are
// overlays, with a systemctl stand-in on PATH that starts the unit's
// ExecStart; the real holdfast binary is downloaded, checked, installed
// and started as the agent, whose health report the control plane then
// holds for the instance. Another VM's token from the VM's address, and
// the VM's token from another address, get 404.
func TestCloudInitPlaysTheSeed(t *testing.T) {
	testenv.NeedRoot(t, "network and mount namespaces play the VM and the metadata service's network")
	for _, tool := range []string{"ip", "unshare", "mount", "curl", "sha256sum", "setsid"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Unavailable(t, tool+" is not installed")
		}
	}
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "holdfast")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/holdfast/holdfast/cmd/holdfast").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	// The cloud, applied on the emulator with the metadata URL.
	cl := startSeedCluster(t)
	path := seedSpec(t, cl, playMetadataURL)
	state := t.TempDir()
	converge(t, path, state, false, 3)
	c := open(t, path, state)
	st := c.Desired
	c.Close()
	vm, other := st.Instances[0], st.Instances[1]
	for _, in := range st.Instances {
		for _, nic := range in.NICs {
			if nic.IP == strangerIP {
				t.Fatalf("%s holds %s, the test's stranger address", in.Name, strangerIP)
			}
		}
	}
	creds, err := guest.OpenCredentials(state, st.Cloud)
	if err != nil {
		t.Fatal(err)
	}

	// The VM's seed, as cloud-init reads it from the SMBIOS serial.
	cfg, err := cl.API.Config(context.Background(), "pve1", vm.VMID)
	if err != nil {
		t.Fatal(err)
	}
	seedURL := seedFromSMBIOS(t, cfg.SMBIOS1)
	if !strings.HasPrefix(seedURL, playMetadataURL+"/") {
		t.Fatalf("seed URL %q is not on the metadata service %s", seedURL, playMetadataURL)
	}

	// Two namespaces joined by a veth: the metadata service's and the VM's.
	sfx := make([]byte, 3)
	_, _ = rand.Read(sfx)
	mdNS, vmNS := "hfmd"+hex.EncodeToString(sfx), "hfvm"+hex.EncodeToString(sfx)
	t.Logf("namespaces %s and %s", mdNS, vmNS)
	for _, ns := range []string{mdNS, vmNS} {
		run(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
		run(t, "ip", "-n", ns, "link", "set", "lo", "up")
	}
	run(t, "ip", "-n", mdNS, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", vmNS)
	nic := vm.NICs[0]
	run(t, "ip", "-n", mdNS, "addr", "add", playMetadataIP+"/32", "dev", "eth0")
	run(t, "ip", "-n", mdNS, "link", "set", "eth0", "up")
	run(t, "ip", "-n", mdNS, "route", "add", netip.MustParsePrefix(nic.IP+"/"+strconv.Itoa(nic.Prefix)).Masked().String(), "dev", "eth0")
	run(t, "ip", "-n", vmNS, "addr", "add", nic.IP+"/"+strconv.Itoa(nic.Prefix), "dev", "eth0")
	run(t, "ip", "-n", vmNS, "addr", "add", strangerIP+"/"+strconv.Itoa(nic.Prefix), "dev", "eth0")
	run(t, "ip", "-n", vmNS, "link", "set", "eth0", "up")
	run(t, "ip", "-n", vmNS, "route", "add", playMetadataIP+"/32", "dev", "eth0", "src", nic.IP)

	// The metadata service, as holdfast serve --guest-listen runs it.
	var ln net.Listener
	if err := nsthread.In("/run/netns/"+mdNS, func() (err error) {
		ln, err = net.Listen("tcp", playMetadataIP+":8442")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	srv := &guest.Server{StateDir: state, Cloud: st.Cloud, State: guest.FileState(guest.AppliedFile(state, st.Cloud)),
		Credentials: creds, Reports: guest.NewReports(state, st.Cloud), AgentBinary: bin}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("the metadata service: %v", err)
		}
	})

	// cloud-init's reads, from the VM's address.
	fetch := func(doc string) string {
		out, err := exec.Command("ip", "netns", "exec", vmNS, "curl", "-fsS", "--max-time", "10", seedURL+doc).Output()
		if err != nil {
			t.Fatalf("%s: %v", doc, err)
		}
		return string(out)
	}
	var md map[string]string
	if err := yaml.Unmarshal([]byte(fetch("meta-data")), &md); err != nil || md["instance-id"] == "" || md["local-hostname"] != vm.Name {
		t.Errorf("meta-data %v (%v)", md, err)
	}
	if nc := fetch("network-config"); !strings.Contains(nc, nic.IP+"/"+strconv.Itoa(nic.Prefix)) {
		t.Errorf("network-config does not give the VM its address %s:\n%s", nic.IP, nc)
	}
	var ud struct {
		BootCmd    [][]string `yaml:"bootcmd"`
		WriteFiles []struct {
			Path, Permissions, Content string
		} `yaml:"write_files"`
		RunCmd [][]string `yaml:"runcmd"`
	}
	userData := fetch("user-data")
	if !strings.HasPrefix(userData, "#cloud-config\n") {
		t.Fatalf("user-data is not #cloud-config:\n%s", userData)
	}
	if err := yaml.Unmarshal([]byte(userData), &ud); err != nil {
		t.Fatalf("user-data: %v", err)
	}

	// The negatives, on the wire as a prober would try them.
	otherSeed := playMetadataURL + guest.NoCloudPath(creds.Token(compile.InstanceID(other.Site, other.Name)))
	if code := status(t, vmNS, "", otherSeed+"user-data"); code != "404" {
		t.Errorf("another VM's token from this VM's address: %s, want 404", code)
	}
	for _, doc := range []string{"meta-data", "user-data", "holdfast"} {
		if code := status(t, vmNS, strangerIP, seedURL+doc); code != "404" {
			t.Errorf("this VM's token from another address: %s answered %s, want 404", doc, code)
		}
	}

	// cloud-init's modules in its order: bootcmd, write_files, runcmd.
	standIn := filepath.Join(tmp, "bin", "systemctl")
	if err := os.MkdirAll(filepath.Dir(standIn), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(standIn, []byte(systemctlStandIn), 0o755); err != nil {
		t.Fatal(err)
	}
	var script strings.Builder
	script.WriteString("set -e\nmount -t tmpfs tmpfs " + tmp + "/rw\n")
	for i, dir := range []string{"/etc", "/usr/local", "/var/lib"} {
		up, work := fmt.Sprintf("%s/rw/%d/up", tmp, i), fmt.Sprintf("%s/rw/%d/work", tmp, i)
		fmt.Fprintf(&script, "mkdir -p %s %s\nmount -t overlay overlay -o lowerdir=%s,upperdir=%s,workdir=%s %s\n", up, work, dir, up, work, dir)
	}
	for _, argv := range ud.BootCmd {
		script.WriteString(shellJoin(argv) + "\n")
	}
	for i, f := range ud.WriteFiles {
		src := filepath.Join(tmp, "files", strconv.Itoa(i))
		if err := os.MkdirAll(filepath.Dir(src), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(src, []byte(f.Content), 0o600); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&script, "install -D -m %s %s %s\n", f.Permissions, src, shellQuote(f.Path))
	}
	for _, argv := range ud.RunCmd {
		script.WriteString(shellJoin(argv) + "\n")
	}
	if err := os.MkdirAll(filepath.Join(tmp, "rw"), 0o700); err != nil {
		t.Fatal(err)
	}
	pidFile, unitLog := filepath.Join(tmp, "agent.pid"), filepath.Join(tmp, "agent.log")
	cmd := exec.Command("ip", "netns", "exec", vmNS, "unshare", "--mount", "--propagation", "private", "sh", "-c", script.String())
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(standIn)+":"+os.Getenv("PATH"), "UNIT_PIDFILE="+pidFile, "UNIT_LOG="+unitLog)
	out, err := cmd.CombinedOutput()
	t.Cleanup(func() {
		if b, err := os.ReadFile(pidFile); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				_ = exec.Command("kill", strconv.Itoa(pid)).Run()
			}
		}
	})
	if err != nil {
		t.Fatalf("the user-data's commands: %v\n%s\nscript:\n%s", err, out, script.String())
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("the unit was not started: %v\n%s", err, out)
	}
	root := "/proc/" + strings.TrimSpace(string(b)) + "/root"

	// What the VM holds now, seen through the agent's own mount namespace.
	if fi, err := os.Stat(root + "/etc/holdfast/agent.token"); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the token file: %v %v, want mode 0600", fi, err)
	}
	if got, err := os.ReadFile(root + "/usr/local/bin/holdfast"); err != nil || !sameFile(t, got, bin) {
		t.Errorf("/usr/local/bin/holdfast is not the served binary (%v)", err)
	}

	// The agent reports, from the VM's address.
	id := compile.InstanceID(vm.Site, vm.Name)
	reports := guest.NewReports(state, st.Cloud)
	deadline := time.Now().Add(60 * time.Second)
	for {
		rep, ok, err := reports.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			if host, _, _ := net.SplitHostPort(rep.From); host != nic.IP {
				t.Errorf("the report came from %s, want the VM's %s", rep.From, nic.IP)
			}
			t.Logf("%s's agent reports: version %q, problems %v", vm.Name, rep.Version, rep.Problems)
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(unitLog)
			t.Fatalf("no health report from %s's agent after 60s; its log:\n%s", vm.Name, log)
		}
		time.Sleep(50 * time.Millisecond) // polling a file the server writes; the deadline bounds it
	}
	if _, ok, _ := reports.Get(compile.InstanceID(other.Site, other.Name)); ok {
		t.Errorf("%s reported, but only %s's agent runs", other.Name, vm.Name)
	}
}

func run(t *testing.T, argv ...string) {
	t.Helper()
	if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
}

// status is the HTTP status curl gets from the VM's namespace, from
// address from (empty: the route's source).
func status(t *testing.T, ns, from, url string) string {
	t.Helper()
	argv := []string{"netns", "exec", ns, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10"}
	if from != "" {
		argv = append(argv, "--interface", from)
	}
	out, err := exec.Command("ip", append(argv, url)...).Output()
	if err != nil {
		t.Fatalf("curl %s: %v", url, err)
	}
	return string(out)
}

// seedFromSMBIOS reads the seed URL out of an smbios1 option as
// cloud-init reads the DMI serial: "ds=nocloud-net;s=URL".
func seedFromSMBIOS(t *testing.T, smbios1 string) string {
	t.Helper()
	var serial string
	encoded := false
	for _, part := range strings.Split(smbios1, ",") {
		k, v, _ := strings.Cut(part, "=")
		switch k {
		case "serial":
			serial = v
		case "base64":
			encoded = v == "1"
		}
	}
	if encoded {
		b, err := base64.StdEncoding.DecodeString(serial)
		if err != nil {
			t.Fatalf("smbios1 %q: %v", smbios1, err)
		}
		serial = string(b)
	}
	fields := strings.Split(serial, ";")
	if fields[0] != "ds=nocloud-net" {
		t.Fatalf("serial %q does not name the nocloud-net datasource", serial)
	}
	for _, f := range fields[1:] {
		if u, ok := strings.CutPrefix(f, "s="); ok {
			return u
		}
	}
	t.Fatalf("serial %q has no seed URL", serial)
	return ""
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func shellJoin(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = shellQuote(a)
	}
	return strings.Join(q, " ")
}

func sameFile(t *testing.T, got []byte, path string) bool {
	t.Helper()
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(got) == string(want)
}
