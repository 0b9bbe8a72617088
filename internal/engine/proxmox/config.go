package proxmox

import (
	"cmp"
	"maps"
	"net/netip"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/holdfast/holdfast/internal/spec"
)

// The proxmox engine owns its site block: spec hands it the block written
// under "proxmox:" in a site, and compile hands it the validated block to
// apply defaults to.

// Block is how the proxmox engine reaches and uses a site's cluster: the
// site's "proxmox:" block. The token's secret is never written in the
// spec: it is read from a file or an environment variable when the engine
// starts.
type Block struct {
	spec.Meta   `yaml:"-"`
	Endpoint    string   `yaml:"endpoint" required:"true" doc:"The PVE API, e.g. https://pve1.example.net:8006."`
	TokenID     string   `yaml:"token-id" required:"true" doc:"API token ID, user@realm!name (docs/proxmox-cluster.md lists the privileges it needs)."`
	SecretFile  string   `yaml:"secret-file" doc:"File holding the token's secret, relative to this spec file's directory."`
	SecretEnv   string   `yaml:"secret-env" doc:"Environment variable holding the token's secret (used when secret-file is not given)."`
	Fingerprint string   `yaml:"fingerprint" doc:"SHA-256 fingerprint of the API's TLS certificate (AB:CD:...), pinned instead of verifying it against CAs."`
	Network     string   `yaml:"network" enum:"vlan,vxlan,bridge" doc:"How zones reach VMs: an SDN vlan zone on the bridge (default), an SDN vxlan zone between the peers, or VLAN tags straight on the node bridges (no SDN; their bridge-vids are kept in step)."`
	Bridge      string   `yaml:"bridge" doc:"Node bridge VLANs ride on (default vmbr0)."`
	Peers       []string `yaml:"peers" doc:"Node addresses a vxlan zone tunnels between (network: vxlan)."`
	SDNZone     string   `yaml:"sdn-zone" doc:"ID of the SDN zone Holdfast creates, at most 8 lowercase letters and digits (default hf + the cloud's name, cut to 8)."`
	Clone       string   `yaml:"clone" enum:"full,linked" doc:"full (default) or linked clones of templates."`
	Storage     string   `yaml:"storage" doc:"Storage full clones are written to (default: the template's)."`
	Pool        string   `yaml:"pool" doc:"Resource pool new VMs join."`
	Parallel    *int     `yaml:"parallel" min:"1" max:"64" doc:"Tasks at once per node (default 4)."`
	MetadataURL string   `yaml:"metadata-url" doc:"Holdfast's metadata service as the site's VMs reach it, e.g. http://192.168.100.1:8442 (where holdfast serve answers agents). When set, every VM is seeded through its SMBIOS serial with cloud-init's NoCloud datasource from there, which installs and starts the Holdfast agent (docs/agent.md)."`
	// Templates are per-node copies of templates, for clusters whose
	// storage is not shared: PVE clones a template only onto its own node
	// there.
	Templates map[string]map[string]string `yaml:"templates" doc:"Per-node template VMs: for a template of the spec, its copy (a VM name or VMID) on each node that has one. An instance on such a node is cloned from that copy on its node; elsewhere the template is cloned on its own node and the clone migrated, unless its disks are on shared storage. With clone: linked every node of the site needs a copy."`
}

// Config is a proxmox site's cluster access and conventions. The token's
// secret is not here: SecretFile (absolute) or SecretEnv says where the
// engine reads it.
type Config struct {
	Endpoint    string   `json:"endpoint"`
	TokenID     string   `json:"token_id"`
	SecretFile  string   `json:"secret_file,omitempty"`
	SecretEnv   string   `json:"secret_env,omitempty"`
	Fingerprint string   `json:"fingerprint,omitempty"`
	Network     string   `json:"network"` // vlan, vxlan or bridge
	Bridge      string   `json:"bridge"`
	Peers       []string `json:"peers,omitempty"`
	SDNZone     string   `json:"sdn_zone"`
	Clone       string   `json:"clone"` // full or linked
	Storage     string   `json:"storage,omitempty"`
	Pool        string   `json:"pool,omitempty"`
	Parallel    int      `json:"parallel"` // tasks at once per node
	// MetadataURL is the metadata service VMs are seeded from; empty:
	// no seed.
	MetadataURL string `json:"metadata_url,omitempty"`
	// Templates are per-node template VMs: template -> node -> VM name
	// or VMID.
	Templates map[string]map[string]string `json:"templates,omitempty"`
}

