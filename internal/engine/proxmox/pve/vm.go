package pve

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// Version is what GET /version answers.
type Version struct {
	Version, Release, RepoID string
}

// Version reads the API's version; it is also the cheapest check that the
// endpoint and the token work.
func (c *Client) Version(ctx context.Context) (Version, error) {
	var w struct {
		Version string `json:"version"`
		Release string `json:"release"`
		RepoID  string `json:"repoid"`
	}
	err := c.do(ctx, http.MethodGet, "/version", nil, &w)
	return Version{Version: w.Version, Release: w.Release, RepoID: w.RepoID}, err
}

// Node is a cluster node.
type Node struct {
	Node   string
	Status string // online, offline or unknown
	MaxCPU int
	MaxMem int64 // bytes
	Mem    int64 // bytes in use
}

// Nodes lists the cluster's nodes.
func (c *Client) Nodes(ctx context.Context) ([]Node, error) {
	var w []struct {
		Node   string `json:"node"`
		Status string `json:"status"`
		MaxCPU number `json:"maxcpu"`
		MaxMem number `json:"maxmem"`
		Mem    number `json:"mem"`
	}
	if err := c.do(ctx, http.MethodGet, "/nodes", nil, &w); err != nil {
		return nil, err
	}
	out := make([]Node, len(w))
	for i, n := range w {
		out[i] = Node{Node: n.Node, Status: n.Status, MaxCPU: int(n.MaxCPU), MaxMem: int64(n.MaxMem), Mem: int64(n.Mem)}
	}
	return out, nil
}

// VM is a guest as the cluster's resource list shows it.
type VM struct {
	Type     string // qemu, or lxc for a container (they share the VMID space)
	VMID     int
	Node     string
	Name     string
	Status   string // running or stopped
	Template bool
	Lock     string // the config lock (clone, backup, …), if any
	Pool     string
	Tags     string
	MaxCPU   int
	MaxMem   int64 // bytes
	MaxDisk  int64 // bytes
}

// VMs lists every guest in the cluster (GET /cluster/resources, type=vm):
// QEMU VMs, templates included, and containers, which take VMIDs too.
func (c *Client) VMs(ctx context.Context) ([]VM, error) {
	var w []struct {
		Type     string `json:"type"`
		VMID     number `json:"vmid"`
		Node     string `json:"node"`
		Name     string `json:"name"`
		Status   string `json:"status"`
		Template number `json:"template"`
		Lock     string `json:"lock"`
		Pool     string `json:"pool"`
		Tags     string `json:"tags"`
		MaxCPU   number `json:"maxcpu"`
		MaxMem   number `json:"maxmem"`
		MaxDisk  number `json:"maxdisk"`
	}
	if err := c.do(ctx, http.MethodGet, "/cluster/resources", url.Values{"type": {"vm"}}, &w); err != nil {
		return nil, err
	}
	var out []VM
	for _, r := range w {
		if r.Type != "qemu" && r.Type != "lxc" {
			continue
		}
		out = append(out, VM{Type: r.Type, VMID: int(r.VMID), Node: r.Node, Name: r.Name, Status: r.Status,
			Template: r.Template != 0, Lock: r.Lock, Pool: r.Pool, Tags: r.Tags,
			MaxCPU: int(r.MaxCPU), MaxMem: int64(r.MaxMem), MaxDisk: int64(r.MaxDisk)})
	}
	return out, nil
}

// NextID asks PVE for a free VMID. PVE reserves nothing: two callers may
// get the same ID, and the second to clone with it fails. Holdfast
// allocates VMIDs itself; this is for tools and tests.
func (c *Client) NextID(ctx context.Context) (int, error) {
	var n number
	err := c.do(ctx, http.MethodGet, "/cluster/nextid", nil, &n)
	return int(n), err
}

func vmPath(node string, vmid int, rest string) string {
	return "/nodes/" + url.PathEscape(node) + "/qemu/" + strconv.Itoa(vmid) + rest
}

