package proxmox_test

import (
	"context"
	"encoding/base64"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/engine/proxmox/pve"
	"github.com/holdfast/holdfast/internal/engine/proxmox/pveemu"
	"github.com/holdfast/holdfast/internal/engine/proxmox/pvetest"
	"github.com/holdfast/holdfast/internal/guest"
)

const seedMetadataURL = "http://192.168.100.1:8442"

// seededCloud applies a two-VM cloud with metadata-url on an emulated
// cluster and returns its spec, state directory and cluster.
func seededCloud(t *testing.T) (path, state string, cl *pvetest.Cluster) {
	t.Helper()
	cl = startSeedCluster(t)
	path = seedSpec(t, cl, seedMetadataURL)
	state = t.TempDir()
	converge(t, path, state, false, 3)
	return path, state, cl
}

// startSeedCluster is an emulated one-node cluster with a debian-12
// template.
func startSeedCluster(t *testing.T) *pvetest.Cluster {
	t.Helper()
	cl := pvetest.Start(t, []string{"pve1"}, pveemu.Config{Seed: 12, Durations: fast(5 * time.Millisecond)})
	if err := cl.Emu.AddTemplate(pveemu.Template{Node: "pve1", VMID: pvetest.TemplateBase, Name: "debian-12"}); err != nil {
		t.Fatal(err)
	}
	return cl
}

// seedSpec is a cloud of two VMs on cl, 10.30.0.0/24, seeded from the
// metadata service at url.
func seedSpec(t *testing.T, cl *pvetest.Cluster, url string) string {
	t.Helper()
	return pvetest.Synthetic{Cloud: "seed", Nodes: []string{"pve1"}, VLAN: 30, CIDR: "10.30.0.0/24", VMIDs: "100-199", Instances: 2,
		Proxmox: `metadata-url: "` + url + `"`}.Write(t, cl)
}

// vmSeed reads a VM's smbios1 through the API and decodes its serial.
func vmSeed(t *testing.T, cl *pvetest.Cluster, vmid int) (seed, uuid string) {
	t.Helper()
	cfg, err := cl.API.Config(context.Background(), "pve1", vmid)
	if err != nil {
		t.Fatal(err)
	}
	kv := map[string]string{}
	for _, part := range strings.Split(cfg.SMBIOS1, ",") {
		k, v, _ := strings.Cut(part, "=")
		kv[k] = v
	}
	if kv["serial"] != "" && kv["base64"] != "1" {
		t.Errorf("VMID %d: smbios1 %q holds a serial that is not base64", vmid, cfg.SMBIOS1)
	}
	b, err := base64.StdEncoding.DecodeString(kv["serial"])
	if err != nil {
		t.Errorf("VMID %d: serial %q: %v", vmid, kv["serial"], err)
	}
	return string(b), kv["uuid"]
}

func statusDrift(t *testing.T, path, state string) map[compile.ID][]string {
	t.Helper()
	c := open(t, path, state)
	defer c.Close()
	st, err := c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[compile.ID][]string{}
	for _, s := range st {
		if len(s.Drift) > 0 {
			out[s.ID] = s.Drift
		}
	}
	return out
}

// TestEveryVMIsSeededWithItsOwnToken: with metadata-url, every VM's
// smbios1 carries its NoCloud seed with its current token and keeps the
// UUID PVE gave it; a seed wiped behind Holdfast's back or made stale by
// a rotated token is drift that names no token, and apply repairs it.
func TestEveryVMIsSeededWithItsOwnToken(t *testing.T) {
	path, state, cl := seededCloud(t)
	creds, err := guest.OpenCredentials(state, "seed")
	if err != nil {
		t.Fatal(err)
	}
	c := open(t, path, state)
	desired := c.Desired
	c.Close()
	uuids := map[int]string{}
	for _, in := range desired.Instances {
		seed, uuid := vmSeed(t, cl, in.VMID)
		want := guest.NoCloudSeed(seedMetadataURL, creds.Token(compile.InstanceID(in.Site, in.Name)))
		if seed != want {
			t.Errorf("%s: seed %q, want %q", in.Name, seed, want)
		}
		if uuid == "" || slices.Contains(slices.Collect(maps.Values(uuids)), uuid) {
			t.Errorf("%s: UUID %q: want the VM's own", in.Name, uuid)
		}
		uuids[in.VMID] = uuid
	}
	if d := statusDrift(t, path, state); len(d) > 0 {
		t.Fatalf("drift after apply: %v", d)
	}

	// Wiped behind Holdfast's back.
	in := desired.Instances[0]
	if err := cl.API.SetConfig(context.Background(), "pve1", in.VMID, pve.ConfigUpdate{SMBIOS1: "uuid=" + uuids[in.VMID]}); err != nil {
		t.Fatal(err)
	}
	id := compile.InstanceID(in.Site, in.Name)
	if d := statusDrift(t, path, state); !slices.Contains(d[id], "smbios1 carries no agent seed") {
		t.Errorf("a wiped seed: drift %v", d)
	}
	converge(t, path, state, false, 2)

	// A rotated token: the seed is stale until apply writes the new one.
	old := creds.Token(id)
	if err := creds.Rotate(id); err != nil {
		t.Fatal(err)
	}
	d := statusDrift(t, path, state)
	if !slices.Contains(d[id], "smbios1's seed is not this instance's current one") {
		t.Errorf("a rotated token: drift %v", d)
	}
	for _, line := range d[id] {
		if strings.Contains(line, old) || strings.Contains(line, creds.Token(id)) {
			t.Errorf("drift prints a token: %q", line)
		}
	}
	converge(t, path, state, false, 2)
	for _, in := range desired.Instances {
		seed, uuid := vmSeed(t, cl, in.VMID)
		if want := guest.NoCloudSeed(seedMetadataURL, creds.Token(compile.InstanceID(in.Site, in.Name))); seed != want {
			t.Errorf("%s after rotation: seed %q, want %q", in.Name, seed, want)
		}
		if uuid != uuids[in.VMID] {
			t.Errorf("%s: UUID changed from %s to %s", in.Name, uuids[in.VMID], uuid)
		}
	}

	// metadata-url taken out: the seeds go, the UUIDs stay.
	file := filepath.Join(path, "cloud.yaml")
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte(strings.Replace(string(b), `, metadata-url: "`+seedMetadataURL+`"`, "", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if d := statusDrift(t, path, state); !slices.Contains(d[id], "smbios1 carries an agent seed, want none (no metadata-url)") {
		t.Errorf("without metadata-url: drift %v", d)
	}
	converge(t, path, state, false, 2)
	for _, in := range desired.Instances {
		if seed, uuid := vmSeed(t, cl, in.VMID); seed != "" || uuid != uuids[in.VMID] {
			t.Errorf("%s without metadata-url: seed %q, UUID %s (want none, %s)", in.Name, seed, uuid, uuids[in.VMID])
		}
	}
}
