package deploy_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/deploy"
	"github.com/holdfast/holdfast/internal/engine"
	"github.com/holdfast/holdfast/internal/engine/local"
	"github.com/holdfast/holdfast/internal/engine/proxmox"
	"github.com/holdfast/holdfast/internal/engine/proxmox/pveemu"
	"github.com/holdfast/holdfast/internal/engine/proxmox/pvetest"
	"github.com/holdfast/holdfast/internal/spec"
)

// A cloud that mixes a local site and a Proxmox site, each with a route:
// the plan shows each route under its site, and the apply sends each to
// the engine of its site, which then reports it as made — and the other
// engine does not.
func TestMixedCloudRoutesGoToTheirSitesEngine(t *testing.T) {
	needRoot(t)
	fast := map[string]time.Duration{}
	for k := range pveemu.DefaultDurations {
		fast[k] = time.Millisecond
	}
	pve := pvetest.Start(t, []string{"pve1"}, pveemu.Config{Durations: fast})
	if err := pve.Emu.AddTemplate(pveemu.Template{Node: "pve1", VMID: pvetest.TemplateBase, Name: "debian-12"}); err != nil {
		t.Fatal(err)
	}
	specFile := filepath.Join(t.TempDir(), "cloud.yaml")
	if err := os.WriteFile(specFile, []byte(fmt.Sprintf(`
cloud: {name: mx, domain: mx.example}
sites:
  home: {engine: local, nodes: [n1]}
  dc:
    engine: proxmox
    nodes: [pve1]
    proxmox: {endpoint: %q, token-id: %q, secret-file: %q, fingerprint: %q}
zones:
  web-home: {type: service, sub-id: 1, sites: [home], pinhole-allowed-from: [internet]}
  web-dc: {type: service, sub-id: 2, sites: [dc], pinhole-allowed-from: [internet]}
roles: {r: {vmids: 100-199}}
templates: {debian-12: {image: debian-12}}
instances:
  fe-home: {role: r, zone: web-home, site: home, ports: [80]}
  fe-dc: {role: r, zone: web-dc, site: dc, template: debian-12, ports: [80]}
routes:
  app-home: {host: app.mx.example, frontends: [fe-home], backends: [fe-home], backend-port: 80}
  app-dc: {host: app.mx.example, frontends: [fe-dc], backends: [fe-dc], backend-port: 80}
`, pve.URL, pvetest.TokenID, pve.SecretFile, pve.Fingerprint)), 0o644); err != nil {
		t.Fatal(err)
	}
	cloud, state := testCloud("mx"), t.TempDir()
	cleanupAfter(t, specFile, cloud, state)
	c, diags, err := deploy.Open(specFile, deploy.Options{StateDir: state, Rename: cloud})
	if err != nil {
		t.Fatalf("open: %v\n%v", err, spec.ErrorList(diags.Errors()))
	}
	defer c.Close()
	ctx := context.Background()

	homeRoute, dcRoute := compile.RouteID("home", "app-home"), compile.RouteID("dc", "app-dc")
	p := planOf(t, c)
	sites := map[compile.ID]string{}
	for _, ch := range p.Changes {
		sites[ch.ID] = ch.Site
	}
	if sites[homeRoute] != "home" || sites[dcRoute] != "dc" {
		t.Errorf("plan puts the routes at %q and %q, want home and dc: %v", sites[homeRoute], sites[dcRoute], sites)
	}
	if _, err := c.Apply(ctx, p); err != nil {
		t.Fatalf("apply: %v", err)
	}

	// Each engine, asked alone, reports its own site's route and not the
	// other's.
	observed := func(name string, e engine.Engine, err error) []compile.ID {
		t.Helper()
		if err != nil {
			t.Fatalf("%s engine: %v", name, err)
		}
		defer e.Close()
		obs, err := e.Observe(ctx)
		if err != nil {
			t.Fatalf("%s engine: observe: %v", name, err)
		}
		var ids []compile.ID
		for _, o := range obs {
			ids = append(ids, o.ID)
		}
		return ids
	}
	le, err := local.New(engine.Config{Cloud: cloud, Sites: []string{"home"}, StateDir: filepath.Join(c.Dir, local.Name), Desired: c.Desired})
	byLocal := observed("local", le, err)
	pe, err := proxmox.New(engine.Config{Cloud: cloud, Sites: []string{"dc"}, StateDir: filepath.Join(c.Dir, "proxmox"), Desired: c.Desired})
	byProxmox := observed("proxmox", pe, err)
	if !slices.Contains(byLocal, homeRoute) || slices.Contains(byLocal, dcRoute) {
		t.Errorf("the local engine reports %v; want %s and not %s", byLocal, homeRoute, dcRoute)
	}
	if !slices.Contains(byProxmox, dcRoute) || slices.Contains(byProxmox, homeRoute) {
		t.Errorf("the proxmox engine reports %v; want %s and not %s", byProxmox, dcRoute, homeRoute)
	}
	for _, id := range byLocal {
		if id.Site != "home" {
			t.Errorf("the local engine reports %s, of another site", id)
		}
	}

	// What was made is what is desired: nothing left to do.
	status, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range status {
		if s.State != "ok" {
			t.Errorf("after the apply, %s is %s %v", s.ID, s.State, s.Drift)
		}
	}
	if p := planOf(t, c); len(p.Changes) != 0 {
		t.Errorf("a second plan has %d changes: %+v", len(p.Changes), p.Changes)
	}
}
