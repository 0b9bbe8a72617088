package pveemu_test

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	proxmox "github.com/luthermonson/go-proxmox"

	"github.com/holdfast/holdfast/internal/engine/proxmox/pveemu"
)

// thirdParty serves an emulated two-node cluster (template 9000 on pve1)
// the way `pve-emulator` does, over HTTPS with a fresh
// self-signed certificate, and answers a go-proxmox client that trusts
// that certificate and authenticates with an API token.
func thirdParty(t *testing.T) *proxmox.Client {
	t.Helper()
	const tokenID, secret = "root@pam!gp", "3f1c5a52-8d2e-4c41-9a77-0b6e2d1f4c88"
	durations := map[string]time.Duration{}
	for typ := range pveemu.DefaultDurations {
		durations[typ] = 20 * time.Millisecond
	}
	emu := pveemu.New(pveemu.Config{Tokens: map[string]string{tokenID: secret}, Seed: 3, Durations: durations})
	for _, n := range []string{"pve1", "pve2"} {
		if err := emu.AddNode(pveemu.Node{Name: n}); err != nil {
			t.Fatal(err)
		}
	}
	if err := emu.AddTemplate(pveemu.Template{Node: "pve1", VMID: 9000, Name: "debian-12-cloudinit", DiskGiB: 4}); err != nil {
		t.Fatal(err)
	}
	cert, err := pveemu.SelfSignedCertificate("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := pveemu.NewServer(emu, &cert)
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })

	roots := x509.NewCertPool()
	roots.AddCert(cert.Leaf)
	return proxmox.NewClient("https://"+ln.Addr().String()+pveemu.APIPrefix,
		proxmox.WithAPIToken(tokenID, secret), proxmox.WithRootCAs(roots),
		proxmox.WithHTTPClient(&http.Client{Transport: &http.Transport{}}), proxmox.WithTimeout(30*time.Second))
}

// wait waits for a go-proxmox task and checks it ended OK.
func wait(t *testing.T, what string, task *proxmox.Task, err error) *proxmox.Task {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if err := task.Wait(context.Background(), 10*time.Millisecond, 10*time.Second); err != nil {
		t.Fatalf("%s: task %s: %v", what, task.UPID, err)
	}
	return task
}

// logText is a task's whole log, one line after the other.
func logText(t *testing.T, task *proxmox.Task) []string {
	t.Helper()
	log, err := task.Log(context.Background(), 0, 0)
	if err != nil {
		t.Fatalf("log of %s: %v", task.UPID, err)
	}
	lines := make([]string, len(log))
	for n, l := range log {
		if n < 0 || n >= len(lines) {
			t.Fatalf("log of %s: line %d of %d", task.UPID, n, len(log))
		}
		lines[n] = l
	}
	return lines
}