// siteSpec is the engine's spec.EngineSpec and compile.EngineSpec.
type siteSpec struct{}

// NewBlock is an empty proxmox block for spec's decoder to fill.
func (siteSpec) NewBlock() any { return &Block{} }

// NewSettings is an empty Config for a state's JSON to be read into.
func (siteSpec) NewSettings() any { return &Config{} }

// SiteAttrs are the settings whose change the engine must act on, in the
// site resource's attributes.
func (siteSpec) SiteAttrs(settings any) map[string]string {
	p, ok := settings.(*Config)
	if !ok {
		return nil
	}
	return map[string]string{"endpoint": p.Endpoint, "network": p.Network, "bridge": p.Bridge, "sdn_zone": p.SDNZone}
}

type validator struct {
	s     *spec.Spec
	diags *spec.Diagnostics
}

var (
	// tokenIDPattern is PVE's API token ID: user@realm!tokenname.
	tokenIDPattern = regexp.MustCompile(`^[^\s:@!]+@[A-Za-z][A-Za-z0-9._-]*![A-Za-z][A-Za-z0-9._-]*$`)
	// fingerprintPattern is a SHA-256 fingerprint as PVE prints it.
	fingerprintPattern = regexp.MustCompile(`^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){31}$`)
	// sdnZonePattern is PVE's pve-sdn-zone-id (at most 8 characters).
	sdnZonePattern = regexp.MustCompile(`^[a-z][a-z0-9]{0,6}[a-z0-9]$`)
	bridgePattern  = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.]{0,14}$`)
	poolPattern    = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`)
	envPattern     = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// CheckSite checks a proxmox site's block: present, with a reachable,