// CloneOptions are the parameters of a clone.
type CloneOptions struct {
	NewID int
	Name  string // a DNS name
	// Full copies the disks; otherwise a clone of a template is linked
	// (its disks are thin layers over the template's). A VM that is not a
	// template can only be copied in full: PVE refuses to link to its
	// disks ("Linked clone feature is not supported for …").
	Full bool
	// Target is the node the clone is for; default the source's. PVE
	// refuses another node unless every volume of the source, the
	// cloud-init drive included, is on shared storage.
	Target      string
	Pool        string
	Storage     string // target storage of a full clone
	Description string
}

// Clone copies VM vmid on node (usually a template) to opts.NewID and
// waits for the copy.
func (c *Client) Clone(ctx context.Context, node string, vmid int, opts CloneOptions) error {
	p := url.Values{"newid": {strconv.Itoa(opts.NewID)}, "full": {boolParam(opts.Full)}}
	for k, v := range map[string]string{"name": opts.Name, "target": opts.Target, "pool": opts.Pool,
		"storage": opts.Storage, "description": opts.Description} {
		if v != "" {
			p.Set(k, v)
		}
	}
	return c.task(ctx, http.MethodPost, vmPath(node, vmid, "/clone"), p)
}

// MigrateOptions are the parameters of a migration.
type MigrateOptions struct {
	Target string
	// Online migrates a running VM live; PVE refuses to migrate a running
	// VM without it, and ignores it for a stopped one.
	Online bool
	// WithLocalDisks lets a live migration copy disks on local storage
	// (an offline migration copies them anyway).
	WithLocalDisks bool
	// TargetStorage maps the storage of local disks on the target: one
	// storage ID for all, or "src:dst" pairs; empty keeps each on its
	// own storage, which must then exist on the target.
	TargetStorage string
}

// Migrate moves VM vmid from node to opts.Target within the cluster and
// waits for it. PVE locks the VM (lock: migrate) while its local disks
// are copied; a migration that cannot be done (a linked clone on local
// storage) fails its task with "migration aborted" and leaves the VM
// where it was.
func (c *Client) Migrate(ctx context.Context, node string, vmid int, opts MigrateOptions) error {
	p := url.Values{"target": {opts.Target}}
	if opts.Online {
		p.Set("online", "1")
	}
	if opts.WithLocalDisks {
		p.Set("with-local-disks", "1")
	}
	if opts.TargetStorage != "" {
		p.Set("targetstorage", opts.TargetStorage)
	}
	return c.task(ctx, http.MethodPost, vmPath(node, vmid, "/migrate"), p)
}

func boolParam(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// NetDevice is a net[n] option: "virtio=MAC,bridge=vmbr0,firewall=1,tag=N".
type NetDevice struct {
	Model    string // default virtio
	MAC      string // empty: PVE generates one
	Bridge   string
	Tag      int // VLAN tag; 0 for none
	Firewall bool
	// Other holds keys this type does not name (mtu, queues, rate, …).
	Other map[string]string
}

// String renders the option as PVE writes it: model=MAC first, the other
// keys sorted.
func (d NetDevice) String() string {
	model := d.Model
	if model == "" {
		model = "virtio"
	}
	head := model
	if d.MAC != "" {
		head += "=" + d.MAC
	}
	kv := map[string]string{}
	for k, v := range d.Other {
		kv[k] = v
	}
	if d.Bridge != "" {
		kv["bridge"] = d.Bridge
	}
	if d.Firewall {
		kv["firewall"] = "1"
	}
	if d.Tag != 0 {
		kv["tag"] = strconv.Itoa(d.Tag)
	}
	parts := []string{head}
	for _, k := range sortedKeys(kv) {
		parts = append(parts, k+"="+kv[k])
	}
	return strings.Join(parts, ",")
}

// ParseNetDevice parses a net[n] option as PVE returns it.
func ParseNetDevice(s string) (NetDevice, error) {
	var d NetDevice
	for i, part := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(part, "=")
		switch k {
		case "bridge":
			d.Bridge = v
		case "firewall":
			d.Firewall = v == "1"
		case "tag":
			n, err := strconv.Atoi(v)
			if err != nil {
				return d, fmt.Errorf("net device %q: tag %q is not a number", s, v)
			}
			d.Tag = n
		case "model":
			d.Model = v
		case "macaddr":
			d.MAC = v
		default:
			if i == 0 {
				d.Model, d.MAC = k, v
				continue
			}
			if d.Other == nil {
				d.Other = map[string]string{}
			}
			d.Other[k] = v
		}
	}
	if d.Model == "" {
		return d, fmt.Errorf("net device %q has no model", s)
	}
	return d, nil
}

