package pveemu

import (
	"cmp"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Storage, as pve-storage keeps it: one storage.cfg for the cluster, an
// entry per storage ID (PVE::API2::Storage::Config), and each node's view
// of it (PVE::API2::Storage::Status). A fresh PVE install (the installer's
// LVM-thin layout) has "local", a directory for ISOs, templates and
// backups, and "local-lvm", an LVM thin pool for guest disks; neither is
// shared, and both are on every node. Tests add shared storage (Ceph RBD,
// NFS) with AddStorage.
//
// A volume is named "storage:volname" as pve-storage names it: block
// storages (lvmthin, rbd, zfspool, …) "vm-100-disk-0", a template's
// "base-9000-disk-0", a linked clone's "base-9000-disk-0/vm-100-disk-0";
// file storages (dir, nfs, …) "100/vm-100-disk-0.qcow2" and, linked,
// "9000/base-9000-disk-0.qcow2/100/vm-100-disk-0.qcow2". The cloud-init
// drive is "vm-100-cloudinit". What a storage uses is the sum of the sizes
// of the volumes the guests' configs name on it (on that node, for local
// storage): every volume counts whole, as if fully allocated.

// Storage describes a storage to add, as an entry of storage.cfg.
type Storage struct {
	ID       string
	Type     string   // dir, btrfs, lvm, lvmthin, zfspool, nfs, cifs, rbd, cephfs, pbs
	Content  []string // images, rootdir, vztmpl, iso, backup, snippets, import; default: the type's
	Shared   bool     // implied for types that are shared by nature (nfs, cifs, rbd, cephfs, pbs)
	Nodes    []string // the nodes it is configured on; empty: every node
	Disabled bool
	// Size is the capacity in bytes: each node's own, for local
	// storage, or the one pool's, for shared storage. Default 1 TiB.
	Size int64
	// Options are the type's own keys as storage.cfg holds them (path,
	// vgname, thinpool, pool, server, export, …); they are shown as
	// given.
	Options map[string]string
}

// storageType is what pve-storage's plugin for a type says about it
// (plugindata, volume_has_feature, @SHARED_STORAGE).
type storageType struct {
	content  []string // valid content types
	defaults []string // content when the entry gives none
	formats  []string // image formats; the first is the default
	shared   bool     // in @SHARED_STORAGE: the entry is shared whatever it says
	file     bool     // volumes are files: <vmid>/<name>.<format>
	// linked: a template's (base) volume can be cloned linked.
	// migratable: QemuMigrate can copy its local volumes to another node.
	linked, migratable bool
	selectExisting     bool
}

// allContent is what a directory can hold.
var allContent = []string{"backup", "images", "import", "iso", "rootdir", "snippets", "vztmpl"}

var storageTypes = map[string]storageType{
	"dir":     {content: append(slices.Clone(allContent), "none"), defaults: []string{"images", "rootdir"}, formats: []string{"raw", "qcow2", "subvol", "vmdk"}, file: true, linked: true, migratable: true},
	"btrfs":   {content: append(slices.Clone(allContent), "none"), defaults: []string{"images", "rootdir"}, formats: []string{"raw", "subvol"}, file: true, linked: true, migratable: true},
	"lvm":     {content: []string{"images", "rootdir"}, defaults: []string{"images"}, formats: []string{"raw", "qcow2"}, migratable: true},
	"lvmthin": {content: []string{"images", "rootdir"}, defaults: []string{"images", "rootdir"}, formats: []string{"raw"}, linked: true, migratable: true},
	"zfspool": {content: []string{"images", "rootdir"}, defaults: []string{"images", "rootdir"}, formats: []string{"raw", "subvol"}, linked: true, migratable: true},
	"nfs":     {content: allContent, defaults: []string{"images"}, formats: []string{"raw", "qcow2", "vmdk"}, shared: true, file: true, linked: true},
	"cifs":    {content: allContent, defaults: []string{"images"}, formats: []string{"raw", "qcow2", "vmdk"}, shared: true, file: true, linked: true},
	"rbd":     {content: []string{"images", "rootdir"}, defaults: []string{"images"}, formats: []string{"raw"}, shared: true, linked: true},
	"cephfs":  {content: []string{"backup", "import", "iso", "snippets", "vztmpl"}, defaults: []string{"backup"}, formats: []string{"raw"}, shared: true, file: true},
	"pbs":     {content: []string{"backup", "none"}, defaults: []string{"backup"}, formats: []string{"raw"}, shared: true},
}

// storageTypeEnum is GET /storage's type filter, as the schema lists it.
var storageTypeEnum = []string{"btrfs", "cephfs", "cifs", "dir", "esxi", "iscsi", "iscsidirect", "lvm",
	"lvmthin", "nfs", "pbs", "rbd", "zfs", "zfspool"}

// storage is one entry of storage.cfg.
type storage struct {
	id       string
	typ      string
	content  []string // sorted
	shared   bool
	nodes    []string // sorted; nil: every node
	disabled bool
	size     int64
	options  map[string]string
}

func (st *storage) kind() storageType { return storageTypes[st.typ] }

func (st *storage) has(content string) bool { return slices.Contains(st.content, content) }

// onNode is storage_check_node: configured on the node.
func (st *storage) onNode(node string) bool {
	return st.nodes == nil || slices.Contains(st.nodes, node)
}

// enabledOn is storage_check_enabled: not disabled, and configured on
// the node.
func (st *storage) enabledOn(node string) bool { return !st.disabled && st.onNode(node) }

// defaultStorages are the installer's storage.cfg (LVM-thin layout).
var defaultStorages = []Storage{
	{ID: "local", Type: "dir", Content: []string{"iso", "vztmpl", "backup", "import"}, Size: 100 << 30,
		Options: map[string]string{"path": "/var/lib/vz"}},
	{ID: "local-lvm", Type: "lvmthin", Content: []string{"rootdir", "images"}, Size: 1 << 40,
		Options: map[string]string{"thinpool": "data", "vgname": "pve"}},
}

// AddStorage adds an entry to storage.cfg: a shared storage for guests
// to be cloned onto other nodes (Type "rbd" or "nfs"), or a local one on
// some nodes only (Nodes).
func (e *Emulator) AddStorage(s Storage) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.addStorage(s)
}

