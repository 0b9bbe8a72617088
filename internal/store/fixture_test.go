package store_test

import (
	"context"
	"errors"
	"maps"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/migrate/migratetest"
	"github.com/holdfast/holdfast/internal/sqldb"
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
		compile.NewResource(compile.SiteID("launceston"), nil, map[string]string{"engine": "local", "nodes": "pve1,pve2", "peer": ""}),
		compile.NewResource(compile.SiteID("hobart"), nil, map[string]string{"engine": "local", "nodes": "pve3", "peer": ""}),
		compile.NewResource(compile.NetworkID("launceston", "dmz"), []compile.ID{compile.SiteID("launceston")}, map[string]string{
			"vlan": "20", "vni": "10020", "cidr": "10.20.0.0/24", "gateway": "10.20.0.1", "dhcp": "", "managed": "true"}),
		compile.NewResource(compile.FirewallID("launceston"), []compile.ID{compile.NetworkID("launceston", "dmz"), compile.SiteID("launceston")},
			map[string]string{"digest": "9f2c61d0a4be7e13", "flows": "3"}),
		compile.NewResource(compile.InstanceID("launceston", "web1"), []compile.ID{compile.FirewallID("launceston"), compile.NetworkID("launceston", "dmz")}, map[string]string{
			"vmid": "200", "node": "pve1", "nics": "dmz=10.20.0.10/24 bc:24:11:00:00:c8", "cpus": "2", "memory_mib": "2048", "disk_mib": "10240",
			"template": "", "image": "debian-12", "command": "", "ha": "false", "fqdn": "web1.example.org", "ports": "tcp/443",
			"tenant": "", "power": "running", "reboot": "0", "rebuild": "0", "ssh_keys": "4be1c02a"}),
		compile.NewResource(compile.InstanceID("launceston", "web2"), []compile.ID{compile.FirewallID("launceston"), compile.NetworkID("launceston", "dmz")}, map[string]string{
			"vmid": "201", "node": "pve2", "nics": "dmz=10.20.0.11/24 bc:24:11:00:00:c9", "cpus": "2", "memory_mib": "2048", "disk_mib": "10240",
			"template": "", "image": "debian-12", "command": "", "ha": "true", "fqdn": "web2.example.org", "ports": "tcp/443",
			"tenant": "", "power": "running", "reboot": "1", "rebuild": "0", "ssh_keys": "4be1c02a"}),
		compile.NewResource(compile.RouteID("launceston", "www"), []compile.ID{compile.InstanceID("launceston", "web1"), compile.InstanceID("launceston", "web2")}, map[string]string{
			"host": "www.example.org", "port": "443", "backends": "web1,web2", "backend_port": "8443", "failover": ""}),
	}
	// The crash came while instance/db was being made. The intent log is
	// history: it keeps the ID as the version that wrote it printed it.
	fixtureOpen = store.Intent{Resource: compile.InstanceID("hobart", "db").String(), Action: "create"}
	// What version 1 printed for the IDs version 2 gave a site to.
	idsV1 = map[string]string{
		"instance/launceston/web1": "instance/web1",
		"instance/launceston/web2": "instance/web2",
		"route/launceston/www":     "route/www",
		"instance/hobart/db":       "instance/db",
	}
)

// writeFixture records fixtureAllocs and fixtureResources the way
// applies do, through the store's API.
func writeFixture(t *testing.T, path string) {
	ctx := context.Background()
	s, err := store.Open(sqldb.In("", path, "state"))
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
			in, err := s.Begin(ctx, run, r.ID.String(), "create")
			check(err)
			if r.ID.String() == fail {
				check(s.Failed(ctx, in, errors.New("site launceston: nft: Error: Could not process rule: No such file or directory")))
				outcome = "failed"
				continue
			}
			check(s.Made(ctx, in, r))
		}
		check(s.EndRun(ctx, run, outcome))
	}
	apply(fixtureResources[:5], "instance/launceston/web1")
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
		// Version 1 (the releases before versioning, which recorded
		// none) is kept as it was committed: no code writes it any more;
		// a new version writes its own file here.
		migratetest.Save(t, src, filepath.Join("testdata", "state-v2.sqlite"), false)
		return
	}
	for _, fixture := range migratetest.Fixtures(t, "state") {
		t.Run(filepath.Base(fixture), func(t *testing.T) {
			path := migratetest.Copy(t, fixture)
			before := migratetest.Dump(t, migratetest.Open(t, path))
			migratetest.Empty(t, before)
			v1 := strings.HasSuffix(fixture, "-v1.sqlite")
			if v1 {
				// Version 2 gives instances and routes their site: the
				// rows are kept with their IDs as version 2 prints them.
				before["resources"] = upgradeIDsV1(before["resources"])
			}

			s, err := store.Open(sqldb.In("", path, "state"))
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
			byID := map[compile.ID]compile.Resource{}
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
			wantOpen := fixtureOpen.Resource
			if v1 {
				wantOpen = idsV1[wantOpen]
			}
			if err != nil || len(open) != 1 || open[0].Resource != wantOpen || open[0].Action != fixtureOpen.Action || open[0].Run != 3 {
				t.Errorf("open intents after the upgrade: %+v (%v), want the crash's %s", open, err, wantOpen)
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

// upgradeIDsV1 is the resources rows of the version 1 fixture as version 2
// makes them: instance and route IDs, in the id and deps columns, gain
// their site, and the route its site column.
func upgradeIDsV1(rows []string) []string {
	var pairs []string
	for v2, v1 := range idsV1 {
		pairs = append(pairs, `"`+v1+`"`, `"`+v2+`"`, "id="+v1+"\n", "id="+v2+"\n")
	}
	r := strings.NewReplacer(pairs...)
	out := make([]string, len(rows))
	for i, row := range rows {
		row = r.Replace(row + "\n")
		if strings.Contains(row, "\nkind=route\n") {
			row = strings.Replace(row, "\nsite=\n", "\nsite=launceston\n", 1)
		}
		out[i] = strings.TrimSuffix(row, "\n")
	}
	return out
}
