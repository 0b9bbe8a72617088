package pveemu_test

import (
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/engine/proxmox/pveemu"
)

// TestNodeAndClusterViews: the node and cluster endpoints third-party
// clients read first answer PVE's shapes.
func TestNodeAndClusterViews(t *testing.T) {
	emu, srv := newServer(t, pveemu.Config{Seed: 1, Durations: quick})
	if err := emu.AddNode(pveemu.Node{Name: "pve2", MaxCPU: 8}); err != nil {
		t.Fatal(err)
	}
	mustOK(t, srv, "POST", "/nodes/pve1/qemu/9000/clone", "newid=100&name=vm")
	mustOK(t, srv, "POST", "/nodes/pve1/qemu/100/status/start", "")

	st := mustOK(t, srv, "GET", "/nodes/pve1/status", "").(map[string]any)
	mem := st["memory"].(map[string]any)
	cpuinfo := st["cpuinfo"].(map[string]any)
	load, _ := st["loadavg"].([]any)
	if st["pveversion"] != "pve-manager/9.1.3/e5010dc1a3c4b2f0" || mem["total"] != float64(64<<30) ||
		mem["used"] != float64(2<<30+512<<20) || cpuinfo["cpus"] != 16.0 || cpuinfo["mhz"] != "2400.000" ||
		len(load) != 3 || st["uptime"].(float64) < 86400 {
		t.Errorf("node status: %v", st)
	}
	if v := mustOK(t, srv, "GET", "/nodes/pve1/version", "").(map[string]any); v["version"] != "9.1.3" || v["release"] != "9.1" {
		t.Errorf("node version: %v", v)
	}
	if st, body := call(t, srv, "GET", "/nodes/nope/status", ""); st != 500 || body["message"] != "no such cluster node 'nope'\n" {
		t.Errorf("status of a node that is not there: %d %v", st, body)
	}

	vms := mustOK(t, srv, "GET", "/nodes/pve1/qemu", "full=1").([]any)
	byID := map[float64]map[string]any{}
	for _, v := range vms {
		m := v.(map[string]any)
		byID[m["vmid"].(float64)] = m
	}
	if len(vms) != 2 || byID[100]["status"] != "running" || byID[100]["name"] != "vm" || byID[100]["qmpstatus"] != "running" ||
		byID[100]["maxmem"] != float64(512<<20) || byID[100]["pid"] == nil || byID[9000]["template"] != 1.0 ||
		byID[9000]["status"] != "stopped" || byID[9000]["serial"] != 1.0 {
		t.Errorf("VM list: %v", vms)
	}
	if vms := mustOK(t, srv, "GET", "/nodes/pve2/qemu", "").([]any); len(vms) != 0 {
		t.Errorf("VM list of an empty node: %v", vms)
	}
	cur := mustOK(t, srv, "GET", "/nodes/pve1/qemu/100/status/current", "").(map[string]any)
	if cur["agent"] != 1.0 || cur["status"] != "running" || cur["ha"].(map[string]any)["managed"] != 0.0 {
		t.Errorf("VM status: %v", cur)
	}

	cs := mustOK(t, srv, "GET", "/cluster/status", "").([]any)
	if len(cs) != 3 {
		t.Fatalf("cluster status: %v", cs)
	}
	cl, n1, n2 := cs[0].(map[string]any), cs[1].(map[string]any), cs[2].(map[string]any)
	if cl["type"] != "cluster" || cl["quorate"] != 1.0 || cl["nodes"] != 2.0 || cl["name"] != pveemu.ClusterName ||
		n1["type"] != "node" || n1["name"] != "pve1" || n1["online"] != 1.0 || n1["local"] != 1.0 || n1["ip"] != "192.0.2.11" ||
		n2["name"] != "pve2" || n2["local"] != 0.0 || n2["nodeid"] != 2.0 || n2["ip"] != "192.0.2.12" {
		t.Errorf("cluster status: %v", cs)
	}

	// The datacenter options: a fresh installation's, then set and read
	// back parsed, as PVE answers them.
	if o := mustOK(t, srv, "GET", "/cluster/options", "").(map[string]any); o["keyboard"] != "en-us" {
		t.Errorf("options: %v", o)
	}
	mustOK(t, srv, "PUT", "/cluster/options", "migration="+url.QueryEscape("secure,network=10.1.0.0/24")+"&max_workers=8&delete=keyboard")
	mustOK(t, srv, "POST", "/nodes/pve1/qemu/100/config", "tags=web")
	o := mustOK(t, srv, "GET", "/cluster/options", "").(map[string]any)
	if mig, _ := o["migration"].(map[string]any); mig["type"] != "secure" || mig["network"] != "10.1.0.0/24" ||
		o["max_workers"] != 8.0 || o["keyboard"] != nil || !slices.Equal(toStrings(o["allowed-tags"]), []string{"web"}) {
		t.Errorf("options after an update: %v", o)
	}
	if st, body := call(t, srv, "PUT", "/cluster/options", "migration=fast"); st != 400 ||
		body["errors"].(map[string]any)["migration"] != "invalid format - format error\nmigration.type: value 'fast' does not have a value in the enumeration 'secure, insecure'" {
		t.Errorf("a bad migration option: %d %v", st, body)
	}

	// PVE 9 moved HA groups to rules.
	if st, body := call(t, srv, "GET", "/cluster/ha/groups", ""); st != 500 || body["message"] != "cannot index groups: ha groups have been migrated to rules\n" {
		t.Errorf("HA groups: %d %v", st, body)
	}
}

