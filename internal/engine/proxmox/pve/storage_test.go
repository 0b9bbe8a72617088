package pve_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/engine/proxmox/pve"
	"github.com/holdfast/holdfast/internal/engine/proxmox/pveemu"
)

// TestStorageAndCrossNodeClones: the client reads the storage a cluster
// has and what a template's volumes are on; a clone of a template on
// local storage to another node is refused for good (not worth a retry),
// and one on shared storage succeeds; a linked clone on local storage
// cannot be migrated.
func TestStorageAndCrossNodeClones(t *testing.T) {
	c := newCluster(t, pveemu.Config{Seed: 5})
	if err := c.emu.AddStorage(pveemu.Storage{ID: "ceph-vm", Type: "rbd"}); err != nil {
		t.Fatal(err)
	}
	if err := c.emu.AddTemplate(pveemu.Template{Node: "pve1", VMID: 9001, Name: "debian-12-ceph", Storage: "ceph-vm"}); err != nil {
		t.Fatal(err)
	}
	cl := c.client(t)
	ctx := ctx(t)

	st, err := cl.Storages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]pve.Storage{}
	for _, s := range st {
		byID[s.Storage] = s
	}
	if lvm, ceph := byID["local-lvm"], byID["ceph-vm"]; lvm.Shared || lvm.Type != "lvmthin" || !slices.Contains(lvm.Content, "images") ||
		!lvm.On("pve2") || !ceph.Shared || !ceph.On("pve1") || len(st) != 3 || lvm.Digest == "" {
		t.Fatalf("storages: %+v", st)
	}
	both, err := cl.NodeStorage(ctx, "pve1", pve.StorageQuery{Target: "pve2"})
	if err != nil || len(both) != 1 || both[0].Storage != "ceph-vm" || !both[0].Active || both[0].Total == 0 {
		t.Fatalf("storage pve1 shares with pve2: %+v, %v", both, err)
	}
	if vols := mustConfig(t, cl, "pve1", template).Volumes(); !slices.Equal(vols, []string{"local-lvm"}) {
		t.Fatalf("the template's volumes are on %v, want local-lvm", vols)
	}

	err = cl.Clone(ctx, "pve1", template, pve.CloneOptions{NewID: 300, Name: "a", Target: "pve2"})
	var pe *pve.Error
	if !errors.As(err, &pe) || pe.Message != "can't clone VM to node 'pve2' (VM uses local storage)" || pve.IsRetryable(err) {
		t.Fatalf("clone of a template on local-lvm to pve2: %v", err)
	}
	if err := cl.Clone(ctx, "pve1", 9001, pve.CloneOptions{NewID: 300, Name: "a", Target: "pve2"}); err != nil {
		t.Fatal(err)
	}
	if got := mustConfig(t, cl, "pve2", 300).Raw["scsi0"]; !strings.HasPrefix(got, "ceph-vm:base-9001-disk-0/vm-300-disk-0,") {
		t.Fatalf("linked clone on ceph-vm, on pve2: scsi0 %q", got)
	}

	if err := cl.Clone(ctx, "pve1", template, pve.CloneOptions{NewID: 301, Name: "b"}); err != nil {
		t.Fatal(err)
	}
	err = cl.Migrate(ctx, "pve1", 301, pve.MigrateOptions{Target: "pve2"})
	var te *pve.TaskError
	if !errors.As(err, &te) || te.ExitStatus != "migration aborted" || pve.IsRetryable(err) {
		t.Fatalf("migrating a linked clone on local-lvm: %v", err)
	}
	if cfg := mustConfig(t, cl, "pve1", 301); cfg.Lock != "" {
		t.Fatalf("after the aborted migration: lock %q", cfg.Lock)
	}
	if err := cl.Start(ctx, "pve2", 300); err != nil {
		t.Fatal(err)
	}
	err = cl.Migrate(ctx, "pve2", 300, pve.MigrateOptions{Target: "pve1"})
	if !errors.As(err, &pe) || pe.Message != "can't migrate running VM without --online" || pve.IsRetryable(err) {
		t.Fatalf("migrating a running VM offline: %v", err)
	}
	if err := cl.Migrate(ctx, "pve2", 300, pve.MigrateOptions{Target: "pve1", Online: true}); err != nil {
		t.Fatal(err)
	}
	if s, err := cl.Status(ctx, "pve1", 300); err != nil || s.Status != "running" {
		t.Fatalf("after a live migration on shared storage: %+v, %v", s, err)
	}
}
