package proxmox_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/deploy"
	"github.com/holdfast/holdfast/internal/engine/proxmox/pve"
	"github.com/holdfast/holdfast/internal/engine/proxmox/pveemu"
	"github.com/holdfast/holdfast/internal/engine/proxmox/pvetest"
)

// requests counts the cluster's requests by method and the last element
// of their path (POST clone, POST migrate).
type requests struct {
	mu sync.Mutex
	n  map[string]int
}

func count(c *pvetest.Cluster) *requests {
	r := &requests{n: map[string]int{}}
	c.SetHook(func(req *http.Request) bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.n[req.Method+" "+req.URL.Path[strings.LastIndex(req.URL.Path, "/")+1:]]++
		return true
	})
	return r
}

func (r *requests) get(key string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n[key]
}

func threeNodes(t *testing.T) *pvetest.Cluster {
	t.Helper()
	return pvetest.Start(t, []string{"pve1", "pve2", "pve3"}, pveemu.Config{Seed: 21, Durations: fast(10 * time.Millisecond)})
}

// applied applies the cloud at path until it converges and returns it
// opened.
func applied(t *testing.T, path string) *deploy.Cloud {
	t.Helper()
	state := t.TempDir()
	converge(t, path, state, false, 3)
	c := open(t, path, state)
	t.Cleanup(func() { c.Close() })
	return c
}

// TestSharedStorageClonesToTheNode: with the template on Ceph, shared by
// every node, guests are cloned straight for their nodes (PVE's target)
// and nothing is migrated.
func TestSharedStorageClonesToTheNode(t *testing.T) {
	cl := threeNodes(t)
	if err := cl.Emu.AddStorage(pveemu.Storage{ID: "ceph-vm", Type: "rbd", Options: map[string]string{"pool": "vm"}}); err != nil {
		t.Fatal(err)
	}
	if err := cl.Emu.AddTemplate(pveemu.Template{Node: "pve1", VMID: pvetest.TemplateBase, Name: "debian-12", Storage: "ceph-vm"}); err != nil {
		t.Fatal(err)
	}
	reqs := count(cl)
	c := applied(t, pvetest.Synthetic{Cloud: "shared", Nodes: []string{"pve1", "pve2", "pve3"}, VLAN: 10, CIDR: "10.10.0.0/24", VMIDs: "100-199", Instances: 6}.Write(t, cl))
	checkOneGuestEach(t, c.Desired, cl)
	for _, vm := range cl.Guests(t) {
		cfg, err := cl.API.Config(context.Background(), vm.Node, vm.VMID)
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("ceph-vm:vm-%d-disk-0,", vm.VMID); !strings.HasPrefix(cfg.Raw["scsi0"], want) {
			t.Errorf("%s on %s: scsi0 %q, want a full copy on ceph-vm", vm.Name, vm.Node, cfg.Raw["scsi0"])
		}
	}
	if n := reqs.get("POST migrate"); n != 0 {
		t.Errorf("%d migrations; with the template on shared storage, clones go straight to their node", n)
	}
	if n := reqs.get("POST clone"); n != 6 {
		t.Errorf("%d clones, want 6", n)
	}
}

// TestPerNodeTemplates: linked clones on local storage, with a copy of the
// template on every node named in the site's proxmox templates: each guest
// is a linked clone of its own node's copy, and nothing is migrated.
func TestPerNodeTemplates(t *testing.T) {
	cl := threeNodes(t)
	for i, n := range []string{"pve1", "pve2", "pve3"} {
		if err := cl.Emu.AddTemplate(pveemu.Template{Node: n, VMID: pvetest.TemplateBase + i, Name: "debian-12-" + n}); err != nil {
			t.Fatal(err)
		}
	}
	reqs := count(cl)
	c := applied(t, pvetest.Synthetic{Cloud: "pernode", Nodes: []string{"pve1", "pve2", "pve3"}, VLAN: 10, CIDR: "10.10.0.0/24", VMIDs: "100-199", Instances: 6,
		Proxmox: `clone: linked, templates: {debian-12: {pve1: "9000", pve2: debian-12-pve2, pve3: "9002"}}`}.Write(t, cl))
	checkOneGuestEach(t, c.Desired, cl)
	base := map[string]int{"pve1": 9000, "pve2": 9001, "pve3": 9002}
	for _, vm := range cl.Guests(t) {
		cfg, err := cl.API.Config(context.Background(), vm.Node, vm.VMID)
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("local-lvm:base-%d-disk-0/vm-%d-disk-0,", base[vm.Node], vm.VMID); !strings.HasPrefix(cfg.Raw["scsi0"], want) {
			t.Errorf("%s on %s: scsi0 %q, want a linked clone of %s's copy (%s)", vm.Name, vm.Node, cfg.Raw["scsi0"], vm.Node, want)
		}
	}
	if n := reqs.get("POST migrate"); n != 0 {
		t.Errorf("%d migrations; every node has its own template", n)
	}
}

