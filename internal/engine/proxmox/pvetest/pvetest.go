// Package pvetest runs emulated Proxmox VE clusters for tests and
// benchmarks, and turns a spec written for any engine into one that
// realizes its sites on those clusters: the same cloud, engine: proxmox.
package pvetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/holdfast/holdfast/internal/engine/proxmox/pve"
	"github.com/holdfast/holdfast/internal/engine/proxmox/pveemu"
	"github.com/holdfast/holdfast/internal/spec"
)

// TokenID is the API token every emulated cluster accepts.
const TokenID = "holdfast@pve!apply"

// Cluster is an emulated PVE cluster served over TLS on loopback.
type Cluster struct {
	Emu         *pveemu.Emulator
	URL         string
	Secret      string
	Fingerprint string
	SecretFile  string // holds Secret, mode 0600
	// API is a client for inspecting the cluster (and for changing it
	// behind Holdfast's back); it retries through injected faults.
	API *pve.Client

	hook atomic.Pointer[Hook]
	tap  atomic.Pointer[Tap]
}

// Tap sees every answer the emulator gave, after it was given.
type Tap func(r *http.Request, status int, body []byte)

// SetTap installs t (nil removes it).
func (c *Cluster) SetTap(t Tap) {
	if t == nil {
		c.tap.Store(nil)
		return
	}
	c.tap.Store(&t)
}

// recorder passes an answer on and keeps a copy; Unwrap lets the
// emulator still hijack the connection to drop it.
type recorder struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (r *recorder) WriteHeader(status int) { r.status = status; r.ResponseWriter.WriteHeader(status) }
func (r *recorder) Write(b []byte) (int, error) {
	r.body.Write(b)
	return r.ResponseWriter.Write(b)
}
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// Hook sees every request before the emulator does. It returns false to
// drop the request unanswered and unhandled, as a connection that breaks
// on its way to the cluster.
type Hook func(r *http.Request) bool

// SetHook installs h (nil removes it).
func (c *Cluster) SetHook(h Hook) {
	if h == nil {
		c.hook.Store(nil)
		return
	}
	c.hook.Store(&h)
}

func (c *Cluster) serve(w http.ResponseWriter, r *http.Request) {
	if h := c.hook.Load(); h != nil && !(*h)(r) {
		panic(http.ErrAbortHandler) // the connection closes without an answer
	}
	t := c.tap.Load()
	if t == nil {
		c.Emu.ServeHTTP(w, r)
		return
	}
	rec := &recorder{ResponseWriter: w, status: http.StatusOK}
	c.Emu.ServeHTTP(rec, r)
	(*t)(r, rec.status, rec.body.Bytes())
}

// Start serves an emulated cluster with the given nodes (16 cores and
// 64 GiB each) until the test ends. Its storage is a fresh install's,
// local and local-lvm on every node and nothing shared, so that a
// template's clones for other nodes are made on its node and migrated, as
// on most small clusters; add shared storage with c.Emu.AddStorage.
func Start(tb testing.TB, nodes []string, cfg pveemu.Config) *Cluster {
	tb.Helper()
	secret := make([]byte, 16)
	_, _ = rand.Read(secret)
	c := &Cluster{Secret: hex.EncodeToString(secret)}
	if cfg.Tokens == nil {
		cfg.Tokens = map[string]string{}
	}
	cfg.Tokens[TokenID] = c.Secret
	c.Emu = pveemu.New(cfg)
	for _, n := range nodes {
		if err := c.Emu.AddNode(pveemu.Node{Name: n}); err != nil {
			tb.Fatal(err)
		}
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(c.serve))
	// Clients killed mid-handshake are part of the tests, not news.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	tb.Cleanup(srv.Close)
	c.URL = srv.URL
	c.Fingerprint = pve.Fingerprint(srv.Certificate())
	c.SecretFile = filepath.Join(tb.TempDir(), "pve.secret")
	if err := os.WriteFile(c.SecretFile, []byte(c.Secret+"\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	api, err := pve.New(pve.Config{URL: c.URL, TokenID: TokenID, Secret: c.Secret, Fingerprint: c.Fingerprint,
		Retries: 10, RetryWait: 5 * time.Millisecond, PollMin: 5 * time.Millisecond, PollMax: 50 * time.Millisecond})
	if err != nil {
		tb.Fatal(err)
	}
	c.API = api
	return c
}

// TemplateBase is the first VMID templates get; no example's roles use
// 9000-9099.
const TemplateBase = 9000

// AddTemplates adds a template VM on node, on its local-lvm, for every
// template of the spec, named as the template.
func (c *Cluster) AddTemplates(tb testing.TB, s *spec.Spec, node string) {
	tb.Helper()
	for i, name := range spec.SortedNames(s.Templates) {
		if err := c.Emu.AddTemplate(pveemu.Template{Node: node, VMID: TemplateBase + i, Name: name}); err != nil {
			tb.Fatal(err)
		}
	}
}

