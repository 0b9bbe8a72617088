package pveemu_test

import (
	"encoding/base64"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/engine/proxmox/pveemu"
)

// quick are task durations short enough for tests that wait for tasks.
var quick = map[string]time.Duration{
	pveemu.TaskClone: 5 * time.Millisecond, pveemu.TaskConfig: time.Millisecond, pveemu.TaskStart: time.Millisecond,
	pveemu.TaskStop: time.Millisecond, pveemu.TaskDestroy: time.Millisecond, pveemu.TaskResize: time.Millisecond,
}

// mustOK sends a request that must answer 200 and returns its data; a
// UPID it answers is waited for, and must end OK.
func mustOK(t *testing.T, srv *httptest.Server, method, path, form string) any {
	t.Helper()
	st, body := call(t, srv, method, path, form)
	if st != 200 {
		t.Fatalf("%s %s %s: %d %v", method, path, form, st, body)
	}
	if upid, ok := body["data"].(string); ok && strings.HasPrefix(upid, "UPID:") {
		waitTask(t, srv, upid)
	}
	return body["data"]
}

func waitTask(t *testing.T, srv *httptest.Server, upid string) {
	t.Helper()
	node := strings.Split(upid, ":")[1]
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, body := call(t, srv, "GET", "/nodes/"+node+"/tasks/"+url.PathEscape(upid)+"/status", "")
		d, _ := body["data"].(map[string]any)
		if d["status"] == "stopped" {
			if d["exitstatus"] != "OK" {
				t.Fatalf("task %s ended with %v", upid, d["exitstatus"])
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s still running", upid)
		}
		time.Sleep(time.Millisecond)
	}
}

// clonedVM serves a cluster with template 9000 and VM 100, a linked clone
// of it.
func clonedVM(t *testing.T) *httptest.Server {
	t.Helper()
	_, srv := newServer(t, pveemu.Config{Seed: 1, Durations: quick})
	mustOK(t, srv, "POST", "/nodes/pve1/qemu/9000/clone", "newid=100&name=vm")
	return srv
}

func vmConfig(t *testing.T, srv *httptest.Server) map[string]any {
	t.Helper()
	return mustOK(t, srv, "GET", "/nodes/pve1/qemu/100/config", "").(map[string]any)
}

