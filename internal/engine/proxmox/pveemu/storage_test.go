package pveemu_test

import (
	"testing"

	"github.com/holdfast/holdfast/internal/engine/proxmox/pveemu"
)

// TestStorageAsInstalled: a fresh cluster has the installer's storage.cfg
// (local, a directory, and local-lvm, an LVM thin pool), neither shared,
// on every node, and each node reports its own space.
func TestStorageAsInstalled(t *testing.T) {
	srv := newNetServer(t)
	cfg := indexBy(okData(t, srv, "GET", "/storage", nil), "storage")
	local, lvm := cfg["local"], cfg["local-lvm"]
	if len(cfg) != 2 || local["type"] != "dir" || local["path"] != "/var/lib/vz" || local["content"] != "backup,import,iso,vztmpl" ||
		lvm["type"] != "lvmthin" || lvm["thinpool"] != "data" || lvm["vgname"] != "pve" || lvm["content"] != "images,rootdir" {
		t.Fatalf("storage.cfg as installed: %v", cfg)
	}
	for _, s := range cfg {
		if s["shared"] != nil || s["nodes"] != nil || s["disable"] != nil || len(s["digest"].(string)) != 40 {
			t.Fatalf("storage %v: want local to every node, with the file's digest", s)
		}
	}
	if got := okData(t, srv, "GET", "/storage?type=lvmthin", nil).([]any); len(got) != 1 {
		t.Fatalf("type=lvmthin: %v", got)
	}

	// The template (on local-lvm, on pve1) takes space on pve1 only.
	st1 := indexBy(okData(t, srv, "GET", "/nodes/pve1/storage", nil), "storage")["local-lvm"]
	st2 := indexBy(okData(t, srv, "GET", "/nodes/pve2/storage", nil), "storage")["local-lvm"]
	for _, s := range []map[string]any{st1, st2} {
		if s["active"] != float64(1) || s["enabled"] != float64(1) || s["shared"] != float64(0) || s["total"] != float64(1<<40) {
			t.Fatalf("local-lvm: %v", s)
		}
	}
	if want := float64(4<<30 + 4<<20); st1["used"] != want || st1["avail"] != float64(1<<40)-want || st2["used"] != float64(0) {
		t.Fatalf("local-lvm used on pve1 %v, on pve2 %v; want the template's 4 GiB disk and cloud-init drive on pve1 only", st1["used"], st2["used"])
	}
	if got := okData(t, srv, "GET", "/nodes/pve1/storage?content=images", nil).([]any); len(got) != 1 {
		t.Fatalf("content=images: %v, want local-lvm only", got)
	}
	// The clone dialog's question: what do pve1 and pve2 share? Nothing.
	if got := okData(t, srv, "GET", "/nodes/pve1/storage?target=pve2", nil).([]any); len(got) != 0 {
		t.Fatalf("target=pve2: %v, want no shared storage", got)
	}
}

// TestStorageShared: a Ceph pool added to the cluster is shared, listed
// for cloning between nodes, and a storage restricted to some nodes shows
// as disabled elsewhere.
func TestStorageShared(t *testing.T) {
	srv := newNetServer(t)
	if err := srv.emu.AddStorage(pveemu.Storage{ID: "ceph-vm", Type: "rbd", Options: map[string]string{"pool": "vm"}}); err != nil {
		t.Fatal(err)
	}
	if err := srv.emu.AddStorage(pveemu.Storage{ID: "fast", Type: "zfspool", Nodes: []string{"pve2"}, Options: map[string]string{"pool": "rpool/data"}}); err != nil {
		t.Fatal(err)
	}
	cfg := indexBy(okData(t, srv, "GET", "/storage", nil), "storage")
	if c := cfg["ceph-vm"]; c["shared"] != float64(1) || c["content"] != "images" || c["pool"] != "vm" {
		t.Fatalf("ceph-vm: %v, want shared (rbd always is) with images", c)
	}
	if f := cfg["fast"]; f["nodes"] != "pve2" || f["shared"] != nil {
		t.Fatalf("fast: %v", f)
	}
	shared := indexBy(okData(t, srv, "GET", "/nodes/pve1/storage?target=pve2", nil), "storage")
	if len(shared) != 1 || shared["ceph-vm"] == nil {
		t.Fatalf("shared between pve1 and pve2: %v, want ceph-vm", shared)
	}
	fast := indexBy(okData(t, srv, "GET", "/nodes/pve1/storage", nil), "storage")["fast"]
	if fast["enabled"] != float64(0) || fast["active"] != float64(0) || fast["total"] != float64(0) {
		t.Fatalf("fast seen from pve1: %v, want disabled and inactive (configured on pve2 only)", fast)
	}
	if got := indexBy(okData(t, srv, "GET", "/nodes/pve1/storage?content=images", nil), "storage"); got["fast"] != nil || got["ceph-vm"] == nil {
		t.Fatalf("content=images on pve1: %v, want the enabled storages only", got)
	}
	st, body := call(t, srv.Server, "GET", "/nodes/pve1/storage?storage=nope", "")
	if errs, _ := body["errors"].(map[string]any); st != 400 || errs["storage"] != "No such storage." {
		t.Fatalf("storage=nope: %d %v", st, body)
	}
	st, body = call(t, srv.Server, "GET", "/nodes/pve1/storage?content=disks", "")
	if errs, _ := body["errors"].(map[string]any); st != 400 || errs["content"] != "invalid format - invalid content type 'disks'" {
		t.Fatalf("content=disks: %d %v", st, body)
	}
	st, body = call(t, srv.Server, "GET", "/storage/nope", "")
	if st != 500 || body["message"] != "storage 'nope' does not exist\n" {
		t.Fatalf("GET /storage/nope: %d %v", st, body)
	}
}