func (e *Emulator) addStorage(s Storage) error {
	if !storageIDRe.MatchString(s.ID) {
		return fmt.Errorf("storage ID %q contains illegal characters", s.ID)
	}
	kind, ok := storageTypes[s.Type]
	if !ok {
		return fmt.Errorf("storage %q: the emulator has no storage type %q", s.ID, s.Type)
	}
	if _, dup := e.storages[s.ID]; dup {
		return fmt.Errorf("storage ID '%s' already defined", s.ID)
	}
	content := slices.Clone(s.Content)
	if len(content) == 0 {
		content = slices.Clone(kind.defaults)
	}
	for _, c := range content {
		if !slices.Contains(kind.content, c) {
			return fmt.Errorf("storage %q: type %s does not support content type '%s'", s.ID, s.Type, c)
		}
	}
	slices.Sort(content)
	for _, n := range s.Nodes {
		if !nodeRe.MatchString(n) {
			return fmt.Errorf("storage %q: node %q is not a valid PVE node name", s.ID, n)
		}
	}
	var nodes []string
	if len(s.Nodes) > 0 {
		nodes = slices.Sorted(slices.Values(s.Nodes))
	}
	size := s.Size
	if size <= 0 {
		size = 1 << 40
	}
	if e.storages == nil {
		e.storages = map[string]*storage{}
	}
	e.storages[s.ID] = &storage{id: s.ID, typ: s.Type, content: content, shared: s.Shared || kind.shared,
		nodes: nodes, disabled: s.Disabled, size: size, options: maps.Clone(s.Options)}
	return nil
}

// storageConfig is storage_config: the entry, or PVE's error.
func (e *Emulator) storageConfig(id string) (*storage, error) {
	st, ok := e.storages[id]
	if !ok {
		return nil, fail("storage '%s' does not exist", id)
	}
	return st, nil
}

// checkStorageEnabled is storage_check_enabled, with PVE's errors.
func (e *Emulator) checkStorageEnabled(id, node string) (*storage, error) {
	st, err := e.storageConfig(id)
	if err != nil {
		return nil, err
	}
	if st.disabled {
		return nil, fail("storage '%s' is disabled", id)
	}
	if !st.onNode(node) {
		return nil, fail("storage '%s' is not available on node '%s'", id, node)
	}
	return st, nil
}

// cfgText is storage.cfg as PVE writes it; its SHA1 is the digest.
func (e *Emulator) storageCfgText() string {
	var b strings.Builder
	for _, id := range slices.Sorted(maps.Keys(e.storages)) {
		st := e.storages[id]
		fmt.Fprintf(&b, "%s: %s\n", st.typ, id)
		for _, k := range slices.Sorted(maps.Keys(st.options)) {
			fmt.Fprintf(&b, "\t%s %s\n", k, st.options[k])
		}
		fmt.Fprintf(&b, "\tcontent %s\n", strings.Join(st.content, ","))
		if st.nodes != nil {
			fmt.Fprintf(&b, "\tnodes %s\n", strings.Join(st.nodes, ","))
		}
		if st.shared && !st.kind().shared {
			b.WriteString("\tshared 1\n")
		}
		if st.disabled {
			b.WriteString("\tdisable\n")
		}
		b.WriteString("\n")
	}
	return b.String()
}

