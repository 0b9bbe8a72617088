package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/holdfast/holdfast/internal/compile"
)

// Before resource IDs were typed, instances and routes were named without
// their site (instance/<name>, route/<name>); sites, networks and
// firewalls already carried it and print as they did. migrateIDs rewrites
// the resources table of a database written then into the current form:
// it is the store's migration from version 1 to 2. It changes nothing in a
// database whose IDs all parse.
//
// The intent log keeps the IDs as they were: it is history, and open
// intents are resolved by observing the engines, not by their IDs.
func migrateIDs(ctx context.Context, tx *sql.Tx) error {
	type row struct{ id, kind, site, deps, attrs string }
	rows, err := tx.QueryContext(ctx, `SELECT id, kind, site, deps, attrs FROM resources`)
	if err != nil {
		return err
	}
	var all []row
	stale := false
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.id, &r.kind, &r.site, &r.deps, &r.attrs); err != nil {
			rows.Close()
			return err
		}
		if _, err := compile.ParseID(r.id); err != nil {
			stale = true
		}
		all = append(all, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil || !stale {
		return err
	}
	sites, err := instanceSites(ctx, tx)
	if err != nil {
		return err
	}
	for _, r := range all {
		if _, name, old := strings.Cut(r.id, "/"); old && r.kind == compile.ResInstance && r.site != "" && !strings.Contains(name, "/") {
			sites[name] = r.site
		}
	}
	for _, r := range all {
		var deps []string
		if err := json.Unmarshal([]byte(r.deps), &deps); err != nil {
			return fmt.Errorf("resource %s: deps: %w", r.id, err)
		}
		var attrs map[string]string
		if err := json.Unmarshal([]byte(r.attrs), &attrs); err != nil {
			return fmt.Errorf("resource %s: attrs: %w", r.id, err)
		}
		site := r.site
		if r.kind == compile.ResRoute && site == "" {
			site = routeSiteV1(deps, attrs["failover"], sites)
		}
		id, ok := rewriteIDV1(r.id, site)
		newDeps := make([]string, 0, len(deps))
		for _, d := range deps {
			_, name, _ := strings.Cut(d, "/")
			if nd, ok := rewriteIDV1(d, sites[name]); ok {
				newDeps = append(newDeps, nd)
			}
		}
		// A row whose site cannot be told is forgotten: the engine
		// that has it still reports it, and the plan adopts it as
		// found, as after a crash between making and recording.
		if !ok {
			if _, err := tx.ExecContext(ctx, `DELETE FROM resources WHERE id = ?`, r.id); err != nil {
				return err
			}
			continue
		}
		depsJSON, _ := json.Marshal(newDeps) // a list of strings always marshals
		if _, err := tx.ExecContext(ctx, `UPDATE resources SET id = ?, site = ?, deps = ? WHERE id = ?`, id, site, string(depsJSON), r.id); err != nil {
			return fmt.Errorf("resource %s: %w", r.id, err)
		}
	}
	return nil
}

// instanceSites reads every allocated instance's site.
func instanceSites(ctx context.Context, tx *sql.Tx) (map[string]string, error) {
	rows, err := tx.QueryContext(ctx, `SELECT instance, site FROM allocations`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var name, site string
		if err := rows.Scan(&name, &site); err != nil {
			return nil, err
		}
		out[name] = site
	}
	return out, rows.Err()
}

// rewriteIDV1 turns an ID printed before IDs were typed into its current
// form, given the site of the resource: instance/<name> and route/<name>
// gain their site; IDs that already parse are kept. It reports false when
// the ID needs a site and none is given, or is no ID at all.
func rewriteIDV1(old, site string) (string, bool) {
	if _, err := compile.ParseID(old); err == nil {
		return old, true
	}
	kind, name, ok := strings.Cut(old, "/")
	if !ok || site == "" || (kind != compile.ResInstance && kind != compile.ResRoute) {
		return "", false
	}
	id := compile.ID{Kind: kind, Site: site, Name: name}
	if _, err := compile.ParseID(id.String()); err != nil {
		return "", false
	}
	return id.String(), true
}

// routeSiteV1 tells the site of a route recorded without one: the site its
// front ends and preferred backends share (failover backends may be at the
// peer). A route recorded then had its front ends, backends and failover
// as its dependencies; empty when they do not agree on one site.
func routeSiteV1(deps []string, failover string, sites map[string]string) string {
	peers := strings.Split(failover, ",")
	site := ""
	for _, d := range deps {
		kind, name, _ := strings.Cut(d, "/")
		if kind != compile.ResInstance || slices.Contains(peers, name) {
			continue
		}
		switch s := sites[name]; {
		case s == "":
			return ""
		case site == "":
			site = s
		case site != s:
			return ""
		}
	}
	return site
}