// TestConfigTakesPVEsSchema: the config endpoints take every option of
// PVE's VM schema, check its format, store it as PVE writes it, and
// answer booleans and integers as numbers.
func TestConfigTakesPVEsSchema(t *testing.T) {
	srv := clonedVM(t)
	serial := base64.StdEncoding.EncodeToString([]byte("ds=nocloud-net;s=http://10.0.0.1:8080/x7/"))
	form := url.Values{
		"agent":      {"enabled=1,fstrim_cloned_disks=1,type=virtio"},
		"cpu":        {"x86-64-v2-AES,flags=+aes;-pcid"},
		"scsihw":     {"virtio-scsi-pci"},
		"balloon":    {"256"},
		"vga":        {"std,memory=32"},
		"bios":       {"ovmf"},
		"machine":    {"q35,viommu=virtio"},
		"ostype":     {"l26"},
		"serial1":    {"socket"},
		"smbios1":    {"uuid=1d4e5a8c-7c62-4b5c-9b69-e2e5d9b3b8a1,serial=" + serial + ",base64=1"},
		"onboot":     {"1"},
		"numa":       {"1"},
		"hotplug":    {"disk,network,usb"},
		"tags":       {"Web;a,a b"},
		"startup":    {"order=2,up=30"},
		"watchdog":   {"model=i6300esb,action=reset"},
		"rng0":       {"source=/dev/urandom,max_bytes=1024"},
		"efidisk0":   {"local-lvm:1,efitype=4m,pre-enrolled-keys=1"},
		"scsi1":      {"local-lvm:8,ssd=true,discard=on"},
		"cpulimit":   {"1.5"},
		"cpuunits":   {"2048"},
		"ciupgrade":  {"0"},
		"keyboard":   {"en-us"},
		"vmgenid":    {"1"},
		"boot":       {"order=scsi0;scsi1;net0"},
		"affinity":   {"0-3,8"},
		"args":       {"-no-reboot"},
		"kvm":        {"1"},
		"protection": {"0"},
	}
	mustOK(t, srv, "POST", "/nodes/pve1/qemu/100/config", form.Encode())
	got := vmConfig(t, srv)
	want := map[string]any{
		"agent": "enabled=1,fstrim_cloned_disks=1,type=virtio", "cpu": "x86-64-v2-AES,flags=+aes;-pcid",
		"scsihw": "virtio-scsi-pci", "balloon": 256.0, "vga": "std,memory=32", "bios": "ovmf",
		"machine": "q35,viommu=virtio", "serial1": "socket", "smbios1": form.Get("smbios1"),
		"onboot": 1.0, "numa": 1.0, "hotplug": "disk,network,usb", "tags": "a;b;web",
		"startup": "order=2,up=30", "watchdog": "model=i6300esb,action=reset",
		"rng0":     "source=/dev/urandom,max_bytes=1024",
		"efidisk0": "local-lvm:vm-100-disk-1,efitype=4m,pre-enrolled-keys=1,size=528K",
		"scsi1":    "local-lvm:vm-100-disk-2,discard=on,size=8G,ssd=1",
		"cpulimit": "1.5", "cpuunits": 2048.0, "ciupgrade": 0.0, "keyboard": "en-us",
		"boot": "order=scsi0;scsi1;net0", "affinity": "0-3,8", "args": "-no-reboot", "kvm": 1.0, "protection": 0.0,
		"cores": 1.0, "template": nil, "scsi0": "local-lvm:base-9000-disk-0/vm-100-disk-0,size=4G",
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: got %#v, want %#v", k, got[k], w)
		}
	}
	if g, _ := got["vmgenid"].(string); len(g) != 36 {
		t.Errorf("vmgenid=1 makes a UUID, got %#v", got["vmgenid"])
	}

	// Deleting a disk keeps its volume as unused; a CD-ROM goes.
	mustOK(t, srv, "POST", "/nodes/pve1/qemu/100/config", "delete=scsi1,ide2")
	got = vmConfig(t, srv)
	if got["unused0"] != "local-lvm:vm-100-disk-2" || got["scsi1"] != nil || got["ide2"] != nil || got["boot"] != "order=scsi0;net0" {
		t.Errorf("after deleting scsi1 and ide2: unused0 %v, scsi1 %v, ide2 %v, boot %v", got["unused0"], got["scsi1"], got["ide2"], got["boot"])
	}

	// A drive set again on its own volume keeps it; a new volume in its
	// place leaves the old one unused.
	mustOK(t, srv, "POST", "/nodes/pve1/qemu/100/config", "scsi2="+url.QueryEscape("local-lvm:1"))
	mustOK(t, srv, "POST", "/nodes/pve1/qemu/100/config", "scsi2="+url.QueryEscape("local-lvm:vm-100-disk-3,size=1G,ssd=1"))
	if got = vmConfig(t, srv); got["scsi2"] != "local-lvm:vm-100-disk-3,size=1G,ssd=1" || got["unused1"] != nil {
		t.Errorf("scsi2 set on its own volume: scsi2 %v, unused1 %v", got["scsi2"], got["unused1"])
	}
	mustOK(t, srv, "POST", "/nodes/pve1/qemu/100/config", "scsi2="+url.QueryEscape("local-lvm:2"))
	if got = vmConfig(t, srv); got["scsi2"] != "local-lvm:vm-100-disk-4,size=2G" || got["unused1"] != "local-lvm:vm-100-disk-3" {
		t.Errorf("scsi2 on a new volume: scsi2 %v, unused1 %v", got["scsi2"], got["unused1"])
	}
}