// TestThirdPartyGoClient drives the emulator with github.com/luthermonson/
// go-proxmox, a Go client written against real PVE: every call a cloud
// tool makes to stand up and tear down a VM, checked for what its user
// sees.
func TestThirdPartyGoClient(t *testing.T) {
	ctx := context.Background()
	c := thirdParty(t)

	v, err := c.Version(ctx)
	if err != nil || v.Version != "9.1.3" || v.Release != "9.1" {
		t.Fatalf("version: %+v %v", v, err)
	}

	nodes, err := c.Nodes(ctx)
	if err != nil || len(nodes) != 2 || nodes[0].Node != "pve1" || nodes[0].Status != "online" ||
		nodes[1].MaxCPU != 16 || nodes[1].MaxMem != 64<<30 {
		t.Fatalf("nodes: %+v %v", nodes, err)
	}

	node, err := c.Node(ctx, "pve1")
	if err != nil || node.PVEVersion != "pve-manager/9.1.3/e5010dc1a3c4b2f0" || node.CPUInfo.CPUs != 16 ||
		node.Memory.Total != 64<<30 || node.Memory.Used == 0 || len(node.LoadAvg) != 3 || node.Uptime == 0 {
		t.Fatalf("node status: %+v %v", node, err)
	}

	cluster, err := c.Cluster(ctx)
	if err != nil || cluster.Name != pveemu.ClusterName || cluster.Quorate != 1 || len(cluster.Nodes) != 2 ||
		cluster.Nodes[0].Name != "pve1" || cluster.Nodes[0].Status != "online" || cluster.Nodes[1].IP != "192.0.2.12" {
		t.Fatalf("cluster status: %+v %v", cluster, err)
	}

	resources, err := cluster.Resources(ctx)
	if err != nil {
		t.Fatalf("resources: %v", err)
	}
	kinds := map[string]int{}
	for _, r := range resources {
		kinds[r.Type]++
		if r.ID == "qemu/9000" && (r.Template != 1 || r.Node != "pve1" || r.Name != "debian-12-cloudinit" || r.MaxMem != 512<<20) {
			t.Errorf("resource of the template: %+v", r)
		}
	}
	if kinds["node"] != 2 || kinds["qemu"] != 1 || kinds["storage"] < 2 {
		t.Fatalf("resources by type: %v", kinds)
	}
	if vms, err := cluster.Resources(ctx, "vm"); err != nil || len(vms) != 1 || vms[0].VMID != 9000 {
		t.Fatalf("resources of type vm: %+v %v", vms, err)
	}

	vms, err := node.VirtualMachines(ctx)
	if err != nil || len(vms) != 1 || vms[0].VMID != 9000 || !bool(vms[0].Template) || vms[0].Status != "stopped" {
		t.Fatalf("VMs of pve1: %+v %v", vms, err)
	}

	storages, err := node.Storages(ctx)
	if err != nil {
		t.Fatalf("storage of pve1: %v", err)
	}
	var names []string
	for _, s := range storages {
		names = append(names, s.Name)
		if s.Name == "local-lvm" && (s.Enabled != 1 || s.Active != 1 || s.Total == 0 || !strings.Contains(s.Content, "images")) {
			t.Errorf("local-lvm: %+v", s)
		}
	}
	if !slices.Contains(names, "local") || !slices.Contains(names, "local-lvm") {
		t.Fatalf("storage of pve1: %v", names)
	}

	// Clone the template in full.
	tmpl, err := node.VirtualMachine(ctx, 9000)
	if err != nil || tmpl.Name != "debian-12-cloudinit" || tmpl.VirtualMachineConfig.Agent != "1" {
		t.Fatalf("template: %+v %v", tmpl, err)
	}
	newid, task, err := tmpl.Clone(ctx, &proxmox.VirtualMachineCloneOptions{NewID: 100, Name: "web", Full: true})
	clone := wait(t, "clone", task, err)
	if newid != 100 {
		t.Fatalf("clone made VM %d", newid)
	}
	if lines := logText(t, clone); len(lines) < 3 || lines[1] != "create full clone of drive scsi0 (local-lvm:base-9000-disk-0)" ||
		lines[len(lines)-2] != "transferred 4.0 GiB of 4.0 GiB (100.00%)" || lines[len(lines)-1] != "TASK OK" {
		t.Fatalf("clone's log:\n%s", strings.Join(lines, "\n"))
	}

	// Its config, read and written (JSON bodies, booleans, property
	// strings, a NoCloud seed in the SMBIOS serial, SSH keys).
	vm, err := node.VirtualMachine(ctx, 100)
	if err != nil {
		t.Fatalf("VM 100: %v", err)
	}
	cfg := vm.VirtualMachineConfig
	if cfg.Name != "web" || *cfg.Cores != 1 || cfg.Memory != 512 || cfg.Lock != "" || bool(cfg.Template) ||
		!strings.HasPrefix(cfg.SCSIs["scsi0"], "local-lvm:vm-100-disk-0,") || !strings.HasPrefix(cfg.Nets["net0"], "virtio=BC:24:11:") {
		t.Fatalf("clone's config: %+v", cfg)
	}
	seed := "ds=nocloud-net;s=http://10.0.0.1:8080/7c1b0f/"
	smbios := "uuid=5b0c8f2e-3f1e-4c1a-9d3b-6f7e8a9b0c1d,serial=" + base64.StdEncoding.EncodeToString([]byte(seed)) + ",base64=1"
	const key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHJ8jUFBWZTcMCnVb6tQ82PLDF3E+iG+JqWrsEzxK9z9 ops@example.net"
	task, err = vm.Config(ctx,
		proxmox.VirtualMachineOption{Name: "cores", Value: 2},
		proxmox.VirtualMachineOption{Name: "memory", Value: "2048"},
		proxmox.VirtualMachineOption{Name: "onboot", Value: true},
		proxmox.VirtualMachineOption{Name: "agent", Value: "enabled=1,fstrim_cloned_disks=1"},
		proxmox.VirtualMachineOption{Name: "cpu", Value: "x86-64-v2-AES"},
		proxmox.VirtualMachineOption{Name: "smbios1", Value: smbios},
		proxmox.VirtualMachineOption{Name: "ipconfig0", Value: "ip=10.0.0.5/24,gw=10.0.0.1"},
		proxmox.VirtualMachineOption{Name: "sshkeys", Value: proxmox.EncodeSSHKeys(key)},
		proxmox.VirtualMachineOption{Name: "tags", Value: "web;holdfast"},
	)
	wait(t, "config", task, err)
	if err := vm.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	cfg = vm.VirtualMachineConfig
	if *cfg.Cores != 2 || cfg.Memory != 2048 || !bool(cfg.OnBoot) || cfg.Agent != "enabled=1,fstrim_cloned_disks=1" ||
		cfg.CPU != "x86-64-v2-AES" || cfg.SMBios1 != smbios || cfg.IPConfigs["ipconfig0"] != "ip=10.0.0.5/24,gw=10.0.0.1" ||
		cfg.SSHKeys != proxmox.EncodeSSHKeys(key) || cfg.Tags != "holdfast;web" {
		t.Fatalf("config after the update: %+v", cfg)
	}

	// PVE's refusals, as the client reports them: a parameter error with
	// its detail, and a refusal whose message is the status line's reason.
	_, err = vm.Config(ctx, proxmox.VirtualMachineOption{Name: "smbios1", Value: "serial=" + seed})
	var apiErr *proxmox.APIError
	if !errors.As(err, &apiErr) || !proxmox.IsBadRequest(err) ||
		apiErr.Errors["smbios1"] != "invalid format - format error\nsmbios1.serial: value does not match the regex pattern" {
		t.Fatalf("a serial that is not base64: %v", err)
	}
	_, err = tmpl.Start(ctx)
	if !errors.As(err, &apiErr) || apiErr.Status != "500 you can't start a vm if it's a template" {
		t.Fatalf("starting the template: %v", err)
	}

	// Start, stop, and the logs of both.
	task, err = vm.Start(ctx)
	start := wait(t, "start", task, err)
	if err := vm.Ping(ctx); err != nil || !vm.IsRunning() {
		t.Fatalf("after the start: %s %v", vm.Status, err)
	}
	if lines := logText(t, start); !slices.Equal(lines, []string{"generating cloud-init ISO", "TASK OK"}) {
		t.Fatalf("start's log: %q", lines)
	}
	task, err = vm.Stop(ctx)
	wait(t, "stop", task, err)
	if err := vm.Ping(ctx); err != nil || !vm.IsStopped() {
		t.Fatalf("after the stop: %s %v", vm.Status, err)
	}

	tasks, err := node.Tasks(ctx, &proxmox.NodeTasksOptions{VMID: 100})
	if err != nil {
		t.Fatalf("tasks of VM 100: %v", err)
	}
	var types []string
	for _, tk := range tasks {
		types = append(types, tk.Type)
		if tk.Status != "OK" || tk.User != "root@pam" || tk.EndTime.IsZero() {
			t.Errorf("task %+v", tk)
		}
	}
	if !slices.Equal(types, []string{"qmstop", "qmstart", "qmconfig"}) {
		t.Fatalf("tasks of VM 100, newest first: %v", types)
	}

	// Delete it: the VM is gone, and the client knows a missing VM.
	task, err = vm.Delete(ctx, nil)
	wait(t, "delete", task, err)
	if _, err := node.VirtualMachine(ctx, 100); !proxmox.IsNotFound(err) {
		t.Fatalf("VM 100 after its delete: %v", err)
	}
	if vms, err := node.VirtualMachines(ctx); err != nil || len(vms) != 1 {
		t.Fatalf("VMs of pve1 after the delete: %+v %v", vms, err)
	}
}