// IPConfig is an ipconfig[n] option (cloud-init): "ip=CIDR,gw=IP".
type IPConfig struct {
	IP      string // address/prefix, or dhcp
	Gateway string
}

func (ic IPConfig) String() string {
	parts := []string{"ip=" + ic.IP}
	if ic.Gateway != "" {
		parts = append(parts, "gw="+ic.Gateway)
	}
	return strings.Join(parts, ",")
}

// ParseIPConfig parses an ipconfig[n] option.
func ParseIPConfig(s string) IPConfig {
	var ic IPConfig
	for _, part := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(part, "=")
		switch k {
		case "ip":
			ic.IP = v
		case "gw":
			ic.Gateway = v
		}
	}
	return ic
}

// VMConfig is a VM's configuration as GET …/config answers it.
type VMConfig struct {
	// Digest identifies this version of the config; pass it back in an
	// update to refuse the update if the config changed meanwhile.
	Digest       string
	Name         string
	Cores        int
	Sockets      int
	MemoryMiB    int
	Template     bool
	Lock         string
	Nets         map[int]NetDevice
	IPConfigs    map[int]IPConfig
	SSHKeys      string // decoded: one OpenSSH key a line
	CIUser       string
	Nameserver   string
	Searchdomain string
	Tags         string
	Description  string
	OnBoot       bool
	// SMBIOS1 is the SMBIOS type 1 option, as PVE keeps it
	// ("uuid=…,serial=…,base64=1").
	SMBIOS1 string
	// Raw is every option as PVE answered it (numbers as decimal text).
	Raw map[string]string
}

// Config reads a VM's configuration.
func (c *Client) Config(ctx context.Context, node string, vmid int) (VMConfig, error) {
	var w map[string]json.RawMessage
	if err := c.do(ctx, http.MethodGet, vmPath(node, vmid, "/config"), nil, &w); err != nil {
		return VMConfig{}, err
	}
	cfg := VMConfig{Raw: map[string]string{}, Nets: map[int]NetDevice{}, IPConfigs: map[int]IPConfig{}}
	for k, raw := range w {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			s = string(raw) // a number
		}
		cfg.Raw[k] = s
	}
	atoi := func(k string) int { n, _ := strconv.Atoi(cfg.Raw[k]); return n }
	cfg.Digest, cfg.Name, cfg.Lock = cfg.Raw["digest"], cfg.Raw["name"], cfg.Raw["lock"]
	cfg.Cores, cfg.Sockets, cfg.Template = atoi("cores"), atoi("sockets"), atoi("template") == 1
	cfg.CIUser, cfg.Nameserver, cfg.Searchdomain = cfg.Raw["ciuser"], cfg.Raw["nameserver"], cfg.Raw["searchdomain"]
	cfg.Tags, cfg.Description, cfg.OnBoot = cfg.Raw["tags"], cfg.Raw["description"], cfg.Raw["onboot"] == "1"
	cfg.SMBIOS1 = cfg.Raw["smbios1"]
	if m, ok := cfg.Raw["memory"]; ok {
		_, cur, found := strings.Cut(m, "current=")
		if !found {
			cur = m
		}
		cfg.MemoryMiB, _ = strconv.Atoi(strings.Split(cur, ",")[0])
	}
	if k, ok := cfg.Raw["sshkeys"]; ok {
		keys, err := url.PathUnescape(k)
		if err != nil {
			return cfg, fmt.Errorf("pve: VM %d: sshkeys are not URL-encoded: %w", vmid, err)
		}
		cfg.SSHKeys = keys
	}
	for k, v := range cfg.Raw {
		if n, ok := indexed(k, "net"); ok {
			d, err := ParseNetDevice(v)
			if err != nil {
				return cfg, fmt.Errorf("pve: VM %d: %s: %w", vmid, k, err)
			}
			cfg.Nets[n] = d
		} else if n, ok := indexed(k, "ipconfig"); ok {
			cfg.IPConfigs[n] = ParseIPConfig(v)
		}
	}
	return cfg, nil
}