// authenticated and (unless on this host) encrypted endpoint. (spec
// itself refuses a proxmox block on a site of another engine.)
func (siteSpec) CheckSite(s *spec.Spec, name string, site *spec.Site, diags *spec.Diagnostics) {
	v := &validator{s: s, diags: diags}
	p, _ := site.Block.(*Block)
	if p == nil {
		v.diags.Errorf(site.FieldPos("engine"), "site %q: engine proxmox needs a proxmox block (endpoint, token-id, secret-file or secret-env)", name)
		return
	}
	if p.Endpoint != "" {
		u, err := url.Parse(p.Endpoint)
		switch {
		case err != nil || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "":
			v.diags.Errorf(p.FieldPos("endpoint"), "site %q: proxmox endpoint %q is not a URL like https://pve1.example.net:8006", name, p.Endpoint)
		case u.Scheme == "http" && !loopbackHost(u.Hostname()):
			v.diags.Errorf(p.FieldPos("endpoint"), "site %q: proxmox endpoint %q is plain http: the API token would cross the network in clear (use https; http is allowed only on this host)", name, p.Endpoint)
		case u.Scheme != "https" && u.Scheme != "http":
			v.diags.Errorf(p.FieldPos("endpoint"), "site %q: proxmox endpoint %q must start with https://", name, p.Endpoint)
		}
	}
	if p.TokenID != "" && !tokenIDPattern.MatchString(p.TokenID) {
		v.diags.Errorf(p.FieldPos("token-id"), "site %q: proxmox token-id %q is not an API token ID (user@realm!name)", name, p.TokenID)
	}
	switch {
	case p.SecretFile == "" && p.SecretEnv == "":
		v.diags.Errorf(p.Pos, "site %q: proxmox needs the token's secret: secret-file or secret-env", name)
	case p.SecretFile != "" && p.SecretEnv != "":
		v.diags.Errorf(p.FieldPos("secret-env"), "site %q: proxmox has both secret-file and secret-env; give one", name)
	case p.SecretEnv != "" && !envPattern.MatchString(p.SecretEnv):
		v.diags.Errorf(p.FieldPos("secret-env"), "site %q: proxmox secret-env %q is not an environment variable name", name, p.SecretEnv)
	}
	if p.Fingerprint != "" && !fingerprintPattern.MatchString(p.Fingerprint) {
		v.diags.Errorf(p.FieldPos("fingerprint"), "site %q: proxmox fingerprint must be 32 hex pairs separated by colons (as `pvenode cert info` prints it)", name)
	}
	if p.SDNZone != "" && !sdnZonePattern.MatchString(p.SDNZone) {
		v.diags.Errorf(p.FieldPos("sdn-zone"), "site %q: proxmox sdn-zone %q must be 2-8 lowercase letters and digits, starting with a letter", name, p.SDNZone)
	}
	if p.Bridge != "" && !bridgePattern.MatchString(p.Bridge) {
		v.diags.Errorf(p.FieldPos("bridge"), "site %q: proxmox bridge %q is not an interface name", name, p.Bridge)
	}
	if p.Pool != "" && !poolPattern.MatchString(p.Pool) {
		v.diags.Errorf(p.FieldPos("pool"), "site %q: proxmox pool %q is not a pool ID", name, p.Pool)
	}
	if p.Clone == "linked" && p.Storage != "" {
		v.diags.Errorf(p.FieldPos("storage"), "site %q: proxmox storage is for full clones; a linked clone stays on its template's storage (PVE refuses storage for linked clones)", name)
	}
	if p.Network == "vxlan" && len(p.Peers) == 0 {
		v.diags.Errorf(p.FieldPos("network"), "site %q: proxmox network vxlan needs peers (the nodes' addresses)", name)
	}
	if p.Network != "vxlan" && len(p.Peers) > 0 {
		v.diags.Errorf(p.FieldPos("peers"), "site %q: proxmox peers are for network: vxlan", name)
	}
	for _, peer := range p.Peers {
		if _, err := netip.ParseAddr(peer); err != nil {
			v.diags.Errorf(p.FieldPos("peers"), "site %q: proxmox peer %q is not an IP address", name, peer)
		}
	}
	v.metadataURL(name, p)
	v.nodeTemplates(name, site, p)
}

// maxMetadataURL bounds metadata-url so that the seed fits PVE's smbios1
// (512 characters, the serial base64-encoded beside the VM's UUID).
const maxMetadataURL = 200

// metadataURL checks the metadata service's URL: http or https, a host,
// nothing cloud-init's seed would cut (';' separates its fields) or the
// seed's path could not follow.
func (v *validator) metadataURL(name string, p *Block) {
	if p.MetadataURL == "" {
		return
	}
	at := p.FieldPos("metadata-url")
	u, err := url.Parse(p.MetadataURL)
	switch {
	case err != nil || u.Host == "" || u.Hostname() == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || (u.Path != "" && u.Path != "/"):
		v.diags.Errorf(at, "site %q: proxmox metadata-url %q is not a URL like http://192.168.100.1:8442 (scheme, host and port, no path)", name, p.MetadataURL)
	case u.Scheme != "http" && u.Scheme != "https":
		v.diags.Errorf(at, "site %q: proxmox metadata-url %q must start with http:// or https://", name, p.MetadataURL)
	case strings.ContainsAny(p.MetadataURL, "; \t"):
		v.diags.Errorf(at, "site %q: proxmox metadata-url %q holds a ';' or a space, which would cut cloud-init's seed", name, p.MetadataURL)
	case len(p.MetadataURL) > maxMetadataURL:
		v.diags.Errorf(at, "site %q: proxmox metadata-url is %d characters; at most %d fit the VMs' SMBIOS seed", name, len(p.MetadataURL), maxMetadataURL)
	}
}

