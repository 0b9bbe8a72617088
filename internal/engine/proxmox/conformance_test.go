package proxmox_test

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/engine/enginetest"
	"github.com/holdfast/holdfast/internal/engine/proxmox/pve"
	"github.com/holdfast/holdfast/internal/engine/proxmox/pveemu"
	"github.com/holdfast/holdfast/internal/engine/proxmox/pvetest"
)

// The Proxmox engine passes the conformance suite on an emulated cluster.
func TestConformance(t *testing.T) {
	cl := pvetest.Start(t, []string{"pve1", "pve2"}, pveemu.Config{Seed: 17, Durations: fast(5 * time.Millisecond)})
	if err := cl.Emu.AddTemplate(pveemu.Template{Node: "pve1", VMID: pvetest.TemplateBase, Name: "debian-12"}); err != nil {
		t.Fatal(err)
	}
	// Every request that is not a read is a write, answered or not.
	var writes atomic.Int64
	cl.SetTap(func(r *http.Request, status int, body []byte) {
		if r.Method != http.MethodGet {
			writes.Add(1)
		}
	})
	paths := map[string]string{
		"a": pvetest.Synthetic{Cloud: "cta", Nodes: []string{"pve1", "pve2"}, VLAN: 10, CIDR: "10.10.0.0/24", VMIDs: "100-199", Instances: 2}.Write(t, cl),
		"b": pvetest.Synthetic{Cloud: "ctb", Nodes: []string{"pve1", "pve2"}, VLAN: 20, CIDR: "10.20.0.0/24", VMIDs: "200-299", Instances: 2}.Write(t, cl),
	}
	enginetest.Run(t, enginetest.Harness{
		Engine: "proxmox",
		Desired: func(t enginetest.T, cloud string) *compile.State {
			st, _, diags := compile.Compile(loadSpec(t.(*testing.T), paths[cloud]), compile.Allocations{})
			if diags.HasErrors() {
				t.Fatalf("%v", diags.Err())
			}
			return st
		},
		Fingerprint: func(t enginetest.T) string {
			var b strings.Builder
			fmt.Fprintf(&b, "%d writes\n", writes.Load())
			for _, vm := range cl.Guests(t.(*testing.T)) {
				fmt.Fprintf(&b, "%d %s %s %s %s\n", vm.VMID, vm.Name, vm.Node, vm.Status, vm.Lock)
			}
			return b.String()
		},
		Check: func(t enginetest.T, clouds ...*compile.State) {
			t.Helper()
			want := map[string]int{} // cloud/name -> VMID
			for _, st := range clouds {
				for _, in := range st.Instances {
					want[st.Cloud+"/"+in.Name] = in.VMID
				}
			}
			seen := map[string]int{}
			for _, vm := range cl.Guests(t.(*testing.T)) {
				key := ""
				for _, st := range clouds {
					if strings.Contains(vm.Tags, "holdfast-"+st.Cloud) {
						key = st.Cloud + "/" + vm.Name
					}
				}
				seen[key]++
				switch vmid, ok := want[key]; {
				case !ok:
					t.Errorf("orphan guest %d %q (tags %q)", vm.VMID, vm.Name, vm.Tags)
				case vmid != vm.VMID:
					t.Errorf("guest %s at VMID %d, allocated %d", key, vm.VMID, vmid)
				case vm.Lock != "":
					t.Errorf("guest %s is locked (%s)", key, vm.Lock)
				}
			}
			for key := range want {
				if seen[key] != 1 {
					t.Errorf("instance %s has %d guests", key, seen[key])
				}
			}
		},
		Drift: func(t enginetest.T, st *compile.State) []compile.ID {
			t.Helper()
			ctx := context.Background()
			a, b := st.Instances[0], st.Instances[1]
			if err := cl.API.SetConfig(ctx, a.Node, a.VMID, pve.ConfigUpdate{MemoryMiB: int(a.MemoryMiB) * 2}); err != nil {
				t.Fatalf("%v", err)
			}
			if err := cl.API.Stop(ctx, b.Node, b.VMID); err != nil {
				t.Fatalf("%v", err)
			}
			return []compile.ID{compile.InstanceID(a.Site, a.Name), compile.InstanceID(b.Site, b.Name)}
		},
		Fault: func(t enginetest.T, st *compile.State, permanent bool) (compile.ID, func()) {
			in := &st.Instances[len(st.Instances)-1]
			id := compile.InstanceID(in.Site, in.Name)
			if permanent {
				// Someone else's VM at the guest's VMID: retrying cannot
				// make it Holdfast's (deploy re-allocates; the engine fails).
				if err := cl.Emu.AddTemplate(pveemu.Template{Node: "pve1", VMID: in.VMID, Name: "squatter"}); err != nil {
					t.Fatalf("%v", err)
				}
				return id, func() {
					if err := cl.API.Delete(context.Background(), "pve1", in.VMID); err != nil {
						t.Errorf("removing the squatter: %v", err)
					}
				}
			}
			// Every request about the guest is lost on its way, as to a
			// cluster that is restarting its API.
			vmid := strconv.Itoa(in.VMID)
			cl.SetHook(func(r *http.Request) bool {
				return !strings.Contains(r.URL.Path, "/qemu/"+vmid+"/") && !strings.HasSuffix(r.URL.Path, "/qemu/"+vmid) &&
					peekForm(r).Get("newid") != vmid && peekForm(r).Get("vmid") != vmid
			})
			return id, func() { cl.SetHook(nil) }
		},
		RandomKills: 2,
	})
}