func indexed(key, prefix string) (int, bool) {
	rest, ok := strings.CutPrefix(key, prefix)
	if !ok || rest == "" {
		return 0, false
	}
	n, err := strconv.Atoi(rest)
	return n, err == nil && strconv.Itoa(n) == rest
}

// ConfigUpdate is a change to a VM's configuration. Zero fields are left
// as they are; Delete removes options.
type ConfigUpdate struct {
	// Digest, when set, makes PVE refuse the update if the config changed
	// since it was read (IsDigestMismatch).
	Digest       string
	Name         string
	Cores        int
	MemoryMiB    int
	Nets         map[int]NetDevice
	IPConfigs    map[int]IPConfig
	SSHKeys      string // one OpenSSH key a line; encoded as PVE needs
	CIUser       string
	Nameserver   string
	Searchdomain string
	Tags         string // semicolon-separated
	Description  string
	OnBoot       *bool
	SMBIOS1      string
	Delete       []string
}

func (u ConfigUpdate) params() url.Values {
	p := url.Values{}
	set := func(k, v string) {
		if v != "" {
			p.Set(k, v)
		}
	}
	set("digest", u.Digest)
	set("name", u.Name)
	if u.Cores > 0 {
		p.Set("cores", strconv.Itoa(u.Cores))
	}
	if u.MemoryMiB > 0 {
		p.Set("memory", strconv.Itoa(u.MemoryMiB))
	}
	for n, d := range u.Nets {
		p.Set("net"+strconv.Itoa(n), d.String())
	}
	for n, ic := range u.IPConfigs {
		p.Set("ipconfig"+strconv.Itoa(n), ic.String())
	}
	if u.SSHKeys != "" {
		// Encoded once here and once more by the form: PVE's urlencoded
		// format must still hold after the form is decoded.
		p.Set("sshkeys", Escape(u.SSHKeys))
	}
	set("ciuser", u.CIUser)
	set("nameserver", u.Nameserver)
	set("searchdomain", u.Searchdomain)
	set("tags", u.Tags)
	set("description", u.Description)
	set("smbios1", u.SMBIOS1)
	if u.OnBoot != nil {
		p.Set("onboot", boolParam(*u.OnBoot))
	}
	if len(u.Delete) > 0 {
		p.Set("delete", strings.Join(u.Delete, ","))
	}
	return p
}

// SetConfig updates a VM's configuration with the asynchronous POST
// variant PVE recommends, and waits for its task.
func (c *Client) SetConfig(ctx context.Context, node string, vmid int, u ConfigUpdate) error {
	return c.task(ctx, http.MethodPost, vmPath(node, vmid, "/config"), u.params())
}

// Resize grows a disk (scsi0, virtio0, …) to size: absolute ("20G") or
// relative ("+5G"). PVE cannot shrink disks.
func (c *Client) Resize(ctx context.Context, node string, vmid int, disk, size string) error {
	return c.task(ctx, http.MethodPut, vmPath(node, vmid, "/resize"), url.Values{"disk": {disk}, "size": {size}})
}

// Start starts a VM and waits until it runs. Starting a running VM fails
// with a TaskError ("VM N already running").
func (c *Client) Start(ctx context.Context, node string, vmid int) error {
	return c.task(ctx, http.MethodPost, vmPath(node, vmid, "/status/start"), nil)
}