// TestConfigRefusals: what PVE refuses, with its texts.
func TestConfigRefusals(t *testing.T) {
	srv := clonedVM(t)
	plain := "ds=nocloud-net;s=http://10.0.0.1/"
	for _, tc := range []struct {
		form, param, want string
	}{
		// The serial of a NoCloud seed holds ';' and '=': PVE takes it
		// only base64-encoded.
		{"smbios1=" + url.QueryEscape("serial="+plain), "smbios1",
			"invalid format - format error\nsmbios1.serial: value does not match the regex pattern"},
		{"smbios1=" + url.QueryEscape("uuid=nope"), "smbios1",
			"invalid format - format error\nsmbios1.uuid: value does not match the regex pattern"},
		{"smbios1=" + url.QueryEscape("serial"), "smbios1",
			"invalid format - value without key, but schema does not define a default key"},
		{"agent=" + url.QueryEscape("enabled=maybe"), "agent",
			"invalid format - format error\nagent.enabled: type check ('boolean') failed - got 'maybe'"},
		{"agent=" + url.QueryEscape("1,bogus=1"), "agent", "invalid format - invalid key in comma-separated list property: bogus"},
		{"scsihw=nope", "scsihw", "value 'nope' does not have a value in the enumeration " +
			"'lsi, lsi53c810, virtio-scsi-pci, virtio-scsi-single, megasas, pvscsi'"},
		{"cpu=Nocore", "cpu", "invalid format - Built-in cputype 'Nocore' is not defined (missing 'custom-' prefix?)"},
		{"cpu=" + url.QueryEscape("host,flags=+avx"), "cpu", "invalid format - VM-specific CPU flags must be a subset of: " +
			"aes, amd-no-ssb, amd-ssbd, hv-evmcs, hv-tlbflush, ibpb, md-clear, nested-virt, pcid, pdpe1gb, spec-ctrl, ssbd, virt-ssbd"},
		{"scsi1=" + url.QueryEscape("local-lvm:8,cache=fast"), "scsi1",
			"invalid format - format error\nscsi1.cache: value 'fast' does not have a value in the enumeration 'none, writethrough, writeback, unsafe, directsync'"},
		{"serial0=ttyS0", "serial0", "value does not match the regex pattern"},
		{"onboot=yes", "onboot", "type check ('boolean') failed - got 'yes'"},
		{"hotplug=disks", "hotplug", "invalid format - invalid hotplug feature 'disks'"},
		{"foo=1", "foo", "property is not defined in schema and the schema does not allow additional properties"},
		{"scsi31=local-lvm:1", "scsi31", "property is not defined in schema and the schema does not allow additional properties"},
		{"delete=foo", "delete", "unknown option 'foo'"},
		{"delete=cores&cores=2", "delete", "you can't use '-cores' and -delete cores' at the same time"},
		{"force=1&cores=2", "delete", "missing property required by 'force'"},
	} {
		st, body := call(t, srv, "POST", "/nodes/pve1/qemu/100/config", tc.form)
		errs, _ := body["errors"].(map[string]any)
		if st != 400 || errs[tc.param] != tc.want {
			t.Errorf("%s: %d %q, want 400 with %s: %q", tc.form, st, errs, tc.param, tc.want)
		}
	}
	for _, tc := range []struct{ form, want string }{
		{"boot=" + url.QueryEscape("order=scsi0;scsi5"), "invalid bootorder: device 'scsi5' does not exist'\n"},
		{"balloon=4096", "balloon value too large (must be smaller than assigned memory)\n"},
		{"sshkeys=" + url.QueryEscape(url.PathEscape("not a key")), "SSH public key validation error\n"},
	} {
		st, body := call(t, srv, "POST", "/nodes/pve1/qemu/100/config", tc.form)
		if st != 500 || body["message"] != tc.want {
			t.Errorf("%s: %d %v, want 500 %q", tc.form, st, body, tc.want)
		}
	}
}

