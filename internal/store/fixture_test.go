package store_test

import (
	"context"
	"errors"
	"maps"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/migrate/migratetest"
	"github.com/holdfast/holdfast/internal/store"
)

// The state of a small cloud — two sites, a network, three instances and
// a route — as the fixture holds it: what was allocated and made, two
// finished applies (one with a failed step) and a third a crash cut
// short, which left an intent open.
var (
	fixtureAllocs = compile.Allocations{Instances: map[string]compile.InstanceAlloc{
		"web1": {VMID: 200, Site: "launceston", Node: "pve1", Addrs: map[string]string{"dmz": "10.20.0.10"}},
		"web2": {VMID: 201, Site: "launceston", Node: "pve2", Addrs: map[string]string{"dmz": "10.20.0.11"}},
		"db":   {VMID: 202, Site: "hobart", Node: "pve3", Addrs: map[string]string{"data": "10.30.0.5", "dmz": "10.20.0.12"}},
	}}
	fixtureResources = []compile.Resource{
		{ID: "site/launceston", Kind: "site", Site: "launceston", Deps: []string{}, Attrs: map[string]string{"engine": "local", "nodes": "pve1,pve2", "peer": ""}},
		{ID: "site/hobart", Kind: "site", Site: "hobart", Deps: []string{}, Attrs: map[string]string{"engine": "local", "nodes": "pve3", "peer": ""}},
		{ID: "network/launceston/dmz", Kind: "network", Site: "launceston", Deps: []string{"site/launceston"}, Attrs: map[string]string{
			"vlan": "20", "vni": "10020", "cidr": "10.20.0.0/24", "gateway": "10.20.0.1", "dhcp": "", "managed": "true"}},
		{ID: "firewall/launceston", Kind: "firewall", Site: "launceston", Deps: []string{"network/launceston/dmz", "site/launceston"},
			Attrs: map[string]string{"digest": "9f2c61d0a4be7e13", "flows": "3"}},
		{ID: "instance/web1", Kind: "instance", Site: "launceston", Deps: []string{"firewall/launceston", "network/launceston/dmz"}, Attrs: map[string]string{
			"vmid": "200", "node": "pve1", "nics": "dmz=10.20.0.10/24 bc:24:11:00:00:c8", "cpus": "2", "memory_mib": "2048", "disk_mib": "10240",
			"template": "", "image": "debian-12", "command": "", "ha": "false", "fqdn": "web1.example.org", "ports": "tcp/443",
			"tenant": "", "power": "running", "reboot": "0", "rebuild": "0", "ssh_keys": "4be1c02a"}},
		{ID: "instance/web2", Kind: "instance", Site: "launceston", Deps: []string{"firewall/launceston", "network/launceston/dmz"}, Attrs: map[string]string{
			"vmid": "201", "node": "pve2", "nics": "dmz=10.20.0.11/24 bc:24:11:00:00:c9", "cpus": "2", "memory_mib": "2048", "disk_mib": "10240",
			"template": "", "image": "debian-12", "command": "", "ha": "true", "fqdn": "web2.example.org", "ports": "tcp/443",
			"tenant": "", "power": "running", "reboot": "1", "rebuild": "0", "ssh_keys": "4be1c02a"}},
		{ID: "route/www", Kind: "route", Deps: []string{"instance/web1", "instance/web2"}, Attrs: map[string]string{
			"host": "www.example.org", "port": "443", "backends": "web1,web2", "backend_port": "8443", "failover": ""}},
	}
	// The crash came while instance/db was being made.
	fixtureOpen = store.Intent{Resource: "instance/db", Action: "create"}
)

// writeFixture records fixtureAllocs and fixtureResources the way
// applies do, through the store's API.
func writeFixture(t *testing.T, path string) {
	ctx := context.Background()
	s, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	check := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	check(s.SaveAllocations(ctx, fixtureAllocs))
	apply := func(rs []compile.Resource, fail string) {
		run, err := s.BeginRun(ctx)
		check(err)
		outcome := "done"
		for _, r := range rs {
			in, err := s.Begin(ctx, run, r.ID, "create")
			check(err)
			if r.ID == fail {
				check(s.Failed(ctx, in, errors.New("site launceston: nft: Error: Could not process rule: No such file or directory")))
				outcome = "failed"
				continue
			}
			check(s.Made(ctx, in, r))
		}
		check(s.EndRun(ctx, run, outcome))
	}
	apply(fixtureResources[:5], "instance/web1")
	apply(fixtureResources[4:], "")
	run, err := s.BeginRun(ctx)
	check(err)
	_, err = s.Begin(ctx, run, fixtureOpen.Resource, fixtureOpen.Action)
	check(err)
}

// TestFixture: the state a release before versioning wrote (testdata/
// state-v*.sqlite) opens with this one with nothing lost: every row of
// every table, the allocations, what was made, and the intent a crash
// left open, which the next apply must still see. With -update-fixtures
// it writes the fixture of the current version instead.
func TestFixture(t *testing.T) {
	if *migratetest.Update {
		src := filepath.Join(t.TempDir(), "state.db")
		writeFixture(t, src)
		// Version 1 is the schema of the releases before versioning,
		// which recorded none.
		migratetest.Save(t, src, filepath.Join("testdata", "state-v1.sqlite"), true)
		return
	}
	for _, fixture := range migratetest.Fixtures(t, "state") {
		t.Run(filepath.Base(fixture), func(t *testing.T) {
			path := migratetest.Copy(t, fixture)
			before := migratetest.Dump(t, migratetest.Open(t, path))
			migratetest.Empty(t, before)

			s, err := store.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			ctx := context.Background()
			after := migratetest.Dump(t, migratetest.Open(t, path))
			migratetest.Kept(t, before, after)

			if got, err := s.Allocations(ctx); err != nil || !reflect.DeepEqual(got, fixtureAllocs) {
				t.Errorf("allocations after the upgrade: %+v (%v)\nwant %+v", got, err, fixtureAllocs)
			}
			got, err := s.Resources(ctx)
			if err != nil {
				t.Fatal(err)
			}
			byID := map[string]compile.Resource{}
			for _, r := range got {
				byID[r.ID] = r
			}
			for _, want := range fixtureResources {
				if r := byID[want.ID]; !reflect.DeepEqual(r, want) {
					t.Errorf("resource %s after the upgrade: %+v\nwant %+v", want.ID, r, want)
				}
			}
			if len(got) != len(fixtureResources) {
				t.Errorf("%d resources after the upgrade, want %d", len(got), len(fixtureResources))
			}
			open, err := s.Unfinished(ctx)
			if err != nil || len(open) != 1 || open[0].Resource != fixtureOpen.Resource || open[0].Action != fixtureOpen.Action || open[0].Run != 3 {
				t.Errorf("open intents after the upgrade: %+v (%v), want the crash's %s", open, err, fixtureOpen.Resource)
			}
			counts, err := s.Counts(ctx)
			want := map[string]int{"allocations": 3, "resources": 7, "intents": 9, "runs": 3}
			if err != nil || !maps.Equal(counts, want) {
				t.Errorf("rows after the upgrade: %v (%v), want %v", counts, err, want)
			}
			// The next apply goes on where the crash left it.
			run, err := s.BeginRun(ctx)
			if err != nil || run != 4 {
				t.Errorf("the next run is %d (%v), want 4: run ids must not be reused", run, err)
			}
		})
	}
}