// Spec copies the spec directory src to a new directory and rewrites its
// sites to engine: proxmox on the given clusters (site -> cluster); it
// returns the new directory. Every site of the spec must have a cluster.
// extra adds keys to every proxmox block (network: bridge, ...).
func Spec(tb testing.TB, src string, clusters map[string]*Cluster, extra map[string]any) string {
	tb.Helper()
	dst := tb.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		tb.Fatal(err)
	}
	rewritten := false
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".yaml") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			tb.Fatal(err)
		}
		out, did, err := rewriteSites(data, clusters, extra)
		if err != nil {
			tb.Fatalf("%s: %v", e.Name(), err)
		}
		rewritten = rewritten || did
		if err := os.WriteFile(filepath.Join(dst, e.Name()), out, 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	if !rewritten {
		tb.Fatalf("%s: no sites section", src)
	}
	return dst
}

func rewriteSites(data []byte, clusters map[string]*Cluster, extra map[string]any) ([]byte, bool, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, false, err
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return data, false, nil
	}
	root := doc.Content[0]
	var sites *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == "sites" {
			sites = root.Content[i+1]
		}
	}
	if sites == nil {
		return data, false, nil
	}
	for i := 0; i+1 < len(sites.Content); i += 2 {
		name, site := sites.Content[i].Value, sites.Content[i+1]
		c, ok := clusters[name]
		if !ok {
			return nil, false, fmt.Errorf("site %q has no cluster", name)
		}
		site.Style = 0
		set(site, "engine", scalar("proxmox"))
		block := &yaml.Node{Kind: yaml.MappingNode}
		fields := map[string]any{"endpoint": c.URL, "token-id": TokenID, "secret-file": c.SecretFile, "fingerprint": c.Fingerprint}
		maps.Copy(fields, extra)
		for _, k := range slices.Sorted(maps.Keys(fields)) {
			var v yaml.Node
			if err := v.Encode(fields[k]); err != nil {
				return nil, false, err
			}
			block.Content = append(block.Content, scalar(k), &v)
		}
		set(site, "proxmox", block)
	}
	out, err := yaml.Marshal(&doc)
	return out, true, err
}

func scalar(v string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Value: v} }

func set(m *yaml.Node, key string, v *yaml.Node) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content[i+1] = v
			return
		}
	}
	m.Content = append(m.Content, scalar(key), v)
}

// Guests lists the cluster's guests that are not templates.
func (c *Cluster) Guests(tb testing.TB) []pve.VM {
	tb.Helper()
	vms, err := c.API.VMs(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	return slices.DeleteFunc(vms, func(vm pve.VM) bool { return vm.Template })
}

// Synthetic describes a generated cloud for scale and concurrency tests:
// one site on the given nodes, one zone, n instances of one role.
type Synthetic struct {
	Cloud     string
	Nodes     []string
	VLAN      int    // the zone's VLAN; also picks its subnet 10.<vlan/256>.<vlan%256>.0/22 region
	CIDR      string // the zone's subnet, large enough for the instances
	VMIDs     string // the role's range, e.g. 100-1999
	Instances int
	// Proxmox adds keys to the site's proxmox block, in YAML flow
	// style: `clone: linked, templates: {debian-12: {pve2: "9001"}}`.
	Proxmox string
}

// Write writes the synthetic cloud as a spec directory realized on c and
// returns its path.
func (s Synthetic) Write(tb testing.TB, c *Cluster) string {
	tb.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "cloud: {name: %s, domain: %s.example}\n", s.Cloud, s.Cloud)
	fmt.Fprintf(&b, "sites:\n  dc:\n    engine: proxmox\n    nodes: [%s]\n", strings.Join(s.Nodes, ", "))
	extra := ""
	if s.Proxmox != "" {
		extra = ", " + s.Proxmox
	}
	fmt.Fprintf(&b, "    proxmox: {endpoint: %q, token-id: %q, secret-file: %q, fingerprint: %q%s}\n", c.URL, TokenID, c.SecretFile, c.Fingerprint, extra)
	fmt.Fprintf(&b, "zones:\n  apps: {type: service, vlan: %d, cidr: %s, access-to: [internet]}\n", s.VLAN, s.CIDR)
	fmt.Fprintf(&b, "roles:\n  app: {vmids: %s}\n", s.VMIDs)
	b.WriteString("flavors:\n  small: {cpus: 1, memory: 512M, disk: 8G}\n")
	b.WriteString("templates:\n  debian-12: {image: debian-12}\n")
	b.WriteString("instances:\n")
	for i := range s.Instances {
		fmt.Fprintf(&b, "  app-%04d: {role: app, zone: apps, flavor: small, template: debian-12, ports: [443]}\n", i)
	}
	dir := tb.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "cloud.yaml"), []byte(b.String()), 0o644); err != nil {
		tb.Fatal(err)
	}
	return dir
}
