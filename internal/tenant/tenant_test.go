package tenant

import (
	"context"
	"errors"
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/holdfast/holdfast/api"
	"github.com/holdfast/holdfast/internal/sqldb/sqldbtest"
)

func TestPoolSlots(t *testing.T) {
	p := Pool{Prefix: netip.MustParsePrefix("10.128.0.0/16"), Bits: 24, FirstVLAN: 3000, LastVLAN: 3099}
	if p.Slots() != 100 {
		t.Fatalf("slots %d, want 100 (the VLAN range is the smaller)", p.Slots())
	}
	for i, want := range map[int]string{0: "10.128.0.0/24", 1: "10.128.1.0/24", 99: "10.128.99.0/24"} {
		if got, vlan := p.Slot(i); got.String() != want || vlan != 3000+i {
			t.Errorf("slot %d: %s vlan %d, want %s vlan %d", i, got, vlan, want, 3000+i)
		}
	}
	small := Pool{Prefix: netip.MustParsePrefix("10.128.0.0/22"), Bits: 24, FirstVLAN: 3000, LastVLAN: 3999}
	if small.Slots() != 4 {
		t.Errorf("slots %d, want 4 (the address pool is the smaller)", small.Slots())
	}
}

// TestNetworkSlotsAreReused: a freed slot is taken again, lowest first,
// and a full pool says so.
func TestNetworkSlotsAreReused(t *testing.T) {
	s, err := Open(sqldbtest.Place(t, filepath.Join(t.TempDir(), "c.db"), "control"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	pool := Pool{Prefix: netip.MustParsePrefix("10.128.0.0/22"), Bits: 24, FirstVLAN: 3000, LastVLAN: 3999}
	var tr TenantRecord
	do := func(f func(*Tx) error) error { return s.Do(ctx, f) }
	if err := do(func(tx *Tx) error {
		tr, err = tx.CreateTenant("acme", "", api.Quota{Networks: 10})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	create := func(name string) (NetworkRecord, error) {
		var n NetworkRecord
		err := do(func(tx *Tx) error {
			var err error
			n, err = tx.CreateNetwork(tr, name, pool)
			return err
		})
		return n, err
	}
	for i, name := range []string{"a", "b", "c", "d"} {
		n, err := create(name)
		if err != nil || n.Slot != i || n.VLAN != 3000+i || n.Zone != "acme--"+name {
			t.Fatalf("network %s: %+v %v", name, n, err)
		}
	}
	if _, err := create("e"); !errors.Is(err, ErrPoolFull) {
		t.Fatalf("fifth network in a pool of four: %v", err)
	}
	if err := do(func(tx *Tx) error { return tx.RemoveNetwork("acme--b") }); err != nil {
		t.Fatal(err)
	}
	n, err := create("e")
	if err != nil || n.Slot != 1 || n.CIDR != "10.128.1.0/24" {
		t.Fatalf("after freeing slot 1: %+v %v", n, err)
	}
	if _, err := create("a"); !errors.Is(err, ErrExists) {
		t.Errorf("a second network named a: %v", err)
	}
}