// TestPendingAndCloudInit: the pending view lists every option (the
// emulator has nothing pending), and the cloud-init view shows what the
// drive was made from until the VM starts and makes it again.
func TestPendingAndCloudInit(t *testing.T) {
	srv := clonedVM(t)
	mustOK(t, srv, "POST", "/nodes/pve1/qemu/100/config", "ciuser=debian&cipassword=s3cret&searchdomain=example.net")
	// A VM made by a clone has its drive made on its first start.
	mustOK(t, srv, "POST", "/nodes/pve1/qemu/100/status/start", "")
	mustOK(t, srv, "POST", "/nodes/pve1/qemu/100/config", "ciuser=ops&nameserver=10.0.0.53&delete=searchdomain")

	pending := mustOK(t, srv, "GET", "/nodes/pve1/qemu/100/pending", "").([]any)
	byKey := map[string]map[string]any{}
	for _, it := range pending {
		m := it.(map[string]any)
		byKey[m["key"].(string)] = m
	}
	if byKey["ciuser"]["value"] != "ops" || byKey["cipassword"]["value"] != "**********" ||
		byKey["cores"]["value"] != 1.0 || byKey["digest"] == nil || byKey["ciuser"]["pending"] != nil {
		t.Fatalf("pending view: %v", pending)
	}

	ci := mustOK(t, srv, "GET", "/nodes/pve1/qemu/100/cloudinit", "").([]any)
	got := map[string]map[string]any{}
	for _, it := range ci {
		m := it.(map[string]any)
		got[m["key"].(string)] = m
	}
	if got["ciuser"]["value"] != "debian" || got["ciuser"]["pending"] != "ops" ||
		got["nameserver"]["pending"] != "10.0.0.53" || got["nameserver"]["value"] != nil ||
		got["searchdomain"]["delete"] != 1.0 || got["cipassword"]["value"] != "**********" || got["cipassword"]["pending"] != nil {
		t.Fatalf("cloud-init view after changes: %v", ci)
	}

	// PUT …/cloudinit makes the drive again: nothing is pending.
	mustOK(t, srv, "PUT", "/nodes/pve1/qemu/100/cloudinit", "")
	ci = mustOK(t, srv, "GET", "/nodes/pve1/qemu/100/cloudinit", "").([]any)
	for _, it := range ci {
		m := it.(map[string]any)
		if m["pending"] != nil || m["delete"] != nil {
			t.Fatalf("cloud-init view after a regeneration: %v", ci)
		}
	}
}

// TestSMBIOSUUIDsAreEveryVMsOwn: as in PVE, a template has an SMBIOS
// UUID, a clone gets a new one (its other SMBIOS values kept, the option
// printed with its keys sorted), a created VM one of its own, and an
// update keeps what it is given.
func TestSMBIOSUUIDsAreEveryVMsOwn(t *testing.T) {
	srv := clonedVM(t)
	uuidOf := func(vmid string) string {
		cfg := mustOK(t, srv, "GET", "/nodes/pve1/qemu/"+vmid+"/config", "").(map[string]any)
		s, _ := cfg["smbios1"].(string)
		_, uuid, _ := strings.Cut(s, "uuid=")
		return uuid
	}
	tpl, vm := uuidOf("9000"), uuidOf("100")
	if tpl == "" || vm == "" || tpl == vm {
		t.Fatalf("template's UUID %q, clone's %q: want two, different", tpl, vm)
	}
	serial := base64.StdEncoding.EncodeToString([]byte("ds=nocloud-net;s=http://10.0.0.1:8442/nocloud/hfa_x/"))
	mustOK(t, srv, "POST", "/nodes/pve1/qemu/100/config", "smbios1="+url.QueryEscape("uuid="+vm+",serial="+serial+",base64=1"))
	if got := vmConfig(t, srv)["smbios1"]; got != "uuid="+vm+",serial="+serial+",base64=1" {
		t.Errorf("smbios1 kept as %v", got)
	}
	mustOK(t, srv, "POST", "/nodes/pve1/qemu/100/clone", "newid=101&name=copy&full=1")
	cfg := mustOK(t, srv, "GET", "/nodes/pve1/qemu/101/config", "").(map[string]any)
	if got, want := cfg["smbios1"], "base64=1,serial="+serial+",uuid="+uuidOf("101"); got != want || uuidOf("101") == vm {
		t.Errorf("the clone's smbios1 is %v, want %s with a new UUID", got, want)
	}
	mustOK(t, srv, "POST", "/nodes/pve1/qemu", "vmid=102&name=blank&scsi0=local-lvm:1")
	if uuidOf("102") == "" {
		t.Error("a created VM has no SMBIOS UUID")
	}
}
