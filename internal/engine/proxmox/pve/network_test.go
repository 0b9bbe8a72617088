package pve_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"testing"

	"github.com/holdfast/holdfast/internal/engine/proxmox/pve"
	"github.com/holdfast/holdfast/internal/engine/proxmox/pveemu"
)

var networkIndex = regexp.MustCompile(`^` + pveemu.APIPrefix + `/nodes/([^/]+)/network$`)

// withNetworkChanges serves the emulator and adds to each node network
// index the "changes" result attribute real PVE sends beside data (the
// emulator's envelope carries data only).
func withNetworkChanges(emu *pveemu.Emulator) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m := networkIndex.FindStringSubmatch(r.URL.Path)
		if r.Method != http.MethodGet || m == nil {
			emu.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		emu.ServeHTTP(rec, r)
		var body map[string]any
		if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &body) != nil {
			w.WriteHeader(rec.Code)
			_, _ = io.Copy(w, rec.Body)
			return
		}
		if changes := emu.NetworkChanges(m[1]); changes != "" {
			body["changes"] = changes
		}
		w.Header().Set("Content-Type", "application/json;charset=UTF-8")
		_ = json.NewEncoder(w).Encode(body)
	})
}

func findIface(ifaces []pve.Iface, name string) pve.Iface {
	i := slices.IndexFunc(ifaces, func(f pve.Iface) bool { return f.Iface == name })
	if i < 0 {
		return pve.Iface{}
	}
	return ifaces[i]
}

func TestBridgeVIDsPendingUntilReload(t *testing.T) {
	c := newNetCluster(t)
	srv := httptest.NewServer(withNetworkChanges(c.emu))
	t.Cleanup(srv.Close)
	cl := c.client(t, func(cfg *pve.Config) { cfg.URL = srv.URL })
	ctx := ctx(t)

	ifaces, err := cl.NodeNetwork(ctx, "pve1")
	if err != nil {
		t.Fatal(err)
	}
	want := pve.Iface{Iface: "vmbr0", Type: "bridge", VLANAware: true, BridgeVIDs: "2-4094", Ports: "eno1"}
	if br := findIface(ifaces, "vmbr0"); br != want || findIface(ifaces, "eno1").Type != "eth" {
		t.Fatalf("interfaces as installed: %+v", ifaces)
	}

	if err := cl.SetBridgeVIDs(ctx, "pve1", "vmbr0", "10 20"); err != nil {
		t.Fatal(err)
	}
	ifaces, _ = cl.NodeNetwork(ctx, "pve1")
	want.BridgeVIDs, want.Pending = "10 20", true
	if br := findIface(ifaces, "vmbr0"); br != want || !findIface(ifaces, "eno1").Pending {
		t.Fatalf("vmbr0 after setting its VLANs: %+v", br)
	}
	if other, _ := cl.NodeNetwork(ctx, "pve2"); findIface(other, "vmbr0").Pending {
		t.Fatal("pve1's change shows on pve2")
	}
	// The bridge keeps its address: the client sent it along.
	status, body := rawGet(t, srv.URL, "/nodes/pve1/network/vmbr0")
	if status != http.StatusOK || body["method"] != "static" || body["cidr"] != "192.0.2.11/24" || body["gateway"] != "192.0.2.1" {
		t.Fatalf("vmbr0's address after setting its VLANs: %d %v", status, body)
	}

	if err := cl.ReloadNetwork(ctx, "pve1"); err != nil {
		t.Fatal(err)
	}
	ifaces, _ = cl.NodeNetwork(ctx, "pve1")
	want.Pending = false
	if br := findIface(ifaces, "vmbr0"); br != want {
		t.Fatalf("vmbr0 after the reload: %+v", br)
	}

	var pe *pve.Error
	err = cl.SetBridgeVIDs(ctx, "pve1", "vmbr0", "1-10")
	if !errors.As(err, &pe) || pe.Params["bridge_vids"] != "invalid format - invalid VLAN tag '1'" {
		t.Fatalf("VLAN 1: %v", err)
	}
	if err := cl.SetBridgeVIDs(ctx, "pve1", "vmbr7", "10"); !errors.As(err, &pe) || pe.Params["iface"] != "interface does not exist" {
		t.Fatalf("no such bridge: %v", err)
	}
}

// rawGet reads one API path with the test token and decodes its data.
func rawGet(t *testing.T, base, path string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+pveemu.APIPrefix+path, nil)
	req.Header.Set("Authorization", "PVEAPIToken="+tokenID+"="+secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var env struct {
		Data map[string]any `json:"data"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&env)
	return resp.StatusCode, env.Data
}