// TestSameNamedTemplatesPerNode: a template of the same name on every node
// is a per-node copy too: each guest is cloned from its own node's, and
// nothing is migrated.
func TestSameNamedTemplatesPerNode(t *testing.T) {
	cl := threeNodes(t)
	for i, n := range []string{"pve3", "pve2", "pve1"} { // the lowest VMID on pve3
		if err := cl.Emu.AddTemplate(pveemu.Template{Node: n, VMID: pvetest.TemplateBase + i, Name: "debian-12"}); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	from := map[string]string{} // new VMID -> the clone's path
	migrations := 0
	cl.SetHook(func(r *http.Request) bool {
		if r.Method != http.MethodPost {
			return true
		}
		form := peekForm(r)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case strings.HasSuffix(r.URL.Path, "/clone"):
			from[form.Get("newid")] = strings.TrimPrefix(r.URL.Path, "/api2/json")
		case strings.HasSuffix(r.URL.Path, "/migrate"):
			migrations++
		}
		return true
	})
	c := applied(t, pvetest.Synthetic{Cloud: "samename", Nodes: []string{"pve1", "pve2", "pve3"}, VLAN: 10, CIDR: "10.10.0.0/24", VMIDs: "100-199", Instances: 6}.Write(t, cl))
	checkOneGuestEach(t, c.Desired, cl)
	mu.Lock()
	defer mu.Unlock()
	if migrations != 0 {
		t.Errorf("%d migrations; every node has a template named debian-12", migrations)
	}
	copyOn := map[string]int{"pve3": 9000, "pve2": 9001, "pve1": 9002}
	for _, vm := range cl.Guests(t) {
		if want := fmt.Sprintf("/nodes/%s/qemu/%d/clone", vm.Node, copyOn[vm.Node]); from[strconv.Itoa(vm.VMID)] != want {
			t.Errorf("%s on %s was cloned by %s, want %s (its node's debian-12)", vm.Name, vm.Node, from[strconv.Itoa(vm.VMID)], want)
		}
	}
}

// TestLinkedCloneNeedsTheTemplatesNode: a linked clone of a template on
// local storage can be made on the template's node only. The apply says so
// for the guests of the other nodes, makes nothing for them, and makes the
// others.
func TestLinkedCloneNeedsTheTemplatesNode(t *testing.T) {
	cl := threeNodes(t)
	if err := cl.Emu.AddTemplate(pveemu.Template{Node: "pve1", VMID: pvetest.TemplateBase, Name: "debian-12"}); err != nil {
		t.Fatal(err)
	}
	path := pvetest.Synthetic{Cloud: "linked", Nodes: []string{"pve1", "pve2", "pve3"}, VLAN: 10, CIDR: "10.10.0.0/24", VMIDs: "100-199", Instances: 3,
		Proxmox: "clone: linked"}.Write(t, cl)
	c := open(t, path, t.TempDir())
	defer c.Close()
	res, _ := c.Apply(context.Background(), plan(t, c))
	for _, in := range c.Desired.Instances {
		msg, ok := "", false
		for _, e := range res.Errors {
			if strings.Contains(e.Error(), " "+compile.InstanceID(in.Site, in.Name).String()+":") {
				msg, ok = e.Error(), true
			}
		}
		switch {
		case in.Node == "pve1" && ok:
			t.Errorf("%s on the template's node: %s", in.Name, msg)
		case in.Node != "pve1" && (!ok || !strings.Contains(msg, "a linked clone of template \"debian-12\" (VMID 9000 on pve1, disks on local-lvm) cannot be put on node "+in.Node) ||
			!strings.Contains(msg, "proxmox templates")):
			t.Errorf("%s on %s: error %q, want the linked clone refused, naming the way out", in.Name, in.Node, msg)
		}
	}
	if guests := cl.Guests(t); len(guests) != 1 || guests[0].Node != "pve1" {
		t.Errorf("guests %+v, want only the one on pve1", guests)
	}
}

