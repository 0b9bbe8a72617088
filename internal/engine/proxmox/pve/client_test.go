package pve_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/engine/proxmox/pve"
	"github.com/holdfast/holdfast/internal/engine/proxmox/pveemu"
)

const (
	tokenID  = "holdfast@pve!engine"
	secret   = "5c7bd2a4-6f1e-4b36-9d0a-2f5b8c1e7a90"
	template = 9000
)

// fast are task durations short enough for tests, long enough that a
// client must poll.
var fast = map[string]time.Duration{
	pveemu.TaskClone: 40 * time.Millisecond, pveemu.TaskStart: 20 * time.Millisecond,
	pveemu.TaskStop: 10 * time.Millisecond, pveemu.TaskShutdown: 20 * time.Millisecond,
	pveemu.TaskReboot: 20 * time.Millisecond, pveemu.TaskDestroy: 10 * time.Millisecond,
	pveemu.TaskResize: 10 * time.Millisecond, pveemu.TaskConfig: 5 * time.Millisecond,
	pveemu.TaskMigrate: 40 * time.Millisecond,
}

// cluster is an emulated two-node cluster with a template on pve1, served
// over loopback HTTP.
type cluster struct {
	emu *pveemu.Emulator
	srv *httptest.Server
	// bodies records every request body, to check their encoding.
	mu     sync.Mutex
	bodies []string
}

func newCluster(t *testing.T, cfg pveemu.Config) *cluster {
	t.Helper()
	cfg.Tokens = map[string]string{tokenID: secret}
	if cfg.Durations == nil {
		cfg.Durations = fast
	}
	c := &cluster{emu: pveemu.New(cfg)}
	for _, n := range []string{"pve1", "pve2"} {
		if err := c.emu.AddNode(pveemu.Node{Name: n}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.emu.AddTemplate(pveemu.Template{Node: "pve1", VMID: template, Name: "debian-12", DiskGiB: 4}); err != nil {
		t.Fatal(err)
	}
	if err := c.emu.AddPool("hf", ""); err != nil {
		t.Fatal(err)
	}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil {
			b, _ := io.ReadAll(r.Body)
			c.mu.Lock()
			c.bodies = append(c.bodies, string(b))
			c.mu.Unlock()
			r.Body = io.NopCloser(strings.NewReader(string(b)))
		}
		c.emu.ServeHTTP(w, r)
	}))
	t.Cleanup(c.srv.Close)
	return c
}