// nodeTemplates checks a site's per-node templates: templates of the spec,
// nodes of the site, and, for linked clones, a copy on every node. A
// linked clone's disk is a layer over its template's, which PVE can
// neither clone to another node nor migrate off it on local storage ("can't
// migrate … as it's a clone of …"); per-node copies say the storage is
// local.
func (v *validator) nodeTemplates(name string, site *spec.Site, p *Block) {
	at := p.FieldPos("templates")
	for _, tpl := range spec.SortedNames(p.Templates) {
		if _, ok := v.s.Templates[tpl]; !ok {
			v.diags.Errorf(at, "site %q: proxmox templates: %q is not a template (templates: %s)", name, tpl, strings.Join(spec.SortedNames(v.s.Templates), ", "))
			continue
		}
		copies := p.Templates[tpl]
		for _, node := range spec.SortedNames(copies) {
			switch {
			case !slices.Contains(site.Nodes, node):
				v.diags.Errorf(at, "site %q: proxmox templates: %s: %q is not a node of the site (nodes: %s)", name, tpl, node, strings.Join(site.Nodes, ", "))
			case strings.TrimSpace(copies[node]) == "":
				v.diags.Errorf(at, "site %q: proxmox templates: %s on %s names no VM (a template VM's name or VMID)", name, tpl, node)
			}
		}
		if p.Clone != "linked" {
			continue
		}
		var missing []string
		for _, node := range site.Nodes {
			if _, ok := copies[node]; !ok {
				missing = append(missing, node)
			}
		}
		if len(missing) > 0 {
			v.diags.Errorf(at, "site %q: proxmox templates: %s has no copy on %s; with clone: linked every node needs one (name the template's own node too): PVE cannot move a linked clone off its template's node on local storage", name, tpl, strings.Join(missing, ", "))
		}
	}
}

func loopbackHost(h string) bool {
	if a, err := netip.ParseAddr(h); err == nil {
		return a.IsLoopback()
	}
	return strings.EqualFold(h, "localhost")
}

// Settings applies the defaults of a site's proxmox block.
func (siteSpec) Settings(s *spec.Spec, _ string, st *spec.Site) any {
	p, _ := st.Block.(*Block)
	if p == nil {
		return nil
	}
	out := &Config{
		Endpoint: strings.TrimSuffix(p.Endpoint, "/"), TokenID: p.TokenID, SecretEnv: p.SecretEnv, Fingerprint: strings.ToUpper(p.Fingerprint),
		Network: cmp.Or(p.Network, "vlan"), Bridge: cmp.Or(p.Bridge, "vmbr0"), Peers: slices.Clone(p.Peers),
		SDNZone: p.SDNZone, Clone: cmp.Or(p.Clone, "full"), Storage: p.Storage, Pool: p.Pool, Parallel: 4,
		MetadataURL: strings.TrimSuffix(p.MetadataURL, "/"),
	}
	if p.SecretFile != "" {
		out.SecretFile = p.SecretFile
		if !filepath.IsAbs(out.SecretFile) && p.Pos.File != "" {
			out.SecretFile = filepath.Join(filepath.Dir(p.Pos.File), out.SecretFile)
		}
		if abs, err := filepath.Abs(out.SecretFile); err == nil {
			out.SecretFile = abs
		}
	}
	if p.Parallel != nil {
		out.Parallel = *p.Parallel
	}
	for tpl, copies := range p.Templates {
		if out.Templates == nil {
			out.Templates = map[string]map[string]string{}
		}
		out.Templates[tpl] = maps.Clone(copies)
	}
	if out.SDNZone == "" {
		out.SDNZone = DefaultSDNZone(s.Cloud.Name)
	}
	return out
}

// DefaultSDNZone names a cloud's SDN zone: "hf" and the cloud's name,
// lowercase letters and digits only, cut to PVE's 8 characters.
func DefaultSDNZone(cloud string) string {
	id := []byte("hf")
	for _, r := range strings.ToLower(cloud) {
		if len(id) == 8 {
			break
		}
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			id = append(id, byte(r))
		}
	}
	return string(id)
}