// asList is v as a JSON array, failing the test when it is something else.
func asList(t *testing.T, v any) []any {
	t.Helper()
	l, ok := v.([]any)
	if !ok {
		t.Fatalf("want a list, got %#v", v)
	}
	return l
}

func toStrings(v any) []string {
	var out []string
	for _, s := range v.([]any) {
		out = append(out, s.(string))
	}
	return out
}

// TestPools: pools are made, filled, listed with their members, and
// deleted only when empty; a VM joins only a pool that exists.
func TestPools(t *testing.T) {
	srv := clonedVM(t)
	if st, body := call(t, srv, "POST", "/nodes/pve1/qemu", "vmid=101&pool=nope"); st != 403 ||
		body["message"] != "Permission check failed (pool 'nope' does not exist)\n" {
		t.Fatalf("create into a missing pool: %d %v", st, body)
	}
	if st, body := call(t, srv, "POST", "/nodes/pve1/qemu/9000/clone", "newid=101&pool=nope"); st != 403 ||
		body["message"] != "Permission check failed (pool 'nope' does not exist)\n" {
		t.Fatalf("clone into a missing pool: %d %v", st, body)
	}
	mustOK(t, srv, "POST", "/pools", "poolid=web&comment=Web+servers")
	if st, body := call(t, srv, "POST", "/pools", "poolid=web"); st != 500 || body["message"] != "create pool failed: pool 'web' already exists\n" {
		t.Errorf("a second pool web: %d %v", st, body)
	}
	if st, body := call(t, srv, "POST", "/pools", "poolid=9lives"); st != 500 || body["message"] != "create pool failed: pool name must start with a letter\n" {
		t.Errorf("pool 9lives: %d %v", st, body)
	}
	mustOK(t, srv, "PUT", "/pools", "poolid=web&vms=100")
	if st, body := call(t, srv, "PUT", "/pools", "poolid=web&vms=100"); st != 500 || body["message"] != "update pools failed: VM 100 is already a pool member\n" {
		t.Errorf("adding VM 100 twice: %d %v", st, body)
	}

	list := mustOK(t, srv, "GET", "/pools", "").([]any)
	if len(list) != 1 || list[0].(map[string]any)["poolid"] != "web" || list[0].(map[string]any)["comment"] != "Web servers" {
		t.Errorf("pools: %v", list)
	}
	one := mustOK(t, srv, "GET", "/pools", "poolid=web").([]any)[0].(map[string]any)
	members := one["members"].([]any)
	if len(members) != 1 || members[0].(map[string]any)["vmid"] != 100.0 || members[0].(map[string]any)["id"] != "qemu/100" {
		t.Errorf("pool web: %v", one)
	}
	res := mustOK(t, srv, "GET", "/cluster/resources", "").([]any)
	var sawPool, sawMember bool
	for _, r := range res {
		m := r.(map[string]any)
		sawPool = sawPool || m["id"] == "/pool/web" && m["type"] == "pool"
		sawMember = sawMember || m["id"] == "qemu/100" && m["pool"] == "web"
	}
	if !sawPool || !sawMember {
		t.Errorf("resources: %v", res)
	}

	if st, body := call(t, srv, "DELETE", "/pools", "poolid=web"); st != 500 || body["message"] != "delete pool failed: pool 'web' is not empty (contains VM 100)\n" {
		t.Errorf("deleting a pool with a VM: %d %v", st, body)
	}
	mustOK(t, srv, "PUT", "/pools", "poolid=web&vms=100&delete=1")
	mustOK(t, srv, "DELETE", "/pools", "poolid=web")
	if list := mustOK(t, srv, "GET", "/pools", "").([]any); len(list) != 0 {
		t.Errorf("pools after the delete: %v", list)
	}
}