// TestClonesAndMigrationsBoundedPerNode: clones and migrations run on the
// template's node, and never more than the site's parallel of them at once
// there.
func TestClonesAndMigrationsBoundedPerNode(t *testing.T) {
	cl := pvetest.Start(t, []string{"pve1", "pve2", "pve3"}, pveemu.Config{Seed: 22, Durations: fast(30 * time.Millisecond)})
	if err := cl.Emu.AddTemplate(pveemu.Template{Node: "pve1", VMID: pvetest.TemplateBase, Name: "debian-12"}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	running := map[string]string{} // UPID -> node, clones and migrations not yet seen stopped
	most := map[string]int{}
	cl.SetTap(func(r *http.Request, status int, body []byte) {
		var answer struct {
			Data json.RawMessage `json:"data"`
		}
		if status != http.StatusOK || json.Unmarshal(body, &answer) != nil {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		switch p := r.URL.Path; {
		case r.Method == http.MethodPost && (strings.HasSuffix(p, "/clone") || strings.HasSuffix(p, "/migrate")):
			var upid string
			_ = json.Unmarshal(answer.Data, &upid)
			node := strings.Split(upid, ":")[1]
			running[upid] = node
			n := 0
			for _, other := range running {
				if other == node {
					n++
				}
			}
			most[node] = max(most[node], n)
		case r.Method == http.MethodGet && strings.HasSuffix(p, "/status") && strings.Contains(p, "/tasks/"):
			var st struct {
				UPID   string `json:"upid"`
				Status string `json:"status"`
			}
			if json.Unmarshal(answer.Data, &st) == nil && st.Status == "stopped" {
				delete(running, st.UPID)
			}
		}
	})
	c := applied(t, pvetest.Synthetic{Cloud: "bounded", Nodes: []string{"pve1", "pve2", "pve3"}, VLAN: 10, CIDR: "10.10.0.0/24", VMIDs: "100-199", Instances: 12,
		Proxmox: "parallel: 2"}.Write(t, cl))
	checkOneGuestEach(t, c.Desired, cl)
	mu.Lock()
	defer mu.Unlock()
	if most["pve1"] != 2 || most["pve2"]+most["pve3"] != 0 {
		t.Errorf("clones and migrations at once per node: %v; want them all on pve1, the template's node, 2 at a time (parallel: 2)", most)
	}
}

// TestStatusWhileAGuestMoves: a guest migrated between the reads of one
// observation (a migration an earlier apply started, still running when
// it was killed) is drift to look at again, not an error that stops
// status and plan.
func TestStatusWhileAGuestMoves(t *testing.T) {
	cl := threeNodes(t)
	if err := cl.Emu.AddTemplate(pveemu.Template{Node: "pve1", VMID: pvetest.TemplateBase, Name: "debian-12"}); err != nil {
		t.Fatal(err)
	}
	path := pvetest.Synthetic{Cloud: "moving", Nodes: []string{"pve1", "pve2", "pve3"}, VLAN: 10, CIDR: "10.10.0.0/24", VMIDs: "100-199", Instances: 3}.Write(t, cl)
	c := applied(t, path)
	in := c.Desired.Instances[0]
	ctx := context.Background()
	if err := cl.API.Stop(ctx, in.Node, in.VMID); err != nil {
		t.Fatal(err)
	}
	to := "pve1"
	if in.Node == to {
		to = "pve2"
	}
	var once sync.Once
	cl.SetHook(func(r *http.Request) bool {
		if r.Method == http.MethodGet && r.URL.Path == fmt.Sprintf("/api2/json/nodes/%s/qemu/%d/firewall/options", in.Node, in.VMID) {
			once.Do(func() {
				if err := cl.API.Migrate(ctx, in.Node, in.VMID, pve.MigrateOptions{Target: to}); err != nil {
					t.Error(err)
				}
			})
		}
		return true
	})
	st, err := c.Status(ctx)
	if err != nil {
		t.Fatalf("status while %s moved from %s to %s: %v", in.Name, in.Node, to, err)
	}
	for _, s := range st {
		if s.ID == compile.InstanceID(in.Site, in.Name) && (s.State != "drifted" || !slices.Contains(s.Drift, "vanished while observed")) {
			t.Errorf("%s: %s %v, want drifted: vanished while observed", s.ID, s.State, s.Drift)
		}
	}
}

// peekForm reads a request's form body for a hook, leaving the body for
// the emulator to read after it.
func peekForm(r *http.Request) url.Values {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	form, _ := url.ParseQuery(string(body))
	return form
}
