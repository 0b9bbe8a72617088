package spec

import (
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strings"
)

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

// proxmox checks a site's proxmox block: present exactly when the site's
// engine is proxmox, with a reachable, authenticated and (unless on this
// host) encrypted endpoint.
func (v *validator) proxmox(name string, site *Site) {
	p := site.Proxmox
	if site.Engine != "proxmox" {
		if p != nil {
			v.diags.Errorf(site.FieldPos("proxmox"), "site %q: proxmox is for sites with engine: proxmox (this one has engine: %s)", name, site.Engine)
		}
		return
	}
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
	v.nodeTemplates(name, site)
}

// nodeTemplates checks a site's per-node templates: templates of the spec,
// nodes of the site, and, for linked clones, a copy on every node. A
// linked clone's disk is a layer over its template's, which PVE can
// neither clone to another node nor migrate off it on local storage ("can't
// migrate … as it's a clone of …"); per-node copies say the storage is
// local.
func (v *validator) nodeTemplates(name string, site *Site) {
	p := site.Proxmox
	at := p.FieldPos("templates")
	for _, tpl := range SortedNames(p.Templates) {
		if _, ok := v.s.Templates[tpl]; !ok {
			v.diags.Errorf(at, "site %q: proxmox templates: %q is not a template (templates: %s)", name, tpl, strings.Join(SortedNames(v.s.Templates), ", "))
			continue
		}
		copies := p.Templates[tpl]
		for _, node := range SortedNames(copies) {
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

// spread checks anti-affinity: the members of a spread group share a site,
// the site has a node for each, and no two are pinned to one node.
func (v *validator) spread() {
	groups := map[string][]*Instance{}
	for _, name := range SortedNames(v.s.Instances) {
		if in := v.s.Instances[name]; in.Spread != "" {
			groups[in.Spread] = append(groups[in.Spread], in)
		}
	}
	for _, g := range SortedNames(groups) {
		members := groups[g]
		first := members[0]
		site := v.s.SiteOf(first)
		pinned := map[string]string{}
		for _, in := range members {
			if s := v.s.SiteOf(in); s != site {
				v.diags.Errorf(in.FieldPos("spread"), "instance %q: spread %q has members at sites %q and %q; a spread group lives at one site", in.Name, g, site, s)
				return
			}
			if in.Node == "" {
				continue
			}
			if other, dup := pinned[in.Node]; dup {
				v.diags.Errorf(in.FieldPos("node"), "instance %q: spread %q: node %q already holds member %q", in.Name, g, in.Node, other)
			}
			pinned[in.Node] = in.Name
		}
		if st := v.s.Sites[site]; st != nil && len(members) > len(st.Nodes) {
			names := make([]string, len(members))
			for i, in := range members {
				names[i] = in.Name
			}
			slices.Sort(names)
			v.diags.Errorf(first.FieldPos("spread"), "spread %q has %d members (%s) but site %q has %d nodes; each member needs its own node", g, len(members), strings.Join(names, ", "), site, len(st.Nodes))
		}
	}
}