// TestTaskListAndLog: a node's tasks are listed as PVE lists them (the
// archive by default, newest first, the running ones on request, with
// filters and a total), and a task's log grows as it runs and ends with
// its result.
func TestTaskListAndLog(t *testing.T) {
	_, srv := newServer(t, pveemu.Config{Seed: 1, Durations: quick})
	mustOK(t, srv, "POST", "/nodes/pve1/qemu/9000/clone", "newid=100&name=vm&full=1")
	mustOK(t, srv, "POST", "/nodes/pve1/qemu/100/status/start", "")
	st, body := call(t, srv, "POST", "/nodes/pve1/qemu/100/status/start", "")
	if st != 200 {
		t.Fatalf("second start: %d %v", st, body)
	}
	failed, _ := body["data"].(string)
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, b := call(t, srv, "GET", "/nodes/pve1/tasks/"+url.PathEscape(failed)+"/status", "")
		if d, _ := b["data"].(map[string]any); d["status"] == "stopped" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the second start never ended")
		}
		time.Sleep(time.Millisecond)
	}

	_, all := call(t, srv, "GET", "/nodes/pve1/tasks", "")
	tasks := asList(t, all["data"])
	types := []string{}
	for _, x := range tasks {
		types = append(types, x.(map[string]any)["type"].(string))
	}
	if !slices.Equal(types, []string{"qmstart", "qmstart", "qmclone"}) || all["total"] != 3.0 {
		t.Fatalf("tasks, newest first: %v (total %v)", types, all["total"])
	}
	first := tasks[0].(map[string]any)
	if first["upid"] != failed || first["status"] != "VM 100 already running" || first["user"] != "root@pam" ||
		first["tokenid"] != "t" || first["endtime"] == nil {
		t.Errorf("the failed start: %v", first)
	}
	_, errs := call(t, srv, "GET", "/nodes/pve1/tasks", "errors=1")
	if e := asList(t, errs["data"]); len(e) != 1 || e[0].(map[string]any)["upid"] != failed {
		t.Errorf("errors=1: %v", e)
	}
	_, clones := call(t, srv, "GET", "/nodes/pve1/tasks", "typefilter=qmclone&vmid=9000")
	if c := asList(t, clones["data"]); len(c) != 1 {
		t.Errorf("typefilter=qmclone&vmid=9000: %v", c)
	}
	_, paged := call(t, srv, "GET", "/nodes/pve1/tasks", "start=1&limit=1")
	if p := asList(t, paged["data"]); len(p) != 1 || p[0].(map[string]any)["type"] != "qmstart" || p[0].(map[string]any)["upid"] == failed || paged["total"] != 3.0 {
		t.Errorf("start=1&limit=1: %v (total %v)", p, paged["total"])
	}

	// The full clone's log: each drive, the disk's copy in tenths, the end.
	clone := tasks[2].(map[string]any)["upid"].(string)
	logLines := func(upid, query string) []string {
		t.Helper()
		var out []string
		for _, l := range mustOK(t, srv, "GET", "/nodes/pve1/tasks/"+url.PathEscape(upid)+"/log", query).([]any) {
			m := l.(map[string]any)
			if int(m["n"].(float64)) != len(out)+1 && query == "" {
				t.Errorf("line %d numbered %v", len(out)+1, m["n"])
			}
			out = append(out, m["t"].(string))
		}
		return out
	}
	lines := logLines(clone, "")
	want := []string{"create full clone of drive ide2 (local-lvm:vm-9000-cloudinit)",
		"create full clone of drive scsi0 (local-lvm:base-9000-disk-0)",
		"transferred 0.0 B of 4.0 GiB (0.00%)", "transferred 409.6 MiB of 4.0 GiB (10.00%)"}
	if len(lines) != 14 || !slices.Equal(lines[:4], want) || lines[12] != "transferred 4.0 GiB of 4.0 GiB (100.00%)" || lines[13] != "TASK OK" {
		t.Errorf("clone log:\n%s", strings.Join(lines, "\n"))
	}
	if got := logLines(clone, "start=12&limit=5"); !slices.Equal(got, []string{"transferred 4.0 GiB of 4.0 GiB (100.00%)", "TASK OK"}) {
		t.Errorf("start=12: %v", got)
	}
	if got := logLines(failed, ""); !slices.Equal(got, []string{"generating cloud-init ISO", "TASK ERROR: VM 100 already running"}) {
		t.Errorf("failed start's log: %v", got)
	}
	if st, body := call(t, srv, "GET", "/nodes/pve1/tasks/UPID:pve1:00000001:00000001:00000001:qmstart:1:x@pam:/log", ""); st != 400 ||
		body["errors"].(map[string]any)["upid"] != "no such task" {
		t.Errorf("a task that is not there: %d %v", st, body)
	}
}