func (e *Emulator) storageDigest() string {
	sum := sha1.Sum([]byte(e.storageCfgText()))
	return hex.EncodeToString(sum[:])
}

// storageRoutes are the storage endpoints.
var storageRoutes = []route{
	{"GET", "/storage", paramsStorageIndex, (*Emulator).getStorageIndex},
	{"GET", "/storage/{storage}", paramsStorageRead, (*Emulator).getStorage},
	{"GET", "/nodes/{node}/storage", paramsNodeStorage, (*Emulator).getNodeStorage},
}

var (
	// From the API schema (pve-storage's PVE/API2/Storage/Config.pm and
	// Status.pm).
	paramsStorageIndex = []param{{name: "type", kind: kString, enum: storageTypeEnum}}
	paramsStorageRead  = []param{str("storage").req().withFormat("pve-storage-id")}
	paramsNodeStorage  = []param{
		str("node").req().withFormat("pve-node"), str("storage").withFormat("pve-storage-id"),
		str("content").withFormat("pve-storage-content-list"), boolean("enabled"),
		str("target").withFormat("pve-node"), boolean("format"),
	}
)

func init() {
	// pve-storage's verify_content: a directory takes every content type,
	// and "import" besides.
	namedFormats["pve-storage-content-list"] = eachOf(func(v string) error {
		if !slices.Contains(storageTypes["dir"].content, v) {
			return fmt.Errorf("invalid content type '%s'", v)
		}
		return nil
	})
}

// storageJSON is an entry as GET /storage shows it: its keys as the
// config holds them, content and nodes as comma lists, and the file's
// digest.
func (e *Emulator) storageJSON(st *storage, digest string) map[string]any {
	out := map[string]any{"storage": st.id, "type": st.typ, "content": strings.Join(st.content, ","), "digest": digest}
	for k, v := range st.options {
		out[k] = v
	}
	if st.shared {
		out["shared"] = 1
	}
	if st.nodes != nil {
		out["nodes"] = strings.Join(st.nodes, ",")
	}
	if st.disabled {
		out["disable"] = 1
	}
	return out
}

func (e *Emulator) getStorageIndex(c *call) (any, error) {
	digest := e.storageDigest()
	out := []map[string]any{}
	for _, id := range slices.Sorted(maps.Keys(e.storages)) {
		if st := e.storages[id]; c.values["type"] == "" || c.values["type"] == st.typ {
			out = append(out, e.storageJSON(st, digest))
		}
	}
	return out, nil
}

func (e *Emulator) getStorage(c *call) (any, error) {
	st, err := e.storageConfig(c.values["storage"])
	if err != nil {
		return nil, err
	}
	return e.storageJSON(st, e.storageDigest()), nil
}

// getNodeStorage is the node's status of each storage (storage_info and
// the Status index's filters). A storage not configured on the node is
// listed, disabled and inactive, with no space.
func (e *Emulator) getNodeStorage(c *call) (any, error) {
	node := c.values["node"]
	if err := e.checkNode(node); err != nil {
		return nil, err
	}
	target := c.values["target"]
	if target == node || target == "localhost" {
		target = ""
	}
	var want []string
	if v, ok := c.values["content"]; ok {
		want = splitList(v)
	}
	onlyEnabled, _ := parseBool(c.values["enabled"])
	formats, _ := parseBool(c.values["format"])
	info := map[string]map[string]any{}
	for id, st := range e.storages {
		enabled := st.enabledOn(node)
		if want != nil && (!enabled || !slices.ContainsFunc(want, st.has)) {
			continue
		}
		d := map[string]any{"type": st.typ, "content": strings.Join(st.content, ","), "shared": boolInt(st.shared),
			"enabled": boolInt(enabled), "active": 0, "total": 0, "used": 0, "avail": 0}
		if enabled {
			used := e.storageUsed(st, node)
			d["active"], d["total"], d["used"], d["avail"] = 1, st.size, used, max(st.size-used, 0)
			d["used_fraction"] = float64(used) / float64(st.size)
			if formats {
				k := st.kind()
				d["formats"] = map[string]any{"supported": slices.Sorted(slices.Values(k.formats)), "default": k.formats[0]}
				valid := map[string]int{}
				for _, f := range k.formats {
					valid[f] = 1
				}
				d["format"] = []any{valid, k.formats[0]} // deprecated, still sent
				if k.selectExisting {
					d["select_existing"] = 1
				}
			}
		}
		info[id] = d
	}
	if s := c.values["storage"]; s != "" && info[s] == nil {
		return nil, paramError(map[string]string{"storage": "No such storage."})
	}
	out := []map[string]any{}
	for _, id := range slices.Sorted(maps.Keys(info)) {
		st := e.storages[id]
		if s := c.values["storage"]; s != "" && s != id {
			continue
		}
		if onlyEnabled && st.disabled {
			continue
		}
		// With a target other than the node: storage whose content
		// both nodes reach (the GUI's clone dialog asks so).
		if target != "" && (!st.shared || !st.onNode(node) || !st.onNode(target)) {
			continue
		}
		d := info[id]
		d["storage"] = id
		out = append(out, d)
	}
	return out, nil
}