func (c *cluster) client(t *testing.T, mod ...func(*pve.Config)) *pve.Client {
	t.Helper()
	cfg := pve.Config{URL: c.srv.URL, TokenID: tokenID, Secret: secret,
		RetryWait: time.Millisecond, PollMin: 2 * time.Millisecond, PollMax: 10 * time.Millisecond,
		TaskTimeout: 5 * time.Second}
	for _, m := range mod {
		m(&cfg)
	}
	cl, err := pve.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

// eventually polls cond until it holds or two seconds pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestVMLifecycle(t *testing.T) {
	c := newCluster(t, pveemu.Config{Seed: 1})
	cl := c.client(t)
	ctx := ctx(t)

	v, err := cl.Version(ctx)
	if err != nil || v.Release == "" {
		t.Fatalf("version: %+v, %v", v, err)
	}
	nodes, err := cl.Nodes(ctx)
	if err != nil || len(nodes) != 2 || nodes[0].Node != "pve1" || nodes[0].Status != "online" {
		t.Fatalf("nodes: %+v, %v", nodes, err)
	}

	// The template is on local storage: cloned on its node, then moved.
	if err := cl.Clone(ctx, "pve1", template, pve.CloneOptions{NewID: 1001, Name: "web-1", Full: true, Pool: "hf"}); err != nil {
		t.Fatal(err)
	}
	if err := cl.Migrate(ctx, "pve1", 1001, pve.MigrateOptions{Target: "pve2"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := cl.Config(ctx, "pve2", 1001)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Name != "web-1" || cfg.Lock != "" || cfg.Template || !strings.HasPrefix(cfg.Raw["scsi0"], "local-lvm:vm-1001-disk-0,") {
		t.Fatalf("clone config: %+v", cfg)
	}
	templateMAC := mustConfig(t, cl, "pve1", template).Nets[0].MAC
	if cfg.Nets[0].MAC == "" || cfg.Nets[0].MAC == templateMAC {
		t.Fatalf("clone kept the template's MAC %q", templateMAC)
	}

	keys := key1 + " ops@example.net\n" + key2 + " other key"
	net0 := pve.NetDevice{Model: "virtio", MAC: cfg.Nets[0].MAC, Bridge: "vmbr0", Tag: 203, Firewall: true}
	up := pve.ConfigUpdate{
		Digest: cfg.Digest, Cores: 4, MemoryMiB: 4096,
		Nets:      map[int]pve.NetDevice{0: net0},
		IPConfigs: map[int]pve.IPConfig{0: {IP: "10.2.3.10/24", Gateway: "10.2.3.1"}},
		SSHKeys:   keys, CIUser: "ops", Nameserver: "10.2.3.1", Searchdomain: "svc.example.net",
	}
	if err := cl.SetConfig(ctx, "pve2", 1001, up); err != nil {
		t.Fatal(err)
	}
	got := mustConfig(t, cl, "pve2", 1001)
	if got.Cores != 4 || got.MemoryMiB != 4096 || got.CIUser != "ops" || got.Nameserver != "10.2.3.1" ||
		got.Searchdomain != "svc.example.net" || got.SSHKeys != keys {
		t.Fatalf("config after update: %+v", got)
	}
	if got.Raw["net0"] != "virtio="+net0.MAC+",bridge=vmbr0,firewall=1,tag=203" || got.Nets[0].String() != got.Raw["net0"] {
		t.Fatalf("net0 = %q", got.Raw["net0"])
	}
	if got.Raw["ipconfig0"] != "ip=10.2.3.10/24,gw=10.2.3.1" || got.IPConfigs[0].Gateway != "10.2.3.1" {
		t.Fatalf("ipconfig0 = %q", got.Raw["ipconfig0"])
	}

	if err := cl.Resize(ctx, "pve2", 1001, "scsi0", "+6G"); err != nil {
		t.Fatal(err)
	}
	if err := cl.Start(ctx, "pve2", 1001); err != nil {
		t.Fatal(err)
	}
	st, err := cl.Status(ctx, "pve2", 1001)
	if err != nil || st.Status != "running" || st.MaxDisk != 10<<30 || st.CPUs != 4 || st.MaxMem != 4096<<20 {
		t.Fatalf("status: %+v, %v", st, err)
	}
	vms, err := cl.VMs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if vm := findVM(vms, 1001); len(vms) != 2 || vm.Node != "pve2" || vm.Pool != "hf" || !findVM(vms, template).Template {
		t.Fatalf("vms: %+v", vms)
	}

	// Deleting a running VM is refused, for good.
	err = cl.Delete(ctx, "pve2", 1001)
	if err == nil || pve.IsRetryable(err) || !strings.Contains(err.Error(), "is running - destroy failed") {
		t.Fatalf("delete while running: %v", err)
	}
	if err := cl.Stop(ctx, "pve2", 1001); err != nil {
		t.Fatal(err)
	}
	if err := cl.Delete(ctx, "pve2", 1001); err != nil {
		t.Fatal(err)
	}
	_, err = cl.Config(ctx, "pve2", 1001)
	if !pve.IsNotFound(err) || pve.IsRetryable(err) {
		t.Fatalf("config of a deleted VM: %v", err)
	}
}

func findVM(vms []pve.VM, vmid int) pve.VM {
	for _, v := range vms {
		if v.VMID == vmid {
			return v
		}
	}
	return pve.VM{}
}

func mustConfig(t *testing.T, cl *pve.Client, node string, vmid int) pve.VMConfig {
	t.Helper()
	cfg, err := cl.Config(context.Background(), node, vmid)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestTaskFailureIsChecked(t *testing.T) {
	c := newCluster(t, pveemu.Config{Seed: 2})
	cl := c.client(t)
	ctx := ctx(t)
	if err := cl.Clone(ctx, "pve1", template, pve.CloneOptions{NewID: 200, Name: "a", Full: true}); err != nil {
		t.Fatal(err)
	}
	if got := mustConfig(t, cl, "pve1", 200).Raw["scsi0"]; !strings.HasPrefix(got, "local-lvm:vm-200-disk-0,") {
		t.Fatalf("full clone disk %q", got)
	}
	if err := cl.Start(ctx, "pve1", 200); err != nil {
		t.Fatal(err)
	}
	err := cl.Start(ctx, "pve1", 200)
	var te *pve.TaskError
	if !errors.As(err, &te) || te.ExitStatus != "VM 200 already running" || pve.IsRetryable(err) {
		t.Fatalf("second start: %v", err)
	}
	err = cl.Start(ctx, "pve1", template)
	if err == nil || !strings.Contains(err.Error(), "you can't start a vm if it's a template") || pve.IsRetryable(err) {
		t.Fatalf("starting a template: %v", err)
	}
}

func TestLockSurfacesAsRetryable(t *testing.T) {
	durations := map[string]time.Duration{}
	for k, v := range fast {
		durations[k] = v
	}
	durations[pveemu.TaskClone] = 400 * time.Millisecond
	c := newCluster(t, pveemu.Config{Seed: 3, Durations: durations})
	cl := c.client(t)
	ctx := ctx(t)

	cloned := make(chan error, 1)
	go func() { cloned <- cl.Clone(ctx, "pve1", template, pve.CloneOptions{NewID: 300, Name: "db-1"}) }()
	eventually(t, "the clone to lock VM 300", func() bool {
		vms, err := cl.VMs(ctx)
		return err == nil && findVM(vms, 300).Lock == "clone"
	})
	err := cl.SetConfig(ctx, "pve1", 300, pve.ConfigUpdate{Cores: 2})
	var pe *pve.Error
	if !errors.As(err, &pe) || pe.StatusCode != http.StatusInternalServerError || pe.Message != "VM is locked (clone)" {
		t.Fatalf("config during clone: %v", err)
	}
	if !pve.IsLocked(err) || !pve.IsRetryable(err) {
		t.Fatalf("a lock must be retryable: %v", err)
	}
	if err := <-cloned; err != nil {
		t.Fatal(err)
	}
	if err := cl.SetConfig(ctx, "pve1", 300, pve.ConfigUpdate{Cores: 2}); err != nil {
		t.Fatalf("config after clone: %v", err)
	}
}

func TestDigestMismatch(t *testing.T) {
	c := newCluster(t, pveemu.Config{Seed: 4})
	cl := c.client(t)
	ctx := ctx(t)
	if err := cl.Clone(ctx, "pve1", template, pve.CloneOptions{NewID: 400, Name: "x"}); err != nil {
		t.Fatal(err)
	}
	stale := mustConfig(t, cl, "pve1", 400).Digest
	if err := cl.SetConfig(ctx, "pve1", 400, pve.ConfigUpdate{Digest: stale, Cores: 2}); err != nil {
		t.Fatal(err)
	}
	fresh := mustConfig(t, cl, "pve1", 400).Digest
	if fresh == stale || len(fresh) != 40 {
		t.Fatalf("digest %q after a change (was %q)", fresh, stale)
	}
	err := cl.SetConfig(ctx, "pve1", 400, pve.ConfigUpdate{Digest: stale, Cores: 8})
	if !pve.IsDigestMismatch(err) || pve.IsRetryable(err) {
		t.Fatalf("update with a stale digest: %v", err)
	}
	if got := mustConfig(t, cl, "pve1", 400).Cores; got != 2 {
		t.Fatalf("a refused update changed cores to %d", got)
	}
	err = cl.Resize(ctx, "pve1", 400, "scsi0", "1G")
	if err == nil || !strings.Contains(err.Error(), "shrinking disks is not supported") {
		t.Fatalf("shrink: %v", err)
	}
}

// strictForm is what a strictly URL-encoded form body may contain.
var strictForm = regexp.MustCompile(`^[A-Za-z0-9%._~=&-]*$`)

func TestSSHKeysEncoding(t *testing.T) {
	c := newCluster(t, pveemu.Config{Seed: 5})
	cl := c.client(t)
	ctx := ctx(t)
	if err := cl.Clone(ctx, "pve1", template, pve.CloneOptions{NewID: 500, Name: "k"}); err != nil {
		t.Fatal(err)
	}
	keys := key1 + " me@host (laptop); it's *mine*!\n" + key2 + " ~x ü"
	if err := cl.SetConfig(ctx, "pve1", 500, pve.ConfigUpdate{SSHKeys: keys}); err != nil {
		t.Fatal(err)
	}
	got := mustConfig(t, cl, "pve1", 500)
	if got.SSHKeys != keys {
		t.Fatalf("sshkeys round trip:\n got %q\nwant %q", got.SSHKeys, keys)
	}
	// PVE stores (and answers) the keys still encoded.
	if got.Raw["sshkeys"] != pve.Escape(keys) {
		t.Fatalf("stored sshkeys %q", got.Raw["sshkeys"])
	}
	c.mu.Lock()
	for _, b := range c.bodies {
		if !strictForm.MatchString(b) {
			t.Errorf("body not strictly URL-encoded: %q", b)
		}
	}
	c.mu.Unlock()

	// Encoded only once, the keys reach PVE decoded, and PVE refuses them.
	form := "sshkeys=" + pve.Escape(key1+" me@host")
	if status, body := rawPost(t, c, "/nodes/pve1/qemu/500/config", form); status != 400 ||
		!strings.Contains(body, `"sshkeys":"invalid format - invalid urlencoded string: `+key1+` me@host"`) {
		t.Fatalf("singly encoded sshkeys: %d %s", status, body)
	}
	// Keys that are not public keys are refused, as ssh-keygen refuses them.
	err := cl.SetConfig(ctx, "pve1", 500, pve.ConfigUpdate{SSHKeys: "ssh-ed25519 AAAA+b/c= me@host"})
	if err == nil || !strings.Contains(err.Error(), "500 SSH public key validation error") || pve.IsRetryable(err) {
		t.Fatalf("a key that is not one: %v", err)
	}
}

// Two real public keys: PVE checks every line of sshkeys with ssh-keygen.
const (
	key1 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHJ8jUFBWZTcMCnVb6tQ82PLDF3E+iG+JqWrsEzxK9z9"
	key2 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK9LpoOp3QbYk8InDBrKSLCatP/MlNvcgZ1vfym6hzH6"
)

func rawPost(t *testing.T, c *cluster, path, form string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, c.srv.URL+pveemu.APIPrefix+path, strings.NewReader(form))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "PVEAPIToken="+tokenID+"="+secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestParameterErrors(t *testing.T) {
	c := newCluster(t, pveemu.Config{Seed: 6})
	cl := c.client(t)
	ctx := ctx(t)
	if err := cl.Clone(ctx, "pve1", template, pve.CloneOptions{NewID: 600, Name: "p"}); err != nil {
		t.Fatal(err)
	}
	err := cl.SetConfig(ctx, "pve1", 600, pve.ConfigUpdate{Nets: map[int]pve.NetDevice{0: {Bridge: "vmbr0", Tag: 5000}}})
	var pe *pve.Error
	if !errors.As(err, &pe) || pe.StatusCode != http.StatusBadRequest || pe.Message != "Parameter verification failed." ||
		!strings.Contains(pe.Params["net0"], "tag: value must have a maximum value of 4094") || pve.IsRetryable(err) {
		t.Fatalf("tag 5000: %v", err)
	}
	err = cl.Clone(ctx, "pve1", template, pve.CloneOptions{NewID: 601, Name: "not_a_dns_name"})
	if !errors.As(err, &pe) || pe.StatusCode != http.StatusBadRequest || pe.Params["name"] == "" {
		t.Fatalf("bad name: %v", err)
	}
	err = cl.Clone(ctx, "pve1", template, pve.CloneOptions{NewID: 99, Name: "low"})
	// pve-vmid's format check comes before the bounds, as in PVE.
	if !errors.As(err, &pe) || pe.Params["newid"] != "invalid format - value does not look like a valid VM ID" {
		t.Fatalf("newid 99: %v", err)
	}
	err = cl.Clone(ctx, "pve1", template, pve.CloneOptions{NewID: 600, Name: "again"})
	if !pve.IsExists(err) || pve.IsRetryable(err) || !strings.Contains(err.Error(), "unable to create VM 600: config file already exists") {
		t.Fatalf("clone onto an existing VMID: %v", err)
	}
}

// TestAuthFailures: PVE answers a refused token with no body, only the
// status line "401 Authentication failed!" (it never says why), and a
// request without a token with "401 No ticket". The client's error carries
// that reason phrase.
func TestAuthFailures(t *testing.T) {
	c := newCluster(t, pveemu.Config{Seed: 7})
	for name, mod := range map[string]func(*pve.Config){
		"wrong secret":  func(cfg *pve.Config) { cfg.Secret = "nope" },
		"unknown token": func(cfg *pve.Config) { cfg.TokenID = "root@pam!other" },
	} {
		t.Run(name, func(t *testing.T) {
			_, err := c.client(t, mod).Version(ctx(t))
			var pe *pve.Error
			if !pve.IsUnauthorized(err) || pve.IsRetryable(err) || !errors.As(err, &pe) || pe.Message != "Authentication failed!" ||
				err.Error() != "pve: GET /version: 401 Authentication failed!" {
				t.Fatalf("got %v", err)
			}
		})
	}
	resp, err := http.Get(c.srv.URL + pveemu.APIPrefix + "/version")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.Status != "401 No ticket" || len(b) != 0 {
		t.Fatalf("no token: %s %q", resp.Status, b)
	}
}

func TestFingerprintPinning(t *testing.T) {
	emu := pveemu.New(pveemu.Config{Tokens: map[string]string{tokenID: secret}})
	srv := httptest.NewUnstartedServer(emu)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake
	srv.StartTLS()
	defer srv.Close()
	right := pve.Fingerprint(srv.Certificate())
	wrong := strings.Repeat("AB:", 31) + "AB"
	for fp, ok := range map[string]bool{right: true, wrong: false} {
		cl, err := pve.New(pve.Config{URL: srv.URL, TokenID: tokenID, Secret: secret, Fingerprint: fp, RetryWait: time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		_, err = cl.Version(ctx(t))
		if ok && err != nil {
			t.Fatalf("pinned to the right certificate: %v", err)
		}
		if !ok && (err == nil || pve.IsRetryable(err) || !strings.Contains(err.Error(), "pinned fingerprint")) {
			t.Fatalf("pinned to another certificate: %v", err)
		}
	}
	if _, err := pve.New(pve.Config{URL: srv.URL, TokenID: tokenID, Secret: secret, Fingerprint: "AB:CD"}); err == nil {
		t.Fatal("a short fingerprint was accepted")
	}
}

// TestRetriesThroughInjectedErrors runs 50 operations against a cluster
// answering 5 % of requests with errors; the client's retries carry them
// all through.
func TestRetriesThroughInjectedErrors(t *testing.T) {
	c := newCluster(t, pveemu.Config{Seed: 42, Faults: pveemu.Faults{ErrorRate: 0.05}})
	cl := c.client(t, func(cfg *pve.Config) { cfg.Retries = 8 })
	ctx := ctx(t)
	ops := 0
	do := func(what string, err error) {
		t.Helper()
		ops++
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	for i := range 7 {
		id := 700 + i
		do("clone", cl.Clone(ctx, "pve1", template, pve.CloneOptions{NewID: id, Name: fmt.Sprintf("w%d", i)}))
		do("config", cl.SetConfig(ctx, "pve1", id, pve.ConfigUpdate{Cores: 2, SSHKeys: key1 + " k"}))
		do("resize", cl.Resize(ctx, "pve1", id, "scsi0", "+1G"))
		do("start", cl.Start(ctx, "pve1", id))
		_, err := cl.Status(ctx, "pve1", id)
		do("status", err)
		do("stop", cl.Stop(ctx, "pve1", id))
		do("delete", cl.Delete(ctx, "pve1", id))
	}
	_, err := cl.VMs(ctx)
	do("list", err)
	if ops < 50 {
		t.Fatalf("only %d operations", ops)
	}
	if st := c.emu.Stats(); st.InjectedErrors == 0 {
		t.Fatalf("no errors were injected: %+v", st)
	}
}

func TestDroppedConnectionsRetried(t *testing.T) {
	c := newCluster(t, pveemu.Config{Seed: 8, Faults: pveemu.Faults{DropRate: 0.2}})
	cl := c.client(t, func(cfg *pve.Config) { cfg.Retries = 10 })
	ctx := ctx(t)
	if err := cl.Clone(ctx, "pve1", template, pve.CloneOptions{NewID: 800, Name: "d"}); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if _, err := cl.Config(ctx, "pve1", 800); err != nil {
			t.Fatal(err)
		}
	}
	if st := c.emu.Stats(); st.Dropped == 0 {
		t.Fatalf("no connection was dropped: %+v", st)
	}

	// Without retries the drop surfaces, typed and retryable.
	c.emu.SetFaults(pveemu.Faults{DropRate: 1})
	_, err := c.client(t, func(cfg *pve.Config) { cfg.Retries = -1 }).Config(ctx, "pve1", 800)
	var ce *pve.ConnError
	if !errors.As(err, &ce) || !pve.IsRetryable(err) {
		t.Fatalf("dropped connection: %v", err)
	}
}

func TestStuckTaskTimesOut(t *testing.T) {
	c := newCluster(t, pveemu.Config{Seed: 9})
	cl := c.client(t, func(cfg *pve.Config) { cfg.TaskTimeout = 150 * time.Millisecond })
	ctx := ctx(t)
	if err := cl.Clone(ctx, "pve1", template, pve.CloneOptions{NewID: 900, Name: "s"}); err != nil {
		t.Fatal(err)
	}
	c.emu.SetFaults(pveemu.Faults{StuckRate: 1})
	err := cl.Start(ctx, "pve1", 900)
	var tt *pve.TaskTimeoutError
	if !errors.As(err, &tt) || !pve.IsRetryable(err) || !strings.Contains(tt.UPID, ":qmstart:900:") {
		t.Fatalf("stuck start: %v", err)
	}
	// The stuck task still holds the VM.
	c.emu.SetFaults(pveemu.Faults{})
	err = cl.Stop(ctx, "pve1", 900)
	if !pve.IsLocked(err) || !strings.Contains(err.Error(), "can't lock file '/var/lock/qemu-server/lock-900.conf' - got timeout") {
		t.Fatalf("stop while a task holds the VM: %v", err)
	}
}

// TestNextIDCollides shows why Holdfast allocates VMIDs itself: PVE's
// nextid reserves nothing, so two creators asking at once get the same
// ID and one of their clones fails.
func TestNextIDCollides(t *testing.T) {
	c := newCluster(t, pveemu.Config{Seed: 10})
	ctx := ctx(t)
	var asked sync.WaitGroup
	asked.Add(2)
	ids := make([]int, 2)
	errs := make([]error, 2)
	var done sync.WaitGroup
	for i := range 2 {
		done.Add(1)
		go func() {
			defer done.Done()
			cl := c.client(t)
			id, err := cl.NextID(ctx)
			ids[i] = id
			asked.Done()
			asked.Wait() // both have asked before either clones
			if err != nil {
				errs[i] = err
				return
			}
			errs[i] = cl.Clone(ctx, "pve1", template, pve.CloneOptions{NewID: id, Name: fmt.Sprintf("c%d", i)})
		}()
	}
	done.Wait()
	if ids[0] != 100 || ids[1] != 100 {
		t.Fatalf("nextid answered %v", ids)
	}
	failed := 0
	for _, err := range errs {
		if err != nil {
			if !pve.IsExists(err) {
				t.Fatalf("unexpected error: %v", err)
			}
			failed++
		}
	}
	if failed != 1 {
		t.Fatalf("%d of 2 clones with the same nextid failed: %v", failed, errs)
	}
}
