package pveemu_test

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/engine/proxmox/pveemu"
)

// newCloneServer is a cluster of pve1 and pve2 with template 9000 on
// local-lvm on pve1, whose clones and migrations take long enough to be
// seen under way.
func newCloneServer(t *testing.T) *netServer {
	t.Helper()
	d := map[string]time.Duration{}
	for k := range pveemu.DefaultDurations {
		d[k] = 10 * time.Millisecond
	}
	d[pveemu.TaskClone], d[pveemu.TaskMigrate] = 150*time.Millisecond, 150*time.Millisecond
	emu, srv := newServer(t, pveemu.Config{Seed: 1, Durations: d})
	if err := emu.AddNode(pveemu.Node{Name: "pve2"}); err != nil {
		t.Fatal(err)
	}
	return &netServer{srv, emu}
}

// taskExit waits for a task to stop and returns its exit status.
func taskExit(t *testing.T, srv *netServer, upid any) string {
	t.Helper()
	s, _ := upid.(string)
	node := strings.Split(s, ":")[1]
	deadline := time.Now().Add(5 * time.Second)
	for {
		d := okData(t, srv, "GET", "/nodes/"+node+"/tasks/"+url.PathEscape(s)+"/status", nil).(map[string]any)
		if d["status"] == "stopped" {
			return d["exitstatus"].(string)
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s never ended", s)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// refused sends a request that must fail with status and PVE's message
// (for a 400, the parameter's error).
func refused(t *testing.T, srv *netServer, method, path string, form url.Values, status int, msg string) {
	t.Helper()
	st, body := call(t, srv.Server, method, path, form.Encode())
	got, _ := body["message"].(string)
	if status == 400 {
		for _, e := range body["errors"].(map[string]any) {
			got = e.(string)
		}
	}
	if st != status || got != msg {
		t.Fatalf("%s %s %v: %d %q, want %d %q", method, path, form, st, got, status, msg)
	}
}

// config reads a VM's config on node, failing the test if it is not there.
func config(t *testing.T, srv *netServer, node string, vmid string) map[string]any {
	t.Helper()
	return okData(t, srv, "GET", "/nodes/"+node+"/qemu/"+vmid+"/config", nil).(map[string]any)
}

// TestCloneToOtherNodeNeedsSharedStorage: PVE refuses to clone a VM whose
// volumes are on local storage to another node, with qemu-server's
// messages, and takes nothing; on shared storage the clone is made on the
// source node and lands on the target, its disks beside the template's.
func TestCloneToOtherNodeNeedsSharedStorage(t *testing.T) {
	srv := newCloneServer(t)
	clone := "/nodes/pve1/qemu/9000/clone"
	refused(t, srv, "POST", clone, url.Values{"newid": {"100"}, "target": {"pve2"}}, 500,
		"can't clone VM to node 'pve2' (VM uses local storage)\n")
	// A full copy to shared storage does not help: the source's volumes
	// are what PVE looks at.
	if err := srv.emu.AddStorage(pveemu.Storage{ID: "ceph-vm", Type: "rbd"}); err != nil {
		t.Fatal(err)
	}
	refused(t, srv, "POST", clone, url.Values{"newid": {"100"}, "target": {"pve2"}, "full": {"1"}, "storage": {"ceph-vm"}}, 500,
		"can't clone VM to node 'pve2' (VM uses local storage)\n")
	refused(t, srv, "POST", clone, url.Values{"newid": {"100"}, "target": {"pve2"}, "full": {"1"}, "storage": {"local-lvm"}}, 500,
		"can't clone to non-shared storage 'local-lvm'\n")
	refused(t, srv, "POST", clone, url.Values{"newid": {"100"}, "storage": {"ceph-vm"}}, 500,
		"parameter 'storage' not allowed for linked clones\n")
	refused(t, srv, "POST", clone, url.Values{"newid": {"100"}, "full": {"1"}, "storage": {"local"}}, 400,
		"storage 'local' does not support vm images")
	refused(t, srv, "POST", clone, url.Values{"newid": {"100"}, "full": {"1"}, "storage": {"nope"}}, 500,
		"storage 'nope' does not exist\n")
	st, _ := call(t, srv.Server, "GET", "/cluster/nextid?vmid=100", "")
	if st != 200 {
		t.Fatal("a refused clone took VMID 100")
	}

	// On the template's node: a linked clone on the template's storage.
	taskExit(t, srv, okData(t, srv, "POST", clone, url.Values{"newid": {"100"}, "name": {"a"}}))
	c := config(t, srv, "pve1", "100")
	if c["scsi0"] != "local-lvm:base-9000-disk-0/vm-100-disk-0,size=4G" || c["ide2"] != "local-lvm:vm-100-cloudinit,media=cdrom" {
		t.Fatalf("linked clone on pve1: %v", c)
	}
	// A full clone to shared storage on the same node.
	taskExit(t, srv, okData(t, srv, "POST", clone, url.Values{"newid": {"101"}, "name": {"b"}, "full": {"1"}, "storage": {"ceph-vm"}}))
	if c := config(t, srv, "pve1", "101"); c["scsi0"] != "ceph-vm:vm-101-disk-0,size=4G" || c["ide2"] != "ceph-vm:vm-101-cloudinit,media=cdrom" {
		t.Fatalf("full clone to ceph-vm: %v", c)
	}

	// A template on shared storage clones to another node: the clone is
	// made on pve1 (lock: clone there) and its config moves to pve2.
	if err := srv.emu.AddTemplate(pveemu.Template{Node: "pve1", VMID: 9001, Name: "shared", Storage: "ceph-vm"}); err != nil {
		t.Fatal(err)
	}
	upid := okData(t, srv, "POST", "/nodes/pve1/qemu/9001/clone", url.Values{"newid": {"102"}, "name": {"c"}, "target": {"pve2"}})
	if c := config(t, srv, "pve1", "102"); c["lock"] != "clone" {
		t.Fatalf("during the clone, on pve1: %v", c)
	}
	if exit := taskExit(t, srv, upid); exit != "OK" {
		t.Fatalf("clone to pve2: %s", exit)
	}
	c = config(t, srv, "pve2", "102")
	if c["scsi0"] != "ceph-vm:base-9001-disk-0/vm-102-disk-0,size=4G" || c["ide2"] != "ceph-vm:vm-102-cloudinit,media=cdrom" || c["lock"] != nil {
		t.Fatalf("linked clone on pve2: %v", c)
	}
	refused(t, srv, "GET", "/nodes/pve1/qemu/102/config", nil, 500, "Configuration file 'nodes/pve1/qemu-server/102.conf' does not exist\n")
}

// TestMigrateOffline: a stopped VM moves to another node with its local
// disks, locked (migrate) while the task runs; a running one needs
// online=1, and its local disks with-local-disks=1; a linked clone on
// local storage cannot leave its template's node.
func TestMigrateOffline(t *testing.T) {
	srv := newCloneServer(t)
	taskExit(t, srv, okData(t, srv, "POST", "/nodes/pve1/qemu/9000/clone", url.Values{"newid": {"100"}, "name": {"a"}, "full": {"1"}}))
	used := func(node string) any {
		return indexBy(okData(t, srv, "GET", "/nodes/"+node+"/storage?storage=local-lvm", nil), "storage")["local-lvm"]["used"]
	}
	before1, before2 := used("pve1"), used("pve2")

	refused(t, srv, "POST", "/nodes/pve1/qemu/100/migrate", url.Values{"target": {"pve1"}}, 400, "target is local node.")
	refused(t, srv, "POST", "/nodes/pve1/qemu/100/migrate", url.Values{"target": {"pve3"}}, 500, "no such cluster node 'pve3'\n")
	refused(t, srv, "POST", "/nodes/pve1/qemu/100/migrate", url.Values{"target": {"pve2"}, "force": {"1"}}, 400, "Only root may use this option.")
	upid := okData(t, srv, "POST", "/nodes/pve1/qemu/100/migrate", url.Values{"target": {"pve2"}})
	if u := upid.(string); !strings.HasPrefix(u, "UPID:pve1:") || !strings.Contains(u, ":qmigrate:100:") {
		t.Fatalf("UPID %s, want a qmigrate task of VM 100 on pve1", u)
	}
	if c := config(t, srv, "pve1", "100"); c["lock"] != "migrate" {
		t.Fatalf("during the migration: %v, want lock migrate", c)
	}
	refused(t, srv, "POST", "/nodes/pve1/qemu/100/status/start", nil, 500, "can't lock file '/var/lock/qemu-server/lock-100.conf' - got timeout\n")
	if exit := taskExit(t, srv, upid); exit != "OK" {
		t.Fatalf("migration: %s", exit)
	}
	c := config(t, srv, "pve2", "100")
	if c["lock"] != nil || c["scsi0"] != "local-lvm:vm-100-disk-0,size=4G" {
		t.Fatalf("after the migration, on pve2: %v", c)
	}
	if a1, a2 := used("pve1"), used("pve2"); a1.(float64) >= before1.(float64) || a2.(float64) <= before2.(float64) {
		t.Fatalf("local-lvm used: pve1 %v -> %v, pve2 %v -> %v; want the disks moved", before1, a1, before2, a2)
	}

	// Running: refused without online; online, the local disk needs
	// with-local-disks, else the task aborts and the VM stays.
	awaitUPID(t, srv, okData(t, srv, "POST", "/nodes/pve2/qemu/100/status/start", nil))
	refused(t, srv, "POST", "/nodes/pve2/qemu/100/migrate", url.Values{"target": {"pve1"}}, 500, "can't migrate running VM without --online\n")
	if exit := taskExit(t, srv, okData(t, srv, "POST", "/nodes/pve2/qemu/100/migrate", url.Values{"target": {"pve1"}, "online": {"1"}})); exit != "migration aborted" {
		t.Fatalf("online migration without with-local-disks: %s", exit)
	}
	if c := config(t, srv, "pve2", "100"); c["lock"] != nil {
		t.Fatalf("after an aborted migration: %v, want it unlocked where it was", c)
	}
	if exit := taskExit(t, srv, okData(t, srv, "POST", "/nodes/pve2/qemu/100/migrate", url.Values{"target": {"pve1"}, "online": {"1"}, "with-local-disks": {"1"}})); exit != "OK" {
		t.Fatalf("online migration with local disks: %s", exit)
	}
	if st := okData(t, srv, "GET", "/nodes/pve1/qemu/100/status/current", nil).(map[string]any); st["status"] != "running" {
		t.Fatalf("after a live migration: %v, want it running on pve1", st)
	}

	// A linked clone on local storage cannot leave its base.
	taskExit(t, srv, okData(t, srv, "POST", "/nodes/pve1/qemu/9000/clone", url.Values{"newid": {"101"}, "name": {"b"}}))
	if exit := taskExit(t, srv, okData(t, srv, "POST", "/nodes/pve1/qemu/101/migrate", url.Values{"target": {"pve2"}})); exit != "migration aborted" {
		t.Fatalf("migrating a linked clone on local-lvm: %s", exit)
	}
	if c := config(t, srv, "pve1", "101"); c["lock"] != nil {
		t.Fatalf("linked clone after the aborted migration: %v", c)
	}
	// Nor can its template, while the clone sits on it.
	if exit := taskExit(t, srv, okData(t, srv, "POST", "/nodes/pve1/qemu/9000/migrate", url.Values{"target": {"pve2"}})); exit != "migration aborted" {
		t.Fatalf("migrating a template used by a linked clone: %s", exit)
	}

	// Storage the target lacks.
	if err := srv.emu.AddStorage(pveemu.Storage{ID: "fast", Type: "zfspool", Nodes: []string{"pve1"}}); err != nil {
		t.Fatal(err)
	}
	taskExit(t, srv, okData(t, srv, "POST", "/nodes/pve1/qemu/9000/clone", url.Values{"newid": {"102"}, "name": {"c"}, "full": {"1"}, "storage": {"fast"}}))
	refused(t, srv, "POST", "/nodes/pve1/qemu/102/migrate", url.Values{"target": {"pve2"}}, 500, "storage 'fast' is not available on node 'pve2'\n")
	// … unless targetstorage maps it to storage the target has.
	if exit := taskExit(t, srv, okData(t, srv, "POST", "/nodes/pve1/qemu/102/migrate", url.Values{"target": {"pve2"}, "targetstorage": {"fast:local-lvm"}})); exit != "OK" {
		t.Fatalf("migration with targetstorage: %s", exit)
	}
	if c := config(t, srv, "pve2", "102"); c["scsi0"] != "local-lvm:vm-102-disk-0,size=4G" || c["ide2"] != "local-lvm:vm-102-cloudinit,media=cdrom" {
		t.Fatalf("after a migration to local-lvm: %v", c)
	}
}

// TestMigrateThroughHA: an HA resource is migrated through HA: the API
// answers an hamigrate task, and the VM is on the target when it ends.
func TestMigrateThroughHA(t *testing.T) {
	srv := newCloneServer(t)
	taskExit(t, srv, okData(t, srv, "POST", "/nodes/pve1/qemu/9000/clone", url.Values{"newid": {"100"}, "name": {"a"}, "full": {"1"}}))
	okData(t, srv, "POST", "/cluster/ha/resources", url.Values{"sid": {"vm:100"}, "state": {"stopped"}})
	upid := okData(t, srv, "POST", "/nodes/pve1/qemu/100/migrate", url.Values{"target": {"pve2"}})
	if u := upid.(string); !strings.Contains(u, ":hamigrate:100:") {
		t.Fatalf("UPID %s, want an hamigrate task", u)
	}
	if exit := taskExit(t, srv, upid); exit != "OK" {
		t.Fatalf("HA migration: %s", exit)
	}
	if c := config(t, srv, "pve2", "100"); c["lock"] != nil {
		t.Fatalf("after the HA migration, on pve2: %v", c)
	}
}