// storageUsed sums the volumes on st of the guests on node (of every
// guest, for shared storage).
func (e *Emulator) storageUsed(st *storage, node string) int64 {
	var used int64
	for _, v := range e.vms {
		if !st.shared && v.node != node {
			continue
		}
		for _, k := range slices.Sorted(maps.Keys(v.conf)) {
			if !isDriveKey(k) {
				continue
			}
			vol, opts, _ := strings.Cut(v.conf[k], ",")
			if sid, _, ok := strings.Cut(vol, ":"); !ok || sid != st.id {
				continue
			}
			if strings.Contains(vol, "cloudinit") {
				used += 4 << 20
				continue
			}
			used += diskSize(vol + "," + opts)
		}
	}
	return used
}

// isDriveKey reports whether a config key is a drive (disk or CD-ROM).
func isDriveKey(k string) bool {
	return diskKeyRe.MatchString(k) || k == "efidisk0" || k == "tpmstate0"
}

// volume is a parsed volume ID: its storage and volume name, the VMID
// owning it, and, for a linked clone, the base it sits on.
type volume struct {
	st     *storage
	name   string // vm-100-disk-0, base-9000-disk-0, vm-100-cloudinit
	format string // file storages: raw, qcow2, …; empty on block storage
	vmid   int
	base   string // a linked clone's base volume name, as it appears in the volname
}

var volNameRe = regexp.MustCompile(`^(vm|base)-(\d+)-[A-Za-z0-9._-]+$`)

// parseVolume is parse_volume_id and the plugin's parse_volname. CD-ROM
// drives that name no volume ("none", "cdrom", a path) have none.
func (e *Emulator) parseVolume(volid string) (volume, bool, error) {
	sid, volname, ok := strings.Cut(volid, ":")
	if !ok {
		return volume{}, false, nil
	}
	st, err := e.storageConfig(sid)
	if err != nil {
		return volume{}, false, err
	}
	v := volume{st: st}
	parts := strings.Split(volname, "/")
	bad := fmt.Errorf("unable to parse volume name '%s'", volname)
	if st.kind().file {
		if len(parts) == 4 {
			v.base, parts = parts[0]+"/"+parts[1], parts[2:]
		}
		if len(parts) != 2 {
			return v, false, bad
		}
		name, format, ok := strings.Cut(parts[1], ".")
		if !ok {
			return v, false, bad
		}
		v.name, v.format = name, format
	} else {
		if len(parts) == 2 {
			v.base, parts = parts[0], parts[1:]
		}
		if len(parts) != 1 {
			return v, false, bad
		}
		v.name = parts[0]
	}
	m := volNameRe.FindStringSubmatch(v.name)
	if m == nil {
		return v, false, bad
	}
	v.vmid, _ = strconv.Atoi(m[2])
	return v, true, nil
}

func (v volume) isBase() bool { return strings.HasPrefix(v.name, "base-") }

// String is the volume ID.
func (v volume) String() string {
	name := v.name
	if v.st.kind().file {
		name = strconv.Itoa(v.vmid) + "/" + name + "." + v.format
	}
	if v.base != "" {
		name = v.base + "/" + name
	}
	return v.st.id + ":" + name
}

// newVolume names a new volume of vmid on st, as vdisk_alloc does:
// vm-<vmid>-disk-<n> with the first n that vmid's volumes on st do not
// use (taken), or the cloud-init drive's fixed name.
func newVolume(st *storage, vmid int, cloudinit bool, format string, taken map[string]bool) volume {
	v := volume{st: st, vmid: vmid}
	if st.kind().file {
		v.format = cmp.Or(format, st.kind().formats[0])
		if !slices.Contains(st.kind().formats, v.format) {
			v.format = st.kind().formats[0]
		}
	}
	if cloudinit {
		v.name = fmt.Sprintf("vm-%d-cloudinit", vmid)
		return v
	}
	for n := 0; ; n++ {
		v.name = fmt.Sprintf("vm-%d-disk-%d", vmid, n)
		if !taken[st.id+":"+v.name] {
			taken[st.id+":"+v.name] = true
			return v
		}
	}
}