// Stop stops a VM at once (pulling the plug). Stopping a stopped VM
// succeeds.
func (c *Client) Stop(ctx context.Context, node string, vmid int) error {
	return c.task(ctx, http.MethodPost, vmPath(node, vmid, "/status/stop"), nil)
}

// Shutdown asks the guest to power off (ACPI) and waits for it.
func (c *Client) Shutdown(ctx context.Context, node string, vmid int) error {
	return c.task(ctx, http.MethodPost, vmPath(node, vmid, "/status/shutdown"), nil)
}

// Reboot shuts the guest down and starts it again, applying pending
// changes.
func (c *Client) Reboot(ctx context.Context, node string, vmid int) error {
	return c.task(ctx, http.MethodPost, vmPath(node, vmid, "/status/reboot"), nil)
}

// Delete destroys a stopped VM with its disks, and purges it from backup
// and replication jobs and HA.
func (c *Client) Delete(ctx context.Context, node string, vmid int) error {
	p := url.Values{"purge": {"1"}, "destroy-unreferenced-disks": {"1"}}
	return c.task(ctx, http.MethodDelete, vmPath(node, vmid, ""), p)
}

// VMStatus is a VM's current state.
type VMStatus struct {
	VMID     int
	Name     string
	Status   string // running or stopped
	Lock     string
	Template bool
	CPUs     int
	MaxMem   int64 // bytes
	MaxDisk  int64 // bytes
	Uptime   int64 // seconds
}

// Status reads a VM's current state.
func (c *Client) Status(ctx context.Context, node string, vmid int) (VMStatus, error) {
	var w struct {
		VMID     number `json:"vmid"`
		Name     string `json:"name"`
		Status   string `json:"status"`
		Lock     string `json:"lock"`
		Template number `json:"template"`
		CPUs     number `json:"cpus"`
		MaxMem   number `json:"maxmem"`
		MaxDisk  number `json:"maxdisk"`
		Uptime   number `json:"uptime"`
	}
	if err := c.do(ctx, http.MethodGet, vmPath(node, vmid, "/status/current"), nil, &w); err != nil {
		return VMStatus{}, err
	}
	return VMStatus{VMID: int(w.VMID), Name: w.Name, Status: w.Status, Lock: w.Lock, Template: w.Template != 0,
		CPUs: int(w.CPUs), MaxMem: int64(w.MaxMem), MaxDisk: int64(w.MaxDisk), Uptime: int64(w.Uptime)}, nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// CreateOptions are the parameters of a VM made from nothing (no
// template): a boot disk and a cloud-init drive on one storage.
type CreateOptions struct {
	VMID        int
	Name        string
	Cores       int
	MemoryMiB   int
	DiskGiB     int    // the boot disk, scsi0
	Storage     string // where scsi0 and the cloud-init drive (ide2) go
	Pool        string
	Description string
	Tags        string
}

// Create makes a VM (POST /nodes/{node}/qemu) and waits for it. Like a
// clone, it fails when the VMID exists.
func (c *Client) Create(ctx context.Context, node string, o CreateOptions) error {
	p := url.Values{
		"vmid": {strconv.Itoa(o.VMID)}, "ostype": {"l26"}, "scsihw": {"virtio-scsi-single"},
		"scsi0": {o.Storage + ":" + strconv.Itoa(o.DiskGiB)}, "ide2": {o.Storage + ":cloudinit"},
	}
	set := func(k, v string) {
		if v != "" {
			p.Set(k, v)
		}
	}
	set("name", o.Name)
	set("pool", o.Pool)
	set("description", o.Description)
	set("tags", o.Tags)
	if o.Cores > 0 {
		p.Set("cores", strconv.Itoa(o.Cores))
	}
	if o.MemoryMiB > 0 {
		p.Set("memory", strconv.Itoa(o.MemoryMiB))
	}
	return c.task(ctx, http.MethodPost, "/nodes/"+url.PathEscape(node)+"/qemu", p)
}