// TestRunningTaskLog: a task still running lists as RUNNING among the
// active tasks only, and its log holds what it has written so far.
func TestRunningTaskLog(t *testing.T) {
	_, srv := newServer(t, pveemu.Config{Seed: 1, Durations: map[string]time.Duration{pveemu.TaskClone: time.Hour}})
	st, body := call(t, srv, "POST", "/nodes/pve1/qemu/9000/clone", "newid=100&name=vm&full=1")
	upid, _ := body["data"].(string)
	if st != 200 {
		t.Fatalf("clone: %d %v", st, body)
	}
	var running string
	_, body = call(t, srv, "GET", "/nodes/pve1/tasks", "source=active")
	if a := asList(t, body["data"]); len(a) == 1 {
		running, _ = a[0].(map[string]any)["status"].(string)
	}
	if running != "RUNNING" {
		t.Errorf("active tasks: %v", body["data"])
	}
	if _, body := call(t, srv, "GET", "/nodes/pve1/tasks", ""); len(asList(t, body["data"])) != 0 {
		t.Errorf("the archive holds a running task: %v", body["data"])
	}
	lines := mustOK(t, srv, "GET", "/nodes/pve1/tasks/"+url.PathEscape(upid)+"/log", "").([]any)
	if len(lines) != 1 || lines[0].(map[string]any)["t"] != "create full clone of drive ide2 (local-lvm:vm-9000-cloudinit)" {
		t.Errorf("log of a clone that has just begun: %v", lines)
	}
}
