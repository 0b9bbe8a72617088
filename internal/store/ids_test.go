package store

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/sqldb"
)

func TestRewriteIDV1(t *testing.T) {
	for _, tc := range []struct {
		old, site, want string
		ok              bool
	}{
		{"instance/web", "a", "instance/a/web", true},
		{"route/app", "b", "route/b/app", true},
		{"site/a", "", "site/a", true},                  // already carried its site
		{"network/a/lan", "", "network/a/lan", true},    // likewise
		{"firewall/a", "", "firewall/a", true},          // likewise
		{"instance/a/web", "a", "instance/a/web", true}, // already rewritten
		{"instance/web", "", "", false},                 // no site to give it
		{"network/lan", "a", "", false},                 // never printed so
		{"instance/", "a", "", false},                   // no name
		{"nonsense", "a", "", false},
	} {
		got, ok := rewriteIDV1(tc.old, tc.site)
		if got != tc.want || ok != tc.ok {
			t.Errorf("rewriteIDV1(%q, %q) = %q, %v; want %q, %v", tc.old, tc.site, got, ok, tc.want, tc.ok)
		}
	}
}

// A database written before IDs carried every resource's site opens with
// its resources renamed, dependencies included, and nothing else lost.
func TestOpenMigratesIDsWithoutSites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	db, err := sqldb.Open(context.Background(), sqldb.In("", path, "state"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, q := range []string{
		schema,
		`INSERT INTO allocations VALUES ('web', 2000, 'a', 'n1', '{}'), ('fe', 2001, 'a', 'n1', '{}'), ('peer', 2002, 'b', 'n1', '{}')`,
		`INSERT INTO resources VALUES
			('site/a', 'site', 'a', '[]', '{"engine":"local"}', 1),
			('firewall/a', 'firewall', 'a', '["site/a"]', '{}', 2),
			('instance/web', 'instance', 'a', '["firewall/a"]', '{"vmid":"2000"}', 3),
			('instance/fe', 'instance', 'a', '["firewall/a","instance/web"]', '{"vmid":"2001"}', 4),
			('route/app', 'route', '', '["instance/fe","instance/peer","instance/web"]', '{"backends":"web","failover":"peer"}', 5),
			('route/lost', 'route', '', '["instance/gone"]', '{"backends":"gone","failover":""}', 6)`,
		`INSERT INTO intents (run, resource, action, started, finished, outcome) VALUES (1, 'instance/web', 'create', 'x', 'y', 'done')`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	db.Close()

	s, err := Open(sqldb.In("", path, "state"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rs, err := s.Resources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rs {
		deps := make([]string, len(r.Deps))
		for i, d := range r.Deps {
			deps[i] = d.String()
		}
		got = append(got, r.ID.String()+" "+r.Site+" "+r.Attrs["vmid"]+" ["+strings.Join(deps, " ")+"]")
	}
	// The route whose instances are unknown is forgotten: its engine still
	// reports it, and the next plan adopts it.
	want := []string{
		"site/a a  []",
		"firewall/a a  [site/a]",
		"instance/a/web a 2000 [firewall/a]",
		"instance/a/fe a 2001 [firewall/a instance/a/web]",
		"route/a/app a  [instance/a/fe instance/b/peer instance/a/web]",
	}
	if !slices.Equal(got, want) {
		t.Errorf("resources after the migration:\n%q\nwant\n%q", got, want)
	}
	if a, err := s.Allocations(ctx); err != nil || len(a.Instances) != 3 {
		t.Errorf("allocations %v, %v; want the three kept", a, err)
	}
	if n, _ := s.Counts(ctx); n["intents"] != 1 {
		t.Errorf("intents %v, want the one kept", n)
	}

	// Opening again changes nothing.
	s.Close()
	s2, err := Open(sqldb.In("", path, "state"))
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	again, err := s2.Resources(ctx)
	if err != nil || len(again) != len(rs) || again[4].ID != compile.RouteID("a", "app") {
		t.Errorf("second open: %v, %v", again, err)
	}
}
